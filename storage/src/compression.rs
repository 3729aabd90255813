//! Decompression and compression of a batch's records section. Used only where a feature needs
//! records: timestamp lookups, the keyless-record check on compacted topics, compaction, and a
//! topic `compression.type` that differs from the producer's codec; otherwise produce and fetch
//! keep compressed batches opaque.

use std::io::Read;

use crate::batch::BatchError;

/// Refuse to inflate a batch's records beyond this (a compressed batch is at most
/// `max.message.bytes`; this bounds what a hostile ratio can make us allocate).
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];

/// Inflates `data` compressed with Kafka codec `codec` (1 gzip, 2 snappy raw or xerial-framed,
/// 3 lz4 frame, 4 zstd), refusing output larger than `limit`.
pub fn decompress(codec: u8, data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    match codec {
        1 => read_limited(
            flate2::read::MultiGzDecoder::new(data),
            limit,
            &mut out,
            "gzip",
        )?,
        2 => snappy(data, limit, &mut out)?,
        3 => read_limited(
            lz4_flex::frame::FrameDecoder::new(data),
            limit,
            &mut out,
            "lz4",
        )?,
        4 => {
            let dec = ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|e| BatchError::Decompression(format!("zstd: {e}")))?;
            read_limited(dec, limit, &mut out, "zstd")?
        }
        other => {
            return Err(BatchError::Decompression(format!(
                "unknown compression codec {other}"
            )))
        }
    }
    Ok(out)
}

fn read_limited(
    r: impl Read,
    limit: usize,
    out: &mut Vec<u8>,
    codec: &str,
) -> Result<(), BatchError> {
    r.take(limit as u64 + 1)
        .read_to_end(out)
        .map_err(|e| BatchError::Decompression(format!("{codec}: {e}")))?;
    if out.len() > limit {
        return Err(BatchError::Decompression(format!(
            "{codec}: records inflate beyond {limit} bytes"
        )));
    }
    Ok(())
}

/// Raw snappy (librdkafka) or the xerial framing the Java client writes.
fn snappy(data: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    if data.len() >= 16 && data[..8] == XERIAL_MAGIC {
        let mut rest = &data[16..];
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(BatchError::Decompression(
                    "snappy: torn block header".into(),
                ));
            }
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let block = rest
                .get(4..4 + len)
                .ok_or_else(|| BatchError::Decompression("snappy: torn block".into()))?;
            snappy_raw(block, limit.saturating_sub(out.len()), out)?;
            rest = &rest[4 + len..];
        }
        Ok(())
    } else {
        snappy_raw(data, limit, out)
    }
}

fn snappy_raw(block: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let err = |e: snap::Error| BatchError::Decompression(format!("snappy: {e}"));
    // The claimed length is checked before anything is allocated by it.
    let len = snap::raw::decompress_len(block).map_err(err)?;
    if len > limit {
        return Err(BatchError::Decompression(format!(
            "snappy: records inflate beyond {limit} bytes"
        )));
    }
    let start = out.len();
    out.resize(start + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(err)?;
    out.truncate(start + n);
    Ok(())
}

/// Whether a snappy records section uses the xerial framing (the Java client's), so that a
/// rewrite can keep the framing the producer chose.
pub fn is_xerial_snappy(data: &[u8]) -> bool {
    data.len() >= 16 && data[..8] == XERIAL_MAGIC
}

/// Compresses a records section with Kafka codec `codec` (the log cleaner re-encodes batches
/// with the codec they arrived in; a topic `compression.type` recompresses produced batches).
/// `xerial` frames snappy output the way the Java client and Kafka's broker do.
pub fn compress(codec: u8, data: &[u8], xerial: bool) -> Result<Vec<u8>, BatchError> {
    use std::io::Write;
    let err =
        |c: &str, e: &dyn std::fmt::Display| BatchError::Decompression(format!("{c} encode: {e}"));
    match codec {
        0 => Ok(data.to_vec()),
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).map_err(|x| err("gzip", &x))?;
            e.finish().map_err(|x| err("gzip", &x))
        }
        2 if xerial => {
            // Header: magic, version 1, compatible version 1; then length-prefixed blocks.
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(&1u32.to_be_bytes());
            for chunk in data.chunks(32 * 1024) {
                let c = snap::raw::Encoder::new()
                    .compress_vec(chunk)
                    .map_err(|x| err("snappy", &x))?;
                out.extend_from_slice(&(c.len() as u32).to_be_bytes());
                out.extend_from_slice(&c);
            }
            Ok(out)
        }
        2 => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(|x| err("snappy", &x)),
        3 => {
            // Kafka's Lz4BlockOutputStream frame: independent 64 KiB blocks, no block or
            // content checksums, no content size (what its reader and every client expect).
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent)
                .block_checksums(false)
                .content_checksum(false);
            let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            e.write_all(data).map_err(|x| err("lz4", &x))?;
            e.finish().map_err(|x| err("lz4", &x))
        }
        4 => Ok(ruzstd::encoding::compress_to_vec(
            data,
            ruzstd::encoding::CompressionLevel::Fastest,
        )),
        other => Err(BatchError::Decompression(format!(
            "unknown compression codec {other}"
        ))),
    }
}
