//! `registrar agent`: a real node exporter behind the proxy, exec and file modules, errors and deadlines,
//! the modules registered in etcd while it runs and removed when it stops.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use promsd_tests::{Etcd, Process, eventually, free_port, pid_alive, require};

use crate::registrar;

pub(crate) fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut curl = Command::new("curl");
    curl.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"]);
    for (name, value) in headers {
        curl.args(["-H", &format!("{name}: {value}")]);
    }
    let out = curl.arg(format!("http://{addr}{path}")).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.parse().expect("status"), body.to_string())
}

/// An agent configuration serving `path` as the file module `up`.
fn up_file_config(etcd: &Etcd, path: &std::path::Path) -> String {
    format!(
        "etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\nmodules:\n  up:\n    method: file\n    file:\n      path: {}\n",
        etcd.endpoint,
        path.display()
    )
}

/// A real node exporter (load average only) on a free port, with `extra` flags.
pub(crate) fn node_exporter(dir: &std::path::Path, extra: &[&str]) -> (Process, u16) {
    require("prometheus-node-exporter");
    let port = free_port();
    let mut exporter = Command::new("prometheus-node-exporter");
    exporter.arg(format!("--web.listen-address=127.0.0.1:{port}"));
    exporter.args(["--collector.disable-defaults", "--collector.loadavg"]).args(extra);
    (Process::spawn("node", exporter, &dir.join("node.log")), port)
}

pub(crate) fn start_agent(dir: &std::path::Path, config: &str) -> (Process, SocketAddr) {
    start_agent_with(dir, config, &[])
}

/// Writes `config` as DIR/agent.yml and starts the agent on a free port with `extra` flags.
pub(crate) fn start_agent_with(
    dir: &std::path::Path,
    config: &str,
    extra: &[&std::ffi::OsStr],
) -> (Process, SocketAddr) {
    let path = dir.join("agent.yml");
    std::fs::write(&path, config).expect("write config");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut command = registrar();
    command.arg("agent").arg("--config").arg(&path).args(extra).args(["--web.listen-address", &addr.to_string()]);
    let process = Process::spawn("agent", command, &dir.join("agent.log"));
    eventually("the agent to listen", Duration::from_secs(10), || std::net::TcpStream::connect(addr).ok());
    (process, addr)
}

#[test]
fn proxies_modules_and_registers_them() {
    require("prometheus-node-exporter");
    require("curl");
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (_exporter, node_port) = node_exporter(dir.path(), &[]);
    std::fs::write(dir.path().join("text.prom"), "# TYPE batch_last_success gauge\nbatch_last_success 1.7e9\n")
        .expect("write");
    let config = format!(
        r#"etcd:
  endpoints: [{endpoint}]
zone: prom.local
address: 127.0.0.1
instance: host1
labels:
  site: a
modules:
  node:
    method: http
    http:
      port: {node_port}
    labels:
      site: b
      team: infra
  broken:
    method: exec
    exec:
      command: sh
      args: ["-c", "echo '<html>not metrics</html>'"]
  hang:
    method: exec
    timeout: 1s
    exec:
      command: sh
      args: ["-c", "sleep 31 & echo $! > {hang_child}; echo $$ > {hang_pid}; wait; echo up 1"]
  slow:
    method: exec
    exec:
      command: sh
      args: ["-c", "sleep 32; echo up 1"]
  text:
    method: file
    file:
      path: {text}
"#,
        endpoint = etcd.endpoint,
        text = dir.path().join("text.prom").display(),
        hang_pid = dir.path().join("hang.pid").display(),
        hang_child = dir.path().join("hang-child.pid").display(),
    );
    let (mut agent, addr) = start_agent(dir.path(), &config);
    // Each record says how one http_sd job scrapes its module, with the agent's labels and the module's.
    for module in ["node", "broken", "hang", "slow", "text"] {
        let labels = if module == "node" { r#"{"site":"b","team":"infra"}"# } else { r#"{"site":"a"}"# };
        let expected = format!(
            r#"{{"host":"127.0.0.1","port":{},"owner":"{}","labels":{labels},"scheme":"http","metrics_path":"/proxy","params":{{"module":"{module}"}}}}"#,
            addr.port(),
            promsd_registration::owner()
        );
        let key = format!("/skydns/local/prom/{module}/host1");
        let value = eventually("the module registered", Duration::from_secs(10), || etcd.get(&key));
        assert_eq!(value, expected, "{module}");
    }

    let (status, body) = get(addr, "/proxy?module=node", &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("node_load1"), "{body}");
    assert_eq!(
        get(addr, "/proxy?module=text", &[]),
        (200, "# TYPE batch_last_success gauge\nbatch_last_success 1.7e9\n".into())
    );
    assert_eq!(get(addr, "/proxy?module=nope", &[]).0, 404);
    assert_eq!(get(addr, "/proxy", &[]).0, 400);
    let (status, body) = get(addr, "/proxy?module=broken", &[]);
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("not valid exposition format"), "{body}");

    // The module's timeout: 504, and the command's whole process group is gone: the shell and the sleep it
    // started, known by the pids they wrote themselves.
    let started = Instant::now();
    assert_eq!(get(addr, "/proxy?module=hang", &[]).0, 504);
    assert!(started.elapsed() < Duration::from_secs(10));
    let read_pid = |name: &str| -> u32 {
        let path = dir.path().join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.trim().parse().unwrap_or_else(|e| panic!("{}: {text:?}: {e}", path.display()))
    };
    let (shell, child) = (read_pid("hang.pid"), read_pid("hang-child.pid"));
    eventually("the hung command to be killed", Duration::from_secs(5), || {
        (!pid_alive(shell) && !pid_alive(child)).then_some(())
    });
    // Prometheus's scrape timeout bounds a module without one.
    assert_eq!(get(addr, "/proxy?module=slow", &[("X-Prometheus-Scrape-Timeout-Seconds", "1.5")]).0, 504);

    let (_, index) = get(addr, "/", &[("Accept", "application/json")]);
    let modules: serde_json::Value = serde_json::from_str(&index).expect("JSON");
    assert_eq!(
        (modules["node"]["Method"].as_str(), modules["node"]["HTTP"]["Port"].as_u64()),
        (Some("http"), Some(u64::from(node_port)))
    );
    let (_, html) = get(addr, "/", &[]);
    assert!(html.contains("/proxy?module=text"));
    let (_, metrics) = get(addr, "/metrics", &[]);
    for line in [
        "registrar_agent_scrapes_total 5",
        "registrar_agent_malformed_content_total 1",
        "registrar_agent_scrape_timeouts_total 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    promsd_tests::assert_exporter_basics(&metrics, "registrar_agent");

    agent.signal("TERM");
    agent.wait_timeout(Duration::from_secs(15)).expect("agent stops");
    for module in ["node", "broken", "hang", "slow", "text"] {
        assert_eq!(etcd.get(&format!("/skydns/local/prom/{module}/host1")), None, "{module} deregistered");
    }
}

#[test]
fn a_configured_token_is_required() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("up.prom"), "up 1\n").expect("write");
    let config = format!(
        "etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\ntoken:\n  header: CF-Access-Client-Secret\n  value: s3cret\nmodules:\n  up:\n    method: file\n    file:\n      path: {}\n",
        etcd.endpoint,
        dir.path().join("up.prom").display()
    );
    let (_agent, addr) = start_agent(dir.path(), &config);
    assert_eq!(get(addr, "/proxy?module=up", &[("CF-Access-Client-Secret", "s3cret")]), (200, "up 1\n".into()));
    assert_eq!(get(addr, "/proxy?module=up", &[("CF-Access-Client-Secret", "wrong")]).0, 401);
    assert_eq!(get(addr, "/proxy?module=up", &[]).0, 401);
}

#[test]
fn a_bad_config_names_the_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.yml");
    std::fs::write(&path, "address: 127.0.0.1\nmodules:\n  node:\n    method: http\n    htp: {}\n").expect("write");
    let out = registrar().arg("agent").arg("--config").arg(&path).output().expect("registrar");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("agent.yml") && err.contains("unknown field `htp`") && err.contains("line 5"), "{err}");
}

/// bcrypt of "s3cret" (cost 6), as `htpasswd -nbB` would write it.
pub(crate) const S3CRET_HASH: &str = "$2b$06$BwgOp0jG/QPWrr.VFBZb5uQEWELPNFrfSvzGSdBR1Mmhfl4SSbQ0a";

/// curl over TLS: (status, body, response headers); status 0 when no HTTP response came back.
pub(crate) fn curl_tls(dir: &std::path::Path, url: &str, extra: &[&str]) -> (u16, String, String) {
    let headers = dir.join("headers.txt");
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-D"])
        .arg(&headers)
        .arg("--cacert")
        .arg(dir.join("ca.pem"))
        .args(["-o", "-", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_string(), std::fs::read_to_string(&headers).unwrap_or_default())
}

#[test]
fn web_config_tls_client_certificates_and_basic_auth() {
    require("curl");
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    promsd_tests::tls::make_certificates(
        d,
        &[("client", "DNS:prometheus.example"), ("intruder", "DNS:intruder.example")],
    );
    std::fs::write(d.join("up.prom"), "up 1\n").expect("write");
    std::fs::write(
        d.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  client_allowed_sans: [prometheus.example]\n  min_version: TLS12\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  prometheus: {S3CRET_HASH}\n"
        ),
    )
    .expect("write web config");
    let config = up_file_config(&etcd, &d.join("up.prom"));
    let web = d.join("web.yml");
    let (_agent, addr) = start_agent_with(d, &config, &["--web.config.file".as_ref(), web.as_os_str()]);
    let url = format!("https://127.0.0.1:{}/proxy?module=up", addr.port());
    let client = |name: &str| -> Vec<String> {
        vec![
            "--cert".into(),
            d.join(format!("{name}.pem")).display().to_string(),
            "--key".into(),
            d.join(format!("{name}.key")).display().to_string(),
        ]
    };
    let with = |name: &str, auth: &[&str]| {
        let mut args: Vec<String> = client(name);
        args.extend(auth.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl_tls(d, &url, &args)
    };

    let (status, body, headers) = with("client", &["-u", "prometheus:s3cret"]);
    assert_eq!((status, body.as_str()), (200, "up 1\n"));
    assert!(headers.to_lowercase().contains("x-frame-options: deny"), "{headers}");
    let (status, _, headers) = with("client", &["-u", "prometheus:wrong"]);
    assert_eq!(status, 401);
    assert!(headers.to_lowercase().contains("www-authenticate: basic"), "{headers}");
    assert_eq!(with("client", &["-u", "nobody:s3cret"]).0, 401, "unknown user");
    assert_eq!(with("client", &[]).0, 401, "no credentials");
    assert_eq!(curl_tls(d, &url, &["-u", "prometheus:s3cret"]).0, 0, "no client certificate: no TLS session");
    assert_eq!(with("intruder", &["-u", "prometheus:s3cret"]).0, 0, "a SAN that is not allowed: no HTTP");
}

#[test]
fn sighup_reloads_modules_and_registrations_follow() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let modules = d.join("modules");
    std::fs::create_dir(&modules).expect("mkdir");
    std::fs::write(d.join("up.prom"), "up 1\n").expect("write");
    let file_module = |path: &std::path::Path| format!("method: file\nfile:\n  path: {}\n", path.display());
    std::fs::write(modules.join("b.yml"), file_module(&d.join("up.prom"))).expect("write b");
    let config = |names: &[&str]| {
        let mut text = format!(
            "etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\ninstance: h\nmodules:\n",
            etcd.endpoint
        );
        for name in names {
            if *name == "slow" {
                text.push_str(&format!(
                    "  slow:\n    method: exec\n    exec:\n      command: sh\n      args: [\"-c\", \"touch {}; sleep 2; echo up 1\"]\n",
                    d.join("slow-started").display()
                ));
            } else {
                text.push_str(&format!(
                    "  {name}:\n    method: file\n    file:\n      path: {}\n",
                    d.join("up.prom").display()
                ));
            }
        }
        text
    };
    let (agent, addr) = start_agent_with(d, &config(&["a", "slow"]), &["--config.dirs".as_ref(), modules.as_os_str()]);
    let registered = |module: &str| etcd.get(&format!("/skydns/local/prom/{module}/h")).is_some();
    eventually("a, b and slow registered", Duration::from_secs(10), || {
        (registered("a") && registered("b") && registered("slow")).then_some(())
    });
    assert_eq!(get(addr, "/proxy?module=b", &[]).0, 200, "a module from --config.dirs");

    // A scrape in flight while the configuration changes (and its module goes away) still completes.
    let in_flight = std::thread::spawn(move || get(addr, "/proxy?module=slow", &[]));
    eventually("the slow scrape's command to start", Duration::from_secs(10), || {
        d.join("slow-started").exists().then_some(())
    });
    std::fs::write(d.join("agent.yml"), config(&["c"])).expect("rewrite config");
    std::fs::write(modules.join("d.yaml"), file_module(&d.join("up.prom"))).expect("write d");
    agent.signal("HUP");
    assert_eq!(in_flight.join().expect("scrape thread"), (200, "up 1\n".to_string()));
    eventually("registrations to follow the new modules", Duration::from_secs(15), || {
        (!registered("a") && !registered("slow") && registered("b") && registered("c") && registered("d")).then_some(())
    });
    assert_eq!(get(addr, "/proxy?module=a", &[]).0, 404);
    assert_eq!(get(addr, "/proxy?module=d", &[]).0, 200);

    // A broken configuration is refused and the running one stays.
    std::fs::write(d.join("agent.yml"), "modules: [").expect("break config");
    agent.signal("HUP");
    agent.wait_for_log("cannot reload the configuration; keeping the running one", Duration::from_secs(10));
    assert_eq!(get(addr, "/proxy?module=c", &[]).0, 200);
    assert!(registered("c"));
}

#[test]
fn backend_exporters_over_https_with_basic_auth() {
    require("prometheus-node-exporter");
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    promsd_tests::tls::make_certificates(d, &[]);
    // The node exporter's own web config: TLS and basic auth, as exporter-toolkit reads it.
    std::fs::write(
        d.join("node-web.yml"),
        format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  agent: {S3CRET_HASH}\n"),
    )
    .expect("write");
    let web = format!("--web.config.file={}", d.join("node-web.yml").display());
    let (_exporter, node_port) = node_exporter(d, &[&web]);
    let config = format!(
        "etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\nmodules:\n  node:\n    method: http\n    http:\n      port: {node_port}\n      address: 127.0.0.1\n      scheme: https\n      tls_ca_file: {}\n      basic_auth_username: agent\n      basic_auth_password: s3cret\n  wrongpass:\n    method: http\n    http:\n      port: {node_port}\n      address: 127.0.0.1\n      scheme: https\n      tls_ca_file: {}\n      basic_auth_username: agent\n      basic_auth_password: nope\n",
        etcd.endpoint,
        d.join("ca.pem").display(),
        d.join("ca.pem").display()
    );
    let (_agent, addr) = start_agent(d, &config);
    let (status, body) = eventually("the https exporter through the agent", Duration::from_secs(10), || {
        let reply = get(addr, "/proxy?module=node", &[]);
        (reply.0 == 200).then_some(reply)
    });
    assert_eq!(status, 200);
    assert!(body.contains("node_load1"), "{body}");
    let (status, body) = get(addr, "/proxy?module=wrongpass", &[]);
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("401"), "{body}");
}

#[test]
fn gzip_is_verified_and_passed_on() {
    require("prometheus-node-exporter");
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (_exporter, node_port) = node_exporter(dir.path(), &[]);
    let config = format!(
        "etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\nmodules:\n  node:\n    method: http\n    http:\n      port: {node_port}\n      address: 127.0.0.1\n",
        etcd.endpoint
    );
    let (_agent, addr) = start_agent(dir.path(), &config);
    let out = eventually("a gzip scrape", Duration::from_secs(10), || {
        let out = Command::new("curl")
            .args(["-s", "--compressed", "-D", "-", &format!("http://{addr}/proxy?module=node")])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("node_load1").then_some(text)
    });
    assert!(out.to_lowercase().contains("content-encoding: gzip"), "{out}");
}

#[test]
fn renewed_certificates_are_served_without_a_restart_and_any_client_cert_mode() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    promsd_tests::tls::make_certificates(d, &[("client", "DNS:client.example")]);
    let other = d.join("other");
    std::fs::create_dir(&other).expect("mkdir");
    // A second CA with its own server and client certificates, for the renewal and an unknown client.
    promsd_tests::tls::make_certificates(&other, &[("stranger", "DNS:stranger.example")]);
    std::fs::write(d.join("up.prom"), "up 1\n").expect("write");
    std::fs::write(
        d.join("web.yml"),
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAnyClientCert\n",
    )
    .expect("web config");
    let config = up_file_config(&etcd, &d.join("up.prom"));
    let web = d.join("web.yml");
    let (_agent, addr) = start_agent_with(d, &config, &["--web.config.file".as_ref(), web.as_os_str()]);
    let url = format!("https://127.0.0.1:{}/proxy?module=up", addr.port());
    let curl = |ca: &std::path::Path, cert: Option<(&std::path::Path, &str)>| {
        let mut command = Command::new("curl");
        command.args(["-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"]).arg(ca);
        if let Some((dir, name)) = cert {
            command
                .arg("--cert")
                .arg(dir.join(format!("{name}.pem")))
                .arg("--key")
                .arg(dir.join(format!("{name}.key")));
        }
        String::from_utf8_lossy(&command.arg(&url).output().expect("curl").stdout).into_owned()
    };
    // RequireAnyClientCert: any certificate, from any CA; none at all is refused.
    assert_eq!(curl(&d.join("ca.pem"), Some((d, "client"))), "200");
    assert_eq!(curl(&d.join("ca.pem"), Some((&other, "stranger"))), "200");
    assert_eq!(curl(&d.join("ca.pem"), None), "000");

    // Renew: the other CA's server certificate replaces the files; the next handshake serves it.
    std::fs::copy(other.join("server.pem"), d.join("server.pem")).expect("renew cert");
    std::fs::copy(other.join("server.key"), d.join("server.key")).expect("renew key");
    eventually("the renewed certificate", Duration::from_secs(10), || {
        (curl(&other.join("ca.pem"), Some((d, "client"))) == "200").then_some(())
    });
    assert_eq!(curl(&d.join("ca.pem"), Some((d, "client"))), "000", "the old certificate is gone");
}

/// `--web.listen-address` repeats and takes `:PORT` (every address), as exporter-toolkit's flag does; the
/// first address's port is the one registered.
#[test]
fn the_agent_serves_every_web_address_and_registers_the_first_port() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("up.prom"), "up 1\n").expect("write");
    let config = format!(
        "etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\ninstance: host1\nmodules:\n  files:\n    method: file\n    file:\n      path: {}\n",
        etcd.endpoint,
        dir.path().join("up.prom").display()
    );
    let other = free_port();
    let extra = format!(":{other}");
    // The extra address comes first on the command line, the helper's own second.
    let (_agent, second) = start_agent_with(dir.path(), &config, &["--web.listen-address".as_ref(), extra.as_ref()]);
    for addr in [second, SocketAddr::from(([127, 0, 0, 1], other))] {
        eventually("the address to serve", Duration::from_secs(10), || {
            let (code, body) = promsd_tests::http_get(addr, "/proxy?module=files").ok()?;
            (code == 200 && body.contains("up 1")).then_some(())
        });
    }
    let record = eventually("the record", Duration::from_secs(10), || etcd.get("/skydns/local/prom/files/host1"));
    assert!(record.contains(&format!("\"port\":{other}")), "{record}");
}
