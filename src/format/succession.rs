//! Dead-man succession records (docs/FORMAT.md section 3.4): the owner's
//! will (sealed in the store under `W`), the bequest sealed to the heir
//! inside it, and the text forms of heir keys and of a release.
//!
//! will     = version u8 (1) ‖ id (16) ‖ heir public key (32) ‖ period s u64 ‖
//!            set up ms u64 ‖ checked in ms u64 ‖ level count u8 ‖ levels ‖
//!            bequest length u16 ‖ bequest (HPKE: enc (32) ‖ ciphertext ‖ tag (16))
//! bequest plaintext = version u8 (1) ‖ master key (32) ‖ count u8 ‖
//!            count × (level u8 ‖ level key (32)) ‖ check (32)

use zeroize::Zeroizing;

use super::codec::{Reader, Writer, hex, unhex, unhex_array};
use super::{Error, invalid};
use crate::crypto::{self, HEIR_OVERHEAD, HeirPublic, HeirSecret, Key32};

const WILL_VERSION: u8 = 1;
const BEQUEST_VERSION: u8 = 1;
/// Levels a will can bequeath besides the passphrase levels (whose keys
/// the master key gives): the hardware factor levels.
pub const BEQUEATHABLE: [u8; 2] = [4, 5];
/// Bytes of a bequest's plaintext with `n` level keys.
pub fn bequest_len(n: usize) -> usize {
    1 + 32 + 1 + 33 * n + 32
}

/// The owner's succession settings and the sealed bequest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    /// Random, new at every `succession setup`; a release names it.
    pub id: [u8; 16],
    pub heir: HeirPublic,
    /// The owner must check in at least this often (seconds, at least 1).
    pub period_secs: u64,
    pub set_up_ms: u64,
    /// The last check-in (the setup counts as one).
    pub checked_in_ms: u64,
    /// Hardware factor levels whose keys the bequest holds, ascending.
    pub levels: Vec<u8>,
    /// The bequest, sealed to the heir (what a release hands out).
    pub bequest: Vec<u8>,
}

impl Will {
    /// When a release becomes possible (ms since the epoch).
    pub fn due_ms(&self) -> u64 {
        self.checked_in_ms.saturating_add(self.period_secs.saturating_mul(1000))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128 + self.bequest.len());
        w.u8(WILL_VERSION)
            .bytes(&self.id)
            .bytes(&self.heir.0)
            .u64(self.period_secs)
            .u64(self.set_up_ms)
            .u64(self.checked_in_ms)
            .u8(self.levels.len() as u8)
            .bytes(&self.levels)
            .u16(self.bequest.len() as u16)
            .bytes(&self.bequest);
        w.into_vec()
    }

    pub fn decode(b: &[u8]) -> Result<Will, Error> {
        let mut r = Reader::new(b, "will");
        let version = r.u8()?;
        if version != WILL_VERSION {
            return Err(invalid("will", format!("version {version} is not supported")));
        }
        let id = r.array()?;
        let heir = HeirPublic(r.array()?);
        let period_secs = r.u64()?;
        let set_up_ms = r.u64()?;
        let checked_in_ms = r.u64()?;
        let n = r.u8()? as usize;
        let levels = r.bytes(n)?.to_vec();
        let len = r.u16()? as usize;
        let bequest = r.bytes(len)?.to_vec();
        r.finish()?;
        if period_secs == 0 {
            return Err(invalid("will", "a check-in period of 0 seconds"));
        }
        if checked_in_ms < set_up_ms {
            return Err(invalid("will", "a check-in before the setup"));
        }
        if !levels.windows(2).all(|w| w[0] < w[1]) || levels.iter().any(|l| !BEQUEATHABLE.contains(l)) {
            return Err(invalid("will", format!("levels {levels:?}: only 4 and 5, ascending, each once")));
        }
        if len != bequest_len(n) + HEIR_OVERHEAD {
            return Err(invalid("will", format!("a bequest of {len} bytes for {n} level key(s)")));
        }
        Ok(Will { id, heir, period_secs, set_up_ms, checked_in_ms, levels, bequest })
    }
}

/// What the heir receives: the master key (levels 1 to 3 and the vault's
/// own keys follow from it) and the keys of the bequeathed hardware levels.
pub struct Bequest {
    pub master: Key32,
    pub levels: Vec<(u8, Key32)>,
}

impl Bequest {
    /// The plaintext without its check (the check is a keyed hash over these bytes).
    pub fn body(&self) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(Vec::with_capacity(bequest_len(self.levels.len())));
        b.push(BEQUEST_VERSION);
        b.extend_from_slice(self.master.as_bytes());
        b.push(self.levels.len() as u8);
        for (level, key) in &self.levels {
            b.push(*level);
            b.extend_from_slice(key.as_bytes());
        }
        b
    }

    /// Parses a plaintext into the bequest, the bytes its check covers, and the check.
    pub fn decode(b: &[u8]) -> Result<(Bequest, &[u8], [u8; 32]), Error> {
        let mut r = Reader::new(b, "bequest");
        let version = r.u8()?;
        if version != BEQUEST_VERSION {
            return Err(invalid("bequest", format!("version {version} is not supported")));
        }
        let master = Key32::from_bytes(r.array()?);
        let n = r.u8()? as usize;
        let mut levels = Vec::with_capacity(n);
        for _ in 0..n {
            let level = r.u8()?;
            if !BEQUEATHABLE.contains(&level) || levels.iter().any(|(l, _)| *l >= level) {
                return Err(invalid("bequest", format!("level {level} out of order or not 4 or 5")));
            }
            levels.push((level, Key32::from_bytes(r.array()?)));
        }
        let body = &b[..bequest_len(n) - 32];
        let check = r.array()?;
        r.finish()?;
        Ok((Bequest { master, levels }, body, check))
    }
}

/// Text prefixes; the digit is the text format's version.
pub const HEIR_PUBLIC_PREFIX: &str = "vaultfs-heir-1-";
pub const HEIR_SECRET_PREFIX: &str = "vaultfs-heir-secret-1-";
pub const RELEASE_PREFIX: &str = "vaultfs-release-1-";

fn checksum(label: &[u8], parts: &[&[u8]]) -> [u8; 4] {
    let mut input = Zeroizing::new(label.to_vec());
    for p in parts {
        input.extend_from_slice(p);
    }
    crypto::sha256(&input)[..4].try_into().expect("a SHA-256 digest has at least 4 bytes")
}

/// Whitespace removed, lower case (keys and releases get copied by hand).
fn compact(text: &str) -> Zeroizing<String> {
    Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase())
}

/// Splits `text` after `prefix` into exactly `N` dash-separated fields.
fn fields<'a, const N: usize>(
    text: &'a str,
    prefix: &str,
    what: &'static str,
) -> Result<[&'a str; N], Error> {
    let Some(rest) = text.strip_prefix(prefix) else {
        return Err(invalid(what, format!("not a vaultfs {what} (expected {prefix}…)")));
    };
    let f: Vec<&str> = rest.split('-').collect();
    f.try_into()
        .map_err(|f: Vec<&str>| invalid(what, format!("{} fields after the prefix, not {N}", f.len())))
}

/// `vaultfs-heir-1-<64 hex: public key>-<8 hex: SHA-256("vaultfs/v1/heir" ‖ key)[..4]>`.
pub fn heir_public_text(k: &HeirPublic) -> String {
    format!("{HEIR_PUBLIC_PREFIX}{}-{}", hex(&k.0), hex(&checksum(b"vaultfs/v1/heir", &[&k.0])))
}

pub fn parse_heir_public(text: &str) -> Result<HeirPublic, Error> {
    let t = compact(text);
    let [key, sum] = fields::<2>(&t, HEIR_PUBLIC_PREFIX, "heir public key")?;
    let key = *unhex_array::<32>(key, "heir public key", "key")?;
    if *unhex_array::<4>(sum, "heir public key", "checksum")? != checksum(b"vaultfs/v1/heir", &[&key]) {
        return Err(invalid("heir public key", "the checksum does not match: mistyped or damaged"));
    }
    Ok(HeirPublic(key))
}

/// `vaultfs-heir-secret-1-<64 hex>-<8 hex: SHA-256("vaultfs/v1/heir-secret" ‖ key)[..4]>` (secret).
pub fn heir_secret_text(k: &HeirSecret) -> Zeroizing<String> {
    let key = Zeroizing::new(hex(k.as_bytes()));
    Zeroizing::new(format!(
        "{HEIR_SECRET_PREFIX}{}-{}",
        *key,
        hex(&checksum(b"vaultfs/v1/heir-secret", &[k.as_bytes()]))
    ))
}

pub fn parse_heir_secret(text: &str) -> Result<HeirSecret, Error> {
    let t = compact(text);
    if t.starts_with(HEIR_PUBLIC_PREFIX) {
        return Err(invalid("heir private key", "this is the heir's public key, not the private key file"));
    }
    let [key, sum] = fields::<2>(&t, HEIR_SECRET_PREFIX, "heir private key")?;
    let key = unhex_array::<32>(key, "heir private key", "key")?;
    if *unhex_array::<4>(sum, "heir private key", "checksum")?
        != checksum(b"vaultfs/v1/heir-secret", &[&key[..]])
    {
        return Err(invalid("heir private key", "the checksum does not match: mistyped or damaged"));
    }
    Ok(HeirSecret::from_bytes(*key))
}

/// A release: the sealed bequest and what it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub vault_id: [u8; 16],
    pub will_id: [u8; 16],
    pub bequest: Vec<u8>,
}

impl Release {
    /// `vaultfs-release-1-<32 hex: vault id>-<32 hex: will id>-<hex: sealed
    /// bequest>-<8 hex: SHA-256("vaultfs/v1/release" ‖ vault id ‖ will id ‖ sealed)[..4]>`.
    pub fn to_text(&self) -> String {
        let sum = checksum(b"vaultfs/v1/release", &[&self.vault_id, &self.will_id, &self.bequest]);
        format!(
            "{RELEASE_PREFIX}{}-{}-{}-{}",
            hex(&self.vault_id),
            hex(&self.will_id),
            hex(&self.bequest),
            hex(&sum)
        )
    }

    pub fn parse(text: &str) -> Result<Release, Error> {
        let t = compact(text);
        let [vault, will, bequest, sum] = fields::<4>(&t, RELEASE_PREFIX, "release")?;
        let r = Release {
            vault_id: *unhex_array::<16>(vault, "release", "vault id")?,
            will_id: *unhex_array::<16>(will, "release", "will id")?,
            bequest: unhex(bequest, "release", "bequest")?.to_vec(),
        };
        let want = checksum(b"vaultfs/v1/release", &[&r.vault_id, &r.will_id, &r.bequest]);
        if *unhex_array::<4>(sum, "release", "checksum")? != want {
            return Err(invalid("release", "the checksum does not match: truncated, mistyped or damaged"));
        }
        if r.bequest.len() < bequest_len(0) + HEIR_OVERHEAD {
            return Err(invalid("release", format!("a bequest of {} bytes is too short", r.bequest.len())));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn will() -> Will {
        Will {
            id: [7; 16],
            heir: HeirPublic([9; 32]),
            period_secs: 86_400,
            set_up_ms: 1_000,
            checked_in_ms: 2_000,
            levels: vec![4],
            bequest: vec![1; bequest_len(1) + HEIR_OVERHEAD],
        }
    }

    #[test]
    fn will_round_trip_and_refusals() {
        let w = will();
        assert_eq!(Will::decode(&w.encode()).unwrap(), w);
        assert_eq!(w.due_ms(), 2_000 + 86_400_000);
        let bad = [
            Will { period_secs: 0, ..will() },
            Will { checked_in_ms: 999, ..will() },
            Will { levels: vec![3], bequest: vec![1; bequest_len(1) + HEIR_OVERHEAD], ..will() },
            Will { levels: vec![5, 4], bequest: vec![1; bequest_len(2) + HEIR_OVERHEAD], ..will() },
            Will { bequest: vec![1; 10], ..will() },
        ];
        for b in bad {
            assert!(Will::decode(&b.encode()).is_err(), "{b:?} accepted");
        }
        let enc = w.encode();
        for n in 0..enc.len() {
            assert!(Will::decode(&enc[..n]).is_err());
        }
    }

    #[test]
    fn bequest_round_trip() {
        let b = Bequest { master: Key32::from_bytes([1; 32]), levels: vec![(4, Key32::from_bytes([4; 32]))] };
        let mut bytes = b.body().to_vec();
        bytes.extend_from_slice(&[0xcc; 32]);
        assert_eq!(bytes.len(), bequest_len(1));
        let (d, body, check) = Bequest::decode(&bytes).unwrap();
        assert_eq!(d.master.as_bytes(), &[1; 32]);
        assert_eq!(d.levels[0].0, 4);
        assert_eq!(body, &b.body()[..]);
        assert_eq!(check, [0xcc; 32]);
        let mut wrong = bytes.clone();
        wrong[33 + 1] = 3;
        assert!(Bequest::decode(&wrong).is_err());
        assert!(Bequest::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn texts_round_trip_and_refuse_damage() {
        let (sk, pk) = HeirSecret::generate().unwrap();
        let p = heir_public_text(&pk);
        assert_eq!(parse_heir_public(&p).unwrap(), pk);
        assert_eq!(parse_heir_public(&p.to_uppercase().replace("VAULTFS", "vaultfs")).unwrap(), pk);
        let s = heir_secret_text(&sk);
        assert_eq!(parse_heir_secret(&s).unwrap().as_bytes(), sk.as_bytes());
        assert!(parse_heir_secret(&p).unwrap_err().to_string().contains("public key"));
        assert!(parse_heir_public(&s).is_err());
        let r = Release { vault_id: [1; 16], will_id: [2; 16], bequest: vec![3; 200] };
        let t = r.to_text();
        assert_eq!(Release::parse(&format!(" {t}\n")).unwrap(), r);
        for i in RELEASE_PREFIX.len()..t.len() {
            let mut bad = t.clone().into_bytes();
            bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
            assert!(Release::parse(std::str::from_utf8(&bad).unwrap()).is_err(), "change at {i} accepted");
        }
        assert!(Release::parse(&t[..t.len() - 3]).is_err());
    }
}
