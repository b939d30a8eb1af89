//! `registrar agent`: one port for all of a host's exporters. Serves each configured module at
//! `/proxy?module=NAME` and registers every module in etcd as a SkyDNS record pointing at that port
//! (service = module name), so Prometheus finds each module through dnsd and scrapes it through the proxy.
//! Registrations are kept while the agent runs (with a lease, when configured) and removed when it stops.

pub mod backend_tls;
pub mod config;
pub mod exposition;
pub mod module;
pub mod server;
pub mod webconfig;

use std::collections::BTreeMap;
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
use config::{AgentConfig, ConfigError};

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

/// Where the configuration comes from, to read it again on SIGHUP.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: std::path::PathBuf,
    /// `--config.dirs`: one module per file, named after the file.
    pub dirs: Vec<std::path::PathBuf>,
}

impl ConfigSource {
    pub fn load(&self) -> Result<AgentConfig, ConfigError> {
        let mut config = AgentConfig::load(&self.path)?;
        for dir in &self.dirs {
            for (name, module) in config::load_module_dir(dir)? {
                if config.modules.insert(name.clone(), module).is_some() {
                    return Err(ConfigError::Duplicate { module: name, path: self.path.clone(), dir: dir.clone() });
                }
            }
        }
        Ok(config)
    }
}

/// One registration being kept, with what stops it.
struct Kept {
    registration: Registration,
    status: Arc<Status>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn keep(etcd: &promsd_common::EtcdArgs, registration: Registration, lease_ttl: Option<Duration>) -> Kept {
    let status = Arc::new(Status::default());
    let stop = CancellationToken::new();
    let task =
        tokio::spawn(run::keep_registered(etcd.clone(), registration.clone(), lease_ttl, status.clone(), stop.clone()));
    Kept { registration, status, stop, task }
}

async fn release(etcd: &promsd_common::EtcdArgs, kept: Kept) {
    kept.stop.cancel();
    let _ = kept.task.await;
    let lease = kept.status.lease.lock().ok().and_then(|l| *l);
    run::deregister(Store::new(etcd.clone(), Duration::from_secs(10)), &kept.registration, lease).await;
}

/// Serves and registers until `shutdown`, then deregisters. SIGHUP reads the configuration again: the new
/// module set answers the next request (scrapes in flight finish with the old one), and the registrations
/// follow it.
pub async fn run(
    source: ConfigSource,
    web: Option<server::WebSource>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let config = source.load().map_err(std::io::Error::other)?;
    let port = listener.local_addr()?.port();
    let mut etcd = config.etcd_args();
    let mut kept: BTreeMap<String, Kept> = BTreeMap::new();
    for registration in registrations(&config, port).map_err(std::io::Error::other)? {
        kept.insert(registration.key.clone(), keep(&etcd, registration, config.lease_ttl));
    }
    tracing::info!(port, modules = kept.len(), "agent serving");
    let proxy = Arc::new(server::Proxy {
        config: arc_swap::ArcSwap::from_pointee(config),
        metrics: server::ProxyMetrics::default(),
        web,
    });
    let server = tokio::spawn(server::serve(listener, proxy.clone(), shutdown.clone()));
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = hup.recv() => {}
        }
        let config = match source.load() {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(error = %e, "cannot reload the configuration; keeping the running one");
                continue;
            }
        };
        let wanted = match registrations(&config, port) {
            Ok(wanted) => wanted,
            Err(e) => {
                tracing::error!(error = %e, "cannot reload the configuration; keeping the running one");
                continue;
            }
        };
        let lease_ttl = config.lease_ttl;
        let new_etcd = config.etcd_args();
        proxy.config.store(Arc::new(config));
        // Keep what is unchanged; release what went or changed; start what is new.
        let mut next = BTreeMap::new();
        for registration in wanted {
            match kept.remove(&registration.key) {
                Some(old) if old.registration.service == registration.service => {
                    next.insert(registration.key.clone(), old);
                }
                Some(old) => {
                    release(&etcd, old).await;
                    next.insert(registration.key.clone(), keep(&new_etcd, registration, lease_ttl));
                }
                None => {
                    next.insert(registration.key.clone(), keep(&new_etcd, registration, lease_ttl));
                }
            }
        }
        for (_, gone) in std::mem::take(&mut kept) {
            release(&etcd, gone).await;
        }
        kept = next;
        etcd = new_etcd;
        tracing::info!(modules = kept.len(), "configuration reloaded");
    }
    let _ = server.await;
    for (_, registration) in kept {
        release(&etcd, registration).await;
    }
    Ok(())
}
