//! Notifications on the real plane: a controller reads the webhooks of its notifications
//! ConfigMap (URLs and headers from a Secret), and a local HTTP receiver gets exactly one
//! message per transition, in order, through retries and across a controller restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use sluice_api::rollout::RolloutPhase;
use sluice_controller::actions::UserAction;
use sluice_e2e::rollout_env::{Env, pod_template};
use sluice_e2e::{ControllerProcess, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request the receiver answered.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
    /// The status it was answered with.
    status: u16,
}

#[derive(Default)]
struct Behaviour {
    /// Per path: how many requests still get a 503.
    fail_first: BTreeMap<String, usize>,
    /// How long each answer waits.
    delay: Duration,
}

/// A webhook receiver on 127.0.0.1 (the controller is a local process).
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(Behaviour::default()));
        let task = {
            let (seen, behaviour) = (seen.clone(), behaviour.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(answer(stream, seen.clone(), behaviour.clone()));
                }
            })
        };
        Ok(Receiver {
            url,
            seen,
            behaviour,
            task,
        })
    }

    /// The bodies answered 2xx at `path`, as JSON, in arrival order.
    fn accepted(&self, path: &str) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path && r.status == 200)
            .map(|r| serde_json::from_str(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    fn requests(&self, path: &str) -> Vec<Received> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    mut stream: tokio::net::TcpStream,
    seen: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default()
        .to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let (status, delay) = {
        let mut b = behaviour.lock().unwrap();
        let delay = b.delay;
        match b.fail_first.get_mut(&path) {
            Some(n) if *n > 0 => {
                *n -= 1;
                (503, delay)
            }
            _ => (200, delay),
        }
    };
    tokio::time::sleep(delay).await;
    seen.lock().unwrap().push(Received {
        path,
        headers,
        body: String::from_utf8_lossy(&buf[head_end..]).into_owned(),
        status,
    });
    let response = format!(
        "HTTP/1.1 {status} Canned\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
         Connection: close\r\n\r\nok"
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The notifications ConfigMap (the controller's default name, in its namespace) and the
/// Secret with the chat webhook's URL and the JSON webhook's token; waits until the
/// controller has read them.
async fn configure(env: &Env, receiver: &Receiver, webhooks: &str) -> Result<()> {
    env.apply(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "hooks" },
        "stringData": {
            "chat-url": format!("{}/chat", receiver.url),
            "token": "Bearer s3cret",
        },
    }))
    .await?;
    env.apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "sluice-notifications" },
        "data": { "webhooks": webhooks },
    }))
    .await?;
    env.controller
        .as_ref()
        .expect("the test's controller runs")
        .wait_log("notifications configured", Duration::from_secs(30))
        .await?;
    Ok(())
}

fn webhooks(receiver: &Receiver) -> String {
    format!(
        r#"
- name: audit
  url: {}/audit
  headers:
    - name: Authorization
      valueFrom: {{secretKeyRef: {{name: hooks, key: token}}}}
- name: chat
  format: slack
  urlFrom: {{secretKeyRef: {{name: hooks, key: chat-url}}}}
"#,
        receiver.url
    )
}

async fn canary(env: &Env, annotations: Value, steps: Value) -> Result<()> {
    env.apply(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "web", "annotations": annotations },
        "spec": {
            "replicas": 4,
            "selector": { "matchLabels": { "app": "web" } },
            "template": pod_template("v1"),
            "strategy": { "canary": { "steps": steps } },
        },
    }))
    .await
}

/// (trigger, steps completed) of each message.
fn triggers(messages: &[Value]) -> Vec<(String, u64)> {
    messages
        .iter()
        .map(|m| {
            (
                m["trigger"].as_str().unwrap_or_default().to_string(),
                m["step"]["completed"].as_u64().unwrap_or(99),
            )
        })
        .collect()
}

async fn events(env: &Env, reason: &str) -> Result<Vec<Event>> {
    let api: Api<Event> = Api::namespaced(env.client.clone(), env.ns());
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect())
}

// Multi-threaded: `terminate` blocks its thread until the controller exits, and the
// receiver must go on answering meanwhile (on a current-thread runtime it froze, and the
// flush at shutdown found nobody answering).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_transition_is_notified_once_through_retries_and_a_restart() -> Result<()> {
    let receiver = Receiver::start().await?;
    let mut env = Env::new("notify").await?;
    // The controller started before the ConfigMap exists: it picks it up when created.
    configure(&env, &receiver, &webhooks(&receiver)).await?;
    canary(
        &env,
        json!({ "sluice.dev/notify": "audit, chat" }),
        json!([
            { "setWeight": 25 },
            { "pause": {} },
            { "setWeight": 50 },
            { "pause": { "duration": "2s" } },
        ]),
    )
    .await?;
    env.wait("Healthy at v1", |r| {
        r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Healthy)
    })
    .await?;
    assert!(
        receiver.seen.lock().unwrap().is_empty(),
        "a first revision is no transition"
    );

    // The chat webhook is down for its first two requests; every answer takes a while,
    // so messages are still on their way when the controller is told to stop.
    {
        let mut b = receiver.behaviour.lock().unwrap();
        b.fail_first.insert("/chat".into(), 2);
        b.delay = Duration::from_millis(300);
    }
    env.set_version("v2").await?;
    env.wait_step(1, RolloutPhase::Paused).await?;
    let stopping = env.controller.take().unwrap();
    let log = stopping.log.clone();
    let exit = stopping.terminate()?;
    assert!(exit.success(), "{exit:?}");
    let log = std::fs::read_to_string(&log)?;
    assert!(
        !log.contains("not delivered"),
        "everything queued went out before the exit:\n{log}"
    );
    let before_restart = [
        ("updated".to_string(), 0),
        ("step-completed".into(), 1),
        ("paused".into(), 1),
    ];
    assert_eq!(triggers(&receiver.accepted("/audit")), before_restart);
    // The chat webhook's bodies are chat lines: the trigger is in the text.
    let chat_lines: Vec<String> = receiver
        .accepted("/chat")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(chat_lines.len(), 3, "{chat_lines:?}");
    for (line, (trigger, _)) in chat_lines.iter().zip(&before_restart) {
        assert!(
            line.contains(&format!("*{}/web* {}", env.ns(), trigger.replace('-', " "))),
            "{chat_lines:?}"
        );
    }
    let chat_requests = receiver.requests("/chat");
    assert_eq!(
        chat_requests.iter().filter(|r| r.status == 503).count(),
        2,
        "two refused attempts, retried"
    );

    // A new controller (a new leader) resumes: nothing it finds recorded is told again.
    receiver.behaviour.lock().unwrap().delay = Duration::ZERO;
    env.controller = Some(ControllerProcess::start(env.ns())?);
    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    wait_for(
        "8 messages at the audit webhook",
        Duration::from_secs(30),
        || async { Ok(receiver.accepted("/audit").len() >= 8) },
    )
    .await?;
    // Time for a repeat to arrive, if one were coming.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let audit = receiver.accepted("/audit");
    assert_eq!(
        triggers(&audit),
        [
            ("updated".to_string(), 0),
            ("step-completed".into(), 1),
            ("paused".into(), 1),
            ("step-completed".into(), 2),
            ("step-completed".into(), 3),
            ("step-completed".into(), 4),
            ("promoted".into(), 4),
            ("completed".into(), 4),
        ],
        "{audit:#?}"
    );
    let first = &audit[0];
    assert_eq!(first["rollout"]["name"], "web");
    assert_eq!(first["rollout"]["namespace"], env.ns());
    assert_eq!(first["strategy"], "canary");
    let revision = audit[7]["revision"].as_str().unwrap().to_string();
    assert!(audit.iter().all(|m| m["revision"] == revision.as_str()));
    let ids: BTreeSet<String> = audit
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 8, "one id per transition");
    for r in receiver.requests("/audit") {
        assert_eq!(r.headers["authorization"], "Bearer s3cret");
        assert_eq!(r.headers["content-type"], "application/json");
    }

    // The chat webhook got the same transitions, as chat lines.
    let chat = receiver.accepted("/chat");
    assert_eq!(chat.len(), 8, "{chat:#?}");
    let texts: Vec<&str> = chat.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert!(
        texts[0].starts_with(&format!(":arrow_forward: *{}/web* updated", env.ns())),
        "{texts:?}"
    );
    assert!(
        texts[7].starts_with(&format!(":white_check_mark: *{}/web* completed", env.ns())),
        "{texts:?}"
    );
    env.finish().await
}

#[tokio::test]
async fn a_failed_analysis_a_narrowed_subscription_and_bad_config_are_each_told() -> Result<()> {
    let receiver = Receiver::start().await?;
    let env = Env::new("notify-bad").await?;
    // Only aborts, for this Rollout; and one webhook name the ConfigMap does not have.
    configure(&env, &receiver, &webhooks(&receiver)).await?;
    canary(
        &env,
        json!({ "sluice.dev/notify": "audit, pager", "sluice.dev/notify-on": "aborted" }),
        json!([{ "setWeight": 25 }, { "pause": {} }]),
    )
    .await?;
    env.wait("Healthy at v1", |r| {
        r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Healthy)
    })
    .await?;
    env.set_version("v2").await?;
    env.wait_step(1, RolloutPhase::Paused).await?;
    env.act(UserAction::Abort).await?;
    env.wait("Degraded after the abort", |r| {
        r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Degraded)
    })
    .await?;
    wait_for(
        "the abort at the audit webhook",
        Duration::from_secs(20),
        || async { Ok(!receiver.accepted("/audit").is_empty()) },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        triggers(&receiver.accepted("/audit")),
        [("aborted".to_string(), 1)],
        "notify-on keeps only the abort"
    );
    assert!(
        receiver.requests("/chat").is_empty(),
        "chat is not subscribed"
    );
    let not_sent = events(&env, "NotificationNotSent").await?;
    assert!(
        not_sent.iter().any(|e| e
            .note
            .as_deref()
            .is_some_and(|n| n.contains("sluice.dev/notify names pager not in ConfigMap"))),
        "{not_sent:#?}"
    );

    // A broken ConfigMap is refused whole, said on the ConfigMap, and the previous one
    // stays in force.
    env.apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "sluice-notifications" },
        "data": { "webhooks": "- name: audit\n  url: ftp://nowhere\n" },
    }))
    .await?;
    wait_for(
        "the InvalidNotificationConfig Event",
        Duration::from_secs(20),
        || async { Ok(!events(&env, "InvalidNotificationConfig").await?.is_empty()) },
    )
    .await?;
    let invalid = events(&env, "InvalidNotificationConfig").await?;
    let note = invalid[0].note.clone().unwrap_or_default();
    assert!(
        note.contains("webhook \"audit\": url must be an absolute http:// or https:// URL")
            && note.contains("the previous configuration stays in force"),
        "{note}"
    );
    assert_eq!(
        invalid[0]
            .regarding
            .as_ref()
            .and_then(|r| r.name.as_deref()),
        Some("sluice-notifications")
    );
    // Retry, then abort again: the previous configuration still delivers.
    env.act(UserAction::Retry).await?;
    env.wait("back at the pause after the retry", |r| {
        let s = r.status.clone().unwrap_or_default();
        !s.abort && s.phase == Some(RolloutPhase::Paused)
    })
    .await?;
    env.act(UserAction::Abort).await?;
    wait_for(
        "the second abort at the audit webhook",
        Duration::from_secs(20),
        || async { Ok(receiver.accepted("/audit").len() >= 2) },
    )
    .await?;
    env.finish().await
}
