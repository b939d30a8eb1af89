//! Where a module's metrics come from. Each module of a loaded configuration owns its backend: an http
//! module its own client (TLS settings, credentials, idle connections), so no setting or connection of
//! one module is ever used for another.

pub mod exec;
pub mod file;
pub mod http;
pub mod tls;

use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

/// Prometheus's text format, what exec and file modules produce.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a backend returned.
pub struct Fetched {
    pub content_type: String,
    pub content_encoding: Option<String>,
    pub body: Bytes,
}

/// Why a backend gave nothing. Messages name the backend (address and port, command, file), never a
/// credential; they are sent to the client in the 502 body.
#[derive(Debug, Error)]
pub enum BackendError {
    #[error("module did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{backend}: {source}")]
    Connect { backend: String, source: http::ConnectError },
    #[error("{backend}: {source}")]
    Request { backend: String, source: hyper::Error },
    #[error("{backend}: cannot build the request: {source}")]
    Build { backend: String, source: hyper::http::Error },
    #[error("{backend} answered {status}")]
    Status { backend: String, status: hyper::StatusCode },
    #[error("cannot run {command}: {source}")]
    Spawn { command: String, source: std::io::Error },
    /// The command's stderr goes to the agent's log, not to the client.
    #[error("{command} exited with {status}")]
    Exited { command: String, status: std::process::ExitStatus },
    #[error("cannot read {path}: {source}")]
    ReadFile { path: std::path::PathBuf, source: std::io::Error },
}
