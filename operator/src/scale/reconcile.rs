//! Scaling I/O: drains brokers before the StatefulSets shrink and rebalances onto new brokers,
//! through the Kafka admin protocol (Metadata, AlterPartitionReassignments,
//! ListPartitionReassignments, IncrementalAlterConfigs for the throttle). Decisions are
//! [`super::plan`]'s; this module reads, writes and reports.
//!
//! Scale-in: while `spec.brokersPerZone` is below the StatefulSets' replicas, the cluster
//! controller keeps the old replica count ([`ScaleOutcome::hold_brokers_per_zone`]); each
//! reconcile here either waits for moves in flight, starts the drain's moves (throttle first), or
//! — once nothing is left on the brokers being removed — removes the throttle and lets the
//! StatefulSets shrink. Scale-out with `spec.scaling.rebalanceOnScaleOut`: once the new brokers
//! have registered, the rebalance's moves run the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use rivulet_admin_client::{AdminClient, ClusterState, ReassignmentRequest};
use tracing::{info, warn};

use super::plan::{self, drain_plan, rebalance_plan, throttled_replicas, Move};
use crate::builders::zone_first_id;
use crate::context::Ctx;
use crate::crd::{KafkaCluster, KafkaClusterStatus, ScalingSpec, ScalingStatus};

pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

pub const DRAINING: &str = "Draining";
pub const REBALANCING: &str = "Rebalancing";
pub const REFUSED: &str = "Refused";
pub const WAITING: &str = "Waiting";

/// How often a scaling operation is looked at while replicas move.
pub const SCALE_POLL: Duration = Duration::from_secs(5);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the cluster controller does with the StatefulSets this reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleOutcome {
    /// Replicas per zone the broker StatefulSets keep for now: above `spec.brokersPerZone` while
    /// a drain has not finished.
    pub hold_brokers_per_zone: i32,
    /// A line for the Progressing condition while replicas move or a drain is refused.
    pub progress: Option<String>,
    pub requeue: Option<Duration>,
}

/// Broker ids of zone `z` with ordinals in `from..to`.
fn ids(z: usize, from: i32, to: i32) -> Vec<i32> {
    (from.max(0)..to.max(0))
        .map(|o| zone_first_id(z) + o)
        .collect()
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// The scaling step of one reconcile. `live_per_zone`: replicas of each zone's live broker
/// StatefulSet (None when it doesn't exist yet).
pub async fn reconcile_scaling(
    kc: &KafkaCluster,
    ctx: &Ctx,
    live_per_zone: &[Option<i32>],
    status: &mut KafkaClusterStatus,
) -> ScaleOutcome {
    let want = kc.spec.brokers_per_zone;
    let policy = kc.spec.scaling.clone().unwrap_or_default();
    let live = live_per_zone.iter().flatten().copied().max();
    let prev = status.scaling.clone();
    let prev_phase = prev.as_ref().map(|p| p.phase.as_str());
    let idle = ScaleOutcome {
        hold_brokers_per_zone: want,
        progress: None,
        requeue: None,
    };
    match live {
        Some(live) if live > want => drain(kc, ctx, &policy, live_per_zone, live, status).await,
        Some(live) if live < want => {
            // Scale-out is applied now; the rebalance follows once the brokers registered.
            if policy.rebalance_on_scale_out && prev_phase != Some(REBALANCING) {
                let brokers: Vec<i32> = (0..kc.spec.zones.len())
                    .flat_map(|z| ids(z, live, want))
                    .collect();
                status.scaling = Some(ScalingStatus {
                    phase: REBALANCING.into(),
                    from_brokers_per_zone: live,
                    to_brokers_per_zone: want,
                    brokers,
                    started: Some(now_rfc3339()),
                    message: Some("waiting for the new brokers to register".into()),
                    ..Default::default()
                });
            }
            ScaleOutcome {
                requeue: policy.rebalance_on_scale_out.then_some(SCALE_POLL),
                ..idle
            }
        }
        Some(_) if prev_phase == Some(REBALANCING) && policy.rebalance_on_scale_out => {
            rebalance(kc, ctx, &policy, status).await
        }
        _ => {
            // Nothing to move (or the spec went back): drop what an earlier operation left.
            if let Some(p) = prev {
                if let Err(e) = end_operation(kc, ctx, &p).await {
                    warn!(cluster = %kc.metadata.name.as_deref().unwrap_or(""), error = %e, "removing the replication throttle failed; retrying");
                    return ScaleOutcome {
                        requeue: Some(SCALE_POLL),
                        ..idle
                    };
                }
                status.scaling = None;
            }
            idle
        }
    }
}

async fn connect(kc: &KafkaCluster, ctx: &Ctx) -> Result<AdminClient, String> {
    // The internal listener when the cluster has listeners (the client bootstrap may need
    // credentials the operator doesn't have), else the bootstrap address.
    let Some(addr) = kc.status.as_ref().and_then(|s| {
        s.admin_address
            .clone()
            .or_else(|| s.bootstrap_address.clone())
    }) else {
        return Err("the cluster has no bootstrap address yet".into());
    };
    let addr = ctx.log_dirs.hosts.get(&addr).cloned().unwrap_or(addr);
    crate::security::admin::connect(&ctx.client, kc, &addr, ADMIN_TIMEOUT)
        .await
        .map_err(|e| format!("cannot reach the brokers at {addr}: {e}"))
}

fn partitions(state: &ClusterState) -> Vec<plan::Partition> {
    state
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| plan::Partition {
                topic: t.name.clone(),
                index: p.index,
                leader: p.leader,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
            })
        })
        .collect()
}

/// Brokers of the first `per_zone` ordinals of every zone, racks = zone names.
fn expected_brokers(kc: &KafkaCluster, per_zone: i32) -> Vec<plan::Broker> {
    kc.spec
        .zones
        .iter()
        .enumerate()
        .flat_map(|(z, zone)| {
            ids(z, 0, per_zone).into_iter().map(move |id| plan::Broker {
                id,
                rack: zone.clone(),
            })
        })
        .collect()
}

/// Where an operation stands after this reconcile's step.
enum Step {
    /// Moves in flight: asked this time, still in flight, topics throttled this time.
    Moving {
        submitted: usize,
        in_flight: usize,
        topics: Vec<String>,
    },
    Done,
    Refused(String),
    Waiting(String),
}

async fn drain(
    kc: &KafkaCluster,
    ctx: &Ctx,
    policy: &ScalingSpec,
    live_per_zone: &[Option<i32>],
    live: i32,
    status: &mut KafkaClusterStatus,
) -> ScaleOutcome {
    let want = kc.spec.brokers_per_zone;
    let removing: Vec<i32> = live_per_zone
        .iter()
        .enumerate()
        .flat_map(|(z, r)| ids(z, want, r.unwrap_or(0)))
        .collect();
    let remaining = expected_brokers(kc, want);
    let prev = status
        .scaling
        .clone()
        .filter(|s| s.phase != REBALANCING && s.to_brokers_per_zone == want);
    let step = async {
        let mut admin = connect(kc, ctx).await.map_err(Step::Waiting)?;
        let state = admin
            .cluster_state()
            .await
            .map_err(|e| Step::Waiting(format!("reading metadata: {e}")))?;
        let in_flight = admin
            .list_partition_reassignments()
            .await
            .map_err(|e| Step::Waiting(format!("listing reassignments: {e}")))?;
        if !in_flight.is_empty() {
            return Ok(Step::Moving {
                submitted: 0,
                in_flight: in_flight.len(),
                topics: Vec::new(),
            });
        }
        let moves = match drain_plan(&remaining, &removing, &partitions(&state)) {
            Ok(m) => m,
            Err(r) => return Ok(Step::Refused(r.to_string())),
        };
        if moves.is_empty() {
            return Ok(Step::Done);
        }
        let registered: Vec<i32> = state.brokers.iter().map(|b| b.id).collect();
        let missing: Vec<i32> = moves
            .iter()
            .flat_map(|m| m.adding())
            .filter(|id| !registered.contains(id))
            .collect();
        if !missing.is_empty() {
            return Ok(Step::Waiting(format!(
                "target brokers {missing:?} are not registered"
            )));
        }
        let (submitted, topics) = start_moves(&mut admin, policy, &moves).await?;
        Ok::<_, Step>(Step::Moving {
            submitted,
            in_flight: moves.len(),
            topics,
        })
    }
    .await
    .unwrap_or_else(|s| s);
    let mut next = prev.clone().unwrap_or_else(|| ScalingStatus {
        phase: DRAINING.into(),
        from_brokers_per_zone: live,
        to_brokers_per_zone: want,
        brokers: removing.clone(),
        started: Some(now_rfc3339()),
        ..Default::default()
    });
    let hold = ScaleOutcome {
        hold_brokers_per_zone: live,
        progress: None,
        requeue: Some(SCALE_POLL),
    };
    match step {
        Step::Done => {
            if let Err(e) = end_operation(kc, ctx, &next).await {
                warn!(error = %e, "removing the replication throttle failed; retrying");
                return hold;
            }
            info!(cluster = %kc.metadata.name.as_deref().unwrap_or(""), removed = ?removing, "drain finished");
            ctx.event(
                kc,
                false,
                "DrainFinished",
                "Scale",
                format!(
                    "brokers {removing:?} hold no replicas ({} partition(s) moved); the StatefulSets shrink to {want} per zone",
                    next.partitions_total
                ),
            )
            .await;
            status.scaling = None;
            ScaleOutcome {
                hold_brokers_per_zone: want,
                progress: None,
                requeue: None,
            }
        }
        Step::Refused(why) => {
            let first = next.phase != REFUSED || next.message.as_deref() != Some(&why);
            next.phase = REFUSED.into();
            next.message = Some(why.clone());
            status.scaling = Some(next);
            if first {
                warn!(cluster = %kc.metadata.name.as_deref().unwrap_or(""), %why, "drain refused");
                ctx.event(
                    kc,
                    true,
                    "DrainRefused",
                    "Scale",
                    format!("brokersPerZone stays at {live}: {why}"),
                )
                .await;
            }
            ScaleOutcome {
                progress: Some(format!("scale-in to {want} per zone refused: {why}")),
                requeue: Some(SCALE_POLL * 6),
                ..hold
            }
        }
        Step::Waiting(why) => {
            next.phase = WAITING.into();
            next.message = Some(why.clone());
            status.scaling = Some(next);
            ScaleOutcome {
                progress: Some(format!("scale-in to {want} per zone waits: {why}")),
                ..hold
            }
        }
        Step::Moving {
            submitted,
            in_flight,
            topics,
        } => {
            if submitted > 0 && next.partitions_total == 0 {
                ctx.event(
                    kc,
                    false,
                    "DrainStarted",
                    "Scale",
                    format!(
                        "moving {submitted} partition(s) off brokers {removing:?} at {} B/s before brokersPerZone goes {live} → {want}",
                        policy.throttle_bytes_per_second
                    ),
                )
                .await;
            }
            progress(&mut next, DRAINING, submitted, in_flight, topics);
            let msg = format!(
                "draining brokers {removing:?}: {}/{} partition(s) moved",
                next.partitions_done, next.partitions_total
            );
            next.message = Some(msg.clone());
            status.scaling = Some(next);
            ScaleOutcome {
                progress: Some(msg),
                ..hold
            }
        }
    }
}

/// Updates progress: `submitted` moves asked now, `in_flight` still moving, `topics` throttled.
fn progress(
    s: &mut ScalingStatus,
    phase: &str,
    submitted: usize,
    in_flight: usize,
    topics: Vec<String>,
) {
    s.phase = phase.into();
    s.partitions_total += submitted as i32;
    s.partitions_done = (s.partitions_total - in_flight as i32).max(0);
    for t in topics {
        if !s.throttled_topics.contains(&t) {
            s.throttled_topics.push(t);
        }
    }
    s.throttled_topics.sort();
}

/// Sets the throttle (broker rates on the cluster-wide default entity, the moving replicas on
/// their topics), then asks for the moves. Returns how many partitions were accepted and the
/// topics throttled.
async fn start_moves(
    admin: &mut AdminClient,
    policy: &ScalingSpec,
    moves: &[Move],
) -> Result<(usize, Vec<String>), Step> {
    let rate = policy.throttle_bytes_per_second.max(1024).to_string();
    let rates: BTreeMap<String, String> = [
        (LEADER_RATE.to_string(), rate.clone()),
        (FOLLOWER_RATE.to_string(), rate),
    ]
    .into();
    admin
        .alter_broker_config(None, &rates, &[])
        .await
        .map_err(|e| Step::Waiting(format!("setting the replication throttle: {e}")))?;
    let throttled = throttled_replicas(moves);
    let topics: Vec<String> = throttled.keys().cloned().collect();
    for (topic, (leader, follower)) in throttled {
        let set: BTreeMap<String, String> = [
            (LEADER_REPLICAS.to_string(), leader),
            (FOLLOWER_REPLICAS.to_string(), follower),
        ]
        .into();
        admin
            .alter_topic_config(&topic, &set, &[])
            .await
            .map_err(|e| Step::Waiting(format!("throttling {topic}: {e}")))?;
    }
    let req: Vec<ReassignmentRequest> = moves
        .iter()
        .map(|m| ReassignmentRequest {
            topic: m.topic.clone(),
            partition: m.partition,
            target: Some(m.to.clone()),
        })
        .collect();
    let answers = admin
        .alter_partition_reassignments(&req)
        .await
        .map_err(|e| Step::Waiting(format!("starting the moves: {e}")))?;
    let mut accepted = 0;
    for (topic, partition, r) in answers {
        match r {
            Ok(()) => accepted += 1,
            Err(e) => warn!(%topic, partition, error = %e, "move refused; retried next reconcile"),
        }
    }
    Ok((accepted, topics))
}

/// Removes the throttle an operation set: the broker rates, and the throttled-replica configs
/// of every topic (topics that are gone are skipped).
async fn end_operation(kc: &KafkaCluster, ctx: &Ctx, s: &ScalingStatus) -> Result<(), String> {
    if s.partitions_total == 0 && s.throttled_topics.is_empty() {
        return Ok(());
    }
    let mut admin = connect(kc, ctx).await?;
    admin
        .alter_broker_config(
            None,
            &BTreeMap::new(),
            &[LEADER_RATE.to_string(), FOLLOWER_RATE.to_string()],
        )
        .await
        .map_err(|e| e.to_string())?;
    for t in &s.throttled_topics {
        match admin
            .alter_topic_config(
                t,
                &BTreeMap::new(),
                &[LEADER_REPLICAS.to_string(), FOLLOWER_REPLICAS.to_string()],
            )
            .await
        {
            Ok(()) => {}
            // Deleted meanwhile: nothing to remove.
            Err(e)
                if e.kafka_error()
                    == Some(&kafka_protocol::ResponseError::UnknownTopicOrPartition) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

async fn rebalance(
    kc: &KafkaCluster,
    ctx: &Ctx,
    policy: &ScalingSpec,
    status: &mut KafkaClusterStatus,
) -> ScaleOutcome {
    let want = kc.spec.brokers_per_zone;
    let all = expected_brokers(kc, want);
    let Some(mut next) = status.scaling.clone() else {
        return ScaleOutcome {
            hold_brokers_per_zone: want,
            progress: None,
            requeue: None,
        };
    };
    let step = async {
        let mut admin = connect(kc, ctx).await.map_err(Step::Waiting)?;
        let state = admin
            .cluster_state()
            .await
            .map_err(|e| Step::Waiting(format!("reading metadata: {e}")))?;
        let missing: Vec<i32> = all
            .iter()
            .map(|b| b.id)
            .filter(|id| !state.brokers.iter().any(|b| b.id == *id))
            .collect();
        if !missing.is_empty() {
            return Ok(Step::Waiting(format!(
                "waiting for brokers {missing:?} to register"
            )));
        }
        let in_flight = admin
            .list_partition_reassignments()
            .await
            .map_err(|e| Step::Waiting(format!("listing reassignments: {e}")))?;
        if !in_flight.is_empty() {
            return Ok(Step::Moving {
                submitted: 0,
                in_flight: in_flight.len(),
                topics: Vec::new(),
            });
        }
        let moves = rebalance_plan(&all, &partitions(&state));
        if moves.is_empty() {
            return Ok(Step::Done);
        }
        let (submitted, topics) = start_moves(&mut admin, policy, &moves).await?;
        Ok::<_, Step>(Step::Moving {
            submitted,
            in_flight: moves.len(),
            topics,
        })
    }
    .await
    .unwrap_or_else(|s| s);
    let poll = ScaleOutcome {
        hold_brokers_per_zone: want,
        progress: None,
        requeue: Some(SCALE_POLL),
    };
    match step {
        Step::Done => {
            if let Err(e) = end_operation(kc, ctx, &next).await {
                warn!(error = %e, "removing the replication throttle failed; retrying");
                return poll;
            }
            ctx.event(
                kc,
                false,
                "RebalanceFinished",
                "Scale",
                format!(
                    "replicas are even across {} broker(s) ({} partition(s) moved)",
                    all.len(),
                    next.partitions_total
                ),
            )
            .await;
            status.scaling = None;
            ScaleOutcome {
                requeue: None,
                ..poll
            }
        }
        Step::Refused(why) | Step::Waiting(why) => {
            next.message = Some(why.clone());
            status.scaling = Some(next);
            ScaleOutcome {
                progress: Some(format!("rebalance waits: {why}")),
                ..poll
            }
        }
        Step::Moving {
            submitted,
            in_flight,
            topics,
        } => {
            if submitted > 0 && next.partitions_total == 0 {
                ctx.event(
                    kc,
                    false,
                    "RebalanceStarted",
                    "Scale",
                    format!(
                        "moving {submitted} partition(s) onto brokers {:?} at {} B/s",
                        next.brokers, policy.throttle_bytes_per_second
                    ),
                )
                .await;
            }
            progress(&mut next, REBALANCING, submitted, in_flight, topics);
            let msg = format!(
                "rebalancing onto brokers {:?}: {}/{} partition(s) moved",
                next.brokers, next.partitions_done, next.partitions_total
            );
            next.message = Some(msg.clone());
            status.scaling = Some(next);
            ScaleOutcome {
                progress: Some(msg),
                ..poll
            }
        }
    }
}
