//! The HTTP client of the `web` analysis provider: one request to an endpoint that
//! answers JSON, with the metric's method, headers, body, time limit and TLS options.
//!
//! [`WebClient::fetch`] returns the decoded JSON answer; picking the value (`jsonPath`)
//! and judging it are pure (`core::analysis`). Every failure is a [`WebError`] whose
//! message names the URL (credentials hidden) and says what went wrong: a non-2xx
//! status, an answer that is not JSON, a timeout, a refused connection, a TLS failure.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;

use super::{BodyError, body_start, error_chain, read_body};
use sluice_api::analysis::WebMethod;

/// Largest body kept in an error message, in characters.
const MAX_ERROR_BODY_CHARS: usize = 300;

/// Largest answer read; a larger one is refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// One request, everything resolved (args substituted, Secrets read).
#[derive(Clone, Debug)]
pub struct WebRequest<'a> {
    pub url: &'a str,
    pub method: WebMethod,
    pub headers: &'a [(String, String)],
    pub body: Option<WebBody>,
    /// Time limit of the whole request, body included.
    pub timeout: Duration,
    pub tls: WebTls<'a>,
}

/// A request body.
#[derive(Clone, Debug)]
pub enum WebBody {
    /// Sent as is.
    Text(String),
    /// Sent as JSON with `Content-Type: application/json`.
    Json(Value),
}

/// How the server's certificate is checked.
#[derive(Clone, Copy, Debug)]
pub enum WebTls<'a> {
    /// The platform's roots.
    Platform,
    /// The platform's roots and these PEM certificates.
    CaBundle(&'a str),
    /// Not at all (`insecure: true`).
    Insecure,
}

/// Why a web measurement has no answer.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The server answered with a status outside 200..=299.
    #[error("web {url}: HTTP {status}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },
    /// The answer is not JSON.
    #[error("web {url}: response is not JSON ({reason}): {body}")]
    NotJson {
        url: String,
        reason: String,
        body: String,
    },
    /// No complete answer arrived within the time limit.
    #[error("web {url}: no answer within {}", humantime::format_duration(*.after))]
    Timeout { url: String, after: Duration },
    /// The request could not be sent or the answer not received: connection refused,
    /// DNS, TLS, an invalid URL or header, an answer too large.
    #[error("web {url}: {reason}")]
    Transport { url: String, reason: String },
}

impl WebError {
    /// A short, stable label for logs.
    pub fn category(&self) -> &'static str {
        match self {
            WebError::Http { .. } => "http",
            WebError::NotJson { .. } => "decode",
            WebError::Timeout { .. } => "timeout",
            WebError::Transport { .. } => "transport",
        }
    }
}

/// The web provider's client. Cheap to clone; the platform-verified client is shared, a
/// metric with a `caBundle` or `insecure` gets a client of its own per request.
#[derive(Clone, Debug)]
pub struct WebClient {
    shared: reqwest::Client,
    /// Tests turn proxies off; production honours `HTTPS_PROXY` / `NO_PROXY`.
    no_proxy: bool,
}

impl WebClient {
    /// A client with rustls (ring provider, platform verifier), as the Prometheus one.
    pub fn new() -> Result<Self, WebError> {
        Self::with_proxy(true)
    }

    fn with_proxy(proxy: bool) -> Result<Self, WebError> {
        let no_proxy = !proxy;
        let shared = build(WebTls::Platform, no_proxy)?;
        Ok(Self { shared, no_proxy })
    }

    #[cfg(test)]
    pub(crate) fn without_proxy() -> Self {
        Self::with_proxy(false).unwrap()
    }

    /// Sends the request and returns the JSON answer of a 2xx response.
    pub async fn fetch(&self, req: &WebRequest<'_>) -> Result<Value, WebError> {
        let body = self.exchange(req).await?;
        serde_json::from_slice(&body).map_err(|e| WebError::NotJson {
            url: redact(req.url),
            reason: e.to_string(),
            body: if body.iter().all(u8::is_ascii_whitespace) {
                "(empty body)".into()
            } else {
                body_start(&body, MAX_ERROR_BODY_CHARS)
            },
        })
    }

    /// Sends the request; Ok on a 2xx response, whatever its body (a notification).
    pub async fn send(&self, req: &WebRequest<'_>) -> Result<(), WebError> {
        self.exchange(req).await.map(drop)
    }

    /// Sends the request and returns the body of a 2xx response.
    async fn exchange(&self, req: &WebRequest<'_>) -> Result<Vec<u8>, WebError> {
        let url = redact(req.url);
        let http = match req.tls {
            WebTls::Platform => self.shared.clone(),
            tls => build(tls, self.no_proxy).map_err(|e| match e {
                WebError::Transport { reason, .. } => WebError::Transport {
                    url: url.clone(),
                    reason,
                },
                other => other,
            })?,
        };
        let method = match req.method {
            WebMethod::Get => reqwest::Method::GET,
            WebMethod::Post => reqwest::Method::POST,
            WebMethod::Put => reqwest::Method::PUT,
        };
        let mut builder = http
            .request(method, req.url)
            .timeout(req.timeout)
            .header("Accept", "application/json");
        for (key, value) in req.headers {
            builder = builder.header(key.as_str(), value.as_str());
        }
        builder = match &req.body {
            None => builder,
            Some(WebBody::Text(text)) => builder.body(text.clone()),
            Some(WebBody::Json(json)) => builder
                .header("Content-Type", "application/json")
                .body(json.to_string()),
        };
        let send_error = |e: reqwest::Error| -> WebError {
            let e = e.without_url();
            let url = url.clone();
            if e.is_timeout() {
                WebError::Timeout {
                    url,
                    after: req.timeout,
                }
            } else if e.is_builder() {
                WebError::Transport {
                    url,
                    reason: format!(
                        "invalid request (check the url and headers): {}",
                        error_chain(&e)
                    ),
                }
            } else if e.is_connect() {
                WebError::Transport {
                    url,
                    reason: format!("cannot connect: {}", error_chain(&e)),
                }
            } else {
                WebError::Transport {
                    url,
                    reason: format!("request failed: {}", error_chain(&e)),
                }
            }
        };
        let mut response = builder.send().await.map_err(send_error)?;
        let status = response.status();
        let body = match read_body(&mut response, MAX_RESPONSE_BYTES).await {
            Ok(body) => body,
            Err(BodyError::Read(e)) => return Err(send_error(e)),
            Err(BodyError::TooLarge(reason)) => return Err(WebError::Transport { url, reason }),
        };
        if !status.is_success() {
            return Err(WebError::Http {
                url,
                status: status.as_u16(),
                body: body_start(&body, MAX_ERROR_BODY_CHARS),
            });
        }
        Ok(body)
    }
}

fn build(tls: WebTls<'_>, no_proxy: bool) -> Result<reqwest::Client, WebError> {
    let setup_error = |reason: String| WebError::Transport {
        url: "(client setup)".into(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match tls {
        WebTls::Platform => Arc::new(
            rustls_platform_verifier::Verifier::new(provider.clone()).map_err(|e| {
                setup_error(format!("cannot load the TLS certificate verifier: {e}"))
            })?,
        ),
        WebTls::CaBundle(pem) => {
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| setup_error(format!("caBundle is not valid PEM: {e}")))?;
            if certs.is_empty() {
                return Err(setup_error("caBundle holds no certificate".into()));
            }
            Arc::new(
                rustls_platform_verifier::Verifier::new_with_extra_roots(certs, provider.clone())
                    .map_err(|e| setup_error(format!("caBundle cannot be used: {e}")))?,
            )
        }
        WebTls::Insecure => Arc::new(AnyCertificate(provider.signature_verification_algorithms)),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup_error(format!("cannot configure TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
    if no_proxy {
        builder = builder.no_proxy();
    }
    builder
        .build()
        .map_err(|e| setup_error(format!("cannot build the HTTP client: {}", error_chain(&e))))
}

/// `insecure: true`: any certificate is accepted, but the handshake's signatures are still
/// checked, so the connection is at least to whoever holds the presented key.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The URL with any `user:password@` and its query hidden (a query often carries a key).
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = match rest[..authority_end].rfind('@') {
        Some(at) => format!("***@{}", &rest[at + 1..authority_end]),
        None => rest[..authority_end].to_owned(),
    };
    let path_and_query = &rest[authority_end..];
    let path = match path_and_query.find(['?', '#']) {
        Some(q) => format!("{}?…", &path_and_query[..q]),
        None => path_and_query.to_owned(),
    };
    format!("{}{authority}{path}", &url[..scheme_end + 3])
}

#[cfg(test)]
#[path = "web_tests.rs"]
pub(crate) mod tests;
