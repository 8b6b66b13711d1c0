//! A JSON endpoint on 127.0.0.1 for the `web` analysis provider's end-to-end tests: the
//! controller runs as a local process, so it reaches the test's loopback server. The
//! answer can be changed while it runs, and every request's path and body is kept (the
//! gates' end-to-end tests read the JSON a gate receives).

use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A running endpoint; it stops when dropped.
pub struct WebEndpoint {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    answer: Arc<Mutex<(u16, String)>>,
    requests: Arc<Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebEndpoint {
    /// Serves `status` and `body` (JSON) to every request.
    pub async fn start(status: u16, body: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let answer = Arc::new(Mutex::new((status, body.to_string())));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (answer, requests) = (answer.clone(), requests.clone());
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let (answer, requests) = (answer.clone(), requests.clone());
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 4096];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let target = head.split(' ').nth(1).unwrap_or_default().to_string();
                        let length = head
                            .lines()
                            .filter_map(|l| l.split_once(':'))
                            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        let mut body = buf[end..].to_vec();
                        while body.len() < length {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => body.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body = String::from_utf8_lossy(&body).into_owned();
                        requests.lock().unwrap().push((target, body));
                        let (status, body) = answer.lock().unwrap().clone();
                        let response = format!(
                            "HTTP/1.1 {status} Canned\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(response.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    });
                }
            })
        };
        Ok(Self {
            url,
            answer,
            requests,
            task,
        })
    }

    /// Answers `status` and `body` from now on.
    pub fn set(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_string());
    }

    /// The request targets (path and query) seen so far.
    pub fn requests(&self) -> Vec<String> {
        let requests = self.requests.lock().unwrap();
        requests.iter().map(|(target, _)| target.clone()).collect()
    }

    /// The bodies of the requests to `path`, in order, as JSON (`null` for one that is
    /// not JSON).
    pub fn bodies(&self, path: &str) -> Vec<serde_json::Value> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|(target, _)| target == path)
            .map(|(_, body)| serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
            .collect()
    }
}

impl Drop for WebEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}
