//! The web client against a real loopback HTTP server.

use super::*;
use std::collections::BTreeMap;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request as the test server saw it.
#[derive(Debug)]
pub(crate) struct Seen {
    pub method: String,
    pub target: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// Serves `status` + `body` to every request on 127.0.0.1, reporting each request.
pub(crate) async fn serve(
    status: u16,
    body: &'static str,
) -> (String, mpsc::UnboundedReceiver<Seen>) {
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
                let mut request_line = lines.next().unwrap_or("").split(' ');
                let method = request_line.next().unwrap_or("").to_owned();
                let target = request_line.next().unwrap_or("").to_owned();
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
                let _ = tx.send(Seen {
                    method,
                    target,
                    headers,
                    body: String::from_utf8_lossy(&buf[head_end..]).into_owned(),
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

fn get(url: &str) -> WebRequest<'_> {
    WebRequest {
        url,
        method: WebMethod::Get,
        headers: &[],
        body: None,
        timeout: Duration::from_secs(5),
        tls: WebTls::Platform,
    }
}

#[tokio::test]
async fn get_sends_headers_and_returns_the_json_answer() {
    let (address, mut seen) = serve(200, r#"{"data":{"ok":true,"successPercent":0.95}}"#).await;
    let url = format!("{address}/api/v1/measurement?service=shop");
    let headers = vec![("Authorization".to_owned(), "Bearer s3cret".to_owned())];
    let answer = WebClient::without_proxy()
        .fetch(&WebRequest {
            headers: &headers,
            ..get(&url)
        })
        .await
        .unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"data": {"ok": true, "successPercent": 0.95}})
    );
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/api/v1/measurement?service=shop");
    assert_eq!(
        seen.headers.get("authorization").map(String::as_str),
        Some("Bearer s3cret")
    );
    assert_eq!(seen.body, "");
}

#[tokio::test]
async fn post_sends_a_json_body_with_its_content_type() {
    let (address, mut seen) = serve(201, "42").await;
    let answer = WebClient::without_proxy()
        .fetch(&WebRequest {
            method: WebMethod::Post,
            body: Some(WebBody::Json(serde_json::json!({"service": "shop"}))),
            ..get(&address)
        })
        .await
        .unwrap();
    assert_eq!(answer, serde_json::json!(42));
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(seen.body, r#"{"service":"shop"}"#);
}

#[tokio::test]
async fn put_sends_a_text_body_as_is() {
    let (address, mut seen) = serve(200, "true").await;
    WebClient::without_proxy()
        .fetch(&WebRequest {
            method: WebMethod::Put,
            body: Some(WebBody::Text("check=shop".into())),
            ..get(&address)
        })
        .await
        .unwrap();
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.body, "check=shop");
}

#[tokio::test]
async fn non_2xx_is_an_http_error_with_the_body() {
    let (address, _seen) = serve(503, r#"{"error":"draining"}"#).await;
    let err = WebClient::without_proxy()
        .fetch(&get(&address))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WebError::Http { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(r#"web {address}: HTTP 503: {{"error":"draining"}}"#)
    );
    assert_eq!(err.category(), "http");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_decode_error() {
    let (address, _seen) = serve(200, "<html>ok</html>").await;
    let err = WebClient::without_proxy()
        .fetch(&get(&address))
        .await
        .unwrap_err();
    let WebError::NotJson { body, .. } = &err else {
        panic!("not a NotJson error: {err:?}");
    };
    assert_eq!(body, "<html>ok</html>");
    assert!(err.to_string().contains("response is not JSON"), "{err}");
}

#[tokio::test]
async fn an_empty_body_says_so() {
    let (address, _seen) = serve(200, "").await;
    let err = WebClient::without_proxy()
        .fetch(&get(&address))
        .await
        .unwrap_err();
    assert!(err.to_string().ends_with("(empty body)"), "{err}");
}

#[tokio::test]
async fn a_silent_server_times_out_within_the_limit() {
    // Bound but never accepted: the kernel completes the handshake, nobody answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let started = Instant::now();
    let err = WebClient::without_proxy()
        .fetch(&WebRequest {
            timeout: Duration::from_millis(300),
            ..get(&address)
        })
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, WebError::Timeout { .. }), "{err:?}");
    assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(
        err.to_string(),
        format!("web {address}: no answer within 300ms")
    );
    drop(listener);
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = WebClient::without_proxy()
        .fetch(&get(&address))
        .await
        .unwrap_err();
    let WebError::Transport { reason, .. } = &err else {
        panic!("not a transport error: {err:?}");
    };
    assert!(reason.starts_with("cannot connect"), "{reason}");
    assert!(reason.contains("refused"), "{reason}");
    assert_eq!(err.category(), "transport");
}

#[tokio::test]
async fn a_ca_bundle_that_is_not_pem_is_a_clear_error() {
    let err = WebClient::without_proxy()
        .fetch(&WebRequest {
            tls: WebTls::CaBundle("not a certificate"),
            ..get("https://127.0.0.1:1/")
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("caBundle holds no certificate"),
        "{err}"
    );
}

#[test]
fn urls_in_messages_hide_credentials_and_queries() {
    assert_eq!(
        redact("https://user:pw@example.com/a/b?key=secret"),
        "https://***@example.com/a/b?…"
    );
    assert_eq!(redact("http://h:8080/health"), "http://h:8080/health");
}

/// An HTTPS server on 127.0.0.1 with a certificate for `localhost` and 127.0.0.1 signed
/// by the test CA (`controller/tests/data/web-tls`, valid until 2126), answering `body`.
async fn serve_tls(body: &'static str) -> String {
    use rustls::pki_types::PrivateKeyDer;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/web-tls");
    let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to do.
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    address
}

fn test_ca() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/web-tls/ca.pem"),
    )
    .unwrap()
}

#[tokio::test]
async fn https_with_a_private_ca_needs_its_ca_bundle_or_insecure() {
    let address = serve_tls(r#"{"status":"pass"}"#).await;
    let client = WebClient::without_proxy();
    // The platform's roots do not know the test CA: a TLS failure, said so.
    let err = client.fetch(&get(&address)).await.unwrap_err();
    let WebError::Transport { reason, .. } = &err else {
        panic!("not a transport error: {err:?}");
    };
    assert!(reason.contains("certificate"), "{reason}");
    // With the CA bundle it is verified and answers.
    let ca = test_ca();
    let answer = client
        .fetch(&WebRequest {
            tls: WebTls::CaBundle(&ca),
            ..get(&address)
        })
        .await
        .unwrap();
    assert_eq!(answer, serde_json::json!({"status": "pass"}));
    // By name as well: the certificate names localhost and 127.0.0.1.
    let port = address.rsplit(':').next().unwrap();
    let by_name = format!("https://localhost:{port}");
    assert!(
        client
            .fetch(&WebRequest {
                tls: WebTls::CaBundle(&ca),
                ..get(&by_name)
            })
            .await
            .is_ok()
    );
    // insecure skips verification, only when asked.
    let answer = client
        .fetch(&WebRequest {
            tls: WebTls::Insecure,
            ..get(&address)
        })
        .await
        .unwrap();
    assert_eq!(answer, serde_json::json!({"status": "pass"}));
}
