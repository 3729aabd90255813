//! The CRDs' CEL rules (x-kubernetes-validations) evaluated client-side with kube's CEL
//! validator, so a typo in a rule or a rule that doesn't do what it says fails here, not in a
//! real API server. Also checks each rule stays within the API server's cost budget.

mod fixtures;

use kube::core::cel::{compile_schema, estimate_rule_cost, Validator};
use kube::CustomResourceExt;
use rivulet_operator::crd::{KafkaCluster, KafkaTopic, KafkaUser};
use serde_json::{json, Value};

fn schema<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    let s = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("schema");
    serde_json::to_value(s).expect("json")
}

fn cluster() -> Value {
    serde_json::to_value(fixtures::three_zone_cluster()).expect("json")
}

/// Messages of the rules `new` breaks, given `old`.
fn broken(schema: &Value, new: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(schema, new, old) {
        Ok(()) => vec![],
        Err(errs) => errs.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

#[test]
fn zones_are_append_only() {
    let s = schema::<KafkaCluster>();
    let old = cluster();
    assert_eq!(broken(&s, &old, None), Vec::<String>::new());
    assert_eq!(broken(&s, &old, Some(&old)), Vec::<String>::new());

    let mut appended = old.clone();
    appended["spec"]["zones"] = json!(["eu-west-1a", "eu-west-1b", "eu-west-1c", "eu-west-1d"]);
    assert_eq!(broken(&s, &appended, Some(&old)), Vec::<String>::new());

    for zones in [
        json!(["eu-west-1b", "eu-west-1a", "eu-west-1c"]),
        json!(["eu-west-1a", "eu-west-1c"]),
    ] {
        let mut bad = old.clone();
        bad["spec"]["zones"] = zones.clone();
        let errs = broken(&s, &bad, Some(&old));
        assert!(
            errs.iter().any(|m| m.contains("append-only")),
            "{zones}: {errs:?}"
        );
    }
}

#[test]
fn storage_size_never_decreases() {
    let s = schema::<KafkaCluster>();
    let old = cluster();
    let mut grown = old.clone();
    grown["spec"]["storage"]["size"] = json!("200Gi");
    assert_eq!(broken(&s, &grown, Some(&old)), Vec::<String>::new());
    let mut same_in_other_units = old.clone();
    same_in_other_units["spec"]["storage"]["size"] = json!("102400Mi");
    assert_eq!(
        broken(&s, &same_in_other_units, Some(&old)),
        Vec::<String>::new()
    );
    let mut shrunk = old.clone();
    shrunk["spec"]["storage"]["size"] = json!("50Gi");
    let errs = broken(&s, &shrunk, Some(&old));
    assert!(
        errs.iter().any(|m| m.contains("can't decrease")),
        "{errs:?}"
    );
}

#[test]
fn autoscaling_bounds() {
    let s = schema::<KafkaCluster>();
    let ok = cluster();
    assert_eq!(broken(&s, &ok, None), Vec::<String>::new());
    // Mi-sized volumes and steps (test beds) are fine; 16Ti is the largest maxSize.
    let mut small = ok.clone();
    small["spec"]["storage"]["size"] = json!("64Mi");
    small["spec"]["storage"]["autoscaling"]["minIncrement"] = json!("8Mi");
    small["spec"]["storage"]["autoscaling"]["maxSize"] = json!("16Ti");
    assert_eq!(broken(&s, &small, None), Vec::<String>::new());
    let cases = [
        ("maxSize", json!("17Ti"), "16Ti"),
        ("maxSize", json!("50Gi"), "at least storage.size"),
        (
            "criticalUtilizationPercent",
            json!(60),
            "criticalUtilizationPercent must be above",
        ),
        ("marginPercent", json!(60), "marginPercent must be below"),
        ("minIncrement", json!("0"), "minIncrement must be positive"),
    ];
    for (field, value, want) in cases {
        let mut bad = ok.clone();
        bad["spec"]["storage"]["autoscaling"][field] = value.clone();
        let errs = broken(&s, &bad, None);
        assert!(
            errs.iter().any(|m| m.contains(want)),
            "{field}={value}: {errs:?}"
        );
    }
}

#[test]
fn topic_name_is_immutable() {
    let s = schema::<KafkaTopic>();
    let old = json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaTopic",
        "metadata": {"name": "t"},
        "spec": {"clusterRef": {"name": "demo"}, "partitions": 1, "topicName": "orders"}});
    assert_eq!(broken(&s, &old, Some(&old)), Vec::<String>::new());
    let mut renamed = old.clone();
    renamed["spec"]["topicName"] = json!("orders-v2");
    let errs = broken(&s, &renamed, Some(&old));
    assert!(errs.iter().any(|m| m.contains("immutable")), "{errs:?}");
}

#[test]
fn topic_name_can_be_neither_added_nor_removed() {
    let s = schema::<KafkaTopic>();
    let named = json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaTopic",
        "metadata": {"name": "t"},
        "spec": {"clusterRef": {"name": "demo"}, "partitions": 1, "topicName": "orders"}});
    let mut unnamed = named.clone();
    unnamed["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("topicName");
    // Creating either is fine; other edits of either are fine.
    assert_eq!(broken(&s, &unnamed, None), Vec::<String>::new());
    let mut grown = unnamed.clone();
    grown["spec"]["partitions"] = json!(3);
    assert_eq!(broken(&s, &grown, Some(&unnamed)), Vec::<String>::new());
    // Removing or adding topicName would rename the Kafka topic the resource manages.
    for (new, old) in [(&unnamed, &named), (&named, &unnamed)] {
        let errs = broken(&s, new, Some(old));
        assert!(
            errs.iter().any(|m| m.contains("can't be added or removed")),
            "{errs:?}"
        );
    }
    // Even when the added name equals metadata.name (same topic): the rule is about the field.
    let mut same = unnamed.clone();
    same["spec"]["topicName"] = json!("t");
    assert!(!broken(&s, &same, Some(&unnamed)).is_empty());
}

#[test]
fn cluster_ref_is_immutable() {
    let s = schema::<KafkaTopic>();
    let old = json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaTopic",
        "metadata": {"name": "t"},
        "spec": {"clusterRef": {"name": "demo"}, "partitions": 1}});
    let mut moved = old.clone();
    moved["spec"]["clusterRef"]["name"] = json!("other");
    let errs = broken(&s, &moved, Some(&old));
    assert_eq!(errs, vec!["clusterRef is immutable".to_string()]);
    assert_eq!(broken(&s, &moved, None), Vec::<String>::new());
}

/// Every node carrying rules: (path, node).
fn rule_nodes<'a>(path: String, node: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    if node.get("x-kubernetes-validations").is_some() {
        out.push((path.clone(), node));
    }
    if let Some(props) = node["properties"].as_object() {
        for (k, v) in props {
            rule_nodes(format!("{path}.{k}"), v, out);
        }
    }
    if node.get("items").is_some() {
        rule_nodes(format!("{path}[]"), &node["items"], out);
    }
}

#[test]
fn rules_compile_within_cost_budget() {
    let mut seen = 0;
    for s in [
        schema::<KafkaCluster>(),
        schema::<KafkaTopic>(),
        schema::<KafkaUser>(),
    ] {
        let mut nodes = Vec::new();
        rule_nodes(String::new(), &s, &mut nodes);
        for (path, node) in nodes {
            let compiled = compile_schema(node);
            for r in &compiled.validations {
                assert!(r.is_ok(), "{path}: rule does not compile: {r:?}");
            }
            for rule in node["x-kubernetes-validations"].as_array().expect("rules") {
                let rule = rule["rule"].as_str().expect("rule text");
                let warnings = estimate_rule_cost(rule, &compiled);
                assert!(warnings.is_empty(), "{path}: {rule}: {warnings:?}");
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 17, "every rule was checked");
}

#[test]
fn listener_rules() {
    let s = schema::<KafkaCluster>();
    let with = |listeners: Value| {
        let mut c = cluster();
        c["spec"]["listeners"] = listeners;
        c
    };
    let ok = with(json!([
        {"name": "tls", "port": 9093, "tls": true, "authentication": "scram-sha-512"},
        {"name": "mtls", "port": 9094, "tls": true, "authentication": "tls"},
        {"name": "plain", "port": 9092}
    ]));
    assert_eq!(broken(&s, &ok, None), Vec::<String>::new());
    for (listeners, msg) in [
        (
            json!([{"name": "a", "port": 9093}, {"name": "a", "port": 9094}]),
            "names must be unique",
        ),
        (
            json!([{"name": "a", "port": 9093}, {"name": "b", "port": 9093}]),
            "ports must be unique",
        ),
        (
            json!([{"name": "a", "port": 9093, "authentication": "tls"}]),
            "needs tls: true",
        ),
        (json!([{"name": "a", "port": 9091}]), "reserved"),
        (json!([{"name": "a", "port": 8092}]), "reserved"),
        (json!([{"name": "replication", "port": 9093}]), "reserved"),
        (json!([{"name": "admin", "port": 9093}]), "reserved"),
    ] {
        let errs = broken(&s, &with(listeners.clone()), None);
        assert!(
            errs.iter().any(|m| m.contains(msg)),
            "{listeners}: {errs:?}"
        );
    }
}

#[test]
fn user_rules() {
    let s = schema::<KafkaUser>();
    let user = |spec: Value| {
        json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaUser",
               "metadata": {"name": "u", "namespace": "kafka"}, "spec": spec})
    };
    let ok = user(json!({"clusterRef": {"name": "demo"},
        "authentication": {"type": "scram-sha-512",
                           "password": {"valueFrom": {"name": "s", "key": "k"}}},
        "authorization": {"acls": [
            {"resource": {"type": "cluster"}, "operations": ["IdempotentWrite"]},
            {"resource": {"type": "topic", "name": "t"}, "operations": ["Read"]}]}}));
    assert_eq!(broken(&s, &ok, None), Vec::<String>::new());
    let tls_pw = user(json!({"clusterRef": {"name": "demo"},
        "authentication": {"type": "tls", "password": {"valueFrom": {"name": "s", "key": "k"}}}}));
    let errs = broken(&s, &tls_pw, None);
    assert!(
        errs.iter().any(|m| m.contains("only for scram-sha-512")),
        "{errs:?}"
    );
    let nameless = user(json!({"clusterRef": {"name": "demo"},
        "authentication": {"type": "scram-sha-512"},
        "authorization": {"acls": [{"resource": {"type": "topic"}, "operations": ["Read"]}]}}));
    let errs = broken(&s, &nameless, None);
    assert!(
        errs.iter().any(|m| m.contains("name is required")),
        "{errs:?}"
    );
}
