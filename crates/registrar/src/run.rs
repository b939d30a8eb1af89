//! `registrar run -- EXPORTER ARGS...`: supervise one exporter. It is registered once it accepts TCP
//! connections on its port, kept registered (with an etcd lease kept alive, when asked) while it runs, and
//! deregistered when it exits; signals sent to the registrar reach the exporter; the exit status is its own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use etcd_client::{Client, PutOptions};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use promsd_common::{EtcdArgs, EtcdError};
use thiserror::Error;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::registration::Registration;
use crate::status::Status;
use crate::store::Store;

const PROBE_INTERVAL: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

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

/// The exit code a shell would report for `status`: the exporter's code, or 128 + the signal that killed it.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Runs the exporter to completion and returns its exit code.
pub async fn supervise(
    etcd: EtcdArgs,
    timeout: Duration,
    registration: Registration,
    lease_ttl: Option<Duration>,
    command: &[String],
    status: Arc<Status>,
) -> std::io::Result<i32> {
    let (program, args) = command.split_first().ok_or_else(|| std::io::Error::other("no command given"))?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut child = Command::new(program)
        .args(args)
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;
    tracing::info!(command = %command.join(" "), pid = child.id().unwrap_or(0), "started exporter");

    let probe = probe_address(&registration).await;
    let stop_keeping = CancellationToken::new();
    status.exporter_up.store(false, Ordering::Relaxed);
    let mut keeper = None;
    let mut probe_timer = tokio::time::interval(PROBE_INTERVAL);
    let exit = loop {
        tokio::select! {
            exit = child.wait() => break exit?,
            _ = term.recv() => forward(&child, Signal::SIGTERM),
            _ = int.recv() => forward(&child, Signal::SIGINT),
            _ = hup.recv() => forward(&child, Signal::SIGHUP),
            _ = probe_timer.tick(), if keeper.is_none() => {
                if accepts_connections(probe).await {
                    status.exporter_up.store(true, Ordering::Relaxed);
                    tracing::info!(%probe, "exporter accepts connections; registering");
                    keeper = Some(tokio::spawn(keep_registered(
                        etcd.clone(),
                        registration.clone(),
                        lease_ttl,
                        status.clone(),
                        stop_keeping.clone(),
                    )));
                }
            }
        }
    };
    status.exporter_up.store(false, Ordering::Relaxed);
    let code = exit_code(exit);
    tracing::info!(code, "exporter exited");
    if let Some(keeper) = keeper {
        stop_keeping.cancel();
        let _ = keeper.await;
        deregister(Store::new(etcd, timeout), &registration, status.lease.lock().ok().and_then(|l| *l)).await;
        status.registered.store(false, Ordering::Relaxed);
    }
    Ok(code)
}

fn forward(child: &Child, signal: Signal) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        tracing::info!(%signal, pid, "forwarding signal to the exporter");
        if let Err(e) = kill(Pid::from_raw(pid), signal) {
            tracing::warn!(%signal, error = %e, "cannot signal the exporter");
        }
    }
}

/// Where readiness is probed: the registered address (the loopback address when it is a wildcard).
async fn probe_address(registration: &Registration) -> SocketAddr {
    let port = u16::try_from(registration.service.port).unwrap_or(0);
    let ip = match registration.service.host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() && ip.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Ok(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        Ok(ip) => ip,
        Err(_) => match tokio::net::lookup_host((registration.service.host.as_str(), port)).await {
            Ok(mut addrs) => addrs.next().map(|a| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        },
    };
    SocketAddr::new(ip, port)
}

async fn accepts_connections(addr: SocketAddr) -> bool {
    matches!(tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
}

/// Writes the record and keeps it there until `stop`: retries while etcd is unreachable, and in lease mode
/// keeps the lease alive, granting a new one and writing the record again whenever the old one is lost.
pub(crate) async fn keep_registered(
    etcd: EtcdArgs,
    registration: Registration,
    lease_ttl: Option<Duration>,
    status: Arc<Status>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let value = registration.service.to_json();
    loop {
        let attempt = async {
            let (mut client, endpoints) = etcd.connect().await?;
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
        match result {
            Ok(()) => return,
            Err(e) => {
                status.etcd_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot register in etcd; retrying")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        // Under a lease, retry well within its TTL so a short outage does not let it lapse.
        let cap = lease_ttl.map(|ttl| (ttl / 3).clamp(Duration::from_millis(100), MAX_BACKOFF)).unwrap_or(MAX_BACKOFF);
        backoff = (backoff * 2).min(cap);
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

pub(crate) async fn deregister(store: Store, registration: &Registration, lease: Option<i64>) {
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
