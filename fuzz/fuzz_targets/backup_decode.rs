//! The backup archive decoder (docs/FORMAT.md §11) never panics; what its
//! framing accepts re-encodes to exactly the input (one encoding per
//! archive); and a validly signed archive built from the input verifies,
//! while the same archive with any one edit (flip, cut, inserted byte) is
//! refused.
//!
//! Blind mutation never produces a signed archive, so each input is also the
//! recipe for one: a header with the signing key, an audit log of N leaves
//! with its frontier and checkpoints, and a few opaque sealed records.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "common/mutate.rs"]
mod mutate;
use vaultfs::audit::checkpoint::{Checkpoint, vault_origin};
use vaultfs::audit::merkle::Frontier;
use vaultfs::backup::archive::{Preamble, Reader, encode_end, encode_record, signed_message};
use vaultfs::backup::{Expect, verify_bytes};
use vaultfs::crypto::{Blake3, KdfParams, Key32, SigningKey, VerifyingKey};
use vaultfs::format::{FORMAT_VERSION, Header, KeySlot, SLOT_KIND_PASSPHRASE, keys};

/// Framing only: whatever decodes re-encodes byte for byte.
fn check_framing(data: &[u8]) {
    let Ok((mut r, pre)) = Reader::open(data) else { return };
    let mut out = pre.encode();
    let mut n = 0u64;
    loop {
        match r.next_record() {
            Ok(Some((k, v))) => {
                encode_record(&k, &v, &mut out);
                n += 1;
            }
            Ok(None) => break,
            Err(_) => return,
        }
    }
    let Ok(trailer) = r.finish() else { return };
    out.extend_from_slice(&encode_end(n));
    out.extend_from_slice(&trailer.signature);
    assert_eq!(out, data, "accepted archive framing does not re-encode byte-for-byte");
}

fn signer() -> SigningKey {
    SigningKey::from_seed(Key32::from_bytes([7; 32]))
}

/// A validly signed archive from `u`'s choices.
fn valid_archive(u: &mut Unstructured) -> Result<Vec<u8>> {
    let key = signer();
    let public = key.verifying_key().0;
    let vault_id: [u8; 16] = u.arbitrary()?;
    let header = Header {
        version: FORMAT_VERSION,
        features: 0,
        vault_id,
        block_size: 4096,
        kdf: KdfParams { memory_kib: 8192, passes: 1, lanes: 1 },
        kdf_salt: u.arbitrary()?,
        wrapped_master: u.arbitrary()?,
        audit_public: public,
        wrapped_audit_seed: u.arbitrary()?,
        slots: (1..=3)
            .map(|level| {
                Ok(KeySlot { level, kind: SLOT_KIND_PASSPHRASE, params: Vec::new(), wrapped: u.arbitrary()? })
            })
            .collect::<Result<_>>()?,
        recovery: None,
        mac: u.arbitrary()?,
    }
    .encode();
    let origin = vault_origin(&vault_id);
    let n = u.int_in_range(1..=40u64)?;
    let mut records: Vec<(Vec<u8>, Vec<u8>)> =
        vec![(b"H".to_vec(), header.clone()), (b"C".to_vec(), u.arbitrary::<[u8; 8]>()?.to_vec())];
    let mut frontier = Frontier::default();
    let mut note = String::new();
    for seq in 0..n {
        frontier.append(u.arbitrary()?);
        let len = u.int_in_range(40..=120usize)?;
        records.push((keys::audit_leaf(seq).to_vec(), u.bytes(len)?.to_vec()));
        // Some intermediate checkpoints, and always the last one.
        if seq + 1 == n || u.ratio(1, 8)? {
            let cp = Checkpoint { origin: origin.clone(), size: seq + 1, root: frontier.root() }.sign(&key);
            records.push((keys::audit_checkpoint(seq + 1).to_vec(), cp.clone().into_bytes()));
            note = cp;
        }
    }
    let mut f = frontier.size.to_be_bytes().to_vec();
    frontier.hashes.iter().for_each(|h| f.extend_from_slice(h));
    records.push((b"F".to_vec(), f));
    for _ in 0..u.int_in_range(0..=6)? {
        let ino: u64 = u.int_in_range(16..=1 << 20)?;
        let len = u.int_in_range(0..=300usize)?;
        let value = u.bytes(len)?.to_vec();
        records.push(if u.arbitrary()? {
            (keys::inode(ino).to_vec(), value)
        } else {
            (keys::block(ino, u.arbitrary()?).to_vec(), value)
        });
    }
    records.sort();
    records.dedup_by(|a, b| a.0 == b.0);
    let pre = Preamble {
        vault_id,
        audit_public: public,
        created_ns: u.arbitrary()?,
        tree_size: n,
        header,
        checkpoint: note,
    };
    let mut out = pre.encode();
    for (k, v) in &records {
        encode_record(k, v, &mut out);
    }
    out.extend_from_slice(&encode_end(records.len() as u64));
    let mut h = Blake3::new();
    h.update(&out);
    out.extend_from_slice(&key.sign(&signed_message(&h.finalize())));
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let pinned = Expect { pubkey: Some(VerifyingKey(signer().verifying_key().0)), not_older_than: None };
    let _ = verify_bytes(data, &Expect::default());
    let _ = verify_bytes(data, &pinned);
    check_framing(data);

    let mut u = Unstructured::new(data);
    let Ok(archive) = valid_archive(&mut u) else { return };
    if let Err(e) = verify_bytes(&archive, &pinned) {
        panic!("a validly signed archive was refused: {e}");
    }
    check_framing(&archive);
    let mut damaged = archive.clone();
    mutate::damage(&mut u, &mut damaged);
    if damaged != archive {
        assert!(verify_bytes(&damaged, &pinned).is_err(), "a damaged archive verified");
        check_framing(&damaged);
    }
});
