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
use crate::registrar;

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

    // exporter_exporter appends args= to an exec module's command line; so does the agent (`echo up 1 --help`
    // is not exposition format, so both refuse the output).
    let (status, body) = get(agent, "/proxy?module=script&args=--help", &[]);
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("not valid exposition format"), "{body}");
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

/// curl's view of one request: (status, Content-Type, body).
fn fetch(addr: SocketAddr, path: &str, extra: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-o", "-", "-w", "\n%{http_code} %{content_type}"])
        .args(extra)
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').expect("status line");
    let (code, content_type) = tail.split_once(' ').unwrap_or((tail, ""));
    (code.parse().expect("status"), content_type.to_string(), body.to_string())
}

/// The samples of an exposition, sorted: exporter_exporter re-encodes an exec module's output (adding
/// `# TYPE` lines, ordering the families), the agent passes it on as the command wrote it.
fn samples(body: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = body.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    lines.sort_unstable();
    lines
}

/// exporter_exporter's JSON with header and environment values as the agent shows them.
fn hidden_values(mut json: serde_json::Value) -> serde_json::Value {
    for module in json.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
        for (section, field) in [("HTTP", "Headers"), ("Exec", "Env")] {
            if let Some(map) = module[section][field].as_object_mut() {
                map.values_mut().for_each(|v| *v = "<hidden>".into());
            }
        }
    }
    json
}

/// exporter_exporter 0.4's file and module directory, given unchanged to both with exporter_exporter's own
/// flags: the agent only proxies (no etcd, no address) and says so once; `/` and `/proxy` answer as
/// exporter_exporter's do for the same requests.
#[test]
fn exporter_exporter_s_files_and_flags_answer_the_same_through_both() {
    require("curl");
    require("prometheus-exporter-exporter");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let (backend, seen) = recording_backend();
    let script = d.join("args.sh");
    std::fs::write(&script, "#!/bin/sh\necho up 1\nfor a in \"$@\"; do echo \"arg{value=\\\"$a\\\"} 1\"; done\n")
        .expect("write");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    // As exporter_exporter 0.4 reads it: `global`, Go durations, `http.verify`, exec `env`.
    let config = d.join("expexp.yaml");
    std::fs::write(
        &config,
        format!(
            "global: {{}}\nmodules:\n  echo:\n    method: http\n    timeout: 1.5s\n    http:\n      port: {backend}\n      address: 127.0.0.1\n      verify: false\n      path: /metrics?collect[]=cpu\n      headers:\n        X-Module: m\n  script:\n    method: exec\n    timeout: 1m30s\n    exec:\n      command: {}\n      args: [first]\n      env:\n        THING: \"1\"\n",
            script.display()
        ),
    )
    .expect("write");
    let modules_dir = d.join("expexp.d");
    std::fs::create_dir(&modules_dir).expect("mkdir");
    std::fs::write(
        modules_dir.join("extra.yaml"),
        "method: exec\ntimeout: 500ms\nexec:\n  command: echo\n  args: [\"up 1\"]\n",
    )
    .expect("write");
    let flags = |addr: SocketAddr| {
        [
            format!("-config.file={}", config.display()),
            "-config.dirs".into(),
            modules_dir.display().to_string(),
            "-web.listen-address".into(),
            addr.to_string(),
        ]
    };
    let start = |name: &str, mut command: Command| {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        command.args(flags(addr));
        let process = Process::spawn(name, command, &d.join(format!("{name}.log")));
        eventually("it to listen", Duration::from_secs(10), || std::net::TcpStream::connect(addr).ok());
        (process, addr)
    };
    let (_expexp, expexp) = start("exporter_exporter", Command::new("prometheus-exporter-exporter"));
    let mut agent_command = registrar();
    agent_command.arg("agent");
    let (agent_process, agent) = start("agent", agent_command);
    let said = "no etcd and address configured: proxying only, registering nothing";
    eventually("the agent to say it only proxies", Duration::from_secs(10), || {
        agent_process.log().contains(said).then_some(())
    });
    assert_eq!(agent_process.log().matches(said).count(), 1, "{}", agent_process.log());

    // The same answers, status, type and body, for the same requests.
    for (path, extra) in [
        ("/", &[][..]),
        // Only exactly `application/json` is JSON to exporter_exporter.
        ("/", &["-H", "Accept: application/json, text/html"][..]),
        ("/proxy", &[][..]),
        ("/proxy?module=nope&module=echo", &[][..]),
        ("/proxy?module=", &[][..]),
    ] {
        assert_eq!(fetch(agent, path, extra), fetch(expexp, path, extra), "{path} {extra:?}");
    }
    let (status, content_type, html) = fetch(agent, "/", &[]);
    assert_eq!((status, content_type.as_str()), (200, "text/html; charset=utf-8"));
    for module in ["echo", "extra", "script"] {
        assert!(html.contains(&format!("<a href=\"/proxy?module={module}\">{module}</a>")), "{html}");
    }
    assert_eq!(fetch(agent, "/proxy", &[]).0, 400);
    assert_eq!(fetch(agent, "/proxy?module=nope&module=echo", &[]).2, "unknown module [nope echo]\n\n");

    // JSON: exporter_exporter's structure and values, header and environment values hidden.
    let json = |addr| {
        let (status, content_type, body) = fetch(addr, "/", &["-H", "Accept: application/json"]);
        assert_eq!((status, content_type.as_str()), (200, "application/json"), "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };
    let (agent_json, expexp_json) = (json(agent), json(expexp));
    assert_eq!(agent_json, hidden_values(expexp_json.clone()), "exporter_exporter's: {expexp_json}");
    assert_eq!(agent_json["echo"]["Timeout"], 1_500_000_000);
    assert_eq!(agent_json["echo"]["HTTP"]["Headers"]["X-Module"], "<hidden>");

    // args=: appended to the exec module's command line, after its own arguments, by both.
    let path = "/proxy?module=script&args=a%20b&args=c";
    let (agent_status, _, agent_body) = fetch(agent, path, &[]);
    let (expexp_status, _, expexp_body) = fetch(expexp, path, &[]);
    assert_eq!((agent_status, samples(&agent_body)), (expexp_status, samples(&expexp_body)), "{expexp_body}");
    assert_eq!(samples(&agent_body), ["arg{value=\"a b\"} 1", "arg{value=\"c\"} 1", "arg{value=\"first\"} 1", "up 1"]);
    assert_eq!(samples(&fetch(agent, "/proxy?module=extra", &[]).2), ["up 1"]);

    // params= and args= on an http module: query parameters for the backend, as every other one.
    let path = "/proxy?module=echo&params=p&args=a&module=again";
    let mut targets = Vec::new();
    for proxy in [expexp, agent] {
        let before = seen.lock().expect("lock").len();
        assert_eq!(fetch(proxy, path, &[]).0, 200, "through {proxy}");
        targets.push(seen.lock().expect("lock").get(before).map(|s| s.target.clone()).expect("seen"));
    }
    assert_eq!(targets[0], targets[1]);
    assert_eq!(targets[1], "/metrics?args=a&collect%5B%5D=cpu&module=again&params=p");

    // On purpose: the agent answers GET and HEAD only (it never passes a request body on);
    // exporter_exporter serves any method.
    assert_eq!(fetch(expexp, "/proxy?module=extra", &["-X", "POST"]).0, 200);
    assert_eq!(fetch(agent, "/proxy?module=extra", &["-X", "POST"]).0, 405);
}

/// Flags exporter_exporter has and the agent does not, and a file that cannot be read: one line, nothing
/// started; a usage error exits 2.
#[test]
fn flag_and_file_errors_are_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("expexp.yaml");
    std::fs::write(&config, "modules:\n  x:\n    method: exec\n    timeout: 1.5\n    exec: {command: echo}\n")
        .expect("write");
    let config_flag = format!("-config.file={}", config.display());
    for (args, code, expected) in [
        (
            vec!["agent", "-config.file", "e.yml", "-web.bearer.token", "x"],
            2,
            "unexpected argument '--web.bearer.token'",
        ),
        (vec!["agent", "-web.listen-address", "nowhere"], 2, "invalid value 'nowhere'"),
        (
            vec!["agent", &config_flag, "-web.listen-address=127.0.0.1:0"],
            1,
            "expexp.yaml: modules.x: invalid duration \"1.5\": missing unit",
        ),
    ] {
        let out = registrar().args(&args).output().expect("registrar");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(expected) && err.contains("line 3") == (code == 1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    }
}
