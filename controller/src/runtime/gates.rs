//! Calls the gates the plans want called (`core::gate`), in the background, so that a
//! slow or dead gate never holds a reconcile.
//!
//! After each reconcile [`Gatekeeper::want`] gets the plan's calls for that Rollout: a
//! caller task starts for each new one and the callers of calls no longer wanted stop
//! (the gate passed, a promote, an abort, a new revision). A caller POSTs the request,
//! and again with backoff until the gate answers 2xx; each new answer is kept for the
//! next plan (`Observed::gate_answers`) and brings the Rollout back. Answers live in
//! memory only: `status.gates` is the record, so a new leader calls a pending gate again
//! and never one that passed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use sluice_api::gate::Gate;
use sluice_api::rollout::Rollout;
use tokio::task::AbortHandle;
use tracing::{debug, info};

use super::backoff;
use super::metrics::metrics;
use crate::adapters::notify::{self, Attempt, Outgoing};
use crate::adapters::web::{WebClient, WebTls};
use crate::core::gate::{GateAnswer, GateCall};

/// Longest wait between two calls of a gate that has not passed (before jitter): an
/// approval is seen within about this long.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// The key the Controller knows a Rollout by.
pub type RolloutKey = ObjectRef<kube::core::DeserializeGuard<Rollout>>;

/// The gate callers of one controller. Cheap to clone. Dropping the last clone stops
/// every caller.
#[derive(Clone)]
pub struct Gatekeeper {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    web: WebClient,
    /// Brings a Rollout back to the Controller when one of its gates answered anew.
    wake: UnboundedSender<RolloutKey>,
    rollouts: Mutex<HashMap<RolloutKey, Calls>>,
}

/// The gates being called for one Rollout.
#[derive(Default)]
struct Calls {
    callers: HashMap<String, AbortHandle>,
    answers: BTreeMap<String, GateAnswer>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let rollouts = self.rollouts.get_mut().unwrap_or_else(|e| e.into_inner());
        for calls in rollouts.values() {
            calls.callers.values().for_each(AbortHandle::abort);
        }
    }
}

impl std::fmt::Debug for Gatekeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gatekeeper").finish_non_exhaustive()
    }
}

impl Gatekeeper {
    /// A gatekeeper that wakes Rollouts through `wake` (fed to the Controller).
    pub fn new(client: Client, web: WebClient, wake: UnboundedSender<RolloutKey>) -> Self {
        Gatekeeper {
            inner: Arc::new(Inner {
                client,
                web,
                wake,
                rollouts: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The last answers of the gates called for a Rollout, for its next plan.
    pub fn answers(&self, key: &RolloutKey) -> BTreeMap<String, GateAnswer> {
        let rollouts = self.inner.rollouts.lock().expect("gatekeeper lock");
        rollouts
            .get(key)
            .map(|c| c.answers.clone())
            .unwrap_or_default()
    }

    /// Makes the callers of a Rollout exactly those of `calls`: starts the missing ones,
    /// stops the others and forgets their answers. Never waits.
    pub fn want(&self, key: &RolloutKey, rollout: &Rollout, calls: &[GateCall]) {
        let mut rollouts = self.inner.rollouts.lock().expect("gatekeeper lock");
        if calls.is_empty() && !rollouts.contains_key(key) {
            return;
        }
        let entry = rollouts.entry(key.clone()).or_default();
        entry.callers.retain(|k, caller| {
            let wanted = calls.iter().any(|c| &c.key == k);
            if !wanted {
                caller.abort();
            }
            wanted
        });
        entry
            .answers
            .retain(|k, _| calls.iter().any(|c| &c.key == k));
        for call in calls {
            if entry.callers.contains_key(&call.key) {
                continue;
            }
            let Some(gate) = rollout
                .spec
                .strategy
                .gates
                .iter()
                .find(|g| g.name == call.request.gate)
            else {
                continue;
            };
            let job = Caller {
                inner: Arc::downgrade(&self.inner),
                rollout: key.clone(),
                namespace: rollout.namespace().unwrap_or_default(),
                gate: gate.clone(),
                call: call.clone(),
            };
            let handle = tokio::spawn(job.run());
            entry
                .callers
                .insert(call.key.clone(), handle.abort_handle());
        }
        if entry.callers.is_empty() {
            rollouts.remove(key);
        }
    }

    /// Stops every caller of a Rollout (it is being deleted).
    pub fn forget(&self, key: &RolloutKey) {
        let mut rollouts = self.inner.rollouts.lock().expect("gatekeeper lock");
        if let Some(calls) = rollouts.remove(key) {
            calls.callers.values().for_each(AbortHandle::abort);
        }
    }
}

/// One gate at one point of one revision, called until it passes.
struct Caller {
    inner: Weak<Inner>,
    rollout: RolloutKey,
    namespace: String,
    gate: Gate,
    call: GateCall,
}

impl Caller {
    async fn run(self) {
        let body = serde_json::to_string(&self.call).expect("a gate request serializes");
        let point = self.call.request.point.as_str();
        let jitter = backoff::jitter_for(&self.call.key, std::process::id());
        for attempt in 0u32.. {
            let Some(inner) = self.inner.upgrade() else {
                return;
            };
            let answer = match self.resolve(&inner.client).await {
                Err(problem) => GateAnswer {
                    passed: false,
                    message: problem,
                },
                Ok((url, headers)) => {
                    let outgoing = Outgoing {
                        url: &url,
                        headers: &headers,
                        content_type: "application/json",
                        body: &body,
                        timeout: Duration::from_secs(
                            self.gate.request_timeout_seconds.clamp(1, 60) as u64,
                        ),
                        tls: match (&self.gate.ca_bundle, self.gate.insecure) {
                            (_, true) => WebTls::Insecure,
                            (Some(ca), false) => WebTls::CaBundle(ca),
                            (None, false) => WebTls::Platform,
                        },
                    };
                    match notify::attempt(&inner.web, &outgoing).await {
                        Attempt::Delivered => GateAnswer {
                            passed: true,
                            message: "answered 2xx".into(),
                        },
                        Attempt::Retry(reason) | Attempt::Refused(reason) => GateAnswer {
                            passed: false,
                            message: reason,
                        },
                    }
                }
            };
            metrics().gate_called(point, if answer.passed { "passed" } else { "held" });
            let passed = answer.passed;
            let news = {
                let mut rollouts = inner.rollouts.lock().expect("gatekeeper lock");
                let Some(calls) = rollouts.get_mut(&self.rollout) else {
                    return;
                };
                if !calls.callers.contains_key(&self.call.key) {
                    return;
                }
                // A passed caller stays listed (its task ends) until a plan no longer
                // wants the call: a plan made before the answer arrived still lists it,
                // and must not start a second caller that would call the gate again.
                let old = calls.answers.insert(self.call.key.clone(), answer.clone());
                old.as_ref() != Some(&answer)
            };
            if news {
                if passed {
                    info!(rollout = %self.rollout, gate = %self.gate.name, point, "gate passed");
                } else {
                    debug!(rollout = %self.rollout, gate = %self.gate.name, point, answer = %answer.message, "gate holds");
                }
                // The Controller may be gone (shutting down): nothing to wake then.
                let _ = inner.wake.unbounded_send(self.rollout.clone());
            }
            if passed {
                return;
            }
            drop(inner);
            tokio::time::sleep(backoff::capped(attempt, MAX_RETRY_DELAY, jitter)).await;
        }
    }

    /// The URL and headers, Secrets read afresh each time (one may be created late).
    async fn resolve(&self, client: &Client) -> Result<(String, Vec<(String, String)>), String> {
        let read_secret = |key| super::analysis::secret_value(client, &self.namespace, key);
        let url = match (&self.gate.url, &self.gate.url_from) {
            (Some(url), _) => url.clone(),
            (None, Some(from)) => read_secret(&from.secret_key_ref).await?,
            (None, None) => return Err("the gate has no url".into()),
        };
        let mut headers = Vec::with_capacity(self.gate.headers.len());
        for header in &self.gate.headers {
            let value = match (&header.value, &header.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(from)) => read_secret(&from.secret_key_ref).await?,
                (None, None) => String::new(),
            };
            headers.push((header.key.clone(), value));
        }
        Ok((url, headers))
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use serde_json::json;
    use sluice_api::gate::GatePoint;

    use super::*;
    use crate::adapters::mock_api;
    use crate::adapters::web::tests::serve;
    use crate::core::gate::{GateRequest, key};

    fn rollout(url: &str) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "web", "namespace": "shop", "uid": "u-1" },
            "spec": {
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "metadata": { "labels": { "app": "web" } } },
                "strategy": {
                    "canary": {},
                    "gates": [{ "name": "approve", "points": ["prePromotion"], "url": url,
                                "headers": [{ "key": "X-Team", "value": "shop" }] }],
                },
            },
        }))
        .unwrap()
    }

    fn call() -> GateCall {
        GateCall {
            key: key("abc", GatePoint::PrePromotion, None, "approve"),
            request: GateRequest {
                gate: "approve".into(),
                point: GatePoint::PrePromotion,
                namespace: "shop".into(),
                name: "web".into(),
                uid: "u-1".into(),
                strategy: sluice_api::rollout::StrategyKind::Canary,
                revision: "abc".into(),
                stable_revision: "def".into(),
                step: None,
                services: BTreeMap::new(),
                metadata: BTreeMap::new(),
            },
        }
    }

    #[tokio::test]
    async fn a_passed_gate_is_called_once_however_often_it_is_still_wanted() {
        let (url, mut seen) = serve(200, "{}").await;
        let (client, _) = mock_api::serve(|s| mock_api::not_found("secrets", &s.path));
        let (wake, mut woken) = futures::channel::mpsc::unbounded();
        let keeper = Gatekeeper::new(client, WebClient::without_proxy(), wake);
        let r = rollout(&format!("{url}/approve"));
        let key = RolloutKey::new("web").within("shop");
        keeper.want(&key, &r, &[call()]);
        let first = seen.recv().await.unwrap();
        assert_eq!(
            (first.method.as_str(), first.target.as_str()),
            ("POST", "/approve")
        );
        assert_eq!(
            first.headers.get("x-team").map(String::as_str),
            Some("shop")
        );
        let body: serde_json::Value = serde_json::from_str(&first.body).unwrap();
        assert_eq!(body["point"], "prePromotion");
        assert_eq!(body["stableRevision"], "def");

        assert_eq!(
            woken.next().await,
            Some(key.clone()),
            "the answer wakes the Rollout"
        );
        let answers = keeper.answers(&key);
        assert!(answers[&call().key].passed);
        // A plan made before the answer arrived still wants the call: no second call.
        keeper.want(&key, &r, &[call()]);
        keeper.want(&key, &r, &[call()]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(seen.try_recv().is_err(), "called again");
        // Once no plan wants it, it is forgotten.
        keeper.want(&key, &r, &[]);
        assert!(keeper.answers(&key).is_empty());
    }

    #[tokio::test]
    async fn a_gate_that_says_no_is_called_again_and_stops_when_not_wanted() {
        let (url, mut seen) = serve(503, r#"{"approved":false}"#).await;
        let (client, _) = mock_api::serve(|s| mock_api::not_found("secrets", &s.path));
        let (wake, mut woken) = futures::channel::mpsc::unbounded();
        let keeper = Gatekeeper::new(client, WebClient::without_proxy(), wake);
        let r = rollout(&url);
        let key = RolloutKey::new("web").within("shop");
        keeper.want(&key, &r, &[call()]);
        seen.recv().await.unwrap();
        assert_eq!(woken.next().await, Some(key.clone()));
        let answer = keeper.answers(&key)[&call().key].clone();
        assert!(!answer.passed);
        assert!(answer.message.starts_with("HTTP 503"), "{}", answer.message);
        // Called again after a backoff (about a second at first), with no new wake-up
        // while the answer stays the same.
        tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .expect("called again")
            .unwrap();
        keeper.want(&key, &r, &[]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        while seen.try_recv().is_ok() {}
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            seen.try_recv().is_err(),
            "called after it was no longer wanted"
        );
    }
}
