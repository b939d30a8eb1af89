//! DNS over UDP: one blocking receive loop per socket, each with its own cache of encoded answers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Server;
use super::cache::{AnswerCache, Key};
use crate::wire::Transport;

/// Serves one UDP socket on a dedicated OS thread with blocking receives: answers need no await, and a
/// thread that sleeps in recvfrom costs less per packet than a task woken through the reactor.
pub fn serve_udp(socket: std::net::UdpSocket, server: Arc<Server>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; 65535];
    let mut cache = AnswerCache::default();
    // Wake up now and then to notice shutdown.
    if let Err(e) =
        socket.set_nonblocking(false).and_then(|()| socket.set_read_timeout(Some(Duration::from_millis(200))))
    {
        tracing::error!(error = %e, "cannot configure the UDP socket");
        return;
    }
    while !shutdown.is_cancelled() {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux; they concern one client only.
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let request = &buf[..len];
        let response = if server.live.log_queries() {
            server.answer(request, Transport::Udp, peer)
        } else {
            cached(&server, &mut cache, request, peer)
        };
        if let Some(response) = response
            && let Err(e) = socket.send_to(&response, peer)
        {
            tracing::debug!(%peer, error = %e, "udp send failed");
        }
    }
}

/// A UDP answer through the loop's cache of encoded answers; what the cache cannot key takes the slow path.
fn cached(server: &Server, cache: &mut AnswerCache, request: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
    let started = Instant::now();
    let view = server.store.current();
    cache.refresh(&view, &server.store, server.live.generation());
    let key = Key::of(request);
    if let Some(key) = &key
        && let Some((bytes, outcome)) = cache.answer(key, request, view.serial, started)
    {
        server.queries.record(Transport::Udp, peer, outcome, (request.len(), bytes.len()), started.elapsed());
        return Some(bytes);
    }
    let reply = server.respond(&view, request, Transport::Udp);
    let sizes = (request.len(), reply.bytes.as_ref().map_or(0, Vec::len));
    server.queries.record(Transport::Udp, peer, reply.outcome, sizes, started.elapsed());
    if let (Some(key), Some(bytes), Some(reuse)) = (key, &reply.bytes, reply.reuse) {
        cache.insert(key, bytes, reply.outcome, reuse, started);
    }
    reply.bytes
}
