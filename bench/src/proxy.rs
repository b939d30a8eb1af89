//! A TCP forwarder between dnsd and etcd that can be cut: every forwarded connection closed and new ones
//! closed as soon as they are accepted, until it is restored. This is how the scale run takes etcd away from
//! dnsd (and only from dnsd) while it compacts the history dnsd's watch would resume from.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

struct Shared {
    target: SocketAddr,
    cut: AtomicBool,
    /// Bumped by `cut`: every connection task watches it and closes both sides when it changes.
    epoch: watch::Sender<u64>,
    refused: AtomicU64,
    forwarded: AtomicU64,
    /// When the first connection after the last `restore` was forwarded.
    first_after_restore: Mutex<Option<Instant>>,
}

pub struct Forwarder {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    /// Listens on 127.0.0.1 (a free port) and forwards to `target`; must be called inside a runtime.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the forwarder")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            cut: AtomicBool::new(false),
            epoch: watch::channel(0).0,
            refused: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            first_after_restore: Mutex::new(None),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    /// Closes every forwarded connection and every new one from now on.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.epoch.send_modify(|e| *e += 1);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        if let Ok(mut first) = self.shared.first_after_restore.lock() {
            *first = None;
        }
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// When the first connection since the last `restore` was forwarded, if one was.
    pub fn first_after_restore(&self) -> Option<Instant> {
        self.shared.first_after_restore.lock().ok().and_then(|f| *f)
    }

    /// Connections closed while cut, and connections forwarded.
    pub fn counts(&self) -> (u64, u64) {
        (self.shared.refused.load(Ordering::Relaxed), self.shared.forwarded.load(Ordering::Relaxed))
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { continue };
        let mut epoch = shared.epoch.subscribe();
        epoch.mark_unchanged();
        // Checked after subscribing: a cut from here on is seen by the connection's task.
        if shared.cut.load(Ordering::SeqCst) {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            drop(inbound);
            continue;
        }
        shared.forwarded.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = shared.first_after_restore.lock() {
            first.get_or_insert_with(Instant::now);
        }
        let target = shared.target;
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(target).await else { return };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = epoch.changed() => {}
            }
            // Dropping both streams closes them.
        });
    }
}
