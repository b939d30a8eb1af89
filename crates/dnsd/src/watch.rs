//! Keeps the view current: one prefix read, then an etcd watch from that revision. On a broken or silent
//! stream it reconnects and resumes from the last applied revision; when that revision was compacted away it
//! reads the prefix again and swaps the new view in whole (the old one answers until then). Until the first
//! read completes dnsd does not answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions};
use promsd_common::EtcdArgs;
use thiserror::Error;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::ingest::Ingest;
use crate::view::View;

const LOAD_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// After this long without a message, ask etcd for a progress notification...
const PROGRESS_AFTER: Duration = Duration::from_secs(5);
/// ...and after this long give the connection up as dead, even though no error surfaced: a member that
/// froze or a half-open TCP connection never closes the stream by itself.
const STALL_AFTER: Duration = Duration::from_secs(15);

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
    #[error("no word from etcd for {0:?}; reconnecting")]
    Stalled(Duration),
}

/// Follows etcd until `shutdown`, publishing every change to `state`.
pub async fn follow(etcd: EtcdArgs, state: Arc<State>, shutdown: CancellationToken) {
    let mut view: Option<View> = None;
    let mut ingest = Ingest::new(state.clone());
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match etcd.connect().await {
            Ok((mut client, endpoints)) => {
                let endpoints = endpoints.join(",");
                let result = session(&mut client, &state, &mut view, &mut ingest, &shutdown).await;
                state.set_connected(false);
                match result {
                    Ok(()) => return,
                    Err(e) if state.is_ready() => {
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
    ingest: &mut Ingest,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let prefix = state.catalog.prefix.range_prefix();
    loop {
        let current = match view.take() {
            Some(current) => current,
            None => {
                let first = !state.is_ready();
                let started = Instant::now();
                let loaded = load(client, &prefix, ingest).await?;
                state.publish(&loaded);
                let took = started.elapsed();
                state.set_last_load(took);
                tracing::info!(keys = loaded.len(), revision = loaded.revision, ?took, "loaded the view from etcd");
                if !first {
                    state.resyncs.fetch_add(1, Ordering::Relaxed);
                }
                loaded
            }
        };
        let start = current.revision + 1;
        *view = Some(current);
        let options = WatchOptions::new().with_prefix().with_start_revision(start).with_progress_notify();
        let (mut requests, mut stream) = client.watch(prefix.as_str(), Some(options)).await?.split();
        state.set_connected(true);
        state.mark_synced();
        let mut last_heard = Instant::now();
        let mut ticker = tokio::time::interval(PROGRESS_AFTER);
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = ticker.tick() => {
                    let silent = last_heard.elapsed();
                    if silent >= STALL_AFTER {
                        return Err(SessionError::Stalled(silent));
                    }
                    if silent >= PROGRESS_AFTER {
                        requests.request_progress().await?;
                    }
                    continue;
                }
                message = stream.message() => message?,
            };
            last_heard = Instant::now();
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
                    EventType::Put => match ingest.entry(kv) {
                        Some(entry) => {
                            current.insert(entry);
                            true
                        }
                        // etcd no longer holds the old value, so answering it would be wrong: drop it.
                        None => remove(current, kv),
                    },
                    EventType::Delete => remove(current, kv),
                };
            }
            if let Some(header) = response.header() {
                current.revision = current.revision.max(header.revision());
            }
            if changed {
                state.publish(current);
            }
            // Every message, progress notifications included, says the view is current up to its revision.
            state.mark_synced();
        }
    }
}

fn remove(view: &mut View, kv: &KeyValue) -> bool {
    kv.key_str().map(|key| view.remove(key)).unwrap_or(false)
}

/// Keys per range request: whole prefixes of 100,000 keys exceed gRPC's 4 MiB message limit.
const PAGE: i64 = 5_000;

/// Reads the whole prefix at one revision, page by page.
async fn load(client: &mut Client, prefix: &str, ingest: &mut Ingest) -> Result<View, SessionError> {
    let end = range_end(prefix);
    let mut from = prefix.as_bytes().to_vec();
    let mut view: Option<View> = None;
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if let Some(view) = &view {
            options = options.with_revision(view.revision); // every page from the first page's snapshot
        }
        let response = tokio::time::timeout(LOAD_TIMEOUT, client.get(from.clone(), Some(options)))
            .await
            .map_err(|_| SessionError::Timeout(prefix.to_string()))??;
        let view = view.get_or_insert_with(|| View::new(response.header().map(|h| h.revision()).unwrap_or_default()));
        for kv in response.kvs() {
            if let Some(entry) = ingest.entry(kv) {
                view.insert(entry);
            }
        }
        match response.kvs().last() {
            Some(last) if response.more() => {
                from = last.key().to_vec();
                from.push(0); // the next key after the last one read
            }
            _ => break,
        }
    }
    Ok(view.unwrap_or_default())
}

/// The end of the key range holding every key that starts with `prefix` (etcd's WithPrefix).
fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // the empty prefix: every key
}
