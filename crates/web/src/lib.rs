//! The one HTTP stack of promsd: every port it opens (dnsd's web port, `registrar run`'s status port, the
//! agent's proxy) is served by [`server::serve`] with exporter-toolkit's `--web.config.file`.
//!
//! - [`config`]: the web configuration file (TLS, client certificates, basic auth, response headers),
//!   as strict as exporter-toolkit, read again when it changes.
//! - [`server`]: accept loop, TLS handshake, the per-request credential check, headers, graceful shutdown.
//! - [`response`]: the small replies every endpoint gives (text, 404, 405).
//! - [`metrics`]: the one exposition path: a prometheus-client registry as `/metrics`, format negotiated.

pub mod config;
pub mod metrics;
mod process;
pub mod response;
pub mod server;

pub use config::{Web, WebConfigError};
/// The prometheus-client [`metrics`] encodes with, for crates that build registries without depending on it.
pub use prometheus_client;
pub use promsd_accept::Limits;
pub use server::{Body, Handler, Reply, WebMetrics, WebSource, serve, serve_with_limits};
