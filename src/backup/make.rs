//! Writing an archive of an unlocked vault: one snapshot, streamed out while
//! the store is frozen, then the end block and the signature.

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Error;
use super::archive::{Preamble, check_record, encode_end, encode_record, signed_message};
use crate::crypto::HashingWriter;
use crate::vault::{Unlocked, Vault};

/// What `write_archive` wrote.
#[derive(Clone, Debug)]
pub struct Made {
    /// The audit log's size in the snapshot (names the `.backup/` file).
    pub tree_size: u64,
    pub records: u64,
    /// Archive bytes, signature included.
    pub bytes: u64,
    /// How long store writes were held back (the snapshot's pause).
    pub pause: Duration,
}

/// Records between two progress calls.
const PROGRESS_EVERY: u64 = 256;

/// Writes an archive of `vault` to `out`. `progress(bytes, records)` is
/// called as it goes. Store writes wait from the snapshot's start until the
/// last record is handed to `out` (buffered): `Made::pause`.
pub fn write_archive<W: Write>(
    vault: &Vault<Unlocked>,
    out: W,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Made, Error> {
    let mut w = HashingWriter::new(BufWriter::with_capacity(1 << 20, out));
    let created_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let header = vault.header();
    let (vault_id, audit_public) = (header.vault_id, header.audit_public);
    let (records, tree_size, pause) = vault.snapshot(|snap| -> Result<_, Error> {
        let start = Instant::now();
        let pre = Preamble {
            vault_id,
            audit_public,
            created_ns,
            tree_size: snap.tree_size(),
            header: snap.header_bytes().to_vec(),
            checkpoint: snap.checkpoint().to_string(),
        };
        w.write_all(&pre.encode())?;
        let mut n = 0u64;
        let mut buf = Vec::with_capacity(70 * 1024);
        for entry in snap.entries() {
            let (k, v) = entry?;
            check_record(&k, v.len()).map_err(|why| {
                Error::Inconsistent(format!("the store holds what no archive can carry: {why}"))
            })?;
            buf.clear();
            encode_record(&k, &v, &mut buf);
            w.write_all(&buf)?;
            n += 1;
            if n % PROGRESS_EVERY == 0 {
                progress(w.written(), n);
            }
        }
        Ok((n, snap.tree_size(), start.elapsed()))
    })?;
    w.write_all(&encode_end(records))?;
    let digest = w.digest();
    let bytes = w.written() + 64;
    let signature = vault.audit_key().sign(&signed_message(&digest));
    let mut inner = w.into_inner();
    inner.write_all(&signature)?;
    inner.flush()?;
    progress(bytes, records);
    Ok(Made { tree_size, records, bytes, pause })
}
