//! A rollback anchor in TPM NV memory (docs/ADMIN.md, "Rollback anchor"):
//! a small ordinary NV index per vault whose contents only the holder of an
//! authorization value derived from the vault's master key can read or
//! write. NV memory cannot be copied back with the store, so a store older
//! than the anchor is caught even by someone who can rewrite every byte of
//! the store and the witness file.
//!
//! The index: handle `0x01800000 | (SHA-256("vaultfs/v1/tpm-anchor" ‖
//! vault id)[0..4] as u32 & 0x003FFFFF)` (the owner range), name algorithm
//! SHA-256, attributes ordinary | authWrite | authRead | noDA (0x0204_0004),
//! data size [`ANCHOR_SIZE`], authorization value the caller's 32 bytes,
//! defined under the owner hierarchy (empty owner authorization, as the TPM
//! factor needs). Reads and writes run in an HMAC session, so the
//! authorization value never crosses the TPM interface.

use tss_esapi::attributes::{NvIndexAttributes, NvIndexAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::{NvIndexType, SessionType, Tss2ResponseCodeKind};
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, ObjectHandle, SessionHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{Auth, MaxNvBuffer, NvPublicBuilder, SymmetricDefinition};
use tss_esapi::tss2_esys::TPMA_NV;

use super::{Error, Tpm, TpmConfig, on_worker, with_tpm};
use crate::crypto::{Key32, sha256};

/// TPMA_NV_WRITTEN.
const WRITTEN: TPMA_NV = 1 << 29;

/// Bytes of an anchor (its layout is the vault's business).
pub const ANCHOR_SIZE: u16 = 56;

/// What the vault's anchor index holds.
#[derive(Debug, PartialEq, Eq)]
pub enum NvAnchor {
    /// No index at that handle, or one never written.
    Missing,
    /// The index answers to the authorization value: its bytes.
    Found(Vec<u8>),
    /// An index is there but it is not this vault's: another shape, or it
    /// does not accept the authorization value (replaced by someone else).
    Foreign(String),
}

/// The NV handle of `vault_id`'s anchor.
pub fn anchor_index(vault_id: &[u8; 16]) -> u32 {
    let mut input = b"vaultfs/v1/tpm-anchor".to_vec();
    input.extend_from_slice(vault_id);
    let d = sha256(&input);
    0x0180_0000 | (u32::from_be_bytes([d[0], d[1], d[2], d[3]]) & 0x003F_FFFF)
}

/// Reads the anchor at `index` with authorization `auth`.
pub fn read_anchor(cfg: &TpmConfig, index: u32, auth: &Key32) -> Result<NvAnchor, Error> {
    let auth = auth.clone();
    on_worker(cfg, "NV read", move |tcti| with_tpm(&tcti, |tpm| tpm.read_anchor(index, &auth)))
}

/// Writes `data` ([`ANCHOR_SIZE`] bytes) to the anchor at `index`, defining
/// the index first if there is none.
pub fn write_anchor(cfg: &TpmConfig, index: u32, auth: &Key32, data: Vec<u8>) -> Result<(), Error> {
    if data.len() != ANCHOR_SIZE as usize {
        return Err(Error::Tpm(format!("an NV anchor is {ANCHOR_SIZE} bytes, not {}", data.len())));
    }
    let auth = auth.clone();
    on_worker(cfg, "NV write", move |tcti| with_tpm(&tcti, |tpm| tpm.write_anchor(index, &auth, &data)))
}

/// Removes the anchor at `index` (tests; an admin retiring a vault).
#[cfg(any(test, feature = "internals"))]
pub fn remove_anchor(cfg: &TpmConfig, index: u32) -> Result<(), Error> {
    on_worker(cfg, "NV undefine", move |tcti| {
        with_tpm(&tcti, |tpm| match tpm.nv_handle(index)? {
            None => Ok(()),
            Some(h) => tpm
                .ctx
                .execute_with_session(Some(AuthSession::Password), |c| {
                    c.nv_undefine_space(Provision::Owner, h)
                })
                .map_err(|e| tpm.error("TPM2_NV_UndefineSpace", e)),
        })
    })
}

fn attributes() -> tss_esapi::Result<NvIndexAttributes> {
    NvIndexAttributesBuilder::new()
        .with_nv_index_type(NvIndexType::Ordinary)
        .with_auth_write(true)
        .with_auth_read(true)
        .with_no_da(true)
        .build()
}

impl Tpm {
    /// The ESYS handle of NV index `index`, if it exists.
    fn nv_handle(&mut self, index: u32) -> Result<Option<NvIndexHandle>, Error> {
        let tpm_handle =
            NvIndexTpmHandle::new(index).map_err(|e| Error::Tpm(format!("NV index {index:#010x}: {e}")))?;
        match self.ctx.execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::NvIndex(tpm_handle))) {
            Ok(h) => Ok(Some(NvIndexHandle::from(h))),
            Err(tss_esapi::Error::Tss2Error(rc)) if rc.kind() == Some(Tss2ResponseCodeKind::Handle) => {
                Ok(None)
            }
            Err(e) => Err(self.error("TPM2_NV_ReadPublic", e)),
        }
    }

    /// An unsalted, unbound HMAC session: proves knowledge of the index's
    /// authorization value without sending it.
    fn hmac_session(&mut self) -> Result<AuthSession, Error> {
        let session = self
            .ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Hmac,
                SymmetricDefinition::Null,
                HashingAlgorithm::Sha256,
            )
            .map_err(|e| self.error("TPM2_StartAuthSession", e))?
            .ok_or_else(|| Error::Tpm("TPM2_StartAuthSession returned no session".into()))?;
        self.track(SessionHandle::from(session).into());
        let (attributes, mask) = SessionAttributesBuilder::new().with_continue_session(true).build();
        self.ctx
            .tr_sess_set_attributes(session, attributes, mask)
            .map_err(|e| self.error("Esys_TRSess_SetAttributes", e))?;
        Ok(session)
    }

    fn set_auth(&mut self, h: NvIndexHandle, auth: &Key32) -> Result<(), Error> {
        let value =
            Auth::try_from(auth.as_bytes().to_vec()).map_err(|e| Error::Tpm(format!("NV auth: {e}")))?;
        self.ctx.tr_set_auth(ObjectHandle::from(h), value).map_err(|e| self.error("Esys_TR_SetAuth", e))
    }

    fn read_anchor(&mut self, index: u32, auth: &Key32) -> Result<NvAnchor, Error> {
        let Some(h) = self.nv_handle(index)? else { return Ok(NvAnchor::Missing) };
        let result = self.read_open(h, auth);
        let mut object = ObjectHandle::from(h);
        let _ = self.ctx.tr_close(&mut object);
        result
    }

    fn read_open(&mut self, h: NvIndexHandle, auth: &Key32) -> Result<NvAnchor, Error> {
        let (public, _) = self.ctx.nv_read_public(h).map_err(|e| self.error("TPM2_NV_ReadPublic", e))?;
        let raw = |a: NvIndexAttributes| TPMA_NV::try_from(a).unwrap_or(0);
        let want = raw(attributes().map_err(|e| Error::Tpm(format!("NV attributes: {e}")))?);
        let have = raw(public.attributes());
        // The TPM sets `written` (bit 29) once the index is written.
        let written = public.attributes().written();
        if have & !WRITTEN != want || public.data_size() != ANCHOR_SIZE as usize {
            return Ok(NvAnchor::Foreign(format!(
                "the NV index has attributes {have:#010x} and {} bytes, not an anchor's ({want:#010x}, {ANCHOR_SIZE})",
                public.data_size()
            )));
        }
        if !written {
            return Ok(NvAnchor::Missing);
        }
        self.set_auth(h, auth)?;
        let session = self.hmac_session()?;
        match self
            .ctx
            .execute_with_session(Some(session), |c| c.nv_read(NvAuth::NvIndex(h), h, ANCHOR_SIZE, 0))
        {
            Ok(data) => Ok(NvAnchor::Found(data.to_vec())),
            Err(tss_esapi::Error::Tss2Error(rc))
                if matches!(
                    rc.kind(),
                    Some(Tss2ResponseCodeKind::AuthFail | Tss2ResponseCodeKind::BadAuth)
                ) =>
            {
                Ok(NvAnchor::Foreign("the NV index does not accept this vault's authorization".into()))
            }
            Err(e) => Err(self.error("TPM2_NV_Read", e)),
        }
    }

    fn write_anchor(&mut self, index: u32, auth: &Key32, data: &[u8]) -> Result<(), Error> {
        let h = match self.nv_handle(index)? {
            Some(h) => h,
            None => {
                let nv_index = NvIndexTpmHandle::new(index)
                    .map_err(|e| Error::Tpm(format!("NV index {index:#010x}: {e}")))?;
                let public = NvPublicBuilder::new()
                    .with_nv_index(nv_index)
                    .with_index_name_algorithm(HashingAlgorithm::Sha256)
                    .with_index_attributes(
                        attributes().map_err(|e| Error::Tpm(format!("NV attributes: {e}")))?,
                    )
                    .with_data_area_size(ANCHOR_SIZE as usize)
                    .build()
                    .map_err(|e| Error::Tpm(format!("NV public area: {e}")))?;
                let value = Auth::try_from(auth.as_bytes().to_vec())
                    .map_err(|e| Error::Tpm(format!("NV auth: {e}")))?;
                self.ctx
                    .execute_with_session(Some(AuthSession::Password), |c| {
                        c.nv_define_space(Provision::Owner, Some(value), public)
                    })
                    .map_err(|e| self.error("TPM2_NV_DefineSpace", e))?
            }
        };
        let result = self.write_open(h, auth, data);
        let mut object = ObjectHandle::from(h);
        let _ = self.ctx.tr_close(&mut object);
        result
    }

    fn write_open(&mut self, h: NvIndexHandle, auth: &Key32, data: &[u8]) -> Result<(), Error> {
        self.set_auth(h, auth)?;
        let buffer = MaxNvBuffer::try_from(data.to_vec()).map_err(|e| Error::Tpm(format!("NV data: {e}")))?;
        let session = self.hmac_session()?;
        self.ctx
            .execute_with_session(Some(session), |c| c.nv_write(NvAuth::NvIndex(h), h, buffer, 0))
            .map_err(|e| self.error("TPM2_NV_Write", e))
    }
}
