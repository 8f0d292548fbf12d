//! A fake Kubernetes API server for tests (feature `fake-api`): ConfigMaps only, served over
//! HTTP on a loopback port, so the real `kube` client talks to it the way it talks to a
//! cluster. It keeps what the store relies on: `resourceVersion`s with 409 on a stale replace
//! and on creating an existing object, 404, list and watch by `metadata.name` field selector
//! and label selector, watch resumption from a version and 410 for a compacted one, and the
//! API server's limits (object names, label values, 1 MiB of ConfigMap data, 3 MiB request
//! bodies). Tests can inject failures, interleave a concurrent write, compact the event
//! history, expire or end open watches, and read or tamper with objects directly.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use futures_util::stream::{self, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use super::KubeStore;
use super::names::{is_dns_subdomain, is_label_value};

/// Most bytes of `data` plus `binaryData` a ConfigMap may hold.
pub const MAX_CONFIGMAP_DATA: usize = 1024 * 1024;
/// Largest request body the fake accepts (the API server's limit).
pub const MAX_REQUEST_BODY: usize = 3 * 1024 * 1024;
/// Largest total size of an object's annotations.
pub const MAX_ANNOTATIONS: usize = 256 * 1024;
/// Events kept for watches that resume from an older version.
const HISTORY: usize = 10_000;

type Body = BoxBody<Bytes, Infallible>;

/// A change, as a watch reports it.
#[derive(Debug, Clone)]
struct Event {
    rv: u64,
    kind: &'static str,
    namespace: String,
    object: Value,
}

#[derive(Debug, Clone)]
enum Broadcast {
    Event(Event),
    /// End every open watch normally (as the server's timeout does).
    Close,
    /// Send every open watch a 410 `ERROR` event, then end it.
    Expire,
}

/// A failure to inject.
#[derive(Debug, Clone)]
struct Fault {
    method: Method,
    /// Substring of the path and query.
    contains: String,
    code: u16,
    remaining: usize,
}

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<(String, String), Value>,
    rv: u64,
    history: VecDeque<Event>,
    /// Watches from a version below this get 410 Gone.
    compacted: u64,
    faults: Vec<Fault>,
    /// Object name → the object to write just before the next create or replace of it.
    interleaved: BTreeMap<String, Value>,
    requests: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Broadcast>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is complete before the lock is released, so a poisoned state is still
        // consistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores `object` (a create if absent) with the next version and announces it.
    fn write(&self, inner: &mut Inner, namespace: &str, mut object: Value) -> Value {
        let name = object_name(&object).unwrap_or_default();
        inner.rv += 1;
        let rv = inner.rv;
        let key = (namespace.to_owned(), name.clone());
        let kind = if inner.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
            meta.insert("namespace".into(), Value::String(namespace.to_owned()));
            meta.entry("uid")
                .or_insert_with(|| Value::String(format!("fake-uid-{rv}")));
        }
        if let Some(map) = object.as_object_mut() {
            map.insert("apiVersion".into(), json!("v1"));
            map.insert("kind".into(), json!("ConfigMap"));
        }
        inner.objects.insert(key, object.clone());
        self.announce(inner, kind, namespace, object.clone());
        object
    }

    fn announce(&self, inner: &mut Inner, kind: &'static str, namespace: &str, object: Value) {
        let event = Event {
            rv: inner.rv,
            kind,
            namespace: namespace.to_owned(),
            object,
        };
        inner.history.push_back(event.clone());
        while inner.history.len() > HISTORY {
            if let Some(old) = inner.history.pop_front() {
                inner.compacted = old.rv;
            }
        }
        // No receiver is fine: nobody watches.
        let _ = self.events.send(Broadcast::Event(event));
    }
}

/// The fake API server; stops when dropped.
#[derive(Debug)]
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// Starts a server on a free loopback port.
    pub async fn start() -> std::io::Result<FakeApiServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            events,
        });
        let serving = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = Arc::clone(&serving);
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
                // Reap finished connections.
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(FakeApiServer { addr, shared, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `kube` client for this server with `namespace` as its default.
    pub fn client(&self, namespace: &str) -> Result<kube::Client, kube::Error> {
        let uri: hyper::Uri = self
            .url()
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| kube::Error::Service(Box::new(e)))?;
        let mut config = kube::Config::new(uri);
        config.default_namespace = namespace.to_owned();
        kube::Client::try_from(config)
    }

    /// A [`KubeStore`] in `namespace` on this server (a new client: another replica), with
    /// short retry delays.
    pub fn store(&self, namespace: &str) -> Result<KubeStore, kube::Error> {
        Ok(
            KubeStore::new(self.client(namespace)?, namespace).with_retry_delays(
                std::time::Duration::from_millis(10),
                std::time::Duration::from_millis(200),
            ),
        )
    }

    /// The ConfigMap `namespace/name` as stored.
    pub fn object(&self, namespace: &str, name: &str) -> Option<Value> {
        self.shared
            .lock()
            .objects
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every ConfigMap in `namespace`, by name.
    pub fn objects(&self, namespace: &str) -> BTreeMap<String, Value> {
        self.shared
            .lock()
            .objects
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|((_, name), v)| (name.clone(), v.clone()))
            .collect()
    }

    /// Writes `object` directly (create or unconditional replace), as another client would.
    pub fn put_object(&self, namespace: &str, object: Value) -> Value {
        let mut inner = self.shared.lock();
        self.shared.write(&mut inner, namespace, object)
    }

    /// Deletes `namespace/name` directly; whether it existed.
    pub fn delete_object(&self, namespace: &str, name: &str) -> bool {
        let mut inner = self.shared.lock();
        match inner
            .objects
            .remove(&(namespace.to_owned(), name.to_owned()))
        {
            Some(mut object) => {
                inner.rv += 1;
                let rv = inner.rv;
                if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
                }
                self.shared
                    .announce(&mut inner, "DELETED", namespace, object);
                true
            }
            None => false,
        }
    }

    /// The next `times` requests whose method is `method` and whose path and query contain
    /// `contains` fail with HTTP status `code`.
    pub fn fail_next(&self, method: &str, contains: &str, code: u16, times: usize) {
        let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        self.shared.lock().faults.push(Fault {
            method,
            contains: contains.to_owned(),
            code,
            remaining: times,
        });
    }

    /// Just before the next create or replace of the object `name`, `object` is written to it
    /// as if by another client: that request then meets a real conflict.
    pub fn interleave_write(&self, name: &str, object: Value) {
        self.shared
            .lock()
            .interleaved
            .insert(name.to_owned(), object);
    }

    /// Forgets the event history (as etcd compaction does): a watch resuming from a version
    /// before now gets 410 Gone.
    pub fn compact(&self) {
        let mut inner = self.shared.lock();
        inner.history.clear();
        inner.compacted = inner.rv;
    }

    /// Compacts and sends every open watch a 410 `ERROR` event, ending it.
    pub fn expire_watches(&self) {
        self.compact();
        let _ = self.shared.events.send(Broadcast::Expire);
    }

    /// Ends every open watch normally, as the server does when a watch times out.
    pub fn close_watches(&self) {
        let _ = self.shared.events.send(Broadcast::Close);
    }

    /// Every request so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }
}

fn object_name(object: &Value) -> Option<String> {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn respond(code: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = code;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    respond(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &body,
    )
}

fn reason_for(code: u16) -> &'static str {
    match code {
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        422 => "Invalid",
        429 => "TooManyRequests",
        _ => "InternalError",
    }
}

/// Decodes `application/x-www-form-urlencoded` text.
fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

/// Which objects a list or watch selects: `metadata.name=` field selectors and `k=v` label
/// selectors (comma-separated, all must hold).
#[derive(Debug, Default, Clone)]
struct Selector {
    name: Option<String>,
    labels: Vec<(String, String)>,
}

impl Selector {
    fn parse(q: &BTreeMap<String, String>) -> Result<Selector, String> {
        let mut sel = Selector::default();
        if let Some(fields) = q.get("fieldSelector").filter(|f| !f.is_empty()) {
            for term in fields.split(',') {
                match term.split_once('=') {
                    Some(("metadata.name", v)) => {
                        sel.name = Some(v.trim_start_matches('=').to_owned())
                    }
                    _ => return Err(format!("field selector {term:?} is not supported")),
                }
            }
        }
        if let Some(labels) = q.get("labelSelector").filter(|l| !l.is_empty()) {
            for term in labels.split(',') {
                match term.split_once('=') {
                    Some((k, v)) => sel
                        .labels
                        .push((k.to_owned(), v.trim_start_matches('=').to_owned())),
                    None => return Err(format!("label selector {term:?} is not supported")),
                }
            }
        }
        Ok(sel)
    }

    fn matches(&self, object: &Value) -> bool {
        if let Some(name) = &self.name
            && object_name(object).as_deref() != Some(name.as_str())
        {
            return false;
        }
        self.labels.iter().all(|(k, v)| {
            object
                .pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                == Some(v.as_str())
        })
    }
}

/// Checks a ConfigMap the way the API server validates one.
fn validate(object: &Value, namespace: &str) -> Result<String, Box<Response<Body>>> {
    let invalid = |message: String| Box::new(status(422, "Invalid", &message));
    if object.get("kind").and_then(Value::as_str) != Some("ConfigMap") {
        return Err(Box::new(status(
            400,
            "BadRequest",
            "the body is not a ConfigMap",
        )));
    }
    let name =
        object_name(object).ok_or_else(|| invalid("metadata.name: Required value".into()))?;
    if !is_dns_subdomain(&name) {
        return Err(invalid(format!(
            "ConfigMap {name:?} is invalid: metadata.name: Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        )));
    }
    if let Some(ns) = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        && ns != namespace
    {
        return Err(Box::new(status(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
        )));
    }
    if let Some(labels) = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
    {
        for (k, v) in labels {
            let v = v.as_str().unwrap_or_default();
            if !is_label_value(v) {
                return Err(invalid(format!(
                    "ConfigMap {name:?} is invalid: metadata.labels: Invalid value: {v:?} (label {k})"
                )));
            }
        }
    }
    if let Some(annotations) = object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        let total: usize = annotations
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if total > MAX_ANNOTATIONS {
            return Err(invalid(format!(
                "ConfigMap {name:?} is invalid: metadata.annotations: Too long: must have at most {MAX_ANNOTATIONS} bytes"
            )));
        }
    }
    let mut size = 0usize;
    if let Some(data) = object.get("data").and_then(Value::as_object) {
        size += data
            .values()
            .map(|v| v.as_str().map_or(0, str::len))
            .sum::<usize>();
    }
    if let Some(data) = object.get("binaryData").and_then(Value::as_object) {
        for (k, v) in data {
            let text = v.as_str().unwrap_or_default();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| invalid(format!("binaryData[{k}]: not base64: {e}")))?;
            size += decoded.len();
        }
    }
    if size > MAX_CONFIGMAP_DATA {
        return Err(invalid(format!(
            "ConfigMap {name:?} is invalid: []: Too long: must have at most {MAX_CONFIGMAP_DATA} bytes"
        )));
    }
    Ok(name)
}

/// `/api/v1/namespaces/<ns>/configmaps[/<name>]` → (namespace, name).
fn route(path: &str) -> Option<(String, Option<String>)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let mut parts = rest.split('/');
    let namespace = parts.next()?.to_owned();
    if parts.next()? != "configmaps" {
        return None;
    }
    let name = parts.next().map(str::to_owned);
    if parts.next().is_some() {
        return None;
    }
    Some((namespace, name))
}

async fn read_body(req: Request<Incoming>) -> Result<Value, Response<Body>> {
    let bytes = Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
        .map_err(|_| {
            status(
                413,
                "RequestEntityTooLarge",
                "the request body is larger than the server accepts",
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| status(400, "BadRequest", &format!("the body is not JSON: {e}")))
}

async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    {
        let mut inner = shared.lock();
        inner.requests.push(format!("{} {target}", req.method()));
        let method = req.method().clone();
        if let Some(fault) = inner
            .faults
            .iter_mut()
            .find(|f| f.remaining > 0 && f.method == method && target.contains(&f.contains))
        {
            fault.remaining -= 1;
            let code = fault.code;
            return status(code, reason_for(code), &format!("injected failure {code}"));
        }
    }
    let Some((namespace, name)) = route(req.uri().path()) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let q = query(&req);
    match (req.method().clone(), name) {
        (Method::GET, Some(name)) => {
            let inner = shared.lock();
            match inner.objects.get(&(namespace, name.clone())) {
                Some(o) => respond(StatusCode::OK, o),
                None => status(404, "NotFound", &format!("configmaps {name:?} not found")),
            }
        }
        (Method::GET, None) => {
            let selector = match Selector::parse(&q) {
                Ok(s) => s,
                Err(e) => return status(400, "BadRequest", &e),
            };
            if q.get("watch").map(String::as_str) == Some("true") {
                watch(shared, &namespace, selector, &q)
            } else {
                let inner = shared.lock();
                let items: Vec<Value> = inner
                    .objects
                    .iter()
                    .filter(|((ns, _), o)| *ns == namespace && selector.matches(o))
                    .map(|(_, o)| o.clone())
                    .collect();
                respond(
                    StatusCode::OK,
                    &json!({
                        "kind": "ConfigMapList", "apiVersion": "v1",
                        "metadata": {"resourceVersion": inner.rv.to_string()},
                        "items": items,
                    }),
                )
            }
        }
        (Method::POST, None) => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let name = match validate(&body, &namespace) {
                Ok(n) => n,
                Err(r) => return *r,
            };
            let mut inner = shared.lock();
            if let Some(other) = inner.interleaved.remove(&name) {
                shared.write(&mut inner, &namespace, other);
            }
            if inner
                .objects
                .contains_key(&(namespace.clone(), name.clone()))
            {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("configmaps {name:?} already exists"),
                );
            }
            let stored = shared.write(&mut inner, &namespace, body);
            respond(StatusCode::CREATED, &stored)
        }
        (Method::PUT, Some(name)) => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match validate(&body, &namespace) {
                Ok(n) if n == name => {}
                Ok(_) => {
                    return status(
                        400,
                        "BadRequest",
                        "the name of the object does not match the name on the URL",
                    );
                }
                Err(r) => return *r,
            }
            let mut inner = shared.lock();
            if let Some(other) = inner.interleaved.remove(&name) {
                shared.write(&mut inner, &namespace, other);
            }
            let Some(current) = inner.objects.get(&(namespace.clone(), name.clone())) else {
                return status(404, "NotFound", &format!("configmaps {name:?} not found"));
            };
            let current_rv = current
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let sent_rv = body
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !sent_rv.is_empty() && sent_rv != current_rv {
                return status(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on configmaps {name:?}: the object has been modified; please apply your changes to the latest version and try again"
                    ),
                );
            }
            let stored = shared.write(&mut inner, &namespace, body);
            respond(StatusCode::OK, &stored)
        }
        (Method::DELETE, Some(name)) => {
            let mut inner = shared.lock();
            match inner.objects.remove(&(namespace.clone(), name.clone())) {
                Some(object) => {
                    inner.rv += 1;
                    shared.announce(&mut inner, "DELETED", &namespace, object.clone());
                    respond(StatusCode::OK, &object)
                }
                None => status(404, "NotFound", &format!("configmaps {name:?} not found")),
            }
        }
        _ => status(
            405,
            "MethodNotAllowed",
            "not supported by the fake API server",
        ),
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn watch(
    shared: &Arc<Shared>,
    namespace: &str,
    selector: Selector,
    q: &BTreeMap<String, String>,
) -> Response<Body> {
    let from: u64 = match q.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => 0,
        Some(v) => match v.parse() {
            Ok(v) => v,
            Err(_) => return status(400, "BadRequest", "invalid resourceVersion"),
        },
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(290)
        .min(3600);
    let (backlog, live, expired) = {
        let inner = shared.lock();
        let live = shared.events.subscribe();
        if from != 0 && from < inner.compacted {
            (Vec::new(), live, true)
        } else {
            let backlog: Vec<Event> = inner
                .history
                .iter()
                .filter(|e| e.rv > from)
                .cloned()
                .collect();
            (backlog, live, false)
        }
    };
    let gone = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {from}"), "reason": "Expired", "code": 410,
    });
    if expired {
        let body = StreamBody::new(stream::iter([Ok::<_, Infallible>(Frame::data(
            event_line("ERROR", &gone),
        ))]));
        return Response::new(BodyExt::boxed(body));
    }
    let namespace = namespace.to_owned();
    let wanted = move |e: &Event| e.namespace == namespace && selector.matches(&e.object);
    let backlog_lines: Vec<Bytes> = backlog
        .iter()
        .filter(|e| wanted(e))
        .map(|e| event_line(e.kind, &e.object))
        .collect();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let last_backlog = backlog.last().map_or(from, |e| e.rv);
    let live = stream::unfold((live, false, last_backlog), move |(mut rx, done, seen)| {
        let wanted = wanted.clone();
        let gone = gone.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let msg = match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Err(_) => return None,
                    Ok(m) => m,
                };
                match msg {
                    Ok(Broadcast::Event(e)) if e.rv > seen && wanted(&e) => {
                        let rv = e.rv;
                        return Some((event_line(e.kind, &e.object), (rx, false, rv)));
                    }
                    Ok(Broadcast::Event(_)) => {}
                    Ok(Broadcast::Close) | Err(broadcast::error::RecvError::Closed) => {
                        return None;
                    }
                    // Fell behind, or told to expire: the watcher must list again.
                    Ok(Broadcast::Expire) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        return Some((event_line("ERROR", &gone), (rx, true, seen)));
                    }
                }
            }
        }
    });
    let body = stream::iter(backlog_lines)
        .chain(live)
        .map(|b| Ok::<_, Infallible>(Frame::data(b)));
    Response::new(BodyExt::boxed(StreamBody::new(body)))
}
