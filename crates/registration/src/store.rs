//! etcd operations for one-shot commands, each retried with backoff until `--timeout`, then failed with one
//! line that names the endpoints. Errors that retrying cannot fix (permissions, bad requests) fail at once.

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, GetOptions, PutOptions};
use promsd_backoff::Backoff;
use promsd_common::etcd::is_permanent;
use promsd_common::{EtcdArgs, EtcdError};
use thiserror::Error;
use tokio::time::Instant;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("etcd unreachable at {endpoints} after {:.1}s: {last}", waited.as_secs_f64())]
    Unreachable { endpoints: String, waited: Duration, last: Transient },
    #[error("etcd at {endpoints} refused the request: {source}")]
    Refused { endpoints: String, source: etcd_client::Error },
    #[error(transparent)]
    Config(EtcdError),
}

/// Why the last attempt failed in a way another attempt may fix.
#[derive(Debug, Error)]
pub enum Transient {
    #[error(transparent)]
    Connect(EtcdError),
    /// The innermost cause, which is what a person needs (see `promsd_common::etcd::describe`).
    #[error("{}", promsd_common::etcd::describe(.0))]
    Etcd(#[source] etcd_client::Error),
    #[error("timed out")]
    TimedOut,
}

/// The check a daemon (`registrar run`, the agent) makes before it starts: a refusal no retry changes
/// (wrong credentials, no permission for a key) is an error; an etcd that does not answer within the dial
/// timeout is logged and left to the keepers' retries, as etcd may well be down while a host boots.
pub async fn check_at_start(etcd: &EtcdArgs, keys: &[String]) -> Result<(), StoreError> {
    let timeout = etcd.dial_timeout.max(Duration::from_secs(1));
    match Store::new(etcd.clone(), timeout).check_access(keys).await {
        Err(StoreError::Unreachable { endpoints, last, .. }) => {
            tracing::warn!(%endpoints, error = %last, "etcd does not answer yet; registering once it does");
            Ok(())
        }
        checked => checked,
    }
}

/// One key-value as listed.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub value: Vec<u8>,
    pub lease: i64,
}

pub struct Store {
    etcd: EtcdArgs,
    timeout: Duration,
}

impl Store {
    pub fn new(etcd: EtcdArgs, timeout: Duration) -> Self {
        Self { etcd, timeout }
    }

    pub async fn put(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.retry(|mut client| async move { client.put(key, value, None::<PutOptions>).await.map(|_| ()) }).await
    }

    /// Deletes `key`; returns whether it existed. A missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.retry(|mut client| async move { client.delete(key, None).await.map(|r| r.deleted() > 0) }).await
    }

    /// Deletes `key` only while it holds `value`, so a registrar never removes a record another one wrote
    /// since; returns whether it was deleted.
    pub async fn delete_if(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        use etcd_client::{Compare, CompareOp, Txn, TxnOp};
        self.retry(|mut client| async move {
            let txn =
                Txn::new().when([Compare::value(key, CompareOp::Equal, value)]).and_then([TxnOp::delete(key, None)]);
            client.txn(txn).await.map(|r| r.succeeded())
        })
        .await
    }

    /// Whether etcd lets these credentials read and write each of `keys`, without writing anything: a
    /// transaction whose condition never holds still has every operation in it checked for permission.
    /// For a daemon's start, so that a refusal no retry changes stops it at once; an etcd that does not
    /// answer within the store's timeout is `Unreachable` (the daemon goes on and retries).
    pub async fn check_access(&self, keys: &[String]) -> Result<(), StoreError> {
        use etcd_client::{Compare, CompareOp, Txn, TxnOp};
        for key in keys {
            self.retry(|mut client| async move {
                let never = Compare::create_revision(key.as_str(), CompareOp::Less, 0);
                let txn = Txn::new().when([never]).and_then([TxnOp::put(key.as_str(), "", None)]);
                let txn = txn.or_else([TxnOp::get(key.as_str(), None)]);
                client.txn(txn).await.map(|_| ())
            })
            .await?;
        }
        Ok(())
    }

    /// Revokes a lease, deleting its keys. A lease that no longer exists is not an error.
    pub async fn revoke(&self, id: i64) -> Result<(), StoreError> {
        self.retry(|mut client| async move {
            match client.lease_revoke(id).await {
                Ok(_) => Ok(()),
                Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Every key below `prefix/`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let range = format!("{}/", prefix.trim_end_matches('/'));
        self.retry(|mut client| {
            let range = range.clone();
            async move {
                let response = client.get(range, Some(GetOptions::new().with_prefix())).await?;
                Ok(response
                    .kvs()
                    .iter()
                    .map(|kv| Listed {
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                        value: kv.value().to_vec(),
                        lease: kv.lease(),
                    })
                    .collect())
            }
        })
        .await
    }

    async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut last = None;
        let mut endpoints = self.etcd.endpoints.join(",");
        if let Some(domain) = &self.etcd.discovery_srv {
            endpoints = format!("SRV records of {domain}");
        }
        let mut tries = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = async {
                let (client, resolved) = match self.etcd.connect_attempt(tries).await {
                    Ok(connected) => connected,
                    Err(e @ (EtcdError::ReadFile { .. } | EtcdError::CertWithoutKey | EtcdError::NoPassword(_))) => {
                        return Err(StoreError::Config(e));
                    }
                    Err(EtcdError::Endpoint(e)) => return Err(StoreError::Config(EtcdError::Endpoint(e))),
                    // Connecting authenticates: a wrong password is final, not a reason to retry.
                    Err(EtcdError::Client { endpoints, source }) if is_permanent(&source) => {
                        return Err(StoreError::Refused { endpoints, source });
                    }
                    Err(e) => return Ok(Err(Transient::Connect(e))),
                };
                endpoints = resolved.join(",");
                match op(client).await {
                    Ok(value) => Ok(Ok(value)),
                    Err(e) if is_permanent(&e) => Err(StoreError::Refused { endpoints: endpoints.clone(), source: e }),
                    Err(e) => Ok(Err(Transient::Etcd(e))),
                }
            };
            match tokio::time::timeout(remaining.max(Duration::from_millis(1)), attempt).await {
                Ok(Ok(Ok(value))) => return Ok(value),
                Ok(Err(fatal)) => return Err(fatal),
                Ok(Ok(Err(transient))) => last = Some(transient),
                // An attempt cut short by the deadline says less than the error before it, if there was one.
                Err(_) => {
                    last.get_or_insert(Transient::TimedOut);
                }
            }
            tries += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                if endpoints.is_empty() {
                    endpoints = promsd_common::etcd::DEFAULT_ENDPOINT.to_string();
                }
                let last = last.unwrap_or(Transient::TimedOut);
                return Err(StoreError::Unreachable { endpoints, waited: start.elapsed(), last });
            }
            if let Some(error) = &last {
                tracing::debug!(%error, "etcd not reachable yet; retrying");
            }
            tokio::time::sleep(backoff.next_delay().min(remaining)).await;
        }
    }
}
