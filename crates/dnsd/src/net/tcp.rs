//! DNS over TCP: a task per connection, at most MAX_TCP_CONNECTIONS at once, queries answered in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use promsd_accept::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::Server;
use crate::wire::Transport;

/// How long a TCP connection may sit idle between queries (RFC 7766 suggests seconds, not minutes).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Once a message's length has arrived, the whole message must follow within this (Knot's tcp-io-timeout):
/// a client that trickles bytes cannot hold a connection slot for long.
const MESSAGE_TIMEOUT: Duration = Duration::from_millis(500);
/// Open TCP connections beyond this wait in the kernel's accept queue.
const MAX_TCP_CONNECTIONS: usize = 1024;

pub async fn serve_tcp(listener: TcpListener, server: Arc<Server>, shutdown: CancellationToken) {
    let limits = Limits { max_connections: MAX_TCP_CONNECTIONS, grace: Duration::from_secs(1) };
    promsd_accept::run("dns tcp", listener, limits, shutdown, move |stream, peer, shutdown| {
        let server = server.clone();
        async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = connection(stream, peer, &server) => {}
            }
        }
    })
    .await;
}

/// Serves length-prefixed queries on one connection, one after another, until it closes or idles out.
async fn connection(mut stream: TcpStream, peer: SocketAddr, server: &Server) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let len = match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        buf.resize(len, 0);
        if !matches!(tokio::time::timeout(MESSAGE_TIMEOUT, stream.read_exact(&mut buf)).await, Ok(Ok(_))) {
            return;
        }
        // A message that gets no answer (a response, a runt) is skipped: the queries behind it still count.
        let Some(response) = server.answer(&buf, Transport::Tcp, peer) else { continue };
        let Ok(response_len) = u16::try_from(response.len()) else { return };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&response_len.to_be_bytes());
        framed.extend_from_slice(&response);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
