//! registrar: writes SkyDNS records for a host's exporters into etcd and removes them again, either as
//! one-shot `set` / `rm` (systemd ExecStartPre / ExecStopPost), by supervising the exporter (`run`), or for
//! every exporter of the host behind one port (`agent`, in the promsd-agent crate). The work is done by
//! promsd-registration; this crate is the command line over it.
//!
//! - [`cli`]: the flags (a contract with units and scripts), converted to the core's types.
//! - [`list`]: `ls` output.
//! - [`supervise`]: `run`, one exporter as a child process.
//! - [`web`]: `run`'s status port.

pub mod cli;
pub mod list;
pub mod supervise;
pub mod web;

use std::sync::Arc;

use cli::{Cli, Command, Output};
use promsd_agent::AgentError;
use promsd_registration::{Registration, RegistrationError, Status, Store, StoreError, key_for};
use promsd_web::{WebConfigError, WebMetrics, WebSource};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    WebConfig(#[from] WebConfigError),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: std::net::SocketAddr, source: std::io::Error },
    #[error("registrar run needs --port to tell when the exporter is up")]
    NoPort,
    /// etcd settings no retry can fix: refused before the exporter is started.
    #[error(transparent)]
    Etcd(#[from] promsd_common::EtcdError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn listen(addresses: &[std::net::SocketAddr]) -> Result<Vec<tokio::net::TcpListener>, Error> {
    addresses
        .iter()
        .map(|&address| {
            promsd_common::listen::tcp_listener(address).map_err(|source| Error::Listen { address, source })
        })
        .collect()
}

fn web_source(path: Option<&std::path::Path>) -> Result<Option<Arc<WebSource>>, Error> {
    Ok(path.map(WebSource::load).transpose()?.map(Arc::new))
}

/// Carries out one command; returns the process exit code (`run` passes on the exporter's).
pub async fn execute(cli: Cli) -> Result<i32, Error> {
    match cli.command {
        Command::Set(args) => {
            let location = args.location.location()?;
            let registration = Registration::new(&location, &args.identity.identity(), &args.value.value())?;
            let value = registration.service.to_json();
            Store::new(args.location.etcd, args.location.timeout).put(&registration.key, &value).await?;
            tracing::info!(key = %registration.key, %value, "registered");
            Ok(0)
        }
        Command::Rm(args) => {
            let location = args.location.location()?;
            let key = key_for(&location, &args.identity.identity())?;
            let existed = Store::new(args.location.etcd, args.location.timeout).delete(&key).await?;
            tracing::info!(%key, existed, "deregistered");
            Ok(0)
        }
        Command::Ls(args) => {
            let location = args.location.location()?;
            let base = match &args.service {
                Some(service) => {
                    promsd_common::name::validate_name("service", service).map_err(RegistrationError::from)?;
                    location.service_key(service)
                }
                None => location.base.clone(),
            };
            let listed = Store::new(args.location.etcd.clone(), args.location.timeout).list(&base).await?;
            let rows = list::rows(&location, listed);
            match args.output {
                Output::Table => print!("{}", list::table(&rows)),
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default()),
            }
            Ok(0)
        }
        Command::Agent(args) => {
            let source = promsd_agent::ConfigSource { path: args.config.clone(), dirs: args.config_dirs.clone() };
            let web = web_source(args.web_config_file.as_deref())?;
            let flags = args.gateway_flags();
            let polls = flags.url.is_some() || source.load().is_ok_and(|c| c.gateway.url.is_some());
            let listeners = listen(&args.listen_addresses(polls))?;
            promsd_agent::run(source, web, listeners, flags, shutdown_on_signal()).await?;
            Ok(0)
        }
        Command::Run(args) => {
            let location = args.set.location.location()?;
            let mut registration =
                Registration::new(&location, &args.set.identity.identity(), &args.set.value.value())?;
            // A kept record names its owner, so another host's registrar taking the name is told apart from
            // an edit or a deletion (which are undone).
            registration.service.owner = promsd_registration::owner();
            if registration.service.port == 0 {
                return Err(Error::NoPort);
            }
            args.set.location.etcd.check()?;
            promsd_registration::check_at_start(&args.set.location.etcd, &[registration.key.clone()]).await?;
            let status = Arc::new(Status::default());
            if !args.web_listen_address.is_empty() {
                let web = web_source(args.web_config_file.as_deref())?;
                let metrics = Arc::new(WebMetrics::default());
                let page = Arc::new(web::StatusPage { status: status.clone(), web: metrics.clone() });
                for listener in listen(&args.web_listen_address)? {
                    // Serves until the process exits with the exporter.
                    let (web, page, metrics) = (web.clone(), page.clone(), metrics.clone());
                    tokio::spawn(promsd_web::serve(listener, web, page, metrics, CancellationToken::new()));
                }
            }
            let loc = args.set.location;
            Ok(supervise::supervise(loc.etcd, loc.timeout, registration, args.lease_ttl, &args.command, status).await?)
        }
    }
}

/// Cancelled on SIGTERM or SIGINT.
fn shutdown_on_signal() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        stop.cancel();
    });
    shutdown
}
