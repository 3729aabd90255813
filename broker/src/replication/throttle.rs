//! Kafka's replication throttle (KIP-73): the brokers' dynamic configs
//! `leader.replication.throttled.rate` / `follower.replication.throttled.rate` (bytes/s) cap the
//! replication traffic of the replicas that the topics' configs
//! `leader.replication.throttled.replicas` / `follower.replication.throttled.replicas` name
//! (`partition:broker,...`, or `*` for every replica of the topic).
//!
//! Leader side: bytes this broker serves to fetches of out-of-sync followers of a partition
//! throttled here are recorded; while their rate over the quota window is above the limit, such
//! fetches get no data. Follower side: bytes this broker fetches for a partition throttled here
//! while it is out of the ISR are recorded; while the rate is above the limit, those partitions
//! are left out of its fetches. In-sync replicas are never held back, so a move does not slow the
//! producers' acks=all path.
//!
//! The rate is Kafka's `Rate` over sampled windows (`replication.quota.window.num` samples of
//! `replication.quota.window.size.seconds`): bytes in the live samples divided by the time they
//! span, counted as at least all but one whole window.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// The throttled replicas of a topic, as its config lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThrottledReplicas {
    /// `*`: every replica of every partition.
    All,
    /// `(partition, broker)` pairs.
    Some(Vec<(i32, i32)>),
}

impl ThrottledReplicas {
    pub fn contains(&self, partition: i32, broker: i32) -> bool {
        match self {
            ThrottledReplicas::All => true,
            ThrottledReplicas::Some(v) => v.contains(&(partition, broker)),
        }
    }
}

/// Parses `*`, the empty string, or `partition:broker` items separated by commas.
pub fn parse_replicas(value: &str) -> Result<ThrottledReplicas, String> {
    let v = value.trim();
    if v == "*" {
        return Ok(ThrottledReplicas::All);
    }
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let parsed = item.split_once(':').and_then(|(p, b)| {
            let p = p.trim().parse::<i32>().ok().filter(|p| *p >= 0)?;
            let b = b.trim().parse::<i32>().ok().filter(|b| *b >= 0)?;
            Some((p, b))
        });
        match parsed {
            Some(pair) => out.push(pair),
            None => {
                return Err(format!(
                    "'{item}' is not partition:broker (whole numbers ≥ 0); the list is \
                     partition:broker items separated by commas, or *"
                ))
            }
        }
    }
    Ok(ThrottledReplicas::Some(out))
}

/// Is `broker`'s replica of `partition` throttled by the topic config `key` in `configs`?
pub fn is_throttled(
    configs: &BTreeMap<String, String>,
    key: &str,
    partition: i32,
    broker: i32,
) -> bool {
    configs
        .get(key)
        .and_then(|v| parse_replicas(v).ok())
        .map(|r| r.contains(partition, broker))
        .unwrap_or(false)
}

/// Validates a rate value (bytes/s, a whole number ≥ 0).
pub fn validate_rate(value: &str) -> Result<(), String> {
    match value.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(()),
        Ok(n) => Err(format!("{n} is below the minimum 0")),
        Err(_) => Err(format!(
            "'{value}' is not a whole number of bytes per second"
        )),
    }
}

/// The effective rate limit of `key` for broker `id`: its own dynamic config, else the
/// cluster-wide dynamic default, else unlimited (`None`).
pub fn rate_limit(
    per_broker: Option<&BTreeMap<String, String>>,
    default: &BTreeMap<String, String>,
    key: &str,
) -> Option<u64> {
    per_broker
        .and_then(|m| m.get(key))
        .or_else(|| default.get(key))
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Kafka's sampled `Rate`: `samples` windows of `window_ms`, pure over a caller-given clock.
#[derive(Debug, Clone)]
pub struct RateWindow {
    window_ms: u64,
    samples: usize,
    /// (window start, bytes), oldest first.
    buckets: VecDeque<(u64, u64)>,
}

impl RateWindow {
    pub fn new(samples: usize, window_ms: u64) -> Self {
        Self {
            window_ms: window_ms.max(1),
            samples: samples.max(2),
            buckets: VecDeque::new(),
        }
    }

    fn purge(&mut self, now_ms: u64) {
        let span = self.window_ms * self.samples as u64;
        while let Some((start, _)) = self.buckets.front() {
            if start + span <= now_ms {
                self.buckets.pop_front();
            } else {
                break;
            }
        }
    }

    pub fn record(&mut self, now_ms: u64, bytes: u64) {
        self.purge(now_ms);
        match self.buckets.back_mut() {
            Some((start, b)) if now_ms < *start + self.window_ms => *b += bytes,
            _ => self.buckets.push_back((now_ms, bytes)),
        }
    }

    /// Bytes per second over the live samples.
    pub fn rate(&mut self, now_ms: u64) -> f64 {
        self.purge(now_ms);
        let Some((oldest, _)) = self.buckets.front() else {
            return 0.0;
        };
        let total: u64 = self.buckets.iter().map(|(_, b)| b).sum();
        let min_elapsed = self.window_ms * (self.samples as u64 - 1);
        let elapsed = now_ms.saturating_sub(*oldest).max(min_elapsed).max(1);
        total as f64 * 1000.0 / elapsed as f64
    }

    /// Is the rate above `limit` bytes/s?
    pub fn exceeds(&mut self, now_ms: u64, limit: u64) -> bool {
        self.rate(now_ms) > limit as f64
    }
}

/// One direction's quota (leader or follower side) of this broker.
#[derive(Debug)]
pub struct ReplicationQuota {
    window: Mutex<RateWindow>,
}

impl ReplicationQuota {
    pub fn new(samples: usize, window_ms: u64) -> Self {
        Self {
            window: Mutex::new(RateWindow::new(samples, window_ms)),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut RateWindow) -> R) -> R {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut w)
    }

    pub fn record(&self, now_ms: u64, bytes: u64) {
        if bytes > 0 {
            self.with(|w| w.record(now_ms, bytes));
        }
    }

    /// Over `limit` (None = unlimited, never over).
    pub fn exceeded(&self, now_ms: u64, limit: Option<u64>) -> bool {
        match limit {
            None => false,
            Some(l) => self.with(|w| w.exceeds(now_ms, l)),
        }
    }

    pub fn rate(&self, now_ms: u64) -> f64 {
        self.with(|w| w.rate(now_ms))
    }
}

/// This broker's two quotas.
#[derive(Debug)]
pub struct Quotas {
    pub leader: ReplicationQuota,
    pub follower: ReplicationQuota,
}

impl Quotas {
    pub fn new(samples: usize, window_ms: u64) -> Self {
        Self {
            leader: ReplicationQuota::new(samples, window_ms),
            follower: ReplicationQuota::new(samples, window_ms),
        }
    }
}

pub fn now_ms() -> u64 {
    crate::now_ms().max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replica_lists_parse_and_match() {
        let table: &[(&str, Option<ThrottledReplicas>)] = &[
            ("*", Some(ThrottledReplicas::All)),
            (" * ", Some(ThrottledReplicas::All)),
            ("", Some(ThrottledReplicas::Some(vec![]))),
            ("0:1", Some(ThrottledReplicas::Some(vec![(0, 1)]))),
            (
                "0:1, 3:2",
                Some(ThrottledReplicas::Some(vec![(0, 1), (3, 2)])),
            ),
            ("0", None),
            ("a:1", None),
            ("0:-1", None),
            ("0:1,*", None),
            ("0:1:2", None),
        ];
        for (input, want) in table {
            assert_eq!(parse_replicas(input).ok(), *want, "{input:?}");
        }
        let cfg: BTreeMap<String, String> = [
            (LEADER_REPLICAS.to_string(), "0:1,2:3".to_string()),
            (FOLLOWER_REPLICAS.to_string(), "*".to_string()),
        ]
        .into();
        assert!(is_throttled(&cfg, LEADER_REPLICAS, 0, 1));
        assert!(!is_throttled(&cfg, LEADER_REPLICAS, 0, 3));
        assert!(is_throttled(&cfg, FOLLOWER_REPLICAS, 9, 9));
        assert!(!is_throttled(&BTreeMap::new(), FOLLOWER_REPLICAS, 0, 0));
    }

    #[test]
    fn rate_limit_prefers_the_broker_then_the_default() {
        let mine: BTreeMap<String, String> = [(LEADER_RATE.to_string(), "100".to_string())].into();
        let dflt: BTreeMap<String, String> = [
            (LEADER_RATE.to_string(), "5".to_string()),
            (FOLLOWER_RATE.to_string(), "7".to_string()),
        ]
        .into();
        assert_eq!(rate_limit(Some(&mine), &dflt, LEADER_RATE), Some(100));
        assert_eq!(rate_limit(Some(&mine), &dflt, FOLLOWER_RATE), Some(7));
        assert_eq!(rate_limit(None, &BTreeMap::new(), LEADER_RATE), None);
        assert!(validate_rate("0").is_ok());
        assert!(validate_rate("-1").unwrap_err().contains("minimum"));
        assert!(validate_rate("fast").unwrap_err().contains("whole number"));
    }

    #[test]
    fn the_rate_counts_at_least_all_but_one_window() {
        // 11 samples of 1 s: a first burst is spread over 10 s, as in Kafka.
        let mut w = RateWindow::new(11, 1000);
        w.record(0, 10_000);
        assert_eq!(w.rate(0), 1000.0);
        assert!(!w.exceeds(0, 1000));
        assert!(w.exceeds(0, 999));
        // After 20 s the samples are gone.
        assert_eq!(w.rate(20_000), 0.0);
    }

    #[test]
    fn samples_expire_after_the_whole_window() {
        let mut w = RateWindow::new(2, 1000);
        w.record(0, 1000);
        w.record(500, 1000); // same sample
        w.record(1000, 1000); // a second sample
        assert_eq!(w.rate(1500), 3000.0 * 1000.0 / 1500.0);
        // At 2000 the first sample (started at 0) has expired.
        assert_eq!(w.rate(2000), 1000.0);
    }

    proptest! {
        /// A sender that sends only while the quota is not exceeded averages at most the limit
        /// plus one chunk per span, over any long run.
        #[test]
        fn a_throttled_sender_keeps_to_the_rate(
            limit in 1_000u64..1_000_000,
            chunk in 100u64..100_000,
            step in 1u64..200,
        ) {
            let mut w = RateWindow::new(11, 1000);
            let mut sent = 0u64;
            let end = 60_000u64;
            let mut t = 0;
            while t < end {
                if !w.exceeds(t, limit) {
                    w.record(t, chunk);
                    sent += chunk;
                }
                t += step;
            }
            // Kafka's window lets up to (samples-1) windows' worth through first, then the rate.
            // A send is allowed while the rate is at or below the limit, so each whole window
            // span (11 s) may overshoot by one chunk.
            let spans = (end / 11_000 + 2) as f64;
            let bound = limit as f64 * (end as f64 / 1000.0 + 10.0) + spans * chunk as f64;
            prop_assert!((sent as f64) <= bound, "sent {} > bound {}", sent, bound);
            // And it is not starved: at least most of the limit gets through when chunks are
            // small against it.
            if chunk * 1000 / step > limit * 2 && chunk < limit {
                prop_assert!(sent as f64 >= limit as f64 * (end as f64 / 1000.0) * 0.8,
                    "sent {} for limit {}", sent, limit);
            }
        }
    }
}
