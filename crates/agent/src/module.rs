//! A loaded module: its settings and the backend built from them, and one scrape of it: fetched within the
//! deadline and checked (when `verify` is on) before anything reaches Prometheus.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::backend::http::{Forward, HttpBackend};
use crate::backend::{self, BackendError, Fetched};
use crate::config::{AgentConfig, ConfigError, Method, ModuleConfig};
use crate::exposition::{self, FormatError};

#[derive(Debug, Error)]
pub enum ScrapeError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("backend output is not valid exposition format: {0}")]
    Malformed(#[from] Malformed),
}

/// Why `verify` rejected a backend's output (a 502, counted as malformed content).
#[derive(Debug, Error)]
pub enum Malformed {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("cannot verify content encoding {0:?}")]
    Encoding(String),
    #[error("invalid gzip: {0}")]
    Gzip(#[source] std::io::Error),
}

enum Backend {
    Http(Box<HttpBackend>),
    Exec,
    File,
}

pub struct Module {
    pub name: String,
    pub config: ModuleConfig,
    backend: Backend,
}

/// A configuration with every module's backend built: what one SIGHUP generation serves.
pub struct Loaded {
    pub config: AgentConfig,
    pub modules: BTreeMap<String, Arc<Module>>,
    /// Request headers the agent consumes itself (its token) and never passes on to a backend.
    pub consumed: Vec<hyper::header::HeaderName>,
}

impl Loaded {
    pub fn new(config: AgentConfig) -> Result<Self, ConfigError> {
        let mut modules = BTreeMap::new();
        for (name, settings) in &config.modules {
            let backend = match (settings.method, &settings.http) {
                (Method::Http, Some(http)) => Backend::Http(Box::new(HttpBackend::new(http).map_err(|source| {
                    ConfigError::Tls { path: settings.defined_in.clone(), module: name.clone(), source }
                })?)),
                (Method::Http, None) => {
                    return Err(ConfigError::NoSection {
                        path: settings.defined_in.clone(),
                        module: name.clone(),
                        method: Method::Http,
                    });
                }
                (Method::Exec, _) => Backend::Exec,
                (Method::File, _) => Backend::File,
            };
            let module = Module { name: name.clone(), config: settings.clone(), backend };
            modules.insert(name.clone(), Arc::new(module));
        }
        let consumed = (config.token.as_ref())
            .and_then(|t| hyper::header::HeaderName::from_bytes(t.header.as_bytes()).ok())
            .into_iter()
            .collect();
        Ok(Self { config, modules, consumed })
    }
}

impl Module {
    pub async fn scrape(&self, forward: &Forward<'_>, deadline: Duration) -> Result<Fetched, ScrapeError> {
        let config = &self.config;
        let fetched = match (&self.backend, &config.exec, &config.file) {
            (Backend::Http(http), _, _) => tokio::time::timeout(deadline, http.fetch(forward))
                .await
                .map_err(|_| BackendError::Timeout(deadline))??,
            (Backend::Exec, Some(exec), _) => backend::exec::run(&self.name, exec, forward.args, deadline).await?,
            (Backend::File, _, Some(file)) => backend::file::read(file).await?,
            // Loaded::new and the config's checks make these unreachable; answer as a broken backend.
            _ => {
                return Err(BackendError::Spawn {
                    command: self.name.clone(),
                    source: std::io::Error::other("module has no section for its method"),
                }
                .into());
            }
        };
        if config.verifies() {
            let openmetrics = fetched.content_type.starts_with("application/openmetrics-text");
            let unzipped;
            let plain: &[u8] = match fetched.content_encoding.as_deref() {
                Some("gzip") => {
                    unzipped = gunzip(&fetched.body)?;
                    &unzipped
                }
                Some(other) => return Err(Malformed::Encoding(other.to_string()).into()),
                None => &fetched.body,
            };
            exposition::verify(plain, openmetrics).map_err(Malformed::from)?;
        }
        Ok(fetched)
    }
}

fn gunzip(body: &[u8]) -> Result<Vec<u8>, Malformed> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(body).take(256 * 1024 * 1024).read_to_end(&mut plain).map_err(Malformed::Gzip)?;
    Ok(plain)
}
