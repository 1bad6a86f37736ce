//! FIDO2 hmac-secret factor (in progress).
