//! registrar: writes SkyDNS records for a host's exporters into etcd and removes them again, either as
//! one-shot `set` / `rm` (systemd ExecStartPre / ExecStopPost) or by supervising the exporter (`run`).

pub mod agent;
pub mod cli;
pub mod list;
pub mod registration;
pub mod run;
pub mod status;
pub mod store;
pub mod web;

use cli::{Cli, Command, Output};
use registration::{Location, Registration, RegistrationError, key_for};
use store::{Store, StoreError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Carries out one command; returns the process exit code (`run` passes on the exporter's).
pub async fn execute(cli: Cli) -> Result<i32, Error> {
    match cli.command {
        Command::Set(args) => {
            let location = Location::from_args(&args.location)?;
            let registration = Registration::from_args(&location, &args.identity, &args.value)?;
            let value = registration.service.to_json();
            Store::new(args.location.etcd, args.location.timeout).put(&registration.key, &value).await?;
            tracing::info!(key = %registration.key, %value, "registered");
            Ok(0)
        }
        Command::Rm(args) => {
            let location = Location::from_args(&args.location)?;
            let key = key_for(&location, &args.identity)?;
            let existed = Store::new(args.location.etcd, args.location.timeout).delete(&key).await?;
            tracing::info!(%key, existed, "deregistered");
            Ok(0)
        }
        Command::Ls(args) => {
            let location = Location::from_args(&args.location)?;
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
            let source = agent::ConfigSource { path: args.config.clone(), dirs: args.config_dirs.clone() };
            let web = match &args.web_config_file {
                Some(path) => Some(agent::server::WebSource::load(path).map_err(std::io::Error::other)?),
                None => None,
            };
            let listener = tokio::net::TcpListener::bind(args.web_listen_address).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", args.web_listen_address))
            })?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
                {
                    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                }
                stop.cancel();
            });
            agent::run(source, web, listener, shutdown).await?;
            Ok(0)
        }
        Command::Run(args) => {
            let location = Location::from_args(&args.set.location)?;
            let registration = Registration::from_args(&location, &args.set.identity, &args.set.value)?;
            if registration.service.port == 0 {
                return Err(Error::Io(std::io::Error::other(
                    "registrar run needs --port to tell when the exporter is up",
                )));
            }
            let status = std::sync::Arc::new(status::Status::default());
            if let Some(addr) = args.web_listen_address {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
                tokio::spawn(web::serve(listener, status.clone()));
            }
            let loc = args.set.location;
            Ok(run::supervise(loc.etcd, loc.timeout, registration, args.lease_ttl, &args.command, status).await?)
        }
    }
}
