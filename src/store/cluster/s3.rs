//! The object store client: the only user of rust-s3. Objects are written
//! whole and never changed; reads take byte ranges.

use std::time::Duration;

use s3::Bucket;
use s3::Region;
use s3::creds::Credentials;
use s3::error::S3Error;

use crate::store::{DataAddress, Error, Result};

/// A request that gets no answer within this fails (EIO to the caller).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One bucket, as this process reaches it.
pub struct Objects {
    bucket: Box<Bucket>,
    shown: String,
}

fn io(what: &str, name: &str, e: S3Error) -> Error {
    match e {
        S3Error::HttpFailWithBody(404, _) => Error::Corrupt(format!("object {name} is missing from the object store")),
        e => Error::Io(format!("object store {what} {name}: {e}")),
    }
}

impl Objects {
    /// The bucket of `data`. Credentials come from where the AWS tools look:
    /// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), else
    /// the profile AWS_PROFILE (default "default") of ~/.aws/credentials;
    /// with none, requests go unsigned (a server that allows anonymous
    /// access, such as a test server on loopback). The region is AWS_REGION
    /// or AWS_DEFAULT_REGION, else us-east-1.
    pub fn open(data: &DataAddress) -> Result<Objects> {
        let region = std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|_| "us-east-1".into());
        let credentials = match Credentials::default() {
            Ok(c) => c,
            Err(_) => {
                static ONCE: std::sync::Once = std::sync::Once::new();
                ONCE.call_once(|| tracing::warn!("no S3 credentials found (AWS_* variables, ~/.aws/credentials): requests to {data} are unsigned"));
                Credentials::anonymous().map_err(|e| Error::Unusable(format!("S3 credentials: {e}")))?
            }
        };
        let bucket = Bucket::new(&data.bucket, Region::Custom { region, endpoint: data.endpoint() }, credentials)
            .and_then(|b| b.with_path_style().with_request_timeout(REQUEST_TIMEOUT))
            .map_err(|e| Error::Unusable(format!("object store {data}: {e}")))?;
        Ok(Objects { bucket, shown: data.to_string() })
    }

    /// Stores `body` under `name`, whole; returns once the object store has it.
    pub fn put(&self, name: &str, body: &[u8]) -> Result<()> {
        self.bucket.put_object(name, body).map(drop).map_err(|e| io("write of", name, e))
    }

    /// Fills `buf` from the object `name` at byte `offset`.
    pub fn read(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let last = offset + buf.len() as u64 - 1;
        let resp = self.bucket.get_object_range(name, offset, Some(last)).map_err(|e| io("read of", name, e))?;
        let got = resp.as_slice();
        if got.len() != buf.len() {
            return Err(Error::Corrupt(format!(
                "object {name} holds {} bytes at {offset} where {} were expected",
                got.len(),
                buf.len()
            )));
        }
        buf.copy_from_slice(got);
        Ok(())
    }

    /// Up to `len` bytes of the object `name` from byte `offset`: fewer
    /// only where the object ends.
    pub fn read_upto(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let resp =
            self.bucket.get_object_range(name, offset, Some(offset + len - 1)).map_err(|e| io("read of", name, e))?;
        Ok(resp.to_vec())
    }

    pub fn delete(&self, name: &str) -> Result<()> {
        match self.bucket.delete_object(name) {
            Ok(_) | Err(S3Error::HttpFailWithBody(404, _)) => Ok(()),
            Err(e) => Err(io("delete of", name, e)),
        }
    }

    /// Every object whose name starts with `prefix`, as (name, bytes).
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let pages = self.bucket.list(prefix.to_string(), None).map_err(|e| io("listing of", prefix, e))?;
        Ok(pages.into_iter().flat_map(|p| p.contents).map(|o| (o.key, o.size)).collect())
    }

    /// The bucket as the user named it, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}
