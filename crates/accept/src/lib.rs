//! The one accept loop every TCP server of promsd runs (DNS over TCP, every HTTP port), after tokio's
//! mini-redis: [`run`] takes a bound listener and a shutdown token.
//!
//! - At most `max_connections` connections are served at once; further clients wait in the kernel's
//!   accept queue rather than costing memory here.
//! - An accept error (typically EMFILE: out of file descriptors) is logged and waited out with the shared
//!   backoff instead of spinning on a listener that fails at once again.
//! - On shutdown the loop stops accepting, hands each connection the shutdown signal to finish what it is
//!   doing, and returns once they are done or `grace` has passed (the rest are dropped).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use promsd_backoff::Backoff;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How a server's connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// How long connections may take to finish after shutdown.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_connections: 1024, grace: Duration::from_secs(5) }
    }
}

/// Accepts until `shutdown`; each connection runs `serve(stream, peer, shutdown)` in its own task. `what`
/// names the server in logs ("dns tcp", "web").
pub async fn run<F, Fut>(what: &str, listener: TcpListener, limits: Limits, shutdown: CancellationToken, mut serve: F)
where
    F: FnMut(TcpStream, SocketAddr, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_secs(1));
    loop {
        // Reap finished connections so the set does not grow with every connection ever served.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(server = what, %error, retry_in = ?delay, "accept failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            },
        };
        backoff.reset();
        let connection = serve(stream, peer, shutdown.clone());
        connections.spawn(async move {
            connection.await;
            drop(permit);
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::debug!(server = what, left = connections.len(), "connections still open after the grace period");
        connections.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo(mut stream: TcpStream, _: SocketAddr, shutdown: CancellationToken) {
        let mut buf = [0u8; 64];
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => if stream.write_all(&buf[..n]).await.is_err() { return },
                },
            }
        }
    }

    async fn roundtrip(stream: &mut TcpStream) -> bool {
        if stream.write_all(b"x").await.is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut byte)).await.is_ok_and(|r| r.is_ok())
    }

    #[tokio::test]
    async fn bounds_connections_and_serves_the_next_when_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let limits = Limits { max_connections: 2, grace: Duration::from_secs(1) };
        let server = tokio::spawn(run("test", listener, limits, shutdown.clone(), echo));
        let mut first = TcpStream::connect(addr).await.expect("connect");
        let mut second = TcpStream::connect(addr).await.expect("connect");
        assert!(roundtrip(&mut first).await && roundtrip(&mut second).await);
        // The third is queued by the kernel, not served, until one of the two goes.
        let mut third = TcpStream::connect(addr).await.expect("connect");
        assert!(!roundtrip(&mut third).await, "a third connection was served beyond the limit of 2");
        drop(first);
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), third.read_exact(&mut byte))
            .await
            .expect("the queued connection is served once a slot frees")
            .expect("echo");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("run returns after shutdown").expect("join");
    }

    #[tokio::test]
    async fn shutdown_drops_connections_that_ignore_it_after_the_grace_period() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let limits = Limits { max_connections: 4, grace: Duration::from_millis(200) };
        let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
        let held_tx = std::sync::Mutex::new(Some(held_tx));
        let server = tokio::spawn(run("test", listener, limits, shutdown.clone(), move |_stream, _peer, _stop| {
            let started = held_tx.lock().ok().and_then(|mut t| t.take());
            async move {
                if let Some(started) = started {
                    let _ = started.send(());
                }
                std::future::pending::<()>().await
            }
        }));
        let _client = TcpStream::connect(addr).await.expect("connect");
        held_rx.await.expect("connection served");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("run returns after the grace").expect("join");
        assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed after shutdown");
    }
}
