//! `--web.config.file` on dnsd's web port: the same exporter-toolkit file, and the same web stack, as on
//! registrar's ports. A good file (TLS, a bcrypt user) is enforced per request; a bad one stops dnsd at
//! startup with one line naming the file.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use promsd_tests::{Etcd, Process, eventually, http_get, require};

use crate::server::{dnsd_binary, load_seed};

/// curl over TLS with the test CA: the HTTP status (0 when no response came back) and the body.
fn curl(d: &Path, url: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--max-time", "10", "--cacert"])
        .arg(d.join("ca.pem"))
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = out.rsplit_once('\n').unwrap_or(("", &out));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// dnsd following `etcd` with `web_config`; returns it with its web address.
fn dnsd(etcd: &Etcd, web_config: &Path) -> (Command, SocketAddr) {
    let (mut command, _, web) = dnsd_binary(&["--endpoints", &etcd.endpoint, "--zone", "prom.local"]);
    command.arg("--web.config.file").arg(web_config);
    (command, web)
}

#[test]
fn the_web_port_takes_tls_and_basic_auth_from_the_web_config() {
    require("curl");
    let etcd = Etcd::start();
    load_seed(&etcd);
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    promsd_tests::tls::make_certificates(d, &[]);
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    let web_config = d.join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: {0}/server.pem\n  key_file: {0}/server.key\nbasic_auth_users:\n  prometheus: '{hash}'\n",
            d.display()
        ),
    )
    .expect("write web config");
    let (command, web) = dnsd(&etcd, &web_config);
    let mut process = Process::spawn("dnsd", command, &d.join("dnsd.log"));
    let user = ["-u", "prometheus:s3cret"];
    eventually("dnsd to be ready over https", Duration::from_secs(20), || {
        assert!(process.is_running(), "dnsd exited:\n{}", process.log());
        (curl(d, &format!("https://{web}/-/ready"), &user).0 == 200).then_some(())
    });

    let metrics = format!("https://{web}/metrics");
    let (status, body) = curl(d, &metrics, &user);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\ndnsd_view_keys "), "{body}");
    assert_eq!(curl(d, &metrics, &["-u", "prometheus:wrong"]).0, 401, "wrong password");
    assert_eq!(curl(d, &metrics, &[]).0, 401, "no credentials");
    // http_sd is behind the same TLS and credentials.
    let sd = format!("https://{web}/sd/v1/prom.local");
    let (status, body) = curl(d, &sd, &user);
    assert!(status == 200 && body.contains("server01.node.prom.local:9100"), "{status} {body}");
    assert_eq!(curl(d, &sd, &[]).0, 401, "http_sd without credentials");
    // Plain HTTP to the TLS port gets no HTTP response: the handshake fails on the request's bytes.
    let plain = http_get(web, "/metrics");
    assert!(!matches!(plain, Ok((status, _)) if status != 0), "plain http answered: {plain:?}");

    // The refusals show in dnsd's own metrics, under the web stack's names.
    let (_, body) = curl(d, &metrics, &user);
    let value = |name: &str| {
        body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok()).unwrap_or(0.0)
    };
    assert!(value("dnsd_web_unauthorized_total") >= 2.0, "{body}");
    assert!(value("dnsd_web_tls_handshake_failures_total") >= 1.0, "{body}");
}

#[test]
fn a_web_config_with_a_plain_password_stops_dnsd_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let web_config = dir.path().join("plain-password.yml");
    std::fs::write(&web_config, "basic_auth_users:\n  john: doe\n").expect("write web config");
    // Nothing is contacted or bound before the file is read: etcd and the ports are never used. A backtrace
    // asked for by the environment the tests run in would be lines of its own (dnsd_binary removes it).
    let (mut command, _, _) = dnsd_binary(&["--endpoints", "http://127.0.0.1:9", "--zone", "prom.local"]);
    let out = command.arg("--web.config.file").arg(&web_config).output().expect("dnsd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "dnsd accepted a plain password:\n{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(&web_config.display().to_string()) && err.contains("is not a bcrypt hash"), "{err}");
}
