//! Kafka RecordBatch v2 (magic 2): a header view, validation and in-place rewrites.
//!
//! Batches stay opaque on the produce and fetch paths: only the 61-byte header is parsed and
//! the CRC32C is checked over the bytes. Records are decoded only where a feature needs
//! per-record timestamps (see [`record_timestamps`]).
//!
//! Header layout (big endian):
//! ```text
//!  0 baseOffset i64        8 batchLength i32     12 partitionLeaderEpoch i32
//! 16 magic i8             17 crc u32             21 attributes i16
//! 23 lastOffsetDelta i32  27 baseTimestamp i64   35 maxTimestamp i64
//! 43 producerId i64       51 producerEpoch i16   53 baseSequence i32
//! 57 recordsCount i32     61 records...
//! ```
//! The CRC covers bytes 21 (attributes) to the end of the batch, so `baseOffset`,
//! `batchLength` and `partitionLeaderEpoch` can be rewritten without recomputing it.

/// Length of the v2 batch header, up to and including `recordsCount`.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s counted region (`baseOffset` + `batchLength`).
pub const LOG_OVERHEAD: usize = 12;
/// Smallest legal `batchLength`: the header after `batchLength`, with no records.
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;
/// Smallest encoded uncompressed record: length, attributes, timestamp delta, offset delta,
/// key length, value length and header count, one byte each.
pub const MIN_RECORD_BYTES: usize = 7;
/// Upper bound on records per compressed byte. Every record carries a distinct offset delta,
/// so even a perfect compressor needs about a byte per record; 64 leaves a wide margin while
/// refusing batches that claim millions of records in a few bytes.
pub const MAX_COMPRESSED_RECORDS_PER_BYTE: usize = 64;

const OFF_BASE_OFFSET: usize = 0;
const OFF_BATCH_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_MAX_TIMESTAMP: usize = 35;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
pub(crate) const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
/// KIP-534: `baseTimestamp` holds the delete horizon of the batch's tombstones.
pub(crate) const ATTR_DELETE_HORIZON: i16 = 0x40;

/// Parsed v2 batch header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

/// Why a batch (or a buffer of batches) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("empty record set: at least one batch is required")]
    Empty,
    #[error("legacy message format (magic {0}) is not supported; only magic 2 record batches are accepted")]
    UnsupportedMagic(i8),
    #[error("invalid magic byte {0} (expected 2)")]
    BadMagic(i8),
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("invalid batch length {0} (minimum {MIN_BATCH_LENGTH})")]
    BadLength(i32),
    #[error("invalid record count {records_count} for last offset delta {last_offset_delta}")]
    BadRecordCount {
        records_count: i32,
        last_offset_delta: i32,
    },
    #[error("record count {records_count} is implausible for {bytes} bytes of records")]
    ImplausibleRecordCount { records_count: i32, bytes: usize },
    #[error("malformed record inside batch: {0}")]
    BadRecord(&'static str),
    #[error("cannot decompress records: {0}")]
    Decompression(String),
}

#[inline]
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
#[inline]
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
#[inline]
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the 61-byte header at the start of `buf`. Checks only that enough bytes are there
    /// and that the magic is 2; no CRC check, no length check against `buf`.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        // Legacy message sets also keep their magic at byte 16, and can be shorter than 61 bytes.
        if buf.len() > OFF_MAGIC {
            check_magic(buf[OFF_MAGIC] as i8)?;
        }
        if buf.len() < BATCH_HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_LEN,
                available: buf.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: be_i32(buf, 17) as u32,
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        })
    }

    /// Bytes the batch occupies on the wire and on disk: 12 + `batch_length`.
    /// Meaningful only once `batch_length >= MIN_BATCH_LENGTH` has been checked.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset right after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & ATTR_COMPRESSION_MASK) as u8
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// Whether `baseTimestamp` carries the delete horizon of the batch's tombstones (set by the
    /// log cleaner, KIP-534).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & ATTR_DELETE_HORIZON != 0
    }

    /// Checks that do not need the records bytes: length, record count against offset delta.
    /// `compacted` allows fewer records than the offset span (the log cleaner keeps a batch's
    /// offsets when it removes records from it); produce requires exactly one per offset.
    fn check_shape(&self, compacted: bool) -> Result<(), BatchError> {
        if self.batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::BadLength(self.batch_length));
        }
        let span = i64::from(self.last_offset_delta) + 1;
        let count = i64::from(self.records_count);
        let count_ok = if compacted {
            count >= 1 && count <= span
        } else {
            count == span
        };
        if self.records_count < 1 || self.last_offset_delta < 0 || !count_ok {
            return Err(BatchError::BadRecordCount {
                records_count: self.records_count,
                last_offset_delta: self.last_offset_delta,
            });
        }
        let bytes = self.total_len() - BATCH_HEADER_LEN;
        let count = self.records_count as usize;
        let plausible = if self.compression() == 0 {
            count.saturating_mul(MIN_RECORD_BYTES) <= bytes
        } else {
            count <= bytes.saturating_mul(MAX_COMPRESSED_RECORDS_PER_BYTE)
        };
        if !plausible {
            return Err(BatchError::ImplausibleRecordCount {
                records_count: self.records_count,
                bytes,
            });
        }
        Ok(())
    }
}

fn check_magic(magic: i8) -> Result<(), BatchError> {
    match magic {
        2 => Ok(()),
        0 | 1 => Err(BatchError::UnsupportedMagic(magic)),
        m => Err(BatchError::BadMagic(m)),
    }
}

/// CRC32C over attributes..end of the batch, as stored in the header.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFF_ATTRIBUTES..])
}

/// Validates one whole batch at the start of `buf` and returns its header. `buf` may hold more
/// bytes after the batch.
pub fn validate_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    validate_batch_shape(buf, false)
}

/// Like [`validate_batch`] for batches read back from the log, where the cleaner may have
/// removed records from a batch (fewer records than `lastOffsetDelta + 1`).
pub fn validate_stored_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    validate_batch_shape(buf, true)
}

fn validate_batch_shape(buf: &[u8], compacted: bool) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(buf)?;
    if h.batch_length < MIN_BATCH_LENGTH {
        return Err(BatchError::BadLength(h.batch_length));
    }
    let total = h.total_len();
    if buf.len() < total {
        return Err(BatchError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    let computed = compute_crc(&buf[..total]);
    if computed != h.crc {
        return Err(BatchError::CrcMismatch {
            stored: h.crc,
            computed,
        });
    }
    h.check_shape(compacted)?;
    Ok(h)
}

/// Validate a produce payload: one or more v2 batches back to back, exactly filling `buf`.
///
/// Checks framing, magic (0/1 give [`BatchError::UnsupportedMagic`]), CRC32C, record count
/// against `lastOffsetDelta`, and that the record count is plausible for the bytes. Never
/// allocates by the claimed record count.
pub fn validate_batches(buf: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut out = Vec::with_capacity(1);
    let mut pos = 0;
    while pos < buf.len() {
        let h = validate_batch(&buf[pos..])?;
        pos += h.total_len();
        out.push(h);
    }
    Ok(out)
}

/// Iterator over whole batches in a buffer. Yields `(position, header)`; stops at a partial
/// tail or at a header whose length field is impossible. No CRC check.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter { buf, pos: 0 }
    }

    /// Position right after the last batch yielded so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for BatchIter<'_> {
    type Item = (usize, BatchHeader);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.pos..)?;
        let h = BatchHeader::parse(rest).ok()?;
        if h.batch_length < MIN_BATCH_LENGTH || rest.len() < h.total_len() {
            return None;
        }
        let at = self.pos;
        self.pos += h.total_len();
        Some((at, h))
    }
}

/// Rewrites `baseOffset` (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites `partitionLeaderEpoch` (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch as LogAppendTime with `ts` as its max timestamp and recomputes the CRC.
/// `batch` must be exactly one whole batch.
pub fn set_log_append_time(batch: &mut [u8], ts: i64) {
    let attrs = be_i16(batch, OFF_ATTRIBUTES) | ATTR_LOG_APPEND_TIME;
    batch[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&ts.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Reads `batchLength` at `buf[8..12]` without the rest of the header.
pub fn peek_batch_length(buf: &[u8]) -> Option<i32> {
    (buf.len() >= OFF_BATCH_LENGTH + 4).then(|| be_i32(buf, OFF_BATCH_LENGTH))
}

/// Zigzag varint reader for the record encoding; `None` on overrun or overlong encodings.
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return None;
        }
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

/// Calls `f(offset, timestamp)` for every record of one whole batch, in order, stopping early
/// when `f` returns false. Compressed records are inflated first (bounded by
/// [`crate::compression::MAX_DECOMPRESSED_BYTES`]). For LogAppendTime batches every record
/// reports `maxTimestamp`, as Kafka clients do.
pub fn record_timestamps(
    batch: &[u8],
    f: &mut dyn FnMut(i64, i64) -> bool,
) -> Result<(), BatchError> {
    let h = BatchHeader::parse(batch)?;
    if h.batch_length < MIN_BATCH_LENGTH || batch.len() < h.total_len() {
        return Err(BatchError::BadLength(h.batch_length));
    }
    let raw = &batch[BATCH_HEADER_LEN..h.total_len()];
    let inflated;
    let body: &[u8] = if h.compression() == 0 {
        raw
    } else {
        inflated = crate::compression::decompress(
            h.compression(),
            raw,
            crate::compression::MAX_DECOMPRESSED_BYTES,
        )?;
        &inflated
    };
    let mut pos = 0usize;
    for _ in 0..h.records_count.max(0) {
        let len = read_varlong(body, &mut pos).ok_or(BatchError::BadRecord("record length"))?;
        if len < 3 {
            return Err(BatchError::BadRecord("record length"));
        }
        let start = pos;
        let end = start
            .checked_add(len as usize)
            .filter(|&e| e <= body.len())
            .ok_or(BatchError::BadRecord("record overruns batch"))?;
        let rec = &body[..end];
        let mut p = start + 1; // skip the record attributes byte
        let ts_delta = read_varlong(rec, &mut p).ok_or(BatchError::BadRecord("timestamp delta"))?;
        let off_delta = read_varlong(rec, &mut p).ok_or(BatchError::BadRecord("offset delta"))?;
        let ts = if h.is_log_append_time() {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(ts_delta)
        };
        if !f(h.base_offset.wrapping_add(off_delta), ts) {
            return Ok(());
        }
        pos = end;
    }
    Ok(())
}

/// Zigzag varint writer (the inverse of `read_varlong`).
pub(crate) fn write_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// One decoded record of a batch, borrowing from the (inflated) records section.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The whole encoded record, length prefix included.
    pub encoded: &'a [u8],
    /// The encoded record after its timestamp delta (offset delta, key, value, headers).
    pub after_timestamp: &'a [u8],
    /// The record attributes byte.
    pub attributes: u8,
}

/// The records section of one whole batch, inflated when compressed (bounded by
/// [`crate::compression::MAX_DECOMPRESSED_BYTES`]).
pub fn records_section(
    batch: &[u8],
) -> Result<(BatchHeader, std::borrow::Cow<'_, [u8]>), BatchError> {
    let h = BatchHeader::parse(batch)?;
    if h.batch_length < MIN_BATCH_LENGTH || batch.len() < h.total_len() {
        return Err(BatchError::BadLength(h.batch_length));
    }
    let raw = &batch[BATCH_HEADER_LEN..h.total_len()];
    if h.compression() == 0 {
        return Ok((h, std::borrow::Cow::Borrowed(raw)));
    }
    let inflated = crate::compression::decompress(
        h.compression(),
        raw,
        crate::compression::MAX_DECOMPRESSED_BYTES,
    )?;
    Ok((h, std::borrow::Cow::Owned(inflated)))
}

fn read_nullable<'a>(
    rec: &'a [u8],
    p: &mut usize,
    what: &'static str,
) -> Result<Option<&'a [u8]>, BatchError> {
    let len = read_varlong(rec, p).ok_or(BatchError::BadRecord(what))?;
    if len < 0 {
        return Ok(None);
    }
    let end = p
        .checked_add(len as usize)
        .filter(|&e| e <= rec.len())
        .ok_or(BatchError::BadRecord(what))?;
    let v = &rec[*p..end];
    *p = end;
    Ok(Some(v))
}

/// Decodes the `count` records of a records section (see [`records_section`]) and calls `f`
/// for each in order; stops early when `f` returns false. Headers are skipped over, not
/// collected (so duplicate header keys stay byte for byte in `encoded`).
pub fn decode_records<'a>(
    body: &'a [u8],
    count: i32,
    f: &mut dyn FnMut(RecordRef<'a>) -> bool,
) -> Result<(), BatchError> {
    let mut pos = 0usize;
    for _ in 0..count.max(0) {
        let start_prefix = pos;
        let len = read_varlong(body, &mut pos).ok_or(BatchError::BadRecord("record length"))?;
        if len < 3 {
            return Err(BatchError::BadRecord("record length"));
        }
        let start = pos;
        let end = start
            .checked_add(len as usize)
            .filter(|&e| e <= body.len())
            .ok_or(BatchError::BadRecord("record overruns batch"))?;
        let rec = &body[..end];
        let attributes = rec[start];
        let mut p = start + 1;
        let timestamp_delta =
            read_varlong(rec, &mut p).ok_or(BatchError::BadRecord("timestamp delta"))?;
        let after_ts = p;
        let offset_delta =
            read_varlong(rec, &mut p).ok_or(BatchError::BadRecord("offset delta"))?;
        let key = read_nullable(rec, &mut p, "key")?;
        let value = read_nullable(rec, &mut p, "value")?;
        let r = RecordRef {
            timestamp_delta,
            offset_delta,
            key,
            value,
            encoded: &body[start_prefix..end],
            after_timestamp: &body[after_ts..end],
            attributes,
        };
        if !f(r) {
            return Ok(());
        }
        pos = end;
    }
    Ok(())
}

/// For produce on a compacted topic: the index (within the batch) of every record without a
/// key, in order; empty when every record has one. Inflates compressed batches. Kafka refuses
/// the batch with INVALID_RECORD and lists each of these indexes (KIP-467).
pub fn keyless_records(batch: &[u8]) -> Result<Vec<i32>, BatchError> {
    let (h, body) = records_section(batch)?;
    if h.is_control() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    let mut i = 0i32;
    decode_records(&body, h.records_count, &mut |r| {
        if r.key.is_none() {
            found.push(i);
        }
        i += 1;
        true
    })?;
    Ok(found)
}

#[cfg(test)]
pub(crate) mod test_encoder {
    //! A small test-only v2 batch encoder (uncompressed records, varints, CRC32C).

    pub struct Rec<'a> {
        pub ts: i64,
        pub key: Option<&'a [u8]>,
        pub value: Option<&'a [u8]>,
        pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
    }

    fn varlong(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if z < 0x80 {
                out.push(z as u8);
                return;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }

    fn bytes_field(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            None => varlong(out, -1),
            Some(b) => {
                varlong(out, b.len() as i64);
                out.extend_from_slice(b);
            }
        }
    }

    /// Encodes a batch with `base_offset` 0 and the given attributes (compression bits are
    /// only labels here: the records are written uncompressed).
    pub fn encode(records: &[Rec<'_>], attributes: i16, producer_id: i64) -> Vec<u8> {
        assert!(!records.is_empty());
        let base_ts = records[0].ts;
        let max_ts = records.iter().map(|r| r.ts).max().unwrap_or(base_ts);
        let mut body = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let mut rec = vec![0u8];
            varlong(&mut rec, r.ts - base_ts);
            varlong(&mut rec, i as i64);
            bytes_field(&mut rec, r.key);
            bytes_field(&mut rec, r.value);
            varlong(&mut rec, r.headers.len() as i64);
            for (k, v) in &r.headers {
                bytes_field(&mut rec, Some(k));
                bytes_field(&mut rec, *v);
            }
            varlong(&mut body, rec.len() as i64);
            body.extend_from_slice(&rec);
        }
        let mut b = Vec::with_capacity(61 + body.len());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&attributes.to_be_bytes());
        b.extend_from_slice(&((records.len() - 1) as i32).to_be_bytes());
        b.extend_from_slice(&base_ts.to_be_bytes());
        b.extend_from_slice(&max_ts.to_be_bytes());
        b.extend_from_slice(&producer_id.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(if producer_id >= 0 { 0i32 } else { -1 }).to_be_bytes());
        b.extend_from_slice(&(records.len() as i32).to_be_bytes());
        b.extend_from_slice(&body);
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Compresses a records section with Kafka codec `codec`; `xerial` frames snappy the way
    /// the Java client does.
    pub fn compress(codec: u8, body: &[u8], xerial: bool) -> Vec<u8> {
        use std::io::Write;
        match codec {
            1 => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(body).unwrap();
                e.finish().unwrap()
            }
            2 if xerial => {
                let mut out = vec![
                    0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
                ];
                for chunk in body.chunks(100) {
                    let c = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                    out.extend_from_slice(&(c.len() as u32).to_be_bytes());
                    out.extend_from_slice(&c);
                }
                out
            }
            2 => snap::raw::Encoder::new().compress_vec(body).unwrap(),
            3 => {
                let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
                e.write_all(body).unwrap();
                e.finish().unwrap()
            }
            4 => {
                ruzstd::encoding::compress_to_vec(body, ruzstd::encoding::CompressionLevel::Fastest)
            }
            _ => panic!("codec {codec}"),
        }
    }

    /// Like [`encode`], with the records section really compressed.
    pub fn encode_compressed(records: &[Rec<'_>], codec: u8, xerial: bool) -> Vec<u8> {
        let plain = encode(records, 0, -1);
        let body = compress(codec, &plain[61..], xerial);
        let mut b = plain[..61].to_vec();
        b[8..12].copy_from_slice(&((49 + body.len()) as i32).to_be_bytes());
        b[21..23].copy_from_slice(&i16::from(codec).to_be_bytes());
        b.extend_from_slice(&body);
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// `n` records with values of `value_len` bytes, timestamps `ts0, ts0+1, ...`.
    pub fn simple(n: usize, value_len: usize, ts0: i64) -> Vec<u8> {
        let val = vec![b'x'; value_len];
        let recs: Vec<Rec<'_>> = (0..n)
            .map(|i| Rec {
                ts: ts0 + i as i64,
                key: None,
                value: Some(&val),
                headers: vec![],
            })
            .collect();
        encode(&recs, 0, -1)
    }
}

#[cfg(test)]
mod tests {
    use super::test_encoder::*;
    use super::*;

    fn fix_crc(b: &mut [u8]) {
        let crc = compute_crc(b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn good_batch_parses() {
        let b = simple(3, 10, 1000);
        let hs = validate_batches(&b).unwrap();
        assert_eq!(hs.len(), 1);
        let h = hs[0];
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.base_timestamp, 1000);
        assert_eq!(h.max_timestamp, 1002);
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.compression(), 0);
        assert!(!h.is_transactional() && !h.is_control() && !h.is_log_append_time());
    }

    #[test]
    fn several_batches_back_to_back() {
        let mut buf = simple(1, 5, 1);
        buf.extend(simple(4, 5, 2));
        buf.extend(simple(2, 500, 3));
        let hs = validate_batches(&buf).unwrap();
        assert_eq!(
            hs.iter().map(|h| h.records_count).collect::<Vec<_>>(),
            [1, 4, 2]
        );
        let it: Vec<_> = BatchIter::new(&buf).map(|(p, _)| p).collect();
        assert_eq!(
            it,
            [0, hs[0].total_len(), hs[0].total_len() + hs[1].total_len()]
        );
    }

    #[test]
    fn each_corruption_is_refused() {
        let good = simple(3, 10, 1000);
        // Flipped byte in the records.
        let mut b = good.clone();
        let n = b.len();
        b[n - 2] ^= 0x40;
        assert!(matches!(
            validate_batches(&b),
            Err(BatchError::CrcMismatch { .. })
        ));
        // Flipped CRC byte.
        let mut b = good.clone();
        b[18] ^= 1;
        assert!(matches!(
            validate_batches(&b),
            Err(BatchError::CrcMismatch { .. })
        ));
        // Magic 0 and 1 are legacy; other values are garbage.
        for (m, legacy) in [(0i8, true), (1, true), (3, false), (-1, false)] {
            let mut b = good.clone();
            b[16] = m as u8;
            let e = validate_batches(&b).unwrap_err();
            if legacy {
                assert_eq!(e, BatchError::UnsupportedMagic(m));
            } else {
                assert_eq!(e, BatchError::BadMagic(m));
            }
        }
        // A short legacy message set is still reported as legacy.
        let mut legacy = vec![0u8; 30];
        legacy[16] = 1;
        assert_eq!(
            validate_batches(&legacy).unwrap_err(),
            BatchError::UnsupportedMagic(1)
        );
        // Length claims more than there is.
        let mut b = good.clone();
        b[8..12].copy_from_slice(&((n as i32) + 10).to_be_bytes());
        assert!(matches!(
            validate_batches(&b),
            Err(BatchError::Truncated { .. })
        ));
        // Length too small to hold a header.
        let mut b = good.clone();
        b[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(validate_batches(&b).unwrap_err(), BatchError::BadLength(10));
        // Negative length.
        let mut b = good.clone();
        b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(validate_batches(&b).unwrap_err(), BatchError::BadLength(-5));
        // Trailing garbage after a good batch.
        let mut b = good.clone();
        b.extend_from_slice(&[1, 2, 3]);
        assert!(matches!(
            validate_batches(&b),
            Err(BatchError::Truncated { .. })
        ));
        // Truncated at any point.
        for cut in [0usize, 1, 16, 17, 40, 60, 61, n - 1] {
            assert!(validate_batches(&good[..cut]).is_err(), "cut {cut}");
        }
        assert_eq!(validate_batches(&[]).unwrap_err(), BatchError::Empty);
    }

    #[test]
    fn record_count_checks() {
        let good = simple(3, 10, 1000);
        // Count disagrees with last offset delta (CRC recomputed so only the count is wrong).
        let mut b = good.clone();
        b[57..61].copy_from_slice(&4i32.to_be_bytes());
        fix_crc(&mut b);
        assert!(matches!(
            validate_batches(&b),
            Err(BatchError::BadRecordCount { .. })
        ));
        // Zero records.
        let mut b = good.clone();
        b[57..61].copy_from_slice(&0i32.to_be_bytes());
        b[23..27].copy_from_slice(&(-1i32).to_be_bytes());
        fix_crc(&mut b);
        assert!(matches!(
            validate_batches(&b),
            Err(BatchError::BadRecordCount { .. })
        ));
        // Absurd count, consistent with the delta: refused without allocating.
        let mut b = good.clone();
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        b[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        fix_crc(&mut b);
        assert!(matches!(
            validate_batches(&b),
            Err(BatchError::ImplausibleRecordCount { .. })
        ));
        // Same for a batch labelled as compressed.
        let mut b = good.clone();
        b[22] |= 4;
        b[57..61].copy_from_slice(&100_000i32.to_be_bytes());
        b[23..27].copy_from_slice(&99_999i32.to_be_bytes());
        fix_crc(&mut b);
        assert!(matches!(
            validate_batches(&b),
            Err(BatchError::ImplausibleRecordCount { .. })
        ));
    }

    #[test]
    fn rewrites_keep_crc_valid() {
        let mut b = simple(2, 3, 77);
        set_base_offset(&mut b, 123_456);
        set_partition_leader_epoch(&mut b, 9);
        let h = validate_batches(&b).unwrap()[0];
        assert_eq!(h.base_offset, 123_456);
        assert_eq!(h.last_offset(), 123_457);
        assert_eq!(h.partition_leader_epoch, 9);
        set_log_append_time(&mut b, 5_000);
        let h = validate_batches(&b).unwrap()[0];
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 5_000);
        let mut seen = vec![];
        record_timestamps(&b, &mut |o, t| {
            seen.push((o, t));
            true
        })
        .unwrap();
        assert_eq!(seen, [(123_456, 5_000), (123_457, 5_000)]);
    }

    #[test]
    fn record_timestamps_and_duplicate_headers() {
        let recs = [
            Rec {
                ts: 10,
                key: Some(b"k"),
                value: None,
                headers: vec![(b"h", Some(b"1")), (b"h", Some(b"2"))],
            },
            Rec {
                ts: 7,
                key: None,
                value: Some(b"v"),
                headers: vec![],
            },
            Rec {
                ts: 30,
                key: None,
                value: Some(&[0u8; 300]),
                headers: vec![(b"x", None)],
            },
        ];
        let b = encode(&recs, 0, -1);
        let h = validate_batches(&b).unwrap()[0];
        assert_eq!((h.base_timestamp, h.max_timestamp), (10, 30));
        let mut seen = vec![];
        record_timestamps(&b, &mut |o, t| {
            seen.push((o, t));
            true
        })
        .unwrap();
        assert_eq!(seen, [(0, 10), (1, 7), (2, 30)]);
    }

    #[test]
    fn compressed_records_decode_with_every_codec() {
        let big = vec![b'z'; 2_000];
        let recs: Vec<Rec<'_>> = (0..50)
            .map(|i| Rec {
                ts: 1_000 + (i * 7919) % 500,
                key: Some(b"key"),
                value: Some(&big[..(i as usize * 37) % 2_000]),
                headers: vec![(b"dup", Some(b"a")), (b"dup", Some(b"b"))],
            })
            .collect();
        let want: Vec<(i64, i64)> = recs
            .iter()
            .enumerate()
            .map(|(i, r)| (i as i64, r.ts))
            .collect();
        for (codec, xerial) in [(1, false), (2, false), (2, true), (3, false), (4, false)] {
            let b = encode_compressed(&recs, codec, xerial);
            let h = validate_batches(&b).unwrap()[0];
            assert_eq!(h.compression(), codec);
            let mut seen = vec![];
            record_timestamps(&b, &mut |o, t| {
                seen.push((o, t));
                true
            })
            .unwrap();
            assert_eq!(seen, want, "codec {codec} xerial {xerial}");
        }
    }

    #[test]
    fn decompression_is_bounded() {
        use crate::compression::decompress;
        let body = vec![0u8; 100_000];
        for codec in 1..=4u8 {
            let c = compress(codec, &body, false);
            assert_eq!(decompress(codec, &c, 100_000).unwrap().len(), 100_000);
            assert!(matches!(
                decompress(codec, &c, 99_999),
                Err(BatchError::Decompression(_))
            ));
            assert!(decompress(codec, &c[..c.len() / 2], 1 << 20).is_err() || codec == 2);
            assert!(decompress(codec, b"definitely not compressed", 1 << 20).is_err());
        }
        // A snappy block claiming 4 GiB is refused before allocating.
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(decompress(2, &bomb, 1 << 20).is_err());
        assert!(decompress(9, &bomb, 1 << 20).is_err());
    }

    #[test]
    fn iter_stops_at_partial_tail() {
        let mut buf = simple(1, 5, 1);
        let first = buf.len();
        buf.extend(simple(2, 5, 1));
        let full = buf.len();
        for cut in first..full {
            let v: Vec<_> = BatchIter::new(&buf[..cut]).collect();
            assert_eq!(v.len(), 1);
        }
        assert_eq!(BatchIter::new(&buf).count(), 2);
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                let _ = validate_batches(&bytes);
                let mut n = 0usize;
                let mut end = 0usize;
                for (pos, h) in BatchIter::new(&bytes) {
                    prop_assert!(pos >= end);
                    end = pos + h.total_len();
                    prop_assert!(end <= bytes.len());
                    n += 1;
                }
                prop_assert!(n <= bytes.len() / BATCH_HEADER_LEN);
                let _ = record_timestamps(&bytes, &mut |_, _| true);
            }

            #[test]
            fn mutated_valid_batch_never_panics(
                edits in proptest::collection::vec((0usize..2000, any::<u8>()), 1..6),
                n in 1usize..5,
                len in 0usize..100,
                recompute_crc in any::<bool>(),
            ) {
                let mut b = super::super::test_encoder::simple(n, len, 1);
                for (i, v) in edits {
                    let i = i % b.len();
                    b[i] = v;
                }
                // With a recomputed CRC the deeper checks (lengths, counts, records) run too.
                if recompute_crc {
                    let crc = compute_crc(&b);
                    b[17..21].copy_from_slice(&crc.to_be_bytes());
                }
                if let Ok(hs) = validate_batches(&b) {
                    for h in hs { prop_assert!(h.records_count >= 1); }
                }
                let _ = record_timestamps(&b, &mut |_, _| true);
            }
        }
    }
}
