//! Notifications: the webhooks an operator names in the notifications ConfigMap, who
//! subscribes to what (a Rollout's annotations), the body each format makes of a
//! [`Notice`], and one attempt at delivering it. Queues and retries are the runtime's
//! (`runtime::notifier`).
//!
//! The ConfigMap's `webhooks` key holds a YAML list:
//!
//! ```yaml
//! - name: ops                # what `sluice.dev/notify` names
//!   format: slack            # json (default) | slack | template
//!   urlFrom: {secretKeyRef: {name: sluice-notifications, key: slack-url}}
//!   triggers: [aborted, analysis-failed, completed]   # default: all
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::SecretKeySelector;
use serde::{Deserialize, Serialize};
use sluice_api::labels::{NOTIFY_ANNOTATION, NOTIFY_ON_ANNOTATION};
use sluice_api::rollout::Rollout;

use super::web::{WebBody, WebClient, WebError, WebRequest, WebTls};
use crate::core::notice::{Notice, Trigger};

/// The ConfigMap key that lists the webhooks.
pub const WEBHOOKS_KEY: &str = "webhooks";

/// A webhook's time limit when it sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest template output accepted, so a runaway loop cannot fill memory.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// How a webhook's body is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Format {
    /// [`Message`] as JSON.
    #[default]
    Json,
    /// A Slack-compatible incoming-webhook body: `{"text": "..."}` (Mattermost, Rocket.Chat
    /// and Discord's `/slack` endpoints take it too).
    Slack,
    /// The webhook's `template` (MiniJinja, over the fields of [`Message`]).
    Template,
}

/// A value given inline or read from a Secret in the ConfigMap's namespace, when sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Inline(String),
    Secret(SecretKeySelector),
}

/// One webhook, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub name: String,
    pub url: Value,
    pub format: Format,
    template: Option<String>,
    pub content_type: String,
    pub headers: Vec<(String, Value)>,
    /// What it receives (every trigger when its config lists none).
    pub triggers: BTreeSet<Trigger>,
    pub timeout: Duration,
}

/// The notifications configuration: the webhooks by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub webhooks: BTreeMap<String, Webhook>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhookSpec {
    name: String,
    url: Option<String>,
    url_from: Option<ValueFrom>,
    #[serde(default)]
    format: Format,
    template: Option<String>,
    content_type: Option<String>,
    #[serde(default)]
    headers: Vec<HeaderSpec>,
    triggers: Option<Vec<String>>,
    timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ValueFrom {
    secret_key_ref: SecretKeySelector,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HeaderSpec {
    name: String,
    value: Option<String>,
    value_from: Option<ValueFrom>,
}

/// Why a configuration cannot be used; the text names the webhook and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads the ConfigMap's data. No `webhooks` key is no webhook; anything wrong in it
    /// refuses the whole configuration, so a typo never silently drops a webhook.
    pub fn parse(data: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let err = |m: String| ConfigError(m);
        if let Some(unknown) = data.keys().find(|k| *k != WEBHOOKS_KEY) {
            return Err(err(format!(
                "unknown key {unknown:?} (the webhooks go under {WEBHOOKS_KEY:?})"
            )));
        }
        let Some(text) = data.get(WEBHOOKS_KEY) else {
            return Ok(Config::default());
        };
        let specs: Vec<WebhookSpec> = match serde_yaml::from_str::<Option<Vec<WebhookSpec>>>(text) {
            Ok(specs) => specs.unwrap_or_default(),
            Err(e) => return Err(err(format!("{WEBHOOKS_KEY}: {e}"))),
        };
        let mut webhooks = BTreeMap::new();
        for spec in specs {
            let webhook = Webhook::check(spec)?;
            if webhooks.contains_key(&webhook.name) {
                return Err(err(format!("webhook {:?} is listed twice", webhook.name)));
            }
            webhooks.insert(webhook.name.clone(), webhook);
        }
        Ok(Config { webhooks })
    }
}

impl Webhook {
    fn check(spec: WebhookSpec) -> Result<Webhook, ConfigError> {
        let name = spec.name;
        let err = |m: String| ConfigError(format!("webhook {name:?}: {m}"));
        if !is_dns_label(&name) {
            return Err(err(
                "name must be a DNS label (lowercase letters, digits and '-', at most 63), \
                 as sluice.dev/notify lists it"
                    .into(),
            ));
        }
        let url = match (spec.url, spec.url_from) {
            (Some(url), None) => {
                check_url(&url).map_err(err)?;
                Value::Inline(url)
            }
            (None, Some(from)) => Value::Secret(from.secret_key_ref),
            _ => return Err(err("set exactly one of url and urlFrom".into())),
        };
        let template = match (spec.format, spec.template) {
            (Format::Template, Some(template)) => {
                // Rendered once against a sample, so an unknown field or a syntax error is
                // refused when the configuration is read, not at the first abort.
                render_template(&template, &Message::sample()).map_err(|e| err(e.to_string()))?;
                Some(template)
            }
            (Format::Template, None) => {
                return Err(err("format template needs a template".into()));
            }
            (_, Some(_)) => return Err(err("template is only read with format: template".into())),
            (_, None) => None,
        };
        // A template may make any text, but chat and event APIs take JSON.
        let content_type = spec
            .content_type
            .unwrap_or_else(|| "application/json".into());
        let mut headers = Vec::new();
        for h in spec.headers {
            let value = match (h.value, h.value_from) {
                (Some(v), None) => Value::Inline(v),
                (None, Some(from)) => Value::Secret(from.secret_key_ref),
                _ => {
                    return Err(err(format!(
                        "header {:?}: set exactly one of value and valueFrom",
                        h.name
                    )));
                }
            };
            if reqwest::header::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
                return Err(err(format!(
                    "header {:?} is not a valid header name",
                    h.name
                )));
            }
            headers.push((h.name, value));
        }
        let triggers = match spec.triggers {
            None => Trigger::ALL.into_iter().collect(),
            Some(names) => parse_triggers(names.iter().map(String::as_str)).map_err(err)?,
        };
        let timeout = match spec.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => humantime::parse_duration(&t)
                .ok()
                .filter(|d| !d.is_zero() && *d <= Duration::from_secs(60))
                .ok_or_else(|| err(format!("timeout {t:?} is not a duration from 1ms to 60s")))?,
        };
        Ok(Webhook {
            name: name.clone(),
            url,
            format: spec.format,
            template,
            content_type,
            headers,
            triggers,
            timeout,
        })
    }

    /// The body this webhook sends for `message`.
    pub fn body(&self, message: &Message) -> Result<String, String> {
        match self.format {
            Format::Json => serde_json::to_string(message).map_err(|e| e.to_string()),
            Format::Slack => Ok(serde_json::json!({ "text": slack_text(message) }).to_string()),
            Format::Template => render_template(self.template.as_deref().unwrap_or(""), message)
                .map_err(|e| format!("template: {e}")),
        }
    }
}

fn parse_triggers<'a>(names: impl Iterator<Item = &'a str>) -> Result<BTreeSet<Trigger>, String> {
    let mut triggers = BTreeSet::new();
    for name in names {
        let trigger = Trigger::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Trigger::ALL.iter().map(|t| t.name()).collect();
            format!("unknown trigger {name:?} (known: {})", known.join(", "))
        })?;
        triggers.insert(trigger);
    }
    Ok(triggers)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// An inline URL must be absolute http(s); one from a Secret is checked when sent.
pub fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err("url must be an absolute http:// or https:// URL".into()),
        Err(e) => Err(format!("url is not a URL: {e}")),
    }
}

/// Who a Rollout's notices go to: the webhooks `sluice.dev/notify` names that take the
/// trigger, narrowed by `sluice.dev/notify-on` when set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    pub webhooks: Vec<String>,
    /// None: whatever each webhook takes.
    pub only: Option<BTreeSet<Trigger>>,
}

impl Subscription {
    /// The Rollout's subscription; an error says what in its annotations is wrong.
    pub fn of(rollout: &Rollout) -> Result<Subscription, String> {
        let annotations = rollout.metadata.annotations.as_ref();
        let list = |key: &str| -> Vec<String> {
            annotations
                .and_then(|a| a.get(key))
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let webhooks = list(NOTIFY_ANNOTATION);
        let only = match annotations.and_then(|a| a.get(NOTIFY_ON_ANNOTATION)) {
            None => None,
            Some(_) => Some(
                parse_triggers(list(NOTIFY_ON_ANNOTATION).iter().map(String::as_str))
                    .map_err(|e| format!("{NOTIFY_ON_ANNOTATION}: {e}"))?,
            ),
        };
        Ok(Subscription { webhooks, only })
    }

    /// The webhooks of `config` that receive `trigger`, and the names that `config` does
    /// not know.
    pub fn recipients<'c>(
        &self,
        config: &'c Config,
        trigger: Trigger,
    ) -> (Vec<&'c Webhook>, Vec<String>) {
        if self
            .only
            .as_ref()
            .is_some_and(|only| !only.contains(&trigger))
        {
            return (Vec::new(), Vec::new());
        }
        let mut found = Vec::new();
        let mut unknown = Vec::new();
        for name in &self.webhooks {
            match config.webhooks.get(name) {
                Some(w) if w.triggers.contains(&trigger) => found.push(w),
                Some(_) => {}
                None => unknown.push(name.clone()),
            }
        }
        (found, unknown)
    }
}

/// What a notice says, as the `json` format sends it and templates see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// The same for every attempt at delivering this notice: receivers drop repeats by it.
    pub id: String,
    pub trigger: &'static str,
    pub rollout: RolloutRef,
    pub strategy: &'static str,
    pub revision: String,
    pub step: Option<Step>,
    pub phase: Option<String>,
    pub message: String,
    /// RFC 3339.
    pub time: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub completed: u32,
    pub count: u32,
}

impl Message {
    /// The message of `notice` about `rollout`, whose status is the plan's.
    pub fn new(rollout: &Rollout, notice: &Notice, phase: Option<String>) -> Message {
        let uid = rollout.metadata.uid.clone().unwrap_or_default();
        Message {
            id: format!("{uid}-{}", notice.key()),
            trigger: notice.trigger.name(),
            rollout: RolloutRef {
                namespace: rollout.metadata.namespace.clone().unwrap_or_default(),
                name: rollout.metadata.name.clone().unwrap_or_default(),
                uid,
            },
            strategy: if rollout.spec.strategy.blue_green.is_some() {
                "blueGreen"
            } else {
                "canary"
            },
            revision: notice.revision.clone(),
            step: notice.step.map(|s| Step {
                completed: s.completed,
                count: s.count,
            }),
            phase,
            message: notice.message.clone(),
            time: notice.at.to_string(),
        }
    }

    /// What a template is checked against when the configuration is read.
    fn sample() -> Message {
        Message {
            id: "uid-aborted-abc-1-0".into(),
            trigger: Trigger::Aborted.name(),
            rollout: RolloutRef {
                namespace: "default".into(),
                name: "web".into(),
                uid: "uid".into(),
            },
            strategy: "canary",
            revision: "abc".into(),
            step: Some(Step {
                completed: 1,
                count: 4,
            }),
            phase: Some("Degraded".into()),
            message: "rollout aborted".into(),
            time: "2026-01-01T00:00:00Z".into(),
        }
    }
}

/// One line for a chat: an icon, the Rollout, what happened and where.
fn slack_text(m: &Message) -> String {
    let trigger = Trigger::parse(m.trigger);
    let icon = match trigger {
        Some(t) if t.is_failure() => ":x:",
        Some(Trigger::Completed) => ":white_check_mark:",
        Some(Trigger::Promoted) => ":rocket:",
        Some(Trigger::Paused) => ":double_vertical_bar:",
        _ => ":arrow_forward:",
    };
    let step = m
        .step
        .as_ref()
        .filter(|s| s.count > 0)
        .map(|s| format!(", step {}/{}", s.completed, s.count))
        .unwrap_or_default();
    format!(
        "{icon} *{}/{}* {} (revision {}{step}): {}",
        m.rollout.namespace,
        m.rollout.name,
        m.trigger.replace('-', " "),
        m.revision,
        m.message
    )
}

fn render_template(template: &str, message: &Message) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    // A misspelt field is an error, not an empty string in the middle of a message.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_fuel(Some(100_000));
    let body = env.render_str(template, minijinja::value::Serde(message))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("the body is longer than {} KiB", MAX_BODY_BYTES / 1024),
        ));
    }
    Ok(body)
}

/// How one attempt at a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth trying again later (a timeout, no connection, 408, 429, 5xx).
    Retry(String),
    /// Trying again cannot help (another 4xx, a bad URL).
    Refused(String),
}

/// A delivery with its URL and headers resolved.
pub struct Outgoing<'a> {
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub content_type: &'a str,
    pub body: &'a str,
    pub timeout: Duration,
    /// How the server's certificate is checked (a gate may name its CA).
    pub tls: WebTls<'a>,
}

/// POSTs `outgoing` once. The reasons never name the URL: a chat webhook's path is its
/// credential.
pub async fn attempt(client: &WebClient, outgoing: &Outgoing<'_>) -> Attempt {
    if let Err(e) = check_url(outgoing.url) {
        return Attempt::Refused(e);
    }
    let mut headers = outgoing.headers.to_vec();
    headers.push(("Content-Type".into(), outgoing.content_type.into()));
    let request = WebRequest {
        url: outgoing.url,
        method: sluice_api::analysis::WebMethod::Post,
        headers: &headers,
        body: Some(WebBody::Text(outgoing.body.into())),
        timeout: outgoing.timeout,
        tls: outgoing.tls,
    };
    match client.send(&request).await {
        Ok(()) => Attempt::Delivered,
        Err(WebError::Http { status, body, .. }) => {
            let reason = format!("HTTP {status}: {body}");
            if status == 408 || status == 429 || status >= 500 {
                Attempt::Retry(reason)
            } else {
                Attempt::Refused(reason)
            }
        }
        Err(WebError::Timeout { after, .. }) => Attempt::Retry(format!(
            "no answer within {}",
            humantime::format_duration(after)
        )),
        Err(WebError::Transport { reason, .. }) => Attempt::Retry(reason),
        // `send` does not decode the answer.
        Err(e @ WebError::NotJson { .. }) => Attempt::Retry(e.category().into()),
    }
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
