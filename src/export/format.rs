//! One audit record, as a collector reads it: an RFC 5424 syslog line with
//! the record in structured data, or ArcSight CEF as the message of such a
//! line (docs/AUDIT.md, "Exporting"). The input is the record's `.audit`
//! JSON line, so every exported field is one the `.audit` verifier checks,
//! and each event carries its tree index and leaf hash.

use serde_json::Value;

use crate::format::time::utc_micros;

/// RFC 5424 facility 13, "log audit".
const FACILITY_AUDIT: u8 = 13;
/// The structured-data id: `name@PEN`. 32473 is the private enterprise
/// number IANA reserves for documentation and examples (RFC 5612); vaultfs
/// has none of its own.
pub const SD_ID: &str = "vaultfs@32473";

/// A record decoded from its `.audit` line (the fields exporters show).
pub struct Event<'a> {
    line: &'a Value,
}

impl<'a> Event<'a> {
    /// `None` for a line that is not a leaf (the checkpoint line).
    pub fn of(line: &'a Value) -> Option<Event<'a>> {
        line.get("index")?;
        Some(Event { line })
    }

    fn num(&self, key: &str) -> u64 {
        self.line.get(key).and_then(Value::as_u64).unwrap_or(0)
    }

    fn text(&self, key: &str) -> Option<&'a str> {
        self.line.get(key).and_then(Value::as_str)
    }

    pub fn index(&self) -> u64 {
        self.num("index")
    }

    fn result(&self) -> i64 {
        self.line.get("result").and_then(Value::as_i64).unwrap_or(0)
    }

    fn op(&self) -> &'a str {
        self.text("op").unwrap_or("unknown")
    }

    fn level(&self) -> Option<u64> {
        self.line.get("level").and_then(Value::as_u64)
    }

    /// `comm` or `path`, with its key (`comm_hex`/`path_hex` when the bytes are not UTF-8).
    fn bytes_field(&self, key: &'static str, hex_key: &'static str) -> (&'static str, &'a str) {
        match self.text(key) {
            Some(v) => (key, v),
            None => (hex_key, self.text(hex_key).unwrap_or("")),
        }
    }
}

/// RFC 5424 syslog, the whole record in structured data.
pub fn syslog(e: &Event<'_>, vault: &str, host: &str, procid: u32) -> String {
    let severity = if e.result() == 0 { 6 } else { 4 };
    let (comm_key, comm) = e.bytes_field("comm", "comm_hex");
    let (path_key, path) = e.bytes_field("path", "path_hex");
    let mut sd = format!(
        "[{SD_ID} vault=\"{vault}\" index=\"{}\" hash=\"{}\"",
        e.index(),
        e.text("hash").unwrap_or("")
    );
    let nums = ["seq", "time_ns", "uid", "gid", "pid"];
    for k in nums {
        sd.push_str(&format!(" {k}=\"{}\"", e.num(k)));
    }
    sd.push_str(&format!(" {comm_key}=\"{}\" op=\"{}\"", sd_escape(comm), e.op()));
    if let Some(l) = e.level() {
        sd.push_str(&format!(" level=\"{l}\""));
    }
    sd.push_str(&format!(
        " ino=\"{}\" {path_key}=\"{}\" offset=\"{}\" len=\"{}\" result=\"{}\"]",
        e.num("ino"),
        sd_escape(path),
        e.num("offset"),
        e.num("len"),
        e.result()
    ));
    let msg = format!("{} {} {}", e.op(), path, outcome(e.result()));
    header(severity, e.num("time_ns"), host, procid, e.op(), &sd, &msg)
}

/// CEF (version 0) as the message of an RFC 5424 line.
pub fn cef(e: &Event<'_>, vault: &str, host: &str, procid: u32) -> String {
    let refused = e.result() != 0;
    let (_, comm) = e.bytes_field("comm", "comm_hex");
    let (_, path) = e.bytes_field("path", "path_hex");
    let mut ext = vec![
        ("rt", (e.num("time_ns") / 1_000_000).to_string()),
        ("suid", e.num("uid").to_string()),
        ("spid", e.num("pid").to_string()),
        ("sproc", comm.to_string()),
        ("filePath", path.to_string()),
        ("outcome", outcome(e.result()).to_string()),
        ("cs1Label", "vault".into()),
        ("cs1", vault.to_string()),
        ("cn1Label", "index".into()),
        ("cn1", e.index().to_string()),
        ("cs2Label", "leafHash".into()),
        ("cs2", e.text("hash").unwrap_or("").to_string()),
        ("cn2Label", "inode".into()),
        ("cn2", e.num("ino").to_string()),
    ];
    if let Some(l) = e.level() {
        ext.push(("cn3Label", "level".into()));
        ext.push(("cn3", l.to_string()));
    }
    if e.num("len") > 0 {
        ext.push(("cs3Label", "range".into()));
        ext.push(("cs3", format!("{}+{}", e.num("offset"), e.num("len"))));
    }
    let ext: Vec<String> = ext.into_iter().map(|(k, v)| format!("{k}={}", cef_value(&v))).collect();
    let msg = format!(
        "CEF:0|vaultfs|vaultfs|{}|{}|{}|{}|{}",
        env!("CARGO_PKG_VERSION"),
        cef_header(e.op()),
        cef_header(&format!("{} {}", e.op(), path)),
        if refused { 7 } else { 3 },
        ext.join(" ")
    );
    header(if refused { 4 } else { 6 }, e.num("time_ns"), host, procid, e.op(), "-", &msg)
}

fn header(severity: u8, time_ns: u64, host: &str, procid: u32, msgid: &str, sd: &str, msg: &str) -> String {
    let pri = FACILITY_AUDIT * 8 + severity;
    format!("<{pri}>1 {} {host} vaultfs {procid} {msgid} {sd} {msg}", utc_micros(time_ns))
}

/// "ok", or the errno's name.
fn outcome(result: i64) -> &'static str {
    match result {
        0 => "ok",
        1 => "EPERM",
        2 => "ENOENT",
        5 => "EIO",
        13 => "EACCES",
        17 => "EEXIST",
        22 => "EINVAL",
        28 => "ENOSPC",
        _ => "error",
    }
}

/// RFC 5424 PARAM-VALUE: `"`, `\` and `]` escaped.
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// CEF header field: `\` and `|` escaped, line breaks as spaces.
fn cef_header(v: &str) -> String {
    v.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// CEF extension value: `\`, `=` and line breaks escaped.
fn cef_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('=', "\\=").replace('\n', "\\n").replace('\r', "\\r")
}

pub use crate::sys::hostname;

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Value {
        serde_json::json!({
            "index": 7, "hash": "ab", "leaf": "AQ==", "seq": 7, "time_ns": 1_735_689_600_000_250_999u64,
            "uid": 1000, "gid": 1000, "pid": 42, "comm": "ca\"t", "op": "open", "level": 3, "ino": 99,
            "offset": 0, "len": 0, "path": "/3-sealed/a]b|c=d", "result": 13
        })
    }

    #[test]
    fn syslog_line_carries_the_record_escaped() {
        let l = line();
        let s = syslog(&Event::of(&l).unwrap(), "v1", "host", 5);
        assert_eq!(
            s,
            "<108>1 2025-01-01T00:00:00.000250Z host vaultfs 5 open [vaultfs@32473 vault=\"v1\" index=\"7\" \
             hash=\"ab\" seq=\"7\" time_ns=\"1735689600000250999\" uid=\"1000\" gid=\"1000\" pid=\"42\" \
             comm=\"ca\\\"t\" op=\"open\" level=\"3\" ino=\"99\" path=\"/3-sealed/a\\]b|c=d\" offset=\"0\" \
             len=\"0\" result=\"13\"] open /3-sealed/a]b|c=d EACCES"
        );
    }

    #[test]
    fn cef_escapes_header_and_extension() {
        let l = line();
        let s = cef(&Event::of(&l).unwrap(), "v1", "host", 5);
        assert!(
            s.starts_with("<108>1 2025-01-01T00:00:00.000250Z host vaultfs 5 open - CEF:0|vaultfs|vaultfs|"),
            "{s}"
        );
        assert!(s.contains("|open|open /3-sealed/a]b\\|c=d|7|rt=1735689600000 "), "{s}");
        assert!(s.contains(" filePath=/3-sealed/a]b|c\\=d "), "{s}");
        assert!(
            s.contains(
                " outcome=EACCES cs1Label=vault cs1=v1 cn1Label=index cn1=7 cs2Label=leafHash cs2=ab "
            ),
            "{s}"
        );
        assert!(Event::of(&serde_json::json!({"checkpoint": "x"})).is_none());
    }
}
