//! DNS over UDP and TCP. Answers are computed from the current snapshot without awaiting anything, so each
//! UDP socket runs one tight receive-answer-send loop on its own thread; TCP connections get a task each,
//! bounded in number.

pub mod cache;
mod querylog;
mod tcp;
mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::{TcpListener, UdpSocket};

pub use tcp::serve_tcp;
pub use udp::serve_udp;

use crate::answer::Resolver;
use crate::config::{Live, TcpLimits};
use crate::metrics::QueryMetrics;
use crate::store::{Store, View};
use crate::wire::{self, Reply, Transport};

/// What the DNS loops answer from and report to.
pub struct Server {
    pub store: Arc<Store>,
    /// The lease TTL bounds and the query log, as the last SIGHUP left them.
    pub live: Arc<Live>,
    pub queries: Arc<QueryMetrics>,
    pub tcp: TcpLimits,
    pub transfers: Arc<crate::transfer::Transfers>,
}

impl Server {
    /// Answers one request from `view`.
    fn respond(&self, view: &View, request: &[u8], transport: Transport) -> Reply {
        let resolver = Resolver::new(self.store.catalog(), view, &self.store.leases, self.live.lease_bounds());
        wire::respond(request, transport, &resolver)
    }

    /// Answers one request from the current snapshot, counted and logged, without any cache.
    fn answer(&self, request: &[u8], transport: Transport, peer: SocketAddr) -> Option<Vec<u8>> {
        let started = Instant::now();
        let view = self.store.current();
        let reply = self.respond(&view, request, transport);
        let took = started.elapsed();
        let sizes = (request.len(), reply.bytes.as_ref().map_or(0, Vec::len));
        self.queries.record(transport, peer, reply.outcome, sizes, took);
        if self.live.log_queries() {
            querylog::log(peer, request, reply.bytes.as_deref(), transport, took);
        }
        reply.bytes
    }
}

/// The sockets dnsd serves on.
pub struct Listeners {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
    pub web: Vec<TcpListener>,
}

impl Listeners {
    /// Binds DNS on `dns` (UDP and TCP) and HTTP on `web`. With a fixed port, one UDP socket per core shares
    /// the port through SO_REUSEPORT so the kernel spreads queries over receive loops.
    pub fn bind(dns: SocketAddr, web: &[SocketAddr]) -> std::io::Result<Self> {
        let udp_count =
            if dns.port() == 0 { 1 } else { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) };
        let mut udp = Vec::with_capacity(udp_count);
        for _ in 0..udp_count {
            udp.push(bind_udp(dns, udp_count > 1)?);
        }
        let tcp = vec![bind_tcp(dns)?];
        let web = web.iter().map(|addr| bind_tcp(*addr)).collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self { udp, tcp, web })
    }
}

fn bind_udp(addr: SocketAddr, reuse_port: bool) -> std::io::Result<UdpSocket> {
    UdpSocket::from_std(promsd_common::listen::bind(addr, socket2::Type::DGRAM, reuse_port)?.into())
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    promsd_common::listen::tcp_listener(addr)
}
