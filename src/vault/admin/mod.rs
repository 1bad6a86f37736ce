//! Administration of a vault, one command a file: the checks and repairs
//! (`fsck`), key rotation (`rotate`), escrow of the recovery key (`escrow`),
//! hardware factors (`enroll`), dead-man succession (`succession`), salvage
//! of a damaged store (`salvage`) and the audit log's archives (`archive`).
//! Most run on a closed vault; several also through a mount's control
//! socket. The hot path (content, namespace, the audit record of an access)
//! stays in the modules beside this one.

pub(super) mod archive;
pub(super) mod enroll;
pub(super) mod escrow;
pub(super) mod fsck;
pub(super) mod rotate;
pub(super) mod salvage;
pub(super) mod succession;
