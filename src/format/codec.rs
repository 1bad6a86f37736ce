//! Big-endian cursor reader/writer. Every read names the field it was
//! reading, so a truncated input yields "inode: truncated" and never a panic.

use super::Error;

pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.buf.len() < n {
            return Err(Error::Truncated(self.what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        Ok(self.bytes(N)?.try_into().expect("bytes(N) returns N bytes"))
    }

    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, Error> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails if anything is left: every format here is exact-length.
    pub fn finish(self) -> Result<(), Error> {
        if self.buf.is_empty() { Ok(()) } else { Err(Error::Trailing(self.what, self.buf.len())) }
    }
}

/// Lowercase hex, the way hashes, keys and ids appear in text formats here.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Parses `s` as hex (either case) into bytes that may be secret; a digit
/// that is not hex is an error naming `what` and `field`.
pub fn unhex(s: &str, what: &'static str, field: &'static str) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return Err(super::invalid(what, format!("{field} has an odd number of hex digits ({})", b.len())));
    }
    let digit = |c: u8| -> Result<u8, Error> {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| super::invalid(what, format!("{field} holds {:?}, not a hex digit", c as char)))
    };
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(b.len() / 2));
    for pair in b.chunks_exact(2) {
        out.push((digit(pair[0])? << 4) | digit(pair[1])?);
    }
    Ok(out)
}

/// `unhex` of exactly `N` bytes.
pub fn unhex_array<const N: usize>(
    s: &str,
    what: &'static str,
    field: &'static str,
) -> Result<zeroize::Zeroizing<[u8; N]>, Error> {
    if s.len() != 2 * N {
        return Err(super::invalid(what, format!("{field} has {} hex digits, not {}", s.len(), 2 * N)));
    }
    let v = unhex(s, what, field)?;
    let mut out = zeroize::Zeroizing::new([0u8; N]);
    out.copy_from_slice(&v);
    Ok(out)
}

#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(n: usize) -> Self {
        Writer { buf: Vec::with_capacity(n) }
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}
