//! A response buffer that passes record data through by reference.
//!
//! A Fetch response is mostly record batches read from the log (megabytes per partition). Encoding
//! it into one contiguous buffer copied every byte once more and needed a buffer as large as the
//! response. `ChunkedBuf` encodes the small fields into a growing buffer as usual, but when the
//! encoder puts a slice that is exactly one of the `Bytes` registered with [`ChunkedBuf::pass`]
//! (in encoding order), it ends the current chunk and keeps a reference to those bytes instead of
//! copying them. The frame is then written chunk by chunk (see `server::respond`).

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Slices shorter than this are copied even when registered: a chunk per tiny batch would cost
/// more in write calls than the copy.
const PASS_MIN: usize = 4096;

/// The encoded frame as chunks, in order.
#[derive(Debug, Default)]
pub struct ChunkedBuf {
    done: Vec<Bytes>,
    done_len: usize,
    cur: BytesMut,
    /// The slices to pass by reference, in the order the encoder writes them.
    pass: Vec<Bytes>,
    next_pass: usize,
}

impl ChunkedBuf {
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            cur: BytesMut::with_capacity(cap),
            ..Self::default()
        }
    }

    /// Registers `b` to be passed by reference when the encoder writes exactly these bytes.
    /// Registrations must follow the encoding order; a slice that does not match the next
    /// registration is copied.
    pub fn pass(&mut self, b: Bytes) {
        if b.len() >= PASS_MIN {
            self.pass.push(b);
        }
    }

    /// Bytes encoded so far.
    pub fn len(&self) -> usize {
        self.done_len + self.cur.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunks, in order (empty ones left out).
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        if !self.cur.is_empty() {
            self.done.push(self.cur.freeze());
        }
        self.done
    }

    fn end_chunk(&mut self) {
        if !self.cur.is_empty() {
            let head = self.cur.split().freeze();
            self.done_len += head.len();
            self.done.push(head);
        }
    }
}

// SAFETY: every method that hands out or advances over uninitialised memory is forwarded to the
// inner `BytesMut` unchanged, so its guarantees are ours. `put_slice` only adds whole chunks
// (initialised `Bytes`) or forwards to the inner buffer.
unsafe impl BufMut for ChunkedBuf {
    fn remaining_mut(&self) -> usize {
        self.cur.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's promise (cnt bytes of chunk_mut initialised) holds for `cur`,
        // whose chunk_mut it was.
        unsafe { self.cur.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.cur.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if let Some(b) = self.pass.get(self.next_pass) {
            if b.as_ptr() == src.as_ptr() && b.len() == src.len() {
                let b = b.clone();
                self.next_pass += 1;
                self.end_chunk();
                self.done_len += b.len();
                self.done.push(b);
                return;
            }
        }
        self.cur.put_slice(src);
    }
}

impl ByteBufMut for ChunkedBuf {
    fn offset(&self) -> usize {
        self.len()
    }

    /// Only within the current chunk: the messages encoded through this buffer (Fetch) put no
    /// gaps; a gap reaching back into a passed chunk is a programming error.
    fn seek(&mut self, offset: usize) {
        let rel = offset
            .checked_sub(self.done_len)
            .expect("ChunkedBuf: seek into a finished chunk");
        self.cur.resize(rel, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = r
            .start
            .checked_sub(self.done_len)
            .expect("ChunkedBuf: range in a finished chunk");
        &mut self.cur[start..r.end - self.done_len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(chunks: &[Bytes]) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    #[test]
    fn registered_slices_are_passed_by_reference_in_order() {
        let big1 = Bytes::from(vec![1u8; 10_000]);
        let big2 = Bytes::from(vec![2u8; 5_000]);
        let small = Bytes::from(vec![3u8; 10]);
        let mut buf = ChunkedBuf::with_capacity(16);
        buf.pass(big1.clone());
        buf.pass(small.clone());
        buf.pass(big2.clone());
        buf.put_i32(7);
        buf.put_slice(&big1);
        buf.put_u8(9);
        buf.put_slice(&small);
        buf.put_slice(&big2);
        buf.put_i16(-1);
        assert_eq!(buf.len(), 4 + 10_000 + 1 + 10 + 5_000 + 2);
        let chunks = buf.into_chunks();
        // [i32], big1, [u8 + small], big2, [i16]
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks[1].as_ptr(), big1.as_ptr());
        assert_eq!(chunks[3].as_ptr(), big2.as_ptr());
        let mut want = 7i32.to_be_bytes().to_vec();
        want.extend_from_slice(&big1);
        want.push(9);
        want.extend_from_slice(&small);
        want.extend_from_slice(&big2);
        want.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(joined(&chunks), want);
    }

    #[test]
    fn equal_but_unregistered_or_out_of_order_slices_are_copied() {
        let big1 = Bytes::from(vec![1u8; 10_000]);
        let big2 = Bytes::from(vec![2u8; 10_000]);
        let copy_of_big1 = big1.to_vec();
        let mut buf = ChunkedBuf::with_capacity(0);
        buf.pass(big1.clone());
        buf.pass(big2.clone());
        buf.put_slice(&copy_of_big1); // same content, other memory: copied
        buf.put_slice(&big2); // not the next registration: copied
        buf.put_slice(&big1); // the next registration: passed
        let chunks = buf.into_chunks();
        assert_eq!(chunks.len(), 2);
        assert_ne!(chunks[0].as_ptr(), big2.as_ptr());
        assert_eq!(chunks[1].as_ptr(), big1.as_ptr());
        assert_eq!(chunks[0].len(), 20_000);
    }

    #[test]
    fn gaps_within_the_current_chunk_work() {
        let mut buf = ChunkedBuf::with_capacity(0);
        buf.put_u8(1);
        let gap = buf.put_gap(4);
        buf.put_u8(2);
        buf.gap_buf(gap).copy_from_slice(&[9, 9, 9, 9]);
        assert_eq!(joined(&buf.into_chunks()), vec![1, 9, 9, 9, 9, 2]);
    }
}
