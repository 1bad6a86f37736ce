//! The tamper-evident audit log (docs/AUDIT.md, in progress): an RFC 9162
//! Merkle tree over BLAKE3 with inclusion and consistency proofs. The leaf
//! encoding, signed checkpoints and the `.audit` view build on this.

pub mod merkle;
