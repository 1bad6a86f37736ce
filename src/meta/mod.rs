//! Metadata sealing: inodes, directory entries and xattrs as store values,
//! and the keyed tags that stand in for names in store keys.
//!
//! Inode value:  level u8 ‖ nonce(24) ‖ sealed InodeRecord ‖ tag(16)
//!               AAD = aad::INODE ‖ version ‖ vault id ‖ ino u64 ‖ level u8
//! Dirent value: nonce(24) ‖ sealed DirentRecord ‖ tag(16); AAD = aad::DIRENT ‖ version ‖ vault id ‖ store key
//! Xattr value:  nonce(24) ‖ sealed XattrRecord ‖ tag(16);  AAD = aad::XATTR ‖ version ‖ vault id ‖ store key

use crate::crypto::{self, Key32, KeyedHash};
use crate::format::{self, DirentRecord, InodeRecord, TombstoneRecord, XattrRecord, aad, keys, labels};

/// Level byte of the root and the six level directories: sealed under the
/// vault metadata key (master-derived) so they list even while a level is locked.
pub const VAULT_LEVEL: u8 = 0xFF;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A record failed authentication (altered, moved, or sealed under another key).
    #[error("{0} failed authentication")]
    Auth(String),
    /// A record authenticated but does not parse: a bug or a newer format.
    #[error("{0}: {1}")]
    Format(String, format::Error),
    #[error("random source failed")]
    Random,
}

pub type Result<T> = std::result::Result<T, Error>;

/// The keys one level (or the vault level) uses for its metadata.
pub struct MetaKeys {
    pub level: u8,
    seal: Key32,
    names: Key32,
}

impl MetaKeys {
    /// Derives the metadata and name keys from a level key (or, for
    /// VAULT_LEVEL, from the vault metadata key).
    pub fn derive(level: u8, root: &Key32, vault_id: &[u8; 16]) -> Self {
        MetaKeys {
            level,
            seal: crypto::hkdf(root.as_bytes(), vault_id, labels::LEVEL_META),
            names: crypto::hkdf(root.as_bytes(), vault_id, labels::LEVEL_NAMES),
        }
    }

    /// Tag of a directory: keys all of its entries (16 bytes of keyed BLAKE3).
    pub fn dir_tag(&self, dir_ino: u64) -> [u8; 16] {
        KeyedHash::new(&self.names).update(b"dir").update(&dir_ino.to_be_bytes()).finalize16()
    }

    /// Tag of a name within a directory.
    pub fn name_tag(&self, dir_ino: u64, name: &[u8]) -> [u8; 16] {
        KeyedHash::new(&self.names)
            .update(b"name")
            .update(&dir_ino.to_be_bytes())
            .update(&(name.len() as u64).to_be_bytes())
            .update(name)
            .finalize16()
    }

    /// Tag of an xattr name on an inode.
    pub fn xattr_tag(&self, ino: u64, name: &[u8]) -> [u8; 16] {
        KeyedHash::new(&self.names)
            .update(b"xattr")
            .update(&ino.to_be_bytes())
            .update(&(name.len() as u64).to_be_bytes())
            .update(name)
            .finalize16()
    }

    pub fn dirent_key(&self, dir_ino: u64, name: &[u8]) -> [u8; 34] {
        keys::dirent(self.level, &self.dir_tag(dir_ino), &self.name_tag(dir_ino, name))
    }

    pub fn dirent_prefix(&self, dir_ino: u64) -> [u8; 18] {
        keys::dirent_prefix(self.level, &self.dir_tag(dir_ino))
    }

    pub fn seal_inode(&self, vault_id: &[u8; 16], ino: u64, rec: &InodeRecord) -> Result<Vec<u8>> {
        let aad = inode_aad(vault_id, ino, self.level);
        let mut out = vec![self.level];
        crypto::seal_into(&self.seal, &aad, &rec.encode(), &mut out).map_err(|_| Error::Random)?;
        Ok(out)
    }

    pub fn open_inode(&self, vault_id: &[u8; 16], ino: u64, value: &[u8]) -> Result<InodeRecord> {
        let what = || format!("inode {ino}");
        if value.first() != Some(&self.level) {
            return Err(Error::Auth(what()));
        }
        let aad = inode_aad(vault_id, ino, self.level);
        let plain = crypto::open(&self.seal, &aad, &value[1..]).map_err(|_| Error::Auth(what()))?;
        InodeRecord::decode(&plain).map_err(|e| Error::Format(what(), e))
    }

    pub fn seal_dirent(&self, vault_id: &[u8; 16], key: &[u8], rec: &DirentRecord) -> Result<Vec<u8>> {
        let aad = aad::build(aad::DIRENT, &[vault_id, key]);
        crypto::seal(&self.seal, &aad, &rec.encode()).map_err(|_| Error::Random)
    }

    pub fn open_dirent(&self, vault_id: &[u8; 16], key: &[u8], value: &[u8]) -> Result<DirentRecord> {
        let aad = aad::build(aad::DIRENT, &[vault_id, key]);
        let plain =
            crypto::open(&self.seal, &aad, value).map_err(|_| Error::Auth("directory entry".into()))?;
        DirentRecord::decode(&plain).map_err(|e| Error::Format("directory entry".into(), e))
    }

    pub fn seal_xattr(&self, vault_id: &[u8; 16], key: &[u8], rec: &XattrRecord) -> Result<Vec<u8>> {
        let aad = aad::build(aad::XATTR, &[vault_id, key]);
        crypto::seal(&self.seal, &aad, &rec.encode()).map_err(|_| Error::Random)
    }

    pub fn open_xattr(&self, vault_id: &[u8; 16], key: &[u8], value: &[u8]) -> Result<XattrRecord> {
        let aad = aad::build(aad::XATTR, &[vault_id, key]);
        let plain = crypto::open(&self.seal, &aad, value).map_err(|_| Error::Auth("xattr".into()))?;
        XattrRecord::decode(&plain).map_err(|e| Error::Format("xattr".into(), e))
    }
}

impl MetaKeys {
    /// Tombstone value: nonce(24) ‖ sealed TombstoneRecord ‖ tag(16);
    /// AAD = aad::TOMBSTONE ‖ version ‖ vault id ‖ store key.
    pub fn seal_tombstone(&self, vault_id: &[u8; 16], key: &[u8], rec: &TombstoneRecord) -> Result<Vec<u8>> {
        let aad = aad::build(aad::TOMBSTONE, &[vault_id, key]);
        crypto::seal(&self.seal, &aad, &rec.encode()).map_err(|_| Error::Random)
    }

    pub fn open_tombstone(&self, vault_id: &[u8; 16], key: &[u8], value: &[u8]) -> Result<TombstoneRecord> {
        let aad = aad::build(aad::TOMBSTONE, &[vault_id, key]);
        let plain = crypto::open(&self.seal, &aad, value).map_err(|_| Error::Auth("tombstone".into()))?;
        TombstoneRecord::decode(&plain).map_err(|e| Error::Format("tombstone".into(), e))
    }
}

impl MetaKeys {
    /// What one host holds of inode `ino`'s locks, as a cluster vault
    /// publishes it: nonce(24) ‖ sealed span list ‖ tag(16);
    /// AAD = aad::FILE_LOCKS ‖ version ‖ vault id ‖ ino u64.
    pub fn seal_file_locks(&self, vault_id: &[u8; 16], ino: u64, spans: &[u8]) -> Result<Vec<u8>> {
        let aad = aad::build(aad::FILE_LOCKS, &[vault_id, &ino.to_be_bytes()]);
        crypto::seal(&self.seal, &aad, spans).map_err(|_| Error::Random)
    }

    pub fn open_file_locks(&self, vault_id: &[u8; 16], ino: u64, value: &[u8]) -> Result<Vec<u8>> {
        let aad = aad::build(aad::FILE_LOCKS, &[vault_id, &ino.to_be_bytes()]);
        let plain = crypto::open(&self.seal, &aad, value)
            .map_err(|_| Error::Auth(format!("another host's locks on inode {ino}")))?;
        Ok(plain.to_vec())
    }

    /// An open waiting for approval, or a decision on it (`decision`), as a
    /// cluster vault publishes them: nonce(24) ‖ sealed plaintext ‖
    /// tag(16); AAD = aad::APPROVAL_REQUEST or aad::APPROVAL_DECISION ‖
    /// version ‖ vault id ‖ the waiting mount's lease u64 ‖ open id u64.
    pub fn seal_approval(
        &self,
        vault_id: &[u8; 16],
        decision: bool,
        lease: i64,
        id: u64,
        plain: &[u8],
    ) -> Result<Vec<u8>> {
        let aad = approval_aad(vault_id, decision, lease, id);
        crypto::seal(&self.seal, &aad, plain).map_err(|_| Error::Random)
    }

    pub fn open_approval(
        &self,
        vault_id: &[u8; 16],
        decision: bool,
        lease: i64,
        id: u64,
        value: &[u8],
    ) -> Result<Vec<u8>> {
        let aad = approval_aad(vault_id, decision, lease, id);
        let what = if decision { "a decision on open" } else { "waiting open" };
        let plain = crypto::open(&self.seal, &aad, value)
            .map_err(|_| Error::Auth(format!("{what} {id} of lease {lease:016x}")))?;
        Ok(plain.to_vec())
    }

    /// When an open at `level` was last approved on any host of a cluster
    /// vault: nonce(24) ‖ sealed u64 ms since the epoch ‖ tag(16); AAD =
    /// aad::APPROVAL_COOLDOWN ‖ version ‖ vault id ‖ level u8.
    pub fn seal_last_approval(&self, vault_id: &[u8; 16], level: u8, ms: u64) -> Result<Vec<u8>> {
        let aad = aad::build(aad::APPROVAL_COOLDOWN, &[vault_id, &[level]]);
        crypto::seal(&self.seal, &aad, &ms.to_be_bytes()).map_err(|_| Error::Random)
    }

    pub fn open_last_approval(&self, vault_id: &[u8; 16], level: u8, value: &[u8]) -> Result<u64> {
        let aad = aad::build(aad::APPROVAL_COOLDOWN, &[vault_id, &[level]]);
        let what = || Error::Auth(format!("the last approval at level {level}"));
        let plain = crypto::open(&self.seal, &aad, value).map_err(|_| what())?;
        Ok(u64::from_be_bytes(<[u8; 8]>::try_from(&plain[..]).map_err(|_| what())?))
    }

    /// The vault's policy (its TOML text) as stored: nonce(24) ‖ sealed
    /// text ‖ tag(16); AAD = aad::VAULT_POLICY ‖ version ‖ vault id.
    pub fn seal_vault_policy(&self, vault_id: &[u8; 16], text: &str) -> Result<Vec<u8>> {
        let aad = aad::build(aad::VAULT_POLICY, &[vault_id]);
        crypto::seal(&self.seal, &aad, text.as_bytes()).map_err(|_| Error::Random)
    }

    pub fn open_vault_policy(&self, vault_id: &[u8; 16], value: &[u8]) -> Result<String> {
        let aad = aad::build(aad::VAULT_POLICY, &[vault_id]);
        let plain =
            crypto::open(&self.seal, &aad, value).map_err(|_| Error::Auth("the vault's policy".into()))?;
        String::from_utf8(plain.to_vec())
            .map_err(|_| Error::Auth("the vault's policy (not UTF-8 once opened)".into()))
    }
}

/// The level byte of a stored inode value, without decrypting it.
pub fn inode_level(value: &[u8]) -> Option<u8> {
    value.first().copied()
}

fn approval_aad(vault_id: &[u8; 16], decision: bool, lease: i64, id: u64) -> Vec<u8> {
    let label = if decision { aad::APPROVAL_DECISION } else { aad::APPROVAL_REQUEST };
    aad::build(label, &[vault_id, &lease.to_be_bytes(), &id.to_be_bytes()])
}

fn inode_aad(vault_id: &[u8; 16], ino: u64, level: u8) -> Vec<u8> {
    aad::build(aad::INODE, &[vault_id, &ino.to_be_bytes(), &[level]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FileKind, Timestamp};

    fn rec() -> InodeRecord {
        InodeRecord {
            kind: FileKind::File,
            perm: 0o644,
            uid: 1,
            gid: 1,
            nlink: 1,
            rdev: 0,
            size: 3,
            blocks: 1,
            generation: 5,
            parent: 0,
            atime: Timestamp::default(),
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            crtime: Timestamp::default(),
            flags: 0,
            file_key: crate::format::RawKey([3; 32]),
            symlink: vec![],
        }
    }

    #[test]
    fn inode_bound_to_ino_level_and_vault() {
        let id = [9u8; 16];
        let root = Key32::random().unwrap();
        let k1 = MetaKeys::derive(1, &root, &id);
        let v = k1.seal_inode(&id, 42, &rec()).unwrap();
        assert_eq!(k1.open_inode(&id, 42, &v).unwrap(), rec());
        assert!(k1.open_inode(&id, 43, &v).is_err());
        assert!(k1.open_inode(&[8; 16], 42, &v).is_err());
        let k2 = MetaKeys::derive(2, &root, &id);
        assert!(k2.open_inode(&id, 42, &v).is_err());
        let mut relabeled = v.clone();
        relabeled[0] = 2;
        assert!(k2.open_inode(&id, 42, &relabeled).is_err());
    }

    #[test]
    fn dirent_bound_to_its_key() {
        let id = [9u8; 16];
        let k = MetaKeys::derive(1, &Key32::random().unwrap(), &id);
        let d = DirentRecord { ino: 5, kind: FileKind::File, name: b"a".to_vec() };
        let key_a = k.dirent_key(2, b"a");
        let key_b = k.dirent_key(2, b"b");
        assert_ne!(key_a, key_b);
        let v = k.seal_dirent(&id, &key_a, &d).unwrap();
        assert_eq!(k.open_dirent(&id, &key_a, &v).unwrap(), d);
        assert!(k.open_dirent(&id, &key_b, &v).is_err());
    }

    #[test]
    fn file_locks_bound_to_inode_and_vault() {
        let id = [9u8; 16];
        let k = MetaKeys::derive(VAULT_LEVEL, &Key32::random().unwrap(), &id);
        let v = k.seal_file_locks(&id, 7, b"spans").unwrap();
        assert_eq!(k.open_file_locks(&id, 7, &v).unwrap(), b"spans");
        assert!(k.open_file_locks(&id, 8, &v).is_err());
        assert!(k.open_file_locks(&[8; 16], 7, &v).is_err());
        let mut flipped = v.clone();
        flipped[30] ^= 1;
        assert!(k.open_file_locks(&id, 7, &flipped).is_err());
    }
}
