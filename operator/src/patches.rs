//! The merge patches every controller writes to its own resource: finalizers and status.

use std::fmt::Debug;

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

/// Sets `obj`'s finalizers to `fins` (the whole list: merge patches replace arrays).
pub async fn set_finalizers<K>(api: &Api<K>, obj: &K, fins: Vec<String>) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": fins}})),
    )
    .await?;
    Ok(())
}

/// Adds `finalizer` unless `obj` already has it.
pub async fn add_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    if obj.finalizers().iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let mut fins = obj.finalizers().to_vec();
    fins.push(finalizer.to_string());
    set_finalizers(api, obj, fins).await
}

/// Removes `finalizer` from `obj`'s finalizers.
pub async fn remove_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let fins = obj
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    set_finalizers(api, obj, fins).await
}

/// Merge-patches the status subresource of `obj` with `status` (a JSON object for `status`).
pub async fn patch_status<K>(
    api: &Api<K>,
    obj: &K,
    status: serde_json::Value,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.patch_status(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}
