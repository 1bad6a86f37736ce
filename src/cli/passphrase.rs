//! Getting a passphrase: a terminal prompt, a file, or a file descriptor.
//! Never argv (visible in /proc to every user) and never the environment.

use std::io::{IsTerminal, Read};
use std::path::Path;

use zeroize::Zeroizing;

use super::args::PassphraseArgs;
use super::exit::Exit;
use crate::crypto::Passphrase;

/// Whether to ask twice (a new passphrase) or once.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    Once,
    Twice,
}

pub fn obtain(args: &PassphraseArgs, prompt: &str, confirm: Confirm) -> Result<Passphrase, Exit> {
    let pass = if let Some(path) = &args.passphrase_file {
        from_file(path)?
    } else if let Some(fd) = args.passphrase_fd {
        from_file(Path::new(&format!("/proc/self/fd/{fd}")))
            .map_err(|e| Exit::usage(format!("--passphrase-fd {fd}: {}", e.message)))?
    } else {
        from_terminal(prompt, confirm)?
    };
    if pass.is_empty() {
        return Err(Exit::usage("the passphrase is empty"));
    }
    Ok(pass)
}

/// A new passphrase: from `--new-passphrase-file`, else asked twice.
pub fn obtain_new(file: Option<std::path::PathBuf>) -> Result<Passphrase, Exit> {
    let source = PassphraseArgs { passphrase_file: file, passphrase_fd: None };
    obtain(&source, "New passphrase: ", Confirm::Twice)
}

/// First line of a file, without its line ending.
pub fn from_file(path: &Path) -> Result<Passphrase, Exit> {
    let mut raw = Zeroizing::new(Vec::new());
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .map_err(|e| Exit::usage(format!("cannot read passphrase from {}: {e}", path.display())))?;
    let end = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
    let mut line = raw[..end].to_vec();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Passphrase::new(line))
}

fn from_terminal(prompt: &str, confirm: Confirm) -> Result<Passphrase, Exit> {
    if !std::io::stdin().is_terminal() {
        return Err(Exit::usage(
            "no terminal to ask the passphrase on; use --passphrase-file FILE or --passphrase-fd FD",
        ));
    }
    let read = |p: &str| {
        rpassword::prompt_password(p)
            .map(|s| Zeroizing::new(s.into_bytes()))
            .map_err(|e| Exit::failure(format!("reading passphrase: {e}")))
    };
    let first = read(prompt)?;
    if confirm == Confirm::Twice {
        let second = read("Repeat passphrase: ")?;
        if *first != *second {
            return Err(Exit::usage("passphrases do not match"));
        }
    }
    Ok(Passphrase::new(first.to_vec()))
}
