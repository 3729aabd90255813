//! The Secret of the internal credentials ([`super::internal`]): created when a cluster has
//! security configured, repaired when a key is missing, never rotated and never logged.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use tracing::info;

use super::cluster_certs::secret_text;
use super::internal::{self, credentials_secret};
use super::users::generate_password;
use crate::context::{Ctx, FIELD_MANAGER};
use crate::crd::KafkaCluster;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("randomness: {0}")]
    Random(String),
}

/// The Secret object (no owner reference: it outlives the cluster, as the volumes do).
pub fn secret_object(kc: &KafkaCluster, data: &BTreeMap<String, String>) -> serde_json::Value {
    use base64::Engine;
    let name = kc.name_any();
    let b64 = |s: &String| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": credentials_secret(&name),
            "namespace": kc.namespace().unwrap_or_default(),
            "labels": {
                "app.kubernetes.io/name": "rivulet",
                "app.kubernetes.io/instance": name,
                "app.kubernetes.io/managed-by": "rivulet-operator",
                "rivulet.dev/cluster": name,
            },
        },
        "type": "Opaque",
        "data": data.iter().map(|(k, v)| (k.clone(), b64(v))).collect::<BTreeMap<_, _>>(),
    })
}

/// Makes the internal credentials Secret right for `kc` (nothing when it has no security).
/// Returns a note for an Event when it was written (never a password).
pub async fn reconcile(kc: &KafkaCluster, ctx: &Ctx) -> Result<Option<String>, Error> {
    if !internal::secured(&kc.spec) {
        return Ok(None);
    }
    let name = kc.name_any();
    let ns = kc.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret_name = credentials_secret(&name);
    let live = secrets.get_opt(&secret_name).await?;
    let live_data: Option<BTreeMap<String, String>> = live.as_ref().map(|s| {
        s.data
            .iter()
            .flat_map(|d| d.keys())
            .filter_map(|k| secret_text(s, k).map(|v| (k.clone(), v)))
            .collect()
    });
    let mut failed = None;
    let want = internal::desired_data(live_data.as_ref(), || {
        generate_password().unwrap_or_else(|e| {
            failed = Some(e.to_string());
            String::new()
        })
    });
    if let Some(e) = failed {
        return Err(Error::Random(e));
    }
    let Some(data) = want else { return Ok(None) };
    secrets
        .patch(
            &secret_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(secret_object(kc, &data)),
        )
        .await?;
    let what = if live.is_some() {
        "repaired"
    } else {
        "generated"
    };
    info!(cluster = %name, secret = %secret_name, "internal credentials {what}");
    Ok(Some(format!(
        "internal credentials Secret {secret_name} {what}"
    )))
}
