//! The `.audit` text (docs/AUDIT.md, "The .audit file"): one compact JSON
//! object per line, `\n`-terminated. A leaf line carries the exact leaf bytes
//! ("leaf", base64) next to the fields decoded from them for humans; the last
//! line is `{"checkpoint":"<signed note>"}`.
//!
//! The "leaf" bytes are authoritative: verifiers hash them and check that the
//! human fields say the same thing, so a reader cannot be shown one record
//! while the tree commits to another.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::Error;
use super::leaf::Leaf;
use super::merkle;

/// The fields of a leaf line, in the order they are written.
/// `bytes` must be the encoding `leaf` was decoded from.
pub fn fields(bytes: &[u8], leaf: &Leaf) -> Vec<(&'static str, Value)> {
    let mut f: Vec<(&'static str, Value)> = vec![
        ("index", leaf.seq.into()),
        ("hash", crate::format::hex(&merkle::leaf_hash(bytes)).into()),
        ("leaf", B64.encode(bytes).into()),
        ("seq", leaf.seq.into()),
        ("time_ns", leaf.time_ns.into()),
        ("uid", leaf.uid.into()),
        ("gid", leaf.gid.into()),
        ("pid", leaf.pid.into()),
    ];
    f.push(text_or_hex("comm", "comm_hex", &leaf.comm));
    f.push(("op", leaf.op.name().into()));
    f.push(("level", leaf.level.map_or(Value::Null, Value::from)));
    f.push(("ino", leaf.ino.into()));
    f.push(text_or_hex("path", "path_hex", &leaf.path));
    f.push(("offset", leaf.offset.into()));
    f.push(("len", leaf.len.into()));
    f.push(("result", leaf.result.into()));
    // Only version-2 leaves carry a note (a justification).
    if !leaf.note.is_empty() {
        f.push(text_or_hex("note", "note_hex", &leaf.note));
    }
    f
}

/// Raw bytes as a JSON string when they are UTF-8, else as hex under `hex_key`
/// (JSON strings cannot carry arbitrary bytes faithfully).
fn text_or_hex(key: &'static str, hex_key: &'static str, bytes: &[u8]) -> (&'static str, Value) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (key, s.into()),
        Err(_) => (hex_key, crate::format::hex(bytes).into()),
    }
}

/// The line for a leaf, from its canonical encoding (so an over-long path
/// shows exactly as it was recorded).
#[cfg(any(test, feature = "internals"))]
pub fn leaf_line(leaf: &Leaf) -> String {
    let bytes = leaf.encode();
    let shown = Leaf::decode(&bytes).expect("Leaf::encode always produces a decodable leaf");
    object_line(&fields(&bytes, &shown))
}

/// The line for a leaf stored as bytes; fails if they are not a canonical leaf.
pub fn leaf_line_from_bytes(bytes: &[u8]) -> Result<String, Error> {
    let mut out = Vec::new();
    write_leaf_line(&mut out, bytes)?;
    // Only JSON text went in: ASCII punctuation, digits and escaped strings.
    Ok(String::from_utf8(out).expect("a JSON line is UTF-8"))
}

/// Appends the line for a leaf stored as bytes to `out`: the same bytes as
/// `fields` laid out by `object_line`, written directly (`.audit` renders
/// millions of lines; building JSON values for each made allocation most
/// of the cost).
pub fn write_leaf_line(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let leaf = Leaf::decode(bytes)?;
    // Writing to a Vec cannot fail.
    let num = |out: &mut Vec<u8>, key: &str, n: &dyn std::fmt::Display| {
        let _ = write!(out, ",\"{key}\":{n}");
    };
    let text = |out: &mut Vec<u8>, key: &str, value: &[u8]| match std::str::from_utf8(value) {
        Ok(s) => {
            let _ = write!(out, ",\"{key}\":");
            let _ = serde_json::to_writer(&mut *out, s);
        }
        Err(_) => {
            let _ = write!(out, ",\"{key}_hex\":\"{}\"", crate::format::hex(value));
        }
    };
    let _ = write!(out, "{{\"index\":{},\"hash\":\"", leaf.seq);
    for b in merkle::leaf_hash(bytes) {
        let _ = write!(out, "{b:02x}");
    }
    out.extend_from_slice(b"\",\"leaf\":\"");
    let at = out.len();
    out.resize(at + base64::encoded_len(bytes.len(), true).unwrap_or(0), 0);
    let written = B64.encode_slice(bytes, &mut out[at..]).unwrap_or(0);
    out.truncate(at + written);
    out.push(b'"');
    num(out, "seq", &leaf.seq);
    num(out, "time_ns", &leaf.time_ns);
    num(out, "uid", &leaf.uid);
    num(out, "gid", &leaf.gid);
    num(out, "pid", &leaf.pid);
    text(out, "comm", &leaf.comm);
    let _ = write!(out, ",\"op\":\"{}\"", leaf.op.name());
    match leaf.level {
        Some(l) => num(out, "level", &l),
        None => out.extend_from_slice(b",\"level\":null"),
    }
    num(out, "ino", &leaf.ino);
    text(out, "path", &leaf.path);
    num(out, "offset", &leaf.offset);
    num(out, "len", &leaf.len);
    num(out, "result", &leaf.result);
    if !leaf.note.is_empty() {
        text(out, "note", &leaf.note);
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// The final line, carrying the signed checkpoint note.
pub fn checkpoint_line(note: &str) -> String {
    object_line(&[("checkpoint", note.into())])
}

/// `{"k":v,...}\n`, compact, keys in the given order.
fn object_line(fields: &[(&str, Value)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // Serializing a str or a Value to a String cannot fail.
        s.push_str(&Value::from(*k).to_string());
        s.push(':');
        s.push_str(&v.to_string());
    }
    s.push_str("}\n");
    s
}

/// A parsed line of an export.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    /// A leaf line's fields, in file order (duplicates already refused).
    Leaf(Vec<(String, Value)>),
    /// The signed checkpoint note, unverified.
    Checkpoint(String),
    /// The first line of an export that starts after leaf 0.
    Base(super::archive::Base),
}

/// Parses one line (without its `\n`). The error says what is wrong, for the
/// caller to place ("line 1 is not JSON", "leaf 4: duplicate field …").
pub fn parse_line(line: &str) -> Result<Line, String> {
    let obj = match serde_json::from_str::<Object>(line) {
        Ok(o) => o.0,
        Err(e) if e.is_data() => return Err("not a JSON object".into()),
        Err(_) => return Err("not JSON".into()),
    };
    for (i, (k, _)) in obj.iter().enumerate() {
        if obj[..i].iter().any(|(k2, _)| k2 == k) {
            return Err(format!("duplicate field {k:?}"));
        }
    }
    if obj.iter().any(|(k, _)| k == "base") {
        return super::archive::Base::from_fields(&obj).map(Line::Base);
    }
    match obj.iter().find(|(k, _)| k == "checkpoint") {
        None => Ok(Line::Leaf(obj)),
        Some(_) if obj.len() > 1 => Err("checkpoint line has other fields".into()),
        Some((_, Value::String(note))) => Ok(Line::Checkpoint(note.clone())),
        Some(_) => Err("checkpoint is not a string".into()),
    }
}

/// The leaf a leaf line carries (its "leaf" field, decoded), if it is one.
pub fn leaf_of_line(line: &str) -> Option<Leaf> {
    let Ok(Line::Leaf(fields)) = parse_line(line) else { return None };
    let b64 = fields.iter().find(|(k, _)| k == "leaf").and_then(|(_, v)| v.as_str())?;
    Leaf::decode(&B64.decode(b64).ok()?).ok()
}

/// A JSON object as an ordered list of pairs, so duplicate keys stay visible
/// (serde_json's own map would silently keep the last one).
struct Object(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Object;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, Value>()? {
                    pairs.push(pair);
                }
                Ok(Object(pairs))
            }
        }
        d.deserialize_map(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::leaf::tests::sample;

    #[test]
    fn leaf_line_shape() {
        let l = sample();
        let line = leaf_line(&l);
        assert!(line.ends_with("}\n") && !line[..line.len() - 1].contains('\n'));
        assert!(line.starts_with(r#"{"index":7,"hash":""#), "{line}");
        assert!(
            line.contains(r#""comm":"cat","op":"read","level":2,"ino":42,"path":"/2-private/notes.md","#)
        );
        assert!(line.ends_with("\"offset\":4096,\"len\":512,\"result\":0}\n"), "{line}");
        let Ok(Line::Leaf(f)) = parse_line(line.trim_end()) else { panic!("{line}") };
        let expected = fields(&l.encode(), &l);
        assert_eq!(f.len(), expected.len());
        for ((k, v), (ek, ev)) in f.iter().zip(&expected) {
            assert_eq!((k.as_str(), v), (*ek, ev));
        }
        assert_eq!(leaf_line_from_bytes(&l.encode()), Ok(line));
    }

    #[test]
    fn the_direct_writer_matches_the_fields() {
        let leaves = [
            sample(),
            Leaf { comm: vec![0xff, b'a'], path: b"/1-working/\xc3(".to_vec(), level: None, ..sample() },
            Leaf { path: "/1-working/a\n\"},{\"x\u{2028}\u{1}\\".as_bytes().to_vec(), ..sample() },
            Leaf { note: "why: \"ticket\" 42\t\u{7f}é".as_bytes().to_vec(), result: -13, ..sample() },
            Leaf { note: vec![0xfe, 0], seq: u64::MAX, time_ns: u64::MAX, ino: u64::MAX, ..sample() },
            Leaf { comm: Vec::new(), path: Vec::new(), level: Some(0), offset: u64::MAX, len: 1 << 53, ..sample() },
        ];
        for l in leaves {
            let bytes = l.encode();
            let shown = Leaf::decode(&bytes).unwrap();
            let mut direct = Vec::new();
            write_leaf_line(&mut direct, &bytes).unwrap();
            assert_eq!(String::from_utf8(direct).unwrap(), object_line(&fields(&bytes, &shown)));
        }
        assert!(write_leaf_line(&mut Vec::new(), b"not a leaf").is_err());
    }

    #[test]
    fn non_utf8_names_go_to_hex() {
        let l = Leaf { comm: vec![0xff, b'a'], path: b"/1-working/\xc3(".to_vec(), level: None, ..sample() };
        let line = leaf_line(&l);
        assert!(line.contains(r#""comm_hex":"ff61""#), "{line}");
        assert!(line.contains(r#""path_hex":"2f312d776f726b696e672fc328""#), "{line}");
        assert!(line.contains(r#""level":null"#));
        assert!(!line.contains(r#""path":"#) && !line.contains(r#""comm":"#));
    }

    #[test]
    fn hostile_names_stay_on_one_line() {
        let l = Leaf { path: "/1-working/a\n\"},{\"x\u{2028}".as_bytes().to_vec(), ..sample() };
        let line = leaf_line(&l);
        assert_eq!(line.matches('\n').count(), 1);
        let Ok(Line::Leaf(f)) = parse_line(line.trim_end()) else { panic!() };
        let path = f.iter().find(|(k, _)| k == "path").unwrap();
        assert_eq!(path.1, Value::from("/1-working/a\n\"},{\"x\u{2028}"));
    }

    #[test]
    fn checkpoint_lines() {
        let note = "o\n1\nAAAA\n\n\u{2014} o sig\n";
        let line = checkpoint_line(note);
        assert_eq!(line, "{\"checkpoint\":\"o\\n1\\nAAAA\\n\\n\u{2014} o sig\\n\"}\n");
        assert_eq!(parse_line(line.trim_end()), Ok(Line::Checkpoint(note.into())));
    }

    #[test]
    fn bad_lines() {
        for (line, why) in [
            ("", "not JSON"),
            ("{", "not JSON"),
            ("{} x", "not JSON"),
            ("[1]", "not a JSON object"),
            ("17", "not a JSON object"),
            (r#"{"a":1,"a":2}"#, "duplicate field \"a\""),
            (r#"{"checkpoint":"x","index":0}"#, "checkpoint line has other fields"),
            (r#"{"checkpoint":5}"#, "checkpoint is not a string"),
        ] {
            assert_eq!(parse_line(line), Err(why.to_string()), "{line}");
        }
    }
}
