//! What a cluster vault's mounts publish of approvals (docs/FORMAT.md
//! section 12, "Approvals across hosts"): an open waiting on one host, and
//! a decision on it made on another. Both are sealed by `meta` before they
//! reach etcd; these are the plaintexts.

use super::{Error, Reader, Writer};

/// An open waiting for approval on `host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalRequest {
    pub host: String,
    pub level: u8,
    pub pid: u32,
    pub uid: u32,
    pub ino: u64,
    /// When it started waiting, ms since the epoch (the waiting host's clock).
    pub since_ms: u64,
    pub comm: String,
    pub path: String,
    pub justification: String,
}

/// Approved or denied on `host`, by `uid`/`pid`/`comm` there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalDecision {
    pub approve: bool,
    pub uid: u32,
    pub pid: u32,
    pub host: String,
    pub comm: String,
}

fn text(w: &mut Writer, s: &str) {
    // Every field fits: host names are at most 64 bytes, paths at most
    // PATH_MAX, justifications at most a note, comm 16 bytes.
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    w.u16(b.len() as u16).bytes(b);
}

fn read_text(r: &mut Reader<'_>, field: &'static str) -> Result<String, Error> {
    let n = r.u16()? as usize;
    String::from_utf8(r.bytes(n)?.to_vec()).map_err(|_| Error::Invalid { field, why: "not UTF-8".into() })
}

impl ApprovalRequest {
    /// level u8 ‖ pid u32 ‖ uid u32 ‖ ino u64 ‖ since_ms u64 ‖ then host,
    /// comm, path, justification, each a u16 length and UTF-8 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + self.path.len() + self.justification.len());
        w.u8(self.level).u32(self.pid).u32(self.uid).u64(self.ino).u64(self.since_ms);
        for s in [&self.host, &self.comm, &self.path, &self.justification] {
            text(&mut w, s);
        }
        w.into_vec()
    }

    pub fn decode(buf: &[u8]) -> Result<ApprovalRequest, Error> {
        let mut r = Reader::new(buf, "approval request");
        let (level, pid, uid, ino, since_ms) = (r.u8()?, r.u32()?, r.u32()?, r.u64()?, r.u64()?);
        if level > 5 {
            return Err(Error::Invalid { field: "approval request level", why: format!("{level}") });
        }
        let host = read_text(&mut r, "approval request host")?;
        let comm = read_text(&mut r, "approval request comm")?;
        let path = read_text(&mut r, "approval request path")?;
        let justification = read_text(&mut r, "approval request justification")?;
        r.finish()?;
        Ok(ApprovalRequest { host, level, pid, uid, ino, since_ms, comm, path, justification })
    }
}

impl ApprovalDecision {
    /// approve u8 (1 approved, 0 denied) ‖ uid u32 ‖ pid u32 ‖ then host
    /// and comm, each a u16 length and UTF-8 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(48);
        w.u8(u8::from(self.approve)).u32(self.uid).u32(self.pid);
        text(&mut w, &self.host);
        text(&mut w, &self.comm);
        w.into_vec()
    }

    pub fn decode(buf: &[u8]) -> Result<ApprovalDecision, Error> {
        let mut r = Reader::new(buf, "approval decision");
        let approve = match r.u8()? {
            0 => false,
            1 => true,
            b => return Err(Error::Invalid { field: "approval decision", why: format!("{b}") }),
        };
        let (uid, pid) = (r.u32()?, r.u32()?);
        let host = read_text(&mut r, "approval decision host")?;
        let comm = read_text(&mut r, "approval decision comm")?;
        r.finish()?;
        Ok(ApprovalDecision { approve, uid, pid, host, comm })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_decisions_round_trip_and_refuse_damage() {
        let req = ApprovalRequest {
            host: "host-b".into(),
            level: 3,
            pid: 4242,
            uid: 1000,
            ino: 77,
            since_ms: 1_700_000_000_000,
            comm: "cat".into(),
            path: "/3-sealed/contract.md".into(),
            justification: "quarterly review".into(),
        };
        let bytes = req.encode();
        assert_eq!(ApprovalRequest::decode(&bytes).unwrap(), req);
        for cut in 0..bytes.len() {
            assert!(ApprovalRequest::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(ApprovalRequest::decode(&long).is_err());
        let mut bad_level = bytes;
        bad_level[0] = 6;
        assert!(ApprovalRequest::decode(&bad_level).is_err());

        let d = ApprovalDecision { approve: true, uid: 0, pid: 9, host: "state".into(), comm: "vaultfs".into() };
        let bytes = d.encode();
        assert_eq!(ApprovalDecision::decode(&bytes).unwrap(), d);
        let mut other = bytes.clone();
        other[0] = 2;
        assert!(ApprovalDecision::decode(&other).is_err());
        assert!(ApprovalDecision::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
