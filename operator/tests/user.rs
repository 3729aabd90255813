//! KafkaUser controller and the cluster certificates against the in-memory API; SCRAM users
//! against a real rivulet-broker started here.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rivulet_admin_client::AdminClient;
use rivulet_operator::context::Ctx;
use rivulet_operator::crd::{KafkaCluster, KafkaUser};
use rivulet_operator::metrics::Metrics;
use rivulet_operator::security::{certs, cluster_certs};
use rivulet_operator::user_controller::{reconcile, APPLIED_PASSWORD, FINALIZER};
use serde_json::{json, Value};
use support::fakeapi::FakeApi;

const KC: &str = "/apis/rivulet.dev/v1alpha1/namespaces/kafka/kafkaclusters";
const KU: &str = "/apis/rivulet.dev/v1alpha1/namespaces/kafka/kafkausers";
const SECRETS: &str = "/api/v1/namespaces/kafka/secrets";

struct World {
    api: FakeApi,
    ctx: Arc<Ctx>,
}

impl World {
    fn new(cluster_spec: Value, status: Value) -> Self {
        let api = FakeApi::new();
        api.insert(
            KC,
            json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaCluster",
                   "metadata": {"name": "demo", "namespace": "kafka", "uid": "c-uid"},
                   "spec": cluster_spec, "status": status}),
        );
        let ctx = Ctx::new(api.client("kafka"), Arc::new(Metrics::default()));
        Self { api, ctx }
    }
    fn add_user(&self, name: &str, spec: Value) {
        self.api.insert(
            KU,
            json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaUser",
                   "metadata": {"name": name, "namespace": "kafka", "uid": format!("{name}-uid")},
                   "spec": spec}),
        );
    }
    async fn reconcile(&self, name: &str) {
        let v = self.api.get(KU, name).expect("user resource");
        let ku: KafkaUser = serde_json::from_value(v).expect("typed user");
        reconcile(Arc::new(ku), self.ctx.clone())
            .await
            .expect("reconcile");
    }
    fn ready(&self, name: &str) -> (String, String) {
        let c = self.api.get(KU, name).expect("user")["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
            .unwrap_or(Value::Null);
        (
            c["status"].as_str().unwrap_or("").to_string(),
            c["reason"].as_str().unwrap_or("").to_string(),
        )
    }
    fn secret(&self, name: &str, key: &str) -> Option<String> {
        let s = self.api.get(SECRETS, name)?;
        let b = s["data"][key].as_str()?;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).ok()?).ok()
    }
    fn secret_writes(&self) -> usize {
        self.api
            .object_writes()
            .iter()
            .filter(|w| w.path.contains("/secrets"))
            .count()
    }
}

/// The operator's password in the internal credentials Secret of the test cluster.
const OPERATOR_PASSWORD: &str = "operator-secret";

/// The internal credentials Secret, as the cluster controller writes it.
fn internal_secret() -> Value {
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "demo-internal-credentials", "namespace": "kafka"},
           "data": {"operator-password": b(OPERATOR_PASSWORD)}})
}

/// An admin client authenticating as the operator does.
async fn operator_admin(addr: &str) -> AdminClient {
    let sec = rivulet_admin_client::ClientSecurity {
        tls: None,
        sasl: Some(rivulet_admin_client::SaslCredentials {
            mechanism: rivulet_admin_client::SaslMechanism::ScramSha512,
            username: "rivulet-operator".into(),
            password: OPERATOR_PASSWORD.into(),
        }),
    };
    AdminClient::connect_with(addr, Duration::from_secs(10), sec)
        .await
        .expect("admin")
}

fn scram_cluster() -> Value {
    json!({"zones": ["a"], "brokersPerZone": 1, "storage": {"size": "1Gi"},
           "listeners": [{"name": "sasl", "port": 9094, "authentication": "scram-sha-512"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_user_lifecycle_against_a_real_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_broker, addr)) = support::start_secured_broker(dir.path(), OPERATOR_PASSWORD) else {
        return;
    };
    let w = World::new(scram_cluster(), json!({"adminAddress": addr.to_string()}));
    w.api.insert(SECRETS, internal_secret());
    w.add_user(
        "alice",
        json!({"clusterRef": {"name": "demo"},
                               "authentication": {"type": "scram-sha-512"}}),
    );
    w.reconcile("alice").await;
    assert_eq!(w.ready("alice"), ("True".into(), "Ready".into()));
    let pw = w.secret("alice", "password").expect("generated password");
    assert_eq!(pw.len(), 32);
    assert_eq!(w.secret("alice", "username").as_deref(), Some("alice"));
    let s = w.api.get(SECRETS, "alice").expect("secret");
    assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "KafkaUser");
    assert!(s["metadata"]["annotations"][APPLIED_PASSWORD].is_string());
    let u = w.api.get(KU, "alice").expect("user");
    assert_eq!(u["metadata"]["finalizers"], json!([FINALIZER]));
    assert_eq!(u["status"]["principal"], "User:alice");
    let mut admin = operator_admin(&addr.to_string()).await;
    let creds = admin
        .describe_user_scram_credentials(&["alice"])
        .await
        .expect("describe");
    assert_eq!(creds.len(), 1, "{creds:?}");

    // A settled user: no Secret writes, same password.
    w.api.clear_writes();
    w.reconcile("alice").await;
    assert_eq!(w.secret_writes(), 0);
    assert_eq!(w.secret("alice", "password").as_deref(), Some(pw.as_str()));

    // A referenced password: set in the cluster, copied into the user's Secret.
    w.api.insert(
        SECRETS,
        json!({"metadata": {"name": "bob-pw", "namespace": "kafka"},
               "data": {"pw": base64::engine::general_purpose::STANDARD.encode("bobs-password")}}),
    );
    w.add_user(
        "bob",
        json!({"clusterRef": {"name": "demo"},
                             "authentication": {"type": "scram-sha-512",
                                 "password": {"valueFrom": {"name": "missing", "key": "pw"}}}}),
    );
    w.reconcile("bob").await;
    assert_eq!(
        w.ready("bob"),
        ("False".into(), "PasswordSecretMissing".into())
    );
    let mut spec = w.api.get(KU, "bob").expect("bob")["spec"].clone();
    spec["authentication"]["password"]["valueFrom"]["name"] = json!("bob-pw");
    w.api.update_spec(KU, "bob", spec);
    w.reconcile("bob").await;
    assert_eq!(w.ready("bob"), ("True".into(), "Ready".into()));
    assert_eq!(
        w.secret("bob", "password").as_deref(),
        Some("bobs-password")
    );
    let names: BTreeSet<String> = admin
        .describe_user_scram_credentials(&[])
        .await
        .expect("describe all")
        .into_iter()
        .map(|(u, _)| u)
        .collect();
    // Beside the operator's own user, bootstrapped by the broker.
    assert_eq!(
        names,
        BTreeSet::from(["alice".into(), "bob".into(), "rivulet-operator".into()])
    );

    // ACLs asked of a cluster without spec.authorization: refused with a reason.
    let mut spec = w.api.get(KU, "bob").expect("bob")["spec"].clone();
    spec["authorization"] = json!({"acls": [{"resource": {"type": "topic", "name": "t"},
                                             "operations": ["Read"]}]});
    w.api.update_spec(KU, "bob", spec);
    w.reconcile("bob").await;
    assert_eq!(
        w.ready("bob"),
        ("False".into(), "AuthorizationDisabled".into())
    );

    // Deletion removes the credential and releases the finalizer.
    w.api.delete_user(KU, "alice");
    w.reconcile("alice").await;
    let creds = admin
        .describe_user_scram_credentials(&["alice"])
        .await
        .expect("describe");
    assert!(creds.is_empty(), "{creds:?}");
    let fins = w
        .api
        .get(KU, "alice")
        .map(|u| u["metadata"]["finalizers"].clone());
    assert!(
        fins.is_none() || fins == Some(json!([])),
        "finalizer kept: {fins:?}"
    );
}

#[tokio::test]
async fn users_wait_for_their_cluster() {
    let w = World::new(scram_cluster(), json!({}));
    w.add_user(
        "nobody",
        json!({"clusterRef": {"name": "other"},
                                "authentication": {"type": "scram-sha-512"}}),
    );
    w.reconcile("nobody").await;
    assert_eq!(
        w.ready("nobody"),
        ("False".into(), "ClusterNotFound".into())
    );
    w.add_user(
        "early",
        json!({"clusterRef": {"name": "demo"},
                               "authentication": {"type": "scram-sha-512"}}),
    );
    w.reconcile("early").await;
    assert_eq!(w.ready("early"), ("False".into(), "ClusterNotReady".into()));
    // A tls user needs the cluster CA, which only a tls listener brings.
    w.add_user(
        "certless",
        json!({"clusterRef": {"name": "demo"},
                                  "authentication": {"type": "tls"}}),
    );
    w.reconcile("certless").await;
    assert_eq!(w.ready("certless"), ("False".into(), "NoClusterCa".into()));
}

#[tokio::test]
async fn cluster_ca_broker_and_user_certificates() {
    let spec = json!({"zones": ["a", "b"], "brokersPerZone": 1, "storage": {"size": "1Gi"},
                      "listeners": [{"name": "mtls", "port": 9093, "tls": true,
                                     "authentication": "tls"}]});
    let w = World::new(spec, json!({}));
    let kc: KafkaCluster =
        serde_json::from_value(w.api.get(KC, "demo").expect("kc")).expect("typed");
    let changes = cluster_certs::reconcile(&kc, &w.ctx).await.expect("certs");
    assert_eq!(changes.len(), 2, "{changes:?}");
    let ca = w.secret("demo-cluster-ca", "ca.crt").expect("ca");
    assert!(w.secret("demo-cluster-ca", "ca.key").is_some());
    assert_eq!(
        w.secret("demo-cluster-ca-cert", "ca.crt").as_deref(),
        Some(ca.as_str())
    );
    assert!(
        w.secret("demo-cluster-ca-cert", "ca.key").is_none(),
        "the public Secret holds no key"
    );
    let crt = w.secret("demo-broker-tls", "tls.crt").expect("broker cert");
    let want = cluster_certs::broker_dns_names(&kc);
    assert_eq!(
        certs::check_leaf(
            Some(&crt),
            &ca,
            "demo-broker",
            &want,
            time::OffsetDateTime::now_utc()
        ),
        None
    );

    // Settled: nothing written again.
    w.api.clear_writes();
    assert!(cluster_certs::reconcile(&kc, &w.ctx)
        .await
        .expect("certs")
        .is_empty());
    assert_eq!(w.secret_writes(), 0);

    // A broker more: the certificate is issued again with the new name, same CA.
    let mut grown = kc.clone();
    grown.spec.brokers_per_zone = 2;
    let changes = cluster_certs::reconcile(&grown, &w.ctx)
        .await
        .expect("certs");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(changes[0].contains("names changed"), "{changes:?}");
    let crt2 = w.secret("demo-broker-tls", "tls.crt").expect("broker cert");
    let info = certs::inspect(&crt2).expect("inspect");
    assert!(info
        .dns_names
        .contains("demo-broker-z1-1001.demo-broker-headless.kafka.svc"));
    assert_eq!(
        w.secret("demo-cluster-ca", "ca.crt").as_deref(),
        Some(ca.as_str())
    );

    // A tls user gets a client certificate from that CA.
    w.add_user(
        "audit",
        json!({"clusterRef": {"name": "demo"}, "authentication": {"type": "tls"}}),
    );
    w.reconcile("audit").await;
    assert_eq!(w.ready("audit"), ("True".into(), "Ready".into()));
    let user_crt = w.secret("audit", "user.crt").expect("user cert");
    assert!(w.secret("audit", "user.key").is_some());
    assert_eq!(w.secret("audit", "ca.crt").as_deref(), Some(ca.as_str()));
    assert_eq!(
        certs::check_leaf(
            Some(&user_crt),
            &ca,
            "audit",
            &BTreeSet::new(),
            time::OffsetDateTime::now_utc()
        ),
        None
    );
    let u = w.api.get(KU, "audit").expect("user");
    assert_eq!(u["status"]["principal"], "User:CN=audit");
    w.api.clear_writes();
    w.reconcile("audit").await;
    assert_eq!(w.secret_writes(), 0, "a valid certificate is kept");
}

/// The internal users' names are refused: a KafkaUser must never set (or, deleted, remove) the
/// brokers' or the operator's credential.
#[tokio::test]
async fn internal_user_names_are_refused() {
    let w = World::new(scram_cluster(), json!({"adminAddress": "127.0.0.1:1"}));
    for name in ["rivulet-broker", "rivulet-operator"] {
        w.add_user(
            name,
            json!({"clusterRef": {"name": "demo"},
                   "authentication": {"type": "scram-sha-512"}}),
        );
        w.reconcile(name).await;
        assert_eq!(
            w.ready(name),
            ("False".into(), "InvalidSpec".into()),
            "{name}"
        );
        assert!(w.api.get(SECRETS, name).is_none(), "{name}");
    }
}

fn certificates_in(bundle: &str) -> usize {
    bundle.matches("-----BEGIN CERTIFICATE-----").count()
}

/// The cluster CA renewal through its phases, the operator's side, with the clock driven by the
/// test: generated → at 2/3 of its validity the next CA joins the trust bundle while the old one
/// still signs (the broker certificate is kept) → 24 hours later the new CA signs and the broker
/// certificate is issued again from it, the old CA staying in the bundle → once the old CA has
/// expired it leaves the bundle. The public and broker Secrets carry the bundle at every step.
#[tokio::test]
async fn cluster_ca_renewal_goes_through_trust_promote_and_drop() {
    use rivulet_operator::security::ca_rotation::TRUST_GRACE;
    let spec = json!({"zones": ["a", "b"], "brokersPerZone": 1, "storage": {"size": "1Gi"},
                      "listeners": [{"name": "tls", "port": 9093, "tls": true,
                                     "authentication": "scram-sha-512"}]});
    let w = World::new(spec, json!({}));
    let kc: KafkaCluster =
        serde_json::from_value(w.api.get(KC, "demo").expect("kc")).expect("typed");
    let want = cluster_certs::broker_dns_names(&kc);
    let t0 = time::OffsetDateTime::now_utc();
    let at = |t| cluster_certs::reconcile_at(&kc, &w.ctx, t);
    let public = || {
        w.secret("demo-cluster-ca-cert", "ca.crt")
            .expect("public bundle")
    };
    let broker_bundle = || {
        w.secret("demo-broker-tls", "ca.crt")
            .expect("broker bundle")
    };
    let leaf = || w.secret("demo-broker-tls", "tls.crt").expect("broker cert");

    at(t0).await.expect("first");
    let old_ca = w.secret("demo-cluster-ca", "ca.crt").expect("ca");
    let old_leaf = leaf();
    assert_eq!(certificates_in(&public()), 1);
    let not_after = certs::inspect(&old_ca).expect("ca").not_after;

    // Two thirds in (plus a day): the renewal starts; the old CA still signs.
    let t1 = t0 + (not_after - t0) * 2 / 3 + time::Duration::days(1);
    let changes = at(t1).await.expect("trust");
    assert!(
        changes.iter().any(|c| c.contains("renewal started")),
        "{changes:?}"
    );
    assert_eq!(
        w.secret("demo-cluster-ca", "ca.crt").as_deref(),
        Some(old_ca.as_str())
    );
    assert_eq!(certificates_in(&public()), 2, "old and next CA trusted");
    assert_eq!(broker_bundle(), public());
    // The broker certificate (a year's validity, so renewed by now) comes from the old CA:
    // nothing is signed by the next CA during the trust phase.
    assert_eq!(
        certs::check_leaf(Some(&leaf()), &old_ca, "demo-broker", &want, t1),
        None
    );
    assert_ne!(
        leaf(),
        old_leaf,
        "the year-old broker certificate was renewed"
    );
    let trusted_leaf = leaf();
    // Still within the grace: nothing moves.
    let changes = at(t1 + TRUST_GRACE - time::Duration::hours(1))
        .await
        .expect("wait");
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(leaf(), trusted_leaf);

    // After the grace: the new CA signs; the broker certificate is issued again from it.
    let t2 = t1 + TRUST_GRACE + time::Duration::minutes(1);
    let changes = at(t2).await.expect("promote");
    assert!(
        changes.iter().any(|c| c.contains("CA renewed")),
        "{changes:?}"
    );
    // ca.crt of the private Secret: the signing CA first, then the previous ones.
    let new_ca = cluster_certs::first_pem(&w.secret("demo-cluster-ca", "ca.crt").expect("new ca"));
    assert_ne!(new_ca, old_ca);
    assert_eq!(
        certs::check_leaf(Some(&leaf()), &new_ca, "demo-broker", &want, t2),
        None
    );
    assert_eq!(
        certificates_in(&public()),
        2,
        "the previous CA stays trusted"
    );
    assert!(
        public().contains(old_ca.trim()),
        "the previous CA is still in the bundle"
    );
    assert_eq!(broker_bundle(), public());

    // Past the old CA's notAfter it leaves the bundle; the new one goes on signing.
    let t3 = not_after + time::Duration::days(1);
    let changes = at(t3).await.expect("drop");
    assert!(
        changes.iter().any(|c| c.contains("left the bundle")),
        "{changes:?}"
    );
    assert_eq!(certificates_in(&public()), 1);
    assert!(!public().contains(old_ca.trim()));
    assert_eq!(broker_bundle(), public());
    assert_eq!(
        w.secret("demo-cluster-ca", "ca.crt").as_deref(),
        Some(new_ca.as_str()),
        "only the signing CA is left"
    );
    assert_eq!(
        certs::check_leaf(Some(&leaf()), &new_ca, "demo-broker", &want, t3),
        None
    );
}
