//! Drift: the fields the operator sets on an object, compared with the live object.
//!
//! `plan()` compares the applied-hash annotation, which catches spec changes but not edits made
//! to the live object (`kubectl scale sts … --replicas=0`, `kubectl label`, `kubectl edit` of an
//! env value keep the annotation). [`drifted_paths`] compares the desired object itself with the
//! live one, field by field:
//!
//! - every leaf the desired object sets must be in the live object with the same value;
//! - whatever the live object has beyond that is ignored: server defaults (`protocol: TCP`,
//!   `scheme: HTTP`, `status`, `managedFields`, …) and fields other managers own (extra
//!   labels, annotations, env entries added by someone else — server-side apply with our field
//!   manager would not remove them either) — except keys added to an [`EXACT_MAPS`] map (the
//!   broker ConfigMap's `data`), which the apply step removes;
//! - lists whose items all carry a `name` are matched by name (containers, env, ports, volume
//!   mounts, owner references), other lists item by item and must have the same length, lists
//!   of scalars must be equal;
//! - an empty list or map, or null, in the desired object asks for nothing (the API server
//!   drops empty values);
//! - quantities compare by value (`1.5` = `1500m`, `1Gi` = `1024Mi`);
//! - [`IGNORED`] paths are never compared: a StatefulSet's `volumeClaimTemplates` change only
//!   through the recreate path of the cluster controller (the API server refuses them in place).
//!
//! The comparison is against whatever desired object the caller passes — a drain holding a
//! StatefulSet at its old replica count passes that held object, the roller's pod deletions
//! don't touch the StatefulSet at all — so drift never fights the other day-2 machinery.

use serde_json::Value;

use crate::builders::{DesiredObject, ObjKind, APPLIED_HASH};

/// Paths (dotted, from the object root) drift never compares.
pub const IGNORED: &[&str] = &["spec.volumeClaimTemplates"];

/// The paths at which `live` differs from what `desired` sets, in a stable order.
pub fn drifted_paths(desired: &Value, live: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", desired, Some(live), &mut out);
    out
}

/// Objects whose applied hash matches the live annotation (so `plan()` leaves them alone) but
/// whose live fields drifted, with the drifted paths: these are applied again. `live` finds the
/// live JSON of an object by kind and name; objects that are gone are `plan()`'s business.
pub fn drifted_objects<'a>(
    desired: &'a [DesiredObject],
    live: impl Fn(ObjKind, &str) -> Option<&'a Value>,
) -> Vec<(&'a DesiredObject, Vec<String>)> {
    desired
        .iter()
        .filter_map(|d| {
            let l = live(d.kind, &d.name)?;
            let hash = l["metadata"]["annotations"][APPLIED_HASH].as_str();
            if hash != Some(d.applied_hash()) || l["metadata"]["deletionTimestamp"].is_string() {
                return None;
            }
            let mut paths = drifted_paths(&d.value, l);
            paths.extend(
                extra_keys(d.kind, &d.value, l)
                    .into_iter()
                    .map(|(map, key)| join(map, &key)),
            );
            (!paths.is_empty()).then_some((d, paths))
        })
        .collect()
}

/// Maps the operator owns whole, where a key someone else added is drift too: the broker
/// ConfigMap's `data` becomes the brokers' environment (`envFrom`), so an extra key there
/// would reach the brokers without validation.
pub const EXACT_MAPS: &[(ObjKind, &str)] = &[(ObjKind::ConfigMap, "data")];

/// Keys of the [`EXACT_MAPS`] of `live` that `desired` doesn't have, as (map, key). Server-side
/// apply doesn't remove keys another field manager added, so the apply step removes these
/// explicitly (a merge patch setting them to null).
pub fn extra_keys(kind: ObjKind, desired: &Value, live: &Value) -> Vec<(&'static str, String)> {
    EXACT_MAPS
        .iter()
        .filter(|(k, _)| *k == kind)
        .flat_map(|(_, map)| {
            let want = desired[*map].as_object();
            live[*map]
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .filter(move |key| !want.is_some_and(|w| w.contains_key(*key)))
                .map(move |key| (*map, key.clone()))
        })
        .collect()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn asks_nothing(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Go's zero values, which the API server may leave out (`omitempty`): absent means this.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn walk(path: &str, want: &Value, have: Option<&Value>, out: &mut Vec<String>) {
    if IGNORED.contains(&path) || asks_nothing(want) {
        return;
    }
    let Some(have) = have.filter(|h| !h.is_null()) else {
        // Absent: every leaf below must be a zero value the server may leave out.
        match want {
            Value::Object(w) => {
                for (k, wv) in w {
                    walk(&join(path, k), wv, None, out);
                }
            }
            w if is_zero(w) => {}
            _ => out.push(path.to_string()),
        }
        return;
    };
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => {
            for (k, wv) in w {
                walk(&join(path, k), wv, h.get(k), out);
            }
        }
        (Value::Array(w), Value::Array(h)) => walk_list(path, w, h, out),
        (w, h) => {
            if !scalar_eq(w, h) {
                out.push(path.to_string());
            }
        }
    }
}

fn walk_list(path: &str, want: &[Value], have: &[Value], out: &mut Vec<String>) {
    let names: Option<Vec<&str>> = want.iter().map(|v| v["name"].as_str()).collect();
    match names {
        Some(names) if want.iter().all(Value::is_object) => {
            for (name, w) in names.iter().zip(want) {
                let item = format!("{path}[{name}]");
                match have.iter().find(|h| h["name"].as_str() == Some(name)) {
                    Some(h) => walk(&item, w, Some(h), out),
                    None => out.push(item),
                }
            }
        }
        _ if want.iter().all(|v| v.is_object() || v.is_array()) => {
            if want.len() != have.len() {
                out.push(path.to_string());
                return;
            }
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                walk(&format!("{path}[{i}]"), w, Some(h), out);
            }
        }
        _ => {
            let same =
                want.len() == have.len() && want.iter().zip(have).all(|(w, h)| scalar_eq(w, h));
            if !same {
                out.push(path.to_string());
            }
        }
    }
}

fn scalar_eq(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) => {
            a == b || matches!((quantity(a), quantity(b)), (Some(x), Some(y)) if x == y)
        }
        _ => want == have,
    }
}

/// A Kubernetes quantity in milli-units (`500m` → 500, `2` → 2000, `1Gi` → 2^30·1000), for
/// comparing the API server's canonical form with what was sent. `None` when not a quantity.
fn quantity(q: &str) -> Option<u128> {
    if q.is_empty() {
        return None;
    }
    if let Some(milli) = q.strip_suffix('m') {
        // Whole milli-units only (the API server keeps nothing finer).
        return milli
            .chars()
            .all(|c| c.is_ascii_digit())
            .then(|| milli.parse().ok())
            .flatten();
    }
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if digits(int) && digits(frac) {
        // A plain decimal: at most three fractional digits are milli-units.
        if frac.len() > 3 || int.is_empty() {
            return None;
        }
        return format!("{int}{frac:0<3}").parse().ok();
    }
    crate::quantity::parse_bytes(q)?.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts(replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "demo-broker-z0", "labels": {"rivulet.dev/cluster": "demo"},
                         "annotations": {APPLIED_HASH: "h1"}},
            "spec": {
                "replicas": replicas,
                "ordinals": {"start": 0},
                "selector": {"matchLabels": {"rivulet.dev/cluster": "demo"}},
                "template": {"spec": {
                    "imagePullSecrets": [],
                    "containers": [{
                        "name": "broker",
                        "args": ["--a", "--b"],
                        "env": [{"name": "RIVULET_LOG_FORMAT", "value": "json"},
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "ports": [{"name": "kafka", "containerPort": 9092}],
                        "resources": {"requests": {"cpu": "1.5", "memory": "2Gi"}},
                    }],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
                }},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}],
            },
        })
    }

    /// The desired object as the API server returns it: defaults added, quantities canonical.
    fn live_of(desired: &Value) -> Value {
        let mut l = desired.clone();
        l["metadata"]["uid"] = json!("u");
        l["metadata"]["managedFields"] = json!([{"manager": "rivulet-operator"}]);
        l["metadata"]["labels"]["added-by-someone"] = json!("x");
        l["spec"]["template"]["spec"]
            .as_object_mut()
            .expect("pod spec")
            .remove("imagePullSecrets");
        let c = &mut l["spec"]["template"]["spec"]["containers"][0];
        c["ports"][0]["protocol"] = json!("TCP");
        c["resources"]["requests"]["cpu"] = json!("1500m");
        c["terminationMessagePath"] = json!("/dev/termination-log");
        c["env"][1]["valueFrom"]["fieldRef"]["apiVersion"] = json!("v1");
        c["env"]
            .as_array_mut()
            .expect("env")
            .push(json!({"name": "EXTRA", "value": "someone else's"}));
        l["spec"]["podManagementPolicy"] = json!("OrderedReady");
        l["status"] = json!({"replicas": 2, "readyReplicas": 2});
        l
    }

    #[test]
    fn table() {
        type Edit = fn(&mut Value);
        let cases: &[(&str, Edit, &[&str])] = &[
            ("server defaults and others' fields", |_| {}, &[]),
            (
                "kubectl scale --replicas=0",
                |l| l["spec"]["replicas"] = json!(0),
                &["spec.replicas"],
            ),
            (
                "label value edited",
                |l| l["metadata"]["labels"]["rivulet.dev/cluster"] = json!("other"),
                &["metadata.labels.rivulet.dev/cluster"],
            ),
            (
                "label removed",
                |l| {
                    l["metadata"]["labels"]
                        .as_object_mut()
                        .expect("labels")
                        .remove("rivulet.dev/cluster");
                },
                &["metadata.labels.rivulet.dev/cluster"],
            ),
            (
                "env value edited",
                |l| {
                    l["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] =
                        json!("text")
                },
                &["spec.template.spec.containers[broker].env[RIVULET_LOG_FORMAT].value"],
            ),
            (
                "env entry removed",
                |l| {
                    l["spec"]["template"]["spec"]["containers"][0]["env"]
                        .as_array_mut()
                        .expect("env")
                        .remove(0);
                },
                &["spec.template.spec.containers[broker].env[RIVULET_LOG_FORMAT]"],
            ),
            (
                "env reordered",
                |l| {
                    l["spec"]["template"]["spec"]["containers"][0]["env"]
                        .as_array_mut()
                        .expect("env")
                        .swap(0, 1)
                },
                &[],
            ),
            (
                "args changed",
                |l| l["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["--a"]),
                &["spec.template.spec.containers[broker].args"],
            ),
            (
                "zone changed in a nameless list",
                |l| {
                    l["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
                        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
                        ["matchExpressions"][0]["values"] = json!(["b"])
                },
                &["spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values"],
            ),
            (
                "term added to a nameless list",
                |l| {
                    let terms = &mut l["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
                        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
                    terms
                        .as_array_mut()
                        .expect("terms")
                        .push(json!({"matchExpressions": []}));
                },
                &["spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"],
            ),
            (
                "cpu in other units, same value",
                |l| {
                    l["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
                        ["cpu"] = json!("1500m")
                },
                &[],
            ),
            (
                "memory changed",
                |l| {
                    l["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
                        ["memory"] = json!("1Gi")
                },
                &["spec.template.spec.containers[broker].resources.requests.memory"],
            ),
            (
                "container removed",
                |l| l["spec"]["template"]["spec"]["containers"] = json!([]),
                &["spec.template.spec.containers[broker]"],
            ),
            (
                "claim template (recreate path, ignored)",
                |l| {
                    l["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]
                        ["storage"] = json!("9Gi")
                },
                &[],
            ),
            (
                "a zero value the server left out",
                |l| {
                    l["spec"].as_object_mut().expect("spec").remove("ordinals");
                },
                &[],
            ),
            (
                "selector edited",
                |l| l["spec"]["selector"]["matchLabels"]["rivulet.dev/cluster"] = json!("x"),
                &["spec.selector.matchLabels.rivulet.dev/cluster"],
            ),
        ];
        for (what, edit, want) in cases {
            let desired = sts(2);
            let mut live = live_of(&desired);
            edit(&mut live);
            assert_eq!(drifted_paths(&desired, &live), *want, "{what}");
        }
    }

    #[test]
    fn quantities() {
        for (a, b, same) in [
            ("1.5", "1500m", true),
            ("2", "2000m", true),
            ("500m", "0.5", true),
            ("1Gi", "1024Mi", true),
            ("1Gi", "1G", false),
            ("json", "text", false),
            ("100", "100", true),
            ("1", "2", false),
        ] {
            assert_eq!(scalar_eq(&json!(a), &json!(b)), same, "{a} vs {b}");
        }
    }

    fn obj(kind: ObjKind, name: &str, value: Value) -> DesiredObject {
        DesiredObject {
            kind,
            name: name.into(),
            value,
        }
    }

    #[test]
    fn only_objects_whose_hash_matches_are_checked() {
        let d = vec![
            obj(ObjKind::StatefulSet, "a", sts(2)),
            obj(ObjKind::StatefulSet, "b", sts(2)),
            obj(ObjKind::StatefulSet, "c", sts(2)),
            obj(ObjKind::StatefulSet, "gone", sts(2)),
        ];
        let mut scaled = live_of(&sts(2));
        scaled["spec"]["replicas"] = json!(0);
        // b: the spec changed since (hash differs): plan() writes or holds it, not drift.
        let mut stale = scaled.clone();
        stale["metadata"]["annotations"][APPLIED_HASH] = json!("older");
        // c: terminating (the recreate path's orphaning delete): left alone.
        let mut terminating = scaled.clone();
        terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let lives = [("a", scaled), ("b", stale), ("c", terminating)];
        let found = drifted_objects(&d, |_, n| {
            lives.iter().find(|(ln, _)| *ln == n).map(|(_, v)| v)
        });
        let names: Vec<(&str, Vec<String>)> = found
            .iter()
            .map(|(o, p)| (o.name.as_str(), p.clone()))
            .collect();
        assert_eq!(names, vec![("a", vec!["spec.replicas".to_string()])]);
    }

    #[test]
    fn extra_config_map_keys_are_drift_extra_labels_are_not() {
        let desired = json!({"metadata": {"name": "cfg", "labels": {"a": "1"}, "annotations": {APPLIED_HASH: "h"}},
                             "data": {"RIVULET_LOG_LEVEL": "info"}});
        let mut live = desired.clone();
        live["metadata"]["labels"]["b"] = json!("2");
        let d = vec![obj(ObjKind::ConfigMap, "cfg", desired.clone())];
        assert!(drifted_objects(&d, |_, _| Some(&live)).is_empty());
        live["data"]["RIVULET_NUM_PARTITIONS"] = json!("7");
        let found = drifted_objects(&d, |_, _| Some(&live));
        assert_eq!(found[0].1, vec!["data.RIVULET_NUM_PARTITIONS".to_string()]);
        assert_eq!(
            extra_keys(ObjKind::ConfigMap, &desired, &live),
            vec![("data", "RIVULET_NUM_PARTITIONS".to_string())]
        );
        // Other kinds have no exact maps: a StatefulSet's extra fields are others'.
        assert!(extra_keys(ObjKind::StatefulSet, &desired, &live).is_empty());
        // A desired ConfigMap without data: every live key is extra.
        let bare = json!({"metadata": {"name": "cfg"}});
        assert_eq!(extra_keys(ObjKind::ConfigMap, &bare, &live).len(), 2);
    }

    #[test]
    fn a_held_replica_count_is_what_gets_compared() {
        // A drain holds the StatefulSet at 3 while the spec says 2: the held object is desired.
        let held = sts(3);
        let live = live_of(&held);
        assert!(drifted_paths(&held, &live).is_empty());
        assert_eq!(drifted_paths(&sts(2), &live), vec!["spec.replicas"]);
    }

    proptest::proptest! {
        /// Whatever the live object adds (defaults, others' fields) is never drift, and any
        /// change of a value the desired object sets is.
        #[test]
        fn additions_never_drift_changes_always_do(
            extra_key in "[a-z]{1,8}", extra_val in "[a-z0-9]{0,8}", replicas in 0i64..50,
        ) {
            let desired = sts(3);
            let mut live = live_of(&desired);
            live["metadata"]["annotations"][format!("x.io/{extra_key}")] = json!(extra_val);
            live["spec"][format!("x{extra_key}")] = json!(extra_val);
            proptest::prop_assert!(drifted_paths(&desired, &live).is_empty());
            live["spec"]["replicas"] = json!(replicas);
            let want: Vec<String> = if replicas == 3 { vec![] } else { vec!["spec.replicas".into()] };
            proptest::prop_assert_eq!(drifted_paths(&desired, &live), want);
        }
    }
}
