//! `--web.config.file` side by side with the real exporter-toolkit, as Debian's node exporter carries it:
//! each file it refuses at startup, the agent refuses too; what promsd cannot honor it refuses even where
//! exporter-toolkit accepts; and a good file (bcrypt user, client certificates, Go cipher suite and curve
//! names) serves the same requests from both.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use promsd_tests::{Etcd, Process, eventually, free_port, require};
use promsd_web::Web;

use crate::registrar;

/// What a server made of a web config file: it serves on `port`, or it exited, with its log.
enum Verdict {
    Serves { _process: Process, port: u16 },
    Refused { log: String },
}

/// Starts the node exporter with `web`. exporter-toolkit (0.8 in Debian's node exporter 1.5) validates the
/// file at startup, not on the first request: it listens, reads the file, and either serves or logs the error
/// and exits. Some errors (Go's HTTP/2 cipher check) come after its "TLS is enabled" line, so serving is
/// known from an answer: a plain HTTP request gets one, also from a TLS port (Go's 400 for HTTP to HTTPS).
fn node_exporter(dir: &Path, web: &Path) -> Verdict {
    require("prometheus-node-exporter");
    let port = free_port();
    let mut command = Command::new("prometheus-node-exporter");
    command
        .arg(format!("--web.config.file={}", web.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(["--collector.disable-defaults", "--collector.loadavg"]);
    let name = web.file_stem().and_then(|s| s.to_str()).unwrap_or("web");
    let mut process = Process::spawn("node exporter", command, &dir.join(format!("{name}.node.log")));
    let serves = eventually("the node exporter to serve or exit", Duration::from_secs(20), || {
        if !process.is_running() {
            return Some(false);
        }
        promsd_tests::http_get(([127, 0, 0, 1], port).into(), "/").ok().filter(|(status, _)| *status != 0).map(|_| true)
    });
    if serves {
        return Verdict::Serves { _process: process, port };
    }
    let status = process.wait_timeout(Duration::from_secs(5)).expect("exit status");
    let log = process.log();
    assert!(!status.success(), "node exporter exited with {status}:\n{log}");
    Verdict::Refused { log }
}

/// Runs the agent with `web` and returns its log; it must exit with an error before serving.
fn agent_refuses(dir: &Path, web: &Path) -> String {
    // The agent reads the web config before anything else; this configuration is never reached.
    let config = dir.join("agent.yml");
    std::fs::write(&config, "etcd:\n  endpoints: [http://127.0.0.1:9]\nzone: prom.local\nmodules: {}\n")
        .expect("write agent config");
    let mut command = registrar();
    command.arg("agent").arg("--config").arg(&config).arg("--web.config.file").arg(web);
    command.args(["--web.listen-address", &format!("127.0.0.1:{}", free_port())]);
    let name = web.file_stem().and_then(|s| s.to_str()).unwrap_or("web");
    let mut agent = Process::spawn("agent", command, &dir.join(format!("{name}.agent.log")));
    let status = agent.wait_timeout(Duration::from_secs(20));
    let log = agent.log();
    let status = status.unwrap_or_else(|| panic!("the agent accepted {}:\n{log}", web.display()));
    assert!(!status.success(), "the agent exited with {status}:\n{log}");
    log
}

/// Bad files: (name, YAML, what exporter-toolkit logs, what promsd says), all within the keys exporter-toolkit
/// 0.8 knows. `{d}` is the directory with the test certificates.
fn bad_files(d: &Path) -> Vec<(&'static str, String, &'static str, &'static str)> {
    let d = d.display();
    let tls = format!("tls_server_config:\n  cert_file: {d}/server.pem\n  key_file: {d}/server.key\n");
    let a53 = "a".repeat(53);
    vec![
        ("plain-password", "basic_auth_users:\n  john: doe\n".into(), "hashedSecret too short", "is not a bcrypt hash"),
        (
            "bcrypt-cost-3",
            format!("basic_auth_users:\n  john: '$2y$03${a53}'\n"),
            "cost 3 is outside allowed range (4,31)",
            "cost 3 is outside the allowed range (4,31)",
        ),
        (
            "no-dollar",
            format!("basic_auth_users:\n  john: 'x2y$10${a53}'\n"),
            "must start with '$'",
            "must start with '$'",
        ),
        (
            "unknown-cipher",
            format!("{tls}  cipher_suites: [TLS_FOO]\n"),
            "unknown cipher: TLS_FOO",
            "unknown cipher suite",
        ),
        (
            "insecure-cipher",
            format!("{tls}  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256]\n"),
            "unknown cipher",
            "unknown cipher suite",
        ),
        ("unknown-curve", format!("{tls}  curve_preferences: [P256]\n"), "unknown curve: P256", "unknown curve"),
        (
            "unknown-version",
            format!("{tls}  min_version: TLS14\n"),
            "unknown TLS version: TLS14",
            "unknown TLS version",
        ),
        (
            "ca-without-auth-type",
            format!("{tls}  client_ca_file: {d}/ca.pem\n"),
            "configured without a Client Auth Policy",
            "configured without a client auth policy",
        ),
        (
            "cert-without-key",
            format!("tls_server_config:\n  cert_file: {d}/server.pem\n"),
            "missing key_file",
            "needs key_file",
        ),
        ("bad-auth-type", format!("{tls}  client_auth_type: Bogus\n"), "ClientAuth: Bogus", "unknown variant"),
        ("unknown-key", format!("{tls}  bogus: 1\n"), "field bogus not found", "unknown field `bogus`"),
        (
            "header-value",
            "http_server_config:\n  headers:\n    X-Frame-Options: DENY\n".into(),
            "invalid value for X-Frame-Options",
            "invalid value \"DENY\" for header X-Frame-Options",
        ),
        (
            "header-name",
            "http_server_config:\n  headers:\n    x-frame-options: deny\n".into(),
            "can not be configured",
            "can not be configured",
        ),
    ]
}

#[test]
fn web_configs_exporter_toolkit_refuses_the_agent_refuses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    promsd_tests::tls::make_certificates(d, &[]);
    for (name, yaml, node_says, promsd_says) in bad_files(d) {
        let web = d.join(format!("{name}.yml"));
        std::fs::write(&web, &yaml).expect("write web config");
        let Verdict::Refused { log } = node_exporter(d, &web) else {
            panic!("{name}: exporter-toolkit accepted\n{yaml}");
        };
        assert!(log.contains(node_says), "{name}: exporter-toolkit said\n{log}");
        let log = agent_refuses(d, &web);
        assert!(log.contains(promsd_says) && log.contains(&format!("{name}.yml")), "{name}: the agent said\n{log}");
        let error = Web::load(&web).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains(promsd_says), "{name}: {error}");
    }
}

#[test]
fn what_promsd_cannot_honor_is_refused_where_exporter_toolkit_accepts_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    promsd_tests::tls::make_certificates(d, &[]);
    let tls = format!("tls_server_config:\n  cert_file: {0}/server.pem\n  key_file: {0}/server.key\n", d.display());
    for (name, extra, promsd_says) in [
        // A Go suite rustls does not implement (RSA key exchange), next to one it does.
        (
            "rsa-kx-cipher",
            "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_128_GCM_SHA256]\n",
            "cipher suite TLS_RSA_WITH_AES_128_GCM_SHA256 is not supported by promsd",
        ),
        ("cbc-cipher", "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n", "is not supported by promsd"),
        // Go would serve TLS 1.3 only: cipher_suites governs TLS 1.2, and none is left for it.
        ("tls13-suites-only", "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "no TLS 1.2 suite"),
        ("tls10", "  min_version: TLS10\n", "TLS10 is not supported by promsd: rustls implements TLS 1.2 and 1.3"),
        ("curve-p521", "  curve_preferences: [CurveP521]\n", "curve CurveP521 is not supported by promsd"),
        // Go verifies client certificates against the system roots when no client CA is given.
        ("verify-without-ca", "  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
        ("min-above-max", "  min_version: TLS13\n  max_version: TLS12\n", "is above max_version"),
    ] {
        let web = d.join(format!("{name}.yml"));
        // Without HTTP/2, which in Go insists on an AES-128-GCM suite when cipher_suites is set.
        std::fs::write(&web, format!("{tls}{extra}http_server_config:\n  http2: false\n")).expect("write web config");
        if let Verdict::Refused { log } = node_exporter(d, &web) {
            panic!("{name}: exporter-toolkit refused it too:\n{log}");
        }
        let log = agent_refuses(d, &web);
        assert!(log.contains(promsd_says), "{name}: the agent said\n{log}");
    }
}

/// curl over TLS with the test CA and client certificate: the HTTP status, 0 when no response came back.
fn curl(d: &Path, url: &str, extra: &[&str]) -> u16 {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--cacert"])
        .arg(d.join("ca.pem"))
        .arg("--cert")
        .arg(d.join("client.pem"))
        .arg("--key")
        .arg(d.join("client.key"))
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

#[test]
fn a_good_web_config_serves_the_same_from_both() {
    require("curl");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    promsd_tests::tls::make_certificates(d, &[("client", "DNS:prometheus.example")]);
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    let web = d.join("good.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS12\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]\n  curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: true\nhttp_server_config:\n  http2: true\n  headers:\n    X-Content-Type-Options: nosniff\nbasic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
    .expect("write web config");

    let Verdict::Serves { _process: _node, port: node_port } = node_exporter(d, &web) else {
        panic!("exporter-toolkit refused")
    };
    let etcd = Etcd::start();
    std::fs::write(d.join("up.prom"), "up 1\n").expect("write");
    let config = d.join("agent.yml");
    std::fs::write(
        &config,
        format!(
            "etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\nmodules:\n  up:\n    method: file\n    file:\n      path: {}\n",
            etcd.endpoint,
            d.join("up.prom").display()
        ),
    )
    .expect("write agent config");
    let agent_port = free_port();
    let mut command = registrar();
    command.arg("agent").arg("--config").arg(&config).arg("--web.config.file").arg(&web);
    command.args(["--web.listen-address", &format!("127.0.0.1:{agent_port}")]);
    let _agent = Process::spawn("agent", command, &d.join("good.agent.log"));
    eventually("the agent to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", agent_port)).ok()
    });

    for (url, what) in [
        (format!("https://127.0.0.1:{node_port}/metrics"), "node exporter"),
        (format!("https://127.0.0.1:{agent_port}/proxy?module=up"), "agent"),
    ] {
        // The named TLS 1.2 suite, and TLS 1.3.
        let tls12 = ["--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256", "-u", "prometheus:s3cret"];
        assert_eq!(curl(d, &url, &tls12), 200, "{what}: TLS 1.2 with the named suite");
        assert_eq!(curl(d, &url, &["--tlsv1.3", "-u", "prometheus:s3cret"]), 200, "{what}: TLS 1.3");
        // A TLS 1.2 suite left out of cipher_suites.
        let other = ["--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES256-GCM-SHA384", "-u", "prometheus:s3cret"];
        assert_eq!(curl(d, &url, &other), 0, "{what}: a suite not in cipher_suites");
        assert_eq!(curl(d, &url, &["-u", "prometheus:wrong"]), 401, "{what}: wrong password");
        assert_eq!(curl(d, &url, &["-H", "Authorization: basic cHJvbWV0aGV1czpzM2NyZXQ="]), 200, "{what}: basic");
    }
}
