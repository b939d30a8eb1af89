//! The gateway under many clients: CLIENTS PushProx clients (this process, speaking the protocol as
//! PushProx's client does: poll, fetch the backend, push) poll one promsd-gateway; then the same backend is
//! scraped SCRAPES times directly and SCRAPES times through the gateway (round-robin over the clients,
//! interleaved), one at a time, and the gateway's resident memory is read before and after the clients came.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::{HeaderMap, Method, StatusCode};
use promsd_client::Client;
use promsd_pushprox::{ScrapeRequest, ScrapeResponse};

#[derive(clap::Args)]
pub struct GatewayLoad {
    /// The gateway's address (plain HTTP, no token file)
    #[arg(long)]
    gateway: SocketAddr,
    /// The gateway's process id, for its VmRSS
    #[arg(long)]
    gateway_pid: u32,
    /// What every client serves and what is scraped directly: HOST:PORT of an exporter's /metrics
    #[arg(long)]
    backend: SocketAddr,
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    #[arg(long, default_value_t = 2000)]
    scrapes: usize,
}

fn client(addr: SocketAddr) -> Client {
    Client::new(addr.ip().to_string(), addr.port(), "/".into(), None, None, Vec::new())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading the gateway's status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

/// One client's loop: poll as `name`, fetch the backend for each scrape, push the answer.
async fn pushprox_client(name: String, gateway: Arc<Client>, backend: Arc<Client>) {
    loop {
        let Ok((status, body)) = gateway.post("poll", Bytes::from(name.clone()), None).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        if status != StatusCode::OK {
            continue;
        }
        let Ok(request) = ScrapeRequest::parse(&body) else { continue };
        let (gateway, backend) = (gateway.clone(), backend.clone());
        tokio::spawn(async move {
            let path = request.uri.path_and_query().map_or("/metrics", |p| p.as_str()).to_string();
            let fetched =
                backend.request(Method::GET, path.trim_start_matches('/'), &HeaderMap::new(), Bytes::new()).await;
            let mut response = match fetched {
                Ok(answer) => ScrapeResponse { status: answer.status, headers: answer.headers, body: answer.body },
                Err(error) => ScrapeResponse {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    headers: HeaderMap::new(),
                    body: Bytes::from(error.to_string()),
                },
            };
            if let Some(id) = request.headers.get(promsd_pushprox::ID) {
                response.headers.insert(promsd_pushprox::ID, id.clone());
            }
            let _ = gateway.post("push", Bytes::from(response.encode()), None).await;
        });
    }
}

/// A scrape as Prometheus sends it through `proxy_url`: absolute form to the gateway.
async fn scrape_through(gateway: &Client, name: &str, backend_port: u16) -> anyhow::Result<(StatusCode, usize)> {
    let mut headers = HeaderMap::new();
    headers.insert(promsd_pushprox::SCRAPE_TIMEOUT, "10".parse()?);
    let answer =
        gateway.request_absolute(Method::GET, &format!("http://{name}:{backend_port}/metrics"), &headers).await?;
    Ok((answer.status, answer.body.len()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

pub async fn run(args: GatewayLoad) -> anyhow::Result<()> {
    let gateway = Arc::new(client(args.gateway));
    let backend = Arc::new(client(args.backend));
    let before = rss_kib(args.gateway_pid)?;
    let names: Vec<String> = (0..args.clients).map(|i| format!("host{i:05}.bench.example.org")).collect();
    for name in &names {
        // One client per task, each with its own connections, as separate hosts would have.
        tokio::spawn(pushprox_client(name.clone(), Arc::new(client(args.gateway)), backend.clone()));
    }
    let started = Instant::now();
    loop {
        let answer = gateway.request(Method::GET, "clients", &HeaderMap::new(), Bytes::new()).await?;
        let listed: serde_json::Value = serde_json::from_slice(&answer.body)?;
        if listed.as_array().map_or(0, Vec::len) == args.clients {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("only {} of {} clients registered after 120 s", listed.as_array().map_or(0, Vec::len), args.clients);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let registered = started.elapsed();
    let (mut direct, mut through) = (Vec::with_capacity(args.scrapes), Vec::with_capacity(args.scrapes));
    let mut bytes = 0;
    for i in 0..args.scrapes {
        let t = Instant::now();
        let answer = backend.request(Method::GET, "metrics", &HeaderMap::new(), Bytes::new()).await?;
        direct.push(t.elapsed().as_secs_f64() * 1e3);
        bytes = answer.body.len();
        let t = Instant::now();
        let (status, size) = scrape_through(&gateway, &names[i % names.len()], args.backend.port()).await?;
        through.push(t.elapsed().as_secs_f64() * 1e3);
        // The exporter's counters change between scrapes; the size stays about the same.
        if status != StatusCode::OK || size.abs_diff(bytes) > bytes / 10 {
            bail!("scrape {i} through the gateway: {status}, {size} bytes (direct: {bytes})");
        }
    }
    let after = rss_kib(args.gateway_pid)?;
    for list in [&mut direct, &mut through] {
        list.sort_by(f64::total_cmp);
    }
    let (d50, d99, t50, t99) =
        (percentile(&direct, 0.5), percentile(&direct, 0.99), percentile(&through, 0.5), percentile(&through, 0.99));
    println!("clients: {} registered in {:.1} s", args.clients, registered.as_secs_f64());
    println!("scrapes: {} of {bytes} bytes each way, one at a time", args.scrapes);
    println!("direct:          p50 {d50:.3} ms  p99 {d99:.3} ms");
    println!(
        "through gateway: p50 {t50:.3} ms  p99 {t99:.3} ms  (added p50 {:.3} ms, p99 {:.3} ms)",
        t50 - d50,
        t99 - d99
    );
    println!(
        "gateway VmRSS: {:.1} MB before the clients, {:.1} MB with them: {:.1} KB per client",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after.saturating_sub(before)) as f64 / args.clients as f64
    );
    Ok(())
}
