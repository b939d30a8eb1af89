//! promsd-gateway's integration tests: the gateway in process on loopback port 0, with PushProx's client
//! side spoken over real sockets (the end-to-end tests run the agent and Prometheus).

mod pushprox;
mod remote_write;
mod tokens;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use promsd_gateway::Cli;
use promsd_pushprox::{ScrapeRequest, ScrapeResponse};
use promsd_tests::{HttpReply, eventually, http_get, http_post, http_raw};
use tokio_util::sync::CancellationToken;

pub struct Gateway {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Gateway {
    /// Starts the gateway with these flags (its listen address is loopback port 0) and waits until it answers.
    pub fn start(args: &[&str]) -> Self {
        let cli = Cli::try_parse_from(std::iter::once("promsd-gateway").chain(args.iter().copied())).expect("flags");
        let prepared = promsd_gateway::prepare(&cli).expect("prepared");
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || {
            if let Err(error) = runtime.block_on(promsd_gateway::run(prepared, listener, stop)) {
                eprintln!("gateway stopped: {error}");
            }
        });
        eventually("the gateway to answer", Duration::from_secs(10), || {
            http_get(addr, "/-/ready").ok().filter(|(status, _)| *status == 200)
        });
        Self { addr, shutdown, thread: Some(thread) }
    }

    pub fn clients(&self) -> serde_json::Value {
        let (status, body) = http_get(self.addr, "/clients").expect("GET /clients");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    }

    pub fn metrics(&self) -> String {
        http_get(self.addr, "/metrics").expect("GET /metrics").1
    }

    /// A PushProx client's poll, as its client sends it (body: the FQDN), with extra header lines.
    pub fn poll(&self, fqdn: &str, headers: &[&str]) -> HttpReply {
        http_post(self.addr, "/poll", headers, fqdn.as_bytes()).expect("POST /poll")
    }

    /// A PushProx client's poll in the background.
    pub fn poll_in_background(&self, fqdn: &str, headers: &[&str]) -> std::thread::JoinHandle<HttpReply> {
        let (addr, fqdn) = (self.addr, fqdn.to_string());
        let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        std::thread::spawn(move || {
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            http_post(addr, "/poll", &headers, fqdn.as_bytes()).expect("POST /poll")
        })
    }

    /// Prometheus's scrape through `proxy_url`: the request line names the target in absolute form.
    pub fn scrape(&self, url: &str, headers: &[&str]) -> HttpReply {
        self.scrape_in_background(url, headers).join().expect("scrape")
    }

    pub fn scrape_in_background(&self, url: &str, headers: &[&str]) -> std::thread::JoinHandle<HttpReply> {
        let (addr, url) = (self.addr, url.to_string());
        let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        std::thread::spawn(move || {
            let host = url.split('/').nth(2).unwrap_or_default().to_string();
            let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
            let request = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n");
            http_raw(addr, request.as_bytes()).expect("scrape through the gateway")
        })
    }

    /// Answers `request` (a poll's body) with `body`, as PushProx's client pushes.
    pub fn push(&self, request: &str, status: u16, body: &str, headers: &[&str]) -> HttpReply {
        let request = ScrapeRequest::parse(request.as_bytes()).expect("a scrape request");
        let mut response_headers = hyper::HeaderMap::new();
        response_headers.insert(promsd_pushprox::ID, request.id().expect("Id").parse().expect("value"));
        response_headers.insert(hyper::header::CONTENT_TYPE, "text/plain; version=0.0.4".parse().expect("value"));
        let response = ScrapeResponse {
            status: hyper::StatusCode::from_u16(status).expect("status"),
            headers: response_headers,
            body: bytes::Bytes::from(body.to_string()),
        };
        http_post(self.addr, "/push", headers, &response.encode()).expect("POST /push")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A token file entry whose secret is `secret`.
pub fn token_entry(id: &str, secret: &str, expires: &str, clients: &[&str], scrape: &[&str]) -> String {
    let hash: String = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let list = |items: &[&str]| items.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "  - id: {id}\n    secret_sha256: {hash}\n    expires: {expires}\n    clients: [{}]\n    scrape: [{}]\n    tenant: {id}\n",
        list(clients),
        list(scrape)
    )
}

pub fn write_tokens(path: &Path, entries: &[String]) {
    // Written beside and renamed, as config management does: the gateway never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("tokens:\n{}", entries.concat())).expect("write tokens");
    std::fs::rename(&tmp, path).expect("rename tokens");
}
