//! `vaultfs escrow split STORE --shares N --threshold T` and `vaultfs escrow
//! recover STORE`, on an unmounted vault (docs/ADMIN.md, "Escrow").

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use zeroize::{Zeroize, Zeroizing};

use super::args::{EscrowArgs, EscrowCommand, EscrowRecoverArgs, EscrowSplitArgs, ShareArgs};
use super::exit::{self, Exit};
use super::mountinfo::{Serving, open_unmounted, serving};
use super::passphrase::{self, Confirm};
use crate::control::protocol::SplitMade;
use crate::format::{EscrowShare, hex};
use crate::gate::tpm::TpmConfig;
use crate::vault::{FactorAccess, Locked, Vault};

pub fn run(a: EscrowArgs) -> exit::Result {
    match a.command {
        EscrowCommand::Split(a) => split(a),
        EscrowCommand::Recover(a) => recover(a),
    }
}

fn split(a: EscrowSplitArgs) -> exit::Result {
    if a.threshold < 1 || a.threshold > a.shares || (a.threshold == 1 && a.shares != 1) {
        return Err(Exit::usage(format!(
            "--threshold {} of --shares {}: need 2 <= threshold <= shares <= 255, or 1 of 1 (a single recovery key)",
            a.threshold, a.shares
        )));
    }
    if let Some(l) = a.escrow_levels.iter().find(|l| !(3..=5).contains(*l)) {
        return Err(Exit::usage(format!(
            "--escrow-levels: level {l} is not a hardware factor level (3 to 5); levels 1 to 3 with the \
             passphrase are always restored"
        )));
    }
    // Mounted: the running daemon makes the split, and the agents stay online.
    let made = match serving(&a.store) {
        Some(Serving { pid, mountpoint: Some(mnt) }) => {
            let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
            announce_factors(&a.escrow_levels);
            let made = super::control::escrow_split_mounted(&mnt, &a, &pass)?;
            eprintln!("(made by the mount at {}, daemon pid {pid})", mnt.display());
            made
        }
        _ => split_offline(&a)?,
    };
    let mut out = std::io::stdout().lock();
    for s in &made.shares {
        writeln!(out, "{}", s.as_str()).map_err(|e| Exit::failure(format!("writing the shares: {e}")))?;
    }
    out.flush().map_err(|e| Exit::failure(format!("writing the shares: {e}")))?;
    let mut made = made;
    made.shares.iter_mut().for_each(Zeroize::zeroize);
    let mut escrowed = a.escrow_levels.clone();
    escrowed.sort_unstable();
    escrowed.dedup();
    let also =
        if escrowed.is_empty() { String::new() } else { format!(", and levels {} too", list(&escrowed)) };
    if a.shares == 1 {
        eprintln!("A new recovery key: it sets a new passphrase (levels up to 3{also}).");
        eprintln!("Keep it on paper or offline, away from the store; it is not kept here.");
    } else {
        eprintln!(
            "{} shares of a new recovery key: any {} of them set a new passphrase (levels up to 3{also}).",
            a.shares, a.threshold,
        );
        eprintln!("Give each share to a different keeper, on paper or offline; none is kept here.");
    }
    if made.replaced {
        eprintln!("The previous split is replaced: its shares no longer work.");
    }
    for l in made.dropped_levels {
        eprintln!(
            "Level {l} is no longer escrowed (it was by the previous split): add --escrow-levels {l} to keep it."
        );
    }
    Ok(())
}

/// The split made here, on an unmounted store.
fn split_offline(a: &EscrowSplitArgs) -> Result<SplitMade, Exit> {
    let mut v = open_unmounted(&a.store, "escrow split", "")?;
    if let Some(r) = v.escrow().filter(|_| !a.replace) {
        return Err(Exit::usage(format!(
            "this vault already has a recovery key ({} of {} shares, split {}); --replace makes a new one \
             and the old shares stop working",
            r.threshold,
            r.shares,
            hex(&r.split_id[..4])
        )));
    }
    let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
    let pin = super::control::pin(&a.pin)?;
    let access = FactorAccess::new(TpmConfig::resolve(a.tpm.tpm_tcti.as_deref(), Vec::new()), pin);
    announce_factors(&a.escrow_levels);
    let done = v.escrow_split(&pass, a.threshold, a.shares, &a.escrow_levels, &access)?;
    Ok(SplitMade {
        shares: done.shares.iter().map(|s| s.to_text().to_string()).collect(),
        replaced: done.replaced,
        dropped_levels: done.dropped_levels,
    })
}

fn announce_factors(levels: &[u8]) {
    if !levels.is_empty() {
        eprintln!(
            "opening levels {} with their factors (touch your security key if it blinks)",
            list(levels)
        );
    }
}

fn recover(a: EscrowRecoverArgs) -> exit::Result {
    let mut v = open_unmounted(&a.store, "escrow recover", "")?;
    let Some(r) = v.escrow() else {
        return Err(Exit {
            code: exit::Code::Locked,
            message: "this vault has no recovery key (`vaultfs escrow split` makes one)".into(),
        });
    };
    let needed = r.threshold as usize;
    let shares =
        if a.shares.share_files.is_empty() { shares_from_stdin(needed)? } else { read_shares(&a.shares)? };
    let key = v.recovery_key(&shares)?;
    eprintln!("the shares rebuild the recovery key");
    let new = passphrase::obtain_new(a.new_passphrase_file)?;
    let escrowed = v.escrow_recover(&key, &new)?;
    println!("passphrase set");
    report(&v, &escrowed)?;
    eprintln!(
        "These shares have now been seen: make a new split (`vaultfs escrow split --replace`) and \
         destroy the old shares."
    );
    Ok(())
}

/// What the new passphrase opens, and what still needs a hardware factor.
fn report(v: &Vault<Locked>, escrowed: &[u8]) -> exit::Result {
    let slots = v.slots()?;
    let by_pass: Vec<u8> = slots.iter().filter(|s| s.opens_with == "passphrase").map(|s| s.level).collect();
    println!("levels {} open with the new passphrase", list(&by_pass));
    let mut gated: Vec<u8> = slots.iter().filter(|s| !by_pass.contains(&s.level)).map(|s| s.level).collect();
    gated.dedup();
    for l in gated {
        if escrowed.contains(&l) {
            println!(
                "level {l} still unlocks with its hardware factor; it is escrowed: if the factor is lost, \
                 `vaultfs enroll tpm|fido2 STORE --level {l} --share-file FILE…` enrolls a new one with these shares"
            );
        } else {
            println!("level {l} still needs its hardware factor (it is not escrowed)");
        }
    }
    Ok(())
}

fn list(levels: &[u8]) -> String {
    levels.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
}

/// Share lines of the files in `a`: blank lines and `#` comments are skipped.
pub fn read_shares(a: &ShareArgs) -> Result<Vec<EscrowShare>, Exit> {
    let mut out = Vec::new();
    for path in &a.share_files {
        let text = read_file(path)?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            out.push(EscrowShare::parse(line).map_err(|e| {
                Exit::usage(format!("{} line {}: {}", path.display(), n + 1, share_error(&e.to_string())))
            })?);
        }
    }
    if out.is_empty() {
        return Err(Exit::usage("no shares in the --share-file files"));
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<Zeroizing<String>, Exit> {
    std::fs::read(path)
        .map_err(|e| Exit::usage(format!("cannot read shares from {}: {e}", path.display())))
        .and_then(|b| {
            String::from_utf8(b)
                .map(Zeroizing::new)
                .map_err(|_| Exit::usage(format!("{} is not text", path.display())))
        })
}

/// "share: X" reads better as "X" after a file and line.
fn share_error(msg: &str) -> &str {
    msg.strip_prefix("share: ").unwrap_or(msg)
}

/// Shares from standard input: on a terminal, asked one by one until
/// `needed` different ones were typed (a mistyped one is asked again);
/// otherwise every line until the end.
fn shares_from_stdin(needed: usize) -> Result<Vec<EscrowShare>, Exit> {
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut out: Vec<EscrowShare> = Vec::new();
    let mut lines = stdin.lock().lines();
    let mut n = 0;
    loop {
        let distinct = {
            let mut idx: Vec<u8> = out.iter().map(|s| s.index).collect();
            idx.sort_unstable();
            idx.dedup();
            idx.len()
        };
        if interactive {
            if distinct >= needed {
                break;
            }
            eprint!("share {} of {needed}: ", distinct + 1);
        }
        let Some(line) = lines.next() else { break };
        let line = Zeroizing::new(line.map_err(|e| Exit::failure(format!("reading shares: {e}")))?);
        n += 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match EscrowShare::parse(&line) {
            Ok(s) => out.push(s),
            Err(e) if interactive => eprintln!("{}; type it again", share_error(&e.to_string())),
            Err(e) => {
                return Err(Exit::usage(format!("standard input line {n}: {}", share_error(&e.to_string()))));
            }
        }
    }
    if out.is_empty() {
        return Err(Exit::usage(
            "no shares given (use --share-file FILE, or one share per line on standard input)",
        ));
    }
    Ok(out)
}
