//! Hardware factors from the vault's side: making one at enrollment (its
//! secret, and the description the header keeps) and asking a key slot's
//! factors for their secrets at unlock. The devices are `gate`'s business.

use std::sync::OnceLock;

use crate::crypto::{self, Key32};
use crate::format::{Factor, Fido2Factor};
use crate::gate::fido2::{self, AssertionRequest, Authenticator};
use crate::gate::tpm::{self, SealedBlob, TpmConfig};

use super::error::{ErrorKind, Result, err};

/// The relying party id vaultfs credentials are made for.
pub const FIDO2_RP_ID: &str = "vaultfs";

/// How this process reaches its factors: the TPM's TCTI and PCR choice, the
/// FIDO2 authenticators (opened on first use) and the PIN if one was given.
pub struct FactorAccess {
    pub tpm: TpmConfig,
    pub fido2_pin: Option<String>,
    fido2: OnceLock<std::result::Result<Vec<Box<dyn Authenticator>>, String>>,
    /// The split id and recovery factor secret, when escrow shares were given.
    recovery: Option<([u8; 16], Key32)>,
}

/// The authenticators to use: the software devices listed (`:`-separated)
/// in `VAULTFS_FIDO2_SOFT` (two plugged-in keys: enrolling a backup key
/// needs the enrolled one to answer), else the first USB security key.
fn open_authenticators() -> std::result::Result<Vec<Box<dyn Authenticator>>, String> {
    let found: std::result::Result<Vec<_>, String> = match std::env::var_os(fido2::SOFT_ENV) {
        Some(list) if !list.is_empty() => std::env::split_paths(&list)
            .map(|p| fido2::open_from(Some(p.as_os_str())).map_err(|e| e.to_string()))
            .collect(),
        _ => fido2::open_from(None).map(|a| vec![a]).map_err(|e| e.to_string()),
    };
    for a in found.iter().flatten() {
        tracing::info!("FIDO2 authenticator: {}", a.name());
    }
    found
}

impl FactorAccess {
    pub fn new(tpm: TpmConfig, fido2_pin: Option<String>) -> Self {
        FactorAccess { tpm, fido2_pin, fido2: OnceLock::new(), recovery: None }
    }

    /// Lets escrow slots of split `split_id` answer with `secret` (set by
    /// `Vault::<Locked>::accept_escrow` once the shares check out).
    pub(super) fn set_recovery(&mut self, split_id: [u8; 16], secret: Key32) {
        self.recovery = Some((split_id, secret));
    }

    fn authenticators(&self) -> std::result::Result<&[Box<dyn Authenticator>], String> {
        match self.fido2.get_or_init(open_authenticators) {
            Ok(a) => Ok(a),
            Err(e) => Err(e.clone()),
        }
    }

    /// The secrets of `factors`, in order; the first that fails says why.
    pub fn secrets(&self, factors: &[Factor]) -> std::result::Result<Vec<Key32>, String> {
        factors
            .iter()
            .map(|f| match f {
                Factor::Tpm(blob) => {
                    let blob = SealedBlob::from_bytes(blob).map_err(|e| format!("tpm: {e}"))?;
                    tpm::unseal(&self.tpm, &blob).map_err(|e| format!("tpm: {e}"))
                }
                Factor::Fido2(c) => self.fido2_secret(c).map_err(|e| format!("fido2: {e}")),
                Factor::Recovery { split_id } => match &self.recovery {
                    Some((id, secret)) if id == split_id => Ok(secret.clone()),
                    _ => Err("recovery: needs the escrow shares (--share-file)".to_string()),
                },
            })
            .collect()
    }

    /// Asks each authenticator in turn; one that lacks the credential passes.
    fn fido2_secret(&self, c: &Fido2Factor) -> std::result::Result<Key32, String> {
        let mut last = fido2::Error::NoDevice;
        for auth in self.authenticators()? {
            match self.fido2_secret_from(auth.as_ref(), c) {
                Ok(secret) => return Ok(secret),
                Err(e) => last = e,
            }
        }
        Err(last.to_string())
    }

    fn fido2_secret_from(
        &self,
        auth: &dyn Authenticator,
        c: &Fido2Factor,
    ) -> std::result::Result<Key32, fido2::Error> {
        let allow = [c.credential_id.clone()];
        let req = AssertionRequest {
            rp_id: &c.rp_id,
            credentials: &allow,
            salt: &c.salt,
            pin: if c.pin { self.fido2_pin.as_deref() } else { None },
            uv: c.pin,
            up: c.presence,
        };
        auth.hmac_secret(&req).map(|(_, secret)| secret)
    }

    /// A fresh random secret sealed to the TPM (with the configured PCRs).
    pub fn new_tpm_factor(&self) -> Result<(Factor, Key32)> {
        let secret = Key32::random()?;
        let blob = tpm::seal(&self.tpm, &secret)
            .map_err(|e| err(ErrorKind::FactorFailed, format!("sealing to the TPM: {e}")))?;
        Ok((Factor::Tpm(blob.to_bytes()), secret))
    }

    /// A new credential on the FIDO2 authenticator (a touch), and its
    /// hmac-secret output for a fresh salt (another touch if `presence`).
    pub fn new_fido2_factor(&self, presence: bool) -> Result<(Factor, Key32)> {
        let fail = |e: String| err(ErrorKind::FactorFailed, format!("FIDO2 enrollment: {e}"));
        let auth =
            self.authenticators().map_err(fail)?.first().ok_or_else(|| fail("no security key".into()))?;
        let pin = self.fido2_pin.as_deref();
        let cred = auth.make_credential(FIDO2_RP_ID, pin, presence).map_err(|e| fail(e.to_string()))?;
        let salt: [u8; 32] = crypto::random_array()?;
        let factor = Fido2Factor {
            rp_id: cred.rp_id.clone(),
            credential_id: cred.id.clone(),
            salt,
            presence: cred.up,
            pin: cred.uv,
        };
        let secret = self.fido2_secret_from(auth.as_ref(), &factor).map_err(|e| fail(e.to_string()))?;
        Ok((Factor::Fido2(factor), secret))
    }
}
