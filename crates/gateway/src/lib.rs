//! promsd-gateway: where Prometheus and hosts it cannot reach meet. It speaks PushProx's protocol (clients
//! poll out to it, Prometheus scrapes them through it with `proxy_url`), adds scoped, expiring service
//! tokens, and lists its clients for http_sd.
//!
//! - [`cli`]: the flags, PushProx's names where they mean the same.
//! - [`tokens`]: the token file (hashed secrets, expiry, scopes), read again when it changes.
//! - [`coordinator`]: polls, scrapes and pushes matched up, with bounds on each.
//! - [`handler`]: the HTTP endpoints on the one port.
//! - [`discovery`]: known clients as http_sd target groups.
//! - [`registry`]: known clients as SkyDNS records in etcd, under one lease.
//! - [`remote_write`], [`loki`]: `/api/v1/write` and `/loki/api/v1/push` forwarded upstream with each
//!   token's tenant label enforced ([`protobuf`]: the field-by-field rewriting; [`upstream`]: the client
//!   and the mapping of the upstream's answers).
//! - [`metrics`]: what `/metrics` exports.

pub mod cli;
pub mod coordinator;
pub mod discovery;
pub mod handler;
pub mod loki;
pub mod metrics;
pub mod protobuf;
pub mod registry;
pub mod remote_write;
pub mod tokens;
pub mod upstream;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use cli::Cli;
use coordinator::{Coordinator, Limits};
use handler::{Gateway, Settings};
use tokens::{TokenError, TokenSource};

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error(transparent)]
    Tokens(#[from] TokenError),
    #[error(transparent)]
    WebConfig(#[from] promsd_web::WebConfigError),
    #[error("upstream: {0}")]
    Upstream(promsd_client::SetupError),
    #[error("--remote-write.tenant-label {0:?} is not a label name Prometheus accepts")]
    TenantLabel(String),
    /// The etcd flags (for `--registry.zone` or `--token.etcd-key`) cannot work.
    #[error("etcd: {0}")]
    Registry(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How often the token file's stamp is looked at and expired registrations and tokens are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Everything `run` needs, read and checked: a bad token or web config file fails here, before listening.
pub struct Prepared {
    gateway: Arc<Gateway>,
    /// etcd's flags, when tokens or registrations live there.
    etcd: promsd_common::EtcdArgs,
    registry: Option<Arc<registry::RegistrySettings>>,
    web: Option<Arc<promsd_web::WebSource>>,
    limits: promsd_web::Limits,
}

pub fn prepare(cli: &Cli) -> Result<Prepared, GatewayError> {
    let tokens = match (&cli.token_file, &cli.token_etcd_key) {
        (Some(path), _) => Some(Arc::new(TokenSource::load(path)?)),
        (None, Some(key)) => {
            cli.etcd.check().map_err(|e| GatewayError::Registry(e.to_string()))?;
            Some(Arc::new(TokenSource::etcd(key)))
        }
        (None, None) => None,
    };
    let web = cli.web_config_file.as_deref().map(promsd_web::WebSource::load).transpose()?.map(Arc::new);
    let coordinator = Arc::new(Coordinator::new(Limits {
        registration: cli.registration_timeout,
        hold: cli.registration_timeout,
        max_clients: cli.registration_max_clients,
        max_pending: cli.web_max_connections,
    }));
    let settings = Settings {
        id_header: cli.token_id_header.clone(),
        secret_header: cli.token_secret_header.clone(),
        require_scrape_token: cli.scrape_require_token,
        default_scrape_timeout: cli.scrape_default_timeout,
        max_scrape_timeout: cli.scrape_max_timeout,
        max_body: cli.web_max_body_size,
    };
    let max_decoded = cli.web_max_body_size.saturating_mul(8);
    let remote_write = match &cli.remote_write_upstream {
        Some(url) => Some(remote_write::RemoteWrite {
            upstream: upstream::Upstream::new(url, "remote_write").map_err(GatewayError::Upstream)?,
            tenant_label: tenant_label(cli)?,
            max_decoded,
            series: Default::default(),
        }),
        None => None,
    };
    let loki = match &cli.loki_upstream {
        Some(url) => Some(loki::Loki {
            upstream: upstream::Upstream::new(url, "Loki").map_err(GatewayError::Upstream)?,
            tenant_label: tenant_label(cli)?,
            max_decoded,
            streams: Default::default(),
        }),
        None => None,
    };
    let gateway = Arc::new(Gateway {
        coordinator,
        tokens,
        remote_write,
        loki,
        settings,
        counts: handler::HandlerCounts::default(),
        web: Arc::new(promsd_web::WebMetrics::default()),
    });
    let limits = promsd_web::Limits { max_connections: cli.web_max_connections, ..promsd_web::Limits::default() };
    let registry = cli.registry_zone.as_deref().map(|zone| registry_settings(cli, zone)).transpose()?.map(Arc::new);
    Ok(Prepared { gateway, etcd: cli.etcd.clone(), registry, web, limits })
}

/// `--registry.*` and the etcd flags, checked: what no retry can fix fails the start.
fn registry_settings(cli: &Cli, zone: &str) -> Result<registry::RegistrySettings, GatewayError> {
    let bad = |e: &dyn std::fmt::Display| GatewayError::Registry(e.to_string());
    promsd_common::name::validate_name("--registry.zone", zone).map_err(|e| bad(&e))?;
    promsd_common::name::validate_label("--registry.service", &cli.registry_service).map_err(|e| bad(&e))?;
    promsd_common::name::validate_path(&cli.registry_path).map_err(|e| bad(&e))?;
    cli.etcd.check().map_err(|e| bad(&e))?;
    Ok(registry::RegistrySettings {
        etcd: cli.etcd.clone(),
        path: promsd_common::KeyPrefix::new(&cli.registry_path),
        zone: zone.trim_end_matches('.').to_ascii_lowercase(),
        service: cli.registry_service.clone(),
        lease_ttl: cli.registry_lease_ttl,
        owner: promsd_registration::owner(),
    })
}

/// The tenant label of remote_write and Loki, checked.
fn tenant_label(cli: &Cli) -> Result<String, GatewayError> {
    let label = &cli.remote_write_tenant_label;
    if !promsd_common::labels::is_label_name(label) || label.starts_with("__") {
        return Err(GatewayError::TenantLabel(label.clone()));
    }
    Ok(label.clone())
}

impl Prepared {
    pub fn tokens(&self) -> Option<usize> {
        self.gateway.tokens.as_ref().map(|t| t.current().len())
    }
}

/// Serves until `shutdown`. SIGHUP reads the token file again at once (it is also read when it changes).
pub async fn run(prepared: Prepared, listener: TcpListener, shutdown: CancellationToken) -> Result<(), GatewayError> {
    let Prepared { gateway, etcd, registry, web, limits } = prepared;
    let following =
        gateway.tokens.clone().map(|source| tokio::spawn(tokens::follow_etcd(source, etcd, shutdown.clone())));
    let registering =
        registry.map(|settings| tokio::spawn(registry::run(settings, gateway.coordinator.clone(), shutdown.clone())));
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let sweeper = tokio::spawn({
        let (gateway, shutdown) = (gateway.clone(), shutdown.clone());
        async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                let forced = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => false,
                    _ = hup.recv() => true,
                };
                sweep(&gateway, forced);
            }
        }
    });
    promsd_notify::ready("serving");
    let metrics = gateway.web.clone();
    promsd_web::serve_with_limits(listener, web, gateway, metrics, limits, shutdown.clone()).await;
    promsd_notify::stopping();
    let _ = sweeper.await;
    if let Some(registering) = registering {
        let _ = registering.await;
    }
    if let Some(following) = following {
        let _ = following.await;
    }
    Ok(())
}

fn sweep(gateway: &Gateway, forced: bool) {
    let tokens = gateway.tokens.as_ref().map(|source| {
        match source.refresh(forced) {
            Some(Ok(tokens)) => {
                tracing::info!(from = %source.describe(), tokens = tokens.len(), "token file read")
            }
            Some(Err(error)) => tracing::error!(%error, "cannot read the token file; keeping the tokens in force"),
            None => {}
        }
        source.current()
    });
    let revoked = gateway.coordinator.sweep(tokens.as_deref(), SystemTime::now());
    for client in revoked {
        tracing::warn!(%client, "client dropped: its token was revoked, changed or has expired");
    }
}
