//! The `.audit` and archive verifiers (docs/AUDIT.md, "Verifying a `.audit`
//! file" and "Archives") never panic: `verify_export` on any bytes, and
//! `verify_files` on any bytes cut into files.
//!
//! Each input is also the recipe for a real chain: leaves, cut into an
//! archive (its leaves, a checkpoint at the cut) and the file after it (a
//! base line with the archive's frontier, the `archive` record that names
//! the archive and its BLAKE3, more leaves, a checkpoint). Both must verify
//! alone and as a chain; one input-chosen flip or cut of either must be
//! refused.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use vaultfs::audit::archive::{Base, record_path};
use vaultfs::audit::checkpoint::{Checkpoint, vault_origin};
use vaultfs::audit::export::{checkpoint_line, leaf_line};
use vaultfs::audit::leaf::{Leaf, Op};
use vaultfs::audit::merkle::{Frontier, leaf_hash};
use vaultfs::audit::verify::{verify_export, verify_files};
use vaultfs::crypto::{Key32, SigningKey, blake3_of};

fn leaf(u: &mut Unstructured, seq: u64) -> Result<Leaf> {
    Ok(Leaf {
        seq,
        time_ns: u.arbitrary()?,
        uid: u.arbitrary()?,
        gid: u.arbitrary()?,
        pid: u.arbitrary()?,
        comm: b"agent".to_vec(),
        op: *u.choose(&Op::ALL)?,
        level: if u.arbitrary()? { Some(u.int_in_range(0..=5)?) } else { None },
        ino: u.arbitrary()?,
        path: format!("/1-working/f{seq}").into_bytes(),
        offset: u.arbitrary()?,
        len: u.arbitrary()?,
        result: u.int_in_range(0..=40)?,
        note: Vec::new(),
    })
}

/// Lines of `leaves` appended to `text`, each hashed onto `frontier`.
fn add(text: &mut String, frontier: &mut Frontier, leaves: &[Leaf]) {
    for l in leaves {
        text.push_str(&leaf_line(l));
        frontier.append(leaf_hash(&l.encode()));
    }
}

fn chain(u: &mut Unstructured) -> Result<()> {
    let key = SigningKey::from_seed(Key32::from_bytes([5; 32]));
    let (vk, origin) = (key.verifying_key(), vault_origin(&[3; 16]));
    let cut: u64 = u.int_in_range(1..=20)?;
    let archived: Vec<Leaf> = (0..cut).map(|i| leaf(u, i)).collect::<Result<_>>()?;
    let (mut archive, mut frontier) = (String::new(), Frontier::default());
    add(&mut archive, &mut frontier, &archived);
    let sign = |f: &Frontier| checkpoint_line(&Checkpoint { origin: origin.clone(), size: f.size, root: f.root() }.sign(&key));
    archive.push_str(&sign(&frontier));
    let digest = blake3_of(archive.as_bytes());
    let mut live = Base { frontier: frontier.clone(), archives: Vec::new() }.line();
    let record = Leaf { op: Op::Archive, offset: 0, len: cut, result: 0, path: record_path("a.vfsaudit", &digest), ..leaf(u, cut)? };
    let more: u64 = u.int_in_range(0..=10)?;
    let mut later = vec![record];
    for i in 0..more {
        later.push(leaf(u, cut + 1 + i)?);
    }
    add(&mut live, &mut frontier, &later);
    live.push_str(&sign(&frontier));
    let files = vec![("a".to_string(), archive.clone().into_bytes()), ("live".to_string(), live.clone().into_bytes())];
    verify_export(archive.as_bytes(), &vk).expect("a valid archive verifies");
    verify_export(live.as_bytes(), &vk).expect("a valid live file verifies");
    verify_files(&files, &vk).expect("a valid chain verifies");
    let which: bool = u.arbitrary()?;
    let mut bytes = if which { archive.into_bytes() } else { live.into_bytes() };
    let (flip, at, byte) = (u.arbitrary::<bool>()?, u.arbitrary::<u32>()? as usize % bytes.len(), u.arbitrary::<u8>()?);
    if flip {
        bytes[at] ^= byte.max(1);
    } else {
        bytes.truncate(at);
    }
    assert!(verify_export(&bytes, &vk).is_err(), "a damaged file verifies");
    let mut files = files;
    files[usize::from(!which)].1 = bytes;
    assert!(verify_files(&files, &vk).is_err(), "a chain with a damaged file verifies");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let vk = SigningKey::from_seed(Key32::from_bytes([5; 32])).verifying_key();
    let _ = verify_export(data, &vk);
    let files: Vec<(String, Vec<u8>)> = data.split(|&b| b == 0).map(|f| (String::new(), f.to_vec())).collect();
    let _ = verify_files(&files, &vk);
    let _ = chain(&mut Unstructured::new(data));
});
