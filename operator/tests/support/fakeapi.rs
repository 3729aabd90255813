//! An in-memory Kubernetes API server behind a tower `Service`, for reconcile tests and the
//! benchmark. It implements the verbs the operator uses — get, list (label equality selectors),
//! create, replace (with resourceVersion conflicts), delete (honouring finalizers), server-side
//! apply (one field manager, so apply replaces the applied object), JSON merge patch, and the
//! status subresource — and records every write so tests can assert on them, and every verb
//! used per resource (the RBAC regression test compares them with the chart's rules).
//! Like the real API server, it refuses changes to a StatefulSet's immutable spec fields
//! (`volumeClaimTemplates` among them), a PersistentVolumeClaim shrink, and a claim expansion
//! whose StorageClass is missing or lacks `allowVolumeExpansion`.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Map, Value};

/// One write the API received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub method: String,
    /// `<resource path>` without query, e.g. `/apis/apps/v1/namespaces/ns/statefulsets/x`.
    pub path: String,
    /// `propagationPolicy` of a DELETE, when given.
    pub propagation: Option<String>,
}

impl Write {
    /// True for writes to Events (the recorder's own bookkeeping).
    pub fn is_event(&self) -> bool {
        self.path.contains("/events")
    }
}

#[derive(Default)]
struct State {
    /// (collection path, name) -> object. Collection path: `/apis/g/v/namespaces/ns/plural`.
    objects: BTreeMap<(String, String), Value>,
    writes: Vec<Write>,
    /// (verb, API group, resource[/subresource]) of every request, as RBAC would authorize it.
    verbs: BTreeSet<(String, String, String)>,
    next_rv: u64,
    next_uid: u64,
}

/// The in-memory API. Clones share the same state.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

/// A parsed request path.
struct Target {
    collection: String,
    name: Option<String>,
    status: bool,
    /// API group ("" for the core group) and plural resource name.
    group: String,
    resource: String,
}

/// StatefulSet spec fields the API server lets an update change; any other is forbidden.
const STS_MUTABLE: [&str; 6] = [
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];
const STORAGE_CLASSES: &str = "/apis/storage.k8s.io/v1/storageclasses";

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // api/v1/... or apis/g/v/...
    let prefix_len = match parts.first() {
        Some(&"api") => 2,
        Some(&"apis") => 3,
        _ => return None,
    };
    let rest = parts.get(prefix_len..)?;
    let (coll_len, name, status) = match rest {
        ["namespaces", _, _plural] => (prefix_len + 3, None, false),
        ["namespaces", _, _plural, name] => (prefix_len + 3, Some(*name), false),
        ["namespaces", _, _plural, name, "status"] => (prefix_len + 3, Some(*name), true),
        [_plural] => (prefix_len + 1, None, false),
        [_plural, name] => (prefix_len + 1, Some(*name), false),
        [_plural, name, "status"] => (prefix_len + 1, Some(*name), true),
        _ => return None,
    };
    let group = if prefix_len == 3 { parts[1] } else { "" };
    Some(Target {
        collection: format!("/{}", parts[..coll_len].join("/")),
        name: name.map(str::to_string),
        status,
        group: group.to_string(),
        resource: parts[coll_len - 1].to_string(),
    })
}

fn status_body(code: StatusCode, reason: &str, message: &str) -> (StatusCode, Value) {
    (
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
        }),
    )
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Whether a list of `wanted` includes objects stored under `stored`: equal, or a cluster-wide
/// list (`/apis/g/v/plural`) over a namespaced collection (`/apis/g/v/namespaces/ns/plural`).
fn collection_covers(wanted: &str, stored: &str) -> bool {
    if wanted == stored {
        return true;
    }
    match (wanted.rsplit_once('/'), stored.split_once("/namespaces/")) {
        (Some((prefix, plural)), Some((sprefix, rest))) => {
            prefix == sprefix && rest.split_once('/').map(|x| x.1) == Some(plural)
        }
        _ => false,
    }
}

fn label_selector_matches(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        let v = v.trim_start_matches('=');
        obj["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Ok(b) = u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or(""), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FakeApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// A kube client talking to this API, default namespace `ns`.
    pub fn client(&self, ns: &str) -> kube::Client {
        kube::Client::new(self.clone(), ns)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the state from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every write so far.
    pub fn writes(&self) -> Vec<Write> {
        self.lock().writes.clone()
    }

    /// Writes other than Events.
    pub fn object_writes(&self) -> Vec<Write> {
        self.writes()
            .into_iter()
            .filter(|w| !w.is_event())
            .collect()
    }

    /// Every (verb, API group, resource) requested so far, as RBAC would see it: `create` for
    /// an apply that creates, `watch` for a watch, `resource/status` for the subresource.
    pub fn verbs(&self) -> BTreeSet<(String, String, String)> {
        self.lock().verbs.clone()
    }

    /// Forgets the recorded writes.
    pub fn clear_writes(&self) {
        self.lock().writes.clear();
    }

    /// The stored object at `collection`/`name`.
    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(collection.to_string(), name.to_string()))
            .cloned()
    }

    /// Every object of a collection.
    pub fn list(&self, collection: &str) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|((c, _), _)| c == collection)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Sets an object's status directly, like a built-in controller would (not recorded).
    pub fn set_status(&self, collection: &str, name: &str, status: Value) -> bool {
        let mut st = self.lock();
        st.next_rv += 1;
        let rv = st.next_rv.to_string();
        match st
            .objects
            .get_mut(&(collection.to_string(), name.to_string()))
        {
            Some(obj) => {
                obj["status"] = status;
                obj["metadata"]["resourceVersion"] = json!(rv);
                true
            }
            None => false,
        }
    }

    /// Stores an object as if a user created it (not recorded as a write). A
    /// `creationTimestamp` given in `obj` is kept (creation order matters to KafkaTopics).
    pub fn insert(&self, collection: &str, mut obj: Value) -> Value {
        let mut st = self.lock();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let created = obj["metadata"]["creationTimestamp"].clone();
        Self::stamp_new(&mut st, &mut obj);
        if created.is_string() {
            obj["metadata"]["creationTimestamp"] = created;
        }
        st.objects
            .insert((collection.to_string(), name), obj.clone());
        obj
    }

    fn stamp_new(st: &mut State, obj: &mut Value) {
        st.next_rv += 1;
        st.next_uid += 1;
        let meta = &mut obj["metadata"];
        meta["resourceVersion"] = json!(st.next_rv.to_string());
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", st.next_uid));
        meta["generation"] = json!(1);
        meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    }

    /// Replaces a stored object's spec as a user would with `kubectl apply` (not recorded).
    pub fn update_spec(&self, collection: &str, name: &str, spec: Value) -> Option<Value> {
        let mut st = self.lock();
        st.next_rv += 1;
        let rv = st.next_rv;
        let obj = st
            .objects
            .get_mut(&(collection.to_string(), name.to_string()))?;
        if obj["spec"] != spec {
            obj["spec"] = spec;
            let g = obj["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            obj["metadata"]["generation"] = json!(g);
        }
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        Some(obj.clone())
    }

    /// Marks an object for deletion as the API server does when it has finalizers.
    pub fn delete_user(&self, collection: &str, name: &str) -> Option<Value> {
        let mut st = self.lock();
        let key = (collection.to_string(), name.to_string());
        let has_finalizers = st.objects.get(&key)?["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            let obj = st.objects.get_mut(&key)?;
            obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:01Z");
            Some(obj.clone())
        } else {
            st.objects.remove(&key)
        }
    }

    /// The API server's update checks that the operator's storage handling depends on.
    fn admit_update(
        st: &State,
        resource: &str,
        cur: &Value,
        next: &Value,
    ) -> Result<(), (StatusCode, Value)> {
        match resource {
            "statefulsets" => {
                let strip = |v: &Value| {
                    let mut spec = v["spec"].clone();
                    if let Some(m) = spec.as_object_mut() {
                        m.retain(|k, _| !STS_MUTABLE.contains(&k.as_str()));
                    }
                    spec
                };
                if strip(cur) != strip(next) {
                    return Err(status_body(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        "StatefulSet.apps is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                    ));
                }
            }
            "persistentvolumeclaims" => {
                let size = |v: &Value| {
                    v["spec"]["resources"]["requests"]["storage"]
                        .as_str()
                        .and_then(rivulet_operator::quantity::parse_bytes)
                };
                match (size(cur), size(next)) {
                    (Some(a), Some(b)) if b < a => {
                        return Err(status_body(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "Invalid",
                            "spec.resources.requests.storage: Forbidden: field can not be less than previous value",
                        ))
                    }
                    (Some(a), Some(b)) if b > a => {
                        let class = next["spec"]["storageClassName"].as_str().unwrap_or("");
                        let expandable = st
                            .objects
                            .get(&(STORAGE_CLASSES.to_string(), class.to_string()))
                            .is_some_and(|sc| sc["allowVolumeExpansion"] == json!(true));
                        if !expandable {
                            return Err(status_body(
                                StatusCode::FORBIDDEN,
                                "Forbidden",
                                "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
                            ));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handle(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        ctype: &str,
        body: &[u8],
    ) -> (StatusCode, Value) {
        let Some(t) = parse_path(path) else {
            return status_body(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("no route {path}"),
            );
        };
        let mut st = self.lock();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return status_body(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &format!("body: {e}"),
                    )
                }
            }
        };
        let key = t.name.clone().map(|n| (t.collection.clone(), n));
        if method != Method::GET {
            st.writes.push(Write {
                method: method.to_string(),
                path: path.to_string(),
                propagation: body["propagationPolicy"].as_str().map(str::to_string),
            });
        }
        let exists = key.as_ref().is_some_and(|k| st.objects.contains_key(k));
        let verb = match (&method, &t.name) {
            (&Method::GET, None) if query_param(query, "watch").as_deref() == Some("true") => {
                "watch"
            }
            (&Method::GET, None) => "list",
            (&Method::GET, Some(_)) => "get",
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            // Server-side apply of an object that doesn't exist is authorized as create.
            (&Method::PATCH, _) if !exists && ctype.starts_with("application/apply-patch") => {
                "create"
            }
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, _) => "delete",
            _ => "other",
        };
        let resource = if t.status {
            format!("{}/status", t.resource)
        } else {
            t.resource.clone()
        };
        st.verbs
            .insert((verb.to_string(), t.group.clone(), resource));
        match (method, key) {
            (Method::GET, None) => {
                if query_param(query, "watch").as_deref() == Some("true") {
                    return status_body(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "MethodNotAllowed",
                        "watch is not supported",
                    );
                }
                let sel = query_param(query, "labelSelector").unwrap_or_default();
                let items: Vec<Value> = st
                    .objects
                    .iter()
                    .filter(|((c, _), v)| {
                        collection_covers(&t.collection, c) && label_selector_matches(v, &sel)
                    })
                    .map(|(_, v)| v.clone())
                    .collect();
                (
                    StatusCode::OK,
                    json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": st.next_rv.to_string()}, "items": items}),
                )
            }
            (Method::GET, Some(k)) => match st.objects.get(&k) {
                Some(v) => (StatusCode::OK, v.clone()),
                None => status_body(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{} not found", k.1),
                ),
            },
            (Method::POST, None) => {
                let mut obj = body;
                let name = obj["metadata"]["name"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| {
                        obj["metadata"]["generateName"]
                            .as_str()
                            .map(|g| format!("{g}{}", st.next_uid + 1))
                    });
                let Some(name) = name else {
                    return status_body(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        "metadata.name is required",
                    );
                };
                let k = (t.collection.clone(), name.clone());
                if st.objects.contains_key(&k) {
                    return status_body(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("{name} already exists"),
                    );
                }
                obj["metadata"]["name"] = json!(name);
                Self::stamp_new(&mut st, &mut obj);
                st.objects.insert(k, obj.clone());
                (StatusCode::CREATED, obj)
            }
            (Method::PUT, Some(k)) => {
                let Some(cur) = st.objects.get(&k).cloned() else {
                    return status_body(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{} not found", k.1),
                    );
                };
                let want_rv = body["metadata"]["resourceVersion"].as_str();
                if want_rv.is_some() && want_rv != cur["metadata"]["resourceVersion"].as_str() {
                    return status_body(
                        StatusCode::CONFLICT,
                        "Conflict",
                        "the object has been modified",
                    );
                }
                let mut obj = body;
                for f in ["uid", "creationTimestamp", "generation"] {
                    obj["metadata"][f] = cur["metadata"][f].clone();
                }
                st.next_rv += 1;
                obj["metadata"]["resourceVersion"] = json!(st.next_rv.to_string());
                st.objects.insert(k, obj.clone());
                (StatusCode::OK, obj)
            }
            (Method::PATCH, Some(k)) => {
                let existing = st.objects.get(&k).cloned();
                let is_apply = ctype.starts_with("application/apply-patch");
                let mut obj = match (&existing, is_apply) {
                    (Some(cur), _) => cur.clone(),
                    (None, true) if !t.status => {
                        let mut fresh = json!({"metadata": {"name": k.1}});
                        Self::stamp_new(&mut st, &mut fresh);
                        fresh
                    }
                    (None, _) => {
                        return status_body(
                            StatusCode::NOT_FOUND,
                            "NotFound",
                            &format!("{} not found", k.1),
                        )
                    }
                };
                let before = obj.clone();
                if t.status {
                    let status = body["status"].clone();
                    if is_apply {
                        obj["status"] = status;
                    } else {
                        merge_patch(&mut obj["status"], &status);
                    }
                } else if is_apply {
                    // One field manager applying whole objects: the applied object replaces
                    // every user field; server-owned metadata and status stay.
                    let mut next = body;
                    for f in [
                        "uid",
                        "creationTimestamp",
                        "generation",
                        "resourceVersion",
                        "deletionTimestamp",
                        "finalizers",
                    ] {
                        if !obj["metadata"][f].is_null() {
                            next["metadata"][f] = obj["metadata"][f].clone();
                        }
                    }
                    if !obj["status"].is_null() {
                        next["status"] = obj["status"].clone();
                    }
                    obj = next;
                } else {
                    merge_patch(&mut obj, &body);
                }
                if let (Some(cur), false) = (&existing, t.status) {
                    if let Err(refused) = Self::admit_update(&st, &t.resource, cur, &obj) {
                        return refused;
                    }
                }
                if !t.status && before.get("spec") != obj.get("spec") && existing.is_some() {
                    let g = obj["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                    obj["metadata"]["generation"] = json!(g);
                }
                st.next_rv += 1;
                obj["metadata"]["resourceVersion"] = json!(st.next_rv.to_string());
                let finalizers_gone = obj["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(|f| f.is_empty());
                if !obj["metadata"]["deletionTimestamp"].is_null() && finalizers_gone {
                    st.objects.remove(&k);
                } else {
                    st.objects.insert(k, obj.clone());
                }
                (StatusCode::OK, obj)
            }
            (Method::DELETE, Some(k)) => {
                let Some(cur) = st.objects.get(&k).cloned() else {
                    return status_body(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{} not found", k.1),
                    );
                };
                let has_finalizers = cur["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
                if has_finalizers {
                    let mut obj = cur;
                    obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:01Z");
                    st.objects.insert(k, obj.clone());
                    (StatusCode::OK, obj)
                } else {
                    st.objects.remove(&k);
                    (StatusCode::OK, cur)
                }
            }
            (m, _) => status_body(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!("{m} {path}"),
            ),
        }
    }
}

impl tower::Service<Request<kube::client::Body>> for FakeApi {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let api = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => Bytes::new(),
            };
            let ctype = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let (code, value) = api.handle(
                parts.method,
                parts.uri.path(),
                parts.uri.query(),
                &ctype,
                &bytes,
            );
            let body = serde_json::to_vec(&value).unwrap_or_default();
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            *resp.status_mut() = code;
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        })
    }
}
