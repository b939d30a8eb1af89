//! The gateway's clients in etcd, as SkyDNS records (`--registry.zone`): every module an agent announces is
//! `<fqdn>.<module>.<service>.<zone>` (service `nat` by default), pointing at `<fqdn>:<port>` with the
//! agent's labels, `/proxy` and `module=<module>`, so dnsd answers it (`dig SRV node.nat.prom.local`) and
//! lists it in its http_sd (`/sd/v1/prom.local?service=nat`) for a job with the gateway as `proxy_url`.
//!
//! All records are held under one lease of the gateway's: a gateway that dies takes its records with it
//! within the lease's TTL. The set follows the known clients every second; every 30 s what etcd holds is
//! compared with it and anything missing or changed (an `etcdctl del`, a replaced cluster) written again.
//! After any etcd error the gateway reconnects with the shared backoff, under a new lease, and writes all.
//! Only keys this gateway wrote are ever deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use promsd_backoff::Backoff;
use promsd_common::{EtcdArgs, KeyPrefix, Lenient, Pairs, Service};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::coordinator::{Coordinator, Known};

/// How often the wanted set is compared with what was written.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How often etcd's own copy is read back and mended.
const RECONCILE_EVERY: Duration = Duration::from_secs(30);
/// No etcd call may wait longer than this.
const CALL_LIMIT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
enum RegistryError {
    #[error(transparent)]
    Connect(#[from] promsd_common::EtcdError),
    #[error("{}", promsd_common::etcd::describe(.0))]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("lease {0} expired")]
    LeaseExpired(i64),
}

#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub etcd: EtcdArgs,
    /// The SkyDNS key prefix (`--registry.path`, /skydns).
    pub path: KeyPrefix,
    pub zone: String,
    /// The label below the zone the clients are registered under.
    pub service: String,
    pub lease_ttl: Duration,
    /// The records' `owner` (`PROMSD_OWNER`, else /etc/machine-id), read once at start.
    pub owner: String,
}

/// The records the known clients stand for: key -> SkyDNS value.
pub fn records(settings: &RegistrySettings, known: &[Known]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for client in known {
        let Some(announce) = &client.announce else { continue };
        for (module, announced) in &announce.modules {
            if promsd_common::name::validate_label("module", module).is_err() {
                continue;
            }
            let name = format!("{}.{module}.{}.{}", client.name, settings.service, settings.zone);
            let labels: Vec<(String, String)> = announced
                .labels
                .iter()
                .filter(|(k, _)| promsd_common::labels::is_label_name(k) && !k.starts_with("__"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let service = Service {
                host: client.name.clone(),
                port: i64::from(announce.port),
                owner: settings.owner.clone(),
                labels: if labels.is_empty() { Lenient::Absent } else { Lenient::Valid(labels.into_iter().collect()) },
                metrics_path: Lenient::Valid("/proxy".to_string()),
                params: Lenient::Valid(Pairs::from_iter([("module", module.as_str())])),
                ..Service::default()
            };
            out.insert(settings.path.key_for_name(&name), service.to_json());
        }
    }
    out
}

async fn call<T>(future: impl Future<Output = Result<T, etcd_client::Error>>) -> Result<T, RegistryError> {
    tokio::time::timeout(CALL_LIMIT, future).await.map_err(|_| RegistryError::Timeout(CALL_LIMIT))?.map_err(Into::into)
}

/// Keeps the known clients' records in etcd until `shutdown`, then revokes the lease (removing them all).
pub async fn run(settings: Arc<RegistrySettings>, coordinator: Arc<Coordinator>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut attempt = 0;
    let mut lease = None;
    loop {
        let session = session(&settings, &coordinator, attempt, &mut lease, &shutdown);
        let result = session.await;
        let Err(error) = result else { break };
        attempt += 1;
        let delay = backoff.next_delay();
        tracing::warn!(%error, retry_in = ?delay, "cannot keep the clients' records in etcd; retrying");
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    // Revoking the lease deletes every record under it at once; one that could not be revoked expires.
    if let Some(id) = lease
        && let Ok((mut client, _)) = settings.etcd.connect().await
    {
        let _ = call(client.lease_revoke(id)).await;
    }
}

/// One connection's worth of keeping: a lease, every record written under it, then following the set.
/// Returns Ok at shutdown.
async fn session(
    settings: &RegistrySettings,
    coordinator: &Coordinator,
    attempt: usize,
    lease: &mut Option<i64>,
    shutdown: &CancellationToken,
) -> Result<(), RegistryError> {
    let (mut client, endpoints) = settings.etcd.connect_attempt(attempt).await?;
    let ttl = i64::try_from(settings.lease_ttl.as_secs().max(1)).unwrap_or(i64::MAX);
    let id = call(client.lease_grant(ttl, None)).await?.id();
    *lease = Some(id);
    let (mut keeper, mut answers) = call(client.lease_keep_alive(id)).await?;
    tracing::info!(lease = id, endpoints = %endpoints.join(","), "keeping the clients' records in etcd");
    let mut written: BTreeMap<String, String> = BTreeMap::new();
    let mut follow = tokio::time::interval(FOLLOW_EVERY);
    let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
    let mut keepalive = tokio::time::interval(Duration::from_secs((ttl as u64 / 3).max(1)));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = follow.tick() => {
                let wanted = records(settings, &coordinator.known());
                apply(&mut client, id, &wanted, &mut written).await?;
            }
            _ = reconcile.tick() => {
                let prefix = format!("{}/", settings.path.key_for_name(&format!("{}.{}", settings.service, settings.zone)));
                let held = call(client.get(prefix, Some(GetOptions::new().with_prefix()))).await?;
                let held: BTreeMap<String, String> = held
                    .kvs()
                    .iter()
                    .filter_map(|kv| Some((kv.key_str().ok()?.to_string(), kv.value_str().ok()?.to_string())))
                    .collect();
                // What etcd lost or someone changed is written again at the next follow.
                written.retain(|key, value| held.get(key) == Some(value));
            }
            _ = keepalive.tick() => {
                call(keeper.keep_alive()).await?;
                let answer = call(answers.message()).await?;
                if answer.is_none_or(|a| a.ttl() <= 0) {
                    return Err(RegistryError::LeaseExpired(id));
                }
            }
        }
    }
}

/// Writes what is wanted and not written, deletes what was written and is no longer wanted (only if it is
/// still the value written).
async fn apply(
    client: &mut Client,
    lease: i64,
    wanted: &BTreeMap<String, String>,
    written: &mut BTreeMap<String, String>,
) -> Result<(), RegistryError> {
    for (key, value) in wanted {
        if written.get(key) != Some(value) {
            call(client.put(key.as_str(), value.as_str(), Some(PutOptions::new().with_lease(lease)))).await?;
            tracing::debug!(%key, "client registered in etcd");
            written.insert(key.clone(), value.clone());
        }
    }
    let gone: Vec<(String, String)> =
        written.iter().filter(|(k, _)| !wanted.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    for (key, value) in gone {
        let txn = Txn::new()
            .when([Compare::value(key.as_str(), CompareOp::Equal, value.as_str())])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        call(client.txn(txn)).await?;
        tracing::debug!(%key, "client removed from etcd");
        written.remove(&key);
    }
    Ok(())
}
