//! Delivers the plans' notices to webhooks, in the background, so that a slow or dead
//! webhook never holds a reconcile.
//!
//! A reconcile hands its notices over with [`Notifier::notify`], which never waits (a
//! full intake drops them and says so). A dispatcher routes them, once the
//! notifications ConfigMap has been read, to one queue per webhook; each webhook's
//! worker sends its messages in order, retrying with backoff. At shutdown
//! [`Notifier::close`] sends what is queued before the Lease is released, so the next
//! leader (which never plans a transition already recorded in the status) and this one
//! between them tell each transition once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use sluice_api::rollout::Rollout;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::backoff::{self, WatchBackoff};
use super::metrics::metrics;
use crate::adapters::notify::{self, Attempt, Config, Message, Outgoing, Subscription, Value};
use crate::adapters::web::WebClient;
use crate::core::notice::{Notice, Trigger};

/// Notices waiting for the dispatcher, at most.
const INTAKE_CAPACITY: usize = 10_000;
/// Messages waiting for one webhook, at most.
const QUEUE_CAPACITY: usize = 1_000;
/// Attempts at one message before giving it up.
const MAX_ATTEMPTS: u32 = 8;
/// Longest wait between two attempts (before jitter): eight attempts span about two
/// minutes, long enough for a webhook's restart, short enough that a message still says
/// something current.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// Between attempts while shutting down: what is queued gets a few quick tries.
const CLOSING_RETRY_DELAY: Duration = Duration::from_millis(500);

/// Where the notifications ConfigMap is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub namespace: String,
    pub name: String,
}

/// The notifications of one controller. Cheap to clone; [`Notifier::disabled`] sends
/// nothing.
#[derive(Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Some(inner) => write!(
                f,
                "Notifier({}/{})",
                inner.source.namespace, inner.source.name
            ),
            None => write!(f, "Notifier(disabled)"),
        }
    }
}

struct Inner {
    source: Source,
    intake: mpsc::Sender<Batch>,
    /// Messages handed over and not yet delivered or given up.
    pending: AtomicUsize,
    closing: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// One reconcile's notices about one Rollout.
struct Batch {
    subscription: Result<Subscription, String>,
    messages: Vec<(Trigger, Message)>,
    rollout: ObjectReference,
}

/// One message for one webhook.
struct Delivery {
    webhook: String,
    body: String,
    content_type: String,
    rollout: ObjectReference,
    /// `namespace/name`, for logs.
    about: String,
    trigger: Trigger,
}

/// What the workers share.
struct Shared {
    client: Client,
    web: WebClient,
    recorder: Recorder,
    source: Source,
    config: watch::Receiver<Option<Arc<Config>>>,
    closing: watch::Receiver<bool>,
}

impl Notifier {
    /// Sends nothing (no ConfigMap to read).
    pub fn disabled() -> Self {
        Notifier { inner: None }
    }

    /// Watches the ConfigMap at `source` and delivers to the webhooks it names.
    pub fn start(client: Client, source: Source, reporter: Reporter) -> anyhow::Result<Self> {
        let web = WebClient::new()?;
        let (config_tx, config) = watch::channel(None);
        let (closing, closing_rx) = watch::channel(false);
        let (intake, intake_rx) = mpsc::channel(INTAKE_CAPACITY);
        let shared = Arc::new(Shared {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            web,
            source: source.clone(),
            config,
            closing: closing_rx,
        });
        let inner = Arc::new(Inner {
            source,
            intake,
            pending: AtomicUsize::new(0),
            closing,
            tasks: Mutex::new(Vec::new()),
        });
        let watcher = tokio::spawn(watch_config(shared.clone(), config_tx));
        let dispatcher = tokio::spawn(dispatch(shared, Arc::downgrade(&inner), intake_rx));
        inner
            .tasks
            .lock()
            .expect("notifier tasks")
            .extend([watcher, dispatcher]);
        Ok(Notifier { inner: Some(inner) })
    }

    /// Hands over the notices of a reconcile of `rollout` (whose status it wrote, in
    /// `phase`). Never waits; nothing happens for a Rollout that subscribes to nothing.
    pub fn notify(&self, rollout: &Rollout, notices: &[Notice], phase: Option<String>) {
        let Some(inner) = &self.inner else { return };
        if notices.is_empty()
            || !rollout
                .annotations()
                .contains_key(sluice_api::labels::NOTIFY_ANNOTATION)
        {
            return;
        }
        let messages: Vec<(Trigger, Message)> = notices
            .iter()
            .map(|n| (n.trigger, Message::new(rollout, n, phase.clone())))
            .collect();
        let count = messages.len();
        let batch = Batch {
            subscription: Subscription::of(rollout),
            messages,
            rollout: rollout.object_ref(&()),
        };
        inner.pending.fetch_add(count, Ordering::SeqCst);
        if let Err(e) = inner.intake.try_send(batch) {
            inner.pending.fetch_sub(count, Ordering::SeqCst);
            warn!(rollout = %rollout.name_any(), dropped = count, reason = %e, "notifications dropped: the intake is full or closed");
            metrics().notified("(intake)", "dropped");
        }
    }

    /// Sends what is queued, for at most `grace`, and stops. Messages that still fail
    /// then are given up (and logged).
    pub async fn close(&self, grace: Duration) {
        let Some(inner) = &self.inner else { return };
        let _ = inner.closing.send(true);
        let deadline = Instant::now() + grace;
        while inner.pending.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = inner.pending.load(Ordering::SeqCst);
        if left > 0 {
            warn!(
                left,
                ?grace,
                "shutting down with notifications not delivered"
            );
        } else {
            debug!("notifications flushed");
        }
        for task in inner.tasks.lock().expect("notifier tasks").drain(..) {
            task.abort();
        }
    }
}

/// Keeps `config` at the ConfigMap's last valid content (an empty configuration when it
/// does not exist). An invalid one keeps the previous configuration in force and gets
/// a Warning Event, once per version.
async fn watch_config(shared: Arc<Shared>, config: watch::Sender<Option<Arc<Config>>>) {
    let Source { namespace, name } = &shared.source;
    let api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), namespace);
    let events = watcher(
        api,
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .backoff(WatchBackoff::default());
    futures::pin_mut!(events);
    let mut seen_in_init = false;
    let mut refused_version: Option<String> = None;
    while let Some(event) = events.next().await {
        let object = match event {
            Ok(watcher::Event::Init) => {
                seen_in_init = false;
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                if !seen_in_init {
                    config.send_replace(Some(Arc::new(Config::default())));
                    info!(configmap = %format!("{namespace}/{name}"), "no notifications ConfigMap: no webhooks");
                }
                continue;
            }
            Ok(watcher::Event::Delete(_)) => {
                config.send_replace(Some(Arc::new(Config::default())));
                info!(configmap = %format!("{namespace}/{name}"), "notifications ConfigMap deleted: no webhooks");
                continue;
            }
            Ok(watcher::Event::InitApply(cm)) => {
                seen_in_init = true;
                cm
            }
            Ok(watcher::Event::Apply(cm)) => cm,
            Err(e) => {
                warn!(error = %e, configmap = %format!("{namespace}/{name}"), "watching the notifications ConfigMap");
                continue;
            }
        };
        match Config::parse(&object.data.clone().unwrap_or_default()) {
            Ok(parsed) => {
                info!(configmap = %format!("{namespace}/{name}"), webhooks = parsed.webhooks.len(), "notifications configured");
                config.send_replace(Some(Arc::new(parsed)));
                refused_version = None;
            }
            Err(problem) => {
                let keeps = if config.borrow().is_some() {
                    "the previous configuration stays in force"
                } else {
                    "no webhooks until it is fixed"
                };
                error!(configmap = %format!("{namespace}/{name}"), %problem, keeps, "invalid notifications ConfigMap");
                if config.borrow().is_none() {
                    config.send_replace(Some(Arc::new(Config::default())));
                }
                if refused_version != object.resource_version() {
                    refused_version = object.resource_version();
                    let event = Event {
                        type_: EventType::Warning,
                        reason: "InvalidNotificationConfig".into(),
                        note: Some(format!("{problem}; {keeps}").chars().take(1000).collect()),
                        action: "Validate".into(),
                        secondary: None,
                    };
                    if let Err(e) = shared
                        .recorder
                        .publish(&event, &object.object_ref(&()))
                        .await
                    {
                        warn!(error = %e, "could not record event");
                    }
                }
            }
        }
    }
}

/// Routes each batch to its webhooks' queues, once the configuration is known; ends
/// when the notifier closes and the intake is empty.
async fn dispatch(
    shared: Arc<Shared>,
    inner: std::sync::Weak<Inner>,
    mut intake: mpsc::Receiver<Batch>,
) {
    let mut config_rx = shared.config.clone();
    let mut closing = shared.closing.clone();
    let mut queues: HashMap<String, mpsc::Sender<Delivery>> = HashMap::new();
    loop {
        let batch = tokio::select! {
            biased;
            batch = intake.recv() => batch,
            _ = closing.wait_for(|c| *c) => intake.try_recv().ok(),
        };
        let Some(batch) = batch else { break };
        let Some(inner) = inner.upgrade() else { break };
        let count = batch.messages.len();
        // Until the ConfigMap has been read, hold the batch: dropping it would lose the
        // transitions of the first reconciles after a start.
        let config = match config_rx.wait_for(Option::is_some).await {
            Ok(c) => c.clone().expect("waited for"),
            Err(_) => {
                inner.pending.fetch_sub(count, Ordering::SeqCst);
                break;
            }
        };
        let queued = route(&shared, &inner, &config, batch, &mut queues).await;
        inner.pending.fetch_sub(count - queued, Ordering::SeqCst);
    }
}

/// Queues the batch's messages for their webhooks; returns how many of the batch's
/// messages were queued (each counted once in `pending`, whatever its webhook count).
async fn route(
    shared: &Arc<Shared>,
    inner: &Arc<Inner>,
    config: &Config,
    batch: Batch,
    queues: &mut HashMap<String, mpsc::Sender<Delivery>>,
) -> usize {
    let about = format!(
        "{}/{}",
        batch.rollout.namespace.clone().unwrap_or_default(),
        batch.rollout.name.clone().unwrap_or_default()
    );
    let subscription = match batch.subscription {
        Ok(s) => s,
        Err(problem) => {
            not_sent(shared, &batch.rollout, "Subscribe", &problem).await;
            return 0;
        }
    };
    let mut queued = 0;
    let mut unknown_told = false;
    for (trigger, message) in batch.messages {
        let (webhooks, unknown) = subscription.recipients(config, trigger);
        if !unknown.is_empty() && !unknown_told {
            unknown_told = true;
            let problem = format!(
                "{} names {} not in ConfigMap {}/{}",
                sluice_api::labels::NOTIFY_ANNOTATION,
                unknown.join(", "),
                shared.source.namespace,
                shared.source.name
            );
            not_sent(shared, &batch.rollout, "Subscribe", &problem).await;
        }
        // One message may go to several webhooks: `pending` counts each delivery, so
        // add the extra ones before handing any over.
        let mut deliveries = Vec::new();
        for webhook in webhooks {
            match webhook.body(&message) {
                Ok(body) => deliveries.push(Delivery {
                    webhook: webhook.name.clone(),
                    body,
                    content_type: webhook.content_type.clone(),
                    rollout: batch.rollout.clone(),
                    about: about.clone(),
                    trigger,
                }),
                Err(problem) => {
                    metrics().notified(&webhook.name, "dropped");
                    let problem = format!("webhook {}: {problem}", webhook.name);
                    not_sent(shared, &batch.rollout, &webhook.name, &problem).await;
                }
            }
        }
        if deliveries.is_empty() {
            continue;
        }
        inner
            .pending
            .fetch_add(deliveries.len() - 1, Ordering::SeqCst);
        queued += 1;
        for delivery in deliveries {
            let queue = queues.entry(delivery.webhook.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
                let worker = tokio::spawn(work(shared.clone(), Arc::downgrade(inner), rx));
                inner.tasks.lock().expect("notifier tasks").push(worker);
                tx
            });
            if let Err(e) = queue.try_send(delivery) {
                let delivery = match e {
                    mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
                };
                inner.pending.fetch_sub(1, Ordering::SeqCst);
                metrics().notified(&delivery.webhook, "dropped");
                warn!(webhook = %delivery.webhook, rollout = %delivery.about, trigger = delivery.trigger.name(), "notification dropped: the webhook's queue is full");
            }
        }
    }
    queued
}

/// Sends one webhook's messages in order.
async fn work(
    shared: Arc<Shared>,
    inner: std::sync::Weak<Inner>,
    mut queue: mpsc::Receiver<Delivery>,
) {
    while let Some(delivery) = queue.recv().await {
        let outcome = deliver(&shared, &delivery).await;
        metrics().notified(&delivery.webhook, outcome);
        if let Some(inner) = inner.upgrade() {
            inner.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Attempts `delivery` until it is delivered, refused, or out of attempts; the outcome
/// for the metric.
async fn deliver(shared: &Shared, delivery: &Delivery) -> &'static str {
    let mut closing = shared.closing.clone();
    let mut last = String::new();
    for attempt in 1..=MAX_ATTEMPTS {
        // The webhook as configured now: a fixed URL or header applies to what is queued.
        let webhook = shared
            .config
            .borrow()
            .as_ref()
            .and_then(|c| c.webhooks.get(&delivery.webhook).cloned());
        let Some(webhook) = webhook else {
            warn!(webhook = %delivery.webhook, rollout = %delivery.about, "notification dropped: the webhook is no longer configured");
            return "dropped";
        };
        let result = match resolve(shared, &webhook).await {
            Ok((url, headers)) => {
                notify::attempt(
                    &shared.web,
                    &Outgoing {
                        url: &url,
                        headers: &headers,
                        content_type: &delivery.content_type,
                        body: &delivery.body,
                        timeout: webhook.timeout,
                        tls: crate::adapters::web::WebTls::Platform,
                    },
                )
                .await
            }
            // A Secret may be created after the ConfigMap: worth another try.
            Err(problem) => Attempt::Retry(problem),
        };
        match result {
            Attempt::Delivered => {
                debug!(webhook = %delivery.webhook, rollout = %delivery.about, trigger = delivery.trigger.name(), attempt, "notified");
                return "delivered";
            }
            Attempt::Refused(reason) => {
                let problem = format!("webhook {} refused it: {reason}", delivery.webhook);
                not_sent(shared, &delivery.rollout, &delivery.webhook, &problem).await;
                return "failed";
            }
            Attempt::Retry(reason) => last = reason,
        }
        if attempt == MAX_ATTEMPTS {
            break;
        }
        let jitter = backoff::jitter_for(
            &(&delivery.webhook, &delivery.about),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
        );
        let delay = backoff::capped(attempt + 1, MAX_RETRY_DELAY, jitter);
        debug!(webhook = %delivery.webhook, reason = %last, ?delay, "notification failed; retrying");
        if *closing.borrow() {
            tokio::time::sleep(CLOSING_RETRY_DELAY).await;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = closing.wait_for(|c| *c) => {}
            }
        }
    }
    let problem = format!(
        "webhook {}: gave up after {MAX_ATTEMPTS} attempts: {last}",
        delivery.webhook
    );
    not_sent(shared, &delivery.rollout, &delivery.webhook, &problem).await;
    "failed"
}

/// The webhook's URL and headers, Secrets read now (never kept).
async fn resolve(
    shared: &Shared,
    webhook: &notify::Webhook,
) -> Result<(String, Vec<(String, String)>), String> {
    let read = |value: &Value| {
        let value = value.clone();
        async move {
            match value {
                Value::Inline(v) => Ok(v),
                Value::Secret(key) => {
                    super::analysis::secret_value(&shared.client, &shared.source.namespace, &key)
                        .await
                }
            }
        }
    };
    let url = read(&webhook.url).await?;
    let mut headers = Vec::with_capacity(webhook.headers.len());
    for (name, value) in &webhook.headers {
        headers.push((name.clone(), read(value).await?));
    }
    Ok((url, headers))
}

/// A Warning Event on the Rollout: one of its notifications was not sent, and why. The
/// action names the webhook, so repeats count as one series.
async fn not_sent(shared: &Shared, rollout: &ObjectReference, action: &str, problem: &str) {
    warn!(rollout = %format!("{}/{}", rollout.namespace.as_deref().unwrap_or_default(), rollout.name.as_deref().unwrap_or_default()), %problem, "notification not sent");
    let event = Event {
        type_: EventType::Warning,
        reason: "NotificationNotSent".into(),
        note: Some(problem.chars().take(1000).collect()),
        action: format!("Notify-{action}").chars().take(128).collect(),
        secondary: None,
    };
    if let Err(e) = shared.recorder.publish(&event, rollout).await {
        warn!(error = %e, "could not record event");
    }
}
