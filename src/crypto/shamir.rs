//! Shamir secret sharing of a 32-byte key over GF(2⁸), byte by byte
//! (vsss-rs's constant-time `Gf256`; the only user of vsss-rs and rand_core).
//! Share i is (x = i, y = f₀(i) ‖ … ‖ f₃₁(i)) where each fⱼ is a random
//! polynomial of degree threshold − 1 with fⱼ(0) = byte j of the key.
//!
//! Fewer than `threshold` shares say nothing about the key: combining them
//! yields some other key, which is why callers check the result by
//! unwrapping something with it (there is no checkable tag here).

use std::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};
use vsss_rs::Gf256;
use zeroize::{Zeroize, Zeroizing};

use super::{Error, Key32};

/// One share: its x coordinate (1..=255) and 32 y bytes (secret).
#[derive(Clone, Debug)]
pub struct SharePoint {
    pub index: u8,
    pub value: Key32,
}

/// A BLAKE3 XOF keyed by 32 bytes from the OS: vsss-rs wants an infallible
/// RNG, and this lets the one fallible step (the OS random source) report
/// an error instead of panicking.
struct SeededRng(blake3::OutputReader);

impl SeededRng {
    fn new() -> Result<Self, Error> {
        let seed = Key32::random()?;
        Ok(SeededRng(blake3::Hasher::new_keyed(seed.as_bytes()).update(b"vaultfs shamir").finalize_xof()))
    }
}

impl TryRng for SeededRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}

impl TryCryptoRng for SeededRng {}

fn sharing(e: vsss_rs::Error) -> Error {
    Error::Sharing(e.to_string())
}

/// Splits `key` into `count` shares, any `threshold` of which rebuild it
/// (1 <= threshold <= count <= 255). Share indices are 1..=count. With a
/// threshold of 1 the polynomial has degree 0: every share is the key.
pub fn split(key: &Key32, threshold: u8, count: u8) -> Result<Vec<SharePoint>, Error> {
    if threshold < 1 || threshold > count {
        return Err(Error::Sharing(format!(
            "threshold {threshold} of {count} shares (need 1 <= threshold <= shares)"
        )));
    }
    if threshold == 1 {
        return (1..=count)
            .map(|index| Ok(SharePoint { index, value: Key32::from_slice(key.as_bytes())? }))
            .collect();
    }
    let mut raw = Gf256::split_bytes(threshold as usize, count as usize, key.as_bytes(), SeededRng::new()?)
        .map_err(sharing)?;
    let out = raw
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // vsss-rs numbers shares 1, 2, … in order; the format relies on it.
            debug_assert_eq!(s[0] as usize, i + 1);
            Ok(SharePoint { index: s[0], value: Key32::from_slice(&s[1..])? })
        })
        .collect::<Result<Vec<_>, Error>>();
    raw.iter_mut().for_each(|s| s.zeroize());
    out
}

/// Rebuilds the key from shares with distinct indices. Given fewer than the
/// threshold it returns a wrong key, not an error: only the caller can tell.
pub fn combine(shares: &[SharePoint]) -> Result<Key32, Error> {
    if shares.iter().any(|s| s.index == 0) {
        return Err(Error::Sharing("share index 0 is never made".into()));
    }
    match shares {
        [] => return Err(Error::Sharing("no shares".into())),
        // A degree-0 polynomial: the share is the key (threshold 1).
        [one] => return Key32::from_slice(one.value.as_bytes()),
        _ => {}
    }
    let mut raw: Vec<Vec<u8>> = shares
        .iter()
        .map(|s| {
            let mut v = Vec::with_capacity(33);
            v.push(s.index);
            v.extend_from_slice(s.value.as_bytes());
            v
        })
        .collect();
    let secret = Gf256::combine_bytes(&raw).map(Zeroizing::new).map_err(sharing);
    raw.iter_mut().for_each(|s| s.zeroize());
    Key32::from_slice(&secret?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        if k == 0 {
            return vec![vec![]];
        }
        if n < k {
            return vec![];
        }
        let mut out = subsets(n - 1, k);
        for mut s in subsets(n - 1, k - 1) {
            s.push(n - 1);
            out.push(s);
        }
        out
    }

    #[test]
    fn any_threshold_of_n_rebuild_the_key_and_fewer_do_not() {
        let key = Key32::random().unwrap();
        for (t, n) in [(2u8, 2u8), (2, 3), (3, 5), (4, 6)] {
            let shares = split(&key, t, n).unwrap();
            assert_eq!(shares.iter().map(|s| s.index).collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>());
            for k in t as usize..=n as usize {
                for pick in subsets(n as usize, k) {
                    let chosen: Vec<SharePoint> = pick.iter().map(|&i| shares[i].clone()).collect();
                    assert_eq!(combine(&chosen).unwrap().as_bytes(), key.as_bytes(), "{t} of {n}: {pick:?}");
                }
            }
            if t > 2 {
                for pick in subsets(n as usize, t as usize - 1) {
                    let chosen: Vec<SharePoint> = pick.iter().map(|&i| shares[i].clone()).collect();
                    assert_ne!(combine(&chosen).unwrap().as_bytes(), key.as_bytes(), "{t} of {n}: {pick:?}");
                }
            }
        }
    }

    #[test]
    fn every_split_is_fresh() {
        let key = Key32::from_bytes([7; 32]);
        let a = split(&key, 2, 3).unwrap();
        let b = split(&key, 2, 3).unwrap();
        assert_ne!(a[0].value.as_bytes(), b[0].value.as_bytes());
        // No share is the key, and no share byte column is constant.
        assert!(a.iter().all(|s| s.value.as_bytes() != key.as_bytes()));
    }

    #[test]
    fn bad_parameters_and_duplicates_are_errors() {
        let key = Key32::from_bytes([1; 32]);
        // Threshold 1: a degree-0 polynomial, every share is the key.
        let one = split(&key, 1, 1).unwrap();
        assert_eq!((one[0].index, one[0].value.as_bytes()), (1, key.as_bytes()));
        assert_eq!(combine(&one).unwrap().as_bytes(), key.as_bytes());
        assert!(split(&key, 4, 3).is_err());
        assert!(split(&key, 0, 0).is_err());
        assert_eq!(split(&key, 255, 255).unwrap().len(), 255);
        let s = split(&key, 2, 3).unwrap();
        // One share of a 2-of-3 split gives a wrong key (the caller's check
        // of the result is what refuses it), never this one.
        assert_ne!(combine(&s[..1]).unwrap().as_bytes(), key.as_bytes());
        assert!(combine(&[]).is_err());
        assert!(combine(&[s[0].clone(), s[0].clone()]).is_err());
        let zero = SharePoint { index: 0, value: s[1].value.clone() };
        assert!(combine(&[s[0].clone(), zero]).is_err());
    }
}
