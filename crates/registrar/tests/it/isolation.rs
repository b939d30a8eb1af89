//! Policy never leaks between modules: each module's TLS settings (CA, server name, skip-verify) govern its
//! own scrapes only, in any order, under concurrency and across a SIGHUP that changes one module; and no
//! credential given to the agent shows up in its logs, listings, error bodies or metrics.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use promsd_tests::{Etcd, eventually, require};

use crate::agent::{S3CRET_HASH, get, node_exporter, start_agent, start_agent_with};

/// A node exporter serving TLS with a certificate from `dir/ca.pem`'s CA (for 127.0.0.1), and a second CA in
/// `dir/other/ca.pem` that signed nothing the exporter has.
fn tls_node_exporter(dir: &Path, basic_auth: bool) -> (promsd_tests::Process, u16) {
    promsd_tests::tls::make_certificates(dir, &[]);
    let other = dir.join("other");
    std::fs::create_dir(&other).expect("mkdir");
    promsd_tests::tls::make_certificates(&other, &[]);
    let users = if basic_auth { format!("basic_auth_users:\n  agent: {S3CRET_HASH}\n") } else { String::new() };
    std::fs::write(
        dir.join("node-web.yml"),
        format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n{users}"),
    )
    .expect("write");
    let web = format!("--web.config.file={}", dir.join("node-web.yml").display());
    node_exporter(dir, &[&web])
}

/// An https module on `port` with `settings` (YAML lines at the http section's indentation).
fn https_module(name: &str, port: u16, settings: &str) -> String {
    format!(
        "  {name}:\n    method: http\n    http:\n      port: {port}\n      address: 127.0.0.1\n      scheme: https\n{settings}"
    )
}

fn agent_config(etcd: &Etcd, modules: &[String]) -> String {
    format!(
        "etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\nmodules:\n{}",
        etcd.endpoint,
        modules.concat()
    )
}

fn status(addr: SocketAddr, module: &str) -> u16 {
    get(addr, &format!("/proxy?module={module}"), &[]).0
}

#[test]
fn a_module_s_tls_policy_never_applies_to_another() {
    require("prometheus-node-exporter");
    require("curl");
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let (_exporter, port) = tls_node_exporter(d, false);
    let ca = d.join("ca.pem").display().to_string();
    let other_ca = d.join("other/ca.pem").display().to_string();
    let modules = |strict_ca: &str, insecure: &str| {
        vec![
            https_module("strict", port, &format!("      tls_ca_file: {strict_ca}\n")),
            https_module("insecure", port, insecure),
            // The right CA, but a name the certificate is not for.
            https_module("wrongname", port, &format!("      tls_ca_file: {ca}\n      server_name: other.example\n")),
            https_module("right", port, &format!("      tls_ca_file: {ca}\n")),
        ]
    };
    let config = agent_config(&etcd, &modules(&other_ca, "      tls_insecure_skip_verify: true\n"));
    let (agent, addr) = start_agent(d, &config);
    eventually("the node exporter through the agent", Duration::from_secs(10), || {
        (status(addr, "insecure") == 200).then_some(())
    });

    // The reproduction: strict, insecure, strict; strict is never 200.
    for round in 0..3 {
        assert_eq!(status(addr, "strict"), 502, "round {round}: strict (a CA that did not sign the exporter)");
        assert_eq!(status(addr, "insecure"), 200, "round {round}: insecure");
        assert_eq!(status(addr, "strict"), 502, "round {round}: strict after insecure scraped the same address");
        assert_eq!(status(addr, "right"), 200, "round {round}: the right CA");
        assert_eq!(status(addr, "wrongname"), 502, "round {round}: server_name the certificate is not for");
    }

    // Concurrently: every module keeps its own verdict, whatever the others are doing.
    let threads: Vec<_> = (0..6)
        .map(|t| {
            std::thread::spawn(move || {
                let order = ["strict", "insecure", "wrongname", "right"];
                let mut seen = Vec::new();
                for i in 0..12 {
                    let module = order[(t + i) % order.len()];
                    seen.push((module, status(addr, module)));
                }
                seen
            })
        })
        .collect();
    for thread in threads {
        for (module, code) in thread.join().expect("scraper thread") {
            let expected = if module == "insecure" || module == "right" { 200 } else { 502 };
            assert_eq!(code, expected, "concurrent scrape of {module}");
        }
    }

    // SIGHUP with one module's policy changed each way: strict now trusts the right CA, insecure no longer
    // skips verification (and trusts the other CA). Once the new configuration answers, the old policy of
    // either module never comes back, even though idle connections to the same address exist.
    std::fs::write(
        d.join("agent.yml"),
        agent_config(&etcd, &modules(&ca, &format!("      tls_ca_file: {other_ca}\n"))),
    )
    .expect("rewrite config");
    agent.signal("HUP");
    eventually("the reloaded configuration to answer", Duration::from_secs(10), || {
        (status(addr, "strict") == 200).then_some(())
    });
    for round in 0..5 {
        assert_eq!(status(addr, "insecure"), 502, "round {round}: insecure after the reload made it strict");
        assert_eq!(status(addr, "strict"), 200, "round {round}: strict after the reload gave it the right CA");
    }
}

#[test]
fn credentials_never_show_in_logs_listings_errors_or_metrics() {
    require("prometheus-node-exporter");
    require("curl");
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let (_exporter, port) = tls_node_exporter(d, true);
    let ca = d.join("ca.pem").display().to_string();
    let (backend_password, token, etcd_password) = ("pw-SECRET-one", "tok-SECRET-two", "etcd-SECRET-three");
    let secrets = [backend_password, token, etcd_password, "s3cret"];
    let right =
        format!("      tls_ca_file: {ca}\n      basic_auth_username: agent\n      basic_auth_password: s3cret\n");
    let wrong = format!(
        "      tls_ca_file: {ca}\n      basic_auth_username: agent\n      basic_auth_password: {backend_password}\n"
    );
    let modules = format!("{}{}", https_module("right", port, &right), https_module("wrong", port, &wrong));
    let token_and_modules = format!("token:\n  header: X-Token\n  value: {token}\nmodules:\n{modules}");
    // etcd has no auth enabled, so it refuses the user and password: the agent stops at once, and says why
    // without the password.
    let refused = format!(
        "etcd:\n  endpoints: [{}]\n  user: agent\n  password: {etcd_password}\nzone: prom.local\naddress: 127.0.0.1\n{token_and_modules}",
        etcd.endpoint,
    );
    std::fs::write(d.join("refused.yml"), refused).expect("write");
    let mut command = crate::registrar();
    command.args(["agent", "--log.level", "debug", "--web.listen-address", "127.0.0.1:0", "--config"]);
    command.arg(d.join("refused.yml"));
    let mut stopped = promsd_tests::Process::spawn("agent", command, &d.join("refused.log"));
    stopped.wait_timeout(Duration::from_secs(10)).expect("the refused agent exits");
    let refused_log = stopped.log();
    assert!(refused_log.contains("authentication is not enabled"), "{refused_log}");

    let config =
        format!("etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\n{token_and_modules}", etcd.endpoint,);
    let (agent, addr) = start_agent_with(d, &config, &["--log.level".as_ref(), "debug".as_ref()]);
    let with_token = [("X-Token", token)];
    let mut replies = Vec::new();
    eventually("the backend through the agent", Duration::from_secs(10), || {
        let reply = get(addr, "/proxy?module=right", &with_token);
        (reply.0 == 200).then_some(())
    });
    for (path, headers) in [
        ("/proxy?module=wrong", &with_token[..]),
        ("/proxy?module=right", &[("X-Token", "tok-SECRET-guess")][..]),
        ("/proxy?module=right", &[][..]),
        ("/proxy?module=nosuch", &with_token[..]),
        ("/", &with_token[..]),
        ("/", &[("X-Token", token), ("Accept", "application/json")][..]),
        ("/metrics", &with_token[..]),
    ] {
        replies.push((path, get(addr, path, headers)));
    }
    let (code, body) = &replies[0].1;
    assert_eq!(*code, 502, "wrong backend password: {body}");
    assert!(body.contains("401"), "the backend's refusal is reported: {body}");
    assert_eq!(replies[1].1.0, 401);
    let log = format!("{refused_log}{}", agent.log());
    for secret in secrets {
        assert!(!log.contains(secret), "the log shows {secret:?}:\n{log}");
        for (path, (_, body)) in &replies {
            assert!(!body.contains(secret), "{path} shows {secret:?}: {body}");
        }
    }
}
