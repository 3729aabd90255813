//! Security of a KafkaCluster on the operator side: listeners and authorization turned into
//! broker settings (`listeners`, pure), the cluster CA and broker certificates (`certs`, pure
//! decisions; `cluster_certs`, the Secrets they live in) and KafkaUser credentials and ACLs
//! (`users`, pure; the controller is `crate::user_controller`), the internal credentials of
//! brokers and operator (`internal`, pure; `internal_secret`, their Secret) and the operator's
//! admin connection (`admin`).

pub mod admin;
pub mod ca_rotation;
pub mod certs;
pub mod cluster_certs;
pub mod internal;
pub mod internal_secret;
pub mod listeners;
pub mod users;
