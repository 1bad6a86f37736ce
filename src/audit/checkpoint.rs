//! Signed tree heads as C2SP checkpoints (c2sp.org/tlog-checkpoint) in
//! signed notes (c2sp.org/signed-note), Ed25519 flavour:
//!
//! ```text
//! vaultfs/<vault id, 32 lowercase hex>
//! <tree size, decimal>
//! <root hash, base64>
//!
//! — vaultfs/<vault id> base64(key id(4) ‖ Ed25519 signature over the body(64))
//! ```
//!
//! The key name is the origin; key id = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[..4].

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::Error;
use super::merkle::Hash;
use crate::crypto::{SigningKey, VerifyingKey, sha256, verify};

/// The signed-note signature type byte for Ed25519.
const ED25519_TYPE: u8 = 0x01;
/// Signature lines start with an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// The spec requires accepting at least 16 signatures; more is a hostile note.
const MAX_SIGNATURES: usize = 64;
/// Far above any real checkpoint (~200 bytes), to bound work on hostile input.
const MAX_NOTE_LEN: usize = 64 * 1024;

/// A tree head: the log `origin` had `size` leaves with root `root`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// The origin (and key name) of a vault's log: `vaultfs/<id as lowercase hex>`.
pub fn vault_origin(vault_id: &[u8; 16]) -> String {
    format!("vaultfs/{}", crate::format::hex(vault_id))
}

/// The origin of the audit log a read-only mount on `host` keeps of its own
/// accesses to a cluster vault (docs/AUDIT.md, "Logs of other hosts"):
/// `vaultfs/<id>/host/<host>`, so that a checkpoint of one log never passes
/// for one of another.
pub fn host_origin(vault_id: &[u8; 16], host: &str) -> String {
    format!("{}/host/{host}", vault_origin(vault_id))
}

/// The signed-note key id of an Ed25519 key under `name`.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut buf = Vec::with_capacity(name.len() + 2 + 32);
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(&[b'\n', ED25519_TYPE]);
    buf.extend_from_slice(&key.0);
    let d = sha256(&buf);
    [d[0], d[1], d[2], d[3]]
}

impl Checkpoint {
    /// The note text that is signed (three lines, each ending in a newline).
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    /// The signed note, signed under the key name `origin`. The origin must be
    /// a valid key name (non-empty, no spaces, no `+`), as [`vault_origin`]'s are.
    pub fn sign(&self, key: &SigningKey) -> String {
        debug_assert!(valid_name(&self.origin), "origin {:?} is not a valid key name", self.origin);
        let body = self.body();
        let mut sig = Vec::with_capacity(68);
        sig.extend_from_slice(&key_id(&self.origin, &key.verifying_key()));
        sig.extend_from_slice(&key.sign(body.as_bytes()));
        format!("{body}\n{SIG_PREFIX}{} {}\n", self.origin, B64.encode(sig))
    }

    /// Parses a checkpoint note and checks it carries a valid signature by
    /// `key` under the key name equal to its origin. Signatures by other keys
    /// are ignored, as the signed-note spec requires, but must be well formed.
    /// Every signature by our key must verify.
    pub fn parse_and_verify(
        note: &str,
        origin_expected: Option<&str>,
        key: &VerifyingKey,
    ) -> Result<Checkpoint, Error> {
        let malformed = Error::NoteMalformed;
        if note.len() > MAX_NOTE_LEN {
            return Err(malformed("too long"));
        }
        if note.chars().any(|c| c < ' ' && c != '\n') {
            return Err(malformed("control character"));
        }
        // The body ends at the last blank line (signed-note).
        let split = note.rfind("\n\n").ok_or(malformed("no blank line before the signatures"))?;
        let (body, sigs) = (&note[..split + 1], &note[split + 2..]);

        let cp = parse_body(body)?;
        if let Some(expected) = origin_expected {
            if expected != cp.origin {
                return Err(Error::OriginMismatch { expected: expected.to_string(), found: cp.origin });
            }
        }

        let our_id = key_id(&cp.origin, key);
        let (mut ours, mut named_ours) = (0usize, false);
        let lines = sig_lines(sigs)?;
        if lines.len() > MAX_SIGNATURES {
            return Err(malformed("too many signatures"));
        }
        for (name, blob) in lines {
            if name != cp.origin {
                continue;
            }
            named_ours = true;
            if blob.len() < 4 || blob[..4] != our_id {
                continue;
            }
            let sig: [u8; 64] = blob[4..].try_into().map_err(|_| Error::SignatureInvalid)?;
            verify(key, body.as_bytes(), &sig).map_err(|_| Error::SignatureInvalid)?;
            ours += 1;
        }
        match (ours, named_ours) {
            (0, true) => Err(Error::KeyIdMismatch(cp.origin)),
            (0, false) => Err(Error::SignatureMissing(cp.origin)),
            _ => Ok(cp),
        }
    }
}

/// Key names (and so our origins) are non-empty, without spaces or `+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The checkpoint body: exactly origin, size and root, no extension lines.
fn parse_body(body: &str) -> Result<Checkpoint, Error> {
    let malformed = Error::NoteMalformed;
    let mut lines = body.strip_suffix('\n').ok_or(malformed("body does not end in a newline"))?.split('\n');
    let (Some(origin), Some(size), Some(root), None) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return Err(malformed("body is not exactly origin, size and root hash"));
    };
    if !valid_name(origin) {
        return Err(malformed("origin is empty or contains a space or '+'"));
    }
    let size = parse_decimal(size).ok_or(malformed("tree size is not a canonical decimal u64"))?;
    let root: Hash = B64
        .decode(root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or(malformed("root hash is not base64 of 32 bytes"))?;
    Ok(Checkpoint { origin: origin.to_string(), size, root })
}

/// ASCII digits without leading zeros (except "0") that fit a u64.
fn parse_decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

/// Splits the signature block into (key name, decoded signature) pairs.
fn sig_lines(block: &str) -> Result<Vec<(&str, Vec<u8>)>, Error> {
    let malformed = Error::NoteMalformed;
    let block = block.strip_suffix('\n').ok_or(malformed("no signature lines"))?;
    block
        .split('\n')
        .map(|line| {
            let rest =
                line.strip_prefix(SIG_PREFIX).ok_or(malformed("signature line without '\u{2014} '"))?;
            let (name, sig) = rest.split_once(' ').ok_or(malformed("signature line without a signature"))?;
            if !valid_name(name) {
                return Err(malformed("signature key name is empty or contains a space or '+'"));
            }
            let blob = B64.decode(sig).map_err(|_| malformed("signature is not base64"))?;
            if blob.len() < 5 {
                return Err(malformed("signature shorter than a key id and one byte"));
            }
            Ok((name, blob))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::audit::merkle;
    use crate::crypto::Key32;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_seed(Key32::from_bytes([n; 32]))
    }

    fn cp() -> Checkpoint {
        Checkpoint { origin: vault_origin(&[0xab; 16]), size: 12, root: merkle::leaf_hash(b"x") }
    }

    fn check(note: &str) -> Result<Checkpoint, Error> {
        Checkpoint::parse_and_verify(note, None, &key(1).verifying_key())
    }

    #[test]
    fn origin_format() {
        let id: [u8; 16] = core::array::from_fn(|i| i as u8 * 17);
        assert_eq!(vault_origin(&id), "vaultfs/00112233445566778899aabbccddeeff");
    }

    #[test]
    fn sign_then_verify() {
        let c = cp();
        let note = c.sign(&key(1));
        assert!(note.starts_with(&format!("{}\n12\n", c.origin)));
        assert_eq!(check(&note), Ok(c.clone()));
        assert_eq!(
            Checkpoint::parse_and_verify(&note, Some(&c.origin), &key(1).verifying_key()),
            Ok(c.clone())
        );
        assert!(matches!(
            Checkpoint::parse_and_verify(&note, Some("vaultfs/other"), &key(1).verifying_key()),
            Err(Error::OriginMismatch { .. })
        ));
    }

    #[test]
    fn empty_tree_checkpoint() {
        let c = Checkpoint { size: 0, root: merkle::empty_root(), ..cp() };
        assert_eq!(check(&c.sign(&key(1))), Ok(c));
    }

    #[test]
    fn wrong_key_is_a_key_id_mismatch() {
        let note = cp().sign(&key(2));
        assert_eq!(check(&note), Err(Error::KeyIdMismatch(cp().origin)));
    }

    #[test]
    fn forged_signature_with_our_key_id_is_invalid() {
        let note = cp().sign(&key(1));
        let (body, sig) = note.rsplit_once(' ').unwrap();
        let mut blob = B64.decode(sig.trim_end()).unwrap();
        blob[10] ^= 1;
        assert_eq!(check(&format!("{body} {}\n", B64.encode(&blob))), Err(Error::SignatureInvalid));
    }

    #[test]
    fn other_keys_signatures_are_ignored() {
        let c = cp();
        let ours = c.sign(&key(1));
        let theirs = Checkpoint { origin: "witness.example/w1".into(), ..c.clone() }.sign(&key(3));
        let their_line = theirs.rsplit_once("\n\n").unwrap().1;
        assert_eq!(check(&format!("{ours}{their_line}")), Ok(c.clone()));
        // Only another key's signature: missing.
        let body = c.body();
        assert_eq!(check(&format!("{body}\n{their_line}")), Err(Error::SignatureMissing(c.origin)));
    }

    #[test]
    fn altered_bodies_fail() {
        let c = cp();
        let note = c.sign(&key(1));
        let sig = note.rsplit_once("\n\n").unwrap().1;
        let with = |body: &str| check(&format!("{body}\n{sig}"));
        let b64 = B64.encode(c.root);
        let o = &c.origin;
        // Well-formed but different: the signature catches it.
        assert_eq!(with(&format!("{o}\n13\n{b64}\n")), Err(Error::SignatureInvalid));
        // Malformed bodies are rejected before any signature check.
        for body in [
            format!("{o}\n012\n{b64}\n"),
            format!("{o}\n+12\n{b64}\n"),
            format!("{o}\n12 \n{b64}\n"),
            format!("{o}\n18446744073709551616\n{b64}\n"),
            format!("{o}\n12\n{}\n", &b64[..b64.len() - 1]),
            format!("{o}\n12\n{}\n", B64.encode([0u8; 31])),
            format!("{o}\n12\n{b64}\nextension\n"),
            format!("{o}\n12\n"),
            format!("\n12\n{b64}\n"),
            format!("{o} x\n12\n{b64}\n"),
            format!("{o}+\n12\n{b64}\n"),
        ] {
            assert!(matches!(with(&body), Err(Error::NoteMalformed(_))), "{body:?}: {:?}", with(&body));
        }
    }

    /// Control characters are those below U+0020 other than newline, as in
    /// the signed-note format: DEL and the C1 range are ordinary characters.
    #[test]
    fn only_c0_characters_are_control_characters() {
        let c = cp();
        let ours = c.sign(&key(1));
        let theirs = Checkpoint { origin: "witness/w1".into(), ..c.clone() }.sign(&key(3));
        let their_line = theirs.rsplit_once("\n\n").unwrap().1;
        let named = |name: &str| format!("{ours}{}", their_line.replace("witness/w1", name));
        for name in ["witness\u{7f}/w1", "witness\u{80}/w1", "witness\u{9f}/w1"] {
            assert_eq!(check(&named(name)), Ok(c.clone()), "{name:?}");
        }
        for bad in ["witness\u{1}/w1", "witness\u{1b}/w1", "witness\t/w1", "witness\r/w1"] {
            assert_eq!(check(&named(bad)), Err(Error::NoteMalformed("control character")), "{bad:?}");
        }
    }

    #[test]
    fn malformed_notes() {
        let note = cp().sign(&key(1));
        for bad in [
            String::new(),
            "\n\n".to_string(),
            note.trim_end().to_string(),
            note.replace('\u{2014}', "-"),
            note.replacen("\n\n", "\n", 1),
            format!("{note}\u{2014} \n"),
            format!("{note}\u{2014} name !!!!\n"),
            note.replace("\n12\n", "\n12\r\n"),
        ] {
            assert!(matches!(check(&bad), Err(Error::NoteMalformed(_))), "{bad:?}: {:?}", check(&bad));
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "(?s).{0,300}") {
            let _ = check(&s);
        }

        #[test]
        fn any_tree_head_roundtrips(size in any::<u64>(), root in any::<[u8; 32]>(), id in any::<[u8; 16]>()) {
            let c = Checkpoint { origin: vault_origin(&id), size, root };
            prop_assert_eq!(check(&c.sign(&key(1))), Ok(c));
        }
    }
}
