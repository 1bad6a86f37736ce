//! The archive's bytes (docs/FORMAT.md §11), encode and streaming decode.
//! Layout: preamble(magic "VFSBACK\0" ‖ version u16 ‖ flags u64 ‖ vault id(16) ‖
//! audit public key(32) ‖ created ns u64 ‖ tree size u64 ‖ header len u32 ‖ header ‖
//! note len u32 ‖ note) ‖ records(0x01 ‖ key len u8 ‖ key ‖ value len u32 ‖ value)* ‖
//! end(0x00 ‖ record count u64) ‖ Ed25519 signature(64) over
//! "vaultfs/v1/backup-archive\0" ‖ BLAKE3(every byte before the signature).
//!
//! The decoder checks framing only (bounds, order, key shapes, exact end);
//! what the bytes mean (header, checkpoint, signature) is `verify`'s.

use std::io::Read;

use super::Error;
use crate::crypto::Blake3;
use crate::format::keys;

pub const MAGIC: &[u8; 8] = b"VFSBACK\0";
pub const VERSION: u16 = 1;
/// Flags this build knows: none. Any set bit is refused.
pub const FLAGS_KNOWN: u64 = 0;
/// Largest vault header accepted (a header with 32 slots of 4 KiB parameters is ~134 KiB).
pub const MAX_HEADER: u32 = 256 * 1024;
/// Largest checkpoint note accepted (as the audit layer's own bound).
pub const MAX_NOTE: u32 = 64 * 1024;
/// Largest store value accepted: above the largest the format writes (a
/// carried run of blocks: 1 MiB of plaintext as records, 1 MiB + 1/64 at
/// most; a header, ~134 KiB at most).
pub const MAX_VALUE: u32 = 2 * 1024 * 1024;
pub const TAG_RECORD: u8 = 0x01;
pub const TAG_END: u8 = 0x00;
pub const SIGNATURE_LEN: usize = 64;
/// Prefix of the signed message: a NUL byte, so that no archive signature can
/// ever verify as a checkpoint note (notes are text without control bytes).
pub const SIGNING_CONTEXT: &[u8] = b"vaultfs/v1/backup-archive\0";
/// Bytes of the preamble before the header.
pub const FIXED_PREAMBLE: usize = 86;

/// Everything before the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preamble {
    pub vault_id: [u8; 16],
    pub audit_public: [u8; 32],
    /// When the snapshot was taken, ns since the Unix epoch.
    pub created_ns: u64,
    /// Leaves in the audit log of the snapshot (= the checkpoint's size).
    pub tree_size: u64,
    /// The store's `H` value: the vault header, byte for byte.
    pub header: Vec<u8>,
    /// The signed checkpoint note over the snapshot's audit log.
    pub checkpoint: String,
}

impl Preamble {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_PREAMBLE + self.header.len() + 4 + self.checkpoint.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&0u64.to_be_bytes());
        out.extend_from_slice(&self.vault_id);
        out.extend_from_slice(&self.audit_public);
        out.extend_from_slice(&self.created_ns.to_be_bytes());
        out.extend_from_slice(&self.tree_size.to_be_bytes());
        out.extend_from_slice(&(self.header.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&(self.checkpoint.len() as u32).to_be_bytes());
        out.extend_from_slice(self.checkpoint.as_bytes());
        out
    }
}

/// The length a store key of type `t` must have, None for a type this
/// version does not know (docs/FORMAT.md §2).
pub fn key_len(t: u8) -> Option<usize> {
    Some(match t {
        b'H' | b'C' | b'E' | b'F' | b'G' | b'L' | b'V' | b'W' => 1,
        keys::ROTATION => 2,
        keys::AUDIT_SLOT => 3,
        keys::INODE | keys::ORPHAN | keys::AUDIT_LEAF | keys::AUDIT_CHECKPOINT | keys::TOMBSTONE => 9,
        keys::AUDIT_NODE => 10,
        keys::AUDIT_LEAVES => 13,
        keys::BLOCK => 17,
        keys::XATTR => 25,
        keys::DIRENT => 34,
        _ => return None,
    })
}

/// Whether a store entry can go into an archive: a known key shape, a bounded value.
pub fn check_record(key: &[u8], value_len: usize) -> Result<(), String> {
    let Some(&t) = key.first() else { return Err("an empty store key".into()) };
    match key_len(t) {
        None => Err(format!("store key type 0x{t:02x} is unknown to this version")),
        Some(n) if n != key.len() => {
            Err(format!("store key type '{}' must be {n} bytes, not {}", char::from(t), key.len()))
        }
        Some(_) if value_len > MAX_VALUE as usize => {
            Err(format!("a value of {value_len} bytes (at most {MAX_VALUE})"))
        }
        Some(_) => Ok(()),
    }
}

/// One record's bytes.
pub fn encode_record(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(TAG_RECORD);
    out.push(key.len() as u8);
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

/// The end block: after the last record, before the signature.
pub fn encode_end(count: u64) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = TAG_END;
    out[1..].copy_from_slice(&count.to_be_bytes());
    out
}

/// What the archive's signature signs, given the digest of every byte before it.
pub fn signed_message(digest: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + 32);
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(digest);
    m
}

/// One store entry: (key, value).
pub type Record = (Vec<u8>, Vec<u8>);

/// What follows the last record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub count: u64,
    /// BLAKE3 of every byte before the signature.
    pub digest: [u8; 32],
    pub signature: [u8; SIGNATURE_LEN],
    /// Total bytes of the archive.
    pub len: u64,
}

/// Streaming decoder: `open` reads the preamble, `next` each record, and
/// the end block is followed by `finish`'s signature and end of input.
pub struct Reader<R> {
    inner: R,
    hash: Blake3,
    offset: u64,
    count: u64,
    last_key: Option<Vec<u8>>,
    ended: bool,
}

fn truncated(what: &'static str, offset: u64) -> Error {
    Error::Truncated { what, offset }
}

fn malformed(offset: u64, what: impl Into<String>) -> Error {
    Error::Malformed { offset, what: what.into() }
}

impl<R: Read> Reader<R> {
    /// Reads and checks the preamble's framing.
    pub fn open(inner: R) -> Result<(Self, Preamble), Error> {
        let mut r = Reader { inner, hash: Blake3::new(), offset: 0, count: 0, last_key: None, ended: false };
        let mut magic = [0u8; 8];
        r.fill(&mut magic, "the magic")?;
        if &magic != MAGIC {
            return Err(Error::NotArchive);
        }
        let version = u16::from_be_bytes(r.array("the version")?);
        if version != VERSION {
            return Err(Error::Version(version));
        }
        let flags = u64::from_be_bytes(r.array("the flags")?);
        if flags & !FLAGS_KNOWN != 0 {
            return Err(Error::Flags(flags));
        }
        let vault_id = r.array("the vault id")?;
        let audit_public = r.array("the public key")?;
        let created_ns = u64::from_be_bytes(r.array("the creation time")?);
        let tree_size = u64::from_be_bytes(r.array("the tree size")?);
        let at = r.offset;
        let header_len = u32::from_be_bytes(r.array("the header length")?);
        if header_len == 0 || header_len > MAX_HEADER {
            return Err(malformed(at, format!("header length {header_len} is outside 1..={MAX_HEADER}")));
        }
        let header = r.vec(header_len as usize, "the vault header")?;
        let at = r.offset;
        let note_len = u32::from_be_bytes(r.array("the checkpoint length")?);
        if note_len == 0 || note_len > MAX_NOTE {
            return Err(malformed(at, format!("checkpoint length {note_len} is outside 1..={MAX_NOTE}")));
        }
        let note = r.vec(note_len as usize, "the checkpoint")?;
        let checkpoint =
            String::from_utf8(note).map_err(|_| malformed(at + 4, "the checkpoint is not UTF-8"))?;
        Ok((r, Preamble { vault_id, audit_public, created_ns, tree_size, header, checkpoint }))
    }

    /// Bytes consumed so far.
    #[cfg(any(test, feature = "internals"))]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next record, or None once the end block has been read.
    pub fn next_record(&mut self) -> Result<Option<Record>, Error> {
        if self.ended {
            return Ok(None);
        }
        let at = self.offset;
        match self.array::<1>("a record tag")?[0] {
            TAG_END => {
                let count = u64::from_be_bytes(self.array("the record count")?);
                if count != self.count {
                    return Err(malformed(
                        at,
                        format!("the end says {count} records, but {} came", self.count),
                    ));
                }
                self.ended = true;
                Ok(None)
            }
            TAG_RECORD => {
                let key_len = self.array::<1>("a key length")?[0] as usize;
                let key = self.vec(key_len, "a store key")?;
                let value_len = u32::from_be_bytes(self.array("a value length")?) as usize;
                check_record(&key, value_len)
                    .map_err(|why| malformed(at, format!("record {}: {why}", self.count)))?;
                if self.last_key.as_ref().is_some_and(|last| *last >= key) {
                    return Err(malformed(
                        at,
                        format!("record {}: keys out of order or repeated", self.count),
                    ));
                }
                let value = self.vec(value_len, "a store value")?;
                self.count += 1;
                self.last_key = Some(key.clone());
                Ok(Some((key, value)))
            }
            t => Err(malformed(at, format!("unknown record tag 0x{t:02x}"))),
        }
    }

    /// After the end block: the signature, then nothing.
    pub fn finish(mut self) -> Result<Trailer, Error> {
        if !self.ended {
            return Err(malformed(self.offset, "finish before the end block"));
        }
        let digest = self.hash.finalize();
        let mut signature = [0u8; SIGNATURE_LEN];
        read_exact(&mut self.inner, &mut signature).map_err(|e| match e {
            ReadErr::Eof => truncated("the signature", self.offset),
            ReadErr::Io(e) => Error::Io(e.to_string()),
        })?;
        self.offset += SIGNATURE_LEN as u64;
        let mut extra = [0u8; 1];
        match read_exact(&mut self.inner, &mut extra) {
            Err(ReadErr::Eof) => {}
            Ok(()) => return Err(Error::Trailing(self.offset)),
            Err(ReadErr::Io(e)) => return Err(Error::Io(e.to_string())),
        }
        Ok(Trailer { count: self.count, digest, signature, len: self.offset })
    }

    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), Error> {
        read_exact(&mut self.inner, buf).map_err(|e| match e {
            ReadErr::Eof => truncated(what, self.offset),
            ReadErr::Io(e) => Error::Io(e.to_string()),
        })?;
        self.hash.update(buf);
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        self.fill(&mut a, what)?;
        Ok(a)
    }

    /// `n` bytes; `n` is bounded by the caller before anything is allocated.
    fn vec(&mut self, n: usize, what: &'static str) -> Result<Vec<u8>, Error> {
        let mut v = vec![0u8; n];
        self.fill(&mut v, what)?;
        Ok(v)
    }
}

enum ReadErr {
    Eof,
    Io(std::io::Error),
}

/// `read_exact` that tells a clean end of input from an I/O error.
fn read_exact(r: &mut impl Read, mut buf: &mut [u8]) -> Result<(), ReadErr> {
    while !buf.is_empty() {
        match r.read(buf) {
            Ok(0) => return Err(ReadErr::Eof),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadErr::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preamble() -> Preamble {
        Preamble {
            vault_id: [1; 16],
            audit_public: [2; 32],
            created_ns: 3,
            tree_size: 4,
            header: vec![5; 10],
            checkpoint: "note\n".into(),
        }
    }

    fn archive(records: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = preamble().encode();
        for (k, v) in records {
            encode_record(k, v, &mut out);
        }
        out.extend_from_slice(&encode_end(records.len() as u64));
        out.extend_from_slice(&[9; 64]);
        out
    }

    fn decode(bytes: &[u8]) -> Result<(Preamble, Vec<Record>, Trailer), Error> {
        let (mut r, p) = Reader::open(bytes)?;
        let mut recs = Vec::new();
        while let Some(rec) = r.next_record()? {
            recs.push(rec);
        }
        Ok((p, recs, r.finish()?))
    }

    #[test]
    fn round_trip() {
        let a = archive(&[(b"C", &[0; 8]), (b"H", b"header"), (&keys::inode(16), b"x")]);
        let (p, recs, t) = decode(&a).unwrap();
        assert_eq!(p, preamble());
        assert_eq!(recs.len(), 3);
        assert_eq!(t.count, 3);
        assert_eq!(t.signature, [9; 64]);
        assert_eq!(t.len, a.len() as u64);
        let mut h = Blake3::new();
        h.update(&a[..a.len() - 64]);
        assert_eq!(t.digest, h.finalize());
    }

    #[test]
    fn framing_errors_are_named() {
        let good = archive(&[(b"C", &[0; 8]), (b"H", b"h")]);
        let err = |bytes: &[u8]| decode(bytes).unwrap_err().to_string();
        assert!(err(&good[..good.len() - 1]).contains("truncated"), "{}", err(&good[..good.len() - 1]));
        assert!(err(&good[..40]).contains("truncated"));
        let mut long = good.clone();
        long.push(0);
        assert!(err(&long).contains("after its signature"), "{}", err(&long));
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(err(&bad).contains("not a vaultfs backup"));
        let mut bad = good.clone();
        bad[9] = 2;
        assert!(err(&bad).contains("version 2"));
        let mut bad = good.clone();
        bad[17] = 1;
        assert!(err(&bad).contains("flags"));
        let out_of_order = archive(&[(b"H", b"h"), (b"C", &[0; 8])]);
        assert!(err(&out_of_order).contains("out of order"), "{}", err(&out_of_order));
        let repeated = archive(&[(b"H", b"h"), (b"H", b"h")]);
        assert!(err(&repeated).contains("out of order or repeated"));
        let unknown = archive(&[(b"Q", b"h")]);
        assert!(err(&unknown).contains("unknown"), "{}", err(&unknown));
        let wrong_len = archive(&[(b"I\0\0", b"h")]);
        assert!(err(&wrong_len).contains("must be 9 bytes"), "{}", err(&wrong_len));
        // A huge length is refused before anything is allocated.
        let mut huge = preamble().encode();
        huge[82..86].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(err(&huge).contains("header length"), "{}", err(&huge));
    }
}
