//! The cluster's internal credentials (pure): who the brokers and the operator are to each
//! other and to the coordinator once a cluster has security configured.
//!
//! - Brokers replicate over the internal `REPLICATION` listener, which becomes SASL
//!   (`SASL_SSL` when the cluster has a certificate, else `SASL_PLAINTEXT`) with
//!   SCRAM-SHA-512: brokers authenticate as [`BROKER_USER`], the operator's admin connection
//!   as [`OPERATOR_USER`]; both are super users.
//! - The brokers write their znodes with ACLs (Kafka's `zookeeper.set.acl`) as the
//!   coordinator digest user [`COORDINATOR_USER`]: cluster metadata world-readable but writable
//!   only by the brokers, SCRAM credentials and ACLs readable by the brokers only.
//!
//! The passwords live in one Secret, `<cluster>-internal-credentials`, generated once by the
//! operator and mounted read-only into the broker pods (never in the pod spec). Bootstrap: a
//! SCRAM credential must exist before anyone can authenticate with it, so each broker, after
//! registering (its coordinator session is authenticated with the digest user), creates its
//! own credential and the operator's (`--inter-broker-sasl-*` and
//! `--bootstrap-scram-users-file`) when absent — Kafka's `kafka-storage format --add-scram`.
//!
//! The Secret has no owner reference: like the broker and coordinator volumes (claim retention
//! `Retain`) it outlives the KafkaCluster, because the coordinator's data written with these
//! digest ACLs and SCRAM credentials does too; a cluster created again over the kept volumes
//! finds the same passwords.

use std::collections::BTreeMap;

use crate::crd::{KafkaClusterSpec, ListenerAuthentication};

/// The brokers' principal on the replication listener (`User:rivulet-broker`).
pub const BROKER_USER: &str = "rivulet-broker";
/// The operator's principal on the replication listener (`User:rivulet-operator`).
pub const OPERATOR_USER: &str = "rivulet-operator";
/// The brokers' digest user on the coordinator.
pub const COORDINATOR_USER: &str = "rivulet-broker";
/// The SASL mechanism of the replication listener.
pub const REPLICATION_MECHANISM: &str = "SCRAM-SHA-512";

/// Secret keys.
pub const KEY_BROKER: &str = "broker-password";
pub const KEY_OPERATOR: &str = "operator-password";
pub const KEY_COORDINATOR: &str = "coordinator-password";
/// `rivulet-operator=<password>`: the broker's `--bootstrap-scram-users-file`.
pub const KEY_BOOTSTRAP_USERS: &str = "bootstrap-users";
/// Where the broker pods mount the Secret.
pub const CREDENTIALS_DIR: &str = "/etc/rivulet/internal";
/// Volume name of the mounted Secret.
pub const CREDENTIALS_VOLUME: &str = "internal-credentials";
/// The keys the brokers mount (the operator's password reaches them as the bootstrap file).
pub const MOUNTED_KEYS: &[&str] = &[KEY_BROKER, KEY_COORDINATOR, KEY_BOOTSTRAP_USERS];

/// Name of the Secret with the internal passwords.
pub fn credentials_secret(cluster: &str) -> String {
    format!("{cluster}-internal-credentials")
}

/// Whether the cluster has security configured: authorization, or any listener that
/// authenticates its clients. Then the internal listener authenticates too (else anyone
/// reaching port 9091 would get past every client listener's authentication) and the
/// coordinator's znodes carry ACLs.
pub fn secured(spec: &KafkaClusterSpec) -> bool {
    spec.authorization.is_some()
        || spec
            .listeners
            .iter()
            .flatten()
            .any(|l| l.authentication != ListenerAuthentication::None)
}

/// The user names KafkaUsers may not take: they belong to the brokers and the operator.
pub fn reserved_user(name: &str) -> bool {
    name == BROKER_USER || name == OPERATOR_USER || name == COORDINATOR_USER
}

/// The super users of the authorizer: the internal principals, then `spec.authorization`'s.
pub fn super_users(configured: &[String]) -> Vec<String> {
    let mut out = vec![
        format!("User:{BROKER_USER}"),
        format!("User:{OPERATOR_USER}"),
    ];
    out.extend(configured.iter().map(|u| format!("User:{u}")));
    out
}

/// The Secret's data as it must be, given what it holds now (`None`: no Secret yet). A
/// password once generated is kept (the coordinator holds credentials and ACLs made from it);
/// missing ones are generated with `gen`, and the bootstrap file follows the operator's
/// password. Returns None when the live data is already right.
pub fn desired_data(
    live: Option<&BTreeMap<String, String>>,
    mut gen: impl FnMut() -> String,
) -> Option<BTreeMap<String, String>> {
    let mut data = BTreeMap::new();
    for key in [KEY_BROKER, KEY_OPERATOR, KEY_COORDINATOR] {
        let v = live
            .and_then(|l| l.get(key))
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(&mut gen);
        data.insert(key.to_string(), v);
    }
    let boot = format!("{OPERATOR_USER}={}\n", data[KEY_OPERATOR]);
    data.insert(KEY_BOOTSTRAP_USERS.to_string(), boot);
    match live {
        Some(l) if data.iter().all(|(k, v)| l.get(k) == Some(v)) => None,
        _ => Some(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> KafkaClusterSpec {
        let mut base = json!({"zones": ["a"], "brokersPerZone": 1, "storage": {"size": "1Gi"}});
        if let (Some(b), Some(o)) = (base.as_object_mut(), v.as_object()) {
            b.extend(o.clone());
        }
        serde_json::from_value(base).expect("spec")
    }

    #[test]
    fn security_is_configured_by_authentication_or_authorization() {
        let cases = [
            (json!({}), false),
            (
                json!({"listeners": [{"name": "plain", "port": 9092}]}),
                false,
            ),
            (
                json!({"listeners": [{"name": "tls", "port": 9093, "tls": true}]}),
                false,
            ),
            (
                json!({"listeners": [{"name": "scram", "port": 9093, "authentication": "scram-sha-512"}]}),
                true,
            ),
            (
                json!({"listeners": [
                    {"name": "plain", "port": 9092},
                    {"name": "mtls", "port": 9093, "tls": true, "authentication": "tls"}]}),
                true,
            ),
            (
                json!({"listeners": [{"name": "p", "port": 9093, "authentication": "plain"}],
                       "authorization": {"type": "simple"}}),
                true,
            ),
        ];
        for (s, want) in cases {
            assert_eq!(secured(&spec(s.clone())), want, "{s}");
        }
    }

    #[test]
    fn passwords_are_generated_once_and_kept() {
        let mut n = 0;
        let mut gen = || {
            n += 1;
            format!("pw{n}")
        };
        let first = desired_data(None, &mut gen).expect("new secret");
        assert_eq!(first[KEY_BROKER], "pw1");
        assert_eq!(first[KEY_OPERATOR], "pw2");
        assert_eq!(first[KEY_COORDINATOR], "pw3");
        assert_eq!(first[KEY_BOOTSTRAP_USERS], "rivulet-operator=pw2\n");
        // Unchanged: nothing to write, nothing generated.
        assert_eq!(desired_data(Some(&first), &mut gen), None);
        // A key removed (or emptied) by hand comes back; the others stay.
        let mut edited = first.clone();
        edited.remove(KEY_OPERATOR);
        edited.insert(KEY_COORDINATOR.into(), String::new());
        let fixed = desired_data(Some(&edited), &mut gen).expect("repair");
        assert_eq!(fixed[KEY_BROKER], "pw1");
        assert_eq!(fixed[KEY_OPERATOR], "pw4");
        assert_eq!(fixed[KEY_COORDINATOR], "pw5");
        assert_eq!(fixed[KEY_BOOTSTRAP_USERS], "rivulet-operator=pw4\n");
        // A stale bootstrap file follows the operator's password.
        let mut stale = first.clone();
        stale.insert(KEY_BOOTSTRAP_USERS.into(), "x=y\n".into());
        assert_eq!(
            desired_data(Some(&stale), &mut gen).expect("bootstrap")[KEY_BOOTSTRAP_USERS],
            "rivulet-operator=pw2\n"
        );
    }

    #[test]
    fn internal_users_are_reserved_and_super() {
        for (n, want) in [
            ("rivulet-broker", true),
            ("rivulet-operator", true),
            ("alice", false),
            ("rivulet", false),
        ] {
            assert_eq!(reserved_user(n), want, "{n}");
        }
        assert_eq!(
            super_users(&["admin".into()]),
            ["User:rivulet-broker", "User:rivulet-operator", "User:admin"]
        );
    }

    #[test]
    fn the_broker_parses_the_bootstrap_file() {
        // Same format as rivulet-broker's --bootstrap-scram-users-file: name=password lines.
        let d = desired_data(None, || "p=q".into()).expect("data");
        let line = d[KEY_BOOTSTRAP_USERS].trim_end();
        assert_eq!(line.split_once('='), Some((OPERATOR_USER, "p=q")));
    }
}
