//! Rivulet's Kafka-protocol broker.
//!
//! Layout: `protocol` (framing, version table, request decoding), `handlers` (one module per API),
//! `metadata` (topic/cluster metadata behind the `MetadataStore` trait; standalone implementation on
//! local disk), `partition` (the partitions this broker hosts: logs + idempotent-producer state),
//! `topic_config` (Kafka topic/broker config keys), `server` (TCP accept and connection loop),
//! `admin_http` + `metrics` (operations surface), `background` (retention and flush schedulers),
//! `authorization` (the authorized-operations bitfields; where an ACL authorizer will plug in).

pub mod admin_http;
pub mod alloc_guard;
pub mod authorization;
pub mod background;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod group;
pub mod handlers;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod protocol;
pub mod readiness;
pub mod replication;
pub mod security;
pub mod server;
pub mod topic_config;

#[global_allocator]
static GLOBAL: alloc_guard::GuardedAlloc = alloc_guard::GuardedAlloc;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
