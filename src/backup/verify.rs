//! Checking an archive from its bytes alone (docs/FORMAT.md §11.4): framing,
//! the vault header, the pinned key, the signed checkpoint, the records that
//! can be checked without a key (header copy, frontier, stored checkpoints,
//! leaf numbering), the signature over everything, and the witness.
//!
//! Framing errors stop at once (nothing after them can be read). Problems
//! found in records are reported after the signature check: if the signature
//! fails too, the archive was altered and that is what is reported.

use std::io::Read;

use super::Error;
use super::archive::{Preamble, Reader, Trailer, signed_message};
use crate::audit::checkpoint::{Checkpoint, vault_origin};
use crate::audit::log::{base_frontier, decode_frontier, slot_range};
use crate::crypto::{VerifyingKey, verify};
use crate::format::{Header, hex, keys};

/// What the archive must match beyond its own consistency.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// The vault's audit public key (`--pubkey`): the archive must be signed by it.
    pub pubkey: Option<VerifyingKey>,
    /// A checkpoint note the admin kept (`--not-older-than`): the archive's
    /// log must contain exactly the tree it signed.
    pub not_older_than: Option<String>,
}

/// A verified archive.
#[derive(Debug)]
pub struct Verified {
    pub preamble: Preamble,
    pub header: Header,
    pub checkpoint: Checkpoint,
    pub trailer: Trailer,
    /// Whether the key was pinned by the caller (else: only the header's own key).
    pub key_pinned: bool,
    /// The witness's tree size, when one was given and holds.
    pub witness_size: Option<u64>,
    /// Records by store key type, for the report.
    pub blocks: u64,
    pub inodes: u64,
}

/// Verifies `bytes` as a whole archive (the fuzz target's entry point).
#[cfg(any(test, feature = "internals"))]
pub fn verify_bytes(bytes: &[u8], expect: &Expect) -> Result<Verified, Error> {
    verify_stream(bytes, expect, |_, _| Ok(()))
}

/// Reads and verifies the archive from `input`, handing every record to
/// `each` as it passes the framing checks (before the signature is known:
/// a caller that writes them must discard what it wrote unless this returns Ok).
pub fn verify_stream<R: Read>(
    input: R,
    expect: &Expect,
    mut each: impl FnMut(&[u8], &[u8]) -> Result<(), Error>,
) -> Result<Verified, Error> {
    let (mut reader, pre) = Reader::open(input)?;
    let header = Header::decode(&pre.header).map_err(Error::Header)?;
    let key = VerifyingKey(pre.audit_public);
    if let Some(pinned) = &expect.pubkey
        && *pinned != key
    {
        return Err(Error::OtherVault { expected: hex(&pinned.0), found: hex(&key.0) });
    }
    if header.vault_id != pre.vault_id || header.audit_public != pre.audit_public {
        return Err(Error::Inconsistent(
            "the vault id or audit key in the preamble differs from the vault header's".into(),
        ));
    }
    let origin = vault_origin(&pre.vault_id);
    let cp = Checkpoint::parse_and_verify(&pre.checkpoint, Some(&origin), &key)
        .map_err(|e| Error::Checkpoint(e.to_string()))?;
    if cp.size != pre.tree_size {
        return Err(Error::Inconsistent(format!(
            "the preamble says {} audit records but its checkpoint signs {}",
            pre.tree_size, cp.size
        )));
    }
    let witness = match &expect.not_older_than {
        None => None,
        Some(note) => Some(Checkpoint::parse_and_verify(note, Some(&origin), &key).map_err(|e| {
            Error::Witness(format!(
                "is not a checkpoint of this vault signed by its audit key {} ({e})",
                hex(&key.0)
            ))
        })?),
    };

    let mut check = RecordChecks::new(&pre, &cp, witness.as_ref(), header.block_size);
    while let Some((k, v)) = reader.next_record()? {
        check.record(&k, &v);
        each(&k, &v)?;
    }
    let trailer = reader.finish()?;
    if verify(&key, &signed_message(&trailer.digest), &trailer.signature).is_err() {
        return Err(Error::Signature);
    }
    let RecordChecks { problem, blocks, inodes, .. } = check.finish();
    if let Some(p) = problem {
        return Err(p);
    }
    let witness_size = match witness {
        None => None,
        Some(w) if w.size > cp.size => return Err(Error::Older { archive: cp.size, witness: w.size }),
        Some(w) => Some(w.size),
    };
    Ok(Verified {
        preamble: pre,
        header,
        checkpoint: cp,
        trailer,
        key_pinned: expect.pubkey.is_some(),
        witness_size,
        blocks,
        inodes,
    })
}

/// The per-record checks that need no key.
struct RecordChecks<'a> {
    pre: &'a Preamble,
    cp: &'a Checkpoint,
    key: VerifyingKey,
    origin: String,
    witness: Option<&'a Checkpoint>,
    /// The first problem found.
    problem: Option<Error>,
    seen_header: bool,
    seen_counter: bool,
    seen_frontier: bool,
    seen_checkpoint: bool,
    witness_found: bool,
    next_leaf: u64,
    /// The audit archive base: records before it are in archive files.
    audit_base: u64,
    block_size: u32,
    blocks: u64,
    inodes: u64,
}

impl<'a> RecordChecks<'a> {
    fn new(pre: &'a Preamble, cp: &'a Checkpoint, witness: Option<&'a Checkpoint>, block_size: u32) -> Self {
        RecordChecks {
            pre,
            cp,
            key: VerifyingKey(pre.audit_public),
            origin: vault_origin(&pre.vault_id),
            witness,
            problem: None,
            seen_header: false,
            seen_counter: false,
            seen_frontier: false,
            seen_checkpoint: false,
            witness_found: false,
            next_leaf: 0,
            audit_base: 0,
            block_size,
            blocks: 0,
            inodes: 0,
        }
    }

    fn fail(&mut self, e: Error) {
        if self.problem.is_none() {
            self.problem = Some(e);
        }
    }

    fn inconsistent(&mut self, why: String) {
        self.fail(Error::Inconsistent(why));
    }

    fn record(&mut self, k: &[u8], v: &[u8]) {
        match k[0] {
            b'H' => {
                self.seen_header = true;
                if v != self.pre.header {
                    self.inconsistent("the stored vault header differs from the preamble's".into());
                }
            }
            b'C' => {
                self.seen_counter = true;
                if v.len() != 8 {
                    self.inconsistent("the inode counter is not 8 bytes".into());
                }
            }
            b'F' => {
                self.seen_frontier = true;
                match decode_frontier(v).ok() {
                    Some(f) if f.size == self.cp.size && f.root() == self.cp.root => {}
                    Some(f) => self.inconsistent(format!(
                        "the stored audit frontier (tree size {}) is not the tree the checkpoint signs",
                        f.size
                    )),
                    None => self.inconsistent("the stored audit frontier does not decode".into()),
                }
            }
            keys::AUDIT_CHECKPOINT => self.stored_checkpoint(k, v),
            b'E' => match base_frontier(v) {
                // The archived log starts at its base (sorted before the chunks).
                Ok(f) if self.next_leaf == 0 || self.next_leaf == f.size => {
                    self.next_leaf = f.size;
                    self.audit_base = f.size;
                }
                Ok(f) => {
                    self.inconsistent(format!("audit records before the archive base {} are stored", f.size))
                }
                Err(_) => self.inconsistent("the audit archive base does not decode".into()),
            },
            keys::AUDIT_LEAF => {
                let seq = keys::audit_number(k).expect("the framing checked the key length");
                if seq != self.next_leaf {
                    let n = self.next_leaf;
                    self.inconsistent(format!("audit record {n} is missing"));
                }
                self.next_leaf = seq.saturating_add(1);
            }
            keys::AUDIT_LEAVES => {
                let (first, count) = keys::audit_leaves_range(k).expect("the framing checked the key length");
                if first != self.next_leaf || count == 0 {
                    let n = self.next_leaf;
                    self.inconsistent(format!("audit record {n} is missing"));
                }
                self.next_leaf = first.saturating_add(u64::from(count));
            }
            // Slots sort after the chunks; the snapshot was taken right after
            // a commit packed them all, so each must be stale.
            keys::AUDIT_SLOT => match slot_range(v) {
                Some((first, count)) if first.saturating_add(u64::from(count)) <= self.next_leaf => {}
                _ => self.inconsistent("an audit slot holds records the archived chunks do not".into()),
            },
            keys::AUDIT_NODE if v.len() != 32 => {
                self.inconsistent("an audit tree node is not 32 bytes".into());
            }
            // A carried run holds its records back to back (FORMAT.md 11.3).
            keys::BLOCK => self.blocks += crate::block::carried_blocks(self.block_size, v.len()),
            keys::INODE => self.inodes += 1,
            _ => {}
        }
    }

    fn stored_checkpoint(&mut self, k: &[u8], v: &[u8]) {
        let size = keys::audit_number(k).expect("the framing checked the key length");
        let Ok(note) = std::str::from_utf8(v) else {
            return self.inconsistent(format!("the stored checkpoint of size {size} is not UTF-8"));
        };
        let cp = match Checkpoint::parse_and_verify(note, Some(&self.origin), &self.key) {
            Ok(cp) => cp,
            Err(e) => return self.inconsistent(format!("the stored checkpoint of size {size}: {e}")),
        };
        if cp.size != size || size > self.cp.size {
            return self
                .inconsistent(format!("a checkpoint of size {} is stored under size {size}", cp.size));
        }
        if size == self.cp.size {
            self.seen_checkpoint = true;
            if cp.root != self.cp.root {
                self.inconsistent("two checkpoints of the snapshot's size disagree".into());
            }
        }
        if let Some(w) = self.witness
            && w.size == size
        {
            if w.root == cp.root {
                self.witness_found = true;
            } else {
                self.fail(Error::Fork(format!("its tree of {size} records has another root")));
            }
        }
    }

    fn finish(mut self) -> Self {
        if !self.seen_header {
            self.inconsistent("no vault header record".into());
        }
        if !self.seen_counter {
            self.inconsistent("no inode counter record".into());
        }
        if !self.seen_frontier {
            self.inconsistent("no audit frontier record".into());
        }
        if !self.seen_checkpoint {
            self.inconsistent(format!("no stored checkpoint of the snapshot's size {}", self.cp.size));
        }
        if self.next_leaf != self.cp.size {
            let (n, s) = (self.next_leaf, self.cp.size);
            self.inconsistent(format!("{n} audit records are stored, the checkpoint signs {s}"));
        }
        // A witness from before the audit archive base is checked by size
        // alone, as a mount checks its anchors (docs/AUDIT.md, "Archives").
        if let Some(w) = self.witness
            && w.size <= self.cp.size
            && w.size >= self.audit_base
            && !self.witness_found
        {
            let why = if w.size == self.cp.size {
                "its tree of the same size has another root".to_string()
            } else {
                format!(
                    "it holds no checkpoint of size {} (every checkpoint the vault signs is stored in it)",
                    w.size
                )
            };
            self.fail(Error::Fork(why));
        }
        self
    }
}
