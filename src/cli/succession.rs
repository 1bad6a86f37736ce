//! `vaultfs succession keygen | setup | status | cancel | release | claim`
//! and `vaultfs checkin` (docs/ADMIN.md, "Dead-man succession"). Setup,
//! check-in, cancel and status work on a mounted vault (through its daemon)
//! and on a closed one; a release needs the mount (its daemon holds the key
//! that opens the will); a claim needs the vault closed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::args::{
    CheckinArgs, PassphraseArgs, PinArgs, SuccessionArgs, SuccessionClaimArgs, SuccessionCommand,
    SuccessionKeygenArgs, SuccessionReleaseArgs, SuccessionSetupArgs, SuccessionStoreArgs,
};
use super::exit::{self, Exit};
use super::mountinfo::{Serving, open_unmounted, serving};
use super::passphrase::{self, Confirm};
use crate::crypto::HeirSecret;
use crate::format::succession::{self, HEIR_PUBLIC_PREFIX, Release};
use crate::format::time::utc;
use crate::gate::tpm::TpmConfig;
use crate::vault::{FactorAccess, SuccessionChange, WillInfo};

pub fn run(a: SuccessionArgs) -> exit::Result {
    match a.command {
        SuccessionCommand::Keygen(a) => keygen(a),
        SuccessionCommand::Setup(a) => setup(a),
        SuccessionCommand::Status(a) => status(a),
        SuccessionCommand::Cancel(a) => change(&a.store, &a.passphrase, "cancel"),
        SuccessionCommand::Release(a) => release(a),
        SuccessionCommand::Claim(a) => claim(a),
    }
}

pub fn run_checkin(a: CheckinArgs) -> exit::Result {
    change(&a.store, &a.passphrase, "checkin")
}

/// A period: a whole number with `s`, `m`, `h` or `d`, or plain seconds.
fn parse_period(s: &str) -> Result<u64, Exit> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(Exit::usage(format!("--period {s:?}: the unit is s, m, h or d"))),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| Exit::usage(format!("--period {s:?}: a positive whole number of s, m, h or d (30d)")))
}

fn keygen(a: SuccessionKeygenArgs) -> exit::Result {
    let (secret, public) =
        HeirSecret::generate().map_err(|e| Exit::failure(format!("making the key: {e}")))?;
    let public_text = succession::heir_public_text(&public);
    let mut pub_path = a.out.clone().into_os_string();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    write_new(&a.out, succession::heir_secret_text(&secret).as_bytes(), 0o600)?;
    if let Err(e) = write_new(&pub_path, public_text.as_bytes(), 0o644) {
        let _ = std::fs::remove_file(&a.out);
        return Err(e);
    }
    println!("{public_text}");
    eprintln!(
        "The heir's private key is in {} (keep it offline; it is not kept anywhere else); \
         the public key, above and in {}, goes to the owner for `vaultfs succession setup --heir`.",
        a.out.display(),
        pub_path.display()
    );
    Ok(())
}

/// Writes `bytes` and a newline to a new file (never overwriting one), synced.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> exit::Result {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Exit::failure(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(|e| Exit::failure(format!("writing {}: {e}", path.display())))
}

/// The heir's public key from its text or a file holding it.
fn heir_key(arg: &str) -> Result<String, Exit> {
    let text = if arg.trim_start().starts_with(HEIR_PUBLIC_PREFIX) {
        arg.to_string()
    } else {
        std::fs::read_to_string(arg).map_err(|e| Exit::usage(format!("--heir {arg}: {e}")))?
    };
    let key = succession::parse_heir_public(&text).map_err(|e| Exit::usage(format!("--heir: {e}")))?;
    Ok(succession::heir_public_text(&key))
}

fn mounted_at(store: &Path) -> Option<PathBuf> {
    match serving(store) {
        Some(Serving { mountpoint: Some(m), .. }) => Some(m),
        _ => None,
    }
}

fn setup(a: SuccessionSetupArgs) -> exit::Result {
    let heir = heir_key(&a.heir)?;
    let period = parse_period(&a.period)?;
    if let Some(l) = a.levels.iter().find(|l| !succession::BEQUEATHABLE.contains(l)) {
        return Err(Exit::usage(format!(
            "--levels: level {l} is not a hardware factor level (4, 5); levels 1 to 3 always pass to the heir"
        )));
    }
    let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
    if !a.levels.is_empty() {
        eprintln!("opening levels {:?} with their factors (touch your security key if it blinks)", a.levels);
    }
    let will = match mounted_at(&a.store) {
        Some(mnt) => {
            let setup = Some((heir.as_str(), period, &a.levels[..], a.replace));
            super::control::succession_mounted(&mnt, "setup", Some(&pass), setup, &a.pin)?.will
        }
        None => {
            let mut v = open_unmounted(&a.store, "succession setup", "")?;
            let heir = succession::parse_heir_public(&heir).map_err(|e| Exit::usage(e.to_string()))?;
            let pin = super::control::pin(&a.pin)?;
            let access = FactorAccess::new(TpmConfig::resolve(a.tpm.tpm_tcti.as_deref(), Vec::new()), pin);
            let change =
                SuccessionChange::Setup { heir, period_secs: period, levels: a.levels, replace: a.replace };
            v.succession_change(&pass, change, &access)?
        }
    };
    let w = will.ok_or_else(|| Exit::failure("the will was not written"))?;
    show(&w);
    eprintln!(
        "Check in (`vaultfs checkin`) at least every {}; after a whole period without one, \
         `vaultfs succession release` on the mounted vault gives the heir what they need.",
        period_text(w.period_secs)
    );
    Ok(())
}

/// Check-in or cancel: the owner's passphrase, mounted or not.
fn change(store: &Path, pass_args: &PassphraseArgs, step: &str) -> exit::Result {
    let pass = passphrase::obtain(pass_args, "Vault passphrase: ", Confirm::Once)?;
    let will = match mounted_at(store) {
        Some(mnt) => {
            super::control::succession_mounted(&mnt, step, Some(&pass), None, &PinArgs::default())?.will
        }
        None => {
            let mut v = open_unmounted(store, &format!("succession {step}"), "")?;
            let change = if step == "checkin" { SuccessionChange::Checkin } else { SuccessionChange::Cancel };
            v.succession_change(
                &pass,
                change,
                &FactorAccess::new(TpmConfig::resolve(None, Vec::new()), None),
            )?
        }
    };
    match will {
        Some(w) => {
            println!("checked in at {}", utc(w.checked_in_ms.saturating_mul(1_000_000)));
            println!("next release possible at {}", utc(w.due_ms.saturating_mul(1_000_000)));
        }
        None => println!("the will is cancelled: nothing will be released"),
    }
    Ok(())
}

fn status(a: SuccessionStoreArgs) -> exit::Result {
    let will = match mounted_at(&a.store) {
        Some(mnt) => {
            super::control::succession_mounted(&mnt, "status", None, None, &PinArgs::default())?.will
        }
        None => {
            let v = open_unmounted(&a.store, "succession status", "")?;
            let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
            v.succession_status(&pass)?
        }
    };
    match will {
        Some(w) => show(&w),
        None => println!("no will: nothing is released to anyone"),
    }
    Ok(())
}

fn period_text(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{} day(s)", s / 86_400),
        s if s % 3600 == 0 => format!("{} hour(s)", s / 3600),
        s if s % 60 == 0 => format!("{} minute(s)", s / 60),
        s => format!("{s} second(s)"),
    }
}

fn show(w: &WillInfo) {
    let ms = |t: u64| utc(t.saturating_mul(1_000_000));
    let mut levels = vec!["1-3".to_string()];
    levels.extend(w.levels.iter().map(u8::to_string));
    println!("will:          {}", w.id);
    println!("heir:          {}", w.heir);
    println!("levels:        {}", levels.join(","));
    println!("period:        {}", period_text(w.period_secs));
    println!("set up:        {}", ms(w.set_up_ms));
    println!("checked in:    {}", ms(w.checked_in_ms));
    println!("release from:  {}", ms(w.due_ms));
}

fn release(a: SuccessionReleaseArgs) -> exit::Result {
    let Some(mnt) = mounted_at(&a.store) else {
        return Err(Exit::usage(format!(
            "{} is not mounted: a release comes from the running mount (its daemon holds the key that opens \
             the will). Mount the vault, then run this again",
            a.store.display()
        )));
    };
    let resp = super::control::succession_mounted(&mnt, "release", None, None, &PinArgs::default())?;
    let text = resp.release.ok_or_else(|| Exit::failure("the daemon sent no release"))?;
    match &a.out {
        Some(path) => write_new(path, text.as_bytes(), 0o600)?,
        None => println!("{text}"),
    }
    if let Some(w) = resp.will {
        eprintln!(
            "Released will {} to the heir {}; the heir claims the vault with `vaultfs succession claim` \
             (unmounted) and their private key.",
            w.id, w.heir
        );
    }
    Ok(())
}

fn claim(a: SuccessionClaimArgs) -> exit::Result {
    let key_text = std::fs::read_to_string(&a.heir_key)
        .map_err(|e| Exit::usage(format!("--heir-key {}: {e}", a.heir_key.display())))?;
    let key =
        succession::parse_heir_secret(&key_text).map_err(|e| Exit::usage(format!("--heir-key: {e}")))?;
    let rel_text = std::fs::read_to_string(&a.release)
        .map_err(|e| Exit::usage(format!("--release {}: {e}", a.release.display())))?;
    let release = Release::parse(&rel_text).map_err(|e| Exit::usage(format!("--release: {e}")))?;
    let mut v = open_unmounted(&a.store, "succession claim", "")?;
    let new = passphrase::obtain_new(a.new_passphrase_file)?;
    let done = v.succession_claim(&release, &key, &new)?;
    println!("claimed: the new passphrase opens levels 1-3{}", {
        let extra: Vec<String> = done.levels.iter().map(u8::to_string).collect();
        if extra.is_empty() { String::new() } else { format!(" and {}", extra.join(",")) }
    });
    eprintln!(
        "The owner's hardware factor slots are still in the header: list them with `vaultfs info`, \
         remove them with `vaultfs unenroll`, and enroll your own (`vaultfs enroll`)."
    );
    Ok(())
}
