//! Property tests: arbitrary and mutated frames through the request decoder and the dispatcher
//! never panic, and a broker that has seen them still serves a valid request correctly.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, CreateTopicsRequest, FetchRequest, MetadataRequest,
    OffsetForLeaderEpochRequest, ProduceRequest, RequestHeader, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;

use rivulet_broker::broker::Broker;
use rivulet_broker::config::BrokerConfig;
use rivulet_broker::metadata::BrokerMeta;
use rivulet_broker::protocol::codec::decode_request;

fn broker(dir: &std::path::Path) -> Arc<Broker> {
    let cfg = BrokerConfig::try_parse_from(["rivulet-broker", "--data-dir", dir.to_str().unwrap()])
        .unwrap();
    let me = BrokerMeta {
        id: 0,
        host: "127.0.0.1".into(),
        port: 9092,
        rack: None,
        endpoints: vec![],
    };
    Broker::open_standalone(cfg, me).unwrap()
}

fn frame(api: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")))
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.freeze()
}

fn seeds() -> Vec<Bytes> {
    vec![
        frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
        frame(ApiKey::Metadata, 9, &MetadataRequest::default()),
        frame(ApiKey::Produce, 9, &ProduceRequest::default().with_acks(1)),
        frame(ApiKey::Fetch, 11, &FetchRequest::default()),
        frame(ApiKey::CreateTopics, 5, &CreateTopicsRequest::default()),
        frame(
            ApiKey::OffsetForLeaderEpoch,
            4,
            &OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![OffsetForLeaderTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(0)
                        .with_leader_epoch(0)])]),
        ),
    ]
}

async fn dispatch(b: &Broker, data: Bytes) {
    if let Ok(req) = decode_request(data) {
        // Keep long-polls short: a random Fetch may ask to wait.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), b.handle(req)).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_request(Bytes::from(data));
    }

    #[test]
    fn mutated_valid_frames_never_panic(seed in 0usize..6, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let b = broker(dir.path());
        let mut data = seeds()[seed].to_vec();
        for (pos, byte) in flips {
            let i = pos % data.len();
            data[i] = byte;
        }
        let keep = data.len() - cut % (data.len() / 2 + 1);
        data.truncate(keep);
        rt.block_on(dispatch(&b, Bytes::from(data)));
        // Still serves a valid request afterwards.
        let ok = decode_request(seeds()[0].clone()).unwrap();
        let resp = rt.block_on(b.handle(ok));
        prop_assert!(matches!(resp, Some(ResponseKind::ApiVersions(ref r)) if r.error_code == 0));
    }
}

#[test]
fn forged_array_count_is_rejected_without_aborting() {
    // A Metadata v9 request whose topic array claims 2^31-1 entries in a 20-byte frame.
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(4)
        .with_correlation_id(1)
        .encode(&mut buf, ApiKey::Metadata.request_header_version(4))
        .unwrap();
    buf.put_i32(i32::MAX);
    buf.put_u8(0);
    assert!(decode_request(buf.freeze()).is_err());
}
