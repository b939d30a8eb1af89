//! dnsd: authoritative DNS for SkyDNS records kept in etcd. A watch keeps an in-memory view current and every
//! query is answered from it, so answers cost no etcd round trip and keep coming while etcd is away.
//!
//! [`run`] takes already-bound sockets, so tests run the server in process on port 0.

pub mod answer;
pub mod cache;
pub mod config;
pub mod corefile;
pub mod encode;
pub mod ingest;
pub mod lease;
pub mod metrics;
pub mod server;
pub mod view;
pub mod watch;
pub mod web;
pub mod wire;
pub mod zone;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

pub use config::{Cli, Config, Settings};
use view::View;
use zone::Catalog;

/// What the DNS loops, the watch and the web endpoints share.
pub struct State {
    pub catalog: Catalog,
    pub leases: lease::LeaseTable,
    pub lease_bounds: lease::LeaseBounds,
    pub log_queries: bool,
    pub queries: metrics::QueryMetrics,
    /// Values skipped because they do not parse (each key and revision counted once).
    pub malformed: AtomicU64,
    /// Full reloads after the first (after compaction).
    pub resyncs: AtomicU64,
    /// How long the last full load took (read, parse, publish), in microseconds.
    last_load_micros: AtomicU64,
    connected: AtomicBool,
    /// When etcd last confirmed the view is current (a watch message or progress notification).
    synced: std::sync::Mutex<Option<std::time::Instant>>,
    view: ArcSwap<View>,
    ready: tokio::sync::watch::Sender<bool>,
}

impl State {
    pub fn new(config: &Config) -> Self {
        Self {
            catalog: config.catalog.clone(),
            leases: lease::LeaseTable::default(),
            lease_bounds: config.lease_bounds,
            log_queries: config.log_queries,
            queries: metrics::QueryMetrics::default(),
            malformed: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            last_load_micros: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            synced: std::sync::Mutex::new(None),
            view: ArcSwap::from_pointee(View::default()),
            ready: tokio::sync::watch::channel(false).0,
        }
    }

    /// Whether a watch on etcd is established right now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    pub fn set_last_load(&self, took: std::time::Duration) {
        self.last_load_micros.store(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn last_load(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.last_load_micros.load(Ordering::Relaxed))
    }

    pub fn mark_synced(&self) {
        if let Ok(mut synced) = self.synced.lock() {
            *synced = Some(std::time::Instant::now());
        }
    }

    /// How long ago etcd last confirmed the view is current; None before the first load.
    pub fn view_age(&self) -> Option<std::time::Duration> {
        self.synced.lock().ok().and_then(|s| *s).map(|at| at.elapsed())
    }

    pub fn malformed_skipped(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// A resolver over the current snapshot.
    pub fn resolver<'a>(&'a self, view: &'a View) -> answer::Resolver<'a> {
        answer::Resolver { catalog: &self.catalog, view, leases: &self.leases, lease_bounds: self.lease_bounds }
    }

    /// The current snapshot; queries hold it while they answer, so a concurrent swap never tears an answer.
    pub fn view(&self) -> arc_swap::Guard<Arc<View>> {
        self.view.load()
    }

    /// The current snapshot as a shareable pointer (its identity tells caches the view changed).
    pub fn view_arc(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// Replaces the snapshot and marks dnsd ready.
    pub fn publish(&self, view: &View) {
        self.view.store(Arc::new(view.clone()));
        self.ready.send_replace(true);
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
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
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Runs dnsd until `shutdown` is cancelled: follows etcd, serves the web endpoints at once, and starts
/// answering DNS after the first load.
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) {
    let state = Arc::new(State::new(&config));
    let mut tasks = tokio::task::JoinSet::new();
    let mut udp_threads = Vec::new();
    tasks.spawn(watch::follow(config.etcd.clone(), state.clone(), shutdown.clone()));
    tasks.spawn(lease::track(config.etcd, state.clone(), shutdown.clone()));
    for listener in listeners.web {
        tasks.spawn(web::serve(listener, state.clone(), shutdown.clone()));
    }
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = state.wait_ready() => {
            tracing::info!("serving DNS");
            for socket in listeners.udp {
                match socket.into_std() {
                    Ok(socket) => {
                        let (state, shutdown) = (state.clone(), shutdown.clone());
                        udp_threads.push(std::thread::spawn(move || server::serve_udp(socket, state, shutdown)));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot serve a UDP socket"),
                }
            }
            for listener in listeners.tcp {
                tasks.spawn(server::serve_tcp(listener, state.clone(), shutdown.clone()));
            }
        }
    }
    shutdown.cancelled().await;
    while tasks.join_next().await.is_some() {}
    for thread in udp_threads {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}
