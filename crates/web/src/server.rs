//! Serving one HTTP port: the shared accept loop, TLS from the web configuration in force when the
//! connection arrives, and for every request (not once per connection, so a user removed from the file
//! loses access on open keep-alive connections too) the basic-auth check and the configured headers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use promsd_accept::Limits;
use promsd_common::stamp::{Stamp, stamp};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::{Web, WebConfigError};
use crate::response;

/// A reply's body: whole, or streamed in chunks (see [`crate::response::streamed`]).
pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;
pub type Reply = Response<Body>;

/// How long a client may take for the TLS handshake, and to send a request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What answers the requests of one port, once TLS and credentials have been checked.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> impl Future<Output = Reply> + Send;
}

/// Refusals by the web stack itself, for the owner's `/metrics`.
#[derive(Debug, Default)]
pub struct WebMetrics {
    /// Requests without valid basic-auth credentials (401), and clients whose certificate names no allowed SAN.
    pub unauthorized: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: AtomicU64,
}

/// The web configuration file and what was last read from it; read again when the file changes. A broken
/// new version keeps the previous one in force (and says so once per change).
pub struct WebSource {
    path: PathBuf,
    current: Mutex<(Option<Stamp>, Arc<Web>)>,
}

/// The path only: what was read holds password hashes and keys.
impl std::fmt::Debug for WebSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSource").field("path", &self.path).finish_non_exhaustive()
    }
}

impl WebSource {
    /// Reads the file; an error here is fatal for the caller (the daemon does not start).
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let web = Web::load(path)?;
        Ok(Self { path: path.to_path_buf(), current: Mutex::new((stamp(path), Arc::new(web))) })
    }

    /// The configuration in force now.
    pub fn current(&self) -> Option<Arc<Web>> {
        let stamp = stamp(&self.path);
        let mut current = self.current.lock().ok()?;
        if stamp != current.0 {
            match Web::load(&self.path) {
                Ok(web) => *current = (stamp, Arc::new(web)),
                Err(error) => tracing::warn!(%error, "cannot reload the web config; keeping the previous one"),
            }
            current.0 = stamp;
        }
        Some(current.1.clone())
    }
}

/// Serves `handler` on `listener` until `shutdown`, behind `web` (none: plain HTTP, no auth).
pub async fn serve<H: Handler>(
    listener: TcpListener,
    web: Option<Arc<WebSource>>,
    handler: Arc<H>,
    metrics: Arc<WebMetrics>,
    shutdown: CancellationToken,
) {
    serve_with_limits(listener, web, handler, metrics, Limits::default(), shutdown).await;
}

/// [`serve`] with other connection limits (the gateway holds one connection per polling client).
pub async fn serve_with_limits<H: Handler>(
    listener: TcpListener,
    web: Option<Arc<WebSource>>,
    handler: Arc<H>,
    metrics: Arc<WebMetrics>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    promsd_accept::run("web", listener, limits, shutdown, move |stream, peer, shutdown| {
        connection(stream, peer, web.clone(), handler.clone(), metrics.clone(), shutdown)
    })
    .await;
}

async fn connection<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    source: Option<Arc<WebSource>>,
    handler: Arc<H>,
    metrics: Arc<WebMetrics>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let web = source.as_ref().and_then(|s| s.current());
    match web.as_ref().and_then(|w| w.tls.clone()) {
        Some(acceptor) => {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                _ => {
                    metrics.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let peer_cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned();
            if web.as_ref().is_some_and(|w| !w.san_allowed(peer_cert.as_ref())) {
                metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
                return; // a certificate for a name that is not allowed: no HTTP at all
            }
            http(TokioIo::new(tls), peer, source, handler, metrics, shutdown).await;
        }
        None => http(TokioIo::new(stream), peer, source, handler, metrics, shutdown).await,
    }
}

async fn http<I, H>(
    io: I,
    peer: SocketAddr,
    source: Option<Arc<WebSource>>,
    handler: Arc<H>,
    metrics: Arc<WebMetrics>,
    shutdown: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Handler,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let (source, handler, metrics) = (source.clone(), handler.clone(), metrics.clone());
        async move {
            // Read per request: a changed file (a user removed, a header added) applies to open connections.
            let web = source.as_ref().and_then(|s| s.current());
            let mut reply = match &web {
                Some(web) if !web.authorized(request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok())) => {
                    metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
                    let mut reply = response::text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
                    reply.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
                    reply
                }
                _ => handler.handle(request, peer).await,
            };
            if let Some(web) = &web {
                for (name, value) in &web.config.http_server_config.headers {
                    if let (Ok(name), Ok(value)) =
                        (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
                    {
                        reply.headers_mut().insert(name, value);
                    }
                }
            }
            Ok::<_, Infallible>(reply)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = shutdown.cancelled() => {
            // Answer what is in flight, then close.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    struct Hello;

    impl Handler for Hello {
        async fn handle(&self, _request: Request<Incoming>, _peer: SocketAddr) -> Reply {
            response::text(StatusCode::OK, "hello\n")
        }
    }

    fn users(path: &Path, user: &str) {
        let hash = bcrypt::hash("pw", 4).expect("bcrypt");
        std::fs::write(path, format!("basic_auth_users:\n  {user}: {hash}\n")).expect("write web config");
    }

    /// Sends one keep-alive request on `stream` and returns the status code.
    fn request(stream: &mut std::net::TcpStream, user: &str) -> u16 {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
        write!(stream, "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n\r\n").expect("send");
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        // Headers, then the body whose length they give.
        while !reply.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("read");
            reply.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&reply).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).expect("body");
        head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    /// A user removed from the file loses access at once, also on a keep-alive connection opened before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn credentials_are_checked_per_request_not_per_connection() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("web.yml");
        users(&path, "alice");
        let source = Arc::new(WebSource::load(&path).expect("web config"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let metrics = Arc::new(WebMetrics::default());
        let server = tokio::spawn(serve(listener, Some(source), Arc::new(Hello), metrics.clone(), shutdown.clone()));
        let statuses = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let before = (request(&mut stream, "alice"), request(&mut stream, "bob"));
            users(&path, "bob-the-new-user");
            let after = (request(&mut stream, "alice"), request(&mut stream, "bob-the-new-user"));
            (before, after)
        })
        .await
        .expect("client");
        assert_eq!(statuses, ((200, 401), (401, 200)), "(alice, bob) before and after alice was removed");
        assert_eq!(metrics.unauthorized.load(Ordering::Relaxed), 2);
        shutdown.cancel();
        server.await.expect("server stops");
    }
}
