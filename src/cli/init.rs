//! `vaultfs init STORE`

use super::args::InitArgs;
use super::exit::{self, Code, Exit};
use super::passphrase::{self, Confirm};
use crate::crypto::KdfParams;
use crate::format::hex;
use crate::gate::tpm::TpmConfig;
use crate::store::{Address, ClusterAddress, DataAddress};
use crate::vault::{DEFAULT_BLOCK_SIZE, FactorAccess, InitOptions, Locked, Vault};

pub fn run(a: InitArgs) -> exit::Result {
    let memory_kib =
        a.kdf_memory.checked_mul(1024).ok_or_else(|| Exit::usage("--kdf-memory is too large"))?;
    let opts = InitOptions {
        kdf: KdfParams { memory_kib, passes: a.kdf_passes, lanes: 1 },
        block_size: a.block_size.unwrap_or(DEFAULT_BLOCK_SIZE),
    };
    // Check bounds before asking for a passphrase the user would type in vain.
    crate::format::KDF_LIMITS.check(opts.kdf).map_err(|e| Exit::usage(e.to_string()))?;
    crate::format::validate_block_size(opts.block_size).map_err(|e| Exit::usage(e.to_string()))?;
    if let Some(cluster) = cluster_target(&a.store, a.data.as_deref())? {
        let pass = passphrase::obtain(&a.passphrase, "New vault passphrase: ", Confirm::Twice)?;
        let (at, data) = cluster;
        Vault::<Locked>::init_cluster(&at, &data, &pass, opts)?;
        let v = Vault::open(&a.store)?;
        println!("created vault {} in {at}, its data in {data}", hex(&v.header().vault_id));
        return finish(&a, v, &pass);
    }
    if crate::store::Store::exists(&a.store) {
        return Err(Exit::from(crate::vault::Error::new(
            crate::vault::ErrorKind::VaultExists,
            format!("{} already holds a vault; refusing to overwrite it", a.store.display()),
        )));
    }
    if !a.allow_non_empty && holds_files(&a.store)? {
        return Err(Exit {
            code: Code::VaultPresence,
            message: format!(
                "{} is not empty and holds no vault: a vault's files would be mixed into it \
                 (--allow-non-empty to create it there anyway)",
                a.store.display()
            ),
        });
    }
    let pass = passphrase::obtain(&a.passphrase, "New vault passphrase: ", Confirm::Twice)?;
    Vault::<Locked>::init(&a.store, &pass, opts)?;
    let v = Vault::open(&a.store)?;
    println!("created vault {} in {}", hex(&v.header().vault_id), a.store.display());
    finish(&a, v, &pass)
}

/// A cluster vault's address and object store, when `store` (with `data`,
/// the `--data` option) names one: the vault a command creates (init,
/// restore).
pub(super) fn cluster_target(
    store: &std::path::Path,
    data: Option<&str>,
) -> Result<Option<(ClusterAddress, DataAddress)>, Exit> {
    let usage = |e: crate::store::Error| Exit::usage(e.to_string());
    match (Address::of(store).map_err(usage)?, data) {
        (Address::Cluster(at), Some(data)) => Ok(Some((at, DataAddress::parse(data).map_err(usage)?))),
        (Address::Cluster(at), None) => Err(Exit::usage(format!(
            "{at}: a cluster vault needs its object store: --data s3://HOST[:PORT]/BUCKET"
        ))),
        (Address::Local(_), Some(_)) => Err(Exit::usage(
            "--data is for a cluster vault (etcd://HOST:PORT/VAULT); a directory holds its own data",
        )),
        (Address::Local(_), None) => Ok(None),
    }
}

/// What init prints and makes once the vault exists.
fn finish(a: &InitArgs, v: Vault<Locked>, pass: &crate::crypto::Passphrase) -> exit::Result {
    println!("audit public key: {}", hex(&v.header().audit_public));
    super::audit::write_pubkey_file(&a.store, &v.header().audit_public);
    if a.recovery_key {
        let mut v = v;
        let access = FactorAccess::new(TpmConfig::resolve(None, Vec::new()), None);
        let done = v.escrow_split(pass, 1, 1, &[], &access)?;
        println!("recovery key: {}", *done.shares[0].to_text());
        eprintln!(
            "The recovery key sets a new passphrase (`vaultfs escrow recover`) and opens levels up to 3. \
             Write it down and keep it offline, away from the store: it is not kept here, and whoever \
             holds it holds the vault."
        );
    }
    Ok(())
}

/// Whether `dir` exists and holds anything (a file where the directory
/// should be counts too: init would fail on it anyway, and say so).
fn holds_files(dir: &std::path::Path) -> Result<bool, Exit> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(true),
        Err(e) => Err(Exit::failure(format!("cannot read {}: {e}", dir.display()))),
    }
}
