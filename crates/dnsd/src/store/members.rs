//! Asks each etcd endpoint on its own how it is. The watch reaches etcd through one member at a time, so a
//! dead member that is not the one watched through changes nothing dnsd does: without this, losing one of
//! three members (one more failure from losing quorum) would show nowhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::Client;
use promsd_common::{EtcdArgs, EtcdError};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// How often every endpoint is asked.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// The last answer of each endpoint, for `/metrics`.
#[derive(Debug, Default)]
pub struct Members {
    up: Mutex<Vec<(String, bool)>>,
}

impl Members {
    /// Each endpoint asked so far and whether it answered last time, in the order of the endpoints.
    pub fn up(&self) -> Vec<(String, bool)> {
        self.up.lock().map(|up| up.clone()).unwrap_or_default()
    }

    fn set(&self, up: Vec<(String, bool)>) {
        if let Ok(mut current) = self.up.lock() {
            *current = up;
        }
    }
}

/// Asks every endpoint for its status every [`INTERVAL`] until `shutdown`; logs when one stops or starts
/// answering.
pub async fn probe(etcd: EtcdArgs, members: Arc<Members>, shutdown: CancellationToken) {
    let mut clients: HashMap<String, Client> = HashMap::new();
    let mut down: HashMap<String, bool> = HashMap::new();
    let timeout = etcd.dial_timeout.max(Duration::from_secs(1));
    let mut ticker = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // Resolved each round: endpoints found through DNS SRV records may change.
        let Ok(endpoints) = etcd.resolve_endpoints().await else { continue };
        let mut up = Vec::with_capacity(endpoints.len());
        // With one endpoint the watch's own warnings say it all; the metric is still kept.
        let several = endpoints.len() > 1;
        for endpoint in endpoints {
            let answered = tokio::time::timeout(timeout, status(&etcd, &endpoint, &mut clients)).await;
            let error = match answered {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error),
                Err(_) => Some(Unanswered::Timeout(timeout)),
            };
            if error.is_some() {
                clients.remove(&endpoint); // a fresh connection next time
            }
            let was_down = down.insert(endpoint.clone(), error.is_some());
            match (&error, was_down) {
                _ if !several => {}
                (Some(error), None | Some(false)) => tracing::warn!(
                    %endpoint,
                    %error,
                    "etcd member does not answer; dnsd follows through the others (if a quorum is left)"
                ),
                (None, Some(true)) => tracing::info!(%endpoint, "etcd member answers again"),
                _ => {}
            }
            up.push((endpoint, error.is_none()));
        }
        members.set(up);
    }
}

#[derive(Debug, Error)]
enum Unanswered {
    #[error(transparent)]
    Connect(#[from] EtcdError),
    #[error("{}", promsd_common::etcd::describe(.0))]
    Status(#[from] etcd_client::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

async fn status(etcd: &EtcdArgs, endpoint: &str, clients: &mut HashMap<String, Client>) -> Result<(), Unanswered> {
    let client = match clients.get_mut(endpoint) {
        Some(client) => client,
        None => {
            let client = etcd.connect_one(endpoint).await?;
            clients.entry(endpoint.to_string()).or_insert(client)
        }
    };
    client.status().await?;
    Ok(())
}
