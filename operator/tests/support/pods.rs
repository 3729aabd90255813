//! Rendered pod specs as the kubelet would run them: a StatefulSet's container, and its env with
//! downward-API values filled in, `$(VAR)` references expanded and the broker ConfigMap's data
//! added as envFrom does.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container};
use rivulet_operator::builders::{ClusterObjects, DesiredObject, ObjKind};

/// The first container of the StatefulSet `name` among `objects`.
pub fn container(objects: &[DesiredObject], name: &str) -> Container {
    let o = objects
        .iter()
        .find(|o| o.name == name && o.kind == ObjKind::StatefulSet)
        .expect("statefulset");
    let sts: StatefulSet = serde_json::from_value(o.value.clone()).expect("statefulset");
    sts.spec
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .containers[0]
        .clone()
}

/// `$(NAME)` expansion as Kubernetes does for env values (earlier entries only).
pub fn expand(v: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = v.to_string();
    for (k, val) in env {
        out = out.replace(&format!("$({k})"), val);
    }
    out
}

/// The env of broker container `c` in pod `pod_name` (ordinal label `index`), then the data of
/// the ConfigMap `config_map` as envFrom adds it.
pub fn kubelet_env(
    built: &ClusterObjects,
    c: &Container,
    pod_name: &str,
    index: i32,
    config_map: &str,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for e in c.env.clone().unwrap_or_default() {
        let value = match (e.value, e.value_from.and_then(|f| f.field_ref)) {
            (Some(v), _) => expand(&v, &env),
            (None, Some(f)) if f.field_path == "metadata.name" => pod_name.to_string(),
            (None, Some(f))
                if f.field_path == "metadata.labels['apps.kubernetes.io/pod-index']" =>
            {
                index.to_string()
            }
            (None, other) => panic!("{}: unexpected source {other:?}", e.name),
        };
        env.insert(e.name, value);
    }
    let cm = built
        .objects
        .iter()
        .find(|o| o.name == config_map)
        .expect("config map");
    let cm: ConfigMap = serde_json::from_value(cm.value.clone()).expect("configmap");
    env.extend(cm.data.unwrap_or_default());
    env
}
