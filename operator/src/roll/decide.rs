//! The roller's decision, pure: given the broker pods (each with the reasons it needs a
//! restart), the cluster's partition state as the brokers report it, and the pause switch,
//! which single broker pod may be deleted now — or why the roll waits.
//!
//! Rules (docs/operator.md, "Rolling restarts"):
//! - one broker at a time across the whole cluster: nothing is restarted while any broker pod
//!   is missing, terminating or not ready (a restarted broker is only ready once it is back in
//!   the ISR of every partition it replicates), nor while any partition is under-replicated;
//! - a broker is restarted only if every partition it is in sync for keeps at least
//!   `min.insync.replicas` in-sync replicas without it (partitions whose replication factor is
//!   at or below their `min.insync.replicas` can never tolerate a replica's loss; they do not
//!   hold the roll forever, as in Strimzi's roller, and are named in docs);
//! - the active controller goes last; the others go in broker-id order (zone by zone, since ids
//!   are zone-strided);
//! - the pause annotation stops the roller before any of this.

use std::fmt;

/// Why a broker pod must be restarted. New reasons (certificate rotation, ...) are new variants.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RestartReason {
    /// The pod runs an older pod template than its StatefulSet's `status.updateRevision`.
    Revision { pod: String, want: String },
    /// The pod's volume waits for an offline filesystem resize (PVC condition
    /// `FileSystemResizePending`): only a restart finishes it.
    FileSystemResizePending { pvc: String },
}

impl RestartReason {
    /// Short machine-readable name, used in Events and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RestartReason::Revision { .. } => "PodTemplateChanged",
            RestartReason::FileSystemResizePending { .. } => "FileSystemResizePending",
        }
    }
}

impl fmt::Display for RestartReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartReason::Revision { pod, want } => {
                write!(f, "pod template revision {pod} is not {want}")
            }
            RestartReason::FileSystemResizePending { pvc } => {
                write!(f, "claim {pvc} waits for an offline filesystem resize")
            }
        }
    }
}

/// One broker pod as the API server shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerPod {
    pub id: i32,
    pub name: String,
    /// Pod condition `Ready` is True.
    pub ready: bool,
    /// The pod has a deletion timestamp.
    pub terminating: bool,
    /// Why it needs a restart; empty when it is up to date.
    pub reasons: Vec<RestartReason>,
}

/// One partition's replica state, with its topic's effective `min.insync.replicas`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub min_isr: i32,
}

impl Partition {
    fn name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
    fn under_replicated(&self) -> bool {
        self.replicas.iter().any(|r| !self.isr.contains(r))
    }
    /// Whether stopping `broker` would leave this partition below `min.insync.replicas`.
    /// Partitions with replication factor ≤ min.insync.replicas have no replica to spare by
    /// construction and never hold the roll (see the module docs).
    pub fn breaks_without(&self, broker: i32) -> bool {
        let rf = self.replicas.len() as i64;
        let min = i64::from(self.min_isr);
        if rf <= min || !self.isr.contains(&broker) {
            return false;
        }
        (self.isr.len() as i64 - 1) < min
    }
}

/// The cluster as its brokers describe it (Metadata + DescribeConfigs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub controller: i32,
    /// Registered brokers.
    pub brokers: Vec<i32>,
    pub partitions: Vec<Partition>,
}

/// Why the roll is not restarting anything now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// `rivulet.dev/pause-roll: "true"` is set.
    Paused,
    /// Fewer broker pods exist than the spec asks for.
    PodsMissing { have: usize, want: usize },
    /// A broker pod is terminating or not ready (restarting, recovering, catching up).
    BrokerNotReady { id: i32, pod: String },
    /// The brokers could not be asked.
    ClusterUnreachable(String),
    /// A broker pod runs but its broker is not registered in the cluster.
    NotRegistered { id: i32 },
    /// Partitions are under-replicated (a broker is not back in every ISR yet).
    UnderReplicated { count: usize, sample: Vec<String> },
    /// Every candidate would take partitions below min.insync.replicas.
    MinInsyncReplicas {
        id: i32,
        count: usize,
        sample: Vec<String>,
    },
}

impl Wait {
    /// Machine-readable reason (status.operation.reason, Event reason).
    pub fn reason(&self) -> &'static str {
        match self {
            Wait::Paused => "Paused",
            Wait::PodsMissing { .. } => "BrokerPodsMissing",
            Wait::BrokerNotReady { .. } => "BrokerNotReady",
            Wait::ClusterUnreachable(_) => "ClusterUnreachable",
            Wait::NotRegistered { .. } => "BrokerNotRegistered",
            Wait::UnderReplicated { .. } => "UnderReplicatedPartitions",
            Wait::MinInsyncReplicas { .. } => "WouldBreakMinInsyncReplicas",
        }
    }
    /// The broker the wait is about, if any.
    pub fn broker(&self) -> Option<i32> {
        match self {
            Wait::BrokerNotReady { id, .. }
            | Wait::NotRegistered { id }
            | Wait::MinInsyncReplicas { id, .. } => Some(*id),
            _ => None,
        }
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Paused => write!(f, "the roll is paused by the rivulet.dev/pause-roll annotation"),
            Wait::PodsMissing { have, want } => {
                write!(f, "{have} of {want} broker pods exist; waiting for the rest")
            }
            Wait::BrokerNotReady { id, pod } => {
                write!(f, "broker {id} (pod {pod}) is not ready yet (restarting or catching up)")
            }
            Wait::ClusterUnreachable(e) => write!(f, "cannot ask the brokers: {e}"),
            Wait::NotRegistered { id } => {
                write!(f, "broker {id} is not registered in the cluster yet")
            }
            Wait::UnderReplicated { count, sample } => write!(
                f,
                "{count} partition(s) are under-replicated (e.g. {}); waiting until every replica is back in sync",
                sample.join(", ")
            ),
            Wait::MinInsyncReplicas { id, count, sample } => write!(
                f,
                "restarting broker {id} would leave {count} partition(s) below min.insync.replicas (e.g. {})",
                sample.join(", ")
            ),
        }
    }
}

/// The roller's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Every broker is up to date.
    Idle,
    /// Restart (delete) this pod now.
    Restart {
        id: i32,
        pod: String,
        reasons: Vec<RestartReason>,
    },
    Wait(Wait),
}

/// A decision with the roll's progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub decision: Decision,
    /// Brokers that still need a restart (the one being restarted now included).
    pub pending: Vec<i32>,
}

const SAMPLE: usize = 5;

fn sample<'a>(it: impl Iterator<Item = &'a Partition>) -> (usize, Vec<String>) {
    let all: Vec<&Partition> = it.collect();
    (
        all.len(),
        all.iter().take(SAMPLE).map(|p| p.name()).collect(),
    )
}

/// The order restarts go in: broker id order, the active controller last.
pub fn order(pending: &[&BrokerPod], controller: i32) -> Vec<i32> {
    let mut ids: Vec<i32> = pending.iter().map(|p| p.id).collect();
    ids.sort_by_key(|id| (*id == controller, *id));
    ids
}

/// Partitions `broker` is in sync for that would drop below min.insync.replicas without it.
pub fn blocking_partitions(cluster: &ClusterState, broker: i32) -> Vec<&Partition> {
    cluster
        .partitions
        .iter()
        .filter(|p| p.breaks_without(broker))
        .collect()
}

/// Decides the next step of the roll. `cluster` is `Err(message)` when the brokers could not
/// be asked; it is only consulted when something needs a restart.
pub fn decide(
    pods: &[BrokerPod],
    want_pods: usize,
    cluster: Result<&ClusterState, &str>,
    paused: bool,
) -> Plan {
    let pending_pods: Vec<&BrokerPod> = pods.iter().filter(|p| !p.reasons.is_empty()).collect();
    let mut pending: Vec<i32> = pending_pods.iter().map(|p| p.id).collect();
    pending.sort_unstable();
    let wait = |w: Wait, pending: Vec<i32>| Plan {
        decision: Decision::Wait(w),
        pending,
    };
    if pending.is_empty() {
        return Plan {
            decision: Decision::Idle,
            pending,
        };
    }
    if paused {
        return wait(Wait::Paused, pending);
    }
    if let Some(p) = pods.iter().find(|p| p.terminating || !p.ready) {
        let w = Wait::BrokerNotReady {
            id: p.id,
            pod: p.name.clone(),
        };
        return wait(w, pending);
    }
    if pods.len() < want_pods {
        let w = Wait::PodsMissing {
            have: pods.len(),
            want: want_pods,
        };
        return wait(w, pending);
    }
    let cluster = match cluster {
        Ok(c) => c,
        Err(e) => return wait(Wait::ClusterUnreachable(e.to_string()), pending),
    };
    if let Some(p) = pods.iter().find(|p| !cluster.brokers.contains(&p.id)) {
        return wait(Wait::NotRegistered { id: p.id }, pending);
    }
    let (count, sample_urp) = sample(cluster.partitions.iter().filter(|p| p.under_replicated()));
    if count > 0 {
        let w = Wait::UnderReplicated {
            count,
            sample: sample_urp,
        };
        return wait(w, pending);
    }
    // The controller is a candidate only once no other broker is left to restart.
    let ordered = order(&pending_pods, cluster.controller);
    let others: Vec<i32> = ordered
        .iter()
        .copied()
        .filter(|id| *id != cluster.controller)
        .collect();
    let candidates = if others.is_empty() { ordered } else { others };
    let mut first_block = None;
    for id in &candidates {
        let blocking = blocking_partitions(cluster, *id);
        if blocking.is_empty() {
            let Some(pod) = pending_pods.iter().find(|p| p.id == *id) else {
                continue;
            };
            return Plan {
                decision: Decision::Restart {
                    id: *id,
                    pod: pod.name.clone(),
                    reasons: pod.reasons.clone(),
                },
                pending,
            };
        }
        if first_block.is_none() {
            let (count, s) = sample(blocking.into_iter());
            first_block = Some(Wait::MinInsyncReplicas {
                id: *id,
                count,
                sample: s,
            });
        }
    }
    let w = first_block.unwrap_or(Wait::ClusterUnreachable("no candidate".into()));
    wait(w, pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pod(id: i32, stale: bool) -> BrokerPod {
        BrokerPod {
            id,
            name: format!("b-{id}"),
            ready: true,
            terminating: false,
            reasons: if stale {
                vec![RestartReason::Revision {
                    pod: "old".into(),
                    want: "new".into(),
                }]
            } else {
                vec![]
            },
        }
    }

    fn part(t: &str, replicas: &[i32], isr: &[i32], min: i32) -> Partition {
        Partition {
            topic: t.into(),
            partition: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            min_isr: min,
        }
    }

    fn cluster(controller: i32, parts: Vec<Partition>) -> ClusterState {
        ClusterState {
            controller,
            brokers: vec![0, 1000, 2000],
            partitions: parts,
        }
    }

    fn three(stale: [bool; 3]) -> Vec<BrokerPod> {
        vec![pod(0, stale[0]), pod(1000, stale[1]), pod(2000, stale[2])]
    }

    fn restarts(p: &Plan) -> Option<i32> {
        match &p.decision {
            Decision::Restart { id, .. } => Some(*id),
            _ => None,
        }
    }

    fn waits(p: &Plan) -> &'static str {
        match &p.decision {
            Decision::Wait(w) => w.reason(),
            Decision::Idle => "Idle",
            Decision::Restart { .. } => "Restart",
        }
    }

    #[test]
    fn table() {
        let healthy = cluster(0, vec![part("t", &[0, 1000, 2000], &[0, 1000, 2000], 2)]);
        let urp = cluster(0, vec![part("t", &[0, 1000, 2000], &[0, 2000], 2)]);
        let rf2 = cluster(0, vec![part("t", &[1000, 2000], &[1000, 2000], 1)]);
        let min_eq_rf = cluster(0, vec![part("t", &[0, 1000], &[0, 1000], 2)]);
        let not_ready = {
            let mut p = three([true, true, true]);
            p[1].ready = false;
            p
        };
        let terminating = {
            let mut p = three([true, false, true]);
            p[0].terminating = true;
            p
        };
        let ctl2000 = cluster(2000, healthy.partitions.clone());
        let empty = cluster(0, vec![]);
        let unregistered = ClusterState {
            brokers: vec![0, 2000],
            ..healthy.clone()
        };
        // (name, pods, want, cluster, paused, expected restart or wait reason)
        type Row<'a> = (
            &'a str,
            Vec<BrokerPod>,
            usize,
            Result<&'a ClusterState, &'a str>,
            bool,
            &'a str,
        );
        let rows: Vec<Row> = vec![
            (
                "nothing stale",
                three([false; 3]),
                3,
                Ok(&healthy),
                false,
                "Idle",
            ),
            (
                "nothing stale, even paused",
                three([false; 3]),
                3,
                Ok(&healthy),
                true,
                "Idle",
            ),
            (
                "controller last",
                three([true; 3]),
                3,
                Ok(&healthy),
                false,
                "1000",
            ),
            (
                "lowest id first",
                three([false, true, true]),
                3,
                Ok(&ctl2000),
                false,
                "1000",
            ),
            (
                "controller alone goes",
                three([true, false, false]),
                3,
                Ok(&healthy),
                false,
                "0",
            ),
            ("paused", three([true; 3]), 3, Ok(&healthy), true, "Paused"),
            (
                "a pod not ready",
                not_ready,
                3,
                Ok(&healthy),
                false,
                "BrokerNotReady",
            ),
            (
                "a pod terminating",
                terminating,
                3,
                Ok(&healthy),
                false,
                "BrokerNotReady",
            ),
            (
                "a pod missing",
                vec![pod(0, true), pod(1000, false)],
                3,
                Ok(&healthy),
                false,
                "BrokerPodsMissing",
            ),
            (
                "unreachable",
                three([true; 3]),
                3,
                Err("refused"),
                false,
                "ClusterUnreachable",
            ),
            (
                "not registered",
                three([true; 3]),
                3,
                Ok(&unregistered),
                false,
                "BrokerNotRegistered",
            ),
            (
                "under-replicated",
                three([true; 3]),
                3,
                Ok(&urp),
                false,
                "UnderReplicatedPartitions",
            ),
            (
                "RF2 min1 may lose one",
                three([false, true, false]),
                3,
                Ok(&rf2),
                false,
                "1000",
            ),
            (
                "min == RF never holds",
                three([false, true, false]),
                3,
                Ok(&min_eq_rf),
                false,
                "1000",
            ),
            (
                "empty cluster",
                three([true; 3]),
                3,
                Ok(&empty),
                false,
                "1000",
            ),
        ];
        for (name, pods, want, c, paused, expect) in rows {
            let p = decide(&pods, want, c, paused);
            let got = restarts(&p)
                .map(|id| id.to_string())
                .unwrap_or_else(|| waits(&p).to_string());
            assert_eq!(got, expect, "{name}: {p:?}");
        }
    }

    #[test]
    fn the_gate_counts_in_sync_replicas_left() {
        // An ISR already at the floor: the gate refuses though nothing else is checked.
        let p = part("t", &[0, 1000, 2000], &[0, 1000], 2);
        assert!(p.breaks_without(0));
        assert!(p.breaks_without(1000));
        assert!(
            !p.breaks_without(2000),
            "not in the ISR: losing it costs nothing"
        );
        let c = cluster(0, vec![p]);
        assert_eq!(blocking_partitions(&c, 1000).len(), 1);
    }

    #[test]
    fn messages_name_the_cause() {
        let w = Wait::UnderReplicated {
            count: 2,
            sample: vec!["t-0".into(), "t-1".into()],
        };
        assert!(w.to_string().contains("t-0, t-1"), "{w}");
        let r = RestartReason::FileSystemResizePending {
            pvc: "data-x".into(),
        };
        assert_eq!(r.code(), "FileSystemResizePending");
        assert!(r.to_string().contains("data-x"));
    }

    fn arb_cluster() -> impl Strategy<Value = (Vec<BrokerPod>, ClusterState)> {
        let ids = [0, 1, 2, 3, 4];
        (
            proptest::collection::vec(any::<bool>(), 5),
            0usize..5,
            proptest::collection::vec(
                (
                    proptest::sample::subsequence(ids.to_vec(), 1..=5),
                    proptest::collection::vec(any::<bool>(), 5),
                    1i32..4,
                ),
                0..12,
            ),
        )
            .prop_map(|(stale, controller, parts)| {
                let pods = (0..5).map(|i| pod(i, stale[i as usize])).collect();
                let partitions = parts
                    .into_iter()
                    .enumerate()
                    .map(|(n, (replicas, in_sync, min))| Partition {
                        topic: format!("t{n}"),
                        partition: 0,
                        isr: replicas
                            .iter()
                            .copied()
                            .filter(|r| in_sync[*r as usize])
                            .collect(),
                        replicas,
                        min_isr: min,
                    })
                    .collect();
                (
                    pods,
                    ClusterState {
                        controller: controller as i32,
                        brokers: (0..5).collect(),
                        partitions,
                    },
                )
            })
    }

    proptest! {
        #[test]
        fn never_approves_a_restart_below_min_insync((pods, c) in arb_cluster()) {
            let plan = decide(&pods, pods.len(), Ok(&c), false);
            if let Decision::Restart { id, .. } = plan.decision {
                for p in &c.partitions {
                    let left = p.isr.iter().filter(|r| **r != id).count() as i32;
                    // Every partition that can spare a replica keeps min.insync.replicas.
                    if (p.replicas.len() as i32) > p.min_isr {
                        prop_assert!(left >= p.min_isr, "{p:?} restarting {id}");
                    }
                    // And nothing is restarted while anything is under-replicated.
                    prop_assert_eq!(p.isr.len(), p.replicas.len());
                }
                // Only stale brokers restart, and the controller only when no other is stale.
                prop_assert!(pods.iter().any(|p| p.id == id && !p.reasons.is_empty()));
                if id == c.controller {
                    prop_assert!(pods.iter().all(|p| p.id == id || p.reasons.is_empty()));
                }
            }
        }

        #[test]
        fn paused_or_unready_never_restarts((mut pods, c) in arb_cluster(), which in 0usize..5) {
            prop_assert!(restarts(&decide(&pods, pods.len(), Ok(&c), true)).is_none());
            pods[which].ready = false;
            prop_assert!(restarts(&decide(&pods, pods.len(), Ok(&c), false)).is_none());
        }
    }
}
