//! Keeps the view current: one prefix read, then an etcd watch from that revision. On a broken stream it
//! reconnects and resumes from the last applied revision; when that revision was compacted away it reads the
//! prefix again and swaps the new view in whole. Until the first read completes dnsd does not answer.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions};
use promsd_common::{EtcdArgs, Service};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::view::{Entry, View};

const LOAD_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
enum SessionError {
    #[error("{}", promsd_common::etcd::describe(.0))]
    Etcd(#[from] etcd_client::Error),
    #[error("timed out reading {0}")]
    Timeout(String),
    #[error("watch stream closed by etcd")]
    Closed,
    #[error("watch canceled by etcd: {0}")]
    Canceled(String),
}

/// Follows etcd until `shutdown`, publishing every change to `state`.
pub async fn follow(etcd: EtcdArgs, state: Arc<State>, shutdown: CancellationToken) {
    let mut view: Option<View> = None;
    let mut reported = HashSet::new();
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match etcd.connect().await {
            Ok((mut client, endpoints)) => {
                let endpoints = endpoints.join(",");
                match session(&mut client, &state, &mut view, &mut reported, &shutdown).await {
                    Ok(()) => return,
                    Err(e) if view.is_some() => {
                        tracing::warn!(%endpoints, error = %e, "etcd watch interrupted; answering from the last known view")
                    }
                    Err(e) => {
                        tracing::warn!(%endpoints, error = %e, "cannot load from etcd yet; DNS waits for the first load")
                    }
                }
                if view.is_some() {
                    backoff = Duration::from_millis(100);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect to etcd"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's worth of following: load when there is no usable view, then watch until it breaks.
async fn session(
    client: &mut Client,
    state: &State,
    view: &mut Option<View>,
    reported: &mut HashSet<(Vec<u8>, i64)>,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let prefix = state.catalog.prefix.range_prefix();
    loop {
        let current = match view.take() {
            Some(current) => current,
            None => {
                let loaded = load(client, &prefix, state, reported).await?;
                tracing::info!(keys = loaded.len(), revision = loaded.revision, "loaded the view from etcd");
                state.publish(&loaded);
                loaded
            }
        };
        let start = current.revision + 1;
        *view = Some(current);
        let options = WatchOptions::new().with_prefix().with_start_revision(start).with_progress_notify();
        let mut stream = client.watch(prefix.as_str(), Some(options)).await?;
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                message = stream.message() => message?,
            };
            let Some(response) = message else { return Err(SessionError::Closed) };
            let Some(current) = view.as_mut() else { return Err(SessionError::Closed) };
            if response.canceled() {
                if response.compact_revision() > 0 {
                    tracing::warn!(
                        from = start,
                        compacted = response.compact_revision(),
                        "watch revision was compacted; reloading the whole prefix"
                    );
                    *view = None; // the next round reloads and swaps the fresh view in whole
                    break;
                }
                return Err(SessionError::Canceled(response.cancel_reason().to_string()));
            }
            let mut changed = false;
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                changed |= match event.event_type() {
                    EventType::Put => match entry_from(kv, state, reported) {
                        Some(entry) => {
                            current.insert(entry);
                            true
                        }
                        // etcd no longer holds the old value, so answering it would be wrong: drop it.
                        None => kv.key_str().map(|key| current.remove(key)).unwrap_or(false),
                    },
                    EventType::Delete => kv.key_str().map(|key| current.remove(key)).unwrap_or(false),
                };
            }
            if let Some(header) = response.header() {
                current.revision = current.revision.max(header.revision());
            }
            if changed {
                state.publish(current);
            }
        }
    }
}

async fn load(
    client: &mut Client,
    prefix: &str,
    state: &State,
    reported: &mut HashSet<(Vec<u8>, i64)>,
) -> Result<View, SessionError> {
    let response = tokio::time::timeout(LOAD_TIMEOUT, client.get(prefix, Some(GetOptions::new().with_prefix())))
        .await
        .map_err(|_| SessionError::Timeout(prefix.to_string()))??;
    let revision = response.header().map(|h| h.revision()).unwrap_or_default();
    let mut view = View::new(revision);
    for kv in response.kvs() {
        if let Some(entry) = entry_from(kv, state, reported) {
            view.insert(entry);
        }
    }
    Ok(view)
}

/// Parses one etcd key-value; a malformed one is skipped so the rest keeps answering. Each bad value (key
/// and revision) is logged and counted once, however often a reload reads it again.
fn entry_from(kv: &KeyValue, state: &State, reported: &mut HashSet<(Vec<u8>, i64)>) -> Option<Entry> {
    let problem = match (kv.key_str(), Service::parse(kv.value())) {
        (Ok(key), Ok(service)) => return Some(Entry { key: key.to_string(), service, lease: kv.lease() }),
        (Err(_), _) => "key is not UTF-8".to_string(),
        (Ok(_), Err(e)) => e.to_string(),
    };
    if reported.len() > 10_000 {
        reported.clear(); // only a log de-duplication: bounded, at the price of an occasional repeat
    }
    if reported.insert((kv.key().to_vec(), kv.mod_revision())) {
        state.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(key = %String::from_utf8_lossy(kv.key()), error = %problem, "skipping malformed SkyDNS value");
    }
    None
}
