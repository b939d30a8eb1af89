//! The shared test harness: real etcd processes on free loopback ports with temporary data directories,
//! real `dig` and `etcdctl`, processes that are killed when the test ends, and network namespaces for what
//! must use port 53 (Prometheus, etcdctl --discovery-srv).

pub mod dig;
pub mod etcd;
pub mod knot;
pub mod netns;
pub mod process;
pub mod promtool;
pub mod tls;

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use dig::{Dig, dig};
pub use etcd::{Etcd, EtcdCluster};
pub use knot::{Knot, KnotKey};
pub use netns::Netns;
pub use process::{Process, pid_alive};
pub use promtool::{assert_exporter_basics, normalize_sample, promtool};

/// A loopback port that is free for both TCP and UDP right now, and never handed out twice in one test
/// process. Ports come from below Linux's ephemeral range (32768 and up), so no outgoing connection can take
/// one between this call and the bind of the server it is meant for.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 600) * 20;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(base + offset % 12_000).unwrap_or(20_000);
        let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) else { continue };
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            drop(tcp);
            return port;
        }
    }
}

/// Polls `check` until it returns Some or `timeout` passes; panics with `what` on timeout.
pub fn eventually<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    eventually_or(what, timeout, check).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// As [`eventually`], but none after `timeout` (saying so on stderr), for a caller that shows its logs.
pub fn eventually_or<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() > deadline {
            eprintln!("timed out after {timeout:?} waiting for {what}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `check`, which asserts, repeatedly for the whole of `period`. For what must *not* happen during a
/// period: a bounded wait that asserts throughout, rather than a sleep followed by one look.
pub fn holds_for(period: Duration, mut check: impl FnMut()) {
    let end = Instant::now() + period;
    loop {
        check();
        if Instant::now() >= end {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A binary of this workspace, built by `cargo test --workspace` next to the test executables.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target directory");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run the tests with `cargo test --workspace`", path.display());
    path
}

/// A command that could not be started or that failed; its Display names the command, and for a failure
/// its exit status and stderr.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run {command}: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("{command} failed ({status}): {stderr}")]
    Failed { command: String, status: std::process::ExitStatus, stderr: String },
}

/// Runs `command`: its stdout when it succeeds; when it fails, the command, its exit status and its stderr.
pub fn output_of(command: &mut std::process::Command) -> Result<String, CommandError> {
    let name = format!("{command:?}");
    let output = command.output().map_err(|source| CommandError::Spawn { command: name.clone(), source })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        Err(CommandError::Failed { command: name, status: output.status, stderr })
    }
}

/// Whether an external program is installed; tests that need one fail with a clear message when it is not.
pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    assert!(found, "{program} is not installed: run scripts/test, which installs what the tests need");
}

/// A plain HTTP/1.1 GET with the standard library: returns the status code and the body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, path, &[]).map(|reply| (reply.status, reply.body))
}

/// What [`http_request`] got back.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    /// Names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A GET with extra request headers (`Name: value` lines); a chunked body is decoded.
pub fn http_request(addr: std::net::SocketAddr, path: &str, headers: &[&str]) -> std::io::Result<HttpReply> {
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    http_raw(addr, format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n").as_bytes())
}

/// Sends `request` as it is (it should say `Connection: close`) and reads the reply to the end.
pub fn http_raw(addr: std::net::SocketAddr, request: &[u8]) -> std::io::Result<HttpReply> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let raw = response.get(split + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Ok(HttpReply { status, headers, body: String::from_utf8_lossy(&body).to_string() })
}

/// A POST of `body` to `path` with extra header lines.
pub fn http_post(addr: std::net::SocketAddr, path: &str, headers: &[&str], body: &[u8]) -> std::io::Result<HttpReply> {
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    http_raw(addr, &request)
}

/// The body of a chunked transfer: each chunk's size line, then its bytes, until the empty chunk.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..end]).ok().and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size.filter(|&s| s > 0) else { break };
        let start = end + 2;
        let Some(chunk) = raw.get(start..start + size) else { break };
        body.extend_from_slice(chunk);
        raw = raw.get(start + size + 2..).unwrap_or_default();
    }
    body
}
