//! `registrar agent`: one port for all of a host's exporters. Serves each configured module at
//! `/proxy?module=NAME` and registers every module in etcd as a SkyDNS record pointing at that port
//! (service = module name), so Prometheus finds each module through dnsd and scrapes it through the proxy.
//! Registrations are kept while the agent runs (with a lease, when configured) and removed when it stops.
//!
//! - [`config`]: the agent's file (and `--config.dirs`), parsed strictly in one place.
//! - [`module`]: a loaded module with the backend built from its own settings, and one scrape of it.
//! - [`backend`]: http (per-module TLS client and connections), exec and file backends.
//! - [`exposition`]: the check that a backend's output is what Prometheus accepts.
//! - [`proxy`]: the HTTP endpoints, served by promsd's one web stack.
//! - [`gateway`]: polling a gateway (promsd-gateway or PushProx) for scrapes, for hosts behind NAT.

pub mod backend;
pub mod config;
pub mod exposition;
pub mod gateway;
pub mod module;
pub mod proxy;

use std::collections::BTreeMap;
use std::sync::Arc;

use promsd_common::{Lenient, Pairs, Service};
use promsd_registration::keeper::RELEASE_TIMEOUT;
use promsd_registration::{Identity, Keeper, Location, Registration, RegistrationError, Status, key_for};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use config::{AgentConfig, ConfigError};
use module::Loaded;

#[derive(Debug, Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    /// The `etcd` section has what no retry can fix (a malformed endpoint, an unreadable file).
    #[error("{path}: etcd: {source}")]
    Etcd { path: std::path::PathBuf, source: promsd_common::EtcdError },
    /// etcd refused these credentials at start (wrong password, no permission for a module's key).
    #[error(transparent)]
    Refused(#[from] promsd_registration::StoreError),
    #[error("{path}: {source}")]
    Gateway { path: std::path::PathBuf, source: gateway::GatewayError },
    /// Registering names the port Prometheus scrapes; an agent that only polls a gateway has none.
    #[error("{0}: etcd and address are set, but the agent listens on no port to register (--web.listen-address)")]
    NothingToRegister(std::path::PathBuf),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The records of every module: `<instance>.<module>.<zone>` -> this host's address and the proxy's port,
/// with what one http_sd job needs to scrape the module (`scheme`, `/proxy`, `module=<name>`) and its labels.
/// None without `etcd` and `address` (proxy only).
pub fn registrations(config: &AgentConfig, port: u16, scheme: &str) -> Result<Vec<Registration>, RegistrationError> {
    let Some(address) = &config.address else { return Ok(Vec::new()) };
    let location = Location::new(&config.path, config.base_path.as_deref(), config.zone.as_deref())?;
    promsd_registration::validate_address(address)?;
    config
        .modules
        .iter()
        .map(|(module, settings)| {
            let identity = Identity { service: module.clone(), instance: config.instance.clone() };
            let key = key_for(&location, &identity)?;
            let mut labels = config.labels.clone();
            labels.extend(settings.labels.clone());
            let service = Service {
                host: address.clone(),
                port: i64::from(port),
                owner: promsd_registration::owner(),
                labels: if labels.is_empty() { Lenient::Absent } else { Lenient::Valid(labels.into_iter().collect()) },
                scheme: Lenient::Valid(scheme.to_string()),
                metrics_path: Lenient::Valid("/proxy".to_string()),
                params: Lenient::Valid(Pairs::from_iter([("module", module.as_str())])),
                ..Service::default()
            };
            Ok(Registration { key, service })
        })
        .collect()
}

/// The scheme the proxy serves now: https when the web configuration in force has TLS. It is read again with
/// the configuration on SIGHUP.
fn scheme(web: Option<&promsd_web::WebSource>) -> &'static str {
    if web.and_then(|w| w.current()).is_some_and(|w| w.tls.is_some()) { "https" } else { "http" }
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

    /// The configuration with every module's backend built and its etcd settings checked.
    pub fn load_modules(&self) -> Result<Loaded, AgentError> {
        let config = self.load()?;
        if config.registers() {
            config.etcd_args().check().map_err(|source| AgentError::Etcd { path: self.path.clone(), source })?;
        }
        Ok(Loaded::new(config)?)
    }
}

fn keep(etcd: &promsd_common::EtcdArgs, registration: Registration, config: &AgentConfig) -> Keeper {
    Keeper::start(etcd.clone(), registration, config.lease_ttl, Arc::new(Status::default()))
}

fn tunnel(
    source: &ConfigSource,
    flags: &gateway::GatewayFlags,
    config: &AgentConfig,
    port: u16,
) -> Result<(config::GatewaySection, Option<Arc<gateway::Tunnel>>), AgentError> {
    let section = flags.over(&config.gateway);
    let tunnel = gateway::Tunnel::new(&section, port)
        .map_err(|error| AgentError::Gateway { path: source.path.clone(), source: error })?;
    Ok((section, tunnel.map(Arc::new)))
}

/// Starts the poll loop of `tunnel`, stopped by cancelling the returned token (or `shutdown`).
fn start_tunnel(
    tunnel: Option<Arc<gateway::Tunnel>>,
    proxy: &Arc<proxy::Proxy>,
    shutdown: &CancellationToken,
) -> Option<(CancellationToken, tokio::task::JoinHandle<()>)> {
    let tunnel = tunnel?;
    let stop = shutdown.child_token();
    let task = tokio::spawn(gateway::run(tunnel, proxy.clone(), proxy.tunnel.clone(), stop.clone()));
    Some((stop, task))
}

/// Serves and registers until `shutdown`, then deregisters. SIGHUP reads the configuration again: the new
/// module set (with backends built from its settings) answers the next request, scrapes in flight finish
/// with the old one, and the registrations follow it. A configuration that cannot be loaded keeps the
/// running one.
pub async fn run(
    source: ConfigSource,
    web: Option<Arc<promsd_web::WebSource>>,
    listeners: Vec<TcpListener>,
    flags: gateway::GatewayFlags,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let loaded = source.load_modules()?;
    let port = match listeners.first() {
        Some(first) => first.local_addr()?.port(),
        None if loaded.config.registers() => return Err(AgentError::NothingToRegister(source.path.clone())),
        None => gateway::DEFAULT_TARGET_PORT,
    };
    let (mut section, tunnel) = tunnel(&source, &flags, &loaded.config, port)?;
    if tunnel.is_none() && listeners.is_empty() {
        return Err(std::io::Error::other("no address to listen on and no gateway to poll").into());
    }
    let mut etcd = loaded.config.etcd_args();
    let mut kept: BTreeMap<String, Keeper> = BTreeMap::new();
    let wanted = registrations(&loaded.config, port, scheme(web.as_deref()))?;
    let keys: Vec<String> = wanted.iter().map(|r| r.key.clone()).collect();
    let mut registers = loaded.config.registers();
    if registers {
        promsd_registration::check_at_start(&etcd, &keys).await?;
    } else {
        proxy_only(&source);
    }
    for registration in wanted {
        kept.insert(registration.key.clone(), keep(&etcd, registration, &loaded.config));
    }
    tracing::info!(port, modules = loaded.config.modules.len(), registered = kept.len(), "agent serving");
    let web_metrics = Arc::new(promsd_web::WebMetrics::default());
    let proxy = Arc::new(proxy::Proxy {
        loaded: arc_swap::ArcSwap::from_pointee(loaded),
        metrics: proxy::ProxyMetrics::default(),
        web: web_metrics.clone(),
        tunnel: Arc::new(gateway::TunnelCounts::default()),
    });
    let mut polling = start_tunnel(tunnel, &proxy, &shutdown);
    let mut servers = tokio::task::JoinSet::new();
    for listener in listeners {
        let (web, proxy, metrics) = (web.clone(), proxy.clone(), web_metrics.clone());
        servers.spawn(promsd_web::serve(listener, web, proxy, metrics, shutdown.clone()));
    }
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    promsd_notify::ready(&format!("serving {} modules", proxy.loaded.load().modules.len()));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = hup.recv() => {}
        }
        let (loaded, wanted) = match source.load_modules().and_then(|loaded| {
            let wanted = registrations(&loaded.config, port, scheme(web.as_deref()))?;
            Ok((loaded, wanted))
        }) {
            Ok(next) => next,
            Err(error) => {
                tracing::error!(%error, "cannot reload the configuration; keeping the running one");
                continue;
            }
        };
        // A changed gateway section starts a new poll loop; a broken one keeps the running loop.
        match self::tunnel(&source, &flags, &loaded.config, port) {
            Ok((new_section, new_tunnel)) if new_section != section => {
                if let Some((stop, task)) = polling.take() {
                    stop.cancel();
                    let _ = task.await;
                }
                polling = start_tunnel(new_tunnel, &proxy, &shutdown);
                section = new_section;
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "cannot use the new gateway settings; keeping the running ones"),
        }
        let new_etcd = loaded.config.etcd_args();
        if registers && !loaded.config.registers() {
            proxy_only(&source);
        }
        registers = loaded.config.registers();
        // Keep what is unchanged; release what went or changed; start what is new.
        let mut next = BTreeMap::new();
        let mut gone = Vec::new();
        for registration in wanted {
            match kept.remove(&registration.key) {
                Some(old) if old.registration().service == registration.service && new_etcd == etcd => {
                    next.insert(registration.key.clone(), old);
                }
                Some(old) => {
                    gone.push(old);
                    next.insert(registration.key.clone(), keep(&new_etcd, registration, &loaded.config));
                }
                None => {
                    next.insert(registration.key.clone(), keep(&new_etcd, registration, &loaded.config));
                }
            }
        }
        proxy.loaded.store(Arc::new(loaded));
        gone.extend(std::mem::take(&mut kept).into_values());
        release_all(gone).await;
        kept = next;
        etcd = new_etcd;
        tracing::info!(modules = kept.len(), "configuration reloaded");
        promsd_notify::status(&format!("serving {} modules", kept.len()));
    }
    promsd_notify::stopping();
    if let Some((_, task)) = polling {
        let _ = task.await;
    }
    servers.join_all().await;
    release_all(kept.into_values().collect()).await;
    Ok(())
}

/// Said once when the agent starts (or a reload makes it) proxy only, as exporter_exporter is.
fn proxy_only(source: &ConfigSource) {
    tracing::info!(config = %source.path.display(), "no etcd and address configured: proxying only, registering nothing");
}

/// Removes registrations concurrently, so stopping with etcd down takes one timeout, not one per module.
async fn release_all(keepers: Vec<Keeper>) {
    let mut releases = tokio::task::JoinSet::new();
    for keeper in keepers {
        releases.spawn(keeper.release(RELEASE_TIMEOUT));
    }
    while releases.join_next().await.is_some() {}
}
