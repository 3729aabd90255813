//! The merge patches every controller writes to its own resource: finalizers and status.

use std::fmt::Debug;

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

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

/// Merge-patches the status subresource of `obj` from `old` (what the object had) to `new`.
/// Fields present in `old` and absent from `new` are sent as null: a merge patch leaves absent
/// fields alone, so a finished operation's message or progress would otherwise stay forever.
pub async fn patch_status<K, S>(
    api: &Api<K>,
    obj: &K,
    old: Option<&S>,
    new: &S,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let new = serde_json::to_value(new).map_err(kube::Error::SerdeError)?;
    let old = match old {
        Some(o) => serde_json::to_value(o).map_err(kube::Error::SerdeError)?,
        None => Value::Null,
    };
    api.patch_status(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": merge_patch(&old, &new) })),
    )
    .await?;
    Ok(())
}

/// The RFC 7386 merge patch that turns `old` into `new`: objects are merged key by key, keys
/// only `old` has become null, anything else is replaced by `new`.
pub fn merge_patch(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = Map::new();
            for (k, nv) in n {
                out.insert(k.clone(), merge_patch(o.get(k).unwrap_or(&Value::Null), nv));
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleared_fields_become_null_at_any_depth() {
        let old = json!({"operation": {"state": "Updating", "progress": "2/3", "reason": "Restarting"},
                         "scaling": {"phase": "Draining"}, "ready": 3});
        let new = json!({"operation": {"state": "Active"}, "ready": 3});
        assert_eq!(
            merge_patch(&old, &new),
            json!({"operation": {"state": "Active", "progress": null, "reason": null},
                   "scaling": null, "ready": 3})
        );
    }

    #[test]
    fn arrays_and_first_writes_are_taken_whole() {
        let new = json!({"conditions": [{"type": "Ready"}], "brokers": []});
        assert_eq!(merge_patch(&Value::Null, &new), new);
        let old = json!({"conditions": [{"type": "Ready"}, {"type": "Degraded"}]});
        assert_eq!(merge_patch(&old, &new), new);
    }
}
