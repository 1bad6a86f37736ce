//! `vaultfs info STORE`: what the header says in the clear.

use super::args::InfoArgs;
use super::exit;
use super::mountinfo::open_unmounted;
use crate::format::hex;

pub fn run(a: InfoArgs) -> exit::Result {
    let v = open_unmounted(&a.store, "info", "")?;
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
    println!("key slots:");
    for s in v.slots()? {
        let details = if s.details.is_empty() { String::new() } else { format!(" ({})", s.details) };
        println!("  slot {}: level {} opens with {}{details}", s.index, s.level, s.opens_with);
    }
    for level in 4..=5u8 {
        if !h.slots.iter().any(|s| s.level == level) {
            println!("  level {level}: no key yet (`vaultfs enroll`)");
        }
    }
    match v.escrow() {
        Some(r) => println!(
            "escrow:           {} of {} shares recover (split {})",
            r.threshold,
            r.shares,
            hex(&r.split_id[..4])
        ),
        None => println!("escrow:           none (`vaultfs escrow split`)"),
    }
    for level in v.rotations_pending()? {
        println!(
            "rotation:         level {level} interrupted: `vaultfs rotate` finishes it (no mount until then)"
        );
    }
    Ok(())
}
