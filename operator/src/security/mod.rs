//! Security of a KafkaCluster on the operator side: listeners and authorization turned into
//! broker settings (`listeners`, pure), the cluster CA and broker certificates (`certs`, pure
//! decisions; `cluster_certs`, the Secrets they live in) and KafkaUser credentials and ACLs
//! (`users`, pure; the controller is `crate::user_controller`).

pub mod certs;
pub mod cluster_certs;
pub mod listeners;
pub mod users;
