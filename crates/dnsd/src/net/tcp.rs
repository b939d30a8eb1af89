//! DNS over TCP: a task per connection, queries answered in order. Connections are bounded in all and per
//! source address; at the total the connection idle longest is closed so a new client is served (as Knot
//! does), so clients that hold connections open cannot lock others out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use promsd_accept::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Server;
use crate::config::TcpLimits;
use crate::wire::Transport;

/// How long a TCP connection may sit idle between queries (RFC 7766 suggests seconds, not minutes).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Once a message's length has arrived, the whole message must follow within this (Knot's tcp-io-timeout):
/// a client that trickles bytes cannot hold a connection slot for long.
const MESSAGE_TIMEOUT: Duration = Duration::from_millis(500);
/// A transfer's client must take each message within this: one that stops reading loses the transfer.
const TRANSFER_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve_tcp(listener: TcpListener, server: Arc<Server>, shutdown: CancellationToken) {
    let bounds = server.tcp;
    // One slot beyond the bound: the newest connection is accepted, then the idlest one makes room for it.
    let limits = Limits { max_connections: bounds.max_connections + 1, grace: Duration::from_secs(1) };
    let open = Arc::new(Open::default());
    promsd_accept::run("dns tcp", listener, limits, shutdown, move |stream, peer, shutdown| {
        let (server, open) = (server.clone(), open.clone());
        async move {
            let Some(slot) = open.admit(peer.ip(), bounds) else { return };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = slot.close.cancelled() => {}
                _ = connection(stream, peer, &server, &slot) => {}
            }
        }
    })
    .await;
}

/// The connections being served, to bound them per source and to find the idlest.
#[derive(Default)]
struct Open {
    connections: Mutex<HashMap<u64, Tracked>>,
    next_id: std::sync::atomic::AtomicU64,
}

struct Tracked {
    source: IpAddr,
    /// When its last query was answered (or it connected); None while a query is being answered.
    idle_since: Option<Instant>,
    close: CancellationToken,
}

/// One admitted connection; leaving it (drop) removes it from [`Open`].
struct Slot {
    id: u64,
    open: Arc<Open>,
    close: CancellationToken,
}

impl Open {
    /// Admits a connection from `source`, or None when its address already has its share. At the total bound
    /// the connection idle longest is told to close.
    fn admit(self: &Arc<Self>, source: IpAddr, bounds: TcpLimits) -> Option<Slot> {
        let mut connections = self.connections.lock().ok()?;
        if connections.values().filter(|c| c.source == source).count() >= bounds.max_per_source {
            return None;
        }
        if connections.len() >= bounds.max_connections {
            let idlest =
                connections.iter().filter_map(|(id, c)| c.idle_since.map(|since| (since, *id))).min().map(|(_, id)| id);
            if let Some(tracked) = idlest.and_then(|id| connections.remove(&id)) {
                tracked.close.cancel();
            }
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let close = CancellationToken::new();
        connections.insert(id, Tracked { source, idle_since: Some(Instant::now()), close: close.clone() });
        Some(Slot { id, open: self.clone(), close })
    }

    fn mark(&self, id: u64, idle: bool) {
        if let Ok(mut connections) = self.connections.lock()
            && let Some(tracked) = connections.get_mut(&id)
        {
            tracked.idle_since = idle.then(Instant::now);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut connections) = self.open.connections.lock() {
            connections.remove(&self.id);
        }
    }
}

/// Answers a zone transfer request: one refusal, or the transfer's messages as a blocking thread writes them
/// from the snapshot taken now. The connection's idle timeout does not apply meanwhile: a large zone takes
/// as long as the client takes to read it, and each write is bounded instead.
async fn transfer(
    stream: &mut TcpStream,
    server: &Server,
    message: &hickory_proto::op::Message,
    bytes: &[u8],
    peer: SocketAddr,
) -> std::io::Result<()> {
    use crate::transfer::Admission;
    let (request, signer) = match server.transfers.admit(server.store.catalog(), message, bytes, peer.ip()) {
        Admission::Refused(response) => return write_message(stream, &response).await,
        Admission::Stream { request, signer } => (request, signer),
    };
    tracing::debug!(%peer, zone = %request.query.name(), kind = %request.query.query_type(), "zone transfer");
    let (sender, mut messages) = tokio::sync::mpsc::channel(4);
    let (store, transfers, view) = (server.store.clone(), server.transfers.clone(), server.store.snapshot());
    let producer = tokio::task::spawn_blocking(move || {
        crate::transfer::stream(&store, &transfers, &view, &request, signer, &sender);
    });
    while let Some(message) = messages.recv().await {
        match tokio::time::timeout(TRANSFER_WRITE_TIMEOUT, write_message(stream, &message)).await {
            Ok(Ok(())) => {}
            _ => {
                drop(messages); // the producer sees the channel closed and stops
                let _ = producer.await;
                return Err(std::io::ErrorKind::TimedOut.into());
            }
        }
    }
    let _ = producer.await;
    Ok(())
}

/// One length-prefixed message.
async fn write_message(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len()).map_err(|_| std::io::Error::other("message over 64 KiB"))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

/// Serves length-prefixed queries on one connection, one after another, until it closes or idles out.
async fn connection(mut stream: TcpStream, peer: SocketAddr, server: &Server, slot: &Slot) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let len = match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        slot.open.mark(slot.id, false);
        buf.resize(len, 0);
        if !matches!(tokio::time::timeout(MESSAGE_TIMEOUT, stream.read_exact(&mut buf)).await, Ok(Ok(_))) {
            return;
        }
        if let Some(message) = crate::transfer::question(&buf) {
            if transfer(&mut stream, server, &message, &buf, peer).await.is_err() {
                return;
            }
            slot.open.mark(slot.id, true);
            continue;
        }
        // A message that gets no answer (a response, a runt) is skipped: the queries behind it still count.
        if let Some(response) = server.answer(&buf, Transport::Tcp, peer) {
            let Ok(response_len) = u16::try_from(response.len()) else { return };
            let mut framed = Vec::with_capacity(response.len() + 2);
            framed.extend_from_slice(&response_len.to_be_bytes());
            framed.extend_from_slice(&response);
            if stream.write_all(&framed).await.is_err() {
                return;
            }
        }
        slot.open.mark(slot.id, true);
    }
}
