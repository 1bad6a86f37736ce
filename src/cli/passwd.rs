//! `vaultfs passwd STORE`: new passphrase; the master key is re-wrapped in
//! one atomic header write, so a crash leaves the old or the new one working.

use super::args::PasswdArgs;
use super::exit;
use super::mountinfo::open_unmounted;
use super::passphrase::{self, Confirm};

pub fn run(a: PasswdArgs) -> exit::Result {
    let mut v = open_unmounted(&a.store, "passwd", "")?;
    let old = passphrase::obtain(&a.passphrase, "Current passphrase: ", Confirm::Once)?;
    let new = passphrase::obtain_new(a.new_passphrase_file)?;
    v.change_passphrase(&old, &new)?;
    println!("passphrase changed");
    Ok(())
}
