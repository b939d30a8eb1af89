//! Writing to etcd fast: many transactions in flight at once for bulk loads, and paced single puts for churn.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use etcd_client::{Client, Txn, TxnOp};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::Rng;
use crate::layout::{Layout, PORT};

/// Connects to etcd with a bounded connect time, so a wrong endpoint fails quickly.
pub async fn connect(endpoints: &[String]) -> anyhow::Result<Client> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(30));
    Client::connect(endpoints, Some(options))
        .await
        .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))
}

/// Runs `count` operations, `op(n)` for n in 0..count, as transactions of `txn_ops` operations with
/// `concurrency` of them in flight (each on its own connection). Returns how long it took.
pub async fn bulk<F>(
    endpoints: &[String],
    count: usize,
    concurrency: usize,
    txn_ops: usize,
    op: F,
) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> TxnOp + Send + Sync + 'static,
{
    let txn_ops = txn_ops.max(1);
    let chunks = count.div_ceil(txn_ops);
    let workers = concurrency.clamp(1, chunks.max(1));
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::with_capacity(workers);
    for _ in 0..workers {
        clients.push(connect(endpoints).await?);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in clients {
        let (op, next) = (op.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let chunk = next.fetch_add(1, Ordering::Relaxed);
                if chunk >= chunks {
                    return anyhow::Ok(());
                }
                let ops: Vec<TxnOp> = (chunk * txn_ops..((chunk + 1) * txn_ops).min(count)).map(|n| op(n)).collect();
                client.txn(Txn::new().and_then(ops)).await.with_context(|| {
                    format!("transaction of {txn_ops} operations (is etcd's --max-txn-ops at least that?)")
                })?;
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(started.elapsed())
}

/// Writes the `load` layout: the two name servers, then every node record. Returns keys written and time.
pub async fn load_layout(
    endpoints: &[String],
    layout: &Layout,
    concurrency: usize,
    txn_ops: usize,
    labelled: bool,
) -> anyhow::Result<(usize, Duration)> {
    let count = layout.targets() + 2;
    let (ns, layout) = (layout.ns_keys(), layout.clone());
    let took = bulk(endpoints, count, concurrency, txn_ops, move |n| match n {
        0 | 1 => TxnOp::put(ns[n].0.as_str(), ns[n].1.as_str(), None),
        _ => {
            let (s, i) = layout.nth(n - 2);
            let value = if labelled { Layout::agent_value(s, i) } else { Layout::value(&Layout::host(s, i), PORT) };
            TxnOp::put(layout.key(s, i), value, None)
        }
    })
    .await?;
    Ok((count, took))
}

#[derive(Debug, Default, Clone)]
pub struct ChurnStats {
    /// Puts etcd confirmed.
    pub done: u64,
    pub failed: u64,
    /// From the first put to the last one confirmed.
    pub elapsed: Duration,
    pub first_error: Option<String>,
}

impl ChurnStats {
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn describe(&self, target: u32) -> String {
        let mut line = format!(
            "churn: {} puts in {:.2} s: {:.0} puts/s achieved (asked for {target}/s)",
            self.done,
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        if self.failed > 0 {
            line.push_str(&format!(", {} failed (first: {})", self.failed, self.first_error.as_deref().unwrap_or("?")));
        }
        line
    }
}

/// Puts at most this many churn writes in flight: etcd batches concurrent writes into one commit, so the
/// rate does not depend on one put's latency, and a stalled etcd cannot pile up work without bound.
const CHURN_IN_FLIGHT: usize = 256;

/// Puts `rate` values a second to random existing keys of `layout` (new port, same host, so A answers stay
/// and SRV answers change), on a fixed schedule (the n-th put is due at start + n/rate, so no drift), until
/// `stop` completes or `max` has passed. Waits at most 10 s for the puts in flight afterwards.
pub async fn churn(
    client: Client,
    layout: Layout,
    rate: u32,
    max: Duration,
    stop: impl Future<Output = ()>,
) -> ChurnStats {
    let rate = rate.max(1);
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    let mut rng = Rng::new(seed);
    let permits = Arc::new(Semaphore::new(CHURN_IN_FLIGHT));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let last_done = Arc::new(std::sync::Mutex::new(started));
    tokio::pin!(stop);
    let mut n: u64 = 0;
    loop {
        let due = started + Duration::from_secs_f64(n as f64 / f64::from(rate));
        if due.duration_since(started) >= max {
            break;
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep_until(due) => {}
        }
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let (s, i) = (rng.below(layout.services), rng.below(layout.instances));
        let port = 10_000 + (n % 50_000) as i64;
        let (key, value) = (layout.key(s, i), Layout::value(&Layout::host(s, i), port));
        let mut client = client.clone();
        let (done, failed, first_error, last_done) =
            (done.clone(), failed.clone(), first_error.clone(), last_done.clone());
        tokio::spawn(async move {
            match client.put(key, value, None).await {
                Ok(_) => {
                    done.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut last) = last_done.lock() {
                        *last = Instant::now();
                    }
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut first) = first_error.lock() {
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            drop(permit);
        });
        n += 1;
    }
    // Every permit back means every put has been answered.
    let all = u32::try_from(CHURN_IN_FLIGHT).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(10), permits.acquire_many(all)).await;
    let elapsed = last_done.lock().map(|last| last.duration_since(started)).unwrap_or_default();
    ChurnStats {
        done: done.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        elapsed,
        first_error: first_error.lock().ok().and_then(|e| e.clone()),
    }
}

/// `promsd-bench churn`: churn for a fixed time.
pub async fn churn_for(
    endpoints: &[String],
    layout: Layout,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<ChurnStats> {
    let client = connect(endpoints).await?;
    let stats = churn(client, layout, rate, duration, std::future::pending()).await;
    if stats.done == 0 {
        anyhow::bail!("no churn put succeeded: {}", stats.first_error.unwrap_or_default());
    }
    Ok(stats)
}
