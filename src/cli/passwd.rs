//! `vaultfs passwd STORE`: new passphrase; the master key is re-wrapped in
//! one atomic header write, so a crash leaves the old or the new one working.
//! On a mounted vault the daemon does it, through its control socket.

use super::args::PasswdArgs;
use super::exit;
use super::mountinfo::{Serving, open_unmounted, serving};
use super::passphrase::{self, Confirm};

pub fn run(a: PasswdArgs) -> exit::Result {
    // Mounted: the running daemon changes it, and the agents stay online.
    if let Some(Serving { pid, mountpoint: Some(mnt) }) = serving(&a.store) {
        let old = passphrase::obtain(&a.passphrase, "Current passphrase: ", Confirm::Once)?;
        let new = passphrase::obtain_new(a.new_passphrase_file)?;
        super::control::passwd_mounted(&mnt, &old, &new)?;
        println!("passphrase changed (by the mount at {}, daemon pid {pid})", mnt.display());
        return Ok(());
    }
    let mut v = open_unmounted(&a.store, "passwd", "")?;
    let old = passphrase::obtain(&a.passphrase, "Current passphrase: ", Confirm::Once)?;
    let new = passphrase::obtain_new(a.new_passphrase_file)?;
    v.change_passphrase(&old, &new)?;
    println!("passphrase changed");
    Ok(())
}
