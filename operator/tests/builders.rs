//! Snapshot tests of every object a 3-zone, 2-brokers-per-zone cluster becomes, plus the
//! properties the snapshots must keep (ids, affinity, typed shape).

mod fixtures;

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Service},
    policy::v1::PodDisruptionBudget,
};
use rivulet_operator::builders::*;

#[test]
fn snapshot_every_object() {
    let built = build_cluster(&fixtures::three_zone_cluster());
    assert_eq!(built.objects.len(), 11);
    for o in &built.objects {
        insta::assert_yaml_snapshot!(format!("{:?}-{}", o.kind, o.name), o.value);
    }
    assert_eq!(built.bootstrap_address, "demo-bootstrap.kafka.svc:9092");
}

#[test]
fn objects_deserialize_into_their_kubernetes_types() {
    for o in build_cluster(&fixtures::three_zone_cluster()).objects {
        let v = o.value.clone();
        let ok = match o.kind {
            ObjKind::ConfigMap => serde_json::from_value::<ConfigMap>(v).is_ok(),
            ObjKind::Service => serde_json::from_value::<Service>(v).is_ok(),
            ObjKind::PodDisruptionBudget => {
                serde_json::from_value::<PodDisruptionBudget>(v).is_ok()
            }
            ObjKind::StatefulSet => serde_json::from_value::<StatefulSet>(v).is_ok(),
        };
        assert!(ok, "{} does not parse as a {:?}", o.name, o.kind);
    }
}

fn broker_sets(kc: &rivulet_operator::crd::KafkaCluster) -> Vec<StatefulSet> {
    build_cluster(kc)
        .objects
        .into_iter()
        .filter(|o| o.kind == ObjKind::StatefulSet && o.name.contains("-broker-"))
        .map(|o| serde_json::from_value(o.value).expect("statefulset"))
        .collect()
}

fn ids(kc: &rivulet_operator::crd::KafkaCluster) -> Vec<i32> {
    let mut ids = Vec::new();
    for s in broker_sets(kc) {
        let spec = s.spec.expect("spec");
        let start = spec.ordinals.and_then(|o| o.start).unwrap_or(0);
        ids.extend(start..start + spec.replicas.unwrap_or(0));
    }
    ids
}

#[test]
fn broker_ids_are_stable_when_zones_are_appended_or_brokers_added() {
    let mut kc = fixtures::three_zone_cluster();
    let before = ids(&kc);
    assert_eq!(before, vec![0, 1, 1000, 1001, 2000, 2001]);
    kc.spec.brokers_per_zone = 3;
    kc.spec.zones.push("eu-west-1d".into());
    let after = ids(&kc);
    for id in &before {
        assert!(after.contains(id), "broker id {id} vanished");
    }
    assert_eq!(
        after,
        vec![0, 1, 2, 1000, 1001, 1002, 2000, 2001, 2002, 3000, 3001, 3002]
    );
}

#[test]
fn each_zone_is_pinned_and_gets_its_rack() {
    let kc = fixtures::three_zone_cluster();
    for (s, zone) in broker_sets(&kc).iter().zip(&kc.spec.zones) {
        let v = serde_json::to_value(s).expect("json");
        let pod = &v["spec"]["template"]["spec"];
        assert_eq!(
            pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0],
            serde_json::json!(zone)
        );
        let env = pod["containers"][0]["env"].as_array().expect("env");
        assert!(env
            .iter()
            .any(|e| e["name"] == "RIVULET_RACK" && e["value"] == serde_json::json!(zone)));
    }
}

#[test]
fn config_change_changes_pod_template_hash_only_of_brokers() {
    let kc = fixtures::three_zone_cluster();
    let mut changed = kc.clone();
    changed
        .spec
        .config
        .insert("log.retention.ms".into(), "1000".into());
    let a = build_cluster(&kc);
    let b = build_cluster(&changed);
    for (x, y) in a.objects.iter().zip(&b.objects) {
        let differs = x.applied_hash() != y.applied_hash();
        let expected = x.kind == ObjKind::ConfigMap || x.name.contains("-broker-z");
        assert_eq!(differs, expected, "{}", x.name);
    }
    // Building twice gives the same hashes: nothing is re-applied for an unchanged spec.
    assert_eq!(a, build_cluster(&kc));
}
