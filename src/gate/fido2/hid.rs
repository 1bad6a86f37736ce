//! USB security keys through `ctap-hid-fido2` (hidraw): a thin adapter from
//! the library's calls and errors to [`Authenticator`] and [`Error`].
//!
//! No HID device exists on the CI machines, so only `open`'s "no device"
//! path and the error mapping are tested here; the software authenticator
//! stands in for the rest (docs/CRYPTO.md, "FIDO2 factor").
//!
//! The library's own "touch the sensor" message is turned off: the layers
//! above tell the user when to touch. Its calls run under `catch_unwind`,
//! because it panics on some malformed answers and on hidapi init failure,
//! and a key that misbehaves must not take the mount daemon down.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use ctap_hid_fido2::fidokey::{
    AssertionExtension, CredentialExtension, GetAssertionArgsBuilder, MakeCredentialArgsBuilder,
};
use ctap_hid_fido2::{FidoKeyHid, LibCfg};

use super::{AssertionRequest, Authenticator, Credential, Error};
use crate::crypto::{self, Key32};

/// The first FIDO2 security key found on USB.
pub struct HidAuthenticator {
    device: FidoKeyHid,
    name: String,
    /// One CTAP transaction at a time: the library locks per packet only.
    busy: Mutex<()>,
}

impl HidAuthenticator {
    /// Opens the first FIDO2 key on USB; [`Error::NoDevice`] if there is none.
    pub fn open() -> Result<Self, Error> {
        let devices = guarded("listing USB devices", ctap_hid_fido2::get_fidokey_devices)?;
        let info = devices.into_iter().next().ok_or(Error::NoDevice)?;
        let mut cfg = LibCfg::init();
        cfg.enable_log = false;
        cfg.enable_keep_alive_msg = false;
        let param = info.param.clone();
        let device = guarded("opening the key", || FidoKeyHid::new(&[param], &cfg))?
            .map_err(|e| Error::Device(format!("cannot open {}: {e:#}", info.product_string)))?;
        let name = if info.product_string.is_empty() {
            "FIDO2 security key".to_owned()
        } else {
            info.product_string.clone()
        };
        Ok(HidAuthenticator { device, name, busy: Mutex::new(()) })
    }

    /// Maps a library error; for a wrong PIN, asks the key how many tries remain.
    fn fail(&self, message: &str) -> Error {
        if status_code(message) == Some("CTAP2_ERR_PIN_INVALID") {
            return match guarded("reading PIN retries", || self.device.get_pin_retries()) {
                Ok(Ok(n)) => Error::PinInvalid { retries_left: u8::try_from(n.max(0)).unwrap_or(u8::MAX) },
                Ok(Err(e)) => {
                    Error::Device(format!("wrong PIN, and the key did not say how many tries remain: {e:#}"))
                }
                Err(e) => e,
            };
        }
        map_status(message)
    }
}

impl Authenticator for HidAuthenticator {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn make_credential(&self, rp_id: &str, pin: Option<&str>, up: bool) -> Result<Credential, Error> {
        let challenge =
            crypto::random_array::<32>().map_err(|e| Error::Device(format!("random source: {e}")))?;
        let mut args = MakeCredentialArgsBuilder::new(rp_id, &challenge)
            .extensions(&[CredentialExtension::HmacSecret(Some(true))]);
        args = match pin {
            Some(pin) => args.pin(pin),
            None => args.without_pin_and_uv(),
        };
        let args = args.build();
        let _one = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let att = guarded("making a credential", || self.device.make_credential_with_args(&args))?
            .map_err(|e| self.fail(&format!("{e:#}")))?;
        if !att.extensions.iter().any(|e| matches!(e, CredentialExtension::HmacSecret(Some(true)))) {
            return Err(Error::Device("this security key does not support the hmac-secret extension".into()));
        }
        let id = att.credential_descriptor.id;
        if id.is_empty() {
            return Err(Error::Malformed("makeCredential returned an empty credential id"));
        }
        Ok(Credential { id, rp_id: rp_id.to_owned(), uv: pin.is_some(), up })
    }

    fn hmac_secret(&self, req: &AssertionRequest<'_>) -> Result<(usize, Key32), Error> {
        if req.credentials.is_empty() {
            return Err(Error::NoCredential);
        }
        if req.uv && req.pin.is_none() {
            return Err(Error::PinRequired);
        }
        let challenge =
            crypto::random_array::<32>().map_err(|e| Error::Device(format!("random source: {e}")))?;
        let mut args = GetAssertionArgsBuilder::new(req.rp_id, &challenge)
            .extensions(&[AssertionExtension::HmacSecret(Some(*req.salt))]);
        for id in req.credentials {
            args = args.add_credential_id(id);
        }
        args = match req.pin {
            Some(pin) => args.pin(pin),
            None => args.without_pin_and_uv(),
        };
        if !req.up {
            args = args.without_up();
        }
        let args = args.build();
        let _one = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let mut assertions = guarded("getting an assertion", || self.device.get_assertion_with_args(&args))?
            .map_err(|e| self.fail(&format!("{e:#}")))?;
        let assertion =
            assertions.first_mut().ok_or(Error::Malformed("getAssertion returned no assertion"))?;
        // An authenticator may leave out the credential when the allow list has one entry.
        let index = if assertion.credential_id.is_empty() && req.credentials.len() == 1 {
            0
        } else {
            req.credentials
                .iter()
                .position(|id| *id == assertion.credential_id)
                .ok_or(Error::Malformed("getAssertion answered with a credential not in the allow list"))?
        };
        let mut output = None;
        for ext in &mut assertion.extensions {
            if let AssertionExtension::HmacSecret(Some(out)) = ext {
                output = Some(Key32::from_bytes(*out));
                zeroize::Zeroize::zeroize(out);
            }
        }
        let output = output.ok_or(Error::Malformed("getAssertion returned no hmac-secret output"))?;
        Ok((index, output))
    }
}

/// Runs a library call, turning a panic inside it into [`Error::Device`].
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, Error> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| Error::Device(format!("the FIDO2 library failed while {what}")))
}

/// The CTAP status name in a library error ("… = 0x31 CTAP2_ERR_PIN_INVALID PIN Invalid.").
fn status_code(message: &str) -> Option<&str> {
    message.split_whitespace().find(|t| t.starts_with("CTAP1_ERR_") || t.starts_with("CTAP2_ERR_"))
}

/// Our error for a library error message, by its CTAP status.
fn map_status(message: &str) -> Error {
    match status_code(message) {
        Some("CTAP2_ERR_NO_CREDENTIALS" | "CTAP2_ERR_INVALID_CREDENTIAL") => Error::NoCredential,
        Some("CTAP2_ERR_PIN_REQUIRED") => Error::PinRequired,
        Some("CTAP2_ERR_PIN_NOT_SET") => Error::PinNotSet,
        Some("CTAP2_ERR_PIN_BLOCKED") => Error::PinBlocked,
        Some("CTAP2_ERR_PIN_AUTH_BLOCKED") => Error::PinAuthBlocked,
        Some("CTAP2_ERR_PIN_POLICY_VIOLATION") => {
            Error::PinPolicy("the security key's PIN policy refuses it")
        }
        Some("CTAP2_ERR_USER_ACTION_TIMEOUT" | "CTAP2_ERR_ACTION_TIMEOUT" | "CTAP1_ERR_TIMEOUT") => {
            Error::PresenceTimeout
        }
        Some("CTAP2_ERR_OPERATION_DENIED" | "CTAP2_ERR_KEEPALIVE_CANCEL") => Error::PresenceDenied,
        Some("CTAP2_ERR_UNSUPPORTED_EXTENSION") => {
            Error::Device("this security key does not support the hmac-secret extension".into())
        }
        _ => Error::Device(message.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Whatever the machine has plugged in, opening never panics nor hangs;
    /// with no key (CI) it is `NoDevice`.
    #[test]
    fn open_without_a_device_fails_cleanly() {
        let start = Instant::now();
        let result = HidAuthenticator::open();
        assert!(start.elapsed() < Duration::from_secs(10), "enumeration took {:?}", start.elapsed());
        if ctap_hid_fido2::get_fidokey_devices().is_empty() {
            assert!(matches!(result, Err(Error::NoDevice)), "{:?}", result.err());
        }
    }

    #[test]
    fn library_errors_map_to_ours() {
        let msg = |code: &str| format!("response_status err = {code}");
        assert_eq!(
            map_status(&msg("0x2E CTAP2_ERR_NO_CREDENTIALS    No valid credentials provided.")),
            Error::NoCredential
        );
        assert_eq!(map_status(&msg("0x36 CTAP2_ERR_PIN_REQUIRED  PIN is required")), Error::PinRequired);
        assert_eq!(map_status(&msg("0x32 CTAP2_ERR_PIN_BLOCKED PIN Blocked.")), Error::PinBlocked);
        assert_eq!(
            map_status(&msg("0x34 CTAP2_ERR_PIN_AUTH_BLOCKED PIN authentication")),
            Error::PinAuthBlocked
        );
        assert_eq!(map_status(&msg("0x2F CTAP2_ERR_USER_ACTION_TIMEOUT   Timeout")), Error::PresenceTimeout);
        assert_eq!(
            map_status(&msg("0x27 CTAP2_ERR_OPERATION_DENIED  Not authorized")),
            Error::PresenceDenied
        );
        assert_eq!(
            status_code(&msg("0x31 CTAP2_ERR_PIN_INVALID   PIN Invalid.")),
            Some("CTAP2_ERR_PIN_INVALID")
        );
        // PIN_AUTH_INVALID is a protocol failure, not a wrong PIN.
        assert!(matches!(map_status(&msg("0x33 CTAP2_ERR_PIN_AUTH_INVALID PIN auth")), Error::Device(_)));
        assert!(matches!(map_status("read err = 0xFE"), Error::Device(m) if m == "read err = 0xFE"));
    }

    #[test]
    fn the_adapter_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<HidAuthenticator>();
    }
}
