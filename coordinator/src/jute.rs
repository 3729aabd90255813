//! Jute, ZooKeeper's binary record encoding: big-endian integers, length-prefixed
//! buffers and strings (-1 length = null), vectors as count + elements.
//! Every read is bounds-checked: input comes from the network or from disk.

use bytes::{BufMut, BytesMut};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum JuteError {
    #[error("record truncated: needed {needed} bytes at offset {offset}, {available} left")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("negative or oversized length {0} at offset {1}")]
    BadLength(i64, usize),
    #[error("string is not valid UTF-8")]
    BadUtf8,
    #[error("unexpected null {0}")]
    UnexpectedNull(&'static str),
    #[error("invalid value: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, JuteError>;

/// Reads jute records from a byte slice; `limit` caps every buffer/string/vector length.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(JuteError::Truncated {
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn read_bool(&mut self) -> Result<bool> {
        Ok(self.take(1)?[0] != 0)
    }

    pub fn read_i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn read_i64(&mut self) -> Result<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn read_len(&mut self) -> Result<Option<usize>> {
        let at = self.pos;
        let n = self.read_i32()?;
        if n == -1 {
            return Ok(None);
        }
        // A length can never exceed what is left in the frame: reject before allocating.
        if n < 0 || n as usize > self.remaining() {
            return Err(JuteError::BadLength(n as i64, at));
        }
        Ok(Some(n as usize))
    }

    /// A buffer where null means nothing different from empty (passwords, auth
    /// bytes). Znode data is not one of them: it uses `read_opt_buffer`.
    pub fn read_buffer(&mut self) -> Result<Vec<u8>> {
        match self.read_len()? {
            None => Ok(Vec::new()),
            Some(n) => Ok(self.take(n)?.to_vec()),
        }
    }

    pub fn read_opt_buffer(&mut self) -> Result<Option<Vec<u8>>> {
        match self.read_len()? {
            None => Ok(None),
            Some(n) => Ok(Some(self.take(n)?.to_vec())),
        }
    }

    pub fn read_string(&mut self) -> Result<String> {
        match self.read_len()? {
            // Clients (kazoo) send "" as null; ZooKeeper reads it as null and treats
            // it like an empty string where it matters.
            None => Ok(String::new()),
            Some(n) => {
                let b = self.take(n)?;
                String::from_utf8(b.to_vec()).map_err(|_| JuteError::BadUtf8)
            }
        }
    }

    /// Vector length; null vectors decode as empty. Each element takes at least
    /// `min_elem` bytes, which bounds the count by the bytes left.
    pub fn read_vec_len(&mut self, min_elem: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.read_i32()?;
        if n == -1 {
            return Ok(0);
        }
        if n < 0 || (n as usize).saturating_mul(min_elem.max(1)) > self.remaining() {
            return Err(JuteError::BadLength(n as i64, at));
        }
        Ok(n as usize)
    }

    pub fn read_string_vec(&mut self) -> Result<Vec<String>> {
        let n = self.read_vec_len(4)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.read_string()?);
        }
        Ok(v)
    }
}

/// Appends jute records to a growable buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: BytesMut,
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            buf: BytesMut::with_capacity(128),
        }
    }

    /// Starts a frame: reserves the 4-byte length prefix, filled in by `finish_frame`.
    pub fn framed() -> Self {
        let mut w = Writer::new();
        w.buf.put_i32(0);
        w
    }

    pub fn finish_frame(mut self) -> bytes::Bytes {
        let len = (self.buf.len() - 4) as i32;
        self.buf[0..4].copy_from_slice(&len.to_be_bytes());
        self.buf.freeze()
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.put_u8(v as u8);
        self
    }

    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.put_i32(v);
        self
    }

    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.put_i64(v);
        self
    }

    pub fn buffer(&mut self, v: &[u8]) -> &mut Self {
        self.buf.put_i32(v.len() as i32);
        self.buf.put_slice(v);
        self
    }

    pub fn opt_buffer(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            Some(b) => self.buffer(b),
            None => self.i32(-1),
        }
    }

    pub fn string(&mut self, v: &str) -> &mut Self {
        self.buffer(v.as_bytes())
    }

    pub fn string_vec<S: AsRef<str>>(&mut self, v: &[S]) -> &mut Self {
        self.buf.put_i32(v.len() as i32);
        for s in v {
            self.string(s.as_ref());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_primitives() {
        let mut w = Writer::new();
        w.bool(true)
            .i32(-7)
            .i64(1 << 40)
            .buffer(b"abc")
            .string("/x")
            .string_vec(&["a", "b"])
            .opt_buffer(None);
        let b = w.buf.freeze();
        let mut r = Reader::new(&b);
        assert!(r.read_bool().unwrap());
        assert_eq!(r.read_i32().unwrap(), -7);
        assert_eq!(r.read_i64().unwrap(), 1 << 40);
        assert_eq!(r.read_buffer().unwrap(), b"abc");
        assert_eq!(r.read_string().unwrap(), "/x");
        assert_eq!(r.read_string_vec().unwrap(), vec!["a", "b"]);
        assert_eq!(r.read_opt_buffer().unwrap(), None);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn null_and_empty_buffers_are_distinct() {
        let mut w = Writer::new();
        w.opt_buffer(None)
            .opt_buffer(Some(b""))
            .opt_buffer(Some(b"z"));
        let b = w.buf.freeze();
        // null is length -1 on the wire, empty is length 0.
        assert_eq!(&b[..8], &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        let mut r = Reader::new(&b);
        assert_eq!(r.read_opt_buffer().unwrap(), None);
        assert_eq!(r.read_opt_buffer().unwrap(), Some(vec![]));
        assert_eq!(r.read_opt_buffer().unwrap(), Some(b"z".to_vec()));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn huge_lengths_are_rejected_without_allocating() {
        let mut w = Writer::new();
        w.i32(i32::MAX);
        let b = w.buf.freeze();
        assert!(matches!(
            Reader::new(&b).read_buffer(),
            Err(JuteError::BadLength(..))
        ));
        assert!(Reader::new(&b).read_string_vec().is_err());
        assert!(Reader::new(&b[..2]).read_i32().is_err());
    }
}
