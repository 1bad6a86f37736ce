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
    if confirm == Confirm::Twice
        && let Some(warning) = weakness(&pass)
    {
        eprintln!("vaultfs: warning: {warning}");
    }
    Ok(pass)
}

/// Why a new passphrase is weak, if it is (zxcvbn's estimate of the guesses
/// an attacker needs: at most 10^8, its scores 0 to 2). A warning, not a
/// refusal: the owner may have reasons (a test vault, a key from elsewhere).
pub fn weakness(pass: &Passphrase) -> Option<String> {
    let text = String::from_utf8_lossy(pass.as_bytes());
    let estimate = zxcvbn::zxcvbn(&text, &["vaultfs", "vault"]);
    if estimate.score() >= zxcvbn::Score::Three {
        return None;
    }
    let why = estimate.feedback().and_then(|f| f.warning()).map(|w| format!(" ({w})")).unwrap_or_default();
    Some(format!(
        "this passphrase is weak: about 10^{:.0} guesses would find it{why}. Argon2id slows each guess, \
         but a copy of the store can be attacked offline for as long as anyone likes; four or more random \
         words are strong. `vaultfs passwd` changes it.",
        estimate.guesses_log10()
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_and_short_passphrases_are_called_weak_and_random_words_are_not() {
        for weak in ["password", "vaultfs123", "letmein!", "aaaaaaaaaaaa", "qwerty2024"] {
            assert!(weakness(&Passphrase::new(weak.into())).is_some(), "{weak} passed");
        }
        for strong in ["correct horse battery staple", "tundra-mosaic-velvet-orbit-quill", "X9$kq!2vLr#8pZ"] {
            assert_eq!(weakness(&Passphrase::new(strong.into())), None, "{strong} was called weak");
        }
    }
}
