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
                    call(Duration::from_secs(5), client.put(registration.key.as_str(), value.as_str(), None)).await?;
                    status.wrote();
                    tracing::info!(key = %registration.key, %value, endpoints = %endpoints.join(","), "registered");
                    stop.cancelled().await;
                    Ok(())
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
    if let Some(id) = held {
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
            let current = call(limit, client.get(key, None)).await?;
            let intact = current.kvs().first().is_some_and(|kv| kv.value() == value.as_bytes() && kv.lease() == kept.0);
            if !intact {
                call(limit, client.put(key, value, Some(PutOptions::new().with_lease(kept.0)))).await?;
                status.wrote();
            }
            tracing::info!(%key, lease = kept.0, "lease kept alive after reconnecting");
            kept
        }
        None => {
            let id = call(limit, client.lease_grant(ttl_secs, None)).await?.id();
            status.granted(id, ttl_secs);
            call(limit, client.put(key, value, Some(PutOptions::new().with_lease(id)))).await?;
            status.wrote();
            tracing::info!(%key, %value, lease = id, ttl = ttl_secs, "registered with lease");
            let (keeper, responses) = call(limit, client.lease_keep_alive(id)).await?;
            (id, keeper, responses)
        }
    };
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
        }
    }
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

pub async fn deregister(store: Store, registration: &Registration, lease: Option<i64>) {
    if let Some(id) = lease {
        // Revoking deletes the key with it; a lease that already expired is fine.
        let revoked = store.revoke(id).await;
        if let Err(e) = revoked {
            tracing::warn!(lease = id, error = %e, "cannot revoke the lease; it expires by itself");
        }
    }
    match store.delete(&registration.key).await {
        Ok(_) => tracing::info!(key = %registration.key, "deregistered"),
        Err(e) => tracing::error!(key = %registration.key, error = %e, "cannot deregister"),
    }
}
