//! `vaultfs compact STORE`: sled's files rewritten with only the live keys,
//! giving back the space of deleted values (archived audit records above
//! all: docs/ADMIN.md, "Audit archives"). No passphrase: only ciphertext
//! and opaque keys are copied.

use super::args::CompactArgs;
use super::exit::{self, Exit};
use super::mountinfo::serving;

pub fn run(a: CompactArgs) -> exit::Result {
    if let Some(s) = serving(&a.store) {
        return Err(Exit {
            code: exit::Code::Mounted,
            message: format!(
                "{} is served by a running mount (daemon pid {}): unmount it first",
                a.store.display(),
                s.pid
            ),
        });
    }
    let c = crate::vault::compact_store(&a.store)?;
    println!("store compacted: {} -> {} bytes ({} keys)", c.bytes_before, c.bytes_after, c.keys);
    Ok(())
}
