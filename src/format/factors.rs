//! Parameters of a factor key slot (kind 2): which hardware factors, all of
//! them needed together, wrap that slot's copy of a level key.
//! Layout: count u8 (1..=4) ‖ count × (factor type u8 ‖ len u16 ‖ data).
//! FIDO2 data: rp id len u8 ‖ rp id ‖ credential id len u16 ‖ credential id ‖
//! salt(32) ‖ flags u8 (bit 0 user presence, bit 1 PIN). TPM data: the sealed
//! object (docs/CRYPTO.md, "TPM factor"), opaque here. Recovery data: split
//! id(16), and a recovery factor is always its slot's only factor.

use super::codec::{Reader, Writer};
use super::{Error, invalid};

/// Factor type byte: a secret sealed to a TPM 2.0.
pub const FACTOR_TPM: u8 = 1;
/// Factor type byte: the hmac-secret output of a FIDO2 credential.
pub const FACTOR_FIDO2: u8 = 2;
/// Factor type byte: a secret derived from the escrow recovery key
/// (`vaultfs escrow split --escrow-levels`).
pub const FACTOR_RECOVERY: u8 = 3;
const MAX_FACTORS: usize = 4;

/// One factor of a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Factor {
    /// The TPM's sealed object, as `gate::tpm` wrote it.
    Tpm(Vec<u8>),
    Fido2(Fido2Factor),
    /// The recovery key of the escrow split `split_id` (the header's
    /// recovery section): its shares open this slot.
    Recovery {
        split_id: [u8; 16],
    },
}

/// An enrolled FIDO2 credential and the salt its hmac-secret is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fido2Factor {
    pub rp_id: String,
    pub credential_id: Vec<u8>,
    pub salt: [u8; 32],
    /// A touch is required (recorded at enrollment).
    pub presence: bool,
    /// The authenticator's PIN is required (recorded at enrollment).
    pub pin: bool,
}

impl Factor {
    pub fn type_byte(&self) -> u8 {
        match self {
            Factor::Tpm(_) => FACTOR_TPM,
            Factor::Fido2(_) => FACTOR_FIDO2,
            Factor::Recovery { .. } => FACTOR_RECOVERY,
        }
    }

    /// The factor's name as users see it.
    pub fn name(&self) -> &'static str {
        match self {
            Factor::Tpm(_) => "tpm",
            Factor::Fido2(_) => "fido2",
            Factor::Recovery { .. } => "recovery",
        }
    }
}

pub fn encode_factors(factors: &[Factor]) -> Vec<u8> {
    let mut w = Writer::with_capacity(256);
    w.u8(factors.len() as u8);
    for f in factors {
        let data = match f {
            Factor::Tpm(blob) => blob.clone(),
            Factor::Fido2(c) => {
                let mut d = Writer::with_capacity(64 + c.credential_id.len());
                d.u8(c.rp_id.len() as u8)
                    .bytes(c.rp_id.as_bytes())
                    .u16(c.credential_id.len() as u16)
                    .bytes(&c.credential_id)
                    .bytes(&c.salt)
                    .u8(u8::from(c.presence) | (u8::from(c.pin) << 1));
                d.into_vec()
            }
            Factor::Recovery { split_id } => split_id.to_vec(),
        };
        w.u8(f.type_byte()).u16(data.len() as u16).bytes(&data);
    }
    w.into_vec()
}

pub fn decode_factors(bytes: &[u8]) -> Result<Vec<Factor>, Error> {
    let mut r = Reader::new(bytes, "factor slot");
    let n = r.u8()? as usize;
    if n == 0 || n > MAX_FACTORS {
        return Err(invalid("factor slot", format!("{n} factors (1..={MAX_FACTORS})")));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let kind = r.u8()?;
        let len = r.u16()? as usize;
        let data = r.bytes(len)?;
        out.push(match kind {
            FACTOR_TPM if !data.is_empty() => Factor::Tpm(data.to_vec()),
            FACTOR_TPM => return Err(invalid("tpm factor", "empty sealed object")),
            FACTOR_FIDO2 => Factor::Fido2(decode_fido2(data)?),
            FACTOR_RECOVERY => Factor::Recovery {
                split_id: data.try_into().map_err(|_| {
                    invalid("recovery factor", format!("{} bytes of split id (16)", data.len()))
                })?,
            },
            other => return Err(invalid("factor slot", format!("unknown factor type {other}"))),
        });
    }
    r.finish()?;
    if n > 1 && out.iter().any(|f| matches!(f, Factor::Recovery { .. })) {
        return Err(invalid("factor slot", "a recovery factor must be its slot's only factor"));
    }
    Ok(out)
}

fn decode_fido2(data: &[u8]) -> Result<Fido2Factor, Error> {
    let mut r = Reader::new(data, "fido2 factor");
    let rp_len = r.u8()? as usize;
    let rp_id = std::str::from_utf8(r.bytes(rp_len)?)
        .map_err(|_| invalid("fido2 factor", "relying party id is not UTF-8"))?
        .to_string();
    let cred_len = r.u16()? as usize;
    if cred_len == 0 {
        return Err(invalid("fido2 factor", "empty credential id"));
    }
    let credential_id = r.bytes(cred_len)?.to_vec();
    let salt = r.array()?;
    let flags = r.u8()?;
    if flags & !0b11 != 0 {
        return Err(invalid("fido2 factor", format!("unknown flags {flags:#x}")));
    }
    r.finish()?;
    Ok(Fido2Factor { rp_id, credential_id, salt, presence: flags & 1 != 0, pin: flags & 2 != 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Factor> {
        vec![
            Factor::Tpm(vec![1, 2, 3]),
            Factor::Fido2(Fido2Factor {
                rp_id: "vaultfs".into(),
                credential_id: vec![9; 70],
                salt: [5; 32],
                presence: true,
                pin: false,
            }),
        ]
    }

    #[test]
    fn round_trip() {
        let f = sample();
        assert_eq!(decode_factors(&encode_factors(&f)).unwrap(), f);
    }

    #[test]
    fn truncations_and_trailing_bytes_are_errors() {
        let bytes = encode_factors(&sample());
        for n in 0..bytes.len() {
            assert!(decode_factors(&bytes[..n]).is_err(), "prefix {n} accepted");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode_factors(&long).is_err());
    }

    #[test]
    fn unknown_types_and_flags_refused() {
        assert!(decode_factors(&[1, 9, 0, 1, 0]).is_err());
        assert!(decode_factors(&[0]).is_err());
        let mut bytes = encode_factors(&sample());
        let last = bytes.len() - 1;
        bytes[last] = 0x80;
        assert!(decode_factors(&bytes).is_err());
    }

    #[test]
    fn recovery_factor_stands_alone_with_a_16_byte_split_id() {
        let alone = vec![Factor::Recovery { split_id: [4; 16] }];
        assert_eq!(decode_factors(&encode_factors(&alone)).unwrap(), alone);
        let mut with_tpm = sample();
        with_tpm.push(Factor::Recovery { split_id: [4; 16] });
        assert!(decode_factors(&encode_factors(&with_tpm)).is_err());
        assert!(
            decode_factors(&[1, FACTOR_RECOVERY, 0, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                .is_err()
        );
    }
}
