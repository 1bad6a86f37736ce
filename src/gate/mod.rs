//! Hardware factors (L2): each yields a 32-byte factor secret that, mixed
//! with a level's wrapping key, wraps that level's key (docs/CRYPTO.md). No
//! factor, no secret, no key.
//!
//! `tpm` alone uses tss-esapi; `fido2` alone uses ctap-hid-fido2.

pub mod fido2;
pub mod tpm;
