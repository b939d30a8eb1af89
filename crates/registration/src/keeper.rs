//! Keeping one record true in etcd while its owner runs: written (under a lease, when asked), rewritten
//! after etcd lost it, its lease kept alive across reconnects, and removed at the end. `registrar run`
//! and the agent both hold their records through a [`Keeper`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use etcd_client::{Client, PutOptions};
use promsd_backoff::Backoff;
use promsd_common::{EtcdArgs, EtcdError};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::Registration;
use crate::status::Status;
use crate::store::Store;

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long removing a record at the end may take, revoke and delete together: a stop must not wait on a
/// dead etcd (systemd's and the bound is 5 s). A leased record that could not be removed expires
/// with its lease.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(4);

/// Why one attempt to keep a record registered ended; logged, then retried with backoff.
#[derive(Debug, Error)]
enum KeepError {
    #[error(transparent)]
    Connect(#[from] EtcdError),
    /// The innermost cause, which is what a person needs (see `promsd_common::etcd::describe`).
    #[error("{}", promsd_common::etcd::describe(.0))]
    Etcd(#[source] etcd_client::Error),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("no keepalive answer for lease {id} in {ttl:?}")]
    NoKeepalive { id: i64, ttl: Duration },
    #[error("lease {0} expired")]
    LeaseExpired(i64),
    #[error("lease keepalive stream closed")]
    KeepaliveClosed,
    #[error("the watch on the record closed")]
    WatchClosed,
}

/// A record being kept, with what stops it.
pub struct Keeper {
    registration: Registration,
    etcd: EtcdArgs,
    status: Arc<Status>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Keeper {
    /// Starts keeping `registration` (under a lease of `lease_ttl`, when given), reporting into `status`.
    pub fn start(etcd: EtcdArgs, registration: Registration, lease_ttl: Option<Duration>, status: Arc<Status>) -> Self {
        let stop = CancellationToken::new();
        let task =
            tokio::spawn(keep_registered(etcd.clone(), registration.clone(), lease_ttl, status.clone(), stop.clone()));
        Self { registration, etcd, status, stop, task }
    }

    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// Stops keeping the record and removes it (revoking its lease), all within `timeout`.
    pub async fn release(self, timeout: Duration) {
        self.stop.cancel();
        let _ = self.task.await;
        let lease = self.status.lease.lock().ok().and_then(|l| *l);
        let store = Store::new(self.etcd, timeout);
        if tokio::time::timeout(timeout, deregister(store, &self.registration, lease)).await.is_err() {
            let key = &self.registration.key;
            match lease {
                Some(lease) => {
                    tracing::error!(%key, lease, ?timeout, "cannot deregister in time; the record goes when its lease expires")
                }
                None => tracing::error!(%key, ?timeout, "cannot deregister in time; the record stays until removed"),
            }
        }
        self.status.registered.store(false, Ordering::Relaxed);
    }
}

/// Writes the record and keeps it there until `stop`: retries while etcd is unreachable, and in lease mode
/// keeps the lease alive, granting a new one and writing the record again whenever the old one is lost.
async fn keep_registered(
    etcd: EtcdArgs,
    registration: Registration,
    lease_ttl: Option<Duration>,
    status: Arc<Status>,
    stop: CancellationToken,
) {
    // Under a lease, retry well within its TTL so a short outage does not let it lapse.
    let cap = lease_ttl.map(|ttl| (ttl / 3).clamp(FIRST_RETRY, MAX_BACKOFF)).unwrap_or(MAX_BACKOFF);
    let mut backoff = Backoff::new(FIRST_RETRY, cap);
    let value = registration.service.to_json();
    let mut attempts = 0;
    loop {
        let writes_before = status.registrations.load(Ordering::Relaxed);
        let attempt = async {
            // After a failure, the next endpoint in turn: a dead member cannot take every attempt.
            let (mut client, endpoints) = etcd.connect_attempt(attempts).await?;
            match lease_ttl {
                None => {
                    let limit = Duration::from_secs(5);
                    let key = registration.key.as_str();
                    let from = claim(&mut client, key, &value, None, &status, limit).await?;
                    tracing::info!(%key, %value, endpoints = %endpoints.join(","), "registered");
                    let mut guard = Guard::watch(&mut client, key, from, limit).await?;
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return Ok(()),
                            changed = guard.next() => {
                                let changes = changed?;
                                react(&mut client, key, &value, None, &status, changes, limit).await?;
                            }
                        }
                    }
                }
                Some(ttl) => hold_lease(&mut client, &registration.key, &value, ttl, &status, &stop).await,
            }
        };
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            result = attempt => result,
        };
        attempts += 1;
        let Err(e) = result else { return };
        // A session that got the record written was progress: the next failure starts the backoff afresh.
        if status.registrations.load(Ordering::Relaxed) != writes_before {
            backoff.reset();
        }
        status.etcd_errors.fetch_add(1, Ordering::Relaxed);
        let delay = backoff.next_delay();
        tracing::warn!(key = %registration.key, error = %e, retry_in = ?delay, "cannot register in etcd; retrying");
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Holds the record under a lease until `stop`. After a reconnect (a leader change, an outage) the lease
/// already held is kept alive again if etcd still has it, so it cannot lapse while a new one is granted;
/// only a lease that is gone is replaced, and the record written again under the new one.
async fn hold_lease(
    client: &mut Client,
    key: &str,
    value: &str,
    ttl: Duration,
    status: &Status,
    stop: &CancellationToken,
) -> Result<(), KeepError> {
    let ttl_secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
    // No call may wait longer than the lease lives: a stuck call would let it lapse unnoticed.
    let limit = ttl.clamp(Duration::from_secs(1), Duration::from_secs(5));
    let held = status.lease.lock().ok().and_then(|l| *l);
    let mut kept = None;
    // Asked first, not kept alive blindly: etcd answers a keepalive for a lease it no longer has (expired
    // while this process was paused, revoked, or a replaced cluster) with an error, which retried as such
    // would never end. A lease with time left is kept; any other is replaced.
    if let Some(id) = held
        && call(limit, client.lease_time_to_live(id, None)).await?.ttl() > 0
    {
        let (mut keeper, mut responses) = call(limit, client.lease_keep_alive(id)).await?;
        call(limit, keeper.keep_alive()).await?;
        if let Some(response) = call(limit, responses.message()).await?
            && response.ttl() > 0
        {
            kept = Some((id, keeper, responses));
        }
    }
    let (id, mut keeper, mut responses) = match kept {
        Some(kept) => {
            // The lease survived; make sure the record is still the one we wrote under it.
            tracing::info!(%key, lease = kept.0, "lease kept alive after reconnecting");
            kept
        }
        None => {
            let id = call(limit, client.lease_grant(ttl_secs, None)).await?.id();
            status.granted(id, ttl_secs);
            tracing::info!(%key, %value, lease = id, ttl = ttl_secs, "registered with lease");
            let (keeper, responses) = call(limit, client.lease_keep_alive(id)).await?;
            (id, keeper, responses)
        }
    };
    let from = claim(client, key, value, Some(id), status, limit).await?;
    let mut guard = Guard::watch(client, key, from, limit).await?;
    let mut tick = tokio::time::interval(Duration::from_secs((ttl_secs as u64 / 3).max(1)));
    let mut last_answer = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {
                if last_answer.elapsed() > ttl {
                    return Err(KeepError::NoKeepalive { id, ttl });
                }
                call(limit, keeper.keep_alive()).await?;
            }
            response = responses.message() => match response.map_err(KeepError::Etcd)? {
                Some(response) if response.ttl() > 0 => last_answer = tokio::time::Instant::now(),
                Some(_) => return Err(KeepError::LeaseExpired(id)),
                None => return Err(KeepError::KeepaliveClosed),
            },
            changed = guard.next() => {
                let changes = changed?;
                react(client, key, value, Some(id), status, changes, limit).await?;
            }
        }
    }
}

/// The key as etcd holds it, after a change or when (re)connecting.
enum Seen {
    Deleted,
    Value(Vec<u8>),
}

/// Writes the record unless another owner holds the key (then this keeper has yielded); returns the revision
/// to watch the key from.
async fn claim(
    client: &mut Client,
    key: &str,
    value: &str,
    lease: Option<i64>,
    status: &Status,
    limit: Duration,
) -> Result<i64, KeepError> {
    let current = call(limit, client.get(key, None)).await?;
    let revision = current.header().map(|h| h.revision()).unwrap_or_default();
    let seen = match current.kvs().first() {
        Some(kv) if kv.value() == value.as_bytes() && lease.is_none_or(|id| kv.lease() == id) => {
            status.wrote();
            return Ok(revision + 1);
        }
        Some(kv) => Seen::Value(kv.value().to_vec()),
        None => Seen::Deleted,
    };
    if status.is_yielded() && foreign_owner(&seen, value).is_some() {
        return Ok(revision + 1); // still the other owner's: keep yielding, watch for it to go
    }
    put(client, key, value, lease, status, limit).await
}

async fn put(
    client: &mut Client,
    key: &str,
    value: &str,
    lease: Option<i64>,
    status: &Status,
    limit: Duration,
) -> Result<i64, KeepError> {
    let options = lease.map(|id| PutOptions::new().with_lease(id));
    let response = call(limit, client.put(key, value, options)).await?;
    status.yielded.store(false, Ordering::Relaxed);
    status.wrote();
    Ok(response.header().map(|h| h.revision()).unwrap_or_default() + 1)
}

/// The owner of a value some other registrar wrote at our key (`None`: ours, or a value with no owner, which
/// the keeper overwrites).
fn foreign_owner(seen: &Seen, ours: &str) -> Option<String> {
    let Seen::Value(theirs) = seen else { return None };
    let theirs = promsd_common::Service::parse(theirs).ok()?;
    let ours = promsd_common::Service::parse(ours.as_bytes()).ok()?;
    (!theirs.owner.is_empty() && theirs.owner != ours.owner).then_some(theirs.owner)
}

/// A watch on the key the keeper holds.
struct Guard {
    stream: etcd_client::WatchStream,
}

impl Guard {
    async fn watch(client: &mut Client, key: &str, from: i64, limit: Duration) -> Result<Self, KeepError> {
        let options = etcd_client::WatchOptions::new().with_start_revision(from);
        let stream = call(limit, client.watch(key, Some(options))).await?;
        Ok(Self { stream })
    }

    /// The key's state after the next change etcd reports (the last of a batch).
    async fn next(&mut self) -> Result<Seen, KeepError> {
        loop {
            let Some(response) = self.stream.message().await.map_err(KeepError::Etcd)? else {
                return Err(KeepError::WatchClosed);
            };
            if response.canceled() {
                return Err(KeepError::WatchClosed);
            }
            if let Some(event) = response.events().last() {
                return Ok(match (event.event_type(), event.kv()) {
                    (etcd_client::EventType::Put, Some(kv)) => Seen::Value(kv.value().to_vec()),
                    _ => Seen::Deleted,
                });
            }
        }
    }
}

/// What a keeper does when its key changed under it: nothing for its own write; restore a deleted record
/// or one overwritten with other content; yield (and say so loudly) to another registrar that wrote it,
/// so two hosts with one name do not overwrite each other forever: the last to register keeps the name.
async fn react(
    client: &mut Client,
    key: &str,
    value: &str,
    lease: Option<i64>,
    status: &Status,
    seen: Seen,
    limit: Duration,
) -> Result<(), KeepError> {
    if let Seen::Value(current) = &seen
        && current == value.as_bytes()
    {
        return Ok(());
    }
    if let Some(owner) = foreign_owner(&seen, value) {
        if !status.is_yielded() {
            status.yielded_to();
            let theirs = match &seen {
                Seen::Value(v) => String::from_utf8_lossy(v).into_owned(),
                Seen::Deleted => String::new(),
            };
            tracing::error!(
                %key, ours = %value, %theirs, %owner,
                "another registrar wrote this record (a cloned host or a duplicate instance name?); \
                 yielding to it until it is removed: give one of them another --instance"
            );
        }
        return Ok(());
    }
    let what = if matches!(seen, Seen::Deleted) { "deleted" } else { "overwritten" };
    status.registered.store(false, Ordering::Relaxed);
    put(client, key, value, lease, status, limit).await?;
    status.restores.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%key, what, "the record was {what} in etcd; written again");
    Ok(())
}

/// One etcd call, bounded in time.
async fn call<T>(
    limit: Duration,
    future: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, KeepError> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result.map_err(KeepError::Etcd),
        Err(_) => Err(KeepError::Timeout(limit)),
    }
}

/// Removes the record: revokes its lease (which deletes it), and deletes the key if it still holds what this
/// registrar wrote. A record another registrar wrote since (a clone, a duplicate instance) stays.
pub async fn deregister(store: Store, registration: &Registration, lease: Option<i64>) {
    if let Some(id) = lease {
        // Revoking deletes the key with it; a lease that already expired is fine.
        let revoked = store.revoke(id).await;
        if let Err(e) = revoked {
            tracing::warn!(lease = id, error = %e, "cannot revoke the lease; it expires by itself");
        }
    }
    let key = &registration.key;
    match store.delete_if(key, &registration.service.to_json()).await {
        Ok(true) => tracing::info!(%key, "deregistered"),
        Ok(false) => tracing::info!(%key, "deregistered (the key no longer held this registrar's record)"),
        Err(e) => tracing::error!(%key, error = %e, "cannot deregister"),
    }
}
