//! `vaultfs info STORE`: what the header says in the clear.

use super::args::InfoArgs;
use super::exit;
use super::init::hex;
use crate::vault::Vault;

pub fn run(a: InfoArgs) -> exit::Result {
    let v = Vault::open(&a.store)?;
    let h = v.header();
    println!("vault id:         {}", hex(&h.vault_id));
    println!("format version:   {}", h.version);
    println!("feature flags:    {:#x}", h.features);
    println!("block size:       {} bytes", h.block_size);
    println!(
        "kdf:              argon2id, {} MiB, {} passes, {} lanes",
        h.kdf.memory_kib / 1024,
        h.kdf.passes,
        h.kdf.lanes
    );
    println!("audit public key: {}", hex(&h.audit_public));
    let levels: Vec<String> = h.slots.iter().map(|s| format!("{}:{}", s.level, slot_kind(s.kind))).collect();
    println!("key slots:        {}", levels.join(" "));
    Ok(())
}

fn slot_kind(kind: u8) -> &'static str {
    match kind {
        crate::format::SLOT_KIND_PASSPHRASE => "passphrase",
        _ => "unknown",
    }
}
