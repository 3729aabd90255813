//! FindCoordinator: a group's coordinator is the leader of its `__consumer_offsets` partition
//! (Kafka's `abs(hash(group)) % partitions`), looked up in the metadata view; a partition with no
//! live leader answers COORDINATOR_NOT_AVAILABLE so the client retries. A standalone broker
//! leads every partition, so it names itself.
//!
//! Advertising it also matters before groups exist: librdkafka infers a broker's features from
//! the advertised APIs and only enables LZ4 compression when FindCoordinator is present.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::s;
use crate::broker::Broker;
use crate::group::{partition_for, OFFSETS_TOPIC};

const KEY_GROUP: i8 = 0;

fn lookup(
    b: &Broker,
    key: StrBytes,
    key_type: i8,
    ready: Result<(), ResponseError>,
    listener: &str,
) -> Coordinator {
    let c = Coordinator::default().with_key(key);
    if let Err(e) = ready {
        return c.with_node_id(BrokerId(-1)).with_error_code(e.code());
    }
    if key_type != KEY_GROUP {
        return c
            .with_node_id(BrokerId(-1))
            .with_error_code(ResponseError::CoordinatorNotAvailable.code())
            .with_error_message(Some(s("transactions are not supported by this broker")));
    }
    let view = b.metadata.view();
    let partition = partition_for(&c.key, b.groups.offsets_partitions);
    let leader = view
        .topic(OFFSETS_TOPIC)
        .and_then(|t| t.partitions.iter().find(|p| p.index == partition))
        .map_or(-1, |p| p.leader);
    // The coordinator's endpoint on the listener the request came in on, as Metadata.
    let endpoint = view
        .brokers
        .iter()
        .find(|br| br.id == leader)
        .and_then(|br| br.endpoint_for(listener));
    match endpoint {
        Some((host, port)) => c
            .with_node_id(BrokerId(leader))
            .with_host(s(host.to_string()))
            .with_port(port),
        None => c
            .with_node_id(BrokerId(-1))
            .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
    }
}

pub async fn handle(
    b: &Broker,
    version: i16,
    req: FindCoordinatorRequest,
    listener: &str,
) -> FindCoordinatorResponse {
    // The group coordinator is the leader of the group's __consumer_offsets partition, so the
    // topic must exist before anyone is told where to go.
    let ready = if req.key_type == KEY_GROUP {
        b.groups.ensure_offsets_topic(b).await
    } else {
        Ok(())
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|k| lookup(b, k, req.key_type, ready, listener))
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = lookup(b, req.key, req.key_type, ready, listener);
    let mut r = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 {
        r = r.with_error_message(c.error_message);
    }
    r
}
