//! DescribeCluster.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{s, AUTHORIZED_OPS_OMITTED};
use crate::authorization::{supported_operations, to_bitfield, ResourceType};
use crate::broker::Broker;

/// Kafka's name for the one cluster resource in ACLs.
pub const CLUSTER_RESOURCE: &str = "kafka-cluster";

/// Endpoint type 1: brokers (2 would be KRaft controllers, which this cluster does not have).
const ENDPOINT_BROKERS: i8 = 1;

pub fn describe_cluster(
    b: &Broker,
    version: i16,
    req: DescribeClusterRequest,
    listener: &str,
) -> DescribeClusterResponse {
    let view = b.metadata.view();
    let ops = if req.include_cluster_authorized_operations {
        // The caller's operations are filled in by `authz::describe_cluster`.
        to_bitfield(supported_operations(ResourceType::Cluster))
    } else {
        AUTHORIZED_OPS_OMITTED
    };
    let resp = DescribeClusterResponse::default()
        .with_endpoint_type(ENDPOINT_BROKERS)
        .with_cluster_id(s(view.cluster_id.clone()))
        .with_controller_id(BrokerId(view.controller_id))
        .with_cluster_authorized_operations(ops);
    if version >= 1 && req.endpoint_type != ENDPOINT_BROKERS {
        return resp
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(s("only broker endpoints (type 1) are served")));
    }
    resp.with_brokers(
        view.brokers
            .iter()
            .filter_map(|br| {
                // Endpoints of the listener the request came in on, as Metadata.
                let (host, port) = br.endpoint_for(listener)?;
                Some(
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(br.id))
                        .with_host(s(host.to_string()))
                        .with_port(port)
                        .with_rack(br.rack.clone().map(s)),
                )
            })
            .collect(),
    )
}
