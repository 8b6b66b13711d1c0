//! A mocked Kubernetes API for request-level adapter tests: it answers a call's requests
//! in order with canned responses and hands back every request it received.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

/// The server side of a mocked client.
pub type Handle = mock::Handle<Request<Body>, Response<Body>>;

/// A client whose requests reach `Handle` and nothing else; for tests that must not talk.
pub fn client() -> (Client, Handle) {
    let (service, handle) = mock::pair();
    (Client::new(service, "default"), handle)
}

/// One request an adapter sent, decoded for assertions.
#[derive(Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

/// The API's 404 for `resource` (e.g. `ingresses.networking.k8s.io`) named `name`.
pub fn not_found(resource: &str, name: &str) -> (u16, Value) {
    (
        404,
        json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("{resource} \"{name}\" not found"),
            "reason": "NotFound", "code": 404
        }),
    )
}

/// A request as the tests look at it.
async fn decode(request: Request<Body>) -> Seen {
    let (parts, body_in) = request.into_parts();
    let bytes = body_in.collect_bytes().await.expect("request body");
    Seen {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: (!bytes.is_empty())
            .then(|| serde_json::from_slice(&bytes).expect("JSON request body")),
    }
}

/// Runs `call` against a mocked API server that answers the requests in order with
/// `responses`, and returns the call's result and every request it sent. Fails if the
/// call sends more requests than there are responses, or fewer.
pub async fn exchange<T, F, Fut>(responses: Vec<(u16, Value)>, call: F) -> (T, Vec<Seen>)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = T>,
{
    let (service, mut handle): (_, Handle) = mock::pair();
    let client = Client::new(service, "default");
    let expected = responses.len();
    let server = async move {
        let mut seen = Vec::new();
        for (status, body) in responses {
            let Some((request, send)) = handle.next_request().await else {
                break;
            };
            seen.push(decode(request).await);
            let response = Response::builder()
                .status(StatusCode::from_u16(status).expect("status code"))
                .body(Body::from(serde_json::to_vec(&body).expect("JSON")))
                .expect("response");
            send.send_response(response);
        }
        (seen, handle)
    };
    let run = async move { tokio::join!(call(client), server) };
    let (result, (seen, mut handle)) = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the router call and the mocked server finished");
    assert_eq!(seen.len(), expected, "requests sent: {seen:#?}");
    let extra = tokio::time::timeout(Duration::from_secs(2), handle.next_request()).await;
    if let Ok(Some((request, _))) = extra {
        panic!(
            "unexpected extra request: {} {}",
            request.method(),
            request.uri()
        );
    }
    (result, seen)
}

/// Every request a [`serve`]d mock received, in order.
pub type Log = std::sync::Arc<std::sync::Mutex<Vec<Seen>>>;

/// A mocked API server that answers each request with `route(&seen)` for as long as the
/// client lives, and logs every request. For code whose calls are not a fixed sequence
/// (a whole reconcile): tests assert on what was written, not on the order of the calls.
pub fn serve(route: impl Fn(&Seen) -> (u16, Value) + Send + 'static) -> (Client, Log) {
    let (service, mut handle): (_, Handle) = mock::pair();
    let client = Client::new(service, "default");
    let log: Log = Log::default();
    let seen_log = log.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let seen = decode(request).await;
            let (status, body) = route(&seen);
            seen_log.lock().expect("not poisoned").push(seen);
            send.send_response(
                Response::builder()
                    .status(StatusCode::from_u16(status).expect("status code"))
                    .body(Body::from(serde_json::to_vec(&body).expect("JSON")))
                    .expect("response"),
            );
        }
    });
    (client, log)
}
