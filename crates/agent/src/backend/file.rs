//! `method: file`: a text file some other job writes (node exporter's textfile collector style).

use bytes::Bytes;

use super::{BackendError, Fetched, TEXT_FORMAT};
use crate::config::FileModule;

pub async fn read(file: &FileModule) -> Result<Fetched, BackendError> {
    let body = tokio::fs::read(&file.path)
        .await
        .map_err(|source| BackendError::ReadFile { path: file.path.clone(), source })?;
    Ok(Fetched { content_type: TEXT_FORMAT.into(), content_encoding: None, body: Bytes::from(body) })
}
