//! `spec.listeners` / `spec.authorization` rendered into the broker objects, and their checks.

mod fixtures;

use rivulet_operator::builders::{build_cluster, ObjKind, APPLIED_HASH};
use rivulet_operator::crd::KafkaCluster;
use rivulet_operator::security::listeners::{validate, TLS_DIR};
use rivulet_operator::validate::validate_cluster;
use serde_json::{json, Value};

fn secure() -> KafkaCluster {
    let mut kc = fixtures::three_zone_cluster();
    kc.spec.listeners = Some(
        serde_json::from_value(json!([
            {"name": "tls", "port": 9093, "tls": true, "authentication": "scram-sha-512"},
            {"name": "internal-plain", "port": 9095, "authentication": "plain"}
        ]))
        .expect("listeners"),
    );
    kc.spec.authorization = Some(
        serde_json::from_value(json!({"type": "simple", "superUsers": ["admin"]}))
            .expect("authorization"),
    );
    kc
}

fn env_of(sts: &Value) -> Vec<(String, String)> {
    sts["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or("").to_string(),
                e["value"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
    env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[test]
fn listeners_become_broker_flags_ports_and_the_certificate_mount() {
    let kc = secure();
    let built = build_cluster(&kc);
    assert_eq!(built.bootstrap_address, "demo-bootstrap.kafka.svc:9093");
    let sts = built
        .objects
        .iter()
        .find(|o| o.kind == ObjKind::StatefulSet && o.name == "demo-broker-z1")
        .expect("zone 1");
    let env = env_of(&sts.value);
    assert_eq!(
        get(&env, "RIVULET_LISTENERS"),
        Some("REPLICATION://0.0.0.0:9091,TLS://0.0.0.0:9093,INTERNAL_PLAIN://0.0.0.0:9095")
    );
    assert_eq!(
        get(&env, "RIVULET_ADVERTISED_LISTENERS"),
        Some(
            "REPLICATION://$(POD_NAME).demo-broker-headless.kafka.svc:9091,\
             TLS://$(POD_NAME).demo-broker-headless.kafka.svc:9093,\
             INTERNAL_PLAIN://$(POD_NAME).demo-broker-headless.kafka.svc:9095"
        )
    );
    assert_eq!(
        get(&env, "RIVULET_LISTENER_SECURITY_PROTOCOL_MAP"),
        Some("REPLICATION:SASL_SSL,TLS:SASL_SSL,INTERNAL_PLAIN:SASL_PLAINTEXT")
    );
    assert_eq!(
        get(&env, "RIVULET_INTER_BROKER_LISTENER_NAME"),
        Some("REPLICATION")
    );
    assert_eq!(
        get(&env, "RIVULET_SASL_ENABLED_MECHANISMS"),
        Some("SCRAM-SHA-512,PLAIN")
    );
    assert_eq!(
        get(&env, "RIVULET_SSL_CERT_FILE"),
        Some(format!("{TLS_DIR}/tls.crt").as_str())
    );
    assert_eq!(get(&env, "RIVULET_SSL_CLIENT_AUTH"), Some("none"));
    assert_eq!(
        get(&env, "RIVULET_LISTENER_SSL_CLIENT_AUTH"),
        Some("TLS:none")
    );
    assert_eq!(
        get(&env, "RIVULET_SUPER_USERS"),
        Some("User:rivulet-broker;User:rivulet-operator;User:admin")
    );
    // Replication authenticates as the broker user, from the mounted Secret; the coordinator's
    // znodes get ACLs for the brokers' digest user.
    let dir = "/etc/rivulet/internal";
    for (k, v) in [
        (
            "RIVULET_INTER_BROKER_SASL_MECHANISM",
            "SCRAM-SHA-512".to_string(),
        ),
        (
            "RIVULET_INTER_BROKER_SASL_USERNAME",
            "rivulet-broker".into(),
        ),
        (
            "RIVULET_INTER_BROKER_SASL_PASSWORD_FILE",
            format!("{dir}/broker-password"),
        ),
        (
            "RIVULET_BOOTSTRAP_SCRAM_USERS_FILE",
            format!("{dir}/bootstrap-users"),
        ),
        ("RIVULET_ZOOKEEPER_SET_ACL", "true".into()),
        (
            "RIVULET_COORDINATOR_DIGEST_USERNAME",
            "rivulet-broker".into(),
        ),
        (
            "RIVULET_COORDINATOR_DIGEST_PASSWORD_FILE",
            format!("{dir}/coordinator-password"),
        ),
    ] {
        assert_eq!(get(&env, k), Some(v.as_str()), "{k}");
    }
    // No password in the pod spec, in clear or otherwise: files only.
    let text = sts.value.to_string();
    for k in [
        "RIVULET_INTER_BROKER_SASL_PASSWORD\"",
        "RIVULET_COORDINATOR_DIGEST_PASSWORD\"",
    ] {
        assert!(!text.contains(k), "{k}");
    }
    // The single-listener settings are gone (they would fight RIVULET_LISTENERS).
    assert_eq!(get(&env, "RIVULET_LISTEN_ADDR"), None);
    assert_eq!(get(&env, "RIVULET_ADVERTISED_ADDR"), None);
    // Kept: the downward-API POD_NAME the advertised listeners expand.
    assert!(get(&env, "POD_NAME").is_some());

    let pod = &sts.value["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "demo-broker-tls");
    let creds = &pod["volumes"][1];
    assert_eq!(creds["secret"]["secretName"], "demo-internal-credentials");
    let keys: Vec<&str> = creds["secret"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["key"].as_str().unwrap_or(""))
        .collect();
    // The operator's own password is not mounted as such (the bootstrap file carries it).
    assert_eq!(
        keys,
        ["broker-password", "coordinator-password", "bootstrap-users"]
    );
    let c = &pod["containers"][0];
    let mounts = c["volumeMounts"].as_array().expect("mounts");
    assert!(mounts
        .iter()
        .any(|m| m["mountPath"] == TLS_DIR && m["readOnly"] == true));
    assert!(mounts
        .iter()
        .any(|m| m["mountPath"] == dir && m["readOnly"] == true && m["name"] == creds["name"]));
    let ports: Vec<(String, i64)> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").into(),
                p["containerPort"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        ports,
        vec![
            ("replication".into(), 9091),
            ("tls".into(), 9093),
            ("internal-plain".into(), 9095),
            ("admin".into(), 8092)
        ]
    );
    for svc in ["demo-bootstrap", "demo-broker-headless"] {
        let s = built
            .objects
            .iter()
            .find(|o| o.kind == ObjKind::Service && o.name == svc)
            .expect("service");
        let names: Vec<&str> = s.value["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| p["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(names, ["replication", "tls", "internal-plain"], "{svc}");
    }

    // The applied hash follows the rewritten object, so a listener change is applied.
    let plain = build_cluster(&fixtures::three_zone_cluster());
    let before = plain
        .objects
        .iter()
        .find(|o| o.name == "demo-broker-z1")
        .expect("zone 1");
    assert_ne!(before.applied_hash(), sts.applied_hash());
    let mut stripped = sts.value.clone();
    stripped["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove(APPLIED_HASH);
    stripped["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("annotations");
    assert_eq!(
        rivulet_operator::builders::hash_json(&stripped),
        sts.applied_hash()
    );
}

#[test]
fn mutual_tls_requires_client_certificates_on_its_listener_only() {
    let mut kc = fixtures::three_zone_cluster();
    kc.spec.listeners = Some(
        serde_json::from_value(json!([
            {"name": "mtls", "port": 9093, "tls": true, "authentication": "tls"},
            {"name": "tls", "port": 9094, "tls": true},
        ]))
        .expect("listeners"),
    );
    assert_eq!(
        validate(&kc.spec),
        Vec::<String>::new(),
        "a certificate listener and a TLS-only listener run side by side"
    );
    let built = build_cluster(&kc);
    let sts = built
        .objects
        .iter()
        .find(|o| o.name == "demo-broker-z0")
        .expect("zone 0");
    let env = env_of(&sts.value);
    assert_eq!(get(&env, "RIVULET_SSL_CLIENT_AUTH"), Some("none"));
    assert_eq!(
        get(&env, "RIVULET_LISTENER_SSL_CLIENT_AUTH"),
        Some("MTLS:required,TLS:none")
    );
    // Clients use certificates; the replication listener still needs SCRAM-SHA-512.
    assert_eq!(
        get(&env, "RIVULET_SASL_ENABLED_MECHANISMS"),
        Some("SCRAM-SHA-512")
    );
    assert_eq!(get(&env, "RIVULET_SUPER_USERS"), None);
}

/// The internal listener's protocol and the internal credentials, per kind of cluster.
#[test]
fn replication_is_authenticated_once_clients_are() {
    // (listeners, authorization, replication protocol, internal credentials mounted)
    let cases = [
        (
            json!([{"name": "plain", "port": 9093}]),
            false,
            "PLAINTEXT",
            false,
        ),
        (
            json!([{"name": "tls", "port": 9093, "tls": true}]),
            false,
            "PLAINTEXT",
            false,
        ),
        (
            json!([{"name": "s", "port": 9093, "authentication": "scram-sha-512"}]),
            false,
            "SASL_PLAINTEXT",
            true,
        ),
        (
            json!([{"name": "s", "port": 9093, "authentication": "plain"}]),
            true,
            "SASL_PLAINTEXT",
            true,
        ),
        (
            json!([{"name": "m", "port": 9093, "tls": true, "authentication": "tls"}]),
            true,
            "SASL_SSL",
            true,
        ),
    ];
    for (ls, authz, proto, creds) in cases {
        let mut kc = fixtures::three_zone_cluster();
        kc.spec.listeners = Some(serde_json::from_value(ls.clone()).expect("listeners"));
        if authz {
            kc.spec.authorization =
                Some(serde_json::from_value(json!({"type": "simple"})).expect("authz"));
        }
        assert!(validate(&kc.spec).is_empty(), "{ls}");
        let built = build_cluster(&kc);
        let sts = built
            .objects
            .iter()
            .find(|o| o.name == "demo-broker-z0")
            .expect("zone 0");
        let env = env_of(&sts.value);
        let map = get(&env, "RIVULET_LISTENER_SECURITY_PROTOCOL_MAP").unwrap_or("");
        assert!(
            map.starts_with(&format!("REPLICATION:{proto},")),
            "{ls}: {map}"
        );
        assert_eq!(
            get(&env, "RIVULET_ZOOKEEPER_SET_ACL").is_some(),
            creds,
            "{ls}"
        );
        assert_eq!(
            get(&env, "RIVULET_INTER_BROKER_SASL_USERNAME").is_some(),
            creds,
            "{ls}"
        );
        assert_eq!(
            sts.value.to_string().contains("demo-internal-credentials"),
            creds,
            "{ls}"
        );
    }
}

#[test]
fn without_listeners_nothing_changes() {
    let kc = fixtures::three_zone_cluster();
    assert!(validate(&kc.spec).is_empty());
    let built = build_cluster(&kc);
    assert_eq!(built.bootstrap_address, "demo-bootstrap.kafka.svc:9092");
    for o in &built.objects {
        let text = o.value.to_string();
        assert!(!text.contains("RIVULET_LISTENERS"), "{}", o.name);
        assert!(!text.contains("broker-tls"), "{}", o.name);
    }
}

#[test]
fn listener_problems_are_named() {
    let cases: Vec<(Value, Option<Value>, &str)> = vec![
        (
            json!([{"name": "a", "port": 9093}, {"name": "a", "port": 9094}]),
            None,
            "used twice",
        ),
        (
            json!([{"name": "a", "port": 9093}, {"name": "b", "port": 9093}]),
            None,
            "port 9093 is used twice",
        ),
        (json!([{"name": "a", "port": 9091}]), None, "reserved"),
        (json!([{"name": "admin", "port": 9093}]), None, "reserved"),
        (json!([{"name": "Upper", "port": 9093}]), None, "lowercase"),
        (
            json!([{"name": "a-very-long-listener", "port": 9093}]),
            None,
            "at most 15",
        ),
        (
            json!([{"name": "a", "port": 80}]),
            None,
            "outside 1024-65535",
        ),
        (
            json!([{"name": "a", "port": 9093, "authentication": "tls"}]),
            None,
            "needs tls: true",
        ),
        (
            json!([{"name": "a", "port": 9093}]),
            Some(json!({"type": "simple"})),
            "every listener must authenticate",
        ),
        (json!([]), None, "at least one listener"),
    ];
    for (listeners, authz, want) in cases {
        let mut kc = fixtures::three_zone_cluster();
        kc.spec.listeners = Some(serde_json::from_value(listeners.clone()).expect("listeners"));
        kc.spec.authorization = authz.map(|a| serde_json::from_value(a).expect("authz"));
        let errs = validate_cluster("demo", &kc.spec, None);
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{listeners}: want {want:?} in {errs:?}"
        );
    }
    let mut kc = fixtures::three_zone_cluster();
    kc.spec.authorization = Some(serde_json::from_value(json!({"type": "simple"})).expect("authz"));
    let errs = validate_cluster("demo", &kc.spec, None);
    assert!(
        errs.iter().any(|e| e.contains("needs spec.listeners")),
        "{errs:?}"
    );
    assert!(validate_cluster("demo", &secure().spec, None).is_empty());
}
