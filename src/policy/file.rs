//! The policy file: strict TOML into a [`Policy`] (format in the module docs
//! of [`crate::policy`] and in docs/POLICY.md).
//!
//! Parsing walks toml's spanned document tree rather than deriving serde
//! impls, so that every refusal names its dotted key and its line and column.
//! Parsing checks only the form and the bounds; whether the result is strict
//! enough is [`Policy::accept`]'s business.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::{
    Error, LEVELS, Location, MAX_APPROVAL_TIMEOUT, MAX_DURATION, MAX_OPENS_PER_MINUTE, MAX_POLICY_BYTES,
    Policy, fmt_duration,
};

const TOP_KEYS: &[&str] = &[
    "lockdown",
    "ephemeral_max_age",
    "approval_notify",
    "levels",
    "rate_limit",
    "export",
    "secrets",
    "audit",
];
const SECRETS_KEYS: &[&str] = &["scan", "patterns"];
const AUDIT_KEYS: &[&str] = &["archive_dir", "keep", "keep_bytes"];
const EXPORT_KEYS: &[&str] = &["format", "address", "batch"];
/// Records per delivery unless `batch` says.
const DEFAULT_EXPORT_BATCH: usize = 100;

/// Arguments of `approval_notify` at most (program included), and bytes each.
const MAX_NOTIFY_ARGS: usize = 64;
const MAX_NOTIFY_ARG_BYTES: usize = 4096;
const LEVEL_KEYS: &[&str] = &[
    "cooldown",
    "approval_timeout",
    "approval_window",
    "relock_after",
    "require_approval",
    "require_justification",
];
const RATE_KEYS: &[&str] = &["opens_per_minute", "uid"];
const UID_KEYS: &[&str] = &["opens_per_minute"];

/// Policy secret patterns at most, and bytes each (as `crate::scan` allows).
const MAX_SECRET_PATTERNS: usize = 64;
const MAX_SECRET_PATTERN: usize = 1024;

/// Levels whose opens read a justification (docs/GATES.md).
const FIRST_JUSTIFIED_LEVEL: usize = 3;

/// Levels that can be locked while mounted (lockdown locks them too):
/// `relock_after` means something only there.
const FIRST_LOCKABLE_LEVEL: usize = 2;

const SECOND: Duration = Duration::from_secs(1);

impl Policy {
    /// Parses a policy file's text, starting from the defaults. Checks form
    /// and bounds only, not strictness: see [`Policy::accept`].
    pub fn parse(text: &str) -> Result<Policy, Error> {
        let p = Parser { text };
        if text.len() > MAX_POLICY_BYTES {
            return Err(Error::Malformed {
                key: None,
                location: None,
                message: format!(
                    "policy text is {} bytes, more than the {MAX_POLICY_BYTES} allowed",
                    text.len()
                ),
            });
        }
        let doc = DeTable::parse(text).map_err(|e| Error::Malformed {
            key: None,
            location: e.span().map(|s| p.location(s.start)),
            message: e.message().trim_end().to_string(),
        })?;
        let mut policy = Policy::default();
        for (k, v) in in_order(doc.get_ref()) {
            let key = k.get_ref().as_ref();
            match key {
                "lockdown" => policy.lockdown = p.boolean(key, v)?,
                "ephemeral_max_age" => {
                    policy.ephemeral_max_age = p.duration(key, v, SECOND, MAX_DURATION)?;
                }
                "approval_notify" => policy.approval_notify = Some(p.command(key, v)?),
                "levels" => p.levels(&mut policy, v)?,
                "rate_limit" => p.rate_limit(&mut policy, v)?,
                "export" => p.exports(&mut policy, v)?,
                "secrets" => p.secrets(&mut policy, v)?,
                "audit" => p.audit(&mut policy, v)?,
                _ => return Err(p.unknown(key, k, TOP_KEYS)),
            }
        }
        Ok(policy)
    }
}

/// A table's entries in document order, so the first error reported is the
/// first in the file.
fn in_order<'a, 'i>(table: &'a DeTable<'i>) -> Vec<(&'a Spanned<DeString<'i>>, &'a Spanned<DeValue<'i>>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

struct Parser<'t> {
    text: &'t str,
}

impl Parser<'_> {
    /// Line and column (in characters) of byte offset `at`, clamped to the text.
    fn location(&self, at: usize) -> Location {
        let mut loc = Location { line: 1, column: 1 };
        for (i, c) in self.text.char_indices() {
            if i >= at {
                break;
            }
            if c == '\n' {
                loc.line += 1;
                loc.column = 1;
            } else {
                loc.column += 1;
            }
        }
        loc
    }

    fn error(&self, key: &str, span: Range<usize>, message: impl Into<String>) -> Error {
        Error::Malformed {
            key: Some(key.to_string()),
            location: Some(self.location(span.start)),
            message: message.into(),
        }
    }

    fn unknown(&self, path: &str, key: &Spanned<DeString<'_>>, known: &[&str]) -> Error {
        self.error(path, key.span(), format!("unknown key (known keys here: {})", known.join(", ")))
    }

    fn wrong_type(&self, key: &str, v: &Spanned<DeValue<'_>>, expected: &str) -> Error {
        self.error(key, v.span(), format!("expected {expected}, found {}", v.get_ref().type_str()))
    }

    fn table<'a, 'i>(&self, key: &str, v: &'a Spanned<DeValue<'i>>) -> Result<&'a DeTable<'i>, Error> {
        v.get_ref().as_table().ok_or_else(|| self.wrong_type(key, v, "a table"))
    }

    fn boolean(&self, key: &str, v: &Spanned<DeValue<'_>>) -> Result<bool, Error> {
        v.get_ref().as_bool().ok_or_else(|| self.wrong_type(key, v, "true or false"))
    }

    /// An integer, as written (`None` beyond what an i128 holds).
    fn raw_integer(&self, key: &str, v: &Spanned<DeValue<'_>>) -> Result<Option<i128>, Error> {
        let Some(i) = v.get_ref().as_integer() else {
            return Err(self.wrong_type(key, v, "an integer"));
        };
        Ok(i128::from_str_radix(i.as_str(), i.radix()).ok())
    }

    /// A non-negative integer no larger than `max`.
    fn integer(&self, key: &str, v: &Spanned<DeValue<'_>>, max: u64) -> Result<u64, Error> {
        match self.raw_integer(key, v)? {
            Some(n) if n < 0 => Err(self.error(key, v.span(), format!("{n} is negative"))),
            Some(n) if n <= i128::from(max) => Ok(u64::try_from(n).unwrap_or(max)),
            _ => Err(self.error(key, v.span(), format!("out of bounds (0 ..= {max})"))),
        }
    }

    /// A duration (integer seconds or a string with a unit) within `min ..= max`.
    fn duration(
        &self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, Error> {
        let d = match v.get_ref() {
            DeValue::Integer(_) => match self.raw_integer(key, v)? {
                Some(n) if n < 0 => return Err(self.error(key, v.span(), format!("{n} is negative"))),
                Some(n) => u64::try_from(n).map_or(Duration::MAX, Duration::from_secs),
                None => Duration::MAX,
            },
            DeValue::String(s) => parse_duration(s).map_err(|m| self.error(key, v.span(), m))?,
            _ => {
                return Err(self.wrong_type(key, v, "a duration (\"30s\", \"5m\", ... or integer seconds)"));
            }
        };
        if d < min || d > max {
            return Err(self.error(
                key,
                v.span(),
                format!(
                    "{} is out of bounds ({} ..= {})",
                    fmt_duration(d),
                    fmt_duration(min),
                    fmt_duration(max)
                ),
            ));
        }
        Ok(d)
    }

    /// A command: a non-empty array of strings whose first is an absolute
    /// path (no search of PATH: the daemon's environment is not the user's).
    fn command(&self, key: &str, v: &Spanned<DeValue<'_>>) -> Result<Vec<String>, Error> {
        let expected = "an array of strings: an absolute program path, then its arguments";
        let items = v.get_ref().as_array().ok_or_else(|| self.wrong_type(key, v, expected))?;
        if items.is_empty() || items.len() > MAX_NOTIFY_ARGS {
            return Err(self.error(key, v.span(), format!("1 to {MAX_NOTIFY_ARGS} strings are needed")));
        }
        let mut argv = Vec::with_capacity(items.len());
        for item in items.iter() {
            let s = item.get_ref().as_str().ok_or_else(|| self.wrong_type(key, item, expected))?;
            if s.len() > MAX_NOTIFY_ARG_BYTES || s.contains('\0') {
                return Err(self.error(
                    key,
                    item.span(),
                    format!("an argument holds a NUL byte or is longer than {MAX_NOTIFY_ARG_BYTES} bytes"),
                ));
            }
            argv.push(s.to_string());
        }
        if !argv[0].starts_with('/') {
            return Err(self.error(key, items[0].span(), format!("{:?} is not an absolute path", argv[0])));
        }
        Ok(argv)
    }

    /// `[secrets]`: `scan` (bool) and `patterns` (strings; whether they
    /// compile is the vault's check, which owns the scanner).
    fn secrets(&self, policy: &mut Policy, v: &Spanned<DeValue<'_>>) -> Result<(), Error> {
        for (k, v) in in_order(self.table("secrets", v)?) {
            let name = k.get_ref().as_ref();
            let key = format!("secrets.{name}");
            match name {
                "scan" => policy.secrets.scan = self.boolean(&key, v)?,
                "patterns" => {
                    let expected = "an array of strings (regular expressions)";
                    let items = v.get_ref().as_array().ok_or_else(|| self.wrong_type(&key, v, expected))?;
                    if items.len() > MAX_SECRET_PATTERNS {
                        return Err(self.error(
                            &key,
                            v.span(),
                            format!("at most {MAX_SECRET_PATTERNS} patterns"),
                        ));
                    }
                    let mut out = Vec::new();
                    for item in items.iter() {
                        let s =
                            item.get_ref().as_str().ok_or_else(|| self.wrong_type(&key, item, expected))?;
                        if s.is_empty() || s.len() > MAX_SECRET_PATTERN {
                            return Err(self.error(
                                &key,
                                item.span(),
                                format!("a pattern is 1 to {MAX_SECRET_PATTERN} bytes"),
                            ));
                        }
                        out.push(s.to_string());
                    }
                    policy.secrets.patterns = out;
                }
                _ => return Err(self.unknown(&key, k, SECRETS_KEYS)),
            }
        }
        Ok(())
    }

    /// `[audit]`: `archive_dir` (an absolute path), and `keep` (a duration)
    /// and/or `keep_bytes` (an integer); each needs the other half.
    fn audit(&self, policy: &mut Policy, v: &Spanned<DeValue<'_>>) -> Result<(), Error> {
        use super::{MAX_AUDIT_KEEP, MAX_AUDIT_KEEP_BYTES, MIN_AUDIT_KEEP_BYTES};
        let a = &mut policy.audit_archive;
        for (k, v) in in_order(self.table("audit", v)?) {
            let name = k.get_ref().as_ref();
            let key = format!("audit.{name}");
            match name {
                "archive_dir" => {
                    let dir = v.get_ref().as_str().ok_or_else(|| self.wrong_type(&key, v, "a string"))?;
                    if !dir.starts_with('/') || dir.contains('\0') || dir.len() > 4096 {
                        return Err(self.error(&key, v.span(), format!("{dir:?} is not an absolute path")));
                    }
                    a.dir = Some(dir.into());
                }
                "keep" => a.keep = Some(self.duration(&key, v, SECOND, MAX_AUDIT_KEEP)?),
                "keep_bytes" => {
                    let n = self.integer(&key, v, MAX_AUDIT_KEEP_BYTES)?;
                    if n < MIN_AUDIT_KEEP_BYTES {
                        let msg =
                            format!("out of bounds ({MIN_AUDIT_KEEP_BYTES} ..= {MAX_AUDIT_KEEP_BYTES})");
                        return Err(self.error(&key, v.span(), msg));
                    }
                    a.keep_bytes = Some(n);
                }
                _ => return Err(self.unknown(&key, k, AUDIT_KEYS)),
            }
        }
        let span = v.span();
        match (&a.dir, a.keep.is_some() || a.keep_bytes.is_some()) {
            (None, true) => {
                Err(self.error("audit", span, "keep and keep_bytes need archive_dir (where archives go)"))
            }
            (Some(_), false) => {
                Err(self.error("audit", span, "archive_dir needs keep or keep_bytes (when to archive)"))
            }
            _ => Ok(()),
        }
    }

    /// `[export.NAME]` tables: a format, an address that suits it, a batch size.
    fn exports(&self, policy: &mut Policy, v: &Spanned<DeValue<'_>>) -> Result<(), Error> {
        use super::{ExportAddress, ExportFormat, ExportSink, MAX_EXPORT_BATCH, MAX_EXPORTS};
        for (k, v) in in_order(self.table("export", v)?) {
            let name = k.get_ref().as_ref();
            let path = format!("export.{name}");
            let valid = (1..=32).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(self.error(
                    &path,
                    k.span(),
                    "an export's name is 1 to 32 letters, digits, '-' or '_'",
                ));
            }
            if policy.exports.len() == MAX_EXPORTS {
                return Err(self.error(&path, k.span(), format!("at most {MAX_EXPORTS} exports")));
            }
            let (mut format, mut address, mut batch) = (None, None, DEFAULT_EXPORT_BATCH);
            for (fk, fv) in in_order(self.table(&path, v)?) {
                let field = fk.get_ref().as_ref();
                let key = format!("{path}.{field}");
                let text = || fv.get_ref().as_str().ok_or_else(|| self.wrong_type(&key, fv, "a string"));
                match field {
                    "format" => {
                        format = Some(match text()? {
                            "syslog" => ExportFormat::Syslog,
                            "cef" => ExportFormat::Cef,
                            "json" => ExportFormat::Json,
                            other => {
                                return Err(self.error(
                                    &key,
                                    fv.span(),
                                    format!("{other:?}: the formats are \"syslog\", \"cef\" and \"json\""),
                                ));
                            }
                        })
                    }
                    "address" => {
                        address = Some((
                            parse_export_address(text()?).map_err(|m| self.error(&key, fv.span(), m))?,
                            fv.span(),
                        ))
                    }
                    "batch" => {
                        let n = self.integer(&key, fv, MAX_EXPORT_BATCH as u64)?;
                        batch = usize::try_from(n)
                            .ok()
                            .filter(|n| *n >= 1)
                            .ok_or_else(|| self.error(&key, fv.span(), format!("1 to {MAX_EXPORT_BATCH}")))?;
                    }
                    _ => return Err(self.unknown(&key, fk, EXPORT_KEYS)),
                }
            }
            let Some(format) = format else {
                return Err(self.error(
                    &path,
                    k.span(),
                    "`format` is missing (\"syslog\", \"cef\" or \"json\")",
                ));
            };
            let Some((address, span)) = address else {
                return Err(self.error(&path, k.span(), "`address` is missing"));
            };
            let http = matches!(address, ExportAddress::Http(_));
            if http != (format == ExportFormat::Json) {
                return Err(self.error(
                    &format!("{path}.address"),
                    span,
                    "\"json\" goes to an http:// address; \"syslog\" and \"cef\" to udp://, tcp:// or unix:",
                ));
            }
            policy.exports.push(ExportSink { name: name.to_string(), format, address, batch });
        }
        Ok(())
    }

    fn levels(&self, policy: &mut Policy, v: &Spanned<DeValue<'_>>) -> Result<(), Error> {
        for (k, v) in in_order(self.table("levels", v)?) {
            let name = k.get_ref().as_ref();
            let path = format!("levels.{name}");
            let n = match name.as_bytes() {
                [d @ b'0'..=b'5'] => usize::from(d - b'0'),
                _ => {
                    return Err(self.error(
                        &path,
                        k.span(),
                        format!("no level {name:?}: levels are named by their digit, 0 to {}", LEVELS - 1),
                    ));
                }
            };
            self.level(n, &path, &mut policy.levels[n], self.table(&path, v)?)?;
        }
        Ok(())
    }

    fn level(&self, n: usize, path: &str, lp: &mut super::LevelPolicy, t: &DeTable<'_>) -> Result<(), Error> {
        // Keys that only matter when the level requires approval, to check once it is known.
        let mut approval_keys = Vec::new();
        for (k, v) in in_order(t) {
            let name = k.get_ref().as_ref();
            let key = format!("{path}.{name}");
            match name {
                "cooldown" => lp.cooldown = self.duration(&key, v, Duration::ZERO, MAX_DURATION)?,
                "approval_timeout" => {
                    lp.approval_timeout = self.duration(&key, v, SECOND, MAX_APPROVAL_TIMEOUT)?
                }
                "approval_window" => {
                    lp.approval_window = self.duration(&key, v, Duration::ZERO, MAX_DURATION)?
                }
                "relock_after" => {
                    if n < FIRST_LOCKABLE_LEVEL {
                        return Err(self.error(
                            &key,
                            k.span(),
                            format!(
                                "level {n} is never locked while mounted; relock_after applies to levels 2-5"
                            ),
                        ));
                    }
                    lp.relock_after = match v.get_ref() {
                        DeValue::String(s) if s == "never" => None,
                        _ => Some(self.duration(&key, v, SECOND, MAX_DURATION)?),
                    };
                }
                "require_approval" => lp.require_approval = self.boolean(&key, v)?,
                "require_justification" => {
                    if n < FIRST_JUSTIFIED_LEVEL {
                        return Err(self.error(
                            &key,
                            k.span(),
                            format!("justifications are read at levels {FIRST_JUSTIFIED_LEVEL} to 5 only"),
                        ));
                    }
                    lp.require_justification = self.boolean(&key, v)?
                }
                _ => return Err(self.unknown(&key, k, LEVEL_KEYS)),
            }
            if matches!(name, "cooldown" | "approval_timeout" | "approval_window") {
                approval_keys.push((key, k.span()));
            }
        }
        if !lp.require_approval {
            if let Some((key, span)) = approval_keys.into_iter().next() {
                return Err(self.error(
                    &key,
                    span,
                    format!("has no effect unless {path}.require_approval = true"),
                ));
            }
        }
        Ok(())
    }

    fn rate_limit(&self, policy: &mut Policy, v: &Spanned<DeValue<'_>>) -> Result<(), Error> {
        let limits = &mut policy.rate_limits;
        for (k, v) in in_order(self.table("rate_limit", v)?) {
            let name = k.get_ref().as_ref();
            let key = format!("rate_limit.{name}");
            match name {
                "opens_per_minute" => limits.opens_per_minute = Some(self.rate(&key, v)?),
                "uid" => {
                    for (uk, uv) in in_order(self.table(&key, v)?) {
                        let uid_text = uk.get_ref().as_ref();
                        let upath = format!("rate_limit.uid.{uid_text}");
                        let uid = parse_uid(uid_text).map_err(|m| self.error(&upath, uk.span(), m))?;
                        let t = self.table(&upath, uv)?;
                        let mut rate = None;
                        for (rk, rv) in in_order(t) {
                            let rname = rk.get_ref().as_ref();
                            let rkey = format!("{upath}.{rname}");
                            match rname {
                                "opens_per_minute" => rate = Some(self.rate(&rkey, rv)?),
                                _ => return Err(self.unknown(&rkey, rk, UID_KEYS)),
                            }
                        }
                        let rate = rate.ok_or_else(|| {
                            self.error(&upath, uk.span(), "missing opens_per_minute for this uid")
                        })?;
                        limits.per_uid.insert(uid, rate);
                    }
                }
                _ => return Err(self.unknown(&key, k, RATE_KEYS)),
            }
        }
        Ok(())
    }

    fn rate(&self, key: &str, v: &Spanned<DeValue<'_>>) -> Result<u32, Error> {
        let n = self.integer(key, v, u64::from(MAX_OPENS_PER_MINUTE))?;
        Ok(u32::try_from(n).unwrap_or(MAX_OPENS_PER_MINUTE))
    }
}

/// A uid written as a canonical decimal (no sign, no leading zero), below
/// `u32::MAX` (which is `(uid_t)-1`, "no uid").
/// `udp://HOST:PORT`, `tcp://HOST:PORT`, `unix:/PATH` or
/// `http://HOST:PORT[/PATH]` (plain HTTP: put a local TLS proxy in front).
fn parse_export_address(s: &str) -> Result<super::ExportAddress, String> {
    use super::ExportAddress;
    let host_port = |hp: &str| -> Result<String, String> {
        let (host, port) = hp.rsplit_once(':').ok_or_else(|| format!("{s:?}: HOST:PORT is needed"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
        if host.is_empty() || !port_ok || hp.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
            return Err(format!("{s:?}: HOST:PORT with a port from 1 to 65535 is needed"));
        }
        Ok(hp.to_string())
    };
    if let Some(rest) = s.strip_prefix("udp://") {
        Ok(ExportAddress::Udp(host_port(rest)?))
    } else if let Some(rest) = s.strip_prefix("tcp://") {
        Ok(ExportAddress::Tcp(host_port(rest)?))
    } else if let Some(path) = s.strip_prefix("unix:") {
        if !path.starts_with('/') || path.contains('\0') {
            return Err(format!("{s:?}: unix: takes an absolute socket path"));
        }
        Ok(ExportAddress::Unix(path.into()))
    } else if let Some(rest) = s.strip_prefix("http://") {
        let hp = rest.split('/').next().unwrap_or("");
        host_port(hp)?;
        if rest.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!("{s:?}: spaces or control characters in a URL"));
        }
        Ok(ExportAddress::Http(s.to_string()))
    } else if s.starts_with("https://") {
        Err(format!("{s:?}: https is not spoken here; send to a local TLS-terminating proxy over http://"))
    } else {
        Err(format!(
            "{s:?}: the address is udp://HOST:PORT, tcp://HOST:PORT, unix:/PATH or http://HOST:PORT/PATH"
        ))
    }
}

fn parse_uid(s: &str) -> Result<u32, String> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    match s.parse::<u32>() {
        Ok(uid) if canonical && uid != u32::MAX => Ok(uid),
        _ => Err(format!("{s:?} is not a uid (a decimal number below {})", u32::MAX)),
    }
}

/// A duration string: decimal digits, then one unit of ms, s, m, h, d.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = s.split_at(digits);
    let hint =
        "write a whole number and one unit: ms, s, m, h or d (\"250ms\", \"30s\", \"5m\", \"1h\", \"2d\")";
    if number.is_empty() {
        return Err(format!("{s:?} is not a duration: {hint}"));
    }
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(format!("{s:?} has no unit: {hint}, or an integer (not a string) for seconds")),
        _ => return Err(format!("{s:?} has an unknown unit {unit:?}: {hint}")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(ms_per_unit))
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is far too long"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86400)));
    }

    #[test]
    fn bad_durations_say_why() {
        for bad in ["", "s", "30", "30 s", " 30s", "30s ", "1.5h", "-5s", "5x", "5sec", "1h30m", "5S", "٣s"]
        {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("99999999999999999999s").unwrap_err().contains("too long"));
        assert!(parse_duration("18446744073709551615d").unwrap_err().contains("too long"));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
    }
}
