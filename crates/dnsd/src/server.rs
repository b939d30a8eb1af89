//! DNS over UDP and TCP. Answers are computed from the current view snapshot without awaiting anything, so
//! each UDP socket runs one tight receive-answer-send loop; TCP connections get a task each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::cache::{AnswerCache, Key};
use crate::wire::{Transport, respond_with_outcome};

/// How long a TCP connection may sit idle between queries (RFC 7766 suggests seconds, not minutes).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open TCP connections beyond this wait in the kernel's accept queue.
const MAX_TCP_CONNECTIONS: usize = 1024;

fn answer(state: &State, request: &[u8], transport: Transport, peer: SocketAddr) -> Option<Vec<u8>> {
    let started = std::time::Instant::now();
    let view = state.view();
    let resolver = state.resolver(&view);
    let (response, outcome) = respond_with_outcome(request, transport, &resolver);
    let took = started.elapsed();
    state.queries.record(transport, outcome, took);
    if state.log_queries {
        query_log(peer, request, response.as_deref(), transport, took);
    }
    response
}

/// The RCODE as DNS tools print it (NOERROR, NXDOMAIN, ...).
fn rcode_name(code: hickory_proto::op::ResponseCode) -> String {
    use hickory_proto::op::ResponseCode::*;
    match code {
        NoError => "NOERROR".into(),
        FormErr => "FORMERR".into(),
        ServFail => "SERVFAIL".into(),
        NXDomain => "NXDOMAIN".into(),
        NotImp => "NOTIMP".into(),
        Refused => "REFUSED".into(),
        BADVERS => "BADVERS".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// One line per query, in the shape of CoreDNS's `log` plugin:
/// `127.0.0.1:52638 - 8316 "SRV IN node.prom.local. udp 41 false 4096" NOERROR qr,aa,rd 120 0.000082s`.
fn query_log(peer: SocketAddr, request: &[u8], response: Option<&[u8]>, transport: Transport, took: Duration) {
    use hickory_proto::op::Message;
    let Ok(query) = Message::from_vec(request) else {
        tracing::info!(%peer, "unparseable query of {} bytes", request.len());
        return;
    };
    let question = query.queries.first().map(|q| format!("{} {} {}", q.query_type(), q.query_class(), q.name()));
    let (do_bit, size) = query.edns.as_ref().map(|e| (e.flags().dnssec_ok, e.max_payload())).unwrap_or((false, 512));
    let proto = if transport == Transport::Udp { "udp" } else { "tcp" };
    let (rcode, flags, len) = match response.and_then(|r| Message::from_vec(r).ok().map(|m| (m, r.len()))) {
        Some((m, len)) => {
            let mut flags = vec!["qr"];
            for (set, name) in
                [(m.metadata.authoritative, "aa"), (m.metadata.truncation, "tc"), (m.metadata.recursion_desired, "rd")]
            {
                if set {
                    flags.push(name);
                }
            }
            (rcode_name(m.metadata.response_code), flags.join(","), len)
        }
        None => ("-".to_string(), "-".to_string(), 0),
    };
    tracing::info!(
        "{peer} - {} \"{} {proto} {} {do_bit} {size}\" {rcode} {flags} {len} {:.6}s",
        query.metadata.id,
        question.unwrap_or_default(),
        request.len(),
        took.as_secs_f64()
    );
}

/// Serves one UDP socket on a dedicated OS thread with blocking receives: answers need no await, and a
/// thread that sleeps in recvfrom costs less per packet than a task woken through the reactor.
pub fn serve_udp(socket: std::net::UdpSocket, state: Arc<State>, shutdown: CancellationToken) {
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
        let response = if state.log_queries {
            answer(&state, request, Transport::Udp, peer)
        } else {
            cached(&state, &mut cache, request)
        };
        if let Some(response) = response
            && let Err(e) = socket.send_to(&response, peer)
        {
            tracing::debug!(%peer, error = %e, "udp send failed");
        }
    }
}

/// A UDP answer through the loop's cache of encoded answers; what the cache cannot key takes the slow path.
fn cached(state: &State, cache: &mut AnswerCache, request: &[u8]) -> Option<Vec<u8>> {
    let started = std::time::Instant::now();
    let view = state.view_arc();
    cache.refresh(&view);
    let key = Key::of(request);
    if let Some(key) = &key
        && let Some((bytes, outcome)) = cache.answer(key, request)
    {
        state.queries.record(Transport::Udp, outcome, started.elapsed());
        return Some(bytes);
    }
    let resolver = state.resolver(&view);
    let (response, outcome) = respond_with_outcome(request, Transport::Udp, &resolver);
    state.queries.record(Transport::Udp, outcome, started.elapsed());
    if let (Some(key), Some(bytes)) = (key, &response) {
        cache.insert(key, bytes, outcome);
    }
    response
}

pub async fn serve_tcp(listener: TcpListener, state: Arc<State>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
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
                _ = connection(stream, peer, &state) => {}
            }
            drop(permit);
        });
    }
}

/// Serves length-prefixed queries on one connection, one after another, until it closes or idles out.
async fn connection(mut stream: TcpStream, peer: SocketAddr, state: &State) {
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
        let Some(response) = answer(state, &buf, Transport::Tcp, peer) else { return };
        let Ok(response_len) = u16::try_from(response.len()) else { return };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&response_len.to_be_bytes());
        framed.extend_from_slice(&response);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
