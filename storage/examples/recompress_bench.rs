//! What broker-side recompression (topic `compression.type` other than `producer`) costs: for
//! each producer codec → topic codec pair, rebuilds the same batch repeatedly on one thread and
//! prints MB/s of record data and CPU-seconds per GB (one core's time, as the broker spends it
//! on the produce path). Prints figures only; asserts nothing.
//!
//! Batch: 256 records of about 1 KiB of JSON-like text (compressible, like typical event data),
//! keys and two headers each, the shape librdkafka sends with default settings under load.
//!
//! `cargo run --release -p rivulet-storage --example recompress_bench`

use std::time::{Duration, Instant};

use rivulet_storage::recompress::recompress_batch;

const CODECS: [(&str, u8); 5] = [
    ("none", 0),
    ("gzip", 1),
    ("snappy", 2),
    ("lz4", 3),
    ("zstd", 4),
];

fn varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    varint(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// An uncompressed v2 batch (CRC is not needed: recompression does not check it).
fn plain_batch(n: usize) -> (Vec<u8>, usize) {
    let mut body = Vec::new();
    let mut payload = 0;
    for i in 0..n {
        let value = format!(
            "{{\"event\":\"page_view\",\"user\":\"user-{}\",\"session\":\"{:016x}\",\"path\":\"/products/{}/reviews?page={}\",\"ua\":\"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\",\"ts\":{},\"pad\":\"{}\"}}",
            i * 7919 % 10_000,
            (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            i % 500,
            i % 7,
            1_700_000_000_000u64 + i as u64,
            "lorem ipsum dolor sit amet ".repeat(26)
        );
        let key = format!("user-{}", i * 7919 % 10_000);
        let mut rec = vec![0u8];
        varint(&mut rec, i as i64);
        varint(&mut rec, i as i64);
        bytes(&mut rec, key.as_bytes());
        bytes(&mut rec, value.as_bytes());
        varint(&mut rec, 2);
        bytes(&mut rec, b"trace-id");
        bytes(&mut rec, format!("{:032x}", i).as_bytes());
        bytes(&mut rec, b"source");
        bytes(&mut rec, b"web");
        payload += key.len() + value.len();
        varint(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&((n - 1) as i32).to_be_bytes());
    b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    b.extend_from_slice(&(1_700_000_000_000i64 + n as i64).to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&(n as i32).to_be_bytes());
    b.extend_from_slice(&body);
    (b, payload)
}

fn main() {
    let (plain, payload) = plain_batch(256);
    let sources: Vec<(&str, Vec<u8>)> = CODECS
        .iter()
        .map(|&(name, c)| (name, recompress_batch(&plain, c).expect("encode source")))
        .collect();
    println!(
        "batch: 256 records, {} B of keys+values, {} B as a v2 batch; sizes by codec: {}",
        payload,
        plain.len(),
        sources
            .iter()
            .map(|(n, b)| format!("{n} {}", b.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:<8} {:<8} {:>10} {:>16}",
        "from", "to", "MB/s", "CPU-s per GB"
    );
    for (from, src) in &sources {
        for &(to, codec) in &CODECS {
            if *from == to {
                continue;
            }
            // Warm up, then run for about 0.4 s.
            let _ = recompress_batch(src, codec);
            let start = Instant::now();
            let mut rounds = 0u64;
            while start.elapsed() < Duration::from_millis(400) {
                std::hint::black_box(
                    recompress_batch(std::hint::black_box(src), codec).expect("recompress"),
                );
                rounds += 1;
            }
            let secs = start.elapsed().as_secs_f64();
            let gb = (rounds as f64) * (plain.len() as f64) / 1e9;
            println!(
                "{:<8} {:<8} {:>10.0} {:>16.2}",
                from,
                to,
                gb * 1e3 / secs,
                secs / gb
            );
        }
    }
}
