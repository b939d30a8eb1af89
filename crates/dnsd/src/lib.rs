//! dnsd: authoritative DNS for SkyDNS records kept in etcd. A watch keeps an in-memory view current and every
//! query is answered from it, so answers cost no etcd round trip and keep coming while etcd is away.
//!
//! Dependencies point one way, from the sockets down to the configuration:
//!
//! - [`config`]: flags and Corefile, parsed once into a plain [`Config`]; the zones.
//! - [`store`]: the view (a persistent map, published as snapshots), how etcd's data and events become it,
//!   and the leases it uses.
//! - [`answer`]: one question to the sections of an answer, pure functions over a snapshot.
//! - [`wire`]: bytes to messages and back: parsing, EDNS, encoding within the transport's limit.
//! - [`net`]: the UDP and TCP loops, with the UDP answer cache.
//! - [`transfer`]: AXFR, IXFR and NOTIFY to secondaries, behind networks and TSIG keys.
//! - [`sd`]: Prometheus's HTTP service discovery, the same targets as SRV answers with their labels.
//! - [`web`] and [`metrics`]: the HTTP endpoints and what `/metrics` says.
//!
//! [`run`] takes already-bound sockets, so tests run the server in process on port 0.

pub mod answer;
pub mod config;
pub mod metrics;
pub mod net;
pub mod sd;
pub mod store;
pub mod transfer;
pub mod web;
pub mod wire;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use config::{Cli, Config, Settings};
pub use net::Listeners;

/// Runs dnsd until `shutdown` is cancelled: follows etcd, serves the web endpoints at once, and starts
/// answering DNS after the first load. Ends early, with the reason, when etcd refuses dnsd before the first
/// load in a way no retry can change (wrong credentials, no permission for the prefix).
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> Result<(), RunError> {
    let store = Arc::new(store::Store::new(config.catalog.clone()));
    let queries = Arc::new(match listeners.udp.first().and_then(|s| s.local_addr().ok()) {
        Some(dns) if config.coredns_metrics => {
            let zones: Vec<&str> = config.catalog.zones().iter().map(|z| z.name.as_str()).collect();
            metrics::QueryMetrics::with_coredns(metrics::CorednsMetrics::new(metrics::server_label(dns), &zones))
        }
        _ => metrics::QueryMetrics::default(),
    });
    let transfers = Arc::new(transfer::Transfers::new(config.transfer.clone()));
    if config.transfer.enabled() {
        store.keep_history(config.transfer.history + 1); // the current snapshot and the history before it
    }
    let server = Arc::new(net::Server {
        store: store.clone(),
        live: config.live.clone(),
        queries: queries.clone(),
        tcp: config.tcp,
        transfers: transfers.clone(),
    });
    let web_metrics = Arc::new(promsd_web::WebMetrics::default());
    let web = Arc::new(web::Web::new(store.clone(), queries, transfers.clone(), web_metrics.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    let mut udp_threads = Vec::new();
    let mut follow = tokio::spawn(store::follow::follow(config.etcd.clone(), store.clone(), shutdown.clone()));
    tasks.spawn(store::members::probe(config.etcd.clone(), store.members.clone(), shutdown.clone()));
    tasks.spawn(store::leases::track(config.etcd, store.clone(), config.live, shutdown.clone()));
    tasks.spawn(transfer::notify::run(store.clone(), transfers, shutdown.clone()));
    for listener in listeners.web {
        let (source, metrics) = (config.web.clone(), web_metrics.clone());
        tasks.spawn(promsd_web::serve(listener, source, web.clone(), metrics, shutdown.clone()));
    }
    promsd_notify::status("waiting for the first load from etcd");
    tokio::select! {
        _ = shutdown.cancelled() => {}
        refused = &mut follow => {
            shutdown.cancel();
            while tasks.join_next().await.is_some() {}
            return match refused {
                Ok(Err(refused)) => Err(RunError::Refused(refused)),
                _ => Ok(()),
            };
        }
        _ = store.wait_ready() => {
            tracing::info!("serving DNS");
            promsd_notify::ready("serving DNS");
            for socket in listeners.udp {
                match socket.into_std() {
                    Ok(socket) => {
                        let (server, shutdown) = (server.clone(), shutdown.clone());
                        udp_threads.push(std::thread::spawn(move || net::serve_udp(socket, server, shutdown)));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot serve a UDP socket"),
                }
            }
            for listener in listeners.tcp {
                tasks.spawn(net::serve_tcp(listener, server.clone(), shutdown.clone()));
            }
        }
    }
    shutdown.cancelled().await;
    promsd_notify::stopping();
    let _ = follow.await; // after the first load it only returns at shutdown
    while tasks.join_next().await.is_some() {}
    for thread in udp_threads {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    Ok(())
}

/// Why [`run`] ended before its shutdown.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Refused(#[from] store::follow::Refused),
}
