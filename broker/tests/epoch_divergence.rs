//! KIP-101 / KIP-279 end to end on real logs: three replicas, each a `PartitionLog` in its own
//! directory, go through random leader changes (clean or not), leader appends that only some
//! followers copy, and crashes. A follower of a new epoch reconciles its log the way the
//! replica fetcher does — asking the leader's `end_offset_for_epoch` about its latest epoch and
//! cutting where `truncation_offset` says, round after round — then copies the leader's batches
//! with `append_replicated`. After every such catch-up its log must be a byte-for-byte prefix of
//! the leader's, and its leader-epoch cache the leader's up to its end: the logs never diverge,
//! and the reconciliation always finishes.

use proptest::prelude::*;
use rivulet_broker::replication::truncation::{truncation_offset, LeaderAnswer};
use rivulet_storage::{EpochEntry, LogConfig, PartitionLog};

const REPLICAS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    /// The leader appends a batch of `records` records (acks=1: nobody has it yet).
    Append { records: usize },
    /// Follower `replica` reconciles with the current leader if needed and copies its log.
    Follow { replica: usize },
    /// A new epoch led by `replica` (any replica: unclean elections included).
    Elect { replica: usize },
    /// A replica restarts (a clean close or a crash).
    Restart { replica: usize, clean: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..4).prop_map(|records| Op::Append { records }),
        4 => (0..REPLICAS).prop_map(|replica| Op::Follow { replica }),
        2 => (0..REPLICAS).prop_map(|replica| Op::Elect { replica }),
        1 => (0..REPLICAS, any::<bool>()).prop_map(|(replica, clean)| Op::Restart { replica, clean }),
    ]
}

/// One uncompressed batch of `records` records (base offset and epoch are the log's to set).
fn batch(records: usize, tag: u8) -> Vec<u8> {
    // Records: length, attributes, timestamp delta, offset delta, key -1, value, no headers.
    let mut body = Vec::new();
    for i in 0..records {
        let rec = [0u8, 0, (i as u8) << 1, 1, 2, tag, 0];
        body.push((rec.len() as u8) << 1);
        body.extend_from_slice(&rec);
    }
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&((records - 1) as i32).to_be_bytes());
    b.extend_from_slice(&1_000i64.to_be_bytes());
    b.extend_from_slice(&1_000i64.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&(records as i32).to_be_bytes());
    b.extend_from_slice(&body);
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// CRC32C (Castagnoli), bitwise: test data only.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn whole_log(log: &PartitionLog) -> Vec<u8> {
    log.read(log.log_start_offset(), usize::MAX >> 2, i64::MAX, true)
        .unwrap()
        .data
        .to_vec()
}

fn entries_below(log: &PartitionLog, end: i64) -> Vec<EpochEntry> {
    log.epoch_entries()
        .into_iter()
        .filter(|e| e.start_offset < end)
        .collect()
}

struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    logs: Vec<Option<PartitionLog>>,
    leader: usize,
    epoch: i32,
    /// Replicas that reconciled with the current epoch's leader.
    synced: Vec<bool>,
}

impl Cluster {
    fn log(&mut self, i: usize) -> &mut PartitionLog {
        self.logs[i].as_mut().unwrap()
    }

    /// The fetcher's reconciliation: at most a few rounds, each cutting at least one epoch.
    fn reconcile(&mut self, f: usize) -> Result<(), TestCaseError> {
        for _round in 0..8 {
            let leader = self.logs[self.leader].as_ref().unwrap();
            let follower = self.logs[f].as_ref().unwrap();
            let Some(latest) = follower.latest_epoch() else {
                return Ok(()); // empty: nothing to cut
            };
            let answer = match leader.end_offset_for_epoch(latest) {
                Some((epoch, end_offset)) => LeaderAnswer::EpochEnd { epoch, end_offset },
                None => LeaderAnswer::Unknown,
            };
            let t = truncation_offset(latest, answer, follower.log_end_offset(), 0, |e| {
                follower.end_offset_for_epoch(e)
            });
            self.log(f).truncate_to(t.offset).unwrap();
            if t.done {
                return Ok(());
            }
        }
        Err(TestCaseError::fail(format!(
            "replica {f} did not finish reconciling with leader {} (epoch {}): {:?}",
            self.leader,
            self.epoch,
            self.logs[f].as_ref().unwrap().epoch_entries()
        )))
    }

    fn follow(&mut self, f: usize) -> Result<(), TestCaseError> {
        if f == self.leader {
            return Ok(());
        }
        if !self.synced[f] {
            self.reconcile(f)?;
            self.synced[f] = true;
        }
        let from = self.log(f).log_end_offset();
        let leader = self.logs[self.leader].as_ref().unwrap();
        prop_assert!(
            from <= leader.log_end_offset(),
            "replica {} ends at {} past leader {} at {}",
            f,
            from,
            self.leader,
            leader.log_end_offset()
        );
        let data = leader
            .read(from, usize::MAX >> 2, i64::MAX, true)
            .unwrap()
            .data;
        if !data.is_empty() {
            self.log(f).append_replicated(&data).unwrap();
        }
        // Never diverged: the follower is a prefix of the leader, bytes and epochs.
        let leader = self.logs[self.leader].as_ref().unwrap();
        let follower = self.logs[f].as_ref().unwrap();
        let (mine, theirs) = (whole_log(follower), whole_log(leader));
        prop_assert!(
            theirs.starts_with(&mine),
            "replica {} diverged from leader {}",
            f,
            self.leader
        );
        prop_assert_eq!(follower.log_end_offset(), leader.log_end_offset());
        let end = follower.log_end_offset();
        prop_assert_eq!(entries_below(follower, end), entries_below(leader, end));
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn followers_never_diverge_from_the_leader(ops in proptest::collection::vec(op(), 1..40)) {
        let config = LogConfig { segment_bytes: 600, ..LogConfig::default() };
        let dirs: Vec<_> = (0..REPLICAS).map(|_| tempfile::tempdir().unwrap()).collect();
        let logs = dirs
            .iter()
            .map(|d| Some(PartitionLog::open(d.path(), config.clone()).unwrap()))
            .collect();
        let mut c = Cluster { dirs, logs, leader: 0, epoch: 0, synced: vec![false; REPLICAS] };
        c.log(0).assign_leader_epoch(0).unwrap();
        let mut tag = 0u8;
        for op in ops {
            match op {
                Op::Append { records } => {
                    tag = tag.wrapping_add(1);
                    let epoch = c.epoch;
                    let leader = c.leader;
                    c.log(leader).append(&mut batch(records, tag), epoch, 1_000).unwrap();
                }
                Op::Follow { replica } => c.follow(replica)?,
                Op::Elect { replica } => {
                    c.epoch += 1;
                    c.leader = replica;
                    let epoch = c.epoch;
                    c.log(replica).assign_leader_epoch(epoch).unwrap();
                    c.synced = vec![false; REPLICAS];
                }
                Op::Restart { replica, clean } => {
                    let log = c.logs[replica].take().unwrap();
                    if clean { log.close().unwrap() } else { drop(log) }
                    c.logs[replica] = Some(PartitionLog::open(c.dirs[replica].path(), config.clone()).unwrap());
                    if replica != c.leader {
                        c.synced[replica] = false;
                    }
                }
            }
        }
        // Finally everyone catches up and holds exactly the leader's log.
        for f in 0..REPLICAS {
            c.follow(f)?;
        }
    }
}
