//! TPM 2.0 factor: a 32-byte secret sealed to one TPM, optionally bound to
//! PCR values (SHA-256 bank), unsealed at unlock. docs/CRYPTO.md ("TPM
//! factor") explains the design; this comment fixes the details.
//!
//! # Keys and objects
//!
//! - **Primary key**: created at every seal and unseal under the owner
//!   hierarchy (empty owner authorization) from a fixed template, so the TPM
//!   derives the same key from its owner seed each time and no handle is
//!   persisted in TPM NV memory. Template: ECC NIST P-256, name algorithm
//!   SHA-256, restricted decryption (storage) key, AES-128-CFB for its
//!   children, scheme and KDF null, empty unique field, attributes
//!   fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | noDA |
//!   restricted | decrypt (0x00030472), empty authorization value.
//! - **Sealed object**: a keyed-hash object with null scheme holding the
//!   32-byte secret, child of the primary. Name algorithm SHA-256,
//!   attributes fixedTPM | fixedParent | noDA, empty authorization value.
//!   With PCRs: `authPolicy` = the PolicyPCR digest of the selected PCRs'
//!   values at enrollment and no userWithAuth, so only a policy session in
//!   which `TPM2_PolicyPCR` saw the same values can unseal it. Without PCRs:
//!   userWithAuth and an empty policy (anyone with this TPM can unseal).
//! - **Sessions**: the secret crosses the TPM interface only inside
//!   parameter-encrypted sessions (AES-128-CFB), salted with the primary key:
//!   `TPM2_Create` runs in an HMAC session with command encryption, and
//!   `TPM2_Unseal` in an HMAC (no PCRs) or policy (PCRs) session with
//!   response encryption. This defeats a passive listener on the TPM bus.
//! - **Primary pinning**: the blob records the fingerprint of the primary's
//!   public area at enrollment. Unseal recreates the primary and refuses
//!   ([`Error::ForeignBlob`]) unless it matches, before salting a session to
//!   it, so a device between vaultfs and the TPM that substitutes its own
//!   key cannot read the unsealed secret (trust on first use, at seal).
//! - Every transient handle (primary, loaded object, sessions) is flushed
//!   before a call returns, on success and on every error path: without a
//!   resource manager (swtpm, `/dev/tpm0`) leaked handles would fill the TPM.
//!
//! # Blob layout (version 1)
//!
//! [`SealedBlob::to_bytes`] writes, and [`SealedBlob::from_bytes`] accepts
//! exactly, this layout (integers big-endian, as everywhere in TPM 2.0):
//!
//! | offset      | size | field |
//! |-------------|------|-------|
//! | 0           | 1    | layout version, `0x01` |
//! | 1           | 32   | primary key fingerprint: SHA-256 of the primary's TPMT_PUBLIC at enrollment |
//! | 33          | 1    | `n`, number of bound PCRs, 0 to 24 (0 = no PCR policy) |
//! | 34          | n    | PCR indices of the SHA-256 bank, strictly increasing, each 0 to 23 |
//! | 34+n        | 2    | `p`, size of the public area, ≥ 1 |
//! | 36+n        | p    | sealed object's TPMT_PUBLIC (TPM 2.0 Part 2 marshalling, canonical) |
//! | 36+n+p      | 2    | `q`, size of the private area, 1 to `sizeof(_PRIVATE)` |
//! | 38+n+p      | q    | sealed object's TPM2B_PRIVATE buffer |
//! | 38+n+p+q    | –    | end: trailing bytes are refused |
//!
//! Bytes `34+n .. 36+n+p` are therefore a marshalled TPM2B_PUBLIC and the
//! rest a marshalled TPM2B_PRIVATE, the same bytes `tpm2_create -u … -r …`
//! writes. The public area must be a keyed-hash object fixed to its TPM
//! whose authorization agrees with the PCR list (a policy exactly when PCRs
//! are listed). Anything else is [`Error::Malformed`].
//!
//! # TCTI strings
//!
//! As parsed by tss-esapi 7: `device[:PATH]` (default `/dev/tpm0`; vaultfs
//! defaults to `device:/dev/tpmrm0`, the kernel resource manager),
//! `swtpm[:host=H,port=P]`, `mssim[:host=H,port=P]` (default
//! `localhost:2321`) and `tabrmd[:bus_name=N,bus_type=session|system]`.
//! tpm2-tools' `cmd:` and `libtss2-tcti-*.so` forms are not supported.
//! Unknown `key=value` pairs in a network TCTI are silently ignored by
//! tss-esapi.

#![forbid(unsafe_code)]

mod blob;
mod nv;

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use tss_esapi::Context;
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::{SessionType, Tss2ResponseCode, Tss2ResponseCodeKind};
use tss_esapi::handles::{KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, EccPoint, KeyedHashScheme, PcrSelectionList, PcrSelectionListBuilder, PcrSlot,
    Public, PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters, SensitiveData,
    SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;

use crate::crypto::{Key32, sha256};

pub use blob::SealedBlob;
pub use nv::{ANCHOR_SIZE, NvAnchor, anchor_index, read_anchor, write_anchor};
#[cfg(any(test, feature = "internals"))]
pub use nv::remove_anchor;

/// The TCTI used when neither `--tpm-tcti` nor an environment variable names one.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// Environment variables consulted for the TCTI, in order (those of tpm2-tools).
pub const TCTI_ENV_VARS: [&str; 3] = ["TPM2TOOLS_TCTI", "TCTI", "TSS2_TCTI"];

/// How long a TPM operation may take before it is abandoned as unreachable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times an unseal is retried when the TPM reports that PCRs were
/// extended between the policy check and the unseal (`TPM_RC_PCR_CHANGED`).
const PCR_RACE_RETRIES: usize = 3;

/// What can go wrong with the TPM factor. Messages name the TCTI, PCRs or
/// TPM command involved and what to do about it; none contains secret bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TCTI string does not have a form tss-esapi understands.
    #[error(
        "invalid TPM TCTI {0:?}: expected device:PATH, swtpm:host=HOST,port=PORT, \
         mssim:host=HOST,port=PORT or tabrmd:"
    )]
    InvalidTcti(String),
    /// The TCTI cannot be loaded, or the TPM behind it cannot be reached.
    #[error(
        "TPM unreachable through TCTI {tcti:?}: {reason}; check that the TPM exists and is \
         accessible (e.g. membership of group tss for /dev/tpmrm0), or choose another TCTI with \
         --tpm-tcti or TPM2TOOLS_TCTI"
    )]
    Unreachable {
        /// The TCTI string that was tried.
        tcti: String,
        /// What failed, as reported by the TSS.
        reason: String,
    },
    /// A configured PCR index does not exist (indices run from 0 to 23).
    #[error("PCR {0} does not exist: PCR indices run from 0 to 23")]
    BadPcr(u8),
    /// Unseal refused because the bound PCRs no longer hold their enrollment values.
    #[error(
        "TPM unseal refused: the PCRs {} changed since enrollment (firmware, boot loader, Secure \
         Boot state or an explicit extend); boot the enrolled configuration, or unlock another way \
         and re-enroll the TPM factor",
        pcr_list(.pcrs)
    )]
    PcrMismatch {
        /// The PCRs the secret is bound to (the TPM does not say which of them changed).
        pcrs: Vec<u8>,
    },
    /// The blob was sealed by another TPM, this TPM's owner hierarchy was cleared since, or
    /// the TPM's storage key differs from enrollment (impersonation).
    #[error(
        "the TPM refused the sealed secret: it was sealed by another TPM, this TPM was cleared \
         since enrollment (new owner seed), or something between vaultfs and the TPM is \
         impersonating it; unlock another way and re-enroll the TPM factor"
    )]
    ForeignBlob,
    /// The stored blob bytes are not a valid sealed blob (damaged or not ours).
    #[error("malformed TPM sealed blob: {0}")]
    Malformed(&'static str),
    /// Any other TPM or TSS failure, with the command that failed.
    #[error("TPM error: {0}")]
    Tpm(String),
}

/// "7,16" (or "(none)").
fn pcr_list(pcrs: &[u8]) -> String {
    if pcrs.is_empty() {
        return "(none)".to_owned();
    }
    let mut s = String::new();
    for (i, p) in pcrs.iter().enumerate() {
        let _ = write!(s, "{}{p}", if i == 0 { "" } else { "," });
    }
    s
}

/// Which TPM to talk to and which PCRs to bind new seals to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmConfig {
    /// A TCTI string (see the module documentation for the accepted forms).
    pub tcti: String,
    /// SHA-256 bank PCR indices to bind to at seal, e.g. `[7, 16]`; empty = no PCR policy.
    /// Unseal uses the PCRs recorded in the blob instead.
    pub pcrs: Vec<u8>,
    /// How long one operation may wait for the TPM before failing as
    /// [`Error::Unreachable`] ([`DEFAULT_TIMEOUT`] from `resolve`).
    pub timeout: Duration,
}

impl TpmConfig {
    /// TCTI from an explicit `--tpm-tcti` value, else the first non-empty of the
    /// environment variables `TPM2TOOLS_TCTI`, `TCTI`, `TSS2_TCTI`, else
    /// [`DEFAULT_TCTI`].
    pub fn resolve(explicit: Option<&str>, pcrs: Vec<u8>) -> Self {
        Self::resolve_with(explicit, pcrs, |name| std::env::var(name).ok())
    }

    fn resolve_with(explicit: Option<&str>, pcrs: Vec<u8>, env: impl Fn(&str) -> Option<String>) -> Self {
        let tcti = explicit
            .map(str::to_owned)
            .or_else(|| TCTI_ENV_VARS.iter().find_map(|v| env(v).filter(|s| !s.trim().is_empty())))
            .unwrap_or_else(|| DEFAULT_TCTI.to_owned());
        TpmConfig { tcti: tcti.trim().to_owned(), pcrs, timeout: DEFAULT_TIMEOUT }
    }
}

/// Seals `secret` to the TPM: recreates the primary key, creates a sealed
/// object holding the secret under it, bound by PolicyPCR to the current
/// values of `cfg.pcrs` (SHA-256 bank) if any, and returns what must be
/// stored to unseal it later. The secret never leaves this process in the
/// clear (the `TPM2_Create` parameters are encrypted to the TPM).
pub fn seal(cfg: &TpmConfig, secret: &Key32) -> Result<SealedBlob, Error> {
    let pcrs = normalize_pcrs(&cfg.pcrs)?;
    let secret = secret.clone();
    on_worker(cfg, "seal", move |tcti| with_tpm(&tcti, |tpm| tpm.seal(&pcrs, &secret)))
}

/// Unseals the secret in `blob`: recreates the primary key, loads the sealed
/// object, satisfies its PCR policy if it has one, and returns the secret.
pub fn unseal(cfg: &TpmConfig, blob: &SealedBlob) -> Result<Key32, Error> {
    let blob = blob.clone();
    on_worker(cfg, "unseal", move |tcti| {
        for _ in 0..PCR_RACE_RETRIES {
            match with_tpm(&tcti, |tpm| tpm.unseal(&blob)) {
                Err(Unsealing::Raced) => continue,
                Err(Unsealing::Failed(e)) => return Err(e),
                Ok(key) => return Ok(key),
            }
        }
        Err(Error::Tpm(
            "TPM2_Unseal: PCRs kept changing during the unseal (TPM_RC_PCR_CHANGED); retry".into(),
        ))
    })
}

/// Reachability probe for `vaultfs status`: opens the TCTI and asks the TPM
/// for one random byte.
#[cfg(any(test, feature = "internals"))]
pub fn probe(cfg: &TpmConfig) -> Result<(), Error> {
    on_worker(cfg, "probe", |tcti| {
        with_tpm(&tcti, |tpm| tpm.ctx.get_random(1).map(drop).map_err(|e| tpm.error("TPM2_GetRandom", e)))
    })
}

/// Extends PCR `index` of the SHA-256 bank with SHA-256(`data`) (like
/// `tpm2_pcrevent` restricted to that bank). Any seal bound to that PCR stops
/// unsealing until the PCR is reset (at reboot for PCRs 0 to 15; PCR 16 is
/// the resettable debug PCR). Meant for admin tooling, e.g. to disable the
/// TPM factor until the next boot after a lockdown, and for tests.
#[cfg(any(test, feature = "internals"))]
pub fn extend_pcr(cfg: &TpmConfig, index: u8, data: &[u8]) -> Result<(), Error> {
    use tss_esapi::handles::PcrHandle;
    use tss_esapi::structures::DigestValues;
    if index >= blob::PCR_COUNT {
        return Err(Error::BadPcr(index));
    }
    let handle = PcrHandle::try_from(u32::from(index)).map_err(|_| Error::BadPcr(index))?;
    let digest = sha256(data);
    on_worker(cfg, "PCR extend", move |tcti| {
        with_tpm(&tcti, |tpm| {
            let digest =
                Digest::try_from(digest.to_vec()).map_err(|e| Error::Tpm(format!("PCR digest: {e}")))?;
            let mut values = DigestValues::new();
            values.set(HashingAlgorithm::Sha256, digest);
            tpm.ctx
                .execute_with_session(Some(AuthSession::Password), |c| c.pcr_extend(handle, values))
                .map_err(|e| tpm.error("TPM2_PCR_Extend", e))
        })
    })
}

/// Runs `f` on its own connection to `tcti`, then flushes every transient
/// handle `f` left, whether it succeeded or not.
fn with_tpm<T, E: From<Error>>(tcti: &str, f: impl FnOnce(&mut Tpm) -> Result<T, E>) -> Result<T, E> {
    let mut tpm = Tpm::connect(tcti)?;
    let result = f(&mut tpm);
    let closed = tpm.close();
    let value = result?;
    closed?;
    Ok(value)
}

/// Runs `f(tcti)` on a worker thread and waits at most `cfg.timeout` for it.
///
/// The TSS waits for TPM responses without a time limit, so a TCTI peer that
/// accepts the connection but never answers (a wedged TPM, a wrong port)
/// would block the caller forever. On timeout the worker is abandoned: it
/// ends, and drops whatever it produced (secrets are zeroized on drop), if
/// the TPM ever answers. A panic inside the TSS bindings also ends up here
/// as an error instead of unwinding into the caller.
fn on_worker<T: Send + 'static>(
    cfg: &TpmConfig,
    op: &'static str,
    f: impl FnOnce(String) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = mpsc::sync_channel(1);
    let tcti = cfg.tcti.clone();
    std::thread::Builder::new()
        .name("vaultfs-tpm".into())
        .spawn(move || {
            let _ = tx.send(f(tcti));
        })
        .map_err(|e| Error::Tpm(format!("{op}: cannot start a TPM worker thread: {e}")))?;
    match rx.recv_timeout(cfg.timeout) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => Err(Error::Unreachable {
            tcti: cfg.tcti.clone(),
            reason: format!(
                "no answer to the {op} within {} s (the TPM, or whatever listens at that address, \
                 accepted the connection but does not respond)",
                cfg.timeout.as_secs_f32()
            ),
        }),
        Err(RecvTimeoutError::Disconnected) => {
            Err(Error::Tpm(format!("{op}: the TPM worker panicked (a bug in vaultfs or its TSS bindings)")))
        }
    }
}

/// Sorted, deduplicated PCR indices, each checked to exist.
fn normalize_pcrs(pcrs: &[u8]) -> Result<Vec<u8>, Error> {
    if let Some(&bad) = pcrs.iter().find(|&&p| p >= blob::PCR_COUNT) {
        return Err(Error::BadPcr(bad));
    }
    let mut v = pcrs.to_vec();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// The TCG-style storage primary key template (module documentation).
fn primary_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    let parameters = PublicEccParametersBuilder::new_restricted_decryption_key(
        SymmetricDefinitionObject::AES_128_CFB,
        EccCurve::NistP256,
    )
    .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(parameters)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// The sealed-data object template: `policy` empty and `user_with_auth` set
/// for no PCRs; a PolicyPCR digest and `user_with_auth` clear otherwise.
fn sealed_template(policy: Digest, user_with_auth: bool) -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        .with_user_with_auth(user_with_auth)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_auth_policy(policy)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

fn pcr_selection(pcrs: &[u8]) -> Result<PcrSelectionList, Error> {
    let slots = pcrs
        .iter()
        .map(|&p| PcrSlot::try_from(1u32 << p).map_err(|_| Error::BadPcr(p)))
        .collect::<Result<Vec<_>, _>>()?;
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(|e| Error::Tpm(format!("PCR selection {}: {e}", pcr_list(pcrs))))
}

/// An open TPM connection and the transient handles it must flush.
struct Tpm {
    ctx: Context,
    tcti: String,
    /// Transient objects and sessions loaded by us, in creation order.
    live: Vec<ObjectHandle>,
}

impl Tpm {
    fn connect(tcti: &str) -> Result<Tpm, Error> {
        let conf = TctiNameConf::from_str(tcti).map_err(|_| Error::InvalidTcti(tcti.to_owned()))?;
        let ctx = Context::new(conf).map_err(|e| match e {
            tss_esapi::Error::WrapperError(_) => Error::InvalidTcti(tcti.to_owned()),
            tss_esapi::Error::Tss2Error(rc) => {
                Error::Unreachable { tcti: tcti.to_owned(), reason: describe_rc(rc) }
            }
        })?;
        Ok(Tpm { ctx, tcti: tcti.to_owned(), live: Vec::new() })
    }

    /// Maps a TSS error from command `op` to ours.
    fn error(&self, op: &str, e: tss_esapi::Error) -> Error {
        match e {
            tss_esapi::Error::WrapperError(w) => Error::Tpm(format!("{op}: {w}")),
            tss_esapi::Error::Tss2Error(rc) => match layer(rc) {
                // The TCTI (connection) failed mid-command: the TPM went away.
                TCTI_LAYER => Error::Unreachable { tcti: self.tcti.clone(), reason: describe_rc(rc) },
                _ => match rc.kind() {
                    Some(Tss2ResponseCodeKind::Lockout) => Error::Tpm(format!(
                        "{op}: the TPM is in dictionary-attack lockout; wait for it to expire or \
                         reset it with the lockout authorization (tpm2_dictionarylockout -c)"
                    )),
                    Some(Tss2ResponseCodeKind::BadAuth | Tss2ResponseCodeKind::AuthFail)
                        if op == "TPM2_CreatePrimary" =>
                    {
                        Error::Tpm(format!(
                            "{op}: the owner hierarchy has an authorization value; the TPM factor \
                             needs an empty owner authorization ({})",
                            describe_rc(rc)
                        ))
                    }
                    _ => Error::Tpm(format!("{op}: {}", describe_rc(rc))),
                },
            },
        }
    }

    fn track(&mut self, handle: ObjectHandle) {
        self.live.push(handle);
    }

    /// Flushes one of our handles now.
    fn flush(&mut self, handle: ObjectHandle) -> Result<(), Error> {
        self.live.retain(|h| *h != handle);
        self.ctx.flush_context(handle).map_err(|e| self.error("TPM2_FlushContext", e))
    }

    /// Flushes every remaining handle, newest first, reporting the first failure.
    fn close(mut self) -> Result<(), Error> {
        let mut first = Ok(());
        while let Some(h) = self.live.pop() {
            if let Err(e) = self.ctx.flush_context(h) {
                if first.is_ok() {
                    first = Err(self.error("TPM2_FlushContext", e));
                }
            }
        }
        first
    }

    /// Recreates the primary key (same template, same owner seed, same key);
    /// returns its handle and fingerprint (SHA-256 of its TPMT_PUBLIC).
    fn primary(&mut self) -> Result<(KeyHandle, [u8; 32]), Error> {
        let template = primary_template().map_err(|e| Error::Tpm(format!("primary template: {e}")))?;
        let created = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.create_primary(Hierarchy::Owner, template, None, None, None, None)
            })
            .map_err(|e| self.error("TPM2_CreatePrimary", e))?;
        self.track(created.key_handle.into());
        let public = created
            .out_public
            .marshall()
            .map_err(|e| Error::Tpm(format!("cannot marshal the primary key's public area: {e}")))?;
        Ok((created.key_handle, sha256(&public)))
    }

    /// Starts a session salted with `salt_key`, AES-128-CFB parameter
    /// encryption in the direction(s) asked for.
    fn session(
        &mut self,
        kind: SessionType,
        salt_key: KeyHandle,
        encrypt_command: bool,
        encrypt_response: bool,
    ) -> Result<AuthSession, Error> {
        let session = self
            .ctx
            .start_auth_session(
                Some(salt_key),
                None,
                None,
                kind,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(|e| self.error("TPM2_StartAuthSession", e))?
            .ok_or_else(|| Error::Tpm("TPM2_StartAuthSession returned no session".into()))?;
        self.track(SessionHandle::from(session).into());
        let (attributes, mask) = SessionAttributesBuilder::new()
            .with_decrypt(encrypt_command)
            .with_encrypt(encrypt_response)
            .build();
        self.ctx
            .tr_sess_set_attributes(session, attributes, mask)
            .map_err(|e| self.error("Esys_TRSess_SetAttributes", e))?;
        Ok(session)
    }

    /// The PolicyPCR digest over the current values of `pcrs`, from a trial session.
    fn pcr_policy_digest(&mut self, pcrs: &[u8]) -> Result<Digest, Error> {
        let selection = pcr_selection(pcrs)?;
        let trial = self
            .ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Trial,
                SymmetricDefinition::Null,
                HashingAlgorithm::Sha256,
            )
            .map_err(|e| self.error("TPM2_StartAuthSession", e))?
            .ok_or_else(|| Error::Tpm("TPM2_StartAuthSession returned no session".into()))?;
        let handle: ObjectHandle = SessionHandle::from(trial).into();
        self.track(handle);
        let policy = PolicySession::try_from(trial).map_err(|e| self.error("trial session", e))?;
        // An empty expected digest makes a trial session use the current PCR values.
        self.ctx
            .policy_pcr(policy, Digest::default(), selection)
            .map_err(|e| self.error("TPM2_PolicyPCR", e))?;
        let digest = self.ctx.policy_get_digest(policy).map_err(|e| self.error("TPM2_PolicyGetDigest", e))?;
        self.flush(handle)?;
        Ok(digest)
    }

    fn seal(&mut self, pcrs: &[u8], secret: &Key32) -> Result<SealedBlob, Error> {
        let (policy, user_with_auth) =
            if pcrs.is_empty() { (Digest::default(), true) } else { (self.pcr_policy_digest(pcrs)?, false) };
        let template = sealed_template(policy, user_with_auth)
            .map_err(|e| Error::Tpm(format!("sealed template: {e}")))?;
        let (primary, fingerprint) = self.primary()?;
        // Zeroized on drop (tss-esapi buffers are `Zeroizing`).
        let data = SensitiveData::try_from(&secret.as_bytes()[..])
            .map_err(|e| Error::Tpm(format!("secret buffer: {e}")))?;
        let session = self.session(SessionType::Hmac, primary, true, false)?;
        let created = self
            .ctx
            .execute_with_session(Some(session), |c| {
                c.create(primary, template, None, Some(data), None, None)
            })
            .map_err(|e| self.error("TPM2_Create", e))?;
        SealedBlob::new(fingerprint, pcrs.to_vec(), &created.out_public, &created.out_private)
    }

    /// `Err(Unsealing::Raced)` asks the caller to retry on a fresh connection.
    fn unseal(&mut self, blob: &SealedBlob) -> Result<Key32, Unsealing> {
        let public = blob.public()?;
        let private = blob.private()?;
        let (primary, fingerprint) = self.primary()?;
        // Another TPM, a cleared one, or something impersonating the TPM:
        // refuse before salting any session to that key.
        if &fingerprint != blob.primary_fingerprint() {
            return Err(Error::ForeignBlob.into());
        }
        let object = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |c| c.load(primary, private, public))
            .map_err(|e| match kind(e) {
                // The private area's integrity HMAC is keyed from the parent's
                // seed: another TPM (or a cleared one) cannot verify it.
                Some(
                    Tss2ResponseCodeKind::Integrity
                    | Tss2ResponseCodeKind::Binding
                    | Tss2ResponseCodeKind::Sensitive,
                ) => Error::ForeignBlob,
                _ => self.error("TPM2_Load", e),
            })?;
        self.track(object.into());
        let session = if blob.pcrs().is_empty() {
            self.session(SessionType::Hmac, primary, false, true)?
        } else {
            let session = self.session(SessionType::Policy, primary, false, true)?;
            let policy = PolicySession::try_from(session).map_err(|e| self.error("policy session", e))?;
            let selection = pcr_selection(blob.pcrs())?;
            // An empty expected digest: the TPM folds in the current PCR
            // values, and TPM2_Unseal compares the result with the policy.
            self.ctx
                .policy_pcr(policy, Digest::default(), selection)
                .map_err(|e| self.error("TPM2_PolicyPCR", e))?;
            session
        };
        let data = self.ctx.execute_with_session(Some(session), |c| c.unseal(object.into())).map_err(
            |e| match kind(e) {
                Some(Tss2ResponseCodeKind::PolicyFail) if !blob.pcrs().is_empty() => {
                    Unsealing::Failed(Error::PcrMismatch { pcrs: blob.pcrs().to_vec() })
                }
                Some(Tss2ResponseCodeKind::PcrChanged) => Unsealing::Raced,
                _ => Unsealing::Failed(self.error("TPM2_Unseal", e)),
            },
        )?;
        // `data` is zeroized when dropped at the end of this function.
        let bytes = data.value();
        if bytes.len() != 32 {
            return Err(Error::Tpm(format!("TPM2_Unseal returned {} bytes, expected 32", bytes.len())).into());
        }
        Key32::from_slice(bytes).map_err(|e| Error::Tpm(format!("unsealed secret: {e}")).into())
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        // Normally empty (`close` ran); this covers unwinding.
        while let Some(h) = self.live.pop() {
            let _ = self.ctx.flush_context(h);
        }
    }
}

/// How an unseal attempt failed.
enum Unsealing {
    /// PCRs changed between PolicyPCR and Unseal: start over.
    Raced,
    Failed(Error),
}

impl From<Error> for Unsealing {
    fn from(e: Error) -> Self {
        Unsealing::Failed(e)
    }
}

/// TSS2 response-code layer of the TCTI (`TSS2_TCTI_RC_LAYER` >> 16).
const TCTI_LAYER: u32 = 10;

fn raw_rc(rc: Tss2ResponseCode) -> u32 {
    match rc {
        Tss2ResponseCode::Success => 0,
        Tss2ResponseCode::FormatZero(c) => c.0,
        Tss2ResponseCode::FormatOne(c) => c.0,
    }
}

/// The TSS layer that produced `rc` (0 = the TPM itself).
fn layer(rc: Tss2ResponseCode) -> u32 {
    (raw_rc(rc) >> 16) & 0xff
}

/// The TPM response kind, only for codes that come from the TPM itself
/// (other layers reuse the low bits with other meanings).
fn kind(e: tss_esapi::Error) -> Option<Tss2ResponseCodeKind> {
    match e {
        tss_esapi::Error::Tss2Error(rc) if layer(rc) == 0 => rc.kind(),
        _ => None,
    }
}

/// A human description of a TSS response code, with the code in hex.
fn describe_rc(rc: Tss2ResponseCode) -> String {
    let raw = raw_rc(rc);
    let layer = layer(rc);
    if layer == 0 {
        return format!("{rc} (response code {raw:#x})");
    }
    let layer_name = match layer {
        6 => "FAPI",
        7 => "ESAPI",
        8 => "SAPI",
        9 => "marshalling",
        TCTI_LAYER => "TCTI",
        11 | 12 => "resource manager",
        _ => "TSS",
    };
    // TSS2_BASE_RC_* (tss2_common.h), shared by every software layer.
    let what = match raw & 0xffff {
        1 => "general failure",
        2 => "not implemented",
        3 => "bad context",
        4 => "ABI mismatch",
        8 => "no connection",
        9 => "timed out, try again",
        10 => "I/O error (no such device, permission denied, or connection refused or reset)",
        11 => "bad configuration value",
        12 => "not permitted",
        17 | 19 => "malformed or short response from the TPM",
        20 => "incompatible TCTI library",
        21 => "not supported (is the library for this TCTI installed?)",
        23 => "out of memory",
        27 => "the TPM's response HMAC did not verify (something between us and the TPM altered it)",
        _ => "error",
    };
    format!("{layer_name}: {what} (response code {raw:#x})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_prefers_explicit_then_env_in_order_then_default() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let c = TpmConfig::resolve_with(Some("swtpm:port=1"), vec![7], env(&[("TPM2TOOLS_TCTI", "mssim")]));
        assert_eq!(c, TpmConfig { tcti: "swtpm:port=1".into(), pcrs: vec![7], timeout: DEFAULT_TIMEOUT });
        let all = &[("TSS2_TCTI", "c"), ("TCTI", "b"), ("TPM2TOOLS_TCTI", "a")];
        assert_eq!(TpmConfig::resolve_with(None, vec![], env(all)).tcti, "a");
        assert_eq!(
            TpmConfig::resolve_with(None, vec![], env(&[("TSS2_TCTI", "c"), ("TCTI", "b")])).tcti,
            "b"
        );
        assert_eq!(
            TpmConfig::resolve_with(None, vec![], env(&[("TSS2_TCTI", "c"), ("TCTI", " ")])).tcti,
            "c"
        );
        assert_eq!(TpmConfig::resolve_with(None, vec![], env(&[])).tcti, DEFAULT_TCTI);
    }

    #[test]
    fn pcrs_are_sorted_deduplicated_and_bounded() {
        assert_eq!(normalize_pcrs(&[16, 7, 16]), Ok(vec![7, 16]));
        assert_eq!(normalize_pcrs(&[]), Ok(vec![]));
        assert_eq!(normalize_pcrs(&[7, 24]), Err(Error::BadPcr(24)));
        assert!(pcr_selection(&[0, 7, 16, 23]).is_ok());
    }

    #[test]
    fn messages_name_what_to_act_on() {
        let m = Error::PcrMismatch { pcrs: vec![7, 16] }.to_string();
        assert!(m.contains("the PCRs 7,16 changed since enrollment"), "{m}");
        let u = Error::Unreachable { tcti: "swtpm:port=9".into(), reason: "I/O error".into() }.to_string();
        assert!(u.contains("\"swtpm:port=9\""), "{u}");
    }

    #[test]
    fn bad_tcti_strings_are_refused_before_connecting() {
        for t in ["", "cmd:tpm2_send", "libtss2-tcti-mssim.so", "swtpm:port=notaport", "mssim:host=a@b"] {
            assert_eq!(probe(&TpmConfig::resolve(Some(t), vec![])), Err(Error::InvalidTcti(t.into())), "{t}");
        }
    }

    #[test]
    fn templates_build() {
        let p = primary_template().unwrap();
        assert_eq!(u32::from(p.object_attributes()), 0x0003_0472);
        let s = sealed_template(Digest::default(), true).unwrap();
        assert_eq!(u32::from(s.object_attributes()), 0x0000_0452);
        let s = sealed_template(Digest::try_from(vec![1; 32]).unwrap(), false).unwrap();
        assert_eq!(u32::from(s.object_attributes()), 0x0000_0412);
    }
}
