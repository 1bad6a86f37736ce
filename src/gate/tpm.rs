//! TPM 2.0 sealed-secret factor (in progress).
