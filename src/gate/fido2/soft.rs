//! A software FIDO2 authenticator with CTAP2 hmac-secret semantics, standing
//! in for a USB security key in tests (no HID device exists on the CI
//! machines). It is not a security device: whoever reads its state file can
//! compute every output it would give (docs/CRYPTO.md, "FIDO2 factor").
//!
//! Credential id (106 bytes): `0x01 ‖ nonce (24) ‖ XChaCha20-Poly1305(wrap key,
//! aad = CRED_AAD ‖ SHA-256(rp_id), flags (1) ‖ CredRandomWithUV (32) ‖
//! CredRandomWithoutUV (32)) ‖ tag (16)`, wrap key = HKDF(device secret,
//! CRED_WRAP_LABEL). Like the key wrapping of real authenticators, the device
//! stores nothing per credential; an id from another device, for another rp
//! id, or altered in any byte fails authentication and is simply not found.
//!
//! State file (text, 0600, replaced atomically), one `key value` per line:
//! `vaultfs-soft-fido2 1`, `secret <64 hex>`, `pin-hash none|<64 hex>`,
//! `pin-retries <0..8>`, `presence touch|always|never`, `touch-timeout-ms <n>`.
//! A touch is the file `<state>.touch`, which the device waits for and deletes.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::{AssertionRequest, Authenticator, Credential, Error};
use crate::crypto::{self, Key32};
use crate::format::hex;

/// A presence test for an in-memory device: `true` means "the user touched".
pub type PresenceFn = Box<dyn Fn() -> bool + Send + Sync>;

/// How a file-backed device decides user presence (kept in its state file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceMode {
    /// Wait for the file `<state>.touch` to appear, delete it, go on; fail
    /// with [`Error::PresenceTimeout`] after the touch timeout.
    Touch,
    /// Every presence test passes at once (unattended tests).
    Always,
    /// Every presence test fails with [`Error::PresenceDenied`].
    Never,
}

impl PresenceMode {
    fn as_str(self) -> &'static str {
        match self {
            PresenceMode::Touch => "touch",
            PresenceMode::Always => "always",
            PresenceMode::Never => "never",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "touch" => Some(PresenceMode::Touch),
            "always" => Some(PresenceMode::Always),
            "never" => Some(PresenceMode::Never),
            _ => None,
        }
    }
}

/// PIN retries of a fresh device, and after every correct PIN (CTAP2: 8).
pub const MAX_PIN_RETRIES: u8 = 8;
/// Wrong PINs in a row after which the device wants a power cycle (CTAP2: 3).
pub const PIN_ATTEMPTS_PER_POWER_CYCLE: u8 = 3;
/// Touch timeout of a newly created state file.
pub const DEFAULT_TOUCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest touch timeout a state file may ask for.
const MAX_TOUCH_TIMEOUT: Duration = Duration::from_secs(3600);
/// How often a waiting device looks for the touch file.
const TOUCH_POLL: Duration = Duration::from_millis(20);

const CRED_VERSION: u8 = 1;
const CRED_WRAP_LABEL: &[u8] = b"vaultfs/soft-fido2/v1/credential-wrap";
const CRED_AAD: &[u8] = b"vaultfs/soft-fido2/v1/credential";
const PIN_LABEL: &[u8] = b"vaultfs/soft-fido2/v1/pin";
const FLAG_UV: u8 = 0x01;
const FLAG_UP: u8 = 0x02;
/// flags ‖ CredRandomWithUV ‖ CredRandomWithoutUV.
const CRED_PLAIN_LEN: usize = 1 + 32 + 32;
/// Length of every credential id this device makes.
pub const CREDENTIAL_ID_LEN: usize = 1 + CRED_PLAIN_LEN + crypto::SEALED_OVERHEAD;

const STATE_MAGIC: &str = "vaultfs-soft-fido2 1";
const STATE_MAX_LEN: u64 = 4096;

/// The device's lasting state: what a real authenticator keeps in flash.
struct State {
    secret: Key32,
    pin_hash: Option<[u8; 32]>,
    retries: u8,
    presence: PresenceMode,
    touch_timeout: Duration,
}

impl State {
    fn fresh() -> Result<Self, Error> {
        let secret = Key32::random().map_err(|e| Error::Device(format!("random source: {e}")))?;
        Ok(State {
            secret,
            pin_hash: None,
            retries: MAX_PIN_RETRIES,
            presence: PresenceMode::Touch,
            touch_timeout: DEFAULT_TOUCH_TIMEOUT,
        })
    }

    fn wrap_key(&self) -> Key32 {
        crypto::hkdf(self.secret.as_bytes(), b"", CRED_WRAP_LABEL)
    }

    fn pin_hash_of(&self, pin: &str) -> [u8; 32] {
        let key = crypto::hkdf(self.secret.as_bytes(), b"", PIN_LABEL);
        crypto::hmac_sha256(key.as_bytes(), pin.as_bytes())
    }

    fn encode(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(256));
        let pin = match &self.pin_hash {
            Some(h) => hex(h),
            None => "none".to_owned(),
        };
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            "{STATE_MAGIC}\nsecret {}\npin-hash {pin}\npin-retries {}\npresence {}\ntouch-timeout-ms {}\n",
            Zeroizing::new(hex(self.secret.as_bytes())).as_str(),
            self.retries,
            self.presence.as_str(),
            self.touch_timeout.as_millis(),
        );
        s
    }

    /// Parses a state file, strictly: the magic line, then each key exactly once.
    fn decode(text: &str) -> Result<Self, String> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, l)) if l == STATE_MAGIC => {}
            _ => {
                return Err(format!(
                    "not a software authenticator state file (first line is not {STATE_MAGIC:?})"
                ));
            }
        }
        let (mut secret, mut pin_hash, mut retries, mut presence, mut timeout) =
            (None, None, None, None, None);
        for (i, line) in lines {
            let n = i + 1;
            let (key, value) =
                line.split_once(' ').ok_or_else(|| format!("line {n}: expected `key value`"))?;
            let dup = |seen: bool| if seen { Err(format!("line {n}: {key} given twice")) } else { Ok(()) };
            match key {
                "secret" => {
                    dup(secret.is_some())?;
                    let bytes =
                        unhex32(value).ok_or_else(|| format!("line {n}: secret is not 64 hex digits"))?;
                    secret = Some(Key32::from_bytes(bytes));
                }
                "pin-hash" => {
                    dup(pin_hash.is_some())?;
                    pin_hash = Some(match value {
                        "none" => None,
                        v => Some(
                            unhex32(v).ok_or_else(|| format!("line {n}: pin-hash is not 64 hex digits"))?,
                        ),
                    });
                }
                "pin-retries" => {
                    dup(retries.is_some())?;
                    retries =
                        Some(value.parse::<u8>().ok().filter(|r| *r <= MAX_PIN_RETRIES).ok_or_else(
                            || format!("line {n}: pin-retries must be 0 to {MAX_PIN_RETRIES}"),
                        )?);
                }
                "presence" => {
                    dup(presence.is_some())?;
                    presence = Some(
                        PresenceMode::parse(value)
                            .ok_or_else(|| format!("line {n}: presence must be touch, always or never"))?,
                    );
                }
                "touch-timeout-ms" => {
                    dup(timeout.is_some())?;
                    timeout = Some(
                        value
                            .parse::<u64>()
                            .ok()
                            .map(Duration::from_millis)
                            .filter(|t| *t <= MAX_TOUCH_TIMEOUT)
                            .ok_or_else(|| {
                                format!(
                                    "line {n}: touch-timeout-ms must be 0 to {}",
                                    MAX_TOUCH_TIMEOUT.as_millis()
                                )
                            })?,
                    );
                }
                _ => return Err(format!("line {n}: unknown key {key:?}")),
            }
        }
        let missing = |what: &str| format!("{what} is missing");
        Ok(State {
            secret: secret.ok_or_else(|| missing("secret"))?,
            pin_hash: pin_hash.ok_or_else(|| missing("pin-hash"))?,
            retries: retries.ok_or_else(|| missing("pin-retries"))?,
            presence: presence.ok_or_else(|| missing("presence"))?,
            touch_timeout: timeout.ok_or_else(|| missing("touch-timeout-ms"))?,
        })
    }
}

/// What a credential id carries once unwrapped.
struct Unwrapped {
    flags: u8,
    cred_random_uv: Key32,
    cred_random: Key32,
}

fn rp_aad(rp_id: &str) -> Vec<u8> {
    let mut aad = CRED_AAD.to_vec();
    aad.extend_from_slice(&crypto::sha256(rp_id.as_bytes()));
    aad
}

fn wrap_credential(state: &State, rp_id: &str, flags: u8) -> Result<Vec<u8>, Error> {
    let random = || Key32::random().map_err(|e| Error::Device(format!("random source: {e}")));
    let (with_uv, without_uv) = (random()?, random()?);
    let mut plain = Zeroizing::new([0u8; CRED_PLAIN_LEN]);
    plain[0] = flags;
    plain[1..33].copy_from_slice(with_uv.as_bytes());
    plain[33..].copy_from_slice(without_uv.as_bytes());
    let mut id = Vec::with_capacity(CREDENTIAL_ID_LEN);
    id.push(CRED_VERSION);
    crypto::seal_into(&state.wrap_key(), &rp_aad(rp_id), &plain[..], &mut id)
        .map_err(|e| Error::Device(format!("wrapping the credential: {e}")))?;
    Ok(id)
}

/// The credential inside `id` if this device made it for `rp_id`, else `None`.
fn unwrap_credential(state: &State, rp_id: &str, id: &[u8]) -> Option<Unwrapped> {
    let (&version, sealed) = id.split_first()?;
    if version != CRED_VERSION || id.len() != CREDENTIAL_ID_LEN {
        return None;
    }
    let mut plain = Zeroizing::new([0u8; CRED_PLAIN_LEN]);
    crypto::open_in_place(&state.wrap_key(), &rp_aad(rp_id), sealed, &mut plain[..]).ok()?;
    Some(Unwrapped {
        flags: plain[0],
        cred_random_uv: Key32::from_slice(&plain[1..33]).ok()?,
        cred_random: Key32::from_slice(&plain[33..]).ok()?,
    })
}

/// Where presence comes from.
enum Presence {
    /// In-memory device: ask the callback.
    Callback(PresenceFn),
    /// File-backed device: the mode in the state file.
    StateFile,
}

/// What a device keeps only while powered.
struct Volatile {
    /// The in-memory device's state; a file-backed one reloads its file for
    /// every operation, so several processes can share it.
    memory: Option<State>,
    /// Wrong PINs in a row since the last correct one or power cycle.
    wrong_pins: u8,
}

/// The software authenticator: in memory (for unit tests) or backed by a
/// state file (to span processes: the mount daemon and `vaultfs enroll`).
///
/// Semantics follow CTAP2.1 where they matter to the hmac-secret factor:
/// makeCredential always tests presence and, with a PIN, verifies it
/// (`makeCredUvNotRqd`: no PIN is needed to make a non-discoverable
/// credential); getAssertion verifies a given PIN first, then finds the first
/// allowed credential it made for the rp id, refuses a UV credential without
/// PIN, tests presence if the request or the credential asks for it, and
/// answers `HMAC-SHA-256(CredRandomWithUV or CredRandomWithoutUV, salt1)` by
/// whether a PIN was verified. PIN: 8 retries, persisted, reset by a correct
/// PIN; 3 wrong in a row block PINs until a power cycle ([`Self::power_cycle`],
/// or reopening); 0 retries block the PIN for good.
///
/// Two processes using one state file at the same instant may lose one PIN
/// retry decrement (no file locking): acceptable for a test device.
pub struct SoftAuthenticator {
    path: Option<PathBuf>,
    presence: Presence,
    volatile: Mutex<Volatile>,
}

impl SoftAuthenticator {
    /// A new device that lives in memory only, asking `presence` for touches.
    pub fn in_memory(presence: PresenceFn) -> Result<Self, Error> {
        Ok(SoftAuthenticator {
            path: None,
            presence: Presence::Callback(presence),
            volatile: Mutex::new(Volatile { memory: Some(State::fresh()?), wrong_pins: 0 }),
        })
    }

    /// The device whose state is in the file at `path`, created (with a new
    /// device secret, no PIN, presence by touch file, 30 s timeout) if absent.
    /// Opening is a power-up: the wrong-PINs-in-a-row count starts at zero.
    pub fn open(path: &Path) -> Result<Self, Error> {
        match load(path) {
            Ok(_) => {}
            Err(StateError::Absent) => create(path, &State::fresh()?)?,
            Err(StateError::Bad(e)) => return Err(e),
        }
        Ok(SoftAuthenticator {
            path: Some(path.to_owned()),
            presence: Presence::StateFile,
            volatile: Mutex::new(Volatile { memory: None, wrong_pins: 0 }),
        })
    }

    /// The state file, if the device has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The file whose appearance is a touch: `<state>.touch`.
    pub fn touch_path(&self) -> Option<PathBuf> {
        self.path.as_deref().map(touch_path)
    }

    /// Sets the device PIN (CTAP2 setPIN: only while none is set). A PIN is 4
    /// to 63 bytes of UTF-8 with at least 4 characters.
    pub fn set_pin(&self, pin: &str) -> Result<(), Error> {
        if pin.chars().count() < 4 || pin.len() > 63 {
            return Err(Error::PinPolicy("a PIN has 4 to 63 characters"));
        }
        self.with_state(|state, _| {
            if state.pin_hash.is_some() {
                return Err(Error::PinPolicy("a PIN is already set"));
            }
            state.pin_hash = Some(state.pin_hash_of(pin));
            state.retries = MAX_PIN_RETRIES;
            Ok(((), true))
        })
    }

    /// PIN attempts left before the PIN is blocked for good.
    pub fn pin_retries(&self) -> Result<u8, Error> {
        self.with_state(|state, _| Ok((state.retries, false)))
    }

    /// How a file-backed device tests presence, and how long it waits for a
    /// touch; persisted in the state file. An in-memory device asks its
    /// callback instead and refuses this.
    pub fn set_presence(&self, mode: PresenceMode, touch_timeout: Duration) -> Result<(), Error> {
        if self.path.is_none() {
            return Err(Error::Device(
                "an in-memory software authenticator asks its presence callback".into(),
            ));
        }
        if touch_timeout > MAX_TOUCH_TIMEOUT {
            return Err(Error::Device(format!("touch timeout above {} s", MAX_TOUCH_TIMEOUT.as_secs())));
        }
        self.with_state(|state, _| {
            state.presence = mode;
            state.touch_timeout = touch_timeout;
            Ok(((), true))
        })
    }

    /// Unplug and replug: forgets the wrong PINs in a row (not the retries).
    pub fn power_cycle(&self) {
        self.lock().wrong_pins = 0;
    }

    fn lock(&self) -> MutexGuard<'_, Volatile> {
        // Every update under the lock is a single assignment, so a panic in
        // another thread cannot leave it half-done: a poisoned lock is fine.
        self.volatile.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the current state (reloaded from the file, if any) with
    /// the volatile counters; writes the state back when `f` says it changed.
    /// The device handles one request at a time, like a real one.
    fn with_state<T>(
        &self,
        f: impl FnOnce(&mut State, &mut u8) -> Result<(T, bool), Error>,
    ) -> Result<T, Error> {
        let mut guard = self.lock();
        let vol = &mut *guard;
        match &self.path {
            None => {
                let state = vol.memory.as_mut().expect("an in-memory device always holds its state");
                f(state, &mut vol.wrong_pins).map(|(t, _)| t)
            }
            Some(path) => {
                let mut state = load_existing(path)?;
                let (t, changed) = f(&mut state, &mut vol.wrong_pins)?;
                if changed {
                    save(path, &state)?;
                }
                Ok(t)
            }
        }
    }

    /// Verifies `pin` (CTAP2 getPinToken): the decremented retry counter is
    /// stored before the comparison, so cutting power mid-check saves nothing.
    fn verify_pin(&self, state: &mut State, wrong_pins: &mut u8, pin: &str) -> Result<(), Error> {
        let Some(expected) = state.pin_hash else { return Err(Error::PinNotSet) };
        if state.retries == 0 {
            return Err(Error::PinBlocked);
        }
        if *wrong_pins >= PIN_ATTEMPTS_PER_POWER_CYCLE {
            return Err(Error::PinAuthBlocked);
        }
        state.retries -= 1;
        self.persist(state)?;
        if ct_eq(&state.pin_hash_of(pin), &expected) {
            state.retries = MAX_PIN_RETRIES;
            *wrong_pins = 0;
            self.persist(state)?;
            return Ok(());
        }
        *wrong_pins += 1;
        if state.retries == 0 {
            Err(Error::PinBlocked)
        } else if *wrong_pins >= PIN_ATTEMPTS_PER_POWER_CYCLE {
            Err(Error::PinAuthBlocked)
        } else {
            Err(Error::PinInvalid { retries_left: state.retries })
        }
    }

    fn persist(&self, state: &State) -> Result<(), Error> {
        match &self.path {
            Some(path) => save(path, state),
            None => Ok(()),
        }
    }

    /// The user presence test.
    fn test_presence(&self, state: &State) -> Result<(), Error> {
        match (&self.presence, &self.path) {
            (Presence::Callback(touched), _) => {
                if touched() {
                    Ok(())
                } else {
                    Err(Error::PresenceDenied)
                }
            }
            (Presence::StateFile, Some(path)) => match state.presence {
                PresenceMode::Always => Ok(()),
                PresenceMode::Never => Err(Error::PresenceDenied),
                PresenceMode::Touch => wait_for_touch(&touch_path(path), state.touch_timeout),
            },
            (Presence::StateFile, None) => Err(Error::PresenceDenied),
        }
    }
}

impl Authenticator for SoftAuthenticator {
    fn name(&self) -> String {
        match &self.path {
            Some(p) => format!("software authenticator ({})", p.display()),
            None => "software authenticator (in memory)".to_owned(),
        }
    }

    fn make_credential(&self, rp_id: &str, pin: Option<&str>, up: bool) -> Result<Credential, Error> {
        self.with_state(|state, wrong_pins| {
            if let Some(pin) = pin {
                self.verify_pin(state, wrong_pins, pin)?;
            }
            self.test_presence(state)?;
            let flags = if pin.is_some() { FLAG_UV } else { 0 } | if up { FLAG_UP } else { 0 };
            let id = wrap_credential(state, rp_id, flags)?;
            Ok((Credential { id, rp_id: rp_id.to_owned(), uv: pin.is_some(), up }, false))
        })
    }

    fn hmac_secret(&self, req: &AssertionRequest<'_>) -> Result<(usize, Key32), Error> {
        self.with_state(|state, wrong_pins| {
            let verified = match req.pin {
                Some(pin) => {
                    self.verify_pin(state, wrong_pins, pin)?;
                    true
                }
                None => false,
            };
            let (index, cred) = req
                .credentials
                .iter()
                .enumerate()
                .find_map(|(i, id)| unwrap_credential(state, req.rp_id, id).map(|c| (i, c)))
                .ok_or(Error::NoCredential)?;
            if (req.uv || cred.flags & FLAG_UV != 0) && !verified {
                return Err(Error::PinRequired);
            }
            if req.up || cred.flags & FLAG_UP != 0 {
                self.test_presence(state)?;
            }
            let cred_random = if verified { &cred.cred_random_uv } else { &cred.cred_random };
            let output = Key32::from_bytes(crypto::hmac_sha256(cred_random.as_bytes(), req.salt));
            Ok(((index, output), false))
        })
    }
}

fn touch_path(state: &Path) -> PathBuf {
    let mut s = OsString::from(state.as_os_str());
    s.push(".touch");
    PathBuf::from(s)
}

/// Waits until `touch` exists, then consumes it. Removing is the test, so of
/// two processes waiting on one device exactly one gets each touch.
fn wait_for_touch(touch: &Path, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        match fs::remove_file(touch) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Device(format!("touch file {}: {e}", touch.display()))),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::PresenceTimeout);
        }
        std::thread::sleep(TOUCH_POLL.min(deadline - now));
    }
}

enum StateError {
    Absent,
    Bad(Error),
}

fn state_error(path: &Path, problem: impl Into<String>) -> Error {
    Error::State { path: path.to_owned(), problem: problem.into() }
}

fn load(path: &Path) -> Result<State, StateError> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StateError::Absent),
        Err(e) => return Err(StateError::Bad(state_error(path, format!("cannot open: {e}")))),
    };
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(STATE_MAX_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| StateError::Bad(state_error(path, format!("cannot read: {e}"))))?;
    if bytes.len() as u64 > STATE_MAX_LEN {
        return Err(StateError::Bad(state_error(path, format!("larger than {STATE_MAX_LEN} bytes"))));
    }
    let text =
        std::str::from_utf8(&bytes).map_err(|_| StateError::Bad(state_error(path, "not UTF-8 text")))?;
    State::decode(text).map_err(|p| StateError::Bad(state_error(path, p)))
}

fn load_existing(path: &Path) -> Result<State, Error> {
    load(path).map_err(|e| match e {
        StateError::Absent => state_error(path, "the state file has disappeared"),
        StateError::Bad(e) => e,
    })
}

/// Writes `state` to a temporary file beside `path` (mode 0600) and syncs it.
fn write_temp(path: &Path, state: &State) -> Result<PathBuf, Error> {
    let mut tmp = OsString::from(path.as_os_str());
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let fail = |what: &str, e: io::Error| state_error(path, format!("cannot {what} {}: {e}", tmp.display()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail("create", e))?;
    // A leftover temporary file keeps its old mode: force 0600.
    f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(|e| fail("chmod", e))?;
    f.write_all(state.encode().as_bytes()).map_err(|e| fail("write", e))?;
    f.sync_all().map_err(|e| fail("sync", e))?;
    Ok(tmp)
}

fn sync_dir(path: &Path) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| state_error(path, format!("cannot sync directory {}: {e}", dir.display())))
}

/// Replaces the state file atomically (temporary file, then rename).
fn save(path: &Path, state: &State) -> Result<(), Error> {
    let tmp = write_temp(path, state)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(state_error(path, format!("cannot replace: {e}")));
    }
    sync_dir(path)
}

/// Creates the state file only if it does not exist yet: the hard link fails
/// if another process created it first, and then that one's device is used.
fn create(path: &Path, state: &State) -> Result<(), Error> {
    let tmp = write_temp(path, state)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_dir(path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load_existing(path).map(|_| ()),
        Err(e) => Err(state_error(path, format!("cannot create: {e}"))),
    }
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
