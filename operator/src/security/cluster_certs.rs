//! The certificate Secrets of a cluster with TLS listeners:
//!
//! - `<cluster>-cluster-ca`: the CA's `ca.crt` and `ca.key` (only the operator reads it);
//! - `<cluster>-cluster-ca-cert`: `ca.crt` alone, the trust bundle for clients (during and
//!   after a CA renewal it holds the new and the previous CA, see [`super::ca_rotation`]);
//! - `<cluster>-broker-tls`: `tls.crt`, `tls.key` and `ca.crt`, mounted into every broker at
//!   `/etc/rivulet/tls`.
//!
//! Each reconcile checks them ([`super::certs`], [`super::ca_rotation`]) and writes only what
//! must change. Nothing here restarts a broker: the kubelet rewrites Secret volumes, and the
//! broker reloads its certificate, key and CA bundle when they change, for its listeners and
//! for its replica fetcher alike; a CA renewal is trusted everywhere before it signs.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracing::info;

use super::ca_rotation::{self, CaState, CaStep};
use super::certs::{self, CertKey};
use super::listeners::{broker_tls_secret, needs_tls};
use crate::builders::{bootstrap_name, broker_headless_name, broker_sts_name, zone_first_id};
use crate::context::{Ctx, FIELD_MANAGER};
use crate::crd::KafkaCluster;

/// Secret with the CA certificate and key.
pub fn ca_secret(cluster: &str) -> String {
    format!("{cluster}-cluster-ca")
}
/// Secret with the CA certificate(s) only, for clients.
pub fn ca_cert_secret(cluster: &str) -> String {
    format!("{cluster}-cluster-ca-cert")
}
/// Subject CN of the broker certificate.
pub fn broker_cn(cluster: &str) -> String {
    format!("{cluster}-broker")
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("certificates: {0}")]
    Certs(#[from] certs::Error),
}

fn service_names(svc: &str, ns: &str) -> [String; 4] {
    [
        svc.to_string(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
    ]
}

/// The names the broker certificate must carry: every broker's per-pod name under the headless
/// Service (`.svc`, as advertised, and `.svc.cluster.local`), and the headless and bootstrap
/// Service names in their short, namespaced, `.svc` and `.svc.cluster.local` forms.
pub fn broker_dns_names(kc: &KafkaCluster) -> BTreeSet<String> {
    let name = kc.name_any();
    let ns = kc.namespace().unwrap_or_default();
    let headless = broker_headless_name(&name);
    let mut out = BTreeSet::new();
    for i in 0..kc.spec.zones.len() {
        let sts = broker_sts_name(&name, i);
        for o in 0..kc.spec.brokers_per_zone.max(0) {
            let pod = format!("{sts}-{}", zone_first_id(i) + o);
            out.insert(format!("{pod}.{headless}.{ns}.svc"));
            out.insert(format!("{pod}.{headless}.{ns}.svc.cluster.local"));
        }
    }
    out.extend(service_names(&headless, &ns));
    out.extend(service_names(&bootstrap_name(&name), &ns));
    out
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// A Secret key's value as text.
pub fn secret_text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
}

/// The first PEM block of a bundle (the current CA of `ca.crt`).
pub fn first_pem(bundle: &str) -> String {
    const END: &str = "-----END CERTIFICATE-----";
    match bundle.find(END) {
        Some(i) => format!("{}\n", &bundle[..i + END.len()]),
        None => bundle.to_string(),
    }
}

/// A Secret owned by `owner` (garbage-collected with it), ready for server-side apply.
pub fn secret_object<K: Resource<DynamicType = ()>>(
    owner: &K,
    name: &str,
    ns: &str,
    labels: BTreeMap<String, String>,
    data: &BTreeMap<&str, String>,
) -> Value {
    let owner_ref = owner.controller_owner_ref(&());
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels,
            "ownerReferences": owner_ref.map(|o| vec![o]).unwrap_or_default(),
        },
        "type": "Opaque",
        "data": data.iter().map(|(k, v)| (k.to_string(), b64(v))).collect::<BTreeMap<_, _>>(),
    })
}

fn labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "rivulet".into()),
        ("app.kubernetes.io/instance".into(), cluster.into()),
        (
            "app.kubernetes.io/managed-by".into(),
            "rivulet-operator".into(),
        ),
        ("rivulet.dev/cluster".into(), cluster.into()),
    ])
}

/// Keys of the next CA while a renewal is in its trust phase ([`super::ca_rotation`]).
const NEXT_CRT: &str = "next.crt";
const NEXT_KEY: &str = "next.key";
const NEXT_SINCE: &str = "next.since";

/// The stored CA: `ca.crt` (the signing CA, then previous CAs still trusted), `ca.key`, and
/// during a renewal's trust phase `next.crt`, `next.key`, `next.since` (RFC 3339).
pub fn ca_state(s: &Secret) -> CaState {
    let pems = secret_text(s, "ca.crt")
        .map(|b| ca_rotation::split_pems(&b))
        .unwrap_or_default();
    let current = match (pems.first(), secret_text(s, "ca.key")) {
        (Some(c), Some(k)) => Some(CertKey {
            cert_pem: c.clone(),
            key_pem: k,
        }),
        _ => None,
    };
    let since =
        secret_text(s, NEXT_SINCE).and_then(|t| OffsetDateTime::parse(t.trim(), &Rfc3339).ok());
    let next = match (secret_text(s, NEXT_CRT), secret_text(s, NEXT_KEY), since) {
        (Some(c), Some(k), Some(t)) => Some((
            CertKey {
                cert_pem: c,
                key_pem: k,
            },
            t,
        )),
        _ => None,
    };
    CaState {
        current,
        older: pems.into_iter().skip(1).collect(),
        next,
    }
}

/// The CA Secret's data for a state.
fn ca_data(st: &CaState) -> Result<BTreeMap<&'static str, String>, Error> {
    let mut data = BTreeMap::new();
    if let Some(c) = &st.current {
        let mut crt = c.cert_pem.clone();
        for o in &st.older {
            crt.push_str(o);
        }
        data.insert("ca.crt", crt);
        data.insert("ca.key", c.key_pem.clone());
    }
    if let Some((n, since)) = &st.next {
        data.insert(NEXT_CRT, n.cert_pem.clone());
        data.insert(NEXT_KEY, n.key_pem.clone());
        let t = since
            .format(&Rfc3339)
            .map_err(|e| Error::Certs(certs::Error::Parse(e.to_string())))?;
        data.insert(NEXT_SINCE, t);
    }
    Ok(data)
}

/// Reads the cluster CA: the signing CA (certificate and key) and the trust bundle to publish
/// (signing CA, next CA during a renewal, previous CAs).
pub async fn read_ca(
    secrets: &Api<Secret>,
    cluster: &str,
) -> Result<Option<(CertKey, String)>, kube::Error> {
    let Some(s) = secrets.get_opt(&ca_secret(cluster)).await? else {
        return Ok(None);
    };
    let st = ca_state(&s);
    Ok(st.current.clone().map(|c| (c, ca_rotation::bundle(&st))))
}

/// Makes the CA and broker certificate Secrets right for `kc` (nothing without TLS listeners).
/// Returns what changed, for Events.
pub async fn reconcile(kc: &KafkaCluster, ctx: &Ctx) -> Result<Vec<String>, Error> {
    reconcile_at(kc, ctx, OffsetDateTime::now_utc()).await
}

/// [`reconcile`] as of `now` (tests drive a CA renewal through its phases with it).
pub async fn reconcile_at(
    kc: &KafkaCluster,
    ctx: &Ctx,
    now: OffsetDateTime,
) -> Result<Vec<String>, Error> {
    if !needs_tls(&kc.spec) {
        return Ok(Vec::new());
    }
    let name = kc.name_any();
    let ns = kc.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut changes = Vec::new();

    // The CA: generated, renewed in phases (trust, promote, drop), see ca_rotation.
    let stored = secrets
        .get_opt(&ca_secret(&name))
        .await?
        .map(|s| ca_state(&s))
        .unwrap_or_default();
    let step = ca_rotation::step(&stored, now);
    let fresh = match &step {
        CaStep::Generate(_) | CaStep::StartTransition(_) => Some(certs::generate_ca(&name, now)?),
        _ => None,
    };
    let st = ca_rotation::apply(&stored, &step, fresh, now);
    if step != CaStep::Keep {
        secrets
            .patch(
                &ca_secret(&name),
                &pp,
                &Patch::Apply(secret_object(
                    kc,
                    &ca_secret(&name),
                    &ns,
                    labels(&name),
                    &ca_data(&st)?,
                )),
            )
            .await?;
        let what = match &step {
            CaStep::Generate(why) => format!("cluster CA generated ({why})"),
            CaStep::StartTransition(why) => format!(
                "cluster CA renewal started ({why}): the new CA is trusted now and signs \
                 certificates in {} hours",
                ca_rotation::TRUST_GRACE.whole_hours()
            ),
            CaStep::Promote => {
                "cluster CA renewed: the new CA signs certificates from now on".to_string()
            }
            CaStep::Drop(gone) => {
                format!("{} expired CA certificate(s) left the bundle", gone.len())
            }
            CaStep::Keep => String::new(),
        };
        info!(cluster = %name, "{what}");
        changes.push(what);
    }
    let Some(ca) = st.current.clone() else {
        return Ok(changes);
    };
    let bundle = ca_rotation::bundle(&st);
    let public = BTreeMap::from([("ca.crt", bundle.clone())]);
    let live = secrets.get_opt(&ca_cert_secret(&name)).await?;
    if live
        .as_ref()
        .and_then(|s| secret_text(s, "ca.crt"))
        .as_deref()
        != Some(bundle.as_str())
    {
        secrets
            .patch(
                &ca_cert_secret(&name),
                &pp,
                &Patch::Apply(secret_object(
                    kc,
                    &ca_cert_secret(&name),
                    &ns,
                    labels(&name),
                    &public,
                )),
            )
            .await?;
    }

    // The broker certificate.
    let tls_name = broker_tls_secret(&name);
    let live = secrets.get_opt(&tls_name).await?;
    let crt = live.as_ref().and_then(|s| secret_text(s, "tls.crt"));
    let want = broker_dns_names(kc);
    let why = certs::check_leaf(crt.as_deref(), &ca.cert_pem, &broker_cn(&name), &want, now);
    let bundle_stale = live
        .as_ref()
        .and_then(|s| secret_text(s, "ca.crt"))
        .as_deref()
        != Some(bundle.as_str());
    if why.is_some() || bundle_stale {
        let (crt, key) = match &why {
            Some(_) => {
                let names: Vec<String> = want.iter().cloned().collect();
                let leaf = certs::issue(&name, &ca, &broker_cn(&name), &names, true, now)?;
                (leaf.cert_pem, leaf.key_pem)
            }
            None => (
                crt.unwrap_or_default(),
                live.as_ref()
                    .and_then(|s| secret_text(s, "tls.key"))
                    .unwrap_or_default(),
            ),
        };
        let data = BTreeMap::from([("tls.crt", crt), ("tls.key", key), ("ca.crt", bundle)]);
        secrets
            .patch(
                &tls_name,
                &pp,
                &Patch::Apply(secret_object(kc, &tls_name, &ns, labels(&name), &data)),
            )
            .await?;
        let what = match why {
            Some(r) => format!("broker certificate issued ({r})"),
            None => "broker CA bundle updated".to_string(),
        };
        info!(cluster = %name, "{what}");
        changes.push(what);
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::KafkaClusterSpec;

    fn kc() -> KafkaCluster {
        let spec: KafkaClusterSpec = serde_json::from_value(json!({
            "zones": ["a", "b"], "brokersPerZone": 2, "storage": {"size": "1Gi"}
        }))
        .expect("spec");
        let mut kc = KafkaCluster::new("demo", spec);
        kc.metadata.namespace = Some("kafka".into());
        kc
    }

    #[test]
    fn broker_names_cover_every_broker_and_the_services() {
        let names = broker_dns_names(&kc());
        for id in ["z0-0", "z0-1", "z1-1000", "z1-1001"] {
            assert!(
                names.contains(&format!("demo-broker-{id}.demo-broker-headless.kafka.svc")),
                "{id}"
            );
            assert!(names.contains(&format!(
                "demo-broker-{id}.demo-broker-headless.kafka.svc.cluster.local"
            )));
        }
        for n in [
            "demo-bootstrap",
            "demo-bootstrap.kafka",
            "demo-bootstrap.kafka.svc",
            "demo-bootstrap.kafka.svc.cluster.local",
            "demo-broker-headless.kafka.svc",
        ] {
            assert!(names.contains(n), "{n}");
        }
        assert_eq!(names.len(), 4 * 2 + 8);
        // Growing a zone adds names: the certificate is issued again.
        let mut grown = kc();
        grown.spec.brokers_per_zone = 3;
        let more = broker_dns_names(&grown);
        assert!(more.contains("demo-broker-z1-1002.demo-broker-headless.kafka.svc"));
        assert!(more.is_superset(&names));
    }

    #[test]
    fn first_pem_takes_the_current_ca_of_a_bundle() {
        let a = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n";
        let b = "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        assert_eq!(first_pem(&format!("{a}{b}")), a);
        assert_eq!(first_pem(a), a);
    }
}
