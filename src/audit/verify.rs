//! Verifiers. [`verify_export`] checks an `.audit` file from the public key
//! alone (what `vaultfs audit verify` and any third party run);
//! [`ChainVerifier`] checks every stored checkpoint against every stored
//! leaf in one pass (what the store-side verifier and `fsck` run).
//!
//! Both stop at the first problem and say where it is; neither panics on any
//! input.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::Error;
use super::archive::{self, Base};
use super::checkpoint::Checkpoint;
use super::export::{self, Line};
use super::leaf::{Leaf, Op};
use super::merkle::{self, Frontier, Hash};
use crate::crypto::VerifyingKey;

/// The verifier's reply to the offline check: what was verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The tree size the checkpoint signs (= index of the file's last leaf + 1).
    pub leaves: u64,
    /// The recomputed root (= the checkpoint's root).
    pub root: Hash,
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
    /// The base line, for a file that starts after leaf 0.
    pub base: Option<Base>,
    /// The tree at the end of the file (what the next file of a chain starts from).
    pub frontier: Frontier,
    /// The `archive` records in the file: leaves `first..end` went to the
    /// archive file named, with this BLAKE3.
    pub archived: Vec<Archived>,
}

/// An `archive` record (audit op 35) found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archived {
    pub first: u64,
    pub end: u64,
    pub file: String,
    pub blake3: Hash,
}

impl Report {
    /// Index of the file's first leaf.
    pub fn first(&self) -> u64 {
        self.base.as_ref().map_or(0, |b| b.frontier.size)
    }
}

/// Verifies an `.audit` export: every leaf line is internally consistent and
/// in order (from index 0, or from the base line's size), the final
/// checkpoint is signed by `key` and commits to exactly these leaves, and a
/// file that starts after leaf 0 holds the `archive` record that moved the
/// leaves before it out (cutting the front off a log leaves no such record).
pub fn verify_export(text: &[u8], key: &VerifyingKey) -> Result<Report, Error> {
    if text.is_empty() {
        return Err(Error::NotExport("the file is empty".into()));
    }
    // Every line, the checkpoint's included, ends in '\n'.
    let Some(body) = text.strip_suffix(b"\n") else {
        let n = text.iter().filter(|&&b| b == b'\n').count() + 1;
        return Err(Error::CheckpointLine(format!("line {n} does not end in a newline (truncated?)")));
    };
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let mut frontier = Frontier::default();
    let mut base = None;
    let mut archived = Vec::new();
    for (n, raw) in lines.iter().enumerate() {
        let pos = frontier.size;
        let parsed =
            std::str::from_utf8(raw).map_err(|_| "not UTF-8 text".to_string()).and_then(export::parse_line);
        match parsed {
            Err(problem) if n == 0 => return Err(Error::NotExport(format!("line 1 is {problem}"))),
            Err(problem) => return Err(Error::Leaf { index: pos, problem }),
            Ok(Line::Base(b)) if n == 0 => {
                frontier = b.frontier.clone();
                base = Some(b);
            }
            Ok(Line::Base(_)) => {
                return Err(Error::Leaf { index: pos, problem: format!("line {} is a base line", n + 1) });
            }
            Ok(Line::Checkpoint(_)) if n + 1 != lines.len() => {
                return Err(Error::CheckpointLine(format!(
                    "line {} is a checkpoint but not the last line",
                    n + 1
                )));
            }
            Ok(Line::Checkpoint(note)) => {
                let (root, checkpoint) = finish(&frontier, &note, key)?;
                if let Some(b) = &base
                    && !archived.iter().any(|a: &Archived| a.end == b.frontier.size)
                {
                    return Err(Error::NotExport(format!(
                        "the file starts at leaf {} but holds no archive record that moved the leaves before it",
                        b.frontier.size
                    )));
                }
                return Ok(Report { leaves: frontier.size, root, checkpoint, base, frontier, archived });
            }
            Ok(Line::Leaf(fields)) => {
                let (hash, leaf) =
                    check_leaf(pos, &fields).map_err(|problem| Error::Leaf { index: pos, problem })?;
                if leaf.op == Op::Archive
                    && leaf.result == 0
                    && let Some((file, blake3)) = archive::parse_record_path(&leaf.path)
                {
                    let end = leaf.offset.saturating_add(leaf.len);
                    archived.push(Archived { first: leaf.offset, end, file, blake3 });
                }
                frontier.append(hash);
            }
        }
    }
    Err(Error::CheckpointLine("missing: the last line is not a checkpoint".into()))
}

fn finish(frontier: &Frontier, note: &str, key: &VerifyingKey) -> Result<(Hash, Checkpoint), Error> {
    let checkpoint = Checkpoint::parse_and_verify(note, None, key)?;
    if checkpoint.size != frontier.size {
        return Err(Error::Coverage { covered: checkpoint.size, present: frontier.size });
    }
    let root = frontier.root();
    if checkpoint.root != root {
        return Err(Error::RootMismatch { size: frontier.size });
    }
    Ok((root, checkpoint))
}

/// What a chain of files covers (see [`verify_files`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilesReport {
    /// The first leaf of the first file (0 for a chain from the start).
    pub first: u64,
    /// Tree size the last file's checkpoint signs.
    pub leaves: u64,
    pub root: Hash,
    /// The last file's checkpoint.
    pub checkpoint: Checkpoint,
    /// The tree at the end of the last file.
    pub frontier: Frontier,
}

/// Verifies archive files and a live `.audit` copy as one log: each file on
/// its own ([`verify_export`]), each starting exactly where the one before
/// ends (same tree: the base line's frontier is the tree the previous file's
/// checkpoint signed), all under one origin, and every file but the last
/// byte for byte the one the vault wrote (its BLAKE3 is in the `archive`
/// record of a later file). `files` are (name for messages, bytes), oldest first.
pub fn verify_files(files: &[(String, Vec<u8>)], key: &VerifyingKey) -> Result<FilesReport, Error> {
    let mut reports: Vec<Report> = Vec::with_capacity(files.len());
    for (name, text) in files {
        let r = verify_export(text, key)
            .map_err(|e| Error::File { file: name.clone(), problem: e.to_string() })?;
        if let Some(prev) = reports.last() {
            let problem = if r.checkpoint.origin != prev.checkpoint.origin {
                Some(format!(
                    "its checkpoint is for {:?}, the previous file's for {:?}",
                    r.checkpoint.origin, prev.checkpoint.origin
                ))
            } else if r.first() != prev.leaves {
                Some(format!("it starts at leaf {} but the previous file ends at {}", r.first(), prev.leaves))
            } else if r.base.as_ref().map(|b| &b.frontier) != Some(&prev.frontier) {
                Some("it continues another tree than the previous file's".to_string())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(Error::File { file: name.clone(), problem });
            }
        }
        reports.push(r);
    }
    let Some(last) = reports.last() else { return Err(Error::NotExport("no files given".into())) };
    for (i, (r, (name, text))) in reports.iter().zip(files).enumerate().take(files.len() - 1) {
        let digest = crate::crypto::blake3_of(text);
        let records: Vec<&Archived> = reports[i + 1..]
            .iter()
            .flat_map(|l| &l.archived)
            .filter(|a| a.first == r.first() && a.end == r.leaves)
            .collect();
        if records.is_empty() {
            return Err(Error::File {
                file: name.clone(),
                problem: format!("no later file records archiving leaves {}..{}", r.first(), r.leaves),
            });
        }
        if !records.iter().any(|a| a.blake3 == digest) {
            return Err(Error::File {
                file: name.clone(),
                problem: "its BLAKE3 is not the one the vault recorded when it wrote the archive (altered?)"
                    .into(),
            });
        }
    }
    Ok(FilesReport {
        first: reports[0].first(),
        leaves: last.leaves,
        root: last.root,
        checkpoint: last.checkpoint.clone(),
        frontier: last.frontier.clone(),
    })
}

/// The root of the first `size` leaves, from files [`verify_files`] has
/// accepted (the one holding leaf `size - 1` is read up to it).
pub fn root_in_files(files: &[(String, Vec<u8>)], key: &VerifyingKey, size: u64) -> Result<Hash, Error> {
    for (name, text) in files {
        let r = verify_export(text, key)
            .map_err(|e| Error::File { file: name.clone(), problem: e.to_string() })?;
        if !(r.first()..=r.leaves).contains(&size) {
            continue;
        }
        let mut frontier = r.base.map(|b| b.frontier).unwrap_or_default();
        for line in text.split(|&b| b == b'\n') {
            if frontier.size == size {
                break;
            }
            if let Ok(Line::Leaf(fields)) =
                std::str::from_utf8(line).map_err(|_| String::new()).and_then(export::parse_line)
            {
                // Verified above: every leaf line is well formed.
                frontier.append(
                    check_leaf(frontier.size, &fields)
                        .map_err(|problem| Error::Leaf { index: frontier.size, problem })?
                        .0,
                );
            }
        }
        return Ok(frontier.root());
    }
    Err(Error::NotExport(format!("no file given holds the tree of {size} leaves")))
}

/// Checks one leaf line at position `pos`; returns its leaf hash.
fn check_leaf(pos: u64, fields: &[(String, Value)]) -> Result<(Hash, Leaf), String> {
    let get = |k: &str| fields.iter().find(|(name, _)| name == k).map(|(_, v)| v);
    let index = get("index").ok_or("no \"index\" field")?;
    let index = index.as_u64().ok_or_else(|| format!("index {index} is not an unsigned integer"))?;
    if index != pos {
        return Err(format!("index {index} out of order"));
    }
    let b64 = get("leaf").and_then(Value::as_str).ok_or("no \"leaf\" string")?;
    let bytes = B64.decode(b64).map_err(|_| "\"leaf\" is not base64".to_string())?;
    let leaf = Leaf::decode(&bytes).map_err(|e| e.to_string())?;
    let hash = merkle::leaf_hash(&bytes);
    if get("hash").and_then(Value::as_str) != Some(crate::format::hex(&hash).as_str()) {
        return Err("hash mismatch".into());
    }
    if leaf.seq != pos {
        return Err(format!("seq {} in the leaf bytes does not match its index", leaf.seq));
    }
    let expected = export::fields(&bytes, &leaf);
    for (k, want) in &expected {
        match get(k) {
            None => return Err(format!("field {k:?} is missing")),
            Some(got) if got != want => {
                return Err(format!("field {k:?} is {got} but the leaf bytes say {want}"));
            }
            Some(_) => {}
        }
    }
    if let Some((k, _)) = fields.iter().find(|(k, _)| !expected.iter().any(|(e, _)| e == k)) {
        return Err(format!("unexpected field {k:?}"));
    }
    Ok((hash, leaf))
}

/// What a chain check covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    pub leaves: u64,
    pub root: Hash,
    pub checkpoints: usize,
}

/// Checks a list of (already signature-verified) checkpoints against the
/// log's leaf hashes, fed in order: each checkpoint's root must be the root
/// of the first `size` leaves, sizes must never decrease, and all must share
/// one origin. One frontier pass, O(log n) memory; a checkpoint is checked
/// the moment the leaves reach its size, so errors come in checkpoint order.
pub struct ChainVerifier<'a> {
    checkpoints: &'a [Checkpoint],
    next: usize,
    frontier: Frontier,
}

impl<'a> ChainVerifier<'a> {
    #[cfg(any(test, feature = "internals"))]
    pub fn new(checkpoints: &'a [Checkpoint]) -> Result<Self, Error> {
        Self::starting(checkpoints, Frontier::default())
    }

    /// A chain whose leaves before `frontier.size` are not fed (archived):
    /// checkpoints start at that size.
    pub fn starting(checkpoints: &'a [Checkpoint], frontier: Frontier) -> Result<Self, Error> {
        let mut v = ChainVerifier { checkpoints, next: 0, frontier };
        v.check_reached()?;
        Ok(v)
    }

    /// Feeds the next leaf hash.
    pub fn push(&mut self, leaf: Hash) -> Result<(), Error> {
        self.frontier.append(leaf);
        self.check_reached()
    }

    /// After the last leaf: fails if a checkpoint covers more leaves than were fed.
    pub fn finish(self) -> Result<ChainReport, Error> {
        if let Some(cp) = self.checkpoints.get(self.next) {
            return Err(self.chain_error(
                self.next,
                format!("covers {} leaves but only {} exist", cp.size, self.frontier.size),
            ));
        }
        Ok(ChainReport {
            leaves: self.frontier.size,
            root: self.frontier.root(),
            checkpoints: self.checkpoints.len(),
        })
    }

    /// Checks every checkpoint whose size the leaves have just reached.
    /// Invariant after it returns Ok: the next checkpoint's size is above the
    /// leaf count, so a smaller one is caught when its predecessor is reached.
    fn check_reached(&mut self) -> Result<(), Error> {
        let size = self.frontier.size;
        while let Some(cp) = self.checkpoints.get(self.next) {
            if cp.size > size {
                break;
            }
            if cp.size < size {
                return Err(self.chain_error(self.next, format!("size goes down from {size}")));
            }
            let first = &self.checkpoints[0];
            if cp.origin != first.origin {
                let problem =
                    format!("origin {:?} differs from checkpoint 0's {:?}", cp.origin, first.origin);
                return Err(self.chain_error(self.next, problem));
            }
            if cp.root != self.frontier.root() {
                return Err(
                    self.chain_error(self.next, format!("root does not match the first {size} leaves"))
                );
            }
            self.next += 1;
        }
        Ok(())
    }

    fn chain_error(&self, position: usize, problem: String) -> Error {
        let size = self.checkpoints.get(position).map_or(0, |c| c.size);
        Error::Chain { position, size, problem }
    }
}

/// [`ChainVerifier`] over an in-memory sequence of leaf hashes.
#[cfg(any(test, feature = "internals"))]
pub fn verify_chain(
    checkpoints: &[Checkpoint],
    leaf_hashes: impl IntoIterator<Item = Hash>,
) -> Result<ChainReport, Error> {
    let mut v = ChainVerifier::new(checkpoints)?;
    for h in leaf_hashes {
        v.push(h)?;
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::audit::checkpoint::vault_origin;
    use crate::audit::export::{checkpoint_line, leaf_line};
    use crate::audit::leaf::tests::{arb_leaf, sample};
    use crate::crypto::{Key32, SigningKey};

    fn key() -> SigningKey {
        SigningKey::from_seed(Key32::from_bytes([9; 32]))
    }

    fn origin() -> String {
        vault_origin(&[7; 16])
    }

    /// Leaves renumbered 0.., their lines, and a checkpoint line over all of them.
    fn export_lines(mut leaves: Vec<Leaf>) -> Vec<String> {
        let mut f = Frontier::default();
        let mut lines = Vec::new();
        for (i, l) in leaves.iter_mut().enumerate() {
            l.seq = i as u64;
            f.append(l.hash());
            lines.push(leaf_line(l));
        }
        let cp = Checkpoint { origin: origin(), size: f.size, root: f.root() };
        lines.push(checkpoint_line(&cp.sign(&key())));
        lines
    }

    fn verify(lines: &[String]) -> Result<Report, Error> {
        verify_export(lines.concat().as_bytes(), &key().verifying_key())
    }

    fn n_leaves(n: u64) -> Vec<Leaf> {
        (0..n).map(|i| Leaf { seq: i, ino: 100 + i, ..sample() }).collect()
    }

    fn msg(r: Result<Report, Error>) -> String {
        r.expect_err("should fail").to_string()
    }

    #[test]
    fn accepts_a_good_export() {
        let lines = export_lines(n_leaves(10));
        let r = verify(&lines).unwrap();
        assert_eq!(r.leaves, 10);
        assert_eq!(r.checkpoint.origin, origin());
        // An empty log is a checkpoint line alone.
        assert_eq!(verify(&export_lines(vec![])).unwrap().root, merkle::empty_root());
    }

    #[test]
    fn error_messages_name_the_place() {
        let lines = export_lines(n_leaves(10));
        let vk = key().verifying_key();

        assert_eq!(msg(verify_export(b"", &vk)), "not an audit export: the file is empty");
        assert_eq!(msg(verify_export(b"hello\n", &vk)), "not an audit export: line 1 is not JSON");
        assert_eq!(msg(verify_export(b"\xff\n", &vk)), "not an audit export: line 1 is not UTF-8 text");

        let mut l = lines.clone();
        l.swap(3, 5);
        assert_eq!(msg(verify(&l)), "leaf 3: index 5 out of order");

        let mut l = lines.clone();
        l.remove(9);
        assert_eq!(msg(verify(&l)), "checkpoint covers 10 leaves but the file has 9");

        let mut l = lines.clone();
        l.pop();
        assert_eq!(msg(verify(&l)), "checkpoint: missing: the last line is not a checkpoint");

        let mut l = lines.clone();
        let last = l.pop().unwrap();
        l.insert(4, last);
        assert_eq!(msg(verify(&l)), "checkpoint: line 5 is a checkpoint but not the last line");

        let mut l = lines.clone();
        let cp = l.last_mut().unwrap();
        cp.pop();
        assert_eq!(msg(verify(&l)), "checkpoint: line 11 does not end in a newline (truncated?)");

        let other = SigningKey::from_seed(Key32::from_bytes([1; 32]));
        assert!(
            msg(verify_export(lines.concat().as_bytes(), &other.verifying_key())).contains("wrong key id")
        );

        // Same text, other hash: the human fields may not lie about the bytes either.
        let mut l = lines.clone();
        l[2] = l[2].replace("\"uid\":1000", "\"uid\":0");
        assert_eq!(msg(verify(&l)), "leaf 2: field \"uid\" is 0 but the leaf bytes say 1000");

        let mut l = lines.clone();
        l[6] = l[6].replace("\"hash\":\"", "\"hash\":\"0");
        assert_eq!(msg(verify(&l)), "leaf 6: hash mismatch");

        let mut l = lines.clone();
        l[1] = l[1].replace("}\n", ",\"extra\":1}\n");
        assert_eq!(msg(verify(&l)), "leaf 1: unexpected field \"extra\"");

        let mut l = lines.clone();
        l[1] = l[1].replace("\"ino\":101,", "");
        assert_eq!(msg(verify(&l)), "leaf 1: field \"ino\" is missing");

        let mut l = lines.clone();
        l[0] = l[0].replace("{\"index\":0,", "{\"index\":0,\"index\":0,");
        assert_eq!(msg(verify(&l)), "not an audit export: line 1 is duplicate field \"index\"");

        // A leaf re-signed into a different tree: the checkpoint's root does not match.
        let mut l = lines.clone();
        let mut forged = export_lines(n_leaves(10).into_iter().map(|x| Leaf { uid: 0, ..x }).collect());
        l[10] = forged.pop().unwrap();
        assert!(msg(verify(&l)).starts_with("checkpoint: root does not match"));

        // A leaf whose bytes and fields agree but whose seq is not its index.
        let mut l = export_lines(n_leaves(3));
        let wrong_seq = leaf_line(&Leaf { seq: 5, ..sample() }).replace("\"index\":5", "\"index\":1");
        l[1] = wrong_seq;
        assert_eq!(msg(verify(&l)), "leaf 1: seq 5 in the leaf bytes does not match its index");
    }

    #[test]
    fn garbage_never_panics() {
        let vk = key().verifying_key();
        for text in [
            &b"\n"[..],
            b"\n\n",
            b"{}\n",
            b"{\"index\":18446744073709551616}\n",
            b"{\"index\":-1}\n",
            b"{\"index\":0,\"leaf\":\"AA==\"}\n",
            b"{\"checkpoint\":\"\"}\n",
            b"{\"checkpoint\":\"x\\n99999999999999999999999\\n\"}\n",
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n",
        ] {
            assert!(verify_export(text, &vk).is_err());
        }
    }

    fn cps_at(hashes: &[Hash], sizes: &[u64]) -> Vec<Checkpoint> {
        sizes
            .iter()
            .map(|&s| {
                let mut f = Frontier::default();
                hashes[..s as usize].iter().for_each(|h| {
                    f.append(*h);
                });
                Checkpoint { origin: origin(), size: s, root: f.root() }
            })
            .collect()
    }

    #[test]
    fn chain() {
        let hashes: Vec<Hash> = (0..20u8).map(|i| merkle::leaf_hash(&[i])).collect();
        let good = cps_at(&hashes, &[0, 1, 1, 5, 8, 20]);
        let r = verify_chain(&good, hashes.iter().copied()).unwrap();
        assert_eq!((r.leaves, r.checkpoints), (20, 6));
        assert_eq!(verify_chain(&[], hashes.iter().copied()).unwrap().leaves, 20);

        let err = |cps: &[Checkpoint], n: usize| {
            verify_chain(cps, hashes[..n].iter().copied()).unwrap_err().to_string()
        };
        assert_eq!(err(&good, 19), "checkpoint 5 (size 20): covers 20 leaves but only 19 exist");

        let mut bad = good.clone();
        bad[3].root[0] ^= 1;
        assert_eq!(err(&bad, 20), "checkpoint 3 (size 5): root does not match the first 5 leaves");

        let down = cps_at(&hashes, &[3, 9, 4, 12]);
        assert_eq!(err(&down, 20), "checkpoint 2 (size 4): size goes down from 9");

        let mut bad = good.clone();
        bad[4].origin = "vaultfs/other".into();
        assert!(err(&bad, 20).starts_with("checkpoint 4 (size 8): origin"));

        let mut bad = good.clone();
        bad[0].root = hashes[0];
        assert_eq!(err(&bad, 20), "checkpoint 0 (size 0): root does not match the first 0 leaves");
    }

    /// The line holding byte `at` of the concatenation, and the offset in it.
    fn locate(lines: &[String], mut at: usize) -> (usize, usize) {
        for (i, l) in lines.iter().enumerate() {
            if at < l.len() {
                return (i, at);
            }
            at -= l.len();
        }
        unreachable!("offset inside the text")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn exports_verify_and_any_tamper_is_caught(
            leaves in proptest::collection::vec(arb_leaf(), 0..12),
            pick in any::<proptest::sample::Index>(),
            pick2 in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let lines = export_lines(leaves);
            let n = lines.len() - 1;
            let r = verify(&lines);
            prop_assert!(r.is_ok(), "{:?}", r);
            prop_assert_eq!(r.unwrap().leaves, n as u64);

            if n > 0 {
                // Flip one byte of one leaf's base64.
                let i = pick.index(n);
                let start = lines[i].find("\"leaf\":\"").unwrap() + 8;
                let len = lines[i][start..].find('"').unwrap();
                let at = start + pick2.index(len);
                let mut bytes = lines[i].clone().into_bytes();
                bytes[at] ^= flip;
                let mut text = lines[..i].concat().into_bytes();
                text.extend_from_slice(&bytes);
                text.extend_from_slice(lines[i + 1..].concat().as_bytes());
                prop_assert!(verify_export(&text, &key().verifying_key()).is_err());
            }

            // Delete any one line.
            let mut l = lines.clone();
            l.remove(pick.index(lines.len()));
            prop_assert!(verify(&l).is_err());

            // Swap any two different lines.
            let (a, b) = (pick.index(lines.len()), pick2.index(lines.len()));
            if a != b {
                let mut l = lines.clone();
                l.swap(a, b);
                prop_assert!(verify(&l).is_err());
            }

            // Flip any one byte anywhere: only a change JSON ignores can pass
            // (none exists in our compact lines), and the verdict never panics.
            let total: usize = lines.iter().map(String::len).sum();
            let (li, off) = locate(&lines, pick2.index(total));
            let mut text = lines.concat().into_bytes();
            let at = lines[..li].iter().map(String::len).sum::<usize>() + off;
            text[at] ^= flip;
            let _ = verify_export(&text, &key().verifying_key());
        }
    }
}
