//! `.stats` at the mount root: the figures `vaultfs mount --metrics` serves
//! (docs/ADMIN.md, "Metrics and health"), as a read-only file for people
//! without Prometheus. Like `.audit` it is a text snapshot taken at open,
//! readable by the mounting uid only, and its opens are recorded.

use std::sync::Arc;

use super::adapter::VaultFs;
use super::audit::AUDIT_INO;
use super::errno::Res;
use crate::vault::Attr;

/// The `.stats` file's inode number: below the first user inode, never stored.
pub const STATS_INO: u64 = 10;
pub const STATS_NAME: &[u8] = b".stats";

/// The root's read-only text files (`.audit`, `.stats`): snapshots held per
/// open file handle.
pub fn is_root_text(ino: u64) -> bool {
    ino == AUDIT_INO || ino == STATS_INO
}

impl VaultFs {
    /// The text of `.audit` or `.stats` now.
    pub fn root_text(&self, ino: u64) -> Res<Arc<Vec<u8>>> {
        if ino == STATS_INO {
            return Ok(Arc::new(self.vault.metrics().render(&self.vault.figures()).into_bytes()));
        }
        self.audit_text()
    }

    /// The attributes of `.audit` or `.stats` whose text is `size` bytes.
    pub fn root_text_attr(&self, ino: u64, size: u64) -> Attr {
        Attr { ino, ..self.audit_attr(size) }
    }
}
