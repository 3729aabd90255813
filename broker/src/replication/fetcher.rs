//! Follower side of replication (Kafka's ReplicaFetcherManager/ReplicaFetcherThread): one task
//! per source leader broker fetches every partition this broker follows from that leader in one
//! Fetch request, appends what arrives as it is, and moves its high watermark. Before fetching a
//! partition of a new leader epoch it reconciles its log with the leader's (OffsetForLeaderEpoch).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rivulet_admin_client::Connection;
use tokio::sync::watch;

use super::throttle;
use super::truncation::{truncation_offset, LeaderAnswer};
use crate::broker::Broker;
use crate::partition::{AppendError, Partition, Role};

/// Partitions one fetcher follows (all led by the same broker).
type PartitionSet = Vec<Arc<Partition>>;

/// Keeps one fetcher task per leader broker in line with the partitions' roles; re-evaluates on
/// every metadata change (and every second, for role changes applied by other paths).
pub fn spawn_manager(b: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut changes = b.metadata.subscribe();
        let mut fetchers: HashMap<i32, watch::Sender<PartitionSet>> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Apply the newest view to the hosted partitions first, so roles are current.
            let b2 = b.clone();
            match tokio::task::spawn_blocking(move || b2.sync_partitions()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "applying metadata to partitions failed")
                }
                Err(e) => tracing::error!(error = %e, "applying metadata to partitions panicked"),
            }
            let mut wanted: HashMap<i32, PartitionSet> = HashMap::new();
            for p in b.replicas.all() {
                if let Role::Follower { leader, .. } = p.role() {
                    if leader >= 0 && leader != b.me.id {
                        wanted.entry(leader).or_default().push(p);
                    }
                }
            }
            // Dropping a sender ends its fetcher.
            fetchers.retain(|leader, _| wanted.contains_key(leader));
            for (leader, mut set) in wanted {
                set.sort_by(|a, c| (&a.topic, a.index).cmp(&(&c.topic, c.index)));
                match fetchers.get(&leader) {
                    Some(tx) => {
                        tx.send_if_modified(|cur| {
                            let same = cur.len() == set.len()
                                && cur.iter().zip(&set).all(|(x, y)| Arc::ptr_eq(x, y));
                            if !same {
                                *cur = set;
                            }
                            !same
                        });
                    }
                    None => {
                        let (tx, rx) = watch::channel(set);
                        tokio::spawn(run_fetcher(b.clone(), leader, rx, stop.clone()));
                        fetchers.insert(leader, tx);
                    }
                }
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { break },
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
        }
    });
}

/// Outcome of one round against the leader.
enum Round {
    Ok,
    /// Back off before the next round (errors from the leader or the connection).
    Backoff,
    /// Not possible yet: no connection to the leader could be made, or the leader does not
    /// know yet that it leads (its answer to OffsetForLeaderEpoch). Retry soon, then less often.
    NotYet,
}

/// First pause after a failed connection to the leader (Kafka's `reconnect.backoff.ms`).
const RECONNECT_BACKOFF: Duration = Duration::from_millis(50);

/// Pause before attempt `failures + 1` after `NotYet` rounds: doubling from
/// `RECONNECT_BACKOFF`, capped at `max` (replica.fetch.backoff.ms), like Kafka's
/// reconnect.backoff.ms / .max.ms. A leader just elected may not be resolvable or reachable
/// for a moment (its DNS name appears as its pod starts) or may learn of its election a few
/// milliseconds after its followers; a flat second-long pause would hold acks=all writes
/// that long (seen on the Kubernetes bed during rolling restarts).
pub(crate) fn reconnect_backoff(failures: u32, max: Duration) -> Duration {
    RECONNECT_BACKOFF
        .saturating_mul(1u32 << failures.min(16))
        .min(max)
}

async fn run_fetcher(
    b: Arc<Broker>,
    leader: i32,
    mut parts: watch::Receiver<PartitionSet>,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!(leader, "replica fetcher started");
    let backoff = Duration::from_millis(b.config.replica_fetch_backoff_ms.max(1));
    let mut conn: Option<Connection> = None;
    let mut not_yet: u32 = 0;
    loop {
        if *stop.borrow() {
            break;
        }
        let set: PartitionSet = parts.borrow_and_update().clone();
        let round = tokio::select! {
            r = round(&b, leader, &set, &mut conn) => r,
            // The partition set changed: drop the in-flight request (the connection is then
            // mid-exchange, so it goes too) and start over with the new set.
            r = parts.changed() => {
                if r.is_err() { break; }
                conn = None;
                continue;
            }
            _ = stop.changed() => break,
        };
        let pause = match round {
            Round::Ok => {
                not_yet = 0;
                continue;
            }
            Round::Backoff => {
                not_yet = 0;
                backoff
            }
            Round::NotYet => {
                not_yet = not_yet.saturating_add(1);
                reconnect_backoff(not_yet - 1, backoff)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            r = parts.changed() => if r.is_err() { break },
            _ = stop.changed() => break,
        }
    }
    tracing::info!(leader, "replica fetcher stopped");
}

async fn connect<'a>(
    b: &Broker,
    leader: i32,
    conn: &'a mut Option<Connection>,
) -> Option<&'a mut Connection> {
    if conn.is_none() {
        let view = b.metadata.view();
        let broker = view.broker(leader)?;
        let addr = format!("{}:{}", broker.host, broker.port);
        // Longer than the leader's long-poll, like replica.socket.timeout.ms.
        let timeout =
            Duration::from_millis(b.config.replica_fetch_wait_max_ms.max(0) as u64 + 10_000);
        match Connection::connect_with(&addr, timeout, &b.security.inter_broker()).await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                if matches!(
                    e,
                    rivulet_admin_client::Error::Auth(_)
                        | rivulet_admin_client::Error::Connect { .. }
                ) {
                    tracing::warn!(leader, %addr, error = %e, "cannot connect to the leader");
                } else {
                    tracing::debug!(leader, %addr, error = %e, "cannot reach the leader");
                }
                return None;
            }
        }
    }
    conn.as_mut()
}

fn follows(p: &Partition, leader: i32) -> Option<i32> {
    match p.role() {
        Role::Follower { leader: l, epoch } if l == leader => Some(epoch),
        _ => None,
    }
}

async fn round(
    b: &Broker,
    leader: i32,
    set: &PartitionSet,
    conn: &mut Option<Connection>,
) -> Round {
    if set.is_empty() {
        // Nothing to fetch until the set changes.
        std::future::pending::<()>().await;
    }
    let Some(c) = connect(b, leader, conn).await else {
        return Round::NotYet;
    };
    let truncating: Vec<&Arc<Partition>> = set
        .iter()
        .filter(|p| p.needs_truncation() && follows(p, leader).is_some())
        .collect();
    if !truncating.is_empty() {
        match truncate(b, c, &truncating).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(leader, error = %e, "OffsetForLeaderEpoch failed");
                *conn = None;
                return Round::Backoff;
            }
        }
    }
    let throttled = follower_throttled(b, set);
    let over_quota = !throttled.is_empty()
        && b.quotas.follower.exceeded(
            throttle::now_ms(),
            throttle::rate_limit(
                b.metadata.view().broker_configs.get(&b.me.id),
                &b.metadata.view().default_broker_configs,
                throttle::FOLLOWER_RATE,
            ),
        );
    let fetching: Vec<(&Arc<Partition>, i32)> = set
        .iter()
        .filter(|p| !p.needs_truncation())
        // Replication throttle, follower side: out-of-sync throttled replicas wait while the
        // follower quota is exceeded.
        .filter(|p| !(over_quota && throttled.contains(&(p.topic.clone(), p.index))))
        .filter_map(|p| follows(p, leader).map(|e| (p, e)))
        .collect();
    if fetching.is_empty() {
        // Nothing to fetch yet (truncation pending an answer, partitions over the follower
        // quota, or none left in this role): ask again soon, then less often.
        return Round::NotYet;
    }
    let version = match c.version::<FetchRequest>() {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(leader, error = %e, "leader does not serve Fetch");
            *conn = None;
            return Round::Backoff;
        }
    };
    let req = fetch_request(b, version, &fetching);
    let resp = match c.send(req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(leader, error = %e, "replica fetch failed");
            *conn = None;
            return Round::Backoff;
        }
    };
    if !throttled.is_empty() {
        let bytes: usize = resp
            .responses
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |pd| (t.topic.0.as_str(), t.topic_id, pd))
            })
            .filter(|(name, id, pd)| {
                fetching.iter().any(|(p, _)| {
                    p.index == pd.partition_index
                        && (p.topic == *name || p.topic_id == *id)
                        && throttled.contains(&(p.topic.clone(), p.index))
                })
            })
            .map(|(_, _, pd)| pd.records.as_ref().map(|r| r.len()).unwrap_or(0))
            .sum();
        b.quotas.follower.record(throttle::now_ms(), bytes as u64);
    }
    if handle_fetch_response(leader, &fetching, resp) {
        Round::Backoff
    } else {
        Round::Ok
    }
}

/// The (topic, partition) of `set` this broker follows out of sync with a follower-side
/// throttle on its replica.
fn follower_throttled(b: &Broker, set: &PartitionSet) -> Vec<(String, i32)> {
    let view = b.metadata.view();
    set.iter()
        .filter(|p| {
            view.topic(&p.topic)
                .map(|t| {
                    throttle::is_throttled(
                        &t.configs,
                        throttle::FOLLOWER_REPLICAS,
                        p.index,
                        b.me.id,
                    )
                })
                .unwrap_or(false)
                && !p.isr().contains(&b.me.id)
        })
        .map(|p| (p.topic.clone(), p.index))
        .collect()
}

fn fetch_request(b: &Broker, version: i16, fetching: &[(&Arc<Partition>, i32)]) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (p, epoch) in fetching {
        let fp = FetchPartition::default()
            .with_partition(p.index)
            .with_current_leader_epoch(*epoch)
            .with_fetch_offset(p.log_end_offset())
            .with_last_fetched_epoch(-1)
            .with_log_start_offset(p.log_start_offset())
            .with_partition_max_bytes(b.config.replica_fetch_max_bytes);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == p.topic) {
            Some(t) => t.partitions.push(fp),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(p.topic.clone())))
                    .with_topic_id(p.topic_id)
                    .with_partitions(vec![fp]),
            ),
        }
    }
    // The replica id moved into `replica_state` in v15; each field exists only in its versions.
    let req = if version >= 15 {
        FetchRequest::default().with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(b.me.id))
                .with_replica_epoch(-1),
        )
    } else {
        FetchRequest::default().with_replica_id(BrokerId(b.me.id))
    };
    req.with_max_wait_ms(b.config.replica_fetch_wait_max_ms.max(0))
        .with_min_bytes(1)
        .with_max_bytes(b.config.replica_fetch_response_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// Applies a fetch response; true when some partition needs a back-off.
fn handle_fetch_response(
    leader: i32,
    fetching: &[(&Arc<Partition>, i32)],
    resp: FetchResponse,
) -> bool {
    let mut backoff = false;
    if resp.error_code != 0 {
        tracing::warn!(leader, code = resp.error_code, "replica fetch refused");
        return true;
    }
    for t in resp.responses {
        for pd in t.partitions {
            let Some((p, epoch)) = fetching.iter().find(|(p, _)| {
                p.index == pd.partition_index
                    && (p.topic == t.topic.0.as_str() || p.topic_id == t.topic_id)
            }) else {
                continue;
            };
            if follows(p, leader) != Some(*epoch) {
                continue; // the role moved on while the request was out
            }
            match ResponseError::try_from_code(pd.error_code) {
                None => {
                    if let Some(data) = pd.records.as_ref().filter(|d| !d.is_empty()) {
                        match p.append_replicated_from(leader, *epoch, data) {
                            Ok(_) => {}
                            // The role moved on since the check above: drop the data.
                            Err(AppendError::NotLeader) => continue,
                            Err(e) => {
                                tracing::error!(topic = %p.topic, partition = p.index, leader, error = %e, "replicated append failed");
                                backoff = true;
                                continue;
                            }
                        }
                    }
                    // The leader's log start moved (retention, DeleteRecords): follow it.
                    if pd.log_start_offset > p.log_start_offset() {
                        let to = pd.log_start_offset.min(p.log_end_offset());
                        if let Err(e) = p.delete_records_before(to) {
                            tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "moving the log start failed");
                        }
                    }
                    p.set_follower_hw(pd.high_watermark);
                }
                Some(ResponseError::OffsetOutOfRange) => {
                    let leo = p.log_end_offset();
                    let r = if pd.log_start_offset > leo {
                        p.truncate_fully_and_start_at(pd.log_start_offset)
                    } else {
                        // Ahead of the leader (a tail the epoch check missed): keep only what
                        // is committed there, then fetch again.
                        p.truncate_to(pd.high_watermark.max(0).min(leo))
                    };
                    if let Err(e) = r {
                        tracing::error!(topic = %p.topic, partition = p.index, error = %e, "truncation after OFFSET_OUT_OF_RANGE failed");
                        backoff = true;
                    }
                }
                Some(e) => {
                    tracing::debug!(topic = %p.topic, partition = p.index, leader, error = ?e, "replica fetch partition error");
                    backoff = true;
                }
            }
        }
    }
    backoff
}

#[derive(Debug, thiserror::Error)]
enum TruncateError {
    #[error(transparent)]
    Client(#[from] rivulet_admin_client::Error),
    #[error(transparent)]
    Log(#[from] rivulet_storage::LogError),
}

/// Reconciles each partition's log with the leader's (one OffsetForLeaderEpoch for all).
async fn truncate(
    b: &Broker,
    c: &mut Connection,
    parts: &[&Arc<Partition>],
) -> Result<(), TruncateError> {
    let mut asked: Vec<(&Arc<Partition>, i32, i32)> = Vec::new(); // (partition, epoch asked, role epoch)
    let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
    for p in parts {
        let role_epoch = p.leader_epoch();
        let Some(latest) = p.latest_epoch() else {
            // No epochs known: an empty log (nothing to cut) or data from before epochs were
            // recorded: keep only what was committed.
            p.truncate_to(p.high_watermark())?;
            p.truncation_done(role_epoch);
            continue;
        };
        let op = OffsetForLeaderPartition::default()
            .with_partition(p.index)
            .with_current_leader_epoch(role_epoch)
            .with_leader_epoch(latest);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == p.topic) {
            Some(t) => t.partitions.push(op),
            None => topics.push(
                OffsetForLeaderTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(p.topic.clone())))
                    .with_partitions(vec![op]),
            ),
        }
        asked.push((p, latest, role_epoch));
    }
    if asked.is_empty() {
        return Ok(());
    }
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(b.me.id))
        .with_topics(topics);
    let answers: HashMap<(String, i32), (i16, i32, i64)> = match c.send(req).await {
        Ok(resp) => resp
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |e| {
                    (
                        (t.topic.0.to_string(), e.partition),
                        (e.error_code, e.leader_epoch, e.end_offset),
                    )
                })
            })
            .collect(),
        // A leader without the API: fall back to the high watermark (pre-KIP-101).
        Err(rivulet_admin_client::Error::Unsupported { .. }) => HashMap::new(),
        Err(e) => return Err(e.into()),
    };
    for (p, latest, role_epoch) in asked {
        let answer = match answers.get(&(p.topic.clone(), p.index)) {
            None => LeaderAnswer::Unknown,
            Some((0, epoch, end)) if *epoch >= 0 && *end >= 0 => LeaderAnswer::EpochEnd {
                epoch: *epoch,
                end_offset: *end,
            },
            Some((0, ..)) => LeaderAnswer::Unknown,
            Some((code, ..)) => match ResponseError::try_from_code(*code) {
                // The leader does not agree it leads this epoch yet: ask again later.
                Some(
                    ResponseError::NotLeaderOrFollower
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::UnknownTopicOrPartition,
                ) => continue,
                _ => LeaderAnswer::Unknown,
            },
        };
        let t = truncation_offset(
            latest,
            answer,
            p.log_end_offset(),
            p.high_watermark(),
            |e| p.end_offset_for_epoch(e),
        );
        tracing::info!(topic = %p.topic, partition = p.index, asked_epoch = latest, ?answer, leo = p.log_end_offset(), truncate_to = t.offset, done = t.done, "follower truncation");
        p.truncate_to(t.offset)?;
        if t.done {
            p.truncation_done(role_epoch);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_backoff_doubles_from_50ms_up_to_the_fetch_backoff() {
        let max = Duration::from_millis(1000);
        let got: Vec<u128> = (0..8)
            .map(|n| reconnect_backoff(n, max).as_millis())
            .collect();
        assert_eq!(got, vec![50, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(reconnect_backoff(u32::MAX, max), max);
        // A fetch backoff below the first step caps it too.
        assert_eq!(
            reconnect_backoff(0, Duration::from_millis(10)).as_millis(),
            10
        );
    }
}
