//! `registrar agent`: one port for all of a host's exporters. Serves each configured module at
//! `/proxy?module=NAME` and registers every module in etcd as a SkyDNS record pointing at that port
//! (service = module name), so Prometheus finds each module through dnsd and scrapes it through the proxy.
//! Registrations are kept while the agent runs (with a lease, when configured) and removed when it stops.

pub mod config;
pub mod exposition;
pub mod module;
pub mod server;
pub mod webconfig;

use std::sync::Arc;
use std::time::Duration;

use promsd_common::Service;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::{IdentityArgs, LocationArgs};
use crate::registration::{Location, Registration, RegistrationError, key_for};
use crate::run;
use crate::status::Status;
use crate::store::Store;
use config::AgentConfig;

/// The records of every module: `<module>.<zone>` -> this host's address and the proxy's port.
pub fn registrations(config: &AgentConfig, port: u16) -> Result<Vec<Registration>, RegistrationError> {
    let location = Location::from_args(&LocationArgs {
        zone: config.zone.clone(),
        path: config.path.clone(),
        base_path: config.base_path.clone(),
        etcd: config.etcd_args(),
        timeout: Duration::from_secs(10),
    })?;
    config
        .modules
        .keys()
        .map(|module| {
            let identity = IdentityArgs { service: module.clone(), instance: config.instance.clone() };
            let key = key_for(&location, &identity)?;
            let service = Service { host: config.address.clone(), port: i64::from(port), ..Service::default() };
            Ok(Registration { key, service })
        })
        .collect()
}

/// Serves and registers until `shutdown`, then deregisters.
pub async fn run(
    config: AgentConfig,
    web: Option<server::WebSource>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let registrations = registrations(&config, port).map_err(|e| std::io::Error::other(e.to_string()))?;
    let etcd = config.etcd_args();
    let lease_ttl = config.lease_ttl;
    let proxy = Arc::new(server::Proxy { config, metrics: server::ProxyMetrics::default(), web });
    let server = tokio::spawn(server::serve(listener, proxy, shutdown.clone()));
    let stop = CancellationToken::new();
    let mut keepers = Vec::new();
    for registration in &registrations {
        let status = Arc::new(Status::default());
        let task = tokio::spawn(run::keep_registered(
            etcd.clone(),
            registration.clone(),
            lease_ttl,
            status.clone(),
            stop.clone(),
        ));
        keepers.push((registration, status, task));
    }
    tracing::info!(port, modules = registrations.len(), "agent serving");
    shutdown.cancelled().await;
    stop.cancel();
    let _ = server.await;
    for (registration, status, task) in keepers {
        let _ = task.await;
        let lease = status.lease.lock().ok().and_then(|l| *l);
        run::deregister(Store::new(etcd.clone(), Duration::from_secs(10)), registration, lease).await;
    }
    Ok(())
}
