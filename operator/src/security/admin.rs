//! The operator's admin connection to a cluster's brokers: which port it uses and how it
//! authenticates. Without `spec.listeners`, the default PLAINTEXT listener (9092); with them, the
//! internal replication listener (9091), which is SCRAM-SHA-512 as `rivulet-operator` (over TLS
//! trusting the cluster CA bundle when the cluster has a certificate) once the cluster has
//! security configured ([`super::internal::secured`]).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};
use rivulet_admin_client::{AdminClient, ClientSecurity, SaslCredentials, SaslMechanism};

use super::cluster_certs::{ca_cert_secret, secret_text};
use super::internal;
use super::listeners::needs_tls;
use crate::builders::KAFKA_PORT;
use crate::crd::{KafkaCluster, KafkaClusterSpec, REPLICATION_PORT};

/// The broker port the operator's admin connection uses.
pub fn admin_port(spec: &KafkaClusterSpec) -> i32 {
    if spec.listeners.is_some() {
        REPLICATION_PORT
    } else {
        KAFKA_PORT
    }
}

/// What the admin connection needs to authenticate, read from the cluster's Secrets.
#[derive(Clone, Default)]
pub struct AdminSecrets {
    /// `operator-password` of the internal credentials Secret.
    pub operator_password: Option<String>,
    /// `ca.crt` of `<cluster>-cluster-ca-cert` (the trust bundle).
    pub ca_bundle: Option<String>,
}

/// Pure: the client security of the admin connection for `spec`, or why there is none yet.
pub fn client_security(
    spec: &KafkaClusterSpec,
    secrets: &AdminSecrets,
) -> Result<ClientSecurity, String> {
    let mut sec = ClientSecurity::plaintext();
    if spec.listeners.is_none() || !internal::secured(spec) {
        return Ok(sec);
    }
    if needs_tls(spec) {
        let ca = secrets
            .ca_bundle
            .as_deref()
            .ok_or("the cluster CA certificate is not there yet")?;
        let tls = rivulet_admin_client::security::tls_config(ca.as_bytes(), None)
            .map_err(|e| format!("cluster CA certificate: {e}"))?;
        sec.tls = Some(Arc::new(tls));
    }
    let password = secrets
        .operator_password
        .clone()
        .filter(|p| !p.is_empty())
        .ok_or("the internal credentials are not there yet")?;
    sec.sasl = Some(SaslCredentials {
        mechanism: SaslMechanism::ScramSha512,
        username: internal::OPERATOR_USER.to_string(),
        password,
    });
    Ok(sec)
}

/// Reads the Secrets [`client_security`] needs (none for a cluster without security).
pub async fn security_for(
    client: &Client,
    kc: &KafkaCluster,
) -> Result<ClientSecurity, rivulet_admin_client::Error> {
    let unavailable = |m: String| rivulet_admin_client::Error::Auth(m);
    let mut s = AdminSecrets::default();
    if kc.spec.listeners.is_some() && internal::secured(&kc.spec) {
        let ns = kc.namespace().unwrap_or_default();
        let name = kc.name_any();
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let read = |n: String| {
            let api = api.clone();
            async move {
                api.get_opt(&n)
                    .await
                    .map_err(|e| unavailable(format!("reading Secret {n}: {e}")))
            }
        };
        s.operator_password = read(internal::credentials_secret(&name))
            .await?
            .and_then(|x| secret_text(&x, internal::KEY_OPERATOR));
        if needs_tls(&kc.spec) {
            s.ca_bundle = read(ca_cert_secret(&name))
                .await?
                .and_then(|x| secret_text(&x, "ca.crt"));
        }
    }
    client_security(&kc.spec, &s).map_err(unavailable)
}

/// Connects the operator's admin client to `bootstrap` (comma-separated addresses of `kc`'s
/// brokers on [`admin_port`]) with the cluster's security.
pub async fn connect(
    client: &Client,
    kc: &KafkaCluster,
    bootstrap: &str,
    timeout: Duration,
) -> Result<AdminClient, rivulet_admin_client::Error> {
    let sec = security_for(client, kc).await?;
    AdminClient::connect_with(bootstrap, timeout, sec).await
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

    fn ca() -> String {
        let now = time::OffsetDateTime::now_utc();
        super::super::certs::generate_ca("demo", now)
            .expect("ca")
            .cert_pem
    }

    #[test]
    fn admin_connection_follows_the_replication_listener() {
        let full = AdminSecrets {
            operator_password: Some("pw".into()),
            ca_bundle: Some(ca()),
        };
        let none = AdminSecrets::default();
        let no_ca = AdminSecrets {
            operator_password: Some("pw".into()),
            ca_bundle: None,
        };
        let bad_ca = AdminSecrets {
            operator_password: Some("pw".into()),
            ca_bundle: Some("garbage".into()),
        };
        let plain = json!({"listeners": [{"name": "plain", "port": 9092}]});
        let scram =
            json!({"listeners": [{"name": "s", "port": 9093, "authentication": "scram-sha-512"}]});
        let scram_tls = json!({"listeners": [{"name": "s", "port": 9093, "tls": true, "authentication": "scram-sha-512"}]});
        // (spec, secrets, Ok((tls, sasl)) or Err(part of the message))
        type Case<'a> = (
            serde_json::Value,
            &'a AdminSecrets,
            Result<(bool, bool), &'a str>,
        );
        let cases: Vec<Case> = vec![
            (json!({}), &none, Ok((false, false))),
            (plain.clone(), &none, Ok((false, false))),
            (scram.clone(), &full, Ok((false, true))),
            (scram.clone(), &none, Err("internal credentials")),
            (scram_tls.clone(), &full, Ok((true, true))),
            (scram_tls.clone(), &no_ca, Err("CA certificate")),
            (scram_tls, &bad_ca, Err("cluster CA certificate")),
        ];
        for (s, secrets, want) in cases {
            let got = client_security(&spec(s.clone()), secrets)
                .map(|c| (c.tls.is_some(), c.sasl.is_some()));
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{s}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{s}: {g}"),
                _ => panic!("{s}: got {got:?}, want {want:?}"),
            }
        }
        let sec = client_security(&spec(scram), &full).expect("security");
        let sasl = sec.sasl.expect("sasl");
        assert_eq!(sasl.username, "rivulet-operator");
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
        assert_eq!(admin_port(&spec(json!({}))), 9092);
        assert_eq!(admin_port(&spec(plain)), 9091);
    }
}
