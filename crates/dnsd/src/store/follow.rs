//! Follows etcd: one prefix read, then an etcd watch from that revision, every response handed to the
//! [`Writer`]. On a broken or silent stream it reconnects and resumes from the last applied revision; when
//! that revision was compacted away it reads the prefix again and publishes the new view whole (the old one
//! answers until then). Until the first read completes dnsd does not answer; a refusal no retry can change
//! (wrong credentials, no permission for the prefix) before then ends [`follow`] with an error, after it
//! dnsd keeps answering from its view and keeps trying (the credentials may be fixed in etcd).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, GetResponse, KvClient, WatchOptions};
use promsd_backoff::Backoff;
use promsd_common::etcd::is_permanent;
use promsd_common::{EtcdArgs, EtcdError};
use thiserror::Error;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Store;
use super::ingest::KeyValue;
use super::writer::{Event, Writer};

const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Below 5 s with the load after it, so dnsd is current within 5 s of etcd coming back.
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// How often a quiet watch is looked at.
const TICK: Duration = Duration::from_secs(1);
/// After this long without a message, ask etcd for a progress notification: its answer confirms the view is
/// current, so on a healthy etcd the view's age (`dnsd_view_age_seconds`) stays below this plus a tick...
const PROGRESS_AFTER: Duration = Duration::from_secs(2);
/// ...and after this long give the connection up as dead, even though no error surfaced: a member that
/// froze or a half-open TCP connection never closes the stream by itself.
const STALL_AFTER: Duration = Duration::from_secs(10);
/// Keys in the first range request, which also tells how many there are in all.
const FIRST_PAGE: i64 = 25_000;
/// The most keys per later request. etcd 3.4 walks its index from a page's first key to the end of the range
/// for every page, so many small pages make a load quadratic (at a million keys, pages of 5,000 took 20 s):
/// later pages take a quarter of the keys, within this bound on the memory a page needs.
const MAX_PAGE: i64 = 250_000;
/// gRPC's default 4 MiB would refuse a page of 250,000 keys, or a watch response replaying a burst of large
/// transactions after a reconnect.
const MAX_MESSAGE: usize = 1024 * 1024 * 1024;

/// Why dnsd cannot follow etcd at all: refused before the first load, by something no retry changes.
#[derive(Debug, Error)]
#[error("etcd at {endpoints} refused dnsd: {cause}")]
pub struct Refused {
    endpoints: String,
    cause: String,
}

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
    #[error("the load's reader stopped: {0}")]
    Reader(#[from] tokio::task::JoinError),
}

/// Follows etcd until `shutdown`, publishing every change to `store`. Returns early only when etcd refuses
/// dnsd before the first load in a way no retry can change.
pub async fn follow(etcd: EtcdArgs, store: Arc<Store>, shutdown: CancellationToken) -> Result<(), Refused> {
    let mut writer = Writer::new(store.clone());
    // Reload when there is no view yet, or after the watch's revision was compacted away.
    let mut reload = true;
    let mut backoff = Backoff::new(FIRST_RETRY, MAX_BACKOFF);
    let mut attempts = 0;
    // The cluster the view was loaded from, to notice a replaced or restored etcd on reconnect.
    let mut cluster = None;
    while !shutdown.is_cancelled() {
        // After a failure, the next endpoint in turn: a dead member cannot take every attempt.
        match etcd.connect_attempt(attempts).await {
            Ok((mut client, endpoints)) => {
                let endpoints = endpoints.join(",");
                let mut watched = false;
                let mut follow = Session { reload: &mut reload, watched: &mut watched, cluster: &mut cluster };
                let result = session(&mut client, &store, &mut writer, &mut follow, &shutdown).await;
                store.health.set_connected(false);
                // Only a session that got as far as watching was progress; a failed reconnect keeps backing off.
                if watched {
                    backoff.reset();
                }
                let retry_in = backoff.next_delay();
                match result {
                    Ok(()) => return Ok(()),
                    Err(SessionError::Etcd(error)) if !writer.is_loaded() && is_permanent(&error) => {
                        let cause = promsd_common::etcd::describe(&error);
                        return Err(Refused { endpoints, cause });
                    }
                    Err(error) if writer.is_loaded() => {
                        tracing::warn!(%endpoints, %error, ?retry_in, "etcd watch interrupted; answering from the last known view")
                    }
                    Err(error) => {
                        tracing::warn!(%endpoints, %error, ?retry_in, "cannot load from etcd yet; DNS waits for the first load")
                    }
                }
                wait(retry_in, &shutdown).await;
            }
            // Connecting authenticates: wrong credentials surface here.
            Err(EtcdError::Client { endpoints, source }) if !writer.is_loaded() && is_permanent(&source) => {
                let cause = promsd_common::etcd::describe(&source);
                return Err(Refused { endpoints, cause });
            }
            Err(error) => {
                let retry_in = backoff.next_delay();
                tracing::warn!(%error, ?retry_in, "cannot connect to etcd");
                wait(retry_in, &shutdown).await;
            }
        }
        attempts += 1;
    }
    Ok(())
}

async fn wait(delay: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(delay) => {}
    }
}

/// What one session reads and leaves for the next.
struct Session<'a> {
    /// Read the whole prefix before watching: no view yet, a compacted revision, or another cluster.
    reload: &'a mut bool,
    /// Set once a watch was established (progress, for the backoff).
    watched: &'a mut bool,
    /// The cluster ID the view was loaded from.
    cluster: &'a mut Option<u64>,
}

/// One connection's worth of following: load when needed, then watch until it breaks.
async fn session(
    client: &mut Client,
    store: &Store,
    writer: &mut Writer,
    follow: &mut Session<'_>,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let prefix = store.catalog().prefix.range_prefix();
    let (reload, watched) = (&mut *follow.reload, &mut *follow.watched);
    if !*reload && replaced(client, &prefix, writer, *follow.cluster).await? {
        *reload = true;
    }
    loop {
        if *reload {
            let started = Instant::now();
            let kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
            *follow.cluster = load(kv, &prefix, writer, started).await?;
            *reload = false;
            let took = started.elapsed();
            tracing::info!(keys = writer.len(), revision = writer.revision(), ?took, "loaded the view from etcd");
        }
        let start = writer.revision() + 1;
        let options = WatchOptions::new().with_prefix().with_start_revision(start).with_progress_notify();
        let mut watcher = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
        let (mut requests, mut stream) = watcher.watch(prefix.as_str(), Some(options)).await?.split();
        *watched = true;
        store.health.set_connected(true);
        store.health.mark_synced();
        let mut last_heard = Instant::now();
        let mut ticker = tokio::time::interval(TICK);
        let mut asked = None::<Instant>;
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = ticker.tick() => {
                    let silent = last_heard.elapsed();
                    if silent >= STALL_AFTER {
                        return Err(SessionError::Stalled(silent));
                    }
                    // One request per quiet spell of PROGRESS_AFTER, not one per tick.
                    if silent >= PROGRESS_AFTER && asked.is_none_or(|at| at.elapsed() >= PROGRESS_AFTER) {
                        requests.request_progress().await?;
                        asked = Some(Instant::now());
                    }
                    continue;
                }
                message = stream.message() => message?,
            };
            last_heard = Instant::now();
            let Some(response) = message else { return Err(SessionError::Closed) };
            if response.canceled() {
                if response.compact_revision() > 0 {
                    tracing::warn!(
                        from = start,
                        compacted = response.compact_revision(),
                        "watch revision was compacted; reloading the whole prefix"
                    );
                    *reload = true; // the old view answers until the new one is published whole
                    break;
                }
                return Err(SessionError::Canceled(response.cancel_reason().to_string()));
            }
            let events = response.events().iter().filter_map(|event| {
                let kv = event.kv()?;
                Some(match event.event_type() {
                    EventType::Put => Event::Put(KeyValue::from(kv)),
                    EventType::Delete => Event::Delete(kv.key()),
                })
            });
            let revision = response.header().map(|h| h.revision()).unwrap_or_default();
            let count = response.events().len();
            writer.apply(events, revision);
            if count > 0 {
                tracing::debug!(events = count, revision, "applied changes from etcd");
            }
            // Every message, progress notifications included, says the view is current up to its revision.
            store.health.mark_synced();
        }
    }
}

/// Whether the etcd reached now is not the one the view follows: another cluster ID (wiped and recreated),
/// or a revision behind the view's (restored from an older snapshot). A watch resumed there would wait for a
/// revision that is not coming, or mix two histories; the prefix is read again instead. A restored cluster
/// that keeps its ID and has already written past the view's revision cannot be told apart here.
async fn replaced(
    client: &mut Client,
    prefix: &str,
    writer: &Writer,
    cluster: Option<u64>,
) -> Result<bool, SessionError> {
    // One key, not the prefix: only the header is wanted, and etcd 3.4 walks a whole range even to count it.
    let response = tokio::time::timeout(LOAD_TIMEOUT, client.get(prefix, None))
        .await
        .map_err(|_| SessionError::Timeout(prefix.to_string()))??;
    let Some(header) = response.header() else { return Ok(false) };
    let (now, revision) = (header.cluster_id(), header.revision());
    let other = cluster.is_some_and(|c| c != now);
    let behind = revision < writer.revision();
    if other || behind {
        tracing::warn!(
            cluster = format!("{:x}", cluster.unwrap_or_default()),
            now = format!("{now:x}"),
            revision = writer.revision(),
            etcd_revision = revision,
            "etcd was replaced or restored; reloading the whole prefix (the old view answers until then)"
        );
    }
    Ok(other || behind)
}

/// Reads the whole prefix at one revision, page by page, parsing each page while the next one is read, and
/// publishes the result as one snapshot. Returns the ID of the cluster it was read from.
async fn load(kv: KvClient, prefix: &str, writer: &mut Writer, started: Instant) -> Result<Option<u64>, SessionError> {
    let end = promsd_common::etcd::range_end(prefix.as_bytes());
    let first = Page { from: prefix.as_bytes().to_vec(), end: end.clone(), revision: None, limit: FIRST_PAGE };
    let mut page = read_page(kv.clone(), first, prefix).await?;
    let revision = page.header().map(|h| h.revision()).unwrap_or_default();
    let cluster = page.header().map(|h| h.cluster_id());
    // A quarter of the keys per page, within bounds: few pages, each well below the memory of the whole.
    let limit = (page.count() / 4).clamp(FIRST_PAGE, MAX_PAGE);
    let mut load = writer.begin_load(revision);
    loop {
        let next = match page.kvs().last() {
            Some(last) if page.more() => {
                let mut from = last.key().to_vec();
                from.push(0); // the next key after the last one read
                let next = Page { from, end: end.clone(), revision: Some(revision), limit };
                let (kv, prefix) = (kv.clone(), prefix.to_string());
                Some(tokio::spawn(async move { read_page(kv, next, &prefix).await }))
            }
            _ => None,
        };
        writer.load_page(&mut load, page.kvs().iter().map(KeyValue::from));
        match next {
            Some(next) => page = next.await??,
            None => break,
        }
    }
    writer.finish_load(load, started.elapsed());
    Ok(cluster)
}

/// One range request of a load.
struct Page {
    from: Vec<u8>,
    end: Vec<u8>,
    /// Every page after the first at the first page's revision, so the load is one consistent snapshot.
    revision: Option<i64>,
    limit: i64,
}

async fn read_page(mut kv: KvClient, page: Page, prefix: &str) -> Result<GetResponse, SessionError> {
    let mut options = GetOptions::new().with_range(page.end).with_limit(page.limit);
    if let Some(revision) = page.revision {
        options = options.with_revision(revision);
    }
    Ok(tokio::time::timeout(LOAD_TIMEOUT, kv.get(page.from, Some(options)))
        .await
        .map_err(|_| SessionError::Timeout(prefix.to_string()))??)
}
