//! The dashboard end to end: a real `sluice-controller` serving it (`--dashboard-addr`),
//! real ServiceAccount tokens checked by the real apiserver's TokenReview and RBAC, and,
//! for the browser test, Debian's headless Chromium driven through chromedriver.
//!
//! Screenshots go to `e2e/artifacts/dashboard/` (printed by the test).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Event, ServiceAccount};
use kube::Api;
use kube::api::{ListParams, PostParams};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use serde_json::json;
use sluice_api::Rollout;
use sluice_api::rollout::RolloutPhase;
use sluice_e2e::rollout_env::{Env, hashes};
use sluice_e2e::{kubeconfig_path, repo_root, wait_for};

const WAIT: Duration = Duration::from_secs(60);

/// A namespace with a controller serving the dashboard on a free loopback port, a canary
/// Rollout `web` paused at its indefinite pause (step index 1), and two ServiceAccounts:
/// `alice` may view and act on rollouts in the namespace, `bob` may do nothing.
struct Dash {
    env: Env,
    url: String,
    alice: String,
    bob: String,
}

async fn dash(prefix: &str) -> Result<Dash> {
    let env = Env::with_controller_args(prefix, &["--dashboard-addr", "127.0.0.1:0"]).await?;
    let line = env
        .controller
        .as_ref()
        .context("controller")?
        .wait_log("dashboard listening", WAIT)
        .await?;
    let url = line
        .split("url=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .context("no url= in the dashboard's log line")?
        .trim_end_matches('/')
        .to_string();

    for sa in ["alice", "bob"] {
        env.apply(
            json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": sa } }),
        )
        .await?;
    }
    env.apply(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": "rollout-operator" },
        "rules": [
            { "apiGroups": ["sluice.dev"], "resources": ["rollouts"], "verbs": ["get", "list", "watch", "patch"] },
            { "apiGroups": ["sluice.dev"], "resources": ["rollouts/status"], "verbs": ["patch"] },
        ],
    }))
    .await?;
    env.apply(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "alice-operates-rollouts" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rollout-operator" },
        "subjects": [{ "kind": "ServiceAccount", "name": "alice", "namespace": env.ns() }],
    }))
    .await?;
    let alice = token(&env, "alice").await?;
    let bob = token(&env, "bob").await?;

    env.services(&["web-stable", "web-canary"]).await?;
    env.rollout(
        3,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "steps": [{ "setWeight": 20 }, { "pause": {} }, { "setWeight": 50 }, { "pause": {} }, { "setWeight": 100 }],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    env.set_version("v2").await?;
    env.wait_step(1, RolloutPhase::Paused).await?;
    Ok(Dash {
        env,
        url,
        alice,
        bob,
    })
}

async fn token(env: &Env, sa: &str) -> Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(env.client.clone(), env.ns());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    // The ServiceAccount was just applied; its token can lag a moment behind.
    let mut last = None;
    for _ in 0..50 {
        match api
            .create_token_request(sa, &PostParams::default(), &request)
            .await
        {
            Ok(t) => {
                return t
                    .status
                    .and_then(|s| s.token)
                    .context("no token in the TokenRequest");
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("no token for {sa}: {last:?}")
}

fn http() -> Result<reqwest::Client> {
    // Redirects are part of what is tested: never follow them.
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()?)
}

/// The step index and whether the rollout still waits at a pause.
async fn position(env: &Env) -> Result<(Option<i32>, usize, bool)> {
    let r: Rollout = env.rollouts().get("web").await?;
    let s = r.status.unwrap_or_default();
    Ok((s.current_step_index, s.pause_conditions.len(), s.abort))
}

#[tokio::test]
async fn http_sign_in_rbac_csrf_and_read_only_against_the_real_apiserver() -> Result<()> {
    let d = dash("dash-http").await?;
    let (env, url) = (&d.env, d.url.as_str());
    let http = http()?;
    let detail = format!("{url}/rollouts/{}/web", env.ns());
    let promote = format!("{detail}/actions/promote");
    let before = position(env).await?;
    assert_eq!(before, (Some(1), 1, false));

    // No credentials: 401 and the sign-in form.
    let r = http.get(format!("{url}/")).send().await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await?.contains("name=\"token\""));
    let r = http.post(&promote).send().await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .get(format!("{url}/"))
        .header(AUTHORIZATION, "Bearer not-a-token")
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A valid token without RBAC: 403 for views and actions; the Rollout is unchanged.
    let bob = format!("Bearer {}", d.bob);
    let r = http
        .get(format!("{url}/"))
        .header(AUTHORIZATION, &bob)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http.get(&detail).header(AUTHORIZATION, &bob).send().await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    for action in ["promote", "abort", "promote-full", "pause"] {
        let r = http
            .post(format!("{detail}/actions/{action}"))
            .header(AUTHORIZATION, &bob)
            .send()
            .await?;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{action}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        position(env).await?,
        before,
        "bob's actions changed the rollout"
    );
    assert!(!env.rollouts().get("web").await?.spec.paused);

    // Alice signs in through the form.
    let r = http
        .post(format!("{url}/login"))
        .header(ORIGIN, url)
        .form(&[
            ("token", d.alice.as_str()),
            ("next", &format!("/rollouts/{}/web", env.ns())),
        ])
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set_cookie = r.headers()[SET_COOKIE].to_str()?.to_string();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_string();
    let page = http.get(&detail).header(COOKIE, &cookie).send().await?;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await?;
    assert!(
        page.contains("aria-current=\"step\" data-step=\"1\""),
        "{page}"
    );
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .context("CSRF token in the page")?
        .to_string();

    // Cross-origin and token-less POSTs are refused, and change nothing.
    let r = http
        .post(&promote)
        .header(COOKIE, &cookie)
        .header(ORIGIN, "http://evil.example")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(&promote)
        .header(COOKIE, &cookie)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(&promote)
        .header(COOKIE, &cookie)
        .header(ORIGIN, url)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        position(env).await?,
        before,
        "a refused POST changed the rollout"
    );

    // Same origin, with the token: the action takes effect in the apiserver.
    let r = http
        .post(&promote)
        .header(COOKIE, &cookie)
        .header(ORIGIN, url)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[LOCATION].to_str()?,
        format!("/rollouts/{}/web", env.ns())
    );
    env.wait_step(3, RolloutPhase::Paused).await?;
    // The apiserver's audit log names the dashboard; this Event names the person.
    let events: Api<Event> = Api::namespaced(env.client.clone(), env.ns());
    let alice_name = format!("system:serviceaccount:{}:alice", env.ns());
    wait_for("a DashboardAction Event naming alice", WAIT, || async {
        let list = events
            .list(&ListParams::default().fields("reason=DashboardAction"))
            .await?;
        Ok(list.items.iter().any(|e| {
            e.involved_object.name.as_deref() == Some("web")
                && e.message.as_deref().is_some_and(|m| {
                    m.contains("promoted past the current step") && m.contains(&alice_name)
                })
        }))
    })
    .await?;
    let page = http
        .get(&detail)
        .header(COOKIE, &cookie)
        .send()
        .await?
        .text()
        .await?;
    assert!(
        page.contains("promoted past the current step"),
        "confirmation: {page}"
    );

    // The read-only dashboard (kubectl sluice dashboard --read-only) refuses actions.
    let ro = StandaloneDashboard::start(&["--read-only"])?;
    let ro_url = ro.wait_url().await?;
    let alice = format!("Bearer {}", d.alice);
    // Just started, it shows "Loading" until its caches have listed once.
    let row = format!("data-rollout=\"{}/web\"", env.ns());
    wait_for(
        "the read-only dashboard to list the rollout",
        WAIT,
        || async {
            let r = http
                .get(format!("{ro_url}/?ns={}", env.ns()))
                .header(AUTHORIZATION, &alice)
                .send()
                .await?;
            anyhow::ensure!(r.status() == StatusCode::OK, "status {}", r.status());
            Ok(r.text().await?.contains(&row))
        },
    )
    .await?;
    let r = http
        .post(format!("{ro_url}/rollouts/{}/web/actions/abort", env.ns()))
        .header(AUTHORIZATION, &alice)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await?.contains("read-only"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !position(env).await?.2,
        "the read-only dashboard aborted the rollout"
    );

    // The same request to the full dashboard aborts.
    let r = http
        .post(format!("{detail}/actions/abort"))
        .header(AUTHORIZATION, &alice)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    env.wait("aborted", |r| r.status.as_ref().is_some_and(|s| s.abort))
        .await?;
    drop(ro);
    d.env.finish().await
}

/// `kubectl-sluice dashboard` on a free loopback port, killed when dropped.
struct StandaloneDashboard {
    child: Child,
    log: PathBuf,
}

impl StandaloneDashboard {
    fn start(extra: &[&str]) -> Result<Self> {
        let bin =
            PathBuf::from(std::env::var("SLUICE_CONTROLLER_BIN")?).with_file_name("kubectl-sluice");
        let dir = repo_root().join("e2e/artifacts");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join(format!("standalone-dashboard-{}.log", std::process::id()));
        let child = Command::new(bin)
            .arg("--kubeconfig")
            .arg(kubeconfig_path())
            .args(["dashboard", "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::null())
            .spawn()
            .context("starting kubectl-sluice dashboard")?;
        Ok(StandaloneDashboard { child, log })
    }

    async fn wait_url(&self) -> Result<String> {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(url) = text
                .lines()
                .find_map(|l| l.strip_prefix("sluice dashboard: "))
            {
                return Ok(url.trim_end_matches('/').to_string());
            }
            if start.elapsed() > WAIT {
                bail!("kubectl sluice dashboard printed no URL: {text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for StandaloneDashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver on a free port, killed when dropped, with a Chromium session.
struct Driver {
    child: Child,
    _profile: TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn browser() -> Result<(Driver, Browser)> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context(
            "starting /usr/bin/chromedriver (apt-get install chromium-driver; make deps does)",
        )?;
    let profile = TempDir(
        std::env::temp_dir().join(format!("sluice-chromium-{}-{port}", std::process::id())),
    );
    std::fs::create_dir_all(&profile.0)?;
    let driver = Driver {
        child,
        _profile: profile,
    };
    let webdriver = format!("http://127.0.0.1:{port}");
    wait_for(
        "chromedriver to listen",
        Duration::from_secs(20),
        || async { Ok(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()) },
    )
    .await?;
    let mut caps = serde_json::Map::new();
    // Without these flags Chromium on a machine with no internet stalls on first-run,
    // component and sync traffic; as root it needs --no-sandbox.
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1100",
                format!("--user-data-dir={}", driver._profile.0.display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&webdriver)
        .await
        .context("opening a Chromium session through chromedriver")?;
    Ok((driver, client))
}

fn artifacts() -> Result<PathBuf> {
    let dir = repo_root().join("e2e/artifacts/dashboard");
    std::fs::create_dir_all(&dir)?;
    Ok(dir.canonicalize()?)
}

async fn screenshot(b: &Browser, name: &str) -> Result<PathBuf> {
    let path = artifacts()?.join(name);
    std::fs::write(&path, b.screenshot().await?)?;
    println!("screenshot: {}", path.display());
    Ok(path)
}

/// Polls `check` in the page until it returns true.
async fn wait_page<F, Fut>(what: &str, check: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    wait_for(what, WAIT, check).await
}

// Live updates replace the elements inside #live at any moment, so a WebDriver element
// reference found there can go stale before it is used. Values are therefore read in one
// script call, and clicks that race an update are retried.

/// The text of the first element matching `css`, read atomically.
async fn text_of(b: &Browser, css: &str) -> Result<Option<String>> {
    let v = b
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            vec![json!(css)],
        )
        .await?;
    Ok(v.as_str().map(str::to_string))
}

/// An attribute of the first element matching `css`, read atomically.
async fn attr_of(b: &Browser, css: &str, attr: &str) -> Result<Option<String>> {
    let v = b
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
            vec![json!(css), json!(attr)],
        )
        .await?;
    Ok(v.as_str().map(str::to_string))
}

async fn click(b: &Browser, css: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..20 {
        let attempt = async { b.find(Locator::Css(css)).await?.click().await };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("could not click {css}: {last:?}")
}

#[tokio::test]
async fn browser_signs_in_and_promotes_and_the_page_follows_live() -> Result<()> {
    let d = dash("dash-ui").await?;
    let (env, url) = (&d.env, d.url.as_str());
    let (_driver, b) = browser().await?;
    let result = async {
        // The sign-in form.
        b.goto(&format!("{url}/")).await?;
        let token = b.wait().for_element(Locator::Css("textarea#token")).await?;
        token.send_keys(&d.alice).await?;
        b.find(Locator::Css("form[action='/login'] button[type=submit]"))
            .await?
            .click()
            .await?;

        // The overview lists the rollout.
        let row = format!("tr[data-rollout='{}/web']", env.ns());
        b.wait().for_element(Locator::Css(&row)).await?;
        let text = text_of(&b, &row).await?.unwrap_or_default();
        assert!(
            text.contains("Paused") && text.contains("2/5"),
            "overview row: {text}"
        );
        screenshot(&b, "overview.png").await?;

        // The detail page shows the current step.
        click(&b, &format!("{row} a")).await?;
        b.wait()
            .for_element(Locator::Css("li[aria-current=step]"))
            .await?;
        let current = "li[aria-current=step]";
        assert_eq!(
            attr_of(&b, current, "data-step").await?.as_deref(),
            Some("1")
        );
        let text = text_of(&b, current).await?.unwrap_or_default();
        assert!(
            text.contains("Pause until promoted"),
            "current step: {text}"
        );
        // The live stream is connected before acting.
        wait_page("the live stream to connect", || async {
            Ok(text_of(&b, "#live-status").await?.as_deref() == Some("live"))
        })
        .await?;
        screenshot(&b, "detail.png").await?;

        // Click Promote; mark the page so that a reload would be noticed.
        b.execute("window.sluiceSamePage = 'yes';", vec![]).await?;
        click(&b, "form[data-action=promote] button").await?;

        // The step advances in the apiserver...
        env.wait_step(3, RolloutPhase::Paused).await?;
        // ...and the page follows through Server-Sent Events, without a reload.
        wait_page("the page to show step 4 as current", || async {
            Ok(attr_of(&b, "li[aria-current=step]", "data-step")
                .await?
                .as_deref()
                == Some("3"))
        })
        .await?;
        let same = b
            .execute("return window.sluiceSamePage || null;", vec![])
            .await?;
        assert_eq!(same, json!("yes"), "the page was reloaded");
        let flash = text_of(&b, "#flash").await?.unwrap_or_default();
        assert!(
            flash.contains("promoted past the current step"),
            "confirmation: {flash}"
        );
        assert_eq!(text_of(&b, "#step").await?.as_deref(), Some("4/5"));
        screenshot(&b, "detail-after-promote.png").await?;

        // Roll back from the undo form to revision 1, the stable one: its template goes
        // back into spec.template, and the rollout is Healthy on it again.
        let (_, stable) = hashes(&env.rollouts().get("web").await?);
        b.execute("window.confirm = function () { return true; };", vec![])
            .await?;
        b.find(Locator::Css("#undo-revision option[value='1']"))
            .await?
            .click()
            .await?;
        click(&b, "form[data-action=undo] button").await?;
        wait_page("the undo confirmation", || async {
            Ok(text_of(&b, "#flash")
                .await?
                .is_some_and(|f| f.contains("rolled back to revision 1")))
        })
        .await?;
        let back = env
            .wait("Healthy on the stable revision again", |r| {
                let (current, now_stable) = hashes(r);
                r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Healthy)
                    && current == stable
                    && now_stable == stable
            })
            .await?;
        let version = back
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get("version").cloned());
        assert_eq!(version.as_deref(), Some("v1"), "the template put back");
        wait_page("the page to show the rollout Healthy", || async {
            Ok(text_of(&b, "#live")
                .await?
                .is_some_and(|t| t.contains("Healthy")))
        })
        .await?;
        screenshot(&b, "detail-after-undo.png").await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        let _ = screenshot(&b, "failure.png").await;
    }
    let _ = b.close().await;
    result?;
    println!("dashboard screenshots in {}", artifacts()?.display());
    d.env.finish().await
}
