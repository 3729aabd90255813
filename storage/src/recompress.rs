//! Broker-side recompression for a topic whose `compression.type` names a codec (Kafka's
//! LogValidator, the path that cannot assign offsets in place): a produced batch whose codec
//! differs from the topic's is decoded and rebuilt with the topic's codec.
//!
//! What the rebuilt batch keeps and changes, as Kafka's `MemoryRecordsBuilder` does:
//! - kept: producer id, epoch and base sequence, the transactional flag, every record's key,
//!   value, headers (byte for byte, duplicate keys included) and timestamp;
//! - rebuilt: offset deltas become 0..n-1, `baseTimestamp` is the first record's timestamp and
//!   `maxTimestamp` the largest, record attributes are 0, the CRC is recomputed; the base
//!   offset, leader epoch and LogAppendTime are set by the log's append as for any batch.
//!
//! Only magic v2 reaches here (the produce path refuses older formats), and control batches
//! are refused from clients before this step.

use crate::batch::{
    decode_records, read_varlong, records_section, write_varlong, BatchError, BatchHeader,
    BatchIter, ATTR_TRANSACTIONAL, BATCH_HEADER_LEN, LOG_OVERHEAD,
};
use crate::compression;

/// Whether any batch must be rebuilt to be stored with `target` (`None`: the producer's codec).
pub fn needs_recompression(headers: &[BatchHeader], target: Option<u8>) -> bool {
    match target {
        None => false,
        Some(codec) => headers.iter().any(|h| h.compression() != codec),
    }
}

/// Rebuilds every batch of a validated produce payload whose codec is not `codec`; batches
/// already in `codec` are copied unchanged.
pub fn recompress_batches(buf: &[u8], codec: u8) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::with_capacity(buf.len());
    let mut it = BatchIter::new(buf);
    for (pos, h) in it.by_ref() {
        let batch = &buf[pos..pos + h.total_len()];
        if h.compression() == codec {
            out.extend_from_slice(batch);
        } else {
            out.extend_from_slice(&recompress_batch(batch, codec)?);
        }
    }
    if it.position() != buf.len() {
        return Err(BatchError::Truncated {
            needed: buf.len(),
            available: it.position(),
        });
    }
    Ok(out)
}

/// Rebuilds one whole v2 batch with records section compressed by `codec` (0 = none).
pub fn recompress_batch(batch: &[u8], codec: u8) -> Result<Vec<u8>, BatchError> {
    let (h, body) = records_section(batch)?;
    // Records with their absolute timestamps and the bytes after the offset delta (key,
    // value, headers), checked to be well formed and to fill the section exactly.
    let mut recs: Vec<(i64, &[u8])> = Vec::with_capacity(h.records_count.max(0) as usize);
    let mut consumed = 0usize;
    let mut bad: Option<BatchError> = None;
    decode_records(&body, h.records_count, &mut |r| {
        consumed += r.encoded.len();
        match record_tail(r.after_timestamp) {
            Ok(tail) => {
                recs.push((h.base_timestamp.wrapping_add(r.timestamp_delta), tail));
                true
            }
            Err(e) => {
                bad = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = bad {
        return Err(e);
    }
    if recs.len() != h.records_count.max(0) as usize {
        return Err(BatchError::BadRecord(
            "fewer records than the batch declares",
        ));
    }
    if consumed != body.len() {
        return Err(BatchError::BadRecord("bytes left after the last record"));
    }
    let Some(&(base_ts, _)) = recs.first() else {
        return Err(BatchError::BadRecord("batch without records"));
    };
    let max_ts = recs.iter().map(|&(t, _)| t).max().unwrap_or(base_ts);

    let mut plain = Vec::with_capacity(body.len());
    let mut prefix = Vec::with_capacity(24);
    for (i, &(ts, tail)) in recs.iter().enumerate() {
        prefix.clear();
        prefix.push(0); // record attributes: unused in v2, written as 0
        write_varlong(&mut prefix, ts.wrapping_sub(base_ts));
        write_varlong(&mut prefix, i as i64);
        write_varlong(&mut plain, (prefix.len() + tail.len()) as i64);
        plain.extend_from_slice(&prefix);
        plain.extend_from_slice(tail);
    }
    let section = if codec == 0 {
        plain
    } else {
        // Snappy in xerial framing, as Kafka's broker writes it (every client reads it).
        compression::compress(codec, &plain, codec == 2)?
    };

    let batch_length = BATCH_HEADER_LEN - LOG_OVERHEAD + section.len();
    let batch_length = i32::try_from(batch_length)
        .map_err(|_| BatchError::Decompression("recompressed batch exceeds 2 GiB".into()))?;
    let attributes = i16::from(codec) | (h.attributes & ATTR_TRANSACTIONAL);
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + section.len());
    out.extend_from_slice(&h.base_offset.to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    out.push(2);
    out.extend_from_slice(&[0; 4]); // CRC, filled in below
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&(recs.len() as i32 - 1).to_be_bytes());
    out.extend_from_slice(&base_ts.to_be_bytes());
    out.extend_from_slice(&max_ts.to_be_bytes());
    out.extend_from_slice(&h.producer_id.to_be_bytes());
    out.extend_from_slice(&h.producer_epoch.to_be_bytes());
    out.extend_from_slice(&h.base_sequence.to_be_bytes());
    out.extend_from_slice(&(recs.len() as i32).to_be_bytes());
    out.extend_from_slice(&section);
    let crc = crate::batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// The encoded record after its timestamp delta is: offset delta, key, value, header count,
/// headers. Returns the part after the offset delta once every field has parsed and the
/// headers end exactly where the record does (Kafka's reader refuses anything else).
fn record_tail(after_timestamp: &[u8]) -> Result<&[u8], BatchError> {
    let mut p = 0usize;
    read_varlong(after_timestamp, &mut p).ok_or(BatchError::BadRecord("offset delta"))?;
    let start = p;
    skip_bytes(after_timestamp, &mut p, true, "key")?;
    skip_bytes(after_timestamp, &mut p, true, "value")?;
    let count =
        read_varlong(after_timestamp, &mut p).ok_or(BatchError::BadRecord("header count"))?;
    if count < 0 {
        return Err(BatchError::BadRecord("header count"));
    }
    for _ in 0..count {
        skip_bytes(after_timestamp, &mut p, false, "header key")?;
        skip_bytes(after_timestamp, &mut p, true, "header value")?;
    }
    if p != after_timestamp.len() {
        return Err(BatchError::BadRecord(
            "record length disagrees with its fields",
        ));
    }
    Ok(&after_timestamp[start..])
}

fn skip_bytes(
    buf: &[u8],
    p: &mut usize,
    nullable: bool,
    what: &'static str,
) -> Result<(), BatchError> {
    let len = read_varlong(buf, p).ok_or(BatchError::BadRecord(what))?;
    if len < 0 {
        return if nullable && len == -1 {
            Ok(())
        } else {
            Err(BatchError::BadRecord(what))
        };
    }
    let end = p
        .checked_add(len as usize)
        .filter(|&e| e <= buf.len())
        .ok_or(BatchError::BadRecord(what))?;
    *p = end;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::test_encoder::{encode, encode_compressed, Rec};
    use crate::batch::validate_batches;
    use proptest::prelude::*;

    /// A record decoded back to owned fields: (timestamp, offset, key, value, raw header bytes).
    type Decoded = (i64, i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<u8>);
    /// A record to encode: (timestamp, key, value, headers).
    type Owned = (
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(Vec<u8>, Option<Vec<u8>>)>,
    );

    fn decode_all(batch: &[u8]) -> (BatchHeader, Vec<Decoded>) {
        let (h, body) = records_section(batch).unwrap();
        let mut out = vec![];
        decode_records(&body, h.records_count, &mut |r| {
            let tail = record_tail(r.after_timestamp).unwrap();
            // Headers: what follows key and value in the tail.
            let mut p = 0;
            skip_bytes(tail, &mut p, true, "k").unwrap();
            skip_bytes(tail, &mut p, true, "v").unwrap();
            out.push((
                h.base_timestamp + r.timestamp_delta,
                h.base_offset + r.offset_delta,
                r.key.map(<[u8]>::to_vec),
                r.value.map(<[u8]>::to_vec),
                tail[p..].to_vec(),
            ));
            true
        })
        .unwrap();
        (h, out)
    }

    fn sample() -> Vec<Owned> {
        (0..40)
            .map(|i: i64| {
                (
                    1_700_000_000_000 + ((i + 1) * 7_919) % 1_000 - 500,
                    (i % 5 != 0).then(|| format!("key-{i}").into_bytes()),
                    (i % 7 != 3).then(|| vec![b'v'; (i as usize * 31) % 700]),
                    vec![
                        (b"dup".to_vec(), Some(b"one".to_vec())),
                        (b"dup".to_vec(), Some(b"two".to_vec())),
                        (b"nul".to_vec(), None),
                    ],
                )
            })
            .collect()
    }

    fn to_recs(owned: &[Owned]) -> Vec<Rec<'_>> {
        owned
            .iter()
            .map(|(ts, k, v, hs)| Rec {
                ts: *ts,
                key: k.as_deref(),
                value: v.as_deref(),
                headers: hs.iter().map(|(k, v)| (&k[..], v.as_deref())).collect(),
            })
            .collect()
    }

    #[test]
    fn every_codec_pair_round_trips_records_and_producer_fields() {
        let owned = sample();
        let recs = to_recs(&owned);
        let sources: Vec<(u8, Vec<u8>)> = [
            (0u8, false),
            (1, false),
            (2, false),
            (2, true),
            (3, false),
            (4, false),
        ]
        .iter()
        .map(|&(c, x)| {
            let mut b = if c == 0 {
                encode(&recs, 0, 77)
            } else {
                encode_compressed(&recs, c, x)
            };
            // A transactional-looking idempotent batch: producer fields must survive.
            b[43..51].copy_from_slice(&77i64.to_be_bytes());
            b[51..53].copy_from_slice(&3i16.to_be_bytes());
            b[53..57].copy_from_slice(&1_000i32.to_be_bytes());
            let crc = crate::batch::compute_crc(&b);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            (c, b)
        })
        .collect();
        let (_, want) = decode_all(&sources[0].1);
        for (from, src) in &sources {
            for to in 0..=4u8 {
                let out = recompress_batch(src, to).unwrap();
                let h = validate_batches(&out).unwrap()[0];
                assert_eq!(h.compression(), to, "{from}->{to}");
                assert_eq!(
                    (h.producer_id, h.producer_epoch, h.base_sequence),
                    (77, 3, 1_000)
                );
                assert_eq!((h.records_count, h.last_offset_delta), (40, 39));
                let min = owned.iter().map(|r| r.0).min().unwrap();
                let max = owned.iter().map(|r| r.0).max().unwrap();
                assert_eq!(h.base_timestamp, owned[0].0);
                assert_eq!(h.max_timestamp, max);
                assert!(
                    min < h.base_timestamp,
                    "timestamps before the first one survive"
                );
                let (_, got) = decode_all(&out);
                assert_eq!(got, want, "{from}->{to}");
            }
        }
    }

    #[test]
    fn transactional_flag_is_kept_and_offsets_are_renumbered() {
        let owned = sample();
        let recs = to_recs(&owned);
        let mut b = encode(&recs, 0x10, 5);
        // Garbage inner offset deltas (all zero): the rebuilt batch numbers them 0..n-1.
        let (h, body) = records_section(&b).unwrap();
        assert!(h.is_transactional());
        let mut zeroed = Vec::new();
        decode_records(&body, h.records_count, &mut |r| {
            let mut rec = vec![r.attributes];
            write_varlong(&mut rec, r.timestamp_delta);
            write_varlong(&mut rec, 0);
            rec.extend_from_slice(record_tail(r.after_timestamp).unwrap());
            write_varlong(&mut zeroed, rec.len() as i64);
            zeroed.extend_from_slice(&rec);
            true
        })
        .unwrap();
        b.truncate(BATCH_HEADER_LEN);
        b.extend_from_slice(&zeroed);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let crc = crate::batch::compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let out = recompress_batch(&b, 1).unwrap();
        let h = validate_batches(&out).unwrap()[0];
        assert!(h.is_transactional() && !h.is_control() && !h.is_log_append_time());
        let (_, got) = decode_all(&out);
        assert_eq!(
            got.iter().map(|r| r.1).collect::<Vec<_>>(),
            (0..40).collect::<Vec<_>>()
        );
    }

    #[test]
    fn batches_in_the_target_codec_are_copied_and_others_rebuilt() {
        let owned = sample();
        let recs = to_recs(&owned);
        let gz = encode_compressed(&recs, 1, false);
        let plain = encode(&recs, 0, -1);
        let mut buf = gz.clone();
        buf.extend_from_slice(&plain);
        let hs = validate_batches(&buf).unwrap();
        assert!(!needs_recompression(&hs, None));
        assert!(needs_recompression(&hs, Some(1)));
        assert!(needs_recompression(&hs[..1], Some(0)));
        assert!(!needs_recompression(&hs[..1], Some(1)));
        let out = recompress_batches(&buf, 1).unwrap();
        assert_eq!(
            &out[..gz.len()],
            &gz[..],
            "the gzip batch is kept byte for byte"
        );
        let hs = validate_batches(&out).unwrap();
        assert_eq!(
            hs.iter().map(|h| h.compression()).collect::<Vec<_>>(),
            [1, 1]
        );
        assert_eq!(decode_all(&out[gz.len()..]).1, decode_all(&plain).1);
    }

    #[test]
    fn malformed_records_are_refused() {
        let recs = [Rec {
            ts: 5,
            key: Some(b"k"),
            value: Some(b"v"),
            headers: vec![],
        }];
        let good = encode(&recs, 0, -1);
        assert!(recompress_batch(&good, 1).is_ok());
        // Bytes after the last record.
        let mut b = good.clone();
        b.extend_from_slice(&[0, 0]);
        let l = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&l.to_be_bytes());
        assert!(matches!(
            recompress_batch(&b, 1),
            Err(BatchError::BadRecord(_))
        ));
        // The record's last byte is its header count (0): claim one header that is not there.
        let mut b = good.clone();
        let n = b.len();
        b[n - 1] = 2; // zigzag 1
        assert!(matches!(
            recompress_batch(&b, 1),
            Err(BatchError::BadRecord(_))
        ));
        // A negative header count.
        b[n - 1] = 1; // zigzag -1
        assert!(matches!(
            recompress_batch(&b, 0),
            Err(BatchError::BadRecord(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn recompression_round_trips_arbitrary_records(
            records in proptest::collection::vec(
                (
                    -1_000_000i64..1_000_000,
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
                    proptest::collection::vec(
                        (proptest::sample::select(vec![b"a".to_vec(), b"b".to_vec(), vec![]]),
                         proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20))),
                        0..4),
                ),
                1..30),
            from in 0u8..=4,
            to in 0u8..=4,
        ) {
            let owned: Vec<_> = records
                .into_iter()
                .map(|(t, k, v, h)| (1_600_000_000_000 + t, k, v, h))
                .collect();
            let recs = to_recs(&owned);
            let src = if from == 0 { encode(&recs, 0, -1) } else { encode_compressed(&recs, from, false) };
            let out = recompress_batch(&src, to).unwrap();
            let h = validate_batches(&out).unwrap()[0];
            prop_assert_eq!(h.compression(), to);
            prop_assert_eq!(h.max_timestamp, owned.iter().map(|r| r.0).max().unwrap());
            prop_assert_eq!(decode_all(&out).1, decode_all(&src).1);
            // And back again.
            let back = recompress_batch(&out, from).unwrap();
            prop_assert_eq!(decode_all(&back).1, decode_all(&src).1);
        }
    }
}
