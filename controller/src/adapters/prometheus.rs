//! The Prometheus HTTP API client used to take analysis measurements.
//!
//! One [`PrometheusClient`] is shared by every measurement; each call to
//! [`PrometheusClient::query`] runs one instant query (`/api/v1/query`) or one range query
//! (`/api/v1/query_range`) against the address of the metric's connection, with that
//! connection's headers, bearer token and time limit, and decodes the answer into a
//! [`QueryResult`]. Every failure is a [`PrometheusError`] whose message names the server
//! and says what went wrong in an operator's words; nothing in a response can panic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use super::{BodyError, body_start, error_chain, read_body};

/// Largest body kept in an [`PrometheusError::Http`] message, in characters.
const MAX_ERROR_BODY_CHARS: usize = 500;

/// Largest response body read; a query answering more than this is refused rather than
/// buffered.
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Most series, and most points of a series, shown by [`QueryResult::describe`].
const DESCRIBE_MAX_ITEMS: usize = 10;

/// A client of the Prometheus HTTP API.
///
/// Cheap to clone; clones share one connection pool. TLS uses rustls with the `ring`
/// provider (as kube does) and the platform's certificate verifier.
#[derive(Clone, Debug)]
pub struct PrometheusClient {
    http: reqwest::Client,
}

/// One query to run: everything taken from the metric's spec, already resolved.
#[derive(Clone, Debug)]
pub struct QueryRequest<'a> {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus.monitoring:9090`; a
    /// trailing slash is tolerated.
    pub address: &'a str,
    /// PromQL, with arguments already substituted.
    pub query: &'a str,
    /// Evaluation time of an instant query, or end of a range query's window.
    pub at: Timestamp,
    /// `Some((lookback, step))` runs a range query over `[at - lookback, at]` every `step`;
    /// `None` runs an instant query at `at`.
    pub range: Option<(Duration, Duration)>,
    /// Time limit of the whole request, body included (callers default it to 30s).
    pub timeout: Duration,
    /// Extra HTTP headers, sent as given.
    pub headers: &'a [(String, String)],
    /// Bearer token, sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<&'a str>,
}

/// The decoded `data` of a successful query.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryResult {
    /// A scalar (`resultType: scalar`).
    Scalar(f64),
    /// An instant vector (`resultType: vector`): one sample per series.
    Vector(Vec<Sample>),
    /// A range vector (`resultType: matrix`): a list of points per series.
    Matrix(Vec<Series>),
    /// A string (`resultType: string`).
    String(String),
}

/// One sample of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series' labels, `__name__` included when Prometheus returns it.
    pub labels: BTreeMap<String, String>,
    /// The sample's value (may be NaN or infinite).
    pub value: f64,
}

/// One series of a range vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// `(unix timestamp in seconds, value)` pairs, oldest first.
    pub points: Vec<(f64, f64)>,
}

/// Why a query produced no result. Every variant carries the server's address (with any
/// credentials in it hidden) so the message stands on its own in a condition or an event.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// The server answered with an HTTP error status and a body that is not a Prometheus
    /// error object (e.g. a proxy's error page).
    #[error("prometheus at {address}: HTTP {status}: {body}")]
    Http {
        /// Server address.
        address: String,
        /// HTTP status code.
        status: u16,
        /// Start of the response body (at most about 500 characters).
        body: String,
    },
    /// Prometheus refused or failed the query (`"status": "error"`), e.g. a PromQL syntax
    /// error (`bad_data`) or an evaluation timeout.
    #[error("prometheus at {address}: query failed ({error_type}): {error}")]
    Api {
        /// Server address.
        address: String,
        /// Prometheus' `errorType`, e.g. `bad_data`, `timeout`, `execution`.
        error_type: String,
        /// Prometheus' `error` message.
        error: String,
    },
    /// The response could not be understood: not JSON, not the Prometheus API's shape, or
    /// a result type this client does not handle.
    #[error("prometheus at {address}: unreadable response: {reason}")]
    Decode {
        /// Server address.
        address: String,
        /// What was wrong with it.
        reason: String,
    },
    /// No complete answer arrived within the connection's time limit.
    #[error("prometheus at {address}: query timed out after {}", humantime::format_duration(*.after))]
    Timeout {
        /// Server address.
        address: String,
        /// The time limit that elapsed.
        after: Duration,
    },
    /// The request could not be sent or the response not received: invalid address, DNS
    /// failure, connection refused or reset, TLS failure.
    #[error("prometheus at {address}: {reason}")]
    Transport {
        /// Server address.
        address: String,
        /// What failed.
        reason: String,
    },
}

impl PrometheusError {
    /// A short, stable label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            PrometheusError::Http { .. } => "http",
            PrometheusError::Api { .. } => "api",
            PrometheusError::Decode { .. } => "decode",
            PrometheusError::Timeout { .. } => "timeout",
            PrometheusError::Transport { .. } => "transport",
        }
    }
}

impl PrometheusClient {
    /// A client with rustls (ring provider, platform verifier) for `https` addresses;
    /// proxies from the environment (`HTTPS_PROXY`, `NO_PROXY`, ...) are honoured.
    ///
    /// Fails only if the TLS configuration cannot be built.
    pub fn new() -> Result<Self, PrometheusError> {
        Self::from_builder(reqwest::Client::builder())
    }

    fn from_builder(builder: reqwest::ClientBuilder) -> Result<Self, PrometheusError> {
        let setup_error = |reason: String| PrometheusError::Transport {
            address: "(client setup)".into(),
            reason,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
            .map_err(|e| setup_error(format!("cannot load the TLS certificate verifier: {e}")))?;
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup_error(format!("cannot configure TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let http = builder
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                setup_error(format!("cannot build the HTTP client: {}", error_chain(&e)))
            })?;
        Ok(Self { http })
    }

    /// Runs one query and decodes its result.
    ///
    /// An instant query is `GET {address}/api/v1/query?query=..&time=..`; a range query is
    /// `GET {address}/api/v1/query_range?query=..&start=..&end=..&step=..`, times in unix
    /// seconds. A Prometheus error object is reported as [`PrometheusError::Api`] whatever
    /// the HTTP status; other non-2xx answers as [`PrometheusError::Http`].
    pub async fn query(&self, req: &QueryRequest<'_>) -> Result<QueryResult, PrometheusError> {
        let address = redact(req.address);
        let base = req.address.trim_end_matches('/');
        let at_ms = i128::from(req.at.as_millisecond());
        let (url, params) = match req.range {
            None => (
                format!("{base}/api/v1/query"),
                vec![
                    ("query", req.query.to_owned()),
                    ("time", unix_seconds(at_ms)),
                ],
            ),
            Some((lookback, step)) => {
                let start_ms = at_ms - i128::try_from(lookback.as_millis()).unwrap_or(i128::MAX);
                (
                    format!("{base}/api/v1/query_range"),
                    vec![
                        ("query", req.query.to_owned()),
                        ("start", unix_seconds(start_ms)),
                        ("end", unix_seconds(at_ms)),
                        ("step", seconds(step)),
                    ],
                )
            }
        };

        let mut builder = self.http.get(&url).query(&params).timeout(req.timeout);
        for (key, value) in req.headers {
            builder = builder.header(key.as_str(), value.as_str());
        }
        if let Some(token) = req.bearer_token {
            builder = builder.bearer_auth(token);
        }

        let send_error = |e: reqwest::Error| -> PrometheusError {
            // The message names the (redacted) address already; the full URL could carry
            // credentials and makes the message long.
            let e = e.without_url();
            if e.is_timeout() {
                PrometheusError::Timeout {
                    address: address.clone(),
                    after: req.timeout,
                }
            } else if e.is_builder() {
                PrometheusError::Transport {
                    address: address.clone(),
                    reason: format!(
                        "invalid request (check the address and headers): {}",
                        error_chain(&e)
                    ),
                }
            } else if e.is_connect() {
                PrometheusError::Transport {
                    address: address.clone(),
                    reason: format!("cannot connect: {}", error_chain(&e)),
                }
            } else {
                PrometheusError::Transport {
                    address: address.clone(),
                    reason: format!("request failed: {}", error_chain(&e)),
                }
            }
        };

        let mut response = builder.send().await.map_err(send_error)?;
        let status = response.status();
        let body = match read_body(&mut response, MAX_RESPONSE_BYTES).await {
            Ok(body) => body,
            Err(BodyError::Read(e)) => return Err(send_error(e)),
            Err(BodyError::TooLarge(reason)) => {
                return Err(PrometheusError::Decode { address, reason });
            }
        };
        decode(&address, status.as_u16(), status.is_success(), &body)
    }
}

/// The Prometheus API response envelope.
#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Value,
}

#[derive(Deserialize)]
struct RawSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

#[derive(Deserialize)]
struct RawSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Turns a status and body into a result or an error.
fn decode(
    address: &str,
    status: u16,
    success: bool,
    body: &[u8],
) -> Result<QueryResult, PrometheusError> {
    let decode_error = |reason: String| PrometheusError::Decode {
        address: address.to_owned(),
        reason,
    };
    let envelope = match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) => envelope,
        Err(e) if success => {
            return Err(decode_error(format!(
                "not a Prometheus API response ({e}); body: {}",
                body_start(body, MAX_ERROR_BODY_CHARS)
            )));
        }
        Err(_) => {
            return Err(PrometheusError::Http {
                address: address.to_owned(),
                status,
                body: body_start(body, MAX_ERROR_BODY_CHARS),
            });
        }
    };
    if envelope.status == "error" {
        return Err(PrometheusError::Api {
            address: address.to_owned(),
            error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
            error: envelope
                .error
                .unwrap_or_else(|| "(no error message)".into()),
        });
    }
    if !success {
        return Err(PrometheusError::Http {
            address: address.to_owned(),
            status,
            body: body_start(body, MAX_ERROR_BODY_CHARS),
        });
    }
    if envelope.status != "success" {
        return Err(decode_error(format!(
            "unexpected status {:?}",
            envelope.status
        )));
    }
    let Some(data) = envelope.data else {
        return Err(decode_error("successful response without data".into()));
    };
    let shape_error =
        |e: serde_json::Error| decode_error(format!("malformed {} result: {e}", data.result_type));
    match data.result_type.as_str() {
        "scalar" => {
            let (_, value) = <(f64, String)>::deserialize(&data.result).map_err(shape_error)?;
            Ok(QueryResult::Scalar(
                parse_value(&value).map_err(decode_error)?,
            ))
        }
        "string" => {
            let (_, value) = <(f64, String)>::deserialize(&data.result).map_err(shape_error)?;
            Ok(QueryResult::String(value))
        }
        "vector" => {
            let raw = Vec::<RawSample>::deserialize(&data.result).map_err(shape_error)?;
            let mut samples = Vec::with_capacity(raw.len());
            for sample in raw {
                let Some((_, value)) = sample.value else {
                    return Err(decode_error(format!(
                        "sample of series {} has no float value (native histograms are not \
                         supported; use histogram_quantile or similar)",
                        labels_text(&sample.metric)
                    )));
                };
                samples.push(Sample {
                    labels: sample.metric,
                    value: parse_value(&value).map_err(decode_error)?,
                });
            }
            Ok(QueryResult::Vector(samples))
        }
        "matrix" => {
            let raw = Vec::<RawSeries>::deserialize(&data.result).map_err(shape_error)?;
            let mut series = Vec::with_capacity(raw.len());
            for s in raw {
                let points = s
                    .values
                    .iter()
                    .map(|(ts, value)| parse_value(value).map(|v| (*ts, v)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(decode_error)?;
                series.push(Series {
                    labels: s.metric,
                    points,
                });
            }
            Ok(QueryResult::Matrix(series))
        }
        other => Err(decode_error(format!("unknown result type {other:?}"))),
    }
}

/// Parses a Prometheus sample value: a decimal, `NaN`, `+Inf` or `-Inf`.
fn parse_value(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .map_err(|_| format!("sample value {text:?} is not a number"))
}

impl QueryResult {
    /// A short human rendering, as shown in a measurement's value: `0.993` for a scalar,
    /// `[0.993]` for a vector (`[]` when empty), `[[1, 2], [3]]` for a matrix (long lists
    /// elided), the text of a string. NaN shows as `NaN`, infinities as `+Inf`/`-Inf`.
    pub fn describe(&self) -> String {
        match self {
            QueryResult::Scalar(v) => format_value(*v),
            QueryResult::String(s) => s.clone(),
            QueryResult::Vector(samples) => {
                list(samples.iter().map(|s| format_value(s.value)), samples.len())
            }
            QueryResult::Matrix(series) => list(
                series.iter().map(|s| {
                    list(
                        s.points.iter().map(|(_, v)| format_value(*v)),
                        s.points.len(),
                    )
                }),
                series.len(),
            ),
        }
    }
}

/// `[a, b, ...]`, keeping the first [`DESCRIBE_MAX_ITEMS`] items of `len`.
fn list(items: impl Iterator<Item = String>, len: usize) -> String {
    let mut parts: Vec<String> = items.take(DESCRIBE_MAX_ITEMS).collect();
    if len > DESCRIBE_MAX_ITEMS {
        parts.push(format!("… {} more", len - DESCRIBE_MAX_ITEMS));
    }
    format!("[{}]", parts.join(", "))
}

/// A value the way Prometheus writes it.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

/// `{a="b", c="d"}`.
fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// Milliseconds since the epoch as decimal unix seconds, e.g. `1700000000.250`.
fn unix_seconds(ms: i128) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    format!("{sign}{}.{:03}", ms / 1000, ms % 1000)
}

/// A duration in decimal seconds, e.g. `60` or `0.5`.
fn seconds(d: Duration) -> String {
    let millis = d.subsec_millis();
    if millis == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}.{millis:03}", d.as_secs())
    }
}

/// The address with any `user:password@` hidden, for messages.
fn redact(address: &str) -> String {
    let address = address.trim_end_matches('/');
    let Some(scheme_end) = address.find("://") else {
        return address.to_owned();
    };
    let rest = &address[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &address[..scheme_end + 3], &rest[at + 1..]),
        None => address.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    /// One request as the test server saw it.
    #[derive(Debug)]
    struct Seen {
        method: String,
        path: String,
        params: BTreeMap<String, String>,
        headers: BTreeMap<String, String>,
    }

    /// Serves `status` + `body` to every request on 127.0.0.1, reporting each request.
    async fn serve(status: u16, body: &'static str) -> (String, mpsc::UnboundedReceiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let mut lines = head.split("\r\n");
                    let mut request_line = lines.next().unwrap_or("").split(' ');
                    let method = request_line.next().unwrap_or("").to_owned();
                    let target = request_line.next().unwrap_or("").to_owned();
                    let url = reqwest::Url::parse(&format!("http://server{target}")).unwrap();
                    let headers = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let _ = tx.send(Seen {
                        method,
                        path: url.path().to_owned(),
                        params: url.query_pairs().into_owned().collect(),
                        headers,
                    });
                    let response = format!(
                        "HTTP/1.1 {status} Canned\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        (address, rx)
    }

    fn client() -> PrometheusClient {
        PrometheusClient::from_builder(reqwest::Client::builder().no_proxy()).unwrap()
    }

    fn at() -> Timestamp {
        // 2023-11-14T22:13:20.250Z
        Timestamp::from_millisecond(1_700_000_000_250).unwrap()
    }

    fn instant<'a>(address: &'a str, query: &'a str) -> QueryRequest<'a> {
        QueryRequest {
            address,
            query,
            at: at(),
            range: None,
            timeout: Duration::from_secs(5),
            headers: &[],
            bearer_token: None,
        }
    }

    const VECTOR: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"__name__":"up","job":"a"},"value":[1700000000.25,"0.993"]},
        {"metric":{"job":"b"},"value":[1700000000.25,"NaN"]},
        {"metric":{"job":"c"},"value":[1700000000.25,"+Inf"]},
        {"metric":{},"value":[1700000000.25,"-Inf"]}]}}"#;

    #[tokio::test]
    async fn instant_query_sends_path_params_headers_and_token() {
        let (address, mut seen) = serve(200, VECTOR).await;
        let headers = vec![
            ("X-Scope-OrgID".to_owned(), "tenant-1".to_owned()),
            ("X-Extra".to_owned(), "two words".to_owned()),
        ];
        let with_slash = format!("{address}/");
        let req = QueryRequest {
            headers: &headers,
            bearer_token: Some("s3cret"),
            ..instant(&with_slash, r#"sum(rate(x{app="a b"}[5m])) / 2 + 1"#)
        };
        client().query(&req).await.unwrap();
        let seen = seen.recv().await.unwrap();
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.path, "/api/v1/query");
        assert_eq!(
            seen.params.get("query").map(String::as_str),
            Some(r#"sum(rate(x{app="a b"}[5m])) / 2 + 1"#)
        );
        assert_eq!(
            seen.params.get("time").map(String::as_str),
            Some("1700000000.250")
        );
        assert_eq!(seen.params.len(), 2, "{:?}", seen.params);
        assert_eq!(
            seen.headers.get("x-scope-orgid").map(String::as_str),
            Some("tenant-1")
        );
        assert_eq!(
            seen.headers.get("x-extra").map(String::as_str),
            Some("two words")
        );
        assert_eq!(
            seen.headers.get("authorization").map(String::as_str),
            Some("Bearer s3cret")
        );
    }

    #[tokio::test]
    async fn no_token_sends_no_authorization() {
        let (address, mut seen) = serve(200, VECTOR).await;
        client().query(&instant(&address, "up")).await.unwrap();
        let seen = seen.recv().await.unwrap();
        assert!(!seen.headers.contains_key("authorization"), "{seen:?}");
    }

    #[tokio::test]
    async fn range_query_sends_window_and_step() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"job":"a"},"values":[[1700000000,"1"],[1700000060.5,"NaN"],[1700000120,"+Inf"]]},
            {"metric":{"job":"b"},"values":[]}]}}"#;
        let (address, mut seen) = serve(200, body).await;
        let req = QueryRequest {
            range: Some((Duration::from_secs(600), Duration::from_millis(30_500))),
            ..instant(&address, "up")
        };
        let result = client().query(&req).await.unwrap();
        let seen = seen.recv().await.unwrap();
        assert_eq!(seen.path, "/api/v1/query_range");
        let param = |k: &str| seen.params.get(k).map(String::as_str);
        assert_eq!(param("query"), Some("up"));
        assert_eq!(param("start"), Some("1699999400.250"));
        assert_eq!(param("end"), Some("1700000000.250"));
        assert_eq!(param("step"), Some("30.500"));
        assert_eq!(param("time"), None);

        let QueryResult::Matrix(series) = &result else {
            panic!("not a matrix: {result:?}");
        };
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels.get("job").map(String::as_str), Some("a"));
        assert_eq!(series[0].points.len(), 3);
        assert_eq!(series[0].points[0], (1_700_000_000.0, 1.0));
        assert_eq!(series[0].points[1].0, 1_700_000_060.5);
        assert!(series[0].points[1].1.is_nan());
        assert_eq!(series[0].points[2].1, f64::INFINITY);
        assert!(series[1].points.is_empty());
        assert_eq!(result.describe(), "[[1, NaN, +Inf], []]");
    }

    #[tokio::test]
    async fn whole_second_step_is_an_integer() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        let (address, mut seen) = serve(200, body).await;
        let req = QueryRequest {
            range: Some((Duration::from_secs(300), Duration::from_secs(60))),
            ..instant(&address, "up")
        };
        let result = client().query(&req).await.unwrap();
        let seen = seen.recv().await.unwrap();
        assert_eq!(seen.params.get("step").map(String::as_str), Some("60"));
        assert_eq!(result, QueryResult::Matrix(vec![]));
        assert_eq!(result.describe(), "[]");
    }

    #[tokio::test]
    async fn parses_vector_with_nan_and_infinities() {
        let (address, _seen) = serve(200, VECTOR).await;
        let result = client().query(&instant(&address, "up")).await.unwrap();
        let QueryResult::Vector(samples) = &result else {
            panic!("not a vector: {result:?}");
        };
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].value, 0.993);
        assert_eq!(
            samples[0].labels,
            BTreeMap::from([
                ("__name__".to_owned(), "up".to_owned()),
                ("job".to_owned(), "a".to_owned())
            ])
        );
        assert!(samples[1].value.is_nan());
        assert_eq!(samples[2].value, f64::INFINITY);
        assert_eq!(samples[3].value, f64::NEG_INFINITY);
        assert!(samples[3].labels.is_empty());
        assert_eq!(result.describe(), "[0.993, NaN, +Inf, -Inf]");
    }

    #[tokio::test]
    async fn parses_empty_vector() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        let (address, _seen) = serve(200, body).await;
        let result = client().query(&instant(&address, "up")).await.unwrap();
        assert_eq!(result, QueryResult::Vector(vec![]));
        assert_eq!(result.describe(), "[]");
    }

    #[tokio::test]
    async fn parses_scalar() {
        let body =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.25,"0.5"]}}"#;
        let (address, _seen) = serve(200, body).await;
        let result = client().query(&instant(&address, "0.5")).await.unwrap();
        assert_eq!(result, QueryResult::Scalar(0.5));
        assert_eq!(result.describe(), "0.5");
    }

    #[tokio::test]
    async fn parses_nan_scalar() {
        let body =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.25,"NaN"]}}"#;
        let (address, _seen) = serve(200, body).await;
        let result = client().query(&instant(&address, "NaN")).await.unwrap();
        assert!(
            matches!(result, QueryResult::Scalar(v) if v.is_nan()),
            "{result:?}"
        );
        assert_eq!(result.describe(), "NaN");
    }

    #[tokio::test]
    async fn parses_string() {
        let body = r#"{"status":"success","data":{"resultType":"string","result":[1700000000.25,"hello"]}}"#;
        let (address, _seen) = serve(200, body).await;
        let result = client()
            .query(&instant(&address, r#""hello""#))
            .await
            .unwrap();
        assert_eq!(result, QueryResult::String("hello".into()));
        assert_eq!(result.describe(), "hello");
    }

    #[tokio::test]
    async fn error_body_is_an_api_error_with_its_message() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected end of input"}"#;
        let (address, _seen) = serve(400, body).await;
        let err = client()
            .query(&instant(&address, "sum("))
            .await
            .unwrap_err();
        let PrometheusError::Api {
            error_type, error, ..
        } = &err
        else {
            panic!("not an API error: {err:?}");
        };
        assert_eq!(error_type, "bad_data");
        assert!(error.contains("parse error"), "{error}");
        assert_eq!(err.category(), "api");
        assert_eq!(
            err.to_string(),
            format!(
                "prometheus at {address}: query failed (bad_data): invalid parameter \"query\": \
                 1:5: parse error: unexpected end of input"
            )
        );
    }

    #[tokio::test]
    async fn error_body_with_200_is_still_an_api_error() {
        let body = r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#;
        let (address, _seen) = serve(200, body).await;
        let err = client().query(&instant(&address, "up")).await.unwrap_err();
        assert!(
            matches!(&err, PrometheusError::Api { error_type, .. } if error_type == "timeout"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn http_500_with_text_body_is_an_http_error_with_truncated_body() {
        const PAGE: &str = concat!(
            "<html>upstream connect error ",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "THE-END</html>"
        );
        let (address, _seen) = serve(500, PAGE).await;
        let err = client().query(&instant(&address, "up")).await.unwrap_err();
        let PrometheusError::Http { status, body, .. } = &err else {
            panic!("not an HTTP error: {err:?}");
        };
        assert_eq!(*status, 500);
        assert!(body.starts_with("<html>upstream connect error"), "{body}");
        assert!(!body.contains("THE-END"), "not truncated: {body}");
        assert!(body.chars().count() <= MAX_ERROR_BODY_CHARS + 20, "{body}");
        assert!(body.ends_with("(truncated)"), "{body}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("prometheus at {address}: HTTP 500: <html>")),
            "{message}"
        );
    }

    #[tokio::test]
    async fn http_error_with_success_json_is_an_http_error() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        let (address, _seen) = serve(503, body).await;
        let err = client().query(&instant(&address, "up")).await.unwrap_err();
        assert!(
            matches!(err, PrometheusError::Http { status: 503, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn garbage_200_body_is_a_decode_error() {
        let (address, _seen) = serve(200, "this is not json").await;
        let err = client().query(&instant(&address, "up")).await.unwrap_err();
        assert!(
            matches!(&err, PrometheusError::Decode { reason, .. } if reason.contains("this is not json")),
            "{err:?}"
        );
        assert_eq!(err.category(), "decode");
    }

    #[tokio::test]
    async fn malformed_results_are_decode_errors() {
        for body in [
            r#"{"status":"success","data":{"resultType":"exemplars","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":{"oops":1}}}"#,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1,{}]}]}}"#,
            r#"{"status":"success"}"#,
            r#"{"status":"weird","data":{"resultType":"vector","result":[]}}"#,
            r#"[1,2,3]"#,
        ] {
            let (address, _seen) = serve(200, body).await;
            let err = client().query(&instant(&address, "up")).await.unwrap_err();
            assert!(
                matches!(err, PrometheusError::Decode { .. }),
                "{body}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn silent_server_times_out_within_the_limit() {
        // Bound but never accepted: the kernel completes the handshake, nobody answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let req = QueryRequest {
            timeout: Duration::from_millis(300),
            ..instant(&address, "up")
        };
        let started = Instant::now();
        let err = client().query(&req).await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(err, PrometheusError::Timeout { after, .. } if after == Duration::from_millis(300)),
            "{err:?}"
        );
        assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        assert_eq!(
            err.to_string(),
            format!("prometheus at {address}: query timed out after 300ms")
        );
        drop(listener);
    }

    #[tokio::test]
    async fn refused_connection_is_a_transport_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = client().query(&instant(&address, "up")).await.unwrap_err();
        let PrometheusError::Transport { reason, .. } = &err else {
            panic!("not a transport error: {err:?}");
        };
        assert!(reason.starts_with("cannot connect"), "{reason}");
        assert!(reason.contains("refused"), "{reason}");
        assert!(!reason.contains("api/v1"), "URL repeated: {reason}");
        assert_eq!(err.category(), "transport");
    }

    #[tokio::test]
    async fn invalid_address_is_a_transport_error() {
        let err = client()
            .query(&instant("not a url", "up"))
            .await
            .unwrap_err();
        assert!(matches!(err, PrometheusError::Transport { .. }), "{err:?}");
    }

    #[test]
    fn new_builds_a_client() {
        assert!(PrometheusClient::new().is_ok());
    }

    #[test]
    fn describe_elides_long_lists() {
        let samples = (0..12)
            .map(|i| Sample {
                labels: BTreeMap::new(),
                value: f64::from(i),
            })
            .collect();
        assert_eq!(
            QueryResult::Vector(samples).describe(),
            "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, … 2 more]"
        );
        assert_eq!(QueryResult::Scalar(f64::NEG_INFINITY).describe(), "-Inf");
    }

    #[test]
    fn redacts_credentials_in_addresses() {
        assert_eq!(
            redact("https://user:pw@prom.example:9090/prefix/"),
            "https://***@prom.example:9090/prefix"
        );
        assert_eq!(redact("http://prom:9090"), "http://prom:9090");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        let long = "é".repeat(600);
        let cut = body_start(long.as_bytes(), MAX_ERROR_BODY_CHARS);
        assert!(cut.starts_with(&"é".repeat(MAX_ERROR_BODY_CHARS)));
        assert!(!cut.starts_with(&"é".repeat(MAX_ERROR_BODY_CHARS + 1)));
    }

    #[test]
    fn formats_unix_seconds() {
        assert_eq!(unix_seconds(1_700_000_000_250), "1700000000.250");
        assert_eq!(unix_seconds(-1_001), "-1.001");
        assert_eq!(seconds(Duration::from_millis(500)), "0.500");
    }
}
