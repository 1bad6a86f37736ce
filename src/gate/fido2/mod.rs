//! FIDO2 hmac-secret factor (docs/CRYPTO.md, "FIDO2 factor").
//!
//! At enrollment an authenticator makes a non-discoverable credential with the
//! CTAP2 `hmac-secret` extension. At unlock it is asked for
//! `HMAC-SHA-256(CredRandom, salt)` over a salt stored in the vault header:
//! that 32-byte output is the factor secret. The credential's `CredRandom`
//! never leaves the authenticator, so the secret cannot be computed without it
//! (and without a touch, and the PIN if the credential was enrolled with one).
//!
//! - [`Authenticator`]: what the layers above need, implemented by
//! - [`hid::HidAuthenticator`]: a USB security key through `ctap-hid-fido2`
//!   (a thin adapter; no HID device exists on the CI machines), and
//! - `soft::SoftAuthenticator`: a software authenticator with the same
//!   hmac-secret semantics, which stands in for hardware in tests only: it
//!   is compiled only with the cargo feature `soft-fido2`, which release
//!   builds do not enable (its secrets live in a file: no touch, no key).
//!
//! [`open_from`] picks one: the software authenticator when given the
//! state file `VAULTFS_FIDO2_SOFT` names (and the build has it), the first
//! USB key otherwise.

pub mod hid;
#[cfg(feature = "soft-fido2")]
pub mod soft;

use std::ffi::OsStr;

use crate::crypto::Key32;

pub use hid::HidAuthenticator;
#[cfg(feature = "soft-fido2")]
pub use soft::{PresenceFn, PresenceMode, SoftAuthenticator};

/// Environment variable naming the state file of the software authenticator.
/// When set (and not empty), the vault opens it ([`open_from`]) instead of USB devices.
pub const SOFT_ENV: &str = "VAULTFS_FIDO2_SOFT";

/// A credential made by [`Authenticator::make_credential`]: what the vault
/// stores to ask for the same hmac-secret output later. Nothing here is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The credential id the authenticator returned (opaque bytes).
    pub id: Vec<u8>,
    /// The relying party id the credential is bound to.
    pub rp_id: String,
    /// Made with user verification (a PIN): every assertion must give the PIN,
    /// which also selects the UV `CredRandom`.
    pub uv: bool,
    /// Every assertion must test user presence (a touch).
    pub up: bool,
}

/// One getAssertion with hmac-secret(salt1).
#[derive(Debug, Clone, Copy)]
pub struct AssertionRequest<'a> {
    /// The relying party id the credentials were made for.
    pub rp_id: &'a str,
    /// Allow list: any one of these credentials may answer (a backup key is a
    /// second entry). The answer names the index of the one that did.
    pub credentials: &'a [Vec<u8>],
    /// salt1 of the hmac-secret extension (stored in the vault header).
    pub salt: &'a [u8; 32],
    /// The authenticator's PIN. Giving one performs user verification, and
    /// CTAP2 then answers from the credential's UV `CredRandom`: pass it
    /// exactly when the credential was enrolled with one ([`Credential::uv`]).
    pub pin: Option<&'a str>,
    /// The credentials were enrolled with a PIN: without one, fail with
    /// [`Error::PinRequired`] instead of asking the device.
    pub uv: bool,
    /// Test user presence (a touch).
    pub up: bool,
}

impl<'a> AssertionRequest<'a> {
    /// The request for one enrolled credential (its own uv and up flags).
    #[cfg(test)]
    pub fn for_credential(
        cred: &'a Credential,
        allow: &'a [Vec<u8>],
        salt: &'a [u8; 32],
        pin: Option<&'a str>,
    ) -> Self {
        AssertionRequest { rp_id: &cred.rp_id, credentials: allow, salt, pin, uv: cred.uv, up: cred.up }
    }
}

/// A FIDO2 authenticator that supports the hmac-secret extension.
pub trait Authenticator: Send + Sync {
    /// What to call this authenticator in messages ("YubiKey 5 NFC").
    fn name(&self) -> String;

    /// makeCredential with the hmac-secret extension enabled, non-discoverable
    /// (rk = false). Always tests user presence (CTAP2 requires it). With a PIN
    /// the credential is made with user verification ([`Credential::uv`]); `up`
    /// records whether assertions must test presence.
    fn make_credential(&self, rp_id: &str, pin: Option<&str>, up: bool) -> Result<Credential, Error>;

    /// getAssertion with hmac-secret(salt1): which credential of the allow list
    /// answered (its index) and the 32-byte output, the factor secret.
    fn hmac_secret(&self, req: &AssertionRequest<'_>) -> Result<(usize, Key32), Error>;
}

/// What can go wrong with a FIDO2 factor. Messages say what the user can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No FIDO2 authenticator is connected.
    #[error("no FIDO2 security key found: plug one in and try again")]
    NoDevice,
    /// None of the allowed credentials was made by this authenticator for this relying party.
    #[error("this security key holds none of the enrolled credentials: use the key that was enrolled")]
    NoCredential,
    /// The credential was enrolled with a PIN and none was given.
    #[error("this security key needs its PIN for this credential")]
    PinRequired,
    /// A PIN was given but the authenticator has none set.
    #[error("the security key has no PIN set: set one first, or enroll without a PIN")]
    PinNotSet,
    /// The new PIN breaks the authenticator's PIN rules.
    #[error("PIN not accepted: {0}")]
    PinPolicy(&'static str),
    /// Wrong PIN; that many attempts remain before the PIN is blocked for good.
    #[error("wrong PIN: {retries_left} attempts left before the security key blocks its PIN")]
    PinInvalid { retries_left: u8 },
    /// Three wrong PINs in a row: no PIN is tried again until the authenticator is power-cycled.
    #[error("three wrong PINs in a row: unplug the security key and plug it back in before trying again")]
    PinAuthBlocked,
    /// The PIN retry counter is exhausted: only a reset (which destroys its credentials) revives the authenticator.
    #[error(
        "the security key's PIN is blocked after too many wrong PINs: it must be reset, which destroys \
         its credentials; unlock with another enrolled key"
    )]
    PinBlocked,
    /// Nobody touched the authenticator in time.
    #[error("no touch in time: touch the security key when it blinks")]
    PresenceTimeout,
    /// User presence was refused (the request was cancelled or denied).
    #[error("the security key refused the request (presence denied or cancelled)")]
    PresenceDenied,
    /// The authenticator or its transport failed.
    #[error("security key error: {0}")]
    Device(String),
    /// An answer or a value that cannot be what it claims.
    #[error("malformed FIDO2 data: {0}")]
    Malformed(&'static str),
    /// The software authenticator's state file cannot be read, parsed or written.
    #[error("software authenticator state {}: {problem}", path.display())]
    #[cfg(feature = "soft-fido2")]
    State { path: std::path::PathBuf, problem: String },
    /// `VAULTFS_FIDO2_SOFT` is set, but this build has no software authenticator.
    #[error(
        "VAULTFS_FIDO2_SOFT is set, but this build has no software authenticator (it stands in for \
         hardware in tests only: cargo build --features soft-fido2); unset it to use a security key"
    )]
    NoSoftAuthenticator,
}

/// The authenticator to use: the software authenticator on the state file
/// `soft_state` (created if absent, silently) when that is given and not
/// empty, else the first USB security key ([`Error::NoDevice`] when none is
/// plugged in).
pub fn open_from(soft_state: Option<&OsStr>) -> Result<Box<dyn Authenticator>, Error> {
    match soft_state {
        #[cfg(feature = "soft-fido2")]
        Some(path) if !path.is_empty() => Ok(Box::new(SoftAuthenticator::open(std::path::Path::new(path))?)),
        #[cfg(not(feature = "soft-fido2"))]
        Some(path) if !path.is_empty() => Err(Error::NoSoftAuthenticator),
        _ => Ok(Box::new(HidAuthenticator::open()?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "soft-fido2")]
    #[test]
    fn open_from_creates_the_soft_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fido2.state");
        let auth = open_from(Some(path.as_os_str())).unwrap();
        assert!(path.exists());
        assert!(auth.name().contains("software"));
        // Reopening finds the same device: a credential made by one answers the other.
        let soft = SoftAuthenticator::open(&path).unwrap();
        soft.set_presence(PresenceMode::Always, std::time::Duration::from_secs(1)).unwrap();
        let cred = soft.make_credential("vaultfs", None, true).unwrap();
        let allow = [cred.id.clone()];
        let salt = [7u8; 32];
        let req = AssertionRequest::for_credential(&cred, &allow, &salt, None);
        let a = soft.hmac_secret(&req).unwrap();
        let b = open_from(Some(path.as_os_str())).unwrap().hmac_secret(&req).unwrap();
        assert_eq!(a.0, b.0);
        assert_eq!(a.1.as_bytes(), b.1.as_bytes());
    }

    #[cfg(not(feature = "soft-fido2"))]
    #[test]
    fn without_the_feature_the_variable_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fido2.state");
        assert!(matches!(open_from(Some(path.as_os_str())), Err(Error::NoSoftAuthenticator)));
        assert!(!path.exists());
    }

    #[test]
    fn error_messages_say_what_to_do() {
        assert!(Error::PinAuthBlocked.to_string().contains("unplug"));
        assert!(Error::PinInvalid { retries_left: 5 }.to_string().contains("5 attempts"));
    }

    #[cfg(feature = "soft-fido2")]
    #[test]
    fn the_soft_state_error_names_the_file_and_line() {
        let e = Error::State { path: "/x/s".into(), problem: "line 2: bad hex".into() };
        assert_eq!(e.to_string(), "software authenticator state /x/s: line 2: bad hex");
    }
}
