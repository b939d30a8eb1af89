//! Where remote_write and Loki pushes go (`--remote-write.upstream`, `--loki.upstream`): one client per
//! upstream, and the one mapping of its answers to what the sender's retry rule needs (5xx retried, 4xx
//! dropped): unreachable or silent is 503, its 5xx passes, its 429 becomes 503 with its `Retry-After`
//! (Prometheus 2.42 drops a 429 unless `retry_on_http_429`), its 4xx passes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{self, HeaderMap};
use hyper::{Method, StatusCode};
use promsd_client::Client;

/// How long the upstream may take to answer one request (Prometheus's own remote_timeout default).
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct UpstreamCounts {
    pub forwarded: AtomicU64,
    pub rejected: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub unreachable: AtomicU64,
}

impl UpstreamCounts {
    /// Forwarded, rejected, upstream errors, unreachable.
    pub fn load(&self) -> [u64; 4] {
        [&self.forwarded, &self.rejected, &self.upstream_errors, &self.unreachable].map(|c| c.load(Ordering::Relaxed))
    }
}

/// What to answer the sender.
pub struct Outcome {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Outcome {
    pub fn plain(status: StatusCode, body: impl Into<String>) -> Self {
        Self { status, headers: HeaderMap::new(), body: body.into() }
    }
}

pub struct Upstream {
    client: Client,
    pub url: String,
    /// `remote_write` or `Loki`, for log lines.
    what: &'static str,
    pub counts: UpstreamCounts,
}

impl Upstream {
    /// https with the system's CAs; through a forward proxy if the environment names one.
    pub fn new(url: &str, what: &'static str) -> Result<Self, promsd_client::SetupError> {
        let client = Client::for_url(url, promsd_client::ServerTls::default(), Vec::new())?;
        Ok(Self { client, url: url.to_string(), what, counts: UpstreamCounts::default() })
    }

    /// A refusal before forwarding (a bad body, another tenant's data), counted.
    pub fn reject(&self, status: StatusCode, message: String) -> Outcome {
        self.counts.rejected.fetch_add(1, Ordering::Relaxed);
        Outcome::plain(status, message)
    }

    /// `POST`s `body` with `headers` and maps the answer.
    pub async fn forward(&self, headers: HeaderMap, body: Bytes) -> Outcome {
        let sent = tokio::time::timeout(TIMEOUT, self.client.request(Method::POST, "", &headers, body));
        let answer = match sent.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                self.counts.unreachable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(upstream = %self.url, sink = self.what, %error, "upstream unreachable");
                return Outcome::plain(StatusCode::SERVICE_UNAVAILABLE, format!("upstream unreachable: {error}\n"));
            }
            Err(_) => {
                self.counts.unreachable.fetch_add(1, Ordering::Relaxed);
                return Outcome::plain(StatusCode::SERVICE_UNAVAILABLE, "upstream did not answer in time\n");
            }
        };
        if answer.status.is_success() {
            self.counts.forwarded.fetch_add(1, Ordering::Relaxed);
            return Outcome::plain(answer.status, "");
        }
        self.counts.upstream_errors.fetch_add(1, Ordering::Relaxed);
        let text = String::from_utf8_lossy(&answer.body[..answer.body.len().min(1024)]).to_string();
        let status = if answer.status == StatusCode::TOO_MANY_REQUESTS {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            answer.status
        };
        let mut outcome = Outcome::plain(status, format!("upstream answered {}: {text}", answer.status));
        if let Some(retry_after) = answer.headers.get(header::RETRY_AFTER) {
            outcome.headers.insert(header::RETRY_AFTER, retry_after.clone());
        }
        outcome
    }
}
