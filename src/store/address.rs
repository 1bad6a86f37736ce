//! Where a store lives: a directory (sled and segment files, the default),
//! or a cluster vault, `etcd://HOST:PORT[,HOST:PORT...]/VAULT`, whose
//! metadata is in etcd and whose block data is in an S3 bucket named at
//! init (`s3://HOST[:PORT]/BUCKET`, or `s3+http://` for a plain-HTTP
//! endpoint such as a test server on loopback). docs/CLUSTER.md.
//!
//! Commands take the address where they took a store directory, so a
//! cluster address arrives as a path; it is recognised by its scheme.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Error, Result};

/// The scheme of a cluster vault's address.
pub const ETCD_SCHEME: &str = "etcd://";

/// A store's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A directory on this machine.
    Local(PathBuf),
    /// A vault in an etcd cluster.
    Cluster(ClusterAddress),
}

/// `etcd://HOST:PORT[,HOST:PORT...]/VAULT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterAddress {
    /// `HOST:PORT` of each etcd member to try.
    pub endpoints: Vec<String>,
    /// The vault's name: its keys in etcd and its objects in the bucket
    /// are under it.
    pub vault: String,
}

/// `s3://HOST[:PORT]/BUCKET` (HTTPS) or `s3+http://HOST[:PORT]/BUCKET`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataAddress {
    pub https: bool,
    /// `HOST[:PORT]`.
    pub host: String,
    pub bucket: String,
}

/// Longest vault name: it prefixes every key and object name.
const MAX_VAULT_NAME: usize = 64;

/// A name of 1-64 ASCII letters, digits, `.`, `_` or `-`, not starting with
/// a dot: safe as a key prefix, an object prefix and a directory name.
fn valid_name(s: &str) -> bool {
    (1..=MAX_VAULT_NAME).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `HOST:PORT` with a non-empty host and a port number.
fn valid_endpoint(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(['/', '@', '?', '#', ' '])
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

impl Address {
    /// The address a command was given as its store argument.
    pub fn of(path: &Path) -> Result<Address> {
        match path.to_str() {
            Some(s) if s.starts_with(ETCD_SCHEME) => Ok(Address::Cluster(ClusterAddress::parse(s)?)),
            _ => Ok(Address::Local(path.to_path_buf())),
        }
    }

    /// Whether `path` names a cluster vault (by its scheme alone).
    pub fn is_cluster(path: &Path) -> bool {
        path.to_str().is_some_and(|s| s.starts_with(ETCD_SCHEME))
    }

    /// The directory on this machine where the vault's local files live
    /// (control socket, pid file, policy, exports): the store directory
    /// itself, or a cluster vault's state directory.
    pub fn local_dir(&self) -> PathBuf {
        match self {
            Address::Local(dir) => dir.clone(),
            Address::Cluster(c) => c.state_dir(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Local(dir) => write!(f, "{}", dir.display()),
            Address::Cluster(c) => write!(f, "{c}"),
        }
    }
}

impl ClusterAddress {
    pub fn parse(s: &str) -> Result<ClusterAddress> {
        let bad = |why: &str| {
            Error::Unusable(format!("{s:?}: {why} (expected etcd://HOST:PORT[,HOST:PORT...]/VAULT)"))
        };
        let rest = s.strip_prefix(ETCD_SCHEME).ok_or_else(|| bad("not an etcd address"))?;
        let (hosts, vault) = rest.split_once('/').ok_or_else(|| bad("no vault name"))?;
        let endpoints: Vec<String> = hosts.split(',').map(str::to_string).collect();
        if let Some(e) = endpoints.iter().find(|e| !valid_endpoint(e)) {
            return Err(bad(&format!("{e:?} is not HOST:PORT")));
        }
        if !valid_name(vault) {
            return Err(bad("the vault name must be 1-64 letters, digits, '.', '_' or '-', not starting with '.'"));
        }
        Ok(ClusterAddress { endpoints, vault: vault.to_string() })
    }

    /// `$VAULTFS_STATE_DIR/VAULT`, else `/var/lib/vaultfs/cluster/VAULT`
    /// for root and `$XDG_STATE_HOME` (or `~/.local/state`)
    /// `/vaultfs/cluster/VAULT` for anyone else: the same for every command
    /// run by the same user, so they find the mount's control socket.
    pub fn state_dir(&self) -> PathBuf {
        let base = match std::env::var_os("VAULTFS_STATE_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ if crate::sys::effective_uid() == 0 => PathBuf::from("/var/lib/vaultfs/cluster"),
            _ => match std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
                Some(d) => PathBuf::from(d).join("vaultfs/cluster"),
                None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                    .join(".local/state/vaultfs/cluster"),
            },
        };
        base.join(&self.vault)
    }
}

impl fmt::Display for ClusterAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ETCD_SCHEME}{}/{}", self.endpoints.join(","), self.vault)
    }
}

impl DataAddress {
    pub fn parse(s: &str) -> Result<DataAddress> {
        let bad = |why: &str| {
            Error::Unusable(format!("{s:?}: {why} (expected s3://HOST[:PORT]/BUCKET or s3+http://HOST[:PORT]/BUCKET)"))
        };
        let (https, rest) = match (s.strip_prefix("s3://"), s.strip_prefix("s3+http://")) {
            (Some(rest), _) => (true, rest),
            (_, Some(rest)) => (false, rest),
            _ => return Err(bad("not an s3:// address")),
        };
        let (host, bucket) = rest.split_once('/').ok_or_else(|| bad("no bucket"))?;
        let host_ok = !host.is_empty()
            && !host.contains(['/', '@', '?', '#', ' '])
            && host.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_ok_and(|p| p != 0));
        if !host_ok {
            return Err(bad(&format!("{host:?} is not HOST or HOST:PORT")));
        }
        // S3's bucket naming rules, the part that keeps a URL path safe.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
            && bucket.as_bytes()[0].is_ascii_alphanumeric();
        if !bucket_ok {
            return Err(bad("the bucket name must be 3-63 lower-case letters, digits, '.' or '-'"));
        }
        Ok(DataAddress { https, host: host.to_string(), bucket: bucket.to_string() })
    }

    /// The endpoint URL, `https://HOST[:PORT]` or `http://HOST[:PORT]`.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.host)
    }
}

impl fmt::Display for DataAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/{}", if self.https { "s3" } else { "s3+http" }, self.host, self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_addresses_parse_and_print_back() {
        let a = ClusterAddress::parse("etcd://127.0.0.1:2379,10.0.0.2:2379/agents-1").unwrap();
        assert_eq!(a.endpoints, vec!["127.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(a.vault, "agents-1");
        assert_eq!(a.to_string(), "etcd://127.0.0.1:2379,10.0.0.2:2379/agents-1");
        for bad in [
            "etcd://127.0.0.1:2379",
            "etcd://127.0.0.1/v",
            "etcd://:2379/v",
            "etcd://h:0/v",
            "etcd://h:1/",
            "etcd://h:1/a/b",
            "etcd://h:1/.hidden",
            "etcd://h:1/na me",
            "etcd://h:1,/v",
        ] {
            assert!(ClusterAddress::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(Address::of(Path::new("/srv/vault")).unwrap(), Address::Local("/srv/vault".into()));
        assert!(matches!(Address::of(Path::new("etcd://h:1/v")).unwrap(), Address::Cluster(_)));
        assert!(Address::of(Path::new("etcd://h/v")).is_err());
    }

    #[test]
    fn data_addresses_parse_and_print_back() {
        let d = DataAddress::parse("s3+http://127.0.0.1:8333/vault-data").unwrap();
        assert_eq!((d.https, d.endpoint(), d.bucket.as_str()), (false, "http://127.0.0.1:8333".into(), "vault-data"));
        assert_eq!(d.to_string(), "s3+http://127.0.0.1:8333/vault-data");
        assert!(DataAddress::parse("s3://s3.example.com/b12").unwrap().https);
        for bad in ["http://h/b", "s3://h", "s3://h/B", "s3://h/ab", "s3://h:x/bucket", "s3:///bucket", "s3://h/a/b"] {
            assert!(DataAddress::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn state_dir_is_named_after_the_vault() {
        let a = ClusterAddress::parse("etcd://h:1/v1").unwrap();
        let dir = a.state_dir();
        assert!(dir.ends_with("v1"), "{}", dir.display());
    }
}
