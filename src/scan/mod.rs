//! Secret detection (docs/POLICY.md, "Secrets in low levels"): whether a
//! written buffer holds a credential (a private key, a cloud access key, a
//! token) by a small documented rule set plus the policy's own patterns.
//! A hit never changes what is written; the vault records it. Pure: no
//! I/O. This module owns regex; matching is linear in the input.

use regex::bytes::RegexSet;

/// The built-in rules: name and pattern (Rust regex syntax, on bytes).
pub const RULES: &[(&str, &str)] = &[
    ("private_key", r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"),
    ("aws_access_key_id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})\b"),
    ("slack_token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_\-]{35}"),
    ("stripe_secret_key", r"\b(?:sk|rk)_live_[0-9A-Za-z]{24,}"),
    ("api_secret_key", r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{32,}"),
    ("jwt", r"\beyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"),
];

/// Longest policy pattern, and patterns at most.
pub const MAX_PATTERN: usize = 1024;
pub const MAX_PATTERNS: usize = 64;
/// A compiled pattern may use this much memory at most (a hostile policy
/// cannot make the daemon allocate without bound).
const SIZE_LIMIT: usize = 1 << 20;

/// The rules, compiled.
pub struct Scanner {
    set: RegexSet,
    names: Vec<String>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner").field("rules", &self.names).finish()
    }
}

impl Scanner {
    /// The built-in rules and `extra` patterns (named `policy.N`, N from 1).
    /// A pattern that does not compile is an error naming it.
    pub fn new(extra: &[String]) -> Result<Scanner, String> {
        if extra.len() > MAX_PATTERNS {
            return Err(format!("at most {MAX_PATTERNS} patterns"));
        }
        for (i, p) in extra.iter().enumerate() {
            if p.len() > MAX_PATTERN {
                return Err(format!("pattern {} is longer than {MAX_PATTERN} bytes", i + 1));
            }
            regex::bytes::RegexBuilder::new(p)
                .size_limit(SIZE_LIMIT)
                .build()
                .map_err(|e| format!("pattern {} ({p:?}) does not compile: {e}", i + 1))?;
        }
        let patterns: Vec<&str> =
            RULES.iter().map(|(_, p)| *p).chain(extra.iter().map(String::as_str)).collect();
        let set = regex::bytes::RegexSetBuilder::new(&patterns)
            .size_limit(SIZE_LIMIT * (patterns.len() + 1))
            .build()
            .map_err(|e| format!("the patterns do not compile together: {e}"))?;
        let names = RULES
            .iter()
            .map(|(n, _)| n.to_string())
            .chain((1..=extra.len()).map(|i| format!("policy.{i}")))
            .collect();
        Ok(Scanner { set, names })
    }

    /// The names of the rules `data` matches, in rule order.
    pub fn scan(&self, data: &[u8]) -> Vec<&str> {
        self.set.matches(data).iter().map(|i| self.names[i].as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_built_in_kind_and_nothing_in_prose() {
        let s = Scanner::new(&[]).unwrap();
        let cases: &[(&str, &str)] = &[
            ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n", "private_key"),
            ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n", "aws_access_key_id"),
            ("token: ghp_0123456789abcdefghijABCDEFGHIJ012345", "github_token"),
            ("SLACK=xoxb-1234567890-abcdefghij", "slack_token"),
            ("key=AIzaSyA1234567890abcdefghijklmnopqrstuv", "google_api_key"),
            ("sk_live_0123456789abcdefghijABCD", "stripe_secret_key"),
            ("OPENAI_API_KEY=sk-proj-0123456789abcdefghij0123456789abcd", "api_secret_key"),
            (
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "jwt",
            ),
        ];
        for (text, rule) in cases {
            assert_eq!(s.scan(text.as_bytes()), [*rule], "{text}");
        }
        let prose =
            b"The agent summarized the meeting: AKIA is a prefix, sk- too, and BEGIN PUBLIC KEY is fine.";
        assert!(s.scan(prose).is_empty());
        assert!(s.scan(&[0xff, 0x00, 0x80]).is_empty());
    }

    #[test]
    fn policy_patterns_are_named_and_checked() {
        let s = Scanner::new(&["corp-[0-9a-f]{8}".into()]).unwrap();
        assert_eq!(s.scan(b"id corp-deadbeef"), ["policy.1"]);
        assert!(Scanner::new(&["(unclosed".into()]).unwrap_err().contains("pattern 1"));
        assert!(Scanner::new(&["a{100000}{100000}".into()]).is_err(), "a pattern too large is refused");
    }
}
