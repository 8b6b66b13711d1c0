//! The notifications configuration, subscriptions and bodies; attempts against a real
//! loopback HTTP server.

use super::*;
use crate::adapters::web::tests::serve;
use crate::core::notice::StepPosition;
use k8s_openapi::jiff::Timestamp;

fn config(yaml: &str) -> Result<Config, ConfigError> {
    Config::parse(&BTreeMap::from([(
        WEBHOOKS_KEY.to_string(),
        yaml.to_string(),
    )]))
}

fn rollout(annotations: &[(&str, &str)]) -> Rollout {
    let mut r: Rollout = serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "web", "namespace": "shop", "uid": "u-1" },
        "spec": {
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } }, "spec": { "containers": [] } },
            "strategy": { "canary": { "steps": [] } },
        },
    }))
    .unwrap();
    r.metadata.annotations = Some(
        annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    r
}

fn notice(trigger: Trigger) -> Notice {
    Notice {
        trigger,
        revision: "5d8f9c".into(),
        step: Some(StepPosition {
            completed: 2,
            count: 4,
        }),
        message: "analysis web-5d8f9c-2 of step 3 ended Failed".into(),
        at: "2026-12-02T10:00:00Z".parse::<Timestamp>().unwrap(),
    }
}

#[test]
fn a_configuration_lists_webhooks_with_their_defaults() {
    let c = config(
        r#"
- name: audit
  url: http://audit.example:8080/rollouts
- name: ops
  format: slack
  urlFrom: {secretKeyRef: {name: hooks, key: slack}}
  triggers: [aborted, completed]
  timeout: 3s
  headers:
    - {name: X-Team, value: shop}
    - name: Authorization
      valueFrom: {secretKeyRef: {name: hooks, key: token}}
"#,
    )
    .unwrap();
    let audit = &c.webhooks["audit"];
    assert_eq!(audit.format, Format::Json);
    assert_eq!(audit.triggers.len(), Trigger::ALL.len());
    assert_eq!(audit.timeout, DEFAULT_TIMEOUT);
    assert_eq!(audit.content_type, "application/json");
    let ops = &c.webhooks["ops"];
    assert_eq!(ops.format, Format::Slack);
    assert_eq!(
        ops.triggers,
        BTreeSet::from([Trigger::Aborted, Trigger::Completed])
    );
    assert_eq!(ops.timeout, Duration::from_secs(3));
    assert!(matches!(&ops.url, Value::Secret(k) if k.name == "hooks" && k.key == "slack"));
    assert_eq!(
        ops.headers[0],
        ("X-Team".into(), Value::Inline("shop".into()))
    );
    assert!(matches!(&ops.headers[1].1, Value::Secret(k) if k.key == "token"));
    assert_eq!(
        Config::parse(&BTreeMap::new()).unwrap(),
        Config::default(),
        "no key, no webhooks"
    );
}

#[test]
fn a_wrong_configuration_is_refused_whole_with_the_reason() {
    let cases = [
        (
            "- name: a\n",
            "webhook \"a\": set exactly one of url and urlFrom",
        ),
        (
            "- name: a\n  url: http://x\n  urlFrom: {secretKeyRef: {name: s, key: k}}\n",
            "set exactly one of url and urlFrom",
        ),
        ("- name: Ops\n  url: http://x\n", "name must be a DNS label"),
        (
            "- name: a\n  url: ftp://x/y\n",
            "absolute http:// or https:// URL",
        ),
        ("- name: a\n  url: not a url\n", "url is not a URL"),
        (
            "- name: a\n  url: http://x\n  triggers: [on-rollout-aborted]\n",
            "unknown trigger \"on-rollout-aborted\" (known: updated, step-completed",
        ),
        (
            "- name: a\n  url: http://x\n  timeout: 5 minutes\n",
            "is not a duration from 1ms to 60s",
        ),
        (
            "- name: a\n  url: http://x\n  format: template\n",
            "format template needs a template",
        ),
        (
            "- name: a\n  url: http://x\n  template: '{{ message }}'\n",
            "template is only read with format: template",
        ),
        (
            "- name: a\n  url: http://x\n  format: template\n  template: '{{ rollout.nmae }}'\n",
            "undefined",
        ),
        (
            "- name: a\n  url: http://x\n  format: template\n  template: '{% if %}'\n",
            "syntax error",
        ),
        (
            "- name: a\n  url: http://x\n  colour: red\n",
            "unknown field `colour`",
        ),
        (
            "- name: a\n  url: http://x\n- name: a\n  url: http://y\n",
            "listed twice",
        ),
        (
            "- name: a\n  url: http://x\n  headers: [{name: 'Bad Header', value: v}]\n",
            "not a valid header name",
        ),
    ];
    for (yaml, expected) in cases {
        let e = config(yaml).expect_err(yaml).to_string();
        assert!(e.contains(expected), "{yaml}: {e}");
    }
    let e = Config::parse(&BTreeMap::from([("webhook".to_string(), String::new())])).unwrap_err();
    assert!(e.to_string().contains("unknown key \"webhook\""), "{e}");
}

#[test]
fn a_subscription_names_webhooks_and_may_narrow_the_triggers() {
    let c = config(
        "- {name: ops, url: 'http://x', triggers: [aborted, completed]}\n- {name: audit, url: 'http://y'}\n",
    )
    .unwrap();
    let names = |s: &Subscription, t| {
        let (found, unknown) = s.recipients(&c, t);
        (
            found.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            unknown,
        )
    };
    let s = Subscription::of(&rollout(&[(NOTIFY_ANNOTATION, "ops, audit,,gone")])).unwrap();
    assert_eq!(
        names(&s, Trigger::Aborted),
        (vec!["ops", "audit"], vec!["gone".to_string()])
    );
    assert_eq!(
        names(&s, Trigger::Paused),
        (vec!["audit"], vec!["gone".to_string()]),
        "ops takes only aborted and completed"
    );
    let narrowed = Subscription::of(&rollout(&[
        (NOTIFY_ANNOTATION, "audit"),
        (NOTIFY_ON_ANNOTATION, "aborted"),
    ]))
    .unwrap();
    assert_eq!(names(&narrowed, Trigger::Aborted).0, ["audit"]);
    assert!(names(&narrowed, Trigger::Completed).0.is_empty());
    let e = Subscription::of(&rollout(&[
        (NOTIFY_ANNOTATION, "audit"),
        (NOTIFY_ON_ANNOTATION, "aborted, exploded"),
    ]))
    .unwrap_err();
    assert!(
        e.starts_with("sluice.dev/notify-on: unknown trigger \"exploded\""),
        "{e}"
    );
}

#[test]
fn each_format_makes_its_body() {
    let c = config(
        r#"
- {name: j, url: 'http://x'}
- {name: s, url: 'http://x', format: slack}
- name: t
  url: http://x
  format: template
  contentType: text/plain
  template: "{{ rollout.namespace }}/{{ rollout.name }} {{ trigger }} {{ step.completed }}/{{ step.count }} {{ message | tojson }}"
"#,
    )
    .unwrap();
    let r = rollout(&[]);
    let m = Message::new(&r, &notice(Trigger::Aborted), Some("Degraded".into()));
    let json: serde_json::Value = serde_json::from_str(&c.webhooks["j"].body(&m).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "id": "u-1-aborted-5d8f9c-2-1796205600000",
            "trigger": "aborted",
            "rollout": { "namespace": "shop", "name": "web", "uid": "u-1" },
            "strategy": "canary",
            "revision": "5d8f9c",
            "step": { "completed": 2, "count": 4 },
            "phase": "Degraded",
            "message": "analysis web-5d8f9c-2 of step 3 ended Failed",
            "time": "2026-12-02T10:00:00Z",
        })
    );
    let slack: serde_json::Value =
        serde_json::from_str(&c.webhooks["s"].body(&m).unwrap()).unwrap();
    assert_eq!(
        slack["text"],
        ":x: *shop/web* aborted (revision 5d8f9c, step 2/4): analysis web-5d8f9c-2 of step 3 ended Failed"
    );
    let t = &c.webhooks["t"];
    assert_eq!(t.content_type, "text/plain");
    assert_eq!(
        t.body(&m).unwrap(),
        "shop/web aborted 2/4 \"analysis web-5d8f9c-2 of step 3 ended Failed\""
    );
    let completed = Message::new(&r, &notice(Trigger::Completed), None);
    assert!(
        c.webhooks["s"]
            .body(&completed)
            .unwrap()
            .contains(":white_check_mark: *shop/web* completed"),
    );
}

#[test]
fn a_template_that_runs_away_is_stopped() {
    let e = config(
        "- name: t\n  url: http://x\n  format: template\n  template: '{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}'\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("fuel"), "{e}");
}

async fn attempt_against(status: u16) -> (Attempt, Option<crate::adapters::web::tests::Seen>) {
    let (url, mut seen) = serve(status, "ok").await;
    let headers = [("X-Team".to_string(), "shop".to_string())];
    let a = attempt(
        &WebClient::without_proxy(),
        &Outgoing {
            url: &format!("{url}/hook"),
            headers: &headers,
            content_type: "application/json",
            body: "{\"text\":\"hi\"}",
            timeout: Duration::from_secs(5),
            tls: WebTls::Platform,
        },
    )
    .await;
    (a, seen.try_recv().ok())
}

#[tokio::test]
async fn an_attempt_posts_the_body_and_classifies_the_answer() {
    let (a, seen) = attempt_against(200).await;
    assert_eq!(a, Attempt::Delivered, "a 2xx delivers, whatever its body");
    let seen = seen.expect("the server saw the request");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/hook");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_eq!(seen.headers["x-team"], "shop");
    assert_eq!(seen.body, "{\"text\":\"hi\"}");

    for status in [500, 503, 429, 408] {
        let (a, _) = attempt_against(status).await;
        assert!(
            matches!(&a, Attempt::Retry(r) if r.starts_with(&format!("HTTP {status}"))),
            "{status}: {a:?}"
        );
    }
    for status in [400, 403, 404] {
        let (a, _) = attempt_against(status).await;
        assert!(
            matches!(&a, Attempt::Refused(r) if r.starts_with(&format!("HTTP {status}"))),
            "{status}: {a:?}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_webhook_is_retried_and_a_bad_url_refused_without_naming_it() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = WebClient::without_proxy();
    let send = |url: String| {
        let client = client.clone();
        async move {
            attempt(
                &client,
                &Outgoing {
                    url: &url,
                    headers: &[],
                    content_type: "application/json",
                    body: "{}",
                    timeout: Duration::from_secs(5),
                    tls: WebTls::Platform,
                },
            )
            .await
        }
    };
    let a = send(format!(
        "http://127.0.0.1:{port}/services/T0/B0/secret-token"
    ))
    .await;
    match &a {
        Attempt::Retry(reason) => {
            assert!(reason.contains("cannot connect"), "{reason}");
            assert!(
                !reason.contains("secret-token"),
                "the URL is a credential: {reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    let a = send("hooks.slack.com/services/T0/B0/secret-token".into()).await;
    assert!(
        matches!(&a, Attempt::Refused(r) if !r.contains("secret-token")),
        "{a:?}"
    );
}
