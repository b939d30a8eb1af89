//! DNS over UDP and TCP. Answers are computed from the current view snapshot without awaiting anything, so
//! each UDP socket runs one tight receive-answer-send loop; TCP connections get a task each.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::answer::Resolver;
use crate::wire::{Transport, respond};

/// How long a TCP connection may sit idle between queries (RFC 7766 suggests seconds, not minutes).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open TCP connections beyond this wait in the kernel's accept queue.
const MAX_TCP_CONNECTIONS: usize = 1024;

fn answer(state: &State, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let view = state.view();
    let resolver = Resolver { catalog: &state.catalog, view: &view };
    respond(request, transport, &resolver)
}

pub async fn serve_udp(socket: UdpSocket, state: Arc<State>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on Linux; they concern one client only.
                    tracing::debug!(error = %e, "udp receive failed");
                    continue;
                }
            },
        };
        if let Some(response) = answer(&state, &buf[..len], Transport::Udp)
            && let Err(e) = socket.send_to(&response, peer).await
        {
            tracing::debug!(%peer, error = %e, "udp send failed");
        }
    }
}

pub async fn serve_tcp(listener: TcpListener, state: Arc<State>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = connection(stream, &state) => {}
            }
            drop(permit);
        });
    }
}

/// Serves length-prefixed queries on one connection, one after another, until it closes or idles out.
async fn connection(mut stream: TcpStream, state: &State) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let len = match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        buf.resize(len, 0);
        if !matches!(tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut buf)).await, Ok(Ok(_))) {
            return;
        }
        let Some(response) = answer(state, &buf, Transport::Tcp) else { return };
        let Ok(response_len) = u16::try_from(response.len()) else { return };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&response_len.to_be_bytes());
        framed.extend_from_slice(&response);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
