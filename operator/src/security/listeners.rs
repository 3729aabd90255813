//! Pure mapping of `spec.listeners` and `spec.authorization` onto the broker: listener flags
//! (env), Service and container ports, the certificate volume, and the checks CEL can't make.
//!
//! Absent `spec.listeners` nothing changes: the broker keeps its single PLAINTEXT listener on
//! 9092. Present, every broker runs the listed listeners plus an internal `REPLICATION`
//! listener on 9091 for replication and for the operator's admin connection: PLAINTEXT while
//! no listener authenticates, else SCRAM-SHA-512 over TLS (`SASL_SSL`) when the cluster has a
//! certificate or `SASL_PLAINTEXT` when not, with the internal users and the coordinator's
//! digest ACLs of [`super::internal`].

use serde_json::{json, Value};

use crate::builders::{bootstrap_name, broker_headless_name, broker_sts_name, DesiredObject};
use crate::builders::{ObjKind, BROKER_ADMIN_PORT};
use crate::crd::{KafkaCluster, KafkaClusterSpec, Listener, ListenerAuthentication};
use crate::crd::{ListenerStatus, REPLICATION_LISTENER, REPLICATION_PORT};
use kube::ResourceExt;

use super::internal;

/// Where the broker certificate Secret is mounted.
pub const TLS_DIR: &str = "/etc/rivulet/tls";
/// Volume name of the broker certificate Secret.
pub const TLS_VOLUME: &str = "broker-tls";
/// Port names the broker container already uses.
const RESERVED_PORT_NAMES: &[&str] = &["admin", "replication"];
/// Longest listener name: it is also a port name (IANA_SVC_NAME, at most 15 characters).
pub const MAX_LISTENER_NAME: usize = 15;

/// Broker env names of the authorizer (Kafka's `authorizer.class.name`, `super.users` and
/// `allow.everyone.if.no.acl.found`).
pub const ENV_AUTHORIZER: &str = "RIVULET_AUTHORIZER";
pub const ENV_SUPER_USERS: &str = "RIVULET_SUPER_USERS";
pub const ENV_ALLOW_EVERYONE: &str = "RIVULET_ALLOW_EVERYONE_IF_NO_ACL_FOUND";
/// Value of [`ENV_AUTHORIZER`] for `type: simple`.
pub const SIMPLE_AUTHORIZER: &str = "simple";
/// Broker env names of the internal credentials (inter-broker SASL, bootstrap users and the
/// coordinator's digest ACLs).
pub const ENV_INTER_BROKER_MECHANISM: &str = "RIVULET_INTER_BROKER_SASL_MECHANISM";
pub const ENV_INTER_BROKER_USER: &str = "RIVULET_INTER_BROKER_SASL_USERNAME";
pub const ENV_INTER_BROKER_PASSWORD_FILE: &str = "RIVULET_INTER_BROKER_SASL_PASSWORD_FILE";
pub const ENV_BOOTSTRAP_USERS_FILE: &str = "RIVULET_BOOTSTRAP_SCRAM_USERS_FILE";
pub const ENV_ZOOKEEPER_SET_ACL: &str = "RIVULET_ZOOKEEPER_SET_ACL";
pub const ENV_DIGEST_USER: &str = "RIVULET_COORDINATOR_DIGEST_USERNAME";
pub const ENV_DIGEST_PASSWORD_FILE: &str = "RIVULET_COORDINATOR_DIGEST_PASSWORD_FILE";

/// Security protocol of the internal replication listener.
pub fn replication_protocol(spec: &KafkaClusterSpec) -> &'static str {
    match (internal::secured(spec), needs_tls(spec)) {
        (false, _) => "PLAINTEXT",
        (true, true) => "SASL_SSL",
        (true, false) => "SASL_PLAINTEXT",
    }
}

/// Whether any listener needs the broker certificate.
pub fn needs_tls(spec: &KafkaClusterSpec) -> bool {
    spec.listeners.iter().flatten().any(|l| l.tls)
}

/// Name of the Secret holding the broker certificate (`tls.crt`, `tls.key`, `ca.crt`).
pub fn broker_tls_secret(cluster: &str) -> String {
    format!("{cluster}-broker-tls")
}

/// Problems of `spec.listeners` / `spec.authorization` the schema doesn't catch (or that must
/// hold without CEL). Empty means valid.
pub fn validate(spec: &KafkaClusterSpec) -> Vec<String> {
    let mut errs = Vec::new();
    let Some(ls) = &spec.listeners else {
        if spec.authorization.is_some() {
            errs.push(
                "spec.authorization needs spec.listeners with authentication (the default \
                 listener is unauthenticated)"
                    .into(),
            );
        }
        return errs;
    };
    if ls.is_empty() {
        errs.push("spec.listeners must list at least one listener".into());
    }
    for (i, l) in ls.iter().enumerate() {
        let f = format!("spec.listeners[{i}]");
        let name_ok = !l.name.is_empty()
            && l.name.len() <= MAX_LISTENER_NAME
            && l.name.starts_with(|c: char| c.is_ascii_lowercase())
            && !l.name.ends_with('-')
            && l.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            errs.push(format!(
                "{f}.name {:?} must be lowercase letters, digits and '-', start with a letter and \
                 be at most {MAX_LISTENER_NAME} characters",
                l.name
            ));
        }
        if l.name == REPLICATION_LISTENER || RESERVED_PORT_NAMES.contains(&l.name.as_str()) {
            errs.push(format!("{f}.name {:?} is reserved", l.name));
        }
        if ls[..i].iter().any(|m| m.name == l.name) {
            errs.push(format!("{f}.name {:?} is used twice", l.name));
        }
        if !(1024..=65535).contains(&l.port) {
            errs.push(format!("{f}.port {} is outside 1024-65535", l.port));
        }
        if l.port == REPLICATION_PORT || l.port == BROKER_ADMIN_PORT {
            errs.push(format!(
                "{f}.port {} is reserved ({REPLICATION_PORT}: replication listener, \
                 {BROKER_ADMIN_PORT}: broker admin)",
                l.port
            ));
        }
        if ls[..i].iter().any(|m| m.port == l.port) {
            errs.push(format!("{f}.port {} is used twice", l.port));
        }
        if l.authentication == ListenerAuthentication::Tls && !l.tls {
            errs.push(format!("{f}: authentication tls needs tls: true"));
        }
        if spec.authorization.is_some() && l.authentication == ListenerAuthentication::None {
            errs.push(format!(
                "{f}: with spec.authorization every listener must authenticate (authentication \
                 none would give every client the anonymous principal)"
            ));
        }
    }
    if let Some(a) = &spec.authorization {
        for (i, u) in a.super_users.iter().enumerate() {
            if u.is_empty() || u.contains(';') {
                errs.push(format!(
                    "spec.authorization.superUsers[{i}] {u:?} must be a non-empty user name without ';'"
                ));
            }
        }
    }
    errs
}

fn port_name(l: &Listener) -> String {
    l.name.clone()
}

/// The broker's listener environment (appended after the default env, which it overrides:
/// Kubernetes keeps the last of duplicate names, but we drop the defaults instead).
pub fn broker_env(kc: &KafkaCluster, ls: &[Listener]) -> Vec<Value> {
    let ns = kc.namespace().unwrap_or_default();
    let headless = broker_headless_name(&kc.name_any());
    let host = format!("$(POD_NAME).{headless}.{ns}.svc");
    let mut listeners = vec![format!("REPLICATION://0.0.0.0:{REPLICATION_PORT}")];
    let mut advertised = vec![format!("REPLICATION://{host}:{REPLICATION_PORT}")];
    let mut map = vec![format!("REPLICATION:{}", replication_protocol(&kc.spec))];
    for l in ls {
        let n = l.kafka_name();
        listeners.push(format!("{n}://0.0.0.0:{}", l.port));
        advertised.push(format!("{n}://{host}:{}", l.port));
        map.push(format!("{n}:{}", l.security_protocol()));
    }
    let mut env = vec![
        json!({"name": "RIVULET_LISTENERS", "value": listeners.join(",")}),
        json!({"name": "RIVULET_ADVERTISED_LISTENERS", "value": advertised.join(",")}),
        json!({"name": "RIVULET_LISTENER_SECURITY_PROTOCOL_MAP", "value": map.join(",")}),
        json!({"name": "RIVULET_INTER_BROKER_LISTENER_NAME", "value": "REPLICATION"}),
    ];
    if ls.iter().any(|l| l.tls) {
        env.push(json!({"name": "RIVULET_SSL_CERT_FILE", "value": format!("{TLS_DIR}/tls.crt")}));
        env.push(json!({"name": "RIVULET_SSL_KEY_FILE", "value": format!("{TLS_DIR}/tls.key")}));
        env.push(json!({"name": "RIVULET_SSL_CA_FILE", "value": format!("{TLS_DIR}/ca.crt")}));
        // Client certificates per listener (Kafka's listener.name.<l>.ssl.client.auth): only
        // the `authentication: tls` listeners ask for them.
        let per_listener: Vec<String> = ls
            .iter()
            .filter(|l| l.tls)
            .map(|l| {
                let mode = match l.authentication {
                    ListenerAuthentication::Tls => "required",
                    _ => "none",
                };
                format!("{}:{mode}", l.kafka_name())
            })
            .collect();
        env.push(json!({"name": "RIVULET_SSL_CLIENT_AUTH", "value": "none"}));
        env.push(
            json!({"name": "RIVULET_LISTENER_SSL_CLIENT_AUTH", "value": per_listener.join(",")}),
        );
    }
    let secured = internal::secured(&kc.spec);
    let mut mechs = Vec::new();
    for (a, m) in [
        (ListenerAuthentication::ScramSha512, "SCRAM-SHA-512"),
        (ListenerAuthentication::Plain, "PLAIN"),
    ] {
        // The replication listener needs SCRAM-SHA-512 (the setting is broker-wide).
        let replication = secured && m == internal::REPLICATION_MECHANISM;
        if replication || ls.iter().any(|l| l.authentication == a) {
            mechs.push(m);
        }
    }
    if !mechs.is_empty() {
        env.push(json!({"name": "RIVULET_SASL_ENABLED_MECHANISMS", "value": mechs.join(",")}));
    }
    if secured {
        let dir = internal::CREDENTIALS_DIR;
        env.extend([
            json!({"name": ENV_INTER_BROKER_MECHANISM, "value": internal::REPLICATION_MECHANISM}),
            json!({"name": ENV_INTER_BROKER_USER, "value": internal::BROKER_USER}),
            json!({"name": ENV_INTER_BROKER_PASSWORD_FILE, "value": format!("{dir}/{}", internal::KEY_BROKER)}),
            json!({"name": ENV_BOOTSTRAP_USERS_FILE, "value": format!("{dir}/{}", internal::KEY_BOOTSTRAP_USERS)}),
            json!({"name": ENV_ZOOKEEPER_SET_ACL, "value": "true"}),
            json!({"name": ENV_DIGEST_USER, "value": internal::COORDINATOR_USER}),
            json!({"name": ENV_DIGEST_PASSWORD_FILE, "value": format!("{dir}/{}", internal::KEY_COORDINATOR)}),
        ]);
    }
    if let Some(a) = &kc.spec.authorization {
        // Authorization implies authentication (validate), so the internal users exist.
        let supers = internal::super_users(&a.super_users);
        env.push(json!({"name": ENV_AUTHORIZER, "value": SIMPLE_AUTHORIZER}));
        env.push(json!({"name": ENV_SUPER_USERS, "value": supers.join(";")}));
        env.push(json!({"name": ENV_ALLOW_EVERYONE, "value": "false"}));
    }
    env
}

/// Service ports: the replication listener and every client listener.
pub fn service_ports(ls: &[Listener]) -> Vec<Value> {
    let mut ports =
        vec![json!({"name": "replication", "port": REPLICATION_PORT, "targetPort": "replication"})];
    for l in ls {
        ports.push(json!({"name": port_name(l), "port": l.port, "targetPort": port_name(l)}));
    }
    ports
}

/// Container ports: the listeners and the broker's admin port.
pub fn container_ports(ls: &[Listener]) -> Vec<Value> {
    let mut ports = vec![json!({"name": "replication", "containerPort": REPLICATION_PORT})];
    for l in ls {
        ports.push(json!({"name": port_name(l), "containerPort": l.port}));
    }
    ports.push(json!({"name": "admin", "containerPort": BROKER_ADMIN_PORT}));
    ports
}

/// Env names the listener settings replace.
const REPLACED_ENV: &[&str] = &["RIVULET_LISTEN_ADDR", "RIVULET_ADVERTISED_ADDR"];

/// Rewrites the built objects of a cluster with `spec.listeners`: broker StatefulSets (env,
/// ports, certificate volume) and the broker Services (ports). A cluster without listeners is
/// left as built.
pub fn apply(kc: &KafkaCluster, objects: &mut [DesiredObject]) {
    let Some(ls) = &kc.spec.listeners else { return };
    let name = kc.name_any();
    let services = [broker_headless_name(&name), bootstrap_name(&name)];
    let zone_sets: Vec<String> = (0..kc.spec.zones.len())
        .map(|i| broker_sts_name(&name, i))
        .collect();
    let tls = needs_tls(&kc.spec);
    let secured = internal::secured(&kc.spec);
    for o in objects.iter_mut() {
        match o.kind {
            ObjKind::Service if services.contains(&o.name) => {
                o.value["spec"]["ports"] = json!(service_ports(ls));
            }
            ObjKind::StatefulSet if zone_sets.contains(&o.name) => {
                let pod = &mut o.value["spec"]["template"]["spec"];
                let vols = pod["volumes"].as_array().cloned().unwrap_or_default();
                let mut vols: Vec<Value> = vols
                    .into_iter()
                    .filter(|v| {
                        v["name"] != TLS_VOLUME && v["name"] != internal::CREDENTIALS_VOLUME
                    })
                    .collect();
                if tls {
                    vols.push(json!({"name": TLS_VOLUME, "secret": {
                        "secretName": broker_tls_secret(&name),
                        "defaultMode": 0o440,
                    }}));
                }
                if secured {
                    // Only the keys the brokers read (the operator's password reaches them as
                    // the bootstrap file).
                    let items: Vec<Value> = internal::MOUNTED_KEYS
                        .iter()
                        .map(|k| json!({"key": k, "path": k}))
                        .collect();
                    vols.push(json!({"name": internal::CREDENTIALS_VOLUME, "secret": {
                        "secretName": internal::credentials_secret(&name),
                        "defaultMode": 0o440,
                        "items": items,
                    }}));
                }
                if !vols.is_empty() {
                    pod["volumes"] = json!(vols);
                }
                let Some(c) = pod["containers"]
                    .as_array_mut()
                    .and_then(|cs| cs.iter_mut().find(|c| c["name"] == "broker"))
                else {
                    continue;
                };
                let mut env: Vec<Value> = c["env"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|e| {
                        !e["name"]
                            .as_str()
                            .is_some_and(|n| REPLACED_ENV.contains(&n))
                    })
                    .collect();
                env.extend(broker_env(kc, ls));
                c["env"] = json!(env);
                c["ports"] = json!(container_ports(ls));
                let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
                let mut mounts: Vec<Value> = mounts
                    .into_iter()
                    .filter(|m| {
                        m["name"] != TLS_VOLUME && m["name"] != internal::CREDENTIALS_VOLUME
                    })
                    .collect();
                if tls {
                    mounts
                        .push(json!({"name": TLS_VOLUME, "mountPath": TLS_DIR, "readOnly": true}));
                }
                if secured {
                    mounts.push(json!({
                        "name": internal::CREDENTIALS_VOLUME,
                        "mountPath": internal::CREDENTIALS_DIR,
                        "readOnly": true,
                    }));
                }
                c["volumeMounts"] = json!(mounts);
            }
            _ => continue,
        }
        o.rehash();
    }
}

/// `status.listeners`: each client listener's bootstrap address.
pub fn listener_status(kc: &KafkaCluster) -> Vec<ListenerStatus> {
    let ns = kc.namespace().unwrap_or_default();
    let boot = bootstrap_name(&kc.name_any());
    kc.spec
        .listeners
        .iter()
        .flatten()
        .map(|l| ListenerStatus {
            name: l.name.clone(),
            security_protocol: l.security_protocol().into(),
            bootstrap_address: format!("{boot}.{ns}.svc:{}", l.port),
        })
        .collect()
}

/// The client bootstrap address: the first listener's, or None for the default listener.
pub fn bootstrap_address(kc: &KafkaCluster) -> Option<String> {
    listener_status(kc)
        .into_iter()
        .next()
        .map(|l| l.bootstrap_address)
}

/// The address the operator's admin connection uses: the replication listener when
/// `spec.listeners` is set, None (the default listener) otherwise.
pub fn admin_address(kc: &KafkaCluster) -> Option<String> {
    kc.spec.listeners.as_ref()?;
    let ns = kc.namespace().unwrap_or_default();
    Some(format!(
        "{}.{ns}.svc:{REPLICATION_PORT}",
        bootstrap_name(&kc.name_any())
    ))
}
