//! Pure builders: a KafkaCluster spec becomes the Kubernetes objects that run it.
//! No client here: every function maps data to data, so snapshot tests cover it all.
//!
//! Broker ids: a zone's position `i` in `spec.zones` (append-only) gives its broker
//! StatefulSet `ordinals.start = i * 1000`, so broker pods are named `<sts>-<id>` and the id is
//! the pod's ordinal (Kubernetes' `apps.kubernetes.io/pod-index` label, passed by the downward
//! API). Growing brokersPerZone adds ordinals at the end of each zone; appending a zone takes the
//! next block of 1000. Ids therefore never change and are never reused.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::core::ApiResource;
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::crd::KafkaCluster;
use crate::presets::{broker_key, preset_resources};
use crate::validate::ZONE_ID_STRIDE;

/// Annotation holding the hash of what the operator last applied to an object.
pub const APPLIED_HASH: &str = "rivulet.dev/applied-hash";
/// Pod-template annotation with the hash of the broker ConfigMap: a config change rolls pods.
pub const CONFIG_HASH: &str = "rivulet.dev/config-hash";
/// Default image of both servers when the spec has no override.
pub const DEFAULT_BROKER_IMAGE: &str = concat!("rivulet-broker:", env!("CARGO_PKG_VERSION"));

pub const KAFKA_PORT: i32 = 9092;
pub const BROKER_ADMIN_PORT: i32 = 8092;
pub const COORDINATOR_CLIENT_PORT: i32 = 2181;
pub const COORDINATOR_ADMIN_PORT: i32 = 8080;
pub const BROKER_DATA_DIR: &str = "/var/lib/rivulet/data";
pub const COORDINATOR_DATA_DIR: &str = "/var/lib/rivulet/coordinator";
/// Non-root user of the images.
pub const RUN_AS_USER: i64 = 65532;

/// The kinds of object a cluster is made of, in apply order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjKind {
    ConfigMap,
    Service,
    PodDisruptionBudget,
    StatefulSet,
}

impl ObjKind {
    pub fn api_resource(self) -> ApiResource {
        match self {
            ObjKind::ConfigMap => ApiResource::erase::<ConfigMap>(&()),
            ObjKind::Service => ApiResource::erase::<Service>(&()),
            ObjKind::PodDisruptionBudget => ApiResource::erase::<PodDisruptionBudget>(&()),
            ObjKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
        }
    }
}

/// One object the cluster needs, ready for server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObject {
    pub kind: ObjKind,
    pub name: String,
    /// The full object, `apiVersion`/`kind`/`metadata` included, with the applied-hash annotation.
    pub value: Value,
}

impl DesiredObject {
    fn new(kind: ObjKind, mut value: Value) -> Self {
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let hash = hash_json(&value);
        value["metadata"]["annotations"][APPLIED_HASH] = Value::String(hash);
        Self { kind, name, value }
    }

    /// Recomputes the applied-hash annotation after `value` was edited.
    pub fn rehash(&mut self) {
        if let Some(a) = self.value["metadata"]["annotations"].as_object_mut() {
            a.remove(APPLIED_HASH);
            if a.is_empty() {
                if let Some(m) = self.value["metadata"].as_object_mut() {
                    m.remove("annotations");
                }
            }
        }
        *self = Self::new(self.kind, self.value.take());
    }

    /// Reference to this object, for Events.
    pub fn object_ref(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        let ar = self.kind.api_resource();
        k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(ar.api_version),
            kind: Some(ar.kind),
            name: Some(self.name.clone()),
            namespace: self.value["metadata"]["namespace"]
                .as_str()
                .map(str::to_string),
            ..Default::default()
        }
    }

    /// The hash the apply step compares with the live object's annotation.
    pub fn applied_hash(&self) -> &str {
        self.value["metadata"]["annotations"][APPLIED_HASH]
            .as_str()
            .unwrap_or_default()
    }
}

/// Everything one KafkaCluster becomes.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterObjects {
    pub objects: Vec<DesiredObject>,
    pub bootstrap_address: String,
}

/// Hex SHA-256 of a JSON value (serde_json's map order is sorted, so this is stable).
pub fn hash_json(v: &Value) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

pub fn coordinator_name(cluster: &str) -> String {
    format!("{cluster}-coordinator")
}
pub fn coordinator_headless_name(cluster: &str) -> String {
    format!("{cluster}-coordinator-headless")
}
pub fn broker_headless_name(cluster: &str) -> String {
    format!("{cluster}-broker-headless")
}
pub fn bootstrap_name(cluster: &str) -> String {
    format!("{cluster}-bootstrap")
}
pub fn broker_config_name(cluster: &str) -> String {
    format!("{cluster}-broker-config")
}
/// Longest a broker's controlled shutdown waits for leadership to move (seconds).
pub const CONTROLLED_SHUTDOWN_SECS: u64 = 30;
/// Longest a broker then waits for in-flight requests (seconds).
pub const SHUTDOWN_DRAIN_SECS: u64 = 60;
/// A broker pod's termination grace period: controlled shutdown + drain + margin.
pub const BROKER_GRACE_SECS: u64 = 120;
const _: () = assert!(CONTROLLED_SHUTDOWN_SECS + SHUTDOWN_DRAIN_SECS + 20 <= BROKER_GRACE_SECS);

pub fn broker_sts_name(cluster: &str, zone_index: usize) -> String {
    format!("{cluster}-broker-z{zone_index}")
}
/// First broker id of a zone.
pub fn zone_first_id(zone_index: usize) -> i32 {
    zone_index as i32 * ZONE_ID_STRIDE
}

fn labels(cluster: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "rivulet".into()),
        ("app.kubernetes.io/instance".into(), cluster.into()),
        ("app.kubernetes.io/component".into(), component.into()),
        (
            "app.kubernetes.io/managed-by".into(),
            "rivulet-operator".into(),
        ),
        ("rivulet.dev/cluster".into(), cluster.into()),
    ])
}

fn selector(cluster: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("rivulet.dev/cluster".into(), cluster.into()),
        ("app.kubernetes.io/component".into(), component.into()),
    ])
}

fn metadata(kc: &KafkaCluster, name: &str, component: &str) -> Value {
    let owner = kc.controller_owner_ref(&());
    json!({
        "name": name,
        "namespace": kc.namespace().unwrap_or_default(),
        "labels": labels(&kc.name_any(), component),
        "ownerReferences": owner.map(|o| vec![o]).unwrap_or_default(),
    })
}

/// Environment variables rendered from `spec.config` and `spec.logLevel`.
pub fn broker_env_config(kc: &KafkaCluster) -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    for (k, v) in &kc.spec.config {
        // validate() refuses unknown keys before build runs; skipping here keeps build total.
        if let Some((env, _)) = broker_key(k) {
            data.insert(env.to_string(), v.clone());
        }
    }
    data.insert("RIVULET_LOG_LEVEL".into(), kc.spec.log_level.clone());
    data
}

fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

fn container_security() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

fn http_probe(path: &str, port: &str, period: i32, failures: i32) -> Value {
    json!({
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    })
}

fn pvc_template(size: &str, class: Option<&String>) -> Value {
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    });
    if let Some(c) = class {
        spec["storageClassName"] = json!(c);
    }
    json!({"metadata": {"name": "data"}, "spec": spec})
}

/// Coordinator pods a voluntary disruption (an eviction by `kubectl drain`, the cluster
/// autoscaler) may take down at once. A single coordinator gets 0: every broker depends on it
/// (registration, leader election, ISR changes; a broker that loses its session stops leading),
/// so evicting it is a cluster-wide outage, and a drain of its node blocks until an operator
/// deletes the pod by hand at a time they choose. An ensemble of `n` keeps its quorum with
/// `(n - 1) / 2` members down.
pub fn coordinator_max_unavailable(replicas: i32) -> i32 {
    if replicas <= 1 {
        0
    } else {
        (replicas - 1) / 2
    }
}

/// The coordinator's container command and args (the pod contract test runs exactly these).
pub fn coordinator_command() -> (Vec<String>, Vec<String>) {
    (
        vec!["/usr/local/bin/rivulet-coordinator".to_string()],
        vec![
            format!("--client-addr=0.0.0.0:{COORDINATOR_CLIENT_PORT}"),
            format!("--admin-addr=0.0.0.0:{COORDINATOR_ADMIN_PORT}"),
            format!("--data-dir={COORDINATOR_DATA_DIR}"),
        ],
    )
}

/// Builds every object of a (validated) cluster with the default image.
pub fn build_cluster(kc: &KafkaCluster) -> ClusterObjects {
    build_cluster_with_image(kc, DEFAULT_BROKER_IMAGE)
}

/// Builds every object of a (validated) cluster; `default_image` is used unless the spec
/// names an image.
pub fn build_cluster_with_image(kc: &KafkaCluster, default_image: &str) -> ClusterObjects {
    let name = kc.name_any();
    let ns = kc.namespace().unwrap_or_default();
    let spec = &kc.spec;
    let img = kc
        .spec
        .image
        .broker
        .clone()
        .unwrap_or_else(|| default_image.to_string());
    let pull_policy = spec
        .image
        .pull_policy
        .clone()
        .unwrap_or_else(|| "IfNotPresent".into());
    let pull_secrets: Vec<Value> = spec
        .image
        .pull_secrets
        .iter()
        .map(|s| json!({"name": s}))
        .collect();
    let mut objects = Vec::new();

    // Broker config, hashed onto the pod templates so a change rolls the brokers.
    let env_config = broker_env_config(kc);
    let config_hash = hash_json(&json!(env_config));
    objects.push(DesiredObject::new(
        ObjKind::ConfigMap,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(kc, &broker_config_name(&name), "broker"),
            "data": env_config,
        }),
    ));

    // Coordinator: headless Service for stable pod DNS, client Service, StatefulSet.
    let coord = coordinator_name(&name);
    let coord_sel = selector(&name, "coordinator");
    objects.push(DesiredObject::new(
        ObjKind::Service,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(kc, &coordinator_headless_name(&name), "coordinator"),
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": true,
                "selector": coord_sel,
                "ports": [{"name": "client", "port": COORDINATOR_CLIENT_PORT, "targetPort": "client"}],
            },
        }),
    ));
    objects.push(DesiredObject::new(
        ObjKind::Service,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(kc, &coord, "coordinator"),
            "spec": {
                "type": "ClusterIP",
                "selector": coord_sel,
                "ports": [{"name": "client", "port": COORDINATOR_CLIENT_PORT, "targetPort": "client"}],
            },
        }),
    ));
    // Coordinator PodDisruptionBudget: see coordinator_max_unavailable.
    objects.push(DesiredObject::new(
        ObjKind::PodDisruptionBudget,
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata(kc, &coord, "coordinator"),
            "spec": {
                "maxUnavailable": coordinator_max_unavailable(spec.coordinator.replicas),
                "selector": {"matchLabels": coord_sel},
            },
        }),
    ));
    let (coord_cmd, coord_args) = coordinator_command();
    let coord_resources = spec.coordinator.resources.clone().unwrap_or_else(|| {
        serde_json::from_value(json!({
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        }))
        .unwrap_or_default()
    });
    let mut coord_pod_labels = labels(&name, "coordinator");
    coord_pod_labels.extend(coord_sel.clone());
    objects.push(DesiredObject::new(
        ObjKind::StatefulSet,
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": metadata(kc, &coord, "coordinator"),
            "spec": {
                "replicas": spec.coordinator.replicas,
                "serviceName": coordinator_headless_name(&name),
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": coord_sel},
                "updateStrategy": {"type": "RollingUpdate"},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                "template": {
                    "metadata": {"labels": coord_pod_labels},
                    "spec": {
                        "securityContext": pod_security(),
                        "terminationGracePeriodSeconds": 30,
                        "imagePullSecrets": pull_secrets,
                        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "topology.kubernetes.io/zone",
                                "labelSelector": {"matchLabels": coord_sel},
                            },
                        }]}},
                        "containers": [{
                            "name": "coordinator",
                            "image": img,
                            "imagePullPolicy": pull_policy,
                            "command": coord_cmd,
                            "args": coord_args,
                            "ports": [
                                {"name": "client", "containerPort": COORDINATOR_CLIENT_PORT},
                                {"name": "admin", "containerPort": COORDINATOR_ADMIN_PORT},
                            ],
                            "readinessProbe": http_probe("/readyz", "admin", 5, 3),
                            "livenessProbe": http_probe("/healthz", "admin", 10, 6),
                            "startupProbe": http_probe("/healthz", "admin", 2, 60),
                            "resources": coord_resources,
                            "securityContext": container_security(),
                            "volumeMounts": [{"name": "data", "mountPath": COORDINATOR_DATA_DIR}],
                        }],
                    },
                },
                "volumeClaimTemplates": [pvc_template(
                    &spec.coordinator.storage_size,
                    spec.coordinator.storage_class_name.as_ref(),
                )],
            },
        }),
    ));

    // Brokers: headless Service (per-broker DNS for advertised listeners), bootstrap Service,
    // PodDisruptionBudget, one StatefulSet per zone.
    let broker_sel = selector(&name, "broker");
    let headless = broker_headless_name(&name);
    objects.push(DesiredObject::new(
        ObjKind::Service,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(kc, &headless, "broker"),
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": true,
                "selector": broker_sel,
                "ports": [{"name": "kafka", "port": KAFKA_PORT, "targetPort": "kafka"}],
            },
        }),
    ));
    objects.push(DesiredObject::new(
        ObjKind::Service,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(kc, &bootstrap_name(&name), "broker"),
            "spec": {
                "type": "ClusterIP",
                "selector": broker_sel,
                "ports": [{"name": "kafka", "port": KAFKA_PORT, "targetPort": "kafka"}],
            },
        }),
    ));
    objects.push(DesiredObject::new(
        ObjKind::PodDisruptionBudget,
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata(kc, &format!("{name}-broker"), "broker"),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": broker_sel}},
        }),
    ));

    let resources = spec
        .resources
        .clone()
        .unwrap_or_else(|| preset_resources(spec.broker_type));
    let coordinator_addr = format!("{coord}.{ns}.svc:{COORDINATOR_CLIENT_PORT}");
    for (i, zone) in spec.zones.iter().enumerate() {
        let sts = broker_sts_name(&name, i);
        let mut sts_sel = broker_sel.clone();
        sts_sel.insert("rivulet.dev/zone-index".into(), i.to_string());
        let mut pod_labels = labels(&name, "broker");
        pod_labels.extend(sts_sel.clone());
        pod_labels.insert("rivulet.dev/zone".into(), zone.clone());
        let mut meta = metadata(kc, &sts, "broker");
        meta["labels"]["rivulet.dev/zone"] = json!(zone);
        let env = json!([
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "RIVULET_BROKER_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}},
            {"name": "RIVULET_LISTEN_ADDR", "value": format!("0.0.0.0:{KAFKA_PORT}")},
            {"name": "RIVULET_ADVERTISED_ADDR", "value": format!("$(POD_NAME).{headless}.{ns}.svc:{KAFKA_PORT}")},
            {"name": "RIVULET_ADMIN_ADDR", "value": format!("0.0.0.0:{BROKER_ADMIN_PORT}")},
            {"name": "RIVULET_DATA_DIR", "value": BROKER_DATA_DIR},
            {"name": "RIVULET_RACK", "value": zone},
            {"name": "RIVULET_COORDINATOR", "value": coordinator_addr},
            {"name": "RIVULET_LOG_FORMAT", "value": "json"},
            // SIGTERM: controlled shutdown (leadership moves away), then in-flight requests
            // drain; both together stay below the pod's grace period, so SIGKILL never cuts them.
            {"name": "RIVULET_CONTROLLED_SHUTDOWN_TIMEOUT_MS", "value": (CONTROLLED_SHUTDOWN_SECS * 1000).to_string()},
            {"name": "RIVULET_SHUTDOWN_TIMEOUT_SECS", "value": SHUTDOWN_DRAIN_SECS.to_string()},
        ]);
        objects.push(DesiredObject::new(
            ObjKind::StatefulSet,
            json!({
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": meta,
                "spec": {
                    "replicas": spec.brokers_per_zone,
                    "ordinals": {"start": zone_first_id(i)},
                    "serviceName": headless,
                    "podManagementPolicy": "Parallel",
                    "selector": {"matchLabels": sts_sel},
                    // The operator's roller deletes broker pods one at a time, gated on
                    // in-sync replicas (crate::roll); the StatefulSet controller never does.
                    "updateStrategy": {"type": "OnDelete"},
                    "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                    "template": {
                        "metadata": {
                            "labels": pod_labels,
                            "annotations": {CONFIG_HASH: config_hash},
                        },
                        "spec": {
                            "securityContext": pod_security(),
                            // Time for controlled shutdown: leadership moves away before exit.
                            "terminationGracePeriodSeconds": BROKER_GRACE_SECS,
                            "imagePullSecrets": pull_secrets,
                            "affinity": {
                                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                                    "nodeSelectorTerms": [{"matchExpressions": [{
                                        "key": "topology.kubernetes.io/zone",
                                        "operator": "In",
                                        "values": [zone],
                                    }]}],
                                }},
                                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                                    "weight": 100,
                                    "podAffinityTerm": {
                                        "topologyKey": "kubernetes.io/hostname",
                                        "labelSelector": {"matchLabels": broker_sel},
                                    },
                                }]},
                            },
                            "containers": [{
                                "name": "broker",
                                "image": img,
                                "imagePullPolicy": pull_policy,
                                "command": ["/usr/local/bin/rivulet-broker"],
                                "env": env,
                                "envFrom": [{"configMapRef": {"name": broker_config_name(&name)}}],
                                "ports": [
                                    {"name": "kafka", "containerPort": KAFKA_PORT},
                                    {"name": "admin", "containerPort": BROKER_ADMIN_PORT},
                                ],
                                "readinessProbe": http_probe("/readyz", "admin", 5, 3),
                                "livenessProbe": http_probe("/healthz", "admin", 10, 6),
                                "startupProbe": http_probe("/healthz", "admin", 5, 120),
                                "resources": resources,
                                "securityContext": container_security(),
                                "volumeMounts": [{"name": "data", "mountPath": BROKER_DATA_DIR}],
                            }],
                        },
                    },
                    "volumeClaimTemplates": [pvc_template(
                        &spec.storage.size,
                        spec.storage.storage_class_name.as_ref(),
                    )],
                },
            }),
        ));
    }

    // Listeners, TLS and authorization (spec.listeners/authorization; none: as built).
    crate::security::listeners::apply(kc, &mut objects);
    ClusterObjects {
        objects,
        bootstrap_address: crate::security::listeners::bootstrap_address(kc)
            .unwrap_or_else(|| format!("{}.{ns}.svc:{KAFKA_PORT}", bootstrap_name(&name))),
    }
}
