//! The controller's decisions as pure functions: given a partition's replica assignment, its
//! current leader/ISR and which brokers are alive, what should its new state be?
//!
//! Modelled on Kafka's ZooKeeper-mode partition state machine: leaders come from the in-sync
//! replicas only (unless unclean election is allowed), the assignment order decides between
//! candidates (the first replica is the preferred leader), and the leader epoch goes up by one on
//! every leader change so that a deposed leader's requests are recognisably stale. The I/O driver
//! (`super`) applies the results with conditional writes.

use std::collections::BTreeSet;
use std::fmt;

/// The part of a partition's state the controller decides (the state znode minus bookkeeping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAndIsr {
    /// -1 when no replica can lead.
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// Why a partition's state changed (logged with every change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A new partition got its first state.
    NewPartition,
    /// The leader died (or was -1) and an in-sync replica took over.
    OfflinePartition,
    /// No in-sync replica was alive and unclean election was allowed.
    UncleanElection,
    /// The leader died and no replica could take over: the partition is offline.
    NoLeader,
    /// Only the ISR changed: dead (or shutting-down) followers were removed.
    IsrShrink,
    /// Leadership moved off a broker that asked for a controlled shutdown.
    ControlledShutdown,
    /// Leadership moved back to the preferred (first) replica.
    PreferredReplica,
    /// A partition reassignment began, was cancelled or completed (see `reassign`).
    Reassignment,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::NewPartition => "new-partition",
            Reason::OfflinePartition => "offline-partition",
            Reason::UncleanElection => "unclean-election",
            Reason::NoLeader => "no-leader",
            Reason::IsrShrink => "isr-shrink",
            Reason::ControlledShutdown => "controlled-shutdown",
            Reason::PreferredReplica => "preferred-replica",
            Reason::Reassignment => "reassignment",
        })
    }
}

/// A decided state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub state: LeaderAndIsr,
    pub reason: Reason,
}

/// Which brokers may take part in elections.
#[derive(Debug, Clone, Copy)]
pub struct Liveness<'a> {
    /// Registered brokers (ephemeral znode present).
    pub live: &'a BTreeSet<i32>,
    /// Live brokers that asked for a controlled shutdown: they keep their replicas but are only
    /// elected when nobody else can lead.
    pub shutting_down: &'a BTreeSet<i32>,
}

impl Liveness<'_> {
    fn is_live(&self, id: i32) -> bool {
        self.live.contains(&id)
    }

    fn can_lead(&self, id: i32) -> bool {
        self.is_live(id) && !self.shutting_down.contains(&id)
    }
}

/// First state of a new partition: the first live replica in assignment order leads, every live
/// replica is in sync (a new partition is empty), epoch 0. `None` while no replica is alive: the
/// state is created once one registers (a state with no possible leader would have an empty ISR,
/// from which nobody could ever be elected cleanly).
pub fn initial_state(replicas: &[i32], alive: Liveness<'_>) -> Option<LeaderAndIsr> {
    let leader = replicas
        .iter()
        .copied()
        .find(|r| alive.can_lead(*r))
        .or_else(|| replicas.iter().copied().find(|r| alive.is_live(*r)))?;
    let isr = dedup_in_order(replicas.iter().copied().filter(|r| alive.is_live(*r)));
    Some(LeaderAndIsr {
        leader,
        leader_epoch: 0,
        isr,
    })
}

/// Reaction to brokers dying or registering (Kafka's offline-partition election plus the
/// replica state machine's ISR removal), for one partition:
/// - dead replicas leave the ISR, except that the ISR never becomes empty: when every member is
///   dead the old leader (if it was in sync), else the first in-sync replica in assignment order,
///   stays as the last member, so that its return can bring the partition back without data loss;
/// - a live leader stays leader (a shutting-down one too: `controlled_shutdown` moves it);
/// - otherwise (leader dead or -1) the first replica in assignment order that is live and in the
///   ISR leads (one not shutting down preferred); failing that, with `unclean` the first live
///   replica leads with ISR = [it]; failing that the leader is -1;
/// - the leader epoch goes up by one when the leader changes (also to -1).
///
/// `None` when nothing changes. Applying it to its own result gives `None` (it is idempotent),
/// so the driver may call it for every partition on every pass.
pub fn reelect(
    replicas: &[i32],
    current: &LeaderAndIsr,
    alive: Liveness<'_>,
    unclean: bool,
) -> Option<Change> {
    let mut isr: Vec<i32> =
        dedup_in_order(current.isr.iter().copied().filter(|r| alive.is_live(*r)));
    if isr.is_empty() && !current.isr.is_empty() {
        let last = if current.isr.contains(&current.leader) {
            current.leader
        } else {
            replicas
                .iter()
                .copied()
                .find(|r| current.isr.contains(r))
                .unwrap_or(current.isr[0])
        };
        isr = vec![last];
    }

    if current.leader >= 0 && alive.is_live(current.leader) {
        if isr == current.isr {
            return None;
        }
        return Some(Change {
            state: LeaderAndIsr {
                leader: current.leader,
                leader_epoch: current.leader_epoch,
                isr,
            },
            reason: Reason::IsrShrink,
        });
    }

    let in_sync = |r: &i32| isr.contains(r) && alive.is_live(*r);
    let clean = replicas
        .iter()
        .copied()
        .find(|r| in_sync(r) && alive.can_lead(*r))
        .or_else(|| replicas.iter().copied().find(in_sync));
    let (leader, isr, reason) = match clean {
        Some(l) => (l, isr, Reason::OfflinePartition),
        None => {
            let unclean_pick = if unclean {
                replicas
                    .iter()
                    .copied()
                    .find(|r| alive.can_lead(*r))
                    .or_else(|| replicas.iter().copied().find(|r| alive.is_live(*r)))
            } else {
                None
            };
            match unclean_pick {
                Some(l) => (l, vec![l], Reason::UncleanElection),
                None => (-1, isr, Reason::NoLeader),
            }
        }
    };
    if leader == current.leader && isr == current.isr {
        return None;
    }
    let reason = if leader == current.leader {
        Reason::IsrShrink
    } else {
        reason
    };
    Some(Change {
        state: LeaderAndIsr {
            leader,
            leader_epoch: next_epoch(current, leader),
            isr,
        },
        reason,
    })
}

/// Would `reelect` with unclean election allowed pick a leader where the clean one leaves the
/// partition offline? The driver reads the topic's config only then.
pub fn unclean_would_help(replicas: &[i32], current: &LeaderAndIsr, alive: Liveness<'_>) -> bool {
    match reelect(replicas, current, alive, false) {
        Some(c) if c.state.leader >= 0 => false,
        None if current.leader >= 0 => false,
        _ => replicas.iter().any(|r| alive.is_live(*r)),
    }
}

/// Controlled shutdown of `broker`, for one partition: when it leads, leadership moves to the
/// first other replica (assignment order) that is live, in sync and not shutting down itself,
/// and `broker` leaves the ISR; when no such replica exists it keeps leading (moving would make
/// the partition unavailable). When it is a follower and `drop_follower` is set, it leaves the
/// ISR so that acks=all writes stop waiting for it (the leader stays, so the ISR is not empty).
pub fn controlled_shutdown(
    replicas: &[i32],
    current: &LeaderAndIsr,
    broker: i32,
    alive: Liveness<'_>,
    drop_follower: bool,
) -> Option<Change> {
    let without: Vec<i32> = current
        .isr
        .iter()
        .copied()
        .filter(|r| *r != broker)
        .collect();
    if current.leader == broker {
        let next = replicas
            .iter()
            .copied()
            .find(|r| *r != broker && without.contains(r) && alive.can_lead(*r))?;
        return Some(Change {
            state: LeaderAndIsr {
                leader: next,
                leader_epoch: next_epoch(current, next),
                isr: without,
            },
            reason: Reason::ControlledShutdown,
        });
    }
    if drop_follower && current.isr.contains(&broker) && !without.is_empty() && current.leader >= 0
    {
        return Some(Change {
            state: LeaderAndIsr {
                leader: current.leader,
                leader_epoch: current.leader_epoch,
                isr: without,
            },
            reason: Reason::ControlledShutdown,
        });
    }
    None
}

/// Preferred-leader election for one partition: the first replica takes over when it is live,
/// not shutting down, in sync and not already the leader. The ISR is unchanged.
pub fn preferred_election(
    replicas: &[i32],
    current: &LeaderAndIsr,
    alive: Liveness<'_>,
) -> Option<Change> {
    let preferred = *replicas.first()?;
    if current.leader == preferred
        || !alive.can_lead(preferred)
        || !current.isr.contains(&preferred)
    {
        return None;
    }
    Some(Change {
        state: LeaderAndIsr {
            leader: preferred,
            leader_epoch: next_epoch(current, preferred),
            isr: current.isr.clone(),
        },
        reason: Reason::PreferredReplica,
    })
}

/// Brokers whose leader imbalance is over `percentage` (leader.imbalance.per.broker.percentage):
/// of the partitions that prefer a broker (it is their first replica), the share it does not
/// lead. As in Kafka, the periodic preferred-leader check moves leadership back only for these
/// brokers, so a few stray leaders do not cause a round of leader changes every interval.
/// `partitions` yields each partition's replicas and current leader.
pub fn imbalanced_brokers<'a>(
    partitions: impl IntoIterator<Item = (&'a [i32], i32)>,
    percentage: u32,
) -> BTreeSet<i32> {
    // broker → (partitions preferring it, of which it does not lead)
    let mut counts: std::collections::BTreeMap<i32, (u64, u64)> = Default::default();
    for (replicas, leader) in partitions {
        let Some(&preferred) = replicas.first() else {
            continue;
        };
        let c = counts.entry(preferred).or_default();
        c.0 += 1;
        if leader != preferred {
            c.1 += 1;
        }
    }
    counts
        .into_iter()
        .filter(|(_, (total, off))| off * 100 > u64::from(percentage) * total)
        .map(|(b, _)| b)
        .collect()
}

fn next_epoch(current: &LeaderAndIsr, new_leader: i32) -> i32 {
    if new_leader == current.leader {
        current.leader_epoch
    } else {
        current.leader_epoch.saturating_add(1)
    }
}

fn dedup_in_order(ids: impl Iterator<Item = i32>) -> Vec<i32> {
    let mut out: Vec<i32> = Vec::new();
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    /// (leader, leader epoch, ISR) in the tables.
    type S = (i32, i32, &'static [i32]);
    type Ids = &'static [i32];

    fn st(leader: i32, epoch: i32, isr: &[i32]) -> LeaderAndIsr {
        LeaderAndIsr {
            leader,
            leader_epoch: epoch,
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn initial_state_table() {
        // (replicas, live, shutting down, expected (leader, isr))
        type Case = (Ids, Ids, Ids, Option<(i32, Ids)>);
        let cases: &[Case] = &[
            (&[1, 2, 3], &[1, 2, 3], &[], Some((1, &[1, 2, 3]))),
            (&[2, 3, 1], &[1, 2, 3], &[], Some((2, &[2, 3, 1]))),
            (&[1, 2, 3], &[2, 3], &[], Some((2, &[2, 3]))),
            (&[1, 2, 3], &[3], &[], Some((3, &[3]))),
            (&[1, 2, 3], &[4, 5], &[], None),
            (&[1, 2, 3], &[], &[], None),
            (&[], &[1], &[], None),
            // A shutting-down broker is in sync but does not lead when another can.
            (&[1, 2], &[1, 2], &[1], Some((2, &[1, 2]))),
            (&[1, 2], &[1, 2], &[1, 2], Some((1, &[1, 2]))),
        ];
        for (replicas, live, down, want) in cases {
            let (live, down) = (set(live), set(down));
            let got = initial_state(
                replicas,
                Liveness {
                    live: &live,
                    shutting_down: &down,
                },
            );
            let want = want.map(|(l, isr)| st(l, 0, isr));
            assert_eq!(
                got, want,
                "replicas {replicas:?} live {live:?} down {down:?}"
            );
        }
    }

    #[test]
    fn reelect_table() {
        struct Case {
            name: &'static str,
            replicas: &'static [i32],
            current: (i32, i32, &'static [i32]),
            live: &'static [i32],
            down: &'static [i32],
            unclean: bool,
            want: Option<(S, Reason)>,
        }
        let cases = [
            Case {
                name: "all alive: nothing to do",
                replicas: &[1, 2, 3],
                current: (1, 4, &[1, 2, 3]),
                live: &[1, 2, 3],
                down: &[],
                unclean: false,
                want: None,
            },
            Case {
                name: "leader dies: next in-sync replica in assignment order",
                replicas: &[1, 2, 3],
                current: (1, 4, &[1, 2, 3]),
                live: &[2, 3],
                down: &[],
                unclean: false,
                want: Some(((2, 5, &[2, 3]), Reason::OfflinePartition)),
            },
            Case {
                name: "assignment order decides, not ISR order",
                replicas: &[1, 3, 2],
                current: (1, 4, &[2, 1, 3]),
                live: &[2, 3],
                down: &[],
                unclean: false,
                want: Some(((3, 5, &[2, 3]), Reason::OfflinePartition)),
            },
            Case {
                name: "out-of-sync replica is skipped",
                replicas: &[1, 2, 3],
                current: (1, 4, &[1, 3]),
                live: &[2, 3],
                down: &[],
                unclean: false,
                want: Some(((3, 5, &[3]), Reason::OfflinePartition)),
            },
            Case {
                name: "follower dies: only the ISR shrinks, epoch unchanged",
                replicas: &[1, 2, 3],
                current: (1, 4, &[1, 2, 3]),
                live: &[1, 3],
                down: &[],
                unclean: false,
                want: Some(((1, 4, &[1, 3]), Reason::IsrShrink)),
            },
            Case {
                name: "no in-sync replica alive, clean: offline, last ISR member kept",
                replicas: &[1, 2, 3],
                current: (1, 4, &[1]),
                live: &[2, 3],
                down: &[],
                unclean: false,
                want: Some(((-1, 5, &[1]), Reason::NoLeader)),
            },
            Case {
                name: "no in-sync replica alive, unclean allowed: first live replica",
                replicas: &[1, 2, 3],
                current: (1, 4, &[1]),
                live: &[3, 2],
                down: &[],
                unclean: true,
                want: Some(((2, 5, &[2]), Reason::UncleanElection)),
            },
            Case {
                name: "everyone dead at once: old leader stays as the last ISR member",
                replicas: &[1, 2, 3],
                current: (2, 4, &[1, 2, 3]),
                live: &[],
                down: &[],
                unclean: true,
                want: Some(((-1, 5, &[2]), Reason::NoLeader)),
            },
            Case {
                name: "already offline and still nobody: no change",
                replicas: &[1, 2, 3],
                current: (-1, 5, &[1]),
                live: &[2, 3],
                down: &[],
                unclean: false,
                want: None,
            },
            Case {
                name: "offline partition's last in-sync replica returns: it leads",
                replicas: &[1, 2, 3],
                current: (-1, 5, &[1]),
                live: &[1, 2, 3],
                down: &[],
                unclean: false,
                want: Some(((1, 6, &[1]), Reason::OfflinePartition)),
            },
            Case {
                name: "offline partition, out-of-sync replica returns: still offline",
                replicas: &[1, 2, 3],
                current: (-1, 5, &[1]),
                live: &[2],
                down: &[],
                unclean: false,
                want: None,
            },
            Case {
                name: "offline partition, unclean allowed, out-of-sync replica returns",
                replicas: &[1, 2, 3],
                current: (-1, 5, &[1]),
                live: &[3],
                down: &[],
                unclean: true,
                want: Some(((3, 6, &[3]), Reason::UncleanElection)),
            },
            Case {
                name: "a shutting-down in-sync replica leads only as the last resort",
                replicas: &[1, 2, 3],
                current: (1, 4, &[1, 2, 3]),
                live: &[2, 3],
                down: &[2],
                unclean: false,
                want: Some(((3, 5, &[2, 3]), Reason::OfflinePartition)),
            },
            Case {
                name: "a shutting-down in-sync replica as the last resort",
                replicas: &[1, 2, 3],
                current: (1, 4, &[1, 2]),
                live: &[2, 3],
                down: &[2],
                unclean: false,
                want: Some(((2, 5, &[2]), Reason::OfflinePartition)),
            },
            Case {
                name: "live shutting-down leader is left to controlled shutdown",
                replicas: &[1, 2],
                current: (1, 4, &[1, 2]),
                live: &[1, 2],
                down: &[1],
                unclean: false,
                want: None,
            },
            Case {
                name: "dead follower and dead leader in one pass",
                replicas: &[1, 2, 3],
                current: (1, 4, &[1, 2, 3]),
                live: &[3],
                down: &[],
                unclean: false,
                want: Some(((3, 5, &[3]), Reason::OfflinePartition)),
            },
        ];
        for c in cases {
            let (live, down) = (set(c.live), set(c.down));
            let alive = Liveness {
                live: &live,
                shutting_down: &down,
            };
            let current = st(c.current.0, c.current.1, c.current.2);
            let got = reelect(c.replicas, &current, alive, c.unclean);
            let want = c.want.map(|((l, e, isr), reason)| Change {
                state: st(l, e, isr),
                reason,
            });
            assert_eq!(got, want, "{}", c.name);
        }
    }

    #[test]
    fn unclean_is_only_consulted_when_it_would_change_the_outcome() {
        let (live, none) = (set(&[2, 3]), set(&[]));
        let alive = Liveness {
            live: &live,
            shutting_down: &none,
        };
        assert!(unclean_would_help(&[1, 2, 3], &st(1, 4, &[1]), alive));
        assert!(unclean_would_help(&[1, 2, 3], &st(-1, 4, &[1]), alive));
        assert!(!unclean_would_help(&[1, 2, 3], &st(1, 4, &[1, 2]), alive));
        assert!(!unclean_would_help(&[1, 2, 3], &st(2, 4, &[2]), alive));
        assert!(!unclean_would_help(&[1, 4], &st(1, 4, &[1]), alive));
    }

    #[test]
    fn controlled_shutdown_table() {
        // (replicas, current, broker, live, down, drop_follower, want)
        type Case = (Ids, S, i32, Ids, Ids, bool, Option<S>);
        let cases: &[Case] = &[
            // Leader moves to the next live in-sync replica and leaves the ISR.
            (
                &[1, 2, 3],
                (1, 4, &[1, 2, 3]),
                1,
                &[1, 2, 3],
                &[1],
                true,
                Some((2, 5, &[2, 3])),
            ),
            // Assignment order, skipping out-of-sync replicas.
            (
                &[1, 2, 3],
                (1, 4, &[1, 3]),
                1,
                &[1, 2, 3],
                &[1],
                true,
                Some((3, 5, &[3])),
            ),
            // Skipping another shutting-down broker.
            (
                &[1, 2, 3],
                (1, 4, &[1, 2, 3]),
                1,
                &[1, 2, 3],
                &[1, 2],
                true,
                Some((3, 5, &[2, 3])),
            ),
            // Nobody else in sync: keeps leading.
            (&[1, 2, 3], (1, 4, &[1]), 1, &[1, 2, 3], &[1], true, None),
            // Nobody else in sync and alive: keeps leading.
            (&[1, 2, 3], (1, 4, &[1, 2]), 1, &[1, 3], &[1], true, None),
            // Follower leaves the ISR; leader and epoch unchanged.
            (
                &[1, 2, 3],
                (2, 4, &[1, 2, 3]),
                1,
                &[1, 2, 3],
                &[1],
                true,
                Some((2, 4, &[2, 3])),
            ),
            // ... unless asked not to (already done once).
            (
                &[1, 2, 3],
                (2, 4, &[1, 2, 3]),
                1,
                &[1, 2, 3],
                &[1],
                false,
                None,
            ),
            // Follower not in the ISR: nothing.
            (&[1, 2, 3], (2, 4, &[2, 3]), 1, &[1, 2, 3], &[1], true, None),
            // Offline partition: the ISR keeps its last member.
            (&[1, 2, 3], (-1, 4, &[1]), 1, &[1, 2, 3], &[1], true, None),
        ];
        for (replicas, (l, e, isr), broker, live, down, drop, want) in cases {
            let (live, down) = (set(live), set(down));
            let alive = Liveness {
                live: &live,
                shutting_down: &down,
            };
            let got = controlled_shutdown(replicas, &st(*l, *e, isr), *broker, alive, *drop);
            let want = want.map(|(l, e, isr)| Change {
                state: st(l, e, isr),
                reason: Reason::ControlledShutdown,
            });
            assert_eq!(
                got, want,
                "replicas {replicas:?} state ({l},{e},{isr:?}) broker {broker}"
            );
        }
    }

    #[test]
    fn preferred_election_table() {
        // (replicas, current, live, down, want)
        let cases: &[(Ids, S, Ids, Ids, Option<S>)] = &[
            (
                &[1, 2, 3],
                (2, 4, &[1, 2, 3]),
                &[1, 2, 3],
                &[],
                Some((1, 5, &[1, 2, 3])),
            ),
            // Already the leader.
            (&[1, 2, 3], (1, 4, &[1, 2, 3]), &[1, 2, 3], &[], None),
            // Preferred not in sync yet (a returning broker catching up).
            (&[1, 2, 3], (2, 4, &[2, 3]), &[1, 2, 3], &[], None),
            // Preferred dead.
            (&[1, 2, 3], (2, 4, &[1, 2, 3]), &[2, 3], &[], None),
            // Preferred shutting down.
            (&[1, 2, 3], (2, 4, &[1, 2, 3]), &[1, 2, 3], &[1], None),
            // Offline partition whose preferred replica is in sync and alive: it leads.
            (
                &[1, 2, 3],
                (-1, 4, &[1]),
                &[1, 2, 3],
                &[],
                Some((1, 5, &[1])),
            ),
            (&[], (-1, 4, &[]), &[1], &[], None),
        ];
        for (replicas, (l, e, isr), live, down, want) in cases {
            let (live, down) = (set(live), set(down));
            let alive = Liveness {
                live: &live,
                shutting_down: &down,
            };
            let got = preferred_election(replicas, &st(*l, *e, isr), alive);
            let want = want.map(|(l, e, isr)| Change {
                state: st(l, e, isr),
                reason: Reason::PreferredReplica,
            });
            assert_eq!(got, want, "replicas {replicas:?} state ({l},{e},{isr:?})");
        }
    }

    /// A partition: 1-5 distinct replicas out of brokers 0..6, an ISR that is a non-empty subset
    /// of them, a leader that is an ISR member or -1, a live set and a shutting-down subset.
    fn scenario() -> impl Strategy<Value = (Vec<i32>, LeaderAndIsr, BTreeSet<i32>, BTreeSet<i32>)> {
        (
            Just((0..6).collect::<Vec<i32>>()).prop_shuffle(),
            1usize..=5,
            proptest::collection::vec(any::<bool>(), 6),
            proptest::collection::btree_set(0..6i32, 0..=6),
            proptest::collection::btree_set(0..6i32, 0..=2),
            0usize..6,
            0i32..100,
        )
            .prop_map(|(order, rf, in_isr, live, down, leader_pick, epoch)| {
                let replicas: Vec<i32> = order[..rf].to_vec();
                let mut isr: Vec<i32> = replicas
                    .iter()
                    .zip(&in_isr)
                    .filter(|(_, keep)| **keep)
                    .map(|(r, _)| *r)
                    .collect();
                if isr.is_empty() {
                    isr.push(replicas[0]);
                }
                let leader = if leader_pick == 5 {
                    -1
                } else {
                    isr[leader_pick % isr.len()]
                };
                let down: BTreeSet<i32> = down.intersection(&live).copied().collect();
                (
                    replicas,
                    LeaderAndIsr {
                        leader,
                        leader_epoch: epoch,
                        isr,
                    },
                    live,
                    down,
                )
            })
    }

    #[test]
    fn imbalanced_brokers_table() {
        let r0: &[i32] = &[0, 1, 2];
        let r1: &[i32] = &[1, 2, 0];
        // Broker 0 prefers 10 partitions and leads 9 of them: 10 % is not over 10 %.
        let mut parts: Vec<(&[i32], i32)> = vec![(r0, 0); 9];
        parts.push((r0, 1));
        parts.push((r1, 1));
        assert_eq!(imbalanced_brokers(parts.clone(), 10), set(&[]));
        // Two of ten: 20 % is over 10 %, but not over 20 %.
        parts[0] = (r0, 2);
        assert_eq!(imbalanced_brokers(parts.clone(), 10), set(&[0]));
        assert_eq!(imbalanced_brokers(parts.clone(), 20), set(&[]));
        // 0 %: any partition led elsewhere counts; broker 1 leads its one partition.
        assert_eq!(imbalanced_brokers(parts.clone(), 0), set(&[0]));
        // An offline partition (-1) is not led by its preferred replica either.
        assert_eq!(imbalanced_brokers([(r1, -1)], 99), set(&[1]));
        assert_eq!(imbalanced_brokers([(r1, -1)], 100), set(&[]));
        // Partitions with no replicas are ignored.
        assert_eq!(imbalanced_brokers([(&[][..], -1)], 0), set(&[]));
    }

    proptest! {
        #[test]
        fn imbalanced_brokers_is_the_share_led_elsewhere(
            parts in proptest::collection::vec((0..4i32, -1..4i32), 0..40),
            percentage in 0..=100u32,
        ) {
            let replicas: Vec<Vec<i32>> = parts.iter().map(|(p, _)| vec![*p, (*p + 1) % 4]).collect();
            let input: Vec<(&[i32], i32)> =
                replicas.iter().zip(&parts).map(|(r, (_, l))| (r.as_slice(), *l)).collect();
            let got = imbalanced_brokers(input, percentage);
            for b in 0..4 {
                let total = parts.iter().filter(|(p, _)| *p == b).count() as f64;
                let off = parts.iter().filter(|(p, l)| *p == b && *l != b).count() as f64;
                let over = total > 0.0 && off / total > f64::from(percentage) / 100.0;
                prop_assert_eq!(got.contains(&b), over, "broker {} off {} of {}", b, off, total);
            }
        }

        #[test]
        fn reelect_invariants((replicas, current, live, down) in scenario(), unclean in any::<bool>()) {
            let alive = Liveness { live: &live, shutting_down: &down };
            let Some(change) = reelect(&replicas, &current, alive, unclean) else {
                // No change: the leader is live, or nobody could be elected.
                prop_assert!(
                    (current.leader >= 0 && live.contains(&current.leader))
                        || (current.leader == -1
                            && !current.isr.iter().any(|r| live.contains(r))
                            && (!unclean || !replicas.iter().any(|r| live.contains(r))))
                );
                return Ok(());
            };
            let new = &change.state;
            // The ISR is never empty, only holds replicas, and a leader is in it.
            prop_assert!(!new.isr.is_empty());
            prop_assert!(new.isr.iter().all(|r| replicas.contains(r)));
            if new.leader >= 0 {
                prop_assert!(live.contains(&new.leader));
                prop_assert!(new.isr.contains(&new.leader));
                // Clean elections pick from the old ISR.
                if change.reason != Reason::UncleanElection {
                    prop_assert!(current.isr.contains(&new.leader));
                } else {
                    prop_assert!(unclean);
                    prop_assert!(!current.isr.iter().any(|r| live.contains(r)));
                }
            }
            // Every live ISR member stays in sync unless it is the leader's unclean replacement.
            if change.reason != Reason::UncleanElection {
                for r in &current.isr {
                    if live.contains(r) {
                        prop_assert!(new.isr.contains(r));
                    }
                }
            }
            // The epoch goes up by one exactly when the leader changes.
            let bump = if new.leader != current.leader { 1 } else { 0 };
            prop_assert_eq!(new.leader_epoch, current.leader_epoch + bump);
            // Idempotent: nothing more to do on the result.
            prop_assert_eq!(reelect(&replicas, new, alive, unclean), None);
        }

        #[test]
        fn controlled_shutdown_invariants((replicas, current, live, down) in scenario()) {
            let broker = replicas[0];
            let mut down = down;
            down.insert(broker);
            let alive = Liveness { live: &live, shutting_down: &down };
            if let Some(change) = controlled_shutdown(&replicas, &current, broker, alive, true) {
                let new = change.state;
                prop_assert!(!new.isr.contains(&broker));
                prop_assert!(!new.isr.is_empty());
                prop_assert!(new.leader != broker);
                prop_assert!(new.isr.contains(&new.leader));
                prop_assert!(live.contains(&new.leader) || new.leader == current.leader);
                let bump = if new.leader != current.leader { 1 } else { 0 };
                prop_assert_eq!(new.leader_epoch, current.leader_epoch + bump);
                // Once done, nothing more to do.
                prop_assert_eq!(controlled_shutdown(&replicas, &new, broker, alive, true), None);
            }
        }

        #[test]
        fn preferred_election_moves_only_to_a_live_in_sync_preferred((replicas, current, live, down) in scenario()) {
            let alive = Liveness { live: &live, shutting_down: &down };
            match preferred_election(&replicas, &current, alive) {
                Some(change) => {
                    prop_assert_eq!(change.state.leader, replicas[0]);
                    prop_assert!(current.isr.contains(&replicas[0]));
                    prop_assert!(live.contains(&replicas[0]) && !down.contains(&replicas[0]));
                    prop_assert_eq!(&change.state.isr, &current.isr);
                    prop_assert_eq!(change.state.leader_epoch, current.leader_epoch + 1);
                }
                None => prop_assert!(
                    current.leader == replicas[0]
                        || !current.isr.contains(&replicas[0])
                        || !live.contains(&replicas[0])
                        || down.contains(&replicas[0])
                ),
            }
        }
    }
}
