//! What an export that does not start at leaf 0 carries (docs/AUDIT.md,
//! "Archives"): its first line, the *base line*, gives the frontier of the
//! leaves before it (their tree's perfect subtrees: enough to go on hashing
//! and to check the final checkpoint) and names the archive files that hold
//! them. An archive file is itself such an export: the base line if it does
//! not start at 0, its leaves, and a checkpoint over the tree up to its last
//! leaf.
//!
//! The frontier is bound by the checkpoint (the root is computed from it);
//! the list of archives is for people and tools to find the files, and each
//! file is bound by the `archive` record the vault appended when it wrote it
//! (its BLAKE3 is in the record's path).

use serde_json::Value;

use super::merkle::{Frontier, Hash};
use crate::format::{hex, unhex_array};

/// One archive file named by a base line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveRef {
    /// The leaves it holds: `first..end`.
    pub first: u64,
    pub end: u64,
    /// Its file name (no directory).
    pub file: String,
    /// BLAKE3 of the whole file.
    pub blake3: Hash,
}

/// The first line of an export that starts at leaf `frontier.size` > 0
/// (the empty base: nothing archived).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Base {
    pub frontier: Frontier,
    /// Archive files holding the leaves before, oldest first.
    pub archives: Vec<ArchiveRef>,
}

impl Base {
    /// `{"base":N,"frontier":[...],"archives":[...]}\n`.
    pub fn line(&self) -> String {
        let frontier: Vec<Value> = self.frontier.hashes.iter().map(|h| hex(h).into()).collect();
        let archives: Vec<String> = self
            .archives
            .iter()
            .map(|a| {
                format!(
                    "{{\"first\":{},\"end\":{},\"file\":{},\"blake3\":\"{}\"}}",
                    a.first,
                    a.end,
                    Value::from(a.file.as_str()),
                    hex(&a.blake3)
                )
            })
            .collect();
        format!(
            "{{\"base\":{},\"frontier\":{},\"archives\":[{}]}}\n",
            self.frontier.size,
            Value::Array(frontier),
            archives.join(",")
        )
    }

    /// Parses a base line's fields (already split, duplicates refused).
    pub fn from_fields(fields: &[(String, Value)]) -> Result<Base, String> {
        expect_keys(fields, &["base", "frontier", "archives"], "base line")?;
        let get = |k: &str| fields.iter().find(|(name, _)| name == k).map(|(_, v)| v).expect("checked");
        let size = get("base").as_u64().filter(|&n| n > 0).ok_or("\"base\" is not a positive integer")?;
        let hashes = get("frontier")
            .as_array()
            .ok_or("\"frontier\" is not an array")?
            .iter()
            .map(|h| h.as_str().and_then(lower_hex).ok_or("a frontier hash is not 64 lowercase hex digits"))
            .collect::<Result<Vec<Hash>, _>>()?;
        let frontier = Frontier { size, hashes };
        if !frontier.is_well_formed() {
            return Err(format!("the frontier of {size} leaves must have {} hashes", size.count_ones()));
        }
        let mut archives = Vec::new();
        for a in get("archives").as_array().ok_or("\"archives\" is not an array")? {
            let Value::Object(m) = a else { return Err("an archive entry is not an object".into()) };
            let pairs: Vec<(String, Value)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            expect_keys(&pairs, &["first", "end", "file", "blake3"], "archive entry")?;
            let first = m["first"].as_u64().ok_or("an archive's \"first\" is not an integer")?;
            let end = m["end"]
                .as_u64()
                .filter(|&e| e > first)
                .ok_or("an archive's \"end\" is not after its first")?;
            let file = m["file"].as_str().ok_or("an archive's \"file\" is not a string")?.to_string();
            let blake3 = m["blake3"]
                .as_str()
                .and_then(lower_hex)
                .ok_or("an archive's \"blake3\" is not 64 lowercase hex digits")?;
            archives.push(ArchiveRef { first, end, file, blake3 });
        }
        Ok(Base { frontier, archives })
    }
}

/// 32 bytes as exactly 64 lowercase hex digits (one encoding per hash).
fn lower_hex(s: &str) -> Option<Hash> {
    let h = *unhex_array::<32>(s, "audit base line", "hash").ok()?;
    (hex(&h) == s).then_some(h)
}

fn expect_keys(fields: &[(String, Value)], want: &[&str], what: &str) -> Result<(), String> {
    if let Some((k, _)) = fields.iter().find(|(k, _)| !want.contains(&k.as_str())) {
        return Err(format!("unexpected field {k:?} in the {what}"));
    }
    if let Some(k) = want.iter().find(|w| !fields.iter().any(|(k, _)| k == *w)) {
        return Err(format!("field {k:?} is missing from the {what}"));
    }
    Ok(())
}

/// The `path` of an `archive` record: `archive FILE blake3 HEX`.
pub fn record_path(file: &str, blake3: &Hash) -> Vec<u8> {
    format!("archive {file} blake3 {}", hex(blake3)).into_bytes()
}

/// The file name and BLAKE3 an `archive` record's path names.
pub fn parse_record_path(path: &[u8]) -> Option<(String, Hash)> {
    let s = std::str::from_utf8(path).ok()?.strip_prefix("archive ")?;
    let (file, digest) = s.rsplit_once(" blake3 ")?;
    Some((file.to_string(), lower_hex(digest)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::export::{Line, parse_line};
    use crate::audit::merkle;

    fn base(n: u64) -> Base {
        let mut frontier = Frontier::default();
        for i in 0..n {
            frontier.append(merkle::leaf_hash(&[i as u8]));
        }
        let archives =
            vec![ArchiveRef { first: 0, end: n, file: "audit \"one\".vfsaudit".into(), blake3: [7; 32] }];
        Base { frontier, archives }
    }

    #[test]
    fn base_lines_round_trip() {
        for n in [1, 2, 5, 255, 256, 1000] {
            let b = base(n);
            let line = b.line();
            assert!(line.ends_with("}\n") && line.starts_with(&format!("{{\"base\":{n},\"frontier\":[")));
            assert_eq!(parse_line(line.trim_end()), Ok(Line::Base(b)));
        }
    }

    #[test]
    fn bad_base_lines_are_named() {
        let good = base(5).line();
        let cases = [
            (good.replace("\"base\":5", "\"base\":4"), "must have 1 hashes"),
            (good.replace("\"base\":5", "\"base\":0"), "not a positive integer"),
            (good.replace("\"archives\"", "\"archive\""), "unexpected field"),
            (good.replace("\"blake3\":\"07", "\"blake3\":\"0"), "not 64 lowercase hex digits"),
            (good.replace("\"end\":5", "\"end\":0"), "not after its first"),
        ];
        for (line, want) in cases {
            let got = parse_line(line.trim_end()).unwrap_err();
            assert!(got.contains(want), "{line}: {got}");
        }
    }

    #[test]
    fn record_paths() {
        let p = record_path("a blake3 b.vfsaudit", &[9; 32]);
        assert_eq!(parse_record_path(&p), Some(("a blake3 b.vfsaudit".into(), [9; 32])));
        assert_eq!(parse_record_path(b"archive x blake3 00"), None);
        assert_eq!(parse_record_path(b"other"), None);
    }
}
