//! The agent side by side with exporter_exporter (Debian's prometheus-exporter-exporter) in front of the same
//! backend: what the backend receives (path, merged query, the client's headers, X-Forwarded-For) is the same
//! through both. A small recording HTTP server stands in for the exporter so the request can be seen.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use promsd_tests::{Etcd, Process, eventually, free_port, require};

use crate::agent::{get, start_agent};

/// What one request to the recording backend looked like.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

/// Serves `up 1` to every request on a free loopback port and records each request.
fn recording_backend() -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind(("127.0.0.1", free_port())).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let target = line.split_whitespace().nth(1).unwrap_or_default().to_string();
            let mut headers = Vec::new();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.trim_end().split_once(':') {
                    headers.push((name.to_string(), value.trim().to_string()));
                }
            }
            record.lock().expect("lock").push(Seen { target, headers });
            let body = "up 1\n";
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

fn exporter_exporter(dir: &std::path::Path, backend: u16) -> (Process, SocketAddr) {
    require("prometheus-exporter-exporter");
    let config = dir.join("expexp.yml");
    std::fs::write(
        &config,
        format!(
            "modules:\n  echo:\n    method: http\n    http:\n      port: {backend}\n      address: 127.0.0.1\n      path: /metrics?collect[]=cpu\n      headers:\n        X-Module: m\n  script:\n    method: exec\n    exec:\n      command: echo\n      args: [\"up 1\"]\n"
        ),
    )
    .expect("write");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut command = Command::new("prometheus-exporter-exporter");
    command.arg(format!("-config.file={}", config.display())).arg(format!("-web.listen-address={addr}"));
    let process = Process::spawn("exporter_exporter", command, &dir.join("expexp.log"));
    eventually("exporter_exporter to listen", Duration::from_secs(10), || std::net::TcpStream::connect(addr).ok());
    (process, addr)
}

/// What Prometheus sends when it scrapes, plus a forwarded-for chain from a proxy in front.
const SCRAPE_HEADERS: [(&str, &str); 4] = [
    ("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    ("User-Agent", "Prometheus/2.42.0"),
    ("X-Prometheus-Scrape-Timeout-Seconds", "10"),
    ("X-Forwarded-For", "10.1.1.1"),
];

#[test]
fn the_backend_sees_the_same_request_through_both() {
    require("curl");
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let (backend, seen) = recording_backend();
    let (_expexp, expexp) = exporter_exporter(d, backend);
    let config = format!(
        "etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\nmodules:\n  echo:\n    method: http\n    http:\n      port: {backend}\n      address: 127.0.0.1\n      path: /metrics?collect[]=cpu\n      headers:\n        X-Module: m\n  script:\n    method: exec\n    exec:\n      command: echo\n      args: [\"up 1\"]\n",
        etcd.endpoint
    );
    let (_agent, agent) = start_agent(d, &config);

    // `module` percent-encoded; forwarded parameters, one repeated and one with an encoded space.
    let path = "/proxy?module=ec%68o&target=a%20b&x=2&x=1";
    let mut through = Vec::new();
    for proxy in [expexp, agent] {
        let before = seen.lock().expect("lock").len();
        let (status, body) = get(proxy, path, &SCRAPE_HEADERS);
        assert_eq!((status, body.as_str()), (200, "up 1\n"), "through {proxy}");
        let request = seen.lock().expect("lock").get(before).cloned().expect("the backend saw the request");
        through.push(request);
    }
    let (expexp_saw, agent_saw) = (&through[0], &through[1]);
    // One valid query: the module path's own parameters merged with the forwarded ones, sorted by name.
    assert_eq!(agent_saw.target, expexp_saw.target);
    assert_eq!(agent_saw.target, "/metrics?collect%5B%5D=cpu&target=a+b&x=2&x=1");
    for name in ["Accept", "User-Agent", "X-Prometheus-Scrape-Timeout-Seconds", "X-Module", "X-Forwarded-For"] {
        assert_eq!(agent_saw.header(name), expexp_saw.header(name), "header {name}");
    }
    assert_eq!(agent_saw.header("X-Forwarded-For"), ["10.1.1.1, 127.0.0.1"]);
    assert_eq!(agent_saw.header("User-Agent"), ["Prometheus/2.42.0"]);
    // The one difference, on purpose: exporter_exporter (Go's ReverseProxy) passes on the Host the client
    // sent it, i.e. its own address; the agent names the backend it talks to.
    assert_eq!(expexp_saw.header("Host"), [expexp.to_string().as_str()]);
    assert_eq!(agent_saw.header("Host"), [format!("127.0.0.1:{backend}").as_str()]);

    // exporter_exporter appends args= to an exec module's command line; the agent refuses, saying why.
    let (status, body) = get(agent, "/proxy?module=script&args=--help", &[]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no args="), "{body}");
    assert_eq!(get(agent, "/proxy?module=script", &[]).0, 200);
}

/// The agent's own credentials are not the backend's: neither its basic-auth user nor its token reach it.
#[test]
fn the_agent_s_credentials_stay_with_the_agent() {
    require("curl");
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (backend, seen) = recording_backend();
    let config = format!(
        "etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\ntoken:\n  header: X-Token\n  value: t0ken\nmodules:\n  echo:\n    method: http\n    http:\n      port: {backend}\n      address: 127.0.0.1\n",
        etcd.endpoint
    );
    let (_agent, agent) = start_agent(dir.path(), &config);
    let (status, _) = get(agent, "/proxy?module=echo", &[("X-Token", "t0ken"), ("Authorization", "Basic cDpx")]);
    assert_eq!(status, 200);
    let request = seen.lock().expect("lock").last().cloned().expect("seen");
    assert!(request.header("X-Token").is_empty() && request.header("Authorization").is_empty(), "{request:?}");
}
