//! Both binaries against an etcd that requires client certificates, and against one with user/password auth
//! and a role limited to the record prefix. The certificates are made here with openssl.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use promsd_tests::{CommandError, Process, dig, eventually, free_port, http_get, output_of, workspace_bin};

fn etcdctl(endpoint: &str, extra: &[&str], args: &[&str]) -> Result<String, CommandError> {
    output_of(Command::new("etcdctl").env("ETCDCTL_API", "3").args(["--endpoints", endpoint]).args(extra).args(args))
}

fn start_etcd(dir: &Path, client_url: &str, extra: &[&str]) -> Process {
    let peer = format!("http://127.0.0.1:{}", free_port());
    let mut command = Command::new("etcd");
    command
        .args(["--name", "sec", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", client_url, "--advertise-client-urls", client_url])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("sec={peer}"),
        ])
        .args(extra);
    Process::spawn("etcd", command, &dir.join("etcd.log"))
}

fn start_dnsd(dir: &Path, etcd_flags: &[&str]) -> (Process, SocketAddr) {
    let dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut command = Command::new(workspace_bin("dnsd"));
    command.args(etcd_flags).args([
        "--zone",
        "prom.local",
        "--dns.listen-address",
        &dns.to_string(),
        "--web.listen-address",
        &web.to_string(),
    ]);
    let process = Process::spawn("dnsd", command, &dir.join("dnsd.log"));
    eventually("dnsd ready", Duration::from_secs(20), || {
        matches!(http_get(web, "/-/ready"), Ok((200, _))).then_some(())
    });
    (process, dns)
}

fn registrar_set(etcd_flags: &[&str], base: &str, instance: &str) -> std::process::Output {
    Command::new(workspace_bin("registrar"))
        .arg("set")
        .args(etcd_flags)
        .args([
            "--base-path",
            base,
            "--service",
            "node",
            "--instance",
            instance,
            "--address",
            "10.0.0.5",
            "--port",
            "9100",
            "--timeout",
            "3s",
        ])
        .output()
        .expect("registrar")
}

#[test]
fn client_certificate_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    promsd_tests::tls::make_certificates(d, &[("client", "DNS:client")]);
    let endpoint = format!("https://127.0.0.1:{}", free_port());
    let path = |f: &str| d.join(f).display().to_string();
    let _etcd = start_etcd(
        d,
        &endpoint,
        &[
            "--cert-file",
            &path("server.pem"),
            "--key-file",
            &path("server.key"),
            "--trusted-ca-file",
            &path("ca.pem"),
            "--client-cert-auth",
        ],
    );
    let tls = [
        "--cacert".to_string(),
        path("ca.pem"),
        "--cert".into(),
        path("client.pem"),
        "--key".into(),
        path("client.key"),
    ];
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    eventually("etcd with TLS", Duration::from_secs(20), || {
        etcdctl(&endpoint, &tls, &["put", "/skydns/local/prom/node/a", r#"{"host":"10.0.0.1","port":9100}"#]).ok()
    });

    let mut flags = vec!["--endpoints", endpoint.as_str()];
    flags.extend(&tls);
    let (_dnsd, dns) = start_dnsd(d, &flags);
    assert_eq!(dig(dns, &["SRV", "node.prom.local"]).answer.len(), 1);

    let out = registrar_set(&flags, "/skydns/local/prom", "b");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually("the TLS registration in DNS", Duration::from_secs(10), || {
        (dig(dns, &["SRV", "node.prom.local"]).answer.len() == 2).then_some(())
    });

    // Without a client certificate etcd refuses the connection: a clear failure, not a hang.
    let out = registrar_set(&["--endpoints", &endpoint, "--cacert", &path("ca.pem")], "/skydns/local/prom", "c");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("etcd unreachable at {endpoint}")));
}

#[test]
fn user_password_auth_with_a_role_limited_to_the_prefix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let _etcd = start_etcd(d, &endpoint, &[]);
    eventually("etcd", Duration::from_secs(20), || {
        etcdctl(&endpoint, &[], &["put", "/skydns/local/prom/node/a", r#"{"host":"10.0.0.1","port":9100}"#]).ok()
    });
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["role", "add", "promsd"],
        &["role", "grant-permission", "promsd", "--prefix=true", "readwrite", "/skydns/"],
        &["user", "add", "promsd:s3cret"],
        &["user", "grant-role", "promsd", "promsd"],
        &["auth", "enable"],
    ] {
        etcdctl(&endpoint, &[], args).unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"));
    }

    let flags = ["--endpoints", endpoint.as_str(), "--user", "promsd:s3cret"];
    let (_dnsd, dns) = start_dnsd(d, &flags);
    assert_eq!(dig(dns, &["SRV", "node.prom.local"]).answer.len(), 1);

    let out = registrar_set(
        &["--endpoints", &endpoint, "--user", "promsd", "--password", "s3cret"],
        "/skydns/local/prom",
        "b",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually("the registration in DNS", Duration::from_secs(10), || {
        (dig(dns, &["SRV", "node.prom.local"]).answer.len() == 2).then_some(())
    });

    // Outside the role's prefix: refused at once with etcd's reason, not retried until the timeout.
    let out = registrar_set(&flags, "/elsewhere", "c");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("refused the request") && err.contains("permission denied"), "{err}");
    // A wrong password is refused the same way.
    let out = registrar_set(&["--endpoints", &endpoint, "--user", "promsd:wrong"], "/skydns/local/prom", "d");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("authentication failed") || err.contains("invalid"), "{err}");
}
