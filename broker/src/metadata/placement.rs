//! Replica placement: a pure function from brokers to replica lists.
//!
//! Rack-aware like Kafka's: brokers are interleaved by rack (a, b, c, a, b, c ...) so consecutive
//! replicas of a partition land in different racks whenever there are enough racks; partition `p`
//! starts at position `start + p`, spreading preferred leaders evenly.

use std::collections::BTreeMap;

use super::BrokerMeta;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor {rf} is larger than the {brokers} available brokers")]
    NotEnoughBrokers { rf: i16, brokers: usize },
    #[error("replication factor must be at least 1, got {0}")]
    BadReplicationFactor(i16),
}

/// Orders brokers so that neighbours sit in different racks.
pub fn rack_alternating(brokers: &[BrokerMeta]) -> Vec<i32> {
    let mut by_rack: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for b in brokers {
        by_rack
            .entry(b.rack.clone().unwrap_or_default())
            .or_default()
            .push(b.id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut out = Vec::with_capacity(brokers.len());
    let mut i = 0;
    while out.len() < brokers.len() {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(i) {
                out.push(*id);
            }
        }
        i += 1;
    }
    out
}

/// Replica lists for partitions `first..first+count`.
pub fn assign(
    brokers: &[BrokerMeta],
    first: i32,
    count: i32,
    rf: i16,
    start: usize,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if rf < 1 {
        return Err(PlacementError::BadReplicationFactor(rf));
    }
    if rf as usize > brokers.len() {
        return Err(PlacementError::NotEnoughBrokers {
            rf,
            brokers: brokers.len(),
        });
    }
    let order = rack_alternating(brokers);
    let n = order.len();
    Ok((first..first + count)
        .map(|p| {
            let base = start + p as usize;
            (0..rf as usize).map(|r| order[(base + r) % n]).collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: i32, rack: &str) -> BrokerMeta {
        BrokerMeta {
            id,
            host: "h".into(),
            port: 1,
            rack: Some(rack.into()),
            endpoints: vec![],
        }
    }

    #[test]
    fn replicas_span_racks_and_leaders_spread() {
        let brokers = vec![
            b(0, "a"),
            b(1, "a"),
            b(2, "b"),
            b(3, "b"),
            b(4, "c"),
            b(5, "c"),
        ];
        let a = assign(&brokers, 0, 6, 3, 0).unwrap();
        let rack = |id: i32| brokers.iter().find(|x| x.id == id).unwrap().rack.clone();
        for replicas in &a {
            let mut racks: Vec<_> = replicas.iter().map(|r| rack(*r)).collect();
            racks.sort();
            racks.dedup();
            assert_eq!(racks.len(), 3, "{replicas:?}");
        }
        let mut leaders: Vec<i32> = a.iter().map(|r| r[0]).collect();
        leaders.sort();
        assert_eq!(leaders, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn refuses_rf_above_broker_count() {
        assert_eq!(
            assign(&[b(0, "a")], 0, 1, 2, 0),
            Err(PlacementError::NotEnoughBrokers { rf: 2, brokers: 1 })
        );
        assert_eq!(
            assign(&[b(0, "a")], 0, 1, 0, 0),
            Err(PlacementError::BadReplicationFactor(0))
        );
    }
}
