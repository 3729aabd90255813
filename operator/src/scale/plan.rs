//! Pure decisions of scaling: which replicas move where.
//!
//! - [`drain_plan`]: before brokers are removed (scale-in), every replica on them moves to a
//!   remaining broker: a rack (zone) the partition's other replicas do not use where one exists,
//!   the least-loaded such broker, the replica's position kept (so preferred leadership moves with
//!   it). Kafka's reassignment adds the new replica, waits until it is in sync, then drops the old
//!   one, so no move ever removes a partition's last in-sync replica. Impossible drains are
//!   refused with the reason (a replication factor above the brokers that would remain, a
//!   partition without a leader that could not copy its data).
//! - [`rebalance_plan`]: after brokers are added (scale-out), replicas move from the most to the
//!   least loaded brokers, one replica at a time, until replica counts differ by at most one, never
//!   putting two replicas of a partition in one rack where that was not already so; each move is
//!   a replica swap that keeps the replication factor. Few moves: the loop stops as soon as the
//!   spread is within one.

use std::collections::{BTreeMap, BTreeSet};

/// A broker that holds (or may hold) replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    pub id: i32,
    /// Rack (zone); brokers without a rack share the empty one.
    pub rack: String,
}

/// A partition's placement as Metadata reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub topic: String,
    pub index: i32,
    /// -1 without a leader.
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// One partition's new replica list (same length as before).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub from: Vec<i32>,
    pub to: Vec<i32>,
}

impl Move {
    /// Brokers gaining a replica.
    pub fn adding(&self) -> Vec<i32> {
        self.to
            .iter()
            .copied()
            .filter(|b| !self.from.contains(b))
            .collect()
    }
}

/// Why a drain can't be done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{topic} has replication factor {rf}, but only {remaining} broker(s) would remain: \
         lower its replication factor or keep more brokers"
    )]
    ReplicationFactor {
        topic: String,
        rf: usize,
        remaining: usize,
    },
    #[error(
        "{topic}-{partition} has no leader, so its replicas on the brokers being removed \
         ({brokers:?}) can't be copied; bring its replicas back first"
    )]
    Offline {
        topic: String,
        partition: i32,
        brokers: Vec<i32>,
    },
}

fn rack_of(brokers: &[Broker], id: i32) -> Option<&str> {
    brokers.iter().find(|b| b.id == id).map(|b| b.rack.as_str())
}

/// Replica counts of `brokers` over `parts` (brokers not listed are not counted).
fn loads(brokers: &[Broker], parts: &[Partition]) -> BTreeMap<i32, usize> {
    let mut load: BTreeMap<i32, usize> = brokers.iter().map(|b| (b.id, 0)).collect();
    for p in parts {
        for r in &p.replicas {
            if let Some(n) = load.get_mut(r) {
                *n += 1;
            }
        }
    }
    load
}

/// Moves every replica off `removing` onto `remaining`, or says why it can't.
pub fn drain_plan(
    remaining: &[Broker],
    removing: &[i32],
    parts: &[Partition],
) -> Result<Vec<Move>, Refusal> {
    let removing: BTreeSet<i32> = removing.iter().copied().collect();
    let remaining: Vec<Broker> = remaining
        .iter()
        .filter(|b| !removing.contains(&b.id))
        .cloned()
        .collect();
    let mut sorted: Vec<&Partition> = parts.iter().collect();
    sorted.sort_by(|a, b| (&a.topic, a.index).cmp(&(&b.topic, b.index)));
    // Refusals first, so that nothing starts when something can't finish.
    for p in &sorted {
        let on_removed: Vec<i32> = p
            .replicas
            .iter()
            .copied()
            .filter(|r| removing.contains(r))
            .collect();
        if on_removed.is_empty() {
            continue;
        }
        if p.replicas.len() > remaining.len() {
            return Err(Refusal::ReplicationFactor {
                topic: p.topic.clone(),
                rf: p.replicas.len(),
                remaining: remaining.len(),
            });
        }
        if p.leader < 0 {
            return Err(Refusal::Offline {
                topic: p.topic.clone(),
                partition: p.index,
                brokers: on_removed,
            });
        }
    }
    let mut load = loads(&remaining, parts);
    let mut moves = Vec::new();
    for p in sorted {
        if !p.replicas.iter().any(|r| removing.contains(r)) {
            continue;
        }
        let mut to = p.replicas.clone();
        for slot in 0..to.len() {
            if !removing.contains(&to[slot]) {
                continue;
            }
            let used_racks: BTreeSet<&str> = to
                .iter()
                .enumerate()
                .filter(|(i, r)| *i != slot && !removing.contains(r))
                .filter_map(|(_, r)| rack_of(&remaining, *r))
                .collect();
            let candidates = remaining.iter().filter(|b| !to.contains(&b.id));
            // (rack already used, load, id): a new rack first, then the least loaded.
            let best = candidates.min_by_key(|b| {
                (
                    used_racks.contains(b.rack.as_str()),
                    load.get(&b.id).copied().unwrap_or(0),
                    b.id,
                )
            });
            // Enough brokers remain (checked above), so a candidate exists.
            let Some(best) = best else { continue };
            to[slot] = best.id;
            *load.entry(best.id).or_insert(0) += 1;
        }
        moves.push(Move {
            topic: p.topic.clone(),
            partition: p.index,
            from: p.replicas.clone(),
            to,
        });
    }
    Ok(moves)
}

/// Moves replicas onto under-loaded brokers (typically new ones) until replica counts differ by
/// at most one. Partitions that are not fully in sync, or have no leader, are left alone.
pub fn rebalance_plan(brokers: &[Broker], parts: &[Partition]) -> Vec<Move> {
    let mut current: Vec<Partition> = parts.to_vec();
    current.sort_by(|a, b| (&a.topic, a.index).cmp(&(&b.topic, b.index)));
    let movable = |p: &Partition| {
        p.leader >= 0
            && p.replicas.iter().all(|r| p.isr.contains(r))
            && p.replicas
                .iter()
                .all(|r| brokers.iter().any(|b| b.id == *r))
    };
    let mut load = loads(brokers, &current);
    let mut moved: BTreeMap<(String, i32), Vec<i32>> = BTreeMap::new();
    // Each step lowers the sum of squared loads, so this ends; the bound is a guard.
    let total: usize = load.values().sum();
    for _ in 0..=total {
        let mut by_load: Vec<(usize, i32)> = load.iter().map(|(b, n)| (*n, *b)).collect();
        by_load.sort();
        let Some(&(max, _)) = by_load.last() else {
            break;
        };
        let Some(&(min, _)) = by_load.first() else {
            break;
        };
        if max <= min + 1 {
            break;
        }
        let mut step: Option<(usize, i32, i32)> = None; // (partition position, from, to)
                                                        // Most loaded sources first, least loaded targets first; a same-rack swap first.
        'search: for &(src_load, src) in by_load.iter().rev() {
            for &(dst_load, dst) in by_load.iter() {
                if src_load <= dst_load + 1 {
                    break;
                }
                let (Some(src_rack), Some(dst_rack)) =
                    (rack_of(brokers, src), rack_of(brokers, dst))
                else {
                    continue;
                };
                let mut fallback = None;
                for (i, p) in current.iter().enumerate() {
                    if !movable(p) || !p.replicas.contains(&src) || p.replicas.contains(&dst) {
                        continue;
                    }
                    if dst_rack == src_rack {
                        step = Some((i, src, dst));
                        break 'search;
                    }
                    let others_use_dst_rack = p
                        .replicas
                        .iter()
                        .filter(|r| **r != src)
                        .any(|r| rack_of(brokers, *r) == Some(dst_rack));
                    if !others_use_dst_rack && fallback.is_none() {
                        fallback = Some((i, src, dst));
                    }
                }
                if let Some(f) = fallback {
                    step = Some(f);
                    break 'search;
                }
            }
        }
        let Some((i, src, dst)) = step else { break };
        let p = &mut current[i];
        for r in p.replicas.iter_mut() {
            if *r == src {
                *r = dst;
            }
        }
        for r in p.isr.iter_mut() {
            if *r == src {
                *r = dst;
            }
        }
        if p.leader == src {
            p.leader = dst;
        }
        moved.insert((p.topic.clone(), p.index), p.replicas.clone());
        *load.entry(src).or_insert(1) -= 1;
        *load.entry(dst).or_insert(0) += 1;
    }
    let mut out = Vec::new();
    for p in parts {
        if let Some(to) = moved.get(&(p.topic.clone(), p.index)) {
            if *to != p.replicas {
                out.push(Move {
                    topic: p.topic.clone(),
                    partition: p.index,
                    from: p.replicas.clone(),
                    to: to.clone(),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    out
}

/// (partition, broker) pairs of one topic's throttled-replicas list.
type ReplicaSet = BTreeSet<(i32, i32)>;

/// Topic configs of the replication throttle for a set of moves, as Kafka's reassignment tool
/// sets them: leader side on every current replica (whichever leads serves the copies), follower
/// side on the replicas being added. `(topic → (leader list, follower list))`.
pub fn throttled_replicas(moves: &[Move]) -> BTreeMap<String, (String, String)> {
    let mut per_topic: BTreeMap<String, (ReplicaSet, ReplicaSet)> = BTreeMap::new();
    for m in moves {
        let e = per_topic.entry(m.topic.clone()).or_default();
        for r in &m.from {
            e.0.insert((m.partition, *r));
        }
        for r in m.adding() {
            e.1.insert((m.partition, r));
        }
    }
    let fmt = |s: &BTreeSet<(i32, i32)>| {
        s.iter()
            .map(|(p, b)| format!("{p}:{b}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    per_topic
        .into_iter()
        .map(|(t, (l, f))| (t, (fmt(&l), fmt(&f))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brokers(spec: &[(i32, &str)]) -> Vec<Broker> {
        spec.iter()
            .map(|(id, rack)| Broker {
                id: *id,
                rack: rack.to_string(),
            })
            .collect()
    }

    fn part(topic: &str, index: i32, replicas: &[i32]) -> Partition {
        Partition {
            topic: topic.into(),
            index,
            leader: replicas[0],
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
        }
    }

    /// Three zones with two brokers each (ids zone*1000 + ordinal), as the operator names them.
    fn six() -> Vec<Broker> {
        brokers(&[
            (0, "a"),
            (1, "a"),
            (1000, "b"),
            (1001, "b"),
            (2000, "c"),
            (2001, "c"),
        ])
    }

    #[test]
    fn drain_table() {
        struct Case {
            name: &'static str,
            parts: Vec<Partition>,
            removing: Vec<i32>,
            want: Result<Vec<(i32, Vec<i32>)>, &'static str>,
        }
        let remaining3 = brokers(&[(0, "a"), (1000, "b"), (2000, "c")]);
        let cases = vec![
            Case {
                name: "RF=3 across zones: each removed replica goes to its own zone's survivor",
                parts: vec![
                    part("t", 0, &[1, 1001, 2001]),
                    part("t", 1, &[0, 1000, 2000]),
                ],
                removing: vec![1, 1001, 2001],
                want: Ok(vec![(0, vec![0, 1000, 2000])]),
            },
            Case {
                name: "RF=1 on a removed broker moves to the least loaded survivor",
                parts: vec![
                    part("t", 0, &[1]),
                    part("t", 1, &[0]),
                    part("t", 2, &[1000]),
                ],
                removing: vec![1, 1001, 2001],
                want: Ok(vec![(0, vec![2000])]),
            },
            Case {
                name: "the leader position is kept: the new replica is preferred leader",
                parts: vec![part("t", 0, &[1001, 0, 2000])],
                removing: vec![1, 1001, 2001],
                want: Ok(vec![(0, vec![1000, 0, 2000])]),
            },
            Case {
                name: "nothing on removed brokers: no moves",
                parts: vec![part("t", 0, &[0, 1000, 2000])],
                removing: vec![1, 1001, 2001],
                want: Ok(vec![]),
            },
            Case {
                name: "RF above the brokers that remain is refused",
                parts: vec![part("big", 0, &[0, 1, 1000, 1001])],
                removing: vec![1, 1001, 2001],
                want: Err("big has replication factor 4, but only 3 broker(s) would remain"),
            },
            Case {
                name: "a partition without a leader is refused",
                parts: vec![Partition {
                    leader: -1,
                    ..part("dead", 2, &[1])
                }],
                removing: vec![1, 1001, 2001],
                want: Err("dead-2 has no leader"),
            },
        ];
        for c in cases {
            let got = drain_plan(&remaining3, &c.removing, &c.parts);
            match (got, c.want) {
                (Ok(moves), Ok(want)) => {
                    let got: Vec<(i32, Vec<i32>)> =
                        moves.iter().map(|m| (m.partition, m.to.clone())).collect();
                    assert_eq!(got, want, "{}", c.name);
                }
                (Err(e), Err(want)) => {
                    assert!(e.to_string().contains(want), "{}: {e}", c.name)
                }
                (got, want) => panic!("{}: got {got:?}, want {want:?}", c.name),
            }
        }
    }

    #[test]
    fn drain_without_racks_balances_by_count() {
        let remaining = brokers(&[(0, ""), (1, ""), (2, "")]);
        let parts: Vec<Partition> = (0..6).map(|i| part("t", i, &[3])).collect();
        let moves = drain_plan(&remaining, &[3], &parts).unwrap();
        let mut count = BTreeMap::new();
        for m in &moves {
            *count.entry(m.to[0]).or_insert(0) += 1;
        }
        assert_eq!(count.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    }

    #[test]
    fn rebalance_table() {
        // Scale-out 1 → 2 per zone: 6 partitions RF=3 on the three old brokers.
        let parts: Vec<Partition> = (0..6).map(|i| part("t", i, &[0, 1000, 2000])).collect();
        let moves = rebalance_plan(&six(), &parts);
        let after = apply(&parts, &moves);
        let load = loads(&six(), &after);
        assert!(load.values().all(|n| *n == 3), "{load:?}");
        // Same-zone swaps only, each partition keeps one replica per zone.
        for p in &after {
            let racks: BTreeSet<_> = p.replicas.iter().map(|r| r / 1000).collect();
            assert_eq!(racks.len(), 3, "{p:?}");
        }
        // Minimal: 9 replicas must move (3 per new broker), one per move here.
        let moved: usize = moves.iter().map(|m| m.adding().len()).sum();
        assert_eq!(moved, 9);

        // Already balanced: nothing moves.
        assert!(rebalance_plan(&six(), &after).is_empty());

        // Under-replicated partitions are left alone.
        let mut lagging = parts.clone();
        for p in &mut lagging {
            p.isr = vec![0];
        }
        assert!(rebalance_plan(&six(), &lagging).is_empty());
    }

    #[test]
    fn throttle_lists_name_current_and_new_replicas() {
        let m = vec![
            Move {
                topic: "t".into(),
                partition: 0,
                from: vec![1, 2],
                to: vec![3, 2],
            },
            Move {
                topic: "t".into(),
                partition: 1,
                from: vec![2],
                to: vec![4],
            },
        ];
        let t = throttled_replicas(&m);
        assert_eq!(t["t"], ("0:1,0:2,1:2".to_string(), "0:3,1:4".to_string()));
    }

    fn apply(parts: &[Partition], moves: &[Move]) -> Vec<Partition> {
        parts
            .iter()
            .map(|p| {
                let mut p = p.clone();
                if let Some(m) = moves
                    .iter()
                    .find(|m| m.topic == p.topic && m.partition == p.index)
                {
                    assert_eq!(m.from, p.replicas);
                    p.replicas = m.to.clone();
                    p.isr = m.to.clone();
                    p.leader = m.to[0];
                }
                p
            })
            .collect()
    }

    /// Random clusters: `zones` zones of `per_zone` brokers, partitions of RF ≤ zones placed one
    /// replica per zone (as the broker's rack-aware placement does).
    fn cluster() -> impl Strategy<Value = (usize, usize, Vec<Vec<usize>>)> {
        (1usize..=3, 2usize..=4).prop_flat_map(|(zones, per_zone)| {
            let part = (1usize..=zones)
                .prop_flat_map(move |rf| proptest::collection::vec(0usize..per_zone, rf));
            (
                Just(zones),
                Just(per_zone),
                proptest::collection::vec(part, 0..30),
            )
        })
    }

    fn materialize(
        zones: usize,
        per_zone: usize,
        raw: &[Vec<usize>],
    ) -> (Vec<Broker>, Vec<Partition>) {
        let mut bs = Vec::new();
        for z in 0..zones {
            for o in 0..per_zone {
                bs.push(Broker {
                    id: (z * 1000 + o) as i32,
                    rack: format!("zone-{z}"),
                });
            }
        }
        let parts = raw
            .iter()
            .enumerate()
            .map(|(i, ords)| {
                // Replica k in zone k (rotated by the index so leaders spread).
                let reps: Vec<i32> = ords
                    .iter()
                    .enumerate()
                    .map(|(k, o)| ((((k + i) % zones) * 1000) + o) as i32)
                    .collect();
                part("t", i as i32, &reps)
            })
            .collect();
        (bs, parts)
    }

    proptest! {
        #[test]
        fn drains_empty_the_removed_brokers_and_stay_rack_aware(
            (zones, per_zone, raw) in cluster(),
            keep in 1usize..=3,
        ) {
            let keep = keep.min(per_zone - 1).max(1);
            let (all, parts) = materialize(zones, per_zone, &raw);
            let removing: Vec<i32> = all.iter().map(|b| b.id).filter(|id| (id % 1000) as usize >= keep).collect();
            let remaining: Vec<Broker> = all.iter().filter(|b| !removing.contains(&b.id)).cloned().collect();
            match drain_plan(&remaining, &removing, &parts) {
                Err(Refusal::ReplicationFactor { rf, remaining: n, .. }) => prop_assert!(rf > n),
                Err(e) => prop_assert!(false, "unexpected refusal {e}"),
                Ok(moves) => {
                    let after = apply(&parts, &moves);
                    for (before, p) in parts.iter().zip(&after) {
                        // Nothing left on removed brokers; RF kept; replicas distinct.
                        prop_assert!(p.replicas.iter().all(|r| !removing.contains(r)));
                        prop_assert_eq!(p.replicas.len(), before.replicas.len());
                        let set: BTreeSet<_> = p.replicas.iter().collect();
                        prop_assert_eq!(set.len(), p.replicas.len());
                        // Replicas that were on kept brokers stay (add-then-remove never
                        // touches them).
                        for r in before.replicas.iter().filter(|r| !removing.contains(r)) {
                            prop_assert!(p.replicas.contains(r));
                        }
                        // One replica per zone before ⇒ one per zone after (each zone keeps
                        // brokers).
                        let racks: BTreeSet<_> = p.replicas.iter().map(|r| r / 1000).collect();
                        prop_assert_eq!(racks.len(), p.replicas.len());
                    }
                    // Only partitions that touched removed brokers move.
                    for m in &moves {
                        prop_assert!(m.from.iter().any(|r| removing.contains(r)));
                    }
                }
            }
        }

        #[test]
        fn rebalances_even_out_and_never_break_zones(
            (zones, per_zone, raw) in cluster(),
        ) {
            let (all, parts) = materialize(zones, per_zone, &raw);
            let moves = rebalance_plan(&all, &parts);
            let after = apply(&parts, &moves);
            for p in &after {
                let racks: BTreeSet<_> = p.replicas.iter().map(|r| r / 1000).collect();
                prop_assert_eq!(racks.len(), p.replicas.len(), "{:?}", p);
            }
            // The spread of replica counts never grows, and is within one whenever every
            // partition has a replica in every zone (then same-zone swaps always exist).
            let spread = |l: &BTreeMap<i32, usize>| {
                l.values().max().copied().unwrap_or(0) - l.values().min().copied().unwrap_or(0)
            };
            let (before, now) = (spread(&loads(&all, &parts)), spread(&loads(&all, &after)));
            prop_assert!(now <= before, "spread {} -> {}", before, now);
            if raw.iter().all(|r| r.len() == zones) {
                let load = loads(&all, &after);
                for z in 0..zones as i32 {
                    let zl: Vec<usize> = load.iter().filter(|(b, _)| **b / 1000 == z).map(|(_, n)| *n).collect();
                    let mx = zl.iter().max().copied().unwrap_or(0);
                    let mn = zl.iter().min().copied().unwrap_or(0);
                    prop_assert!(mx <= mn + 1, "zone {} loads {:?}", z, zl);
                }
            }
            prop_assert!(rebalance_plan(&all, &after).is_empty());
            // No partition moves a replica more than needed: each move changes its replicas.
            for m in &moves {
                prop_assert_ne!(&m.from, &m.to);
            }
        }
    }
}
