//! An escrow share as text (`vaultfs escrow split` prints them; docs/FORMAT.md
//! section 3.3):
//! `vaultfs-share-1-VVVVVVVV-SSSSSSSS-TofN-I-<64 hex: share value>-CCCCCCCC`
//! with V the first 4 bytes of the vault id, S the first 4 bytes of the split
//! id, I the share's index (its Shamir x coordinate, 1..=N) and C the first
//! 4 bytes of SHA-256("vaultfs/v1/share" ‖ V ‖ S ‖ T ‖ N ‖ I ‖ value), all hex.

use zeroize::Zeroizing;

use super::{Error, hex, invalid};
use crate::crypto::{self, Key32};

/// What every share line starts with; the digit is the share format version.
pub const SHARE_PREFIX: &str = "vaultfs-share-1-";
const CHECKSUM_LABEL: &[u8] = b"vaultfs/v1/share";

/// One share of a recovery key, with what it belongs to.
#[derive(Clone, Debug)]
pub struct EscrowShare {
    /// First 4 bytes of the vault id.
    pub vault: [u8; 4],
    /// First 4 bytes of the split id (shares of two splits never combine).
    pub split: [u8; 4],
    pub threshold: u8,
    pub shares: u8,
    /// The Shamir x coordinate, 1..=shares.
    pub index: u8,
    /// The Shamir y values, one per byte of the recovery key (secret).
    pub value: Key32,
}

impl PartialEq for EscrowShare {
    fn eq(&self, o: &Self) -> bool {
        (self.vault, self.split, self.threshold, self.shares, self.index)
            == (o.vault, o.split, o.threshold, o.shares, o.index)
            && self.value.as_bytes() == o.value.as_bytes()
    }
}

impl Eq for EscrowShare {}

fn checksum(s: &EscrowShare) -> [u8; 4] {
    let mut input = Zeroizing::new(Vec::with_capacity(16 + 4 + 4 + 3 + 32));
    input.extend_from_slice(CHECKSUM_LABEL);
    input.extend_from_slice(&s.vault);
    input.extend_from_slice(&s.split);
    input.extend_from_slice(&[s.threshold, s.shares, s.index]);
    input.extend_from_slice(s.value.as_bytes());
    crypto::sha256(&input)[..4].try_into().expect("a SHA-256 digest has at least 4 bytes")
}

fn unhex<const N: usize>(s: &str, field: &'static str) -> Result<Zeroizing<[u8; N]>, Error> {
    super::codec::unhex_array::<N>(s, "share", field)
}

fn number(s: &str, field: &'static str) -> Result<u8, Error> {
    if s.is_empty()
        || s.len() > 3
        || !s.bytes().all(|c| c.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(invalid("share", format!("{field} {s:?} is not a number from 1 to 255")));
    }
    s.parse().map_err(|_| invalid("share", format!("{field} {s} is not a number from 1 to 255")))
}

impl EscrowShare {
    /// The share as one line of text (secret: it is a piece of the recovery key).
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(128));
        s.push_str(SHARE_PREFIX);
        s.push_str(&hex(&self.vault));
        s.push('-');
        s.push_str(&hex(&self.split));
        s.push_str(&format!("-{}of{}-{}-", self.threshold, self.shares, self.index));
        let value = Zeroizing::new(hex(self.value.as_bytes()));
        s.push_str(&value);
        s.push('-');
        s.push_str(&hex(&checksum(self)));
        s
    }

    /// Parses a share line. Whitespace anywhere is ignored and hex may be
    /// upper case (shares get typed from paper); the checksum must match, so a
    /// mistyped or damaged share is refused before any share is combined.
    pub fn parse(text: &str) -> Result<EscrowShare, Error> {
        let compact: Zeroizing<String> = Zeroizing::new(
            text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase(),
        );
        let Some(rest) = compact.strip_prefix(SHARE_PREFIX) else {
            if let Some(v) = compact.strip_prefix("vaultfs-share-") {
                let version = v.split('-').next().unwrap_or("");
                return Err(invalid("share", format!("share format version {version:?} is not supported")));
            }
            return Err(invalid("share", format!("not a vaultfs share (expected {SHARE_PREFIX}…)")));
        };
        let fields: Vec<&str> = rest.split('-').collect();
        let [vault, split, tn, index, value, sum] = fields[..] else {
            return Err(invalid("share", format!("{} fields after the prefix, not 6", fields.len())));
        };
        let Some((t, n)) = tn.split_once("of") else {
            return Err(invalid("share", format!("{tn:?} is not THRESHOLDofSHARES")));
        };
        let share = EscrowShare {
            vault: *unhex::<4>(vault, "vault id")?,
            split: *unhex::<4>(split, "split id")?,
            threshold: number(t, "threshold")?,
            shares: number(n, "share count")?,
            index: number(index, "index")?,
            value: Key32::from_bytes(*unhex::<32>(value, "share value")?),
        };
        let sum = unhex::<4>(sum, "checksum")?;
        if checksum(&share) != *sum {
            return Err(invalid(
                "share",
                format!("share #{} fails its checksum: it is mistyped or damaged", share.index),
            ));
        }
        if share.threshold < 1
            || (share.threshold == 1 && share.shares != 1)
            || share.threshold > share.shares
            || share.index == 0
            || share.index > share.shares
        {
            return Err(invalid(
                "share",
                format!(
                    "share #{} of a {} of {} split is impossible",
                    share.index, share.threshold, share.shares
                ),
            ));
        }
        Ok(share)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EscrowShare {
        EscrowShare {
            vault: [0x1a, 0x2b, 0x3c, 0x4d],
            split: [0x5e, 0x6f, 0x70, 0x81],
            threshold: 3,
            shares: 5,
            index: 2,
            value: Key32::from_bytes([0xa5; 32]),
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let s = sample();
        let text = s.to_text();
        assert!(text.starts_with("vaultfs-share-1-1a2b3c4d-5e6f7081-3of5-2-a5a5"), "{}", *text);
        assert_eq!(text.len(), SHARE_PREFIX.len() + 8 + 1 + 8 + 1 + 4 + 1 + 1 + 1 + 64 + 1 + 8);
        assert_eq!(EscrowShare::parse(&text).unwrap(), s);
        // Typed from paper: spaces, line breaks, capitals.
        let typed = text.to_uppercase().replace("A5A5", "A5 A5\n");
        assert_eq!(EscrowShare::parse(&typed).unwrap(), s);
    }

    #[test]
    fn every_single_character_change_is_refused() {
        let text = sample().to_text();
        let alphabet = "0123456789abcdef-ovx";
        for i in 0..text.len() {
            for c in alphabet.chars() {
                let mut t = text.to_string();
                if t[i..].starts_with(c) {
                    continue;
                }
                t.replace_range(i..i + 1, &c.to_string());
                assert!(EscrowShare::parse(&t).is_err(), "{t} accepted");
            }
        }
    }

    #[test]
    fn clear_messages() {
        let text = sample().to_text();
        let msg = |t: &str| EscrowShare::parse(t).unwrap_err().to_string();
        let mut typo = text.to_string();
        let at = text.len() - 20;
        typo.replace_range(at..at + 1, if &text[at..at + 1] == "0" { "1" } else { "0" });
        assert!(msg(&typo).contains("mistyped or damaged"), "{}", msg(&typo));
        assert!(msg("hello").contains("not a vaultfs share"));
        assert!(msg(&text.replace("share-1-", "share-2-")).contains("version \"2\""));
        assert!(msg(&text[..text.len() - 9]).contains("fields"));
    }

    #[test]
    fn impossible_parameters_refused_even_with_a_good_checksum() {
        for (t, n, i) in [(1, 5, 1), (0, 1, 1), (1, 1, 2), (6, 5, 1), (3, 5, 6), (3, 5, 0)] {
            let s = EscrowShare { threshold: t, shares: n, index: i, ..sample() };
            assert!(EscrowShare::parse(&s.to_text()).is_err(), "{t} of {n} #{i} accepted");
        }
        // A single recovery key is a share too: 1 of 1.
        let key = EscrowShare { threshold: 1, shares: 1, index: 1, ..sample() };
        assert_eq!(EscrowShare::parse(&key.to_text()).unwrap(), key);
    }
}
