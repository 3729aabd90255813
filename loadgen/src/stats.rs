//! Small measurement helpers.

/// The q-quantile (0..=1) of sorted samples by the nearest-rank method.
pub fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Megabytes (10^6 bytes) per second.
pub fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    bytes as f64 / 1e6 / secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), Some(500));
        assert_eq!(quantile(&v, 0.99), Some(990));
        assert_eq!(quantile(&v, 0.999), Some(999));
        assert_eq!(quantile(&v, 1.0), Some(1000));
        assert_eq!(quantile(&[42], 0.999), Some(42));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn throughput() {
        assert_eq!(mb_per_s(2_000_000, 2.0), 1.0);
        assert_eq!(mb_per_s(5, 0.0), 0.0);
    }
}
