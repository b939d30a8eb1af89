//! `registrar set`, `rm` and `ls`, including the seed's register.sh environment.

use promsd_tests::{Etcd, free_port};

use crate::{registrar, run, stderr};

#[test]
fn set_rm_and_ls() {
    let etcd = Etcd::start();
    let out = run(registrar().args(["set", "--endpoints", &etcd.endpoint, "--zone", "prom.local"]).args([
        "--service",
        "node",
        "--instance",
        "server01",
        "--address",
        "10.0.0.5",
        "--port",
        "9100",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(etcd.get("/skydns/local/prom/node/server01").as_deref(), Some(r#"{"host":"10.0.0.5","port":9100}"#));

    let out =
        run(registrar().args(["set", "--endpoints", &etcd.endpoint, "--base-path", "/skydns/local/prom"]).args([
            "--service",
            "mysql.a",
            "--instance",
            "db1",
            "--address",
            "db1.example.org",
            "--port",
            "9104",
            "--priority",
            "20",
            "--weight",
            "5",
            "--ttl",
            "60",
            "--text",
            "primary",
            "--label",
            "team=db",
            "--label",
            "role=primary",
            "--scheme",
            "https",
            "--metrics-path",
            "/probe",
        ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        etcd.get("/skydns/local/prom/a/mysql/db1").as_deref(),
        Some(
            r#"{"host":"db1.example.org","port":9104,"priority":20,"weight":5,"text":"primary","ttl":60,"labels":{"role":"primary","team":"db"},"scheme":"https","metrics_path":"/probe"}"#
        )
    );

    let table = run(registrar().args(["ls", "--endpoints", &etcd.endpoint, "--zone", "prom.local"]));
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["SERVICE", "INSTANCE", "HOST", "PORT", "TTL", "LEASE", "NAME"]);
    assert_eq!(lines[1], ["mysql.a", "db1", "db1.example.org", "9104", "60", "-", "db1.mysql.a.prom.local"]);
    assert_eq!(lines[2], ["node", "server01", "10.0.0.5", "9100", "-", "-", "server01.node.prom.local"]);

    let json = run(registrar()
        .args(["ls", "--endpoints", &etcd.endpoint, "--zone", "prom.local", "--service", "node"])
        .args(["-o", "json"]));
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).expect("ls -o json gives JSON");
    assert_eq!(
        rows,
        serde_json::json!([{
            "key": "/skydns/local/prom/node/server01",
            "name": "server01.node.prom.local",
            "service": "node",
            "instance": "server01",
            "host": "10.0.0.5",
            "port": 9100
        }])
    );

    let rm =
        ["rm", "--endpoints", &etcd.endpoint, "--zone", "prom.local", "--service", "node", "--instance", "server01"];
    let out = run(registrar().args(rm));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(etcd.get("/skydns/local/prom/node/server01"), None);
    // Removing what is not there succeeds: ExecStopPost must not fail a unit.
    assert!(run(registrar().args(rm)).status.success());
}

#[test]
fn register_sh_environment_works_unchanged() {
    let etcd = Etcd::start();
    let hostname = std::process::Command::new("hostname").arg("-s").output().expect("hostname -s");
    let short = String::from_utf8_lossy(&hostname.stdout).trim().to_lowercase();
    let env = |command: &mut std::process::Command| {
        command
            .env("EXPORTER_ADDRESS", "192.168.1.1")
            .env("EXPORTER_PORT", "9100")
            .env("ETCD_BASE_PATH", "/skydns/local/prom")
            .env("EXPORTER_TYPE", "node")
            .env("ETCDCTL_ENDPOINTS", &etcd.endpoint);
    };
    let mut set = registrar();
    env(set.arg("set"));
    let out = run(&mut set);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = format!("/skydns/local/prom/node/{short}");
    assert_eq!(etcd.get(&key).as_deref(), Some(r#"{"host":"192.168.1.1","port":9100}"#));

    let mut rm = registrar();
    env(rm.arg("rm"));
    assert!(run(&mut rm).status.success());
    assert_eq!(etcd.get(&key), None);

    // ETCD_ENDPOINT holding a URL is taken as the endpoint (the seed uses a discovery domain: see e2e).
    let mut set = registrar();
    env(set.arg("set"));
    set.env_remove("ETCDCTL_ENDPOINTS").env("ETCD_ENDPOINT", &etcd.endpoint);
    assert!(run(&mut set).status.success());
    assert!(etcd.get(&key).is_some());
}

#[test]
fn invalid_input_fails_before_touching_etcd() {
    // Nothing listens here: an error that mentions etcd would mean the flags were not checked first.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let base = ["set", "--endpoints", &nowhere, "--timeout", "30s", "--service", "node", "--instance", "a"];
    let cases: [(&[&str], &str); 11] = [
        // Labels Prometheus would reject.
        (&["--zone", "prom.local", "--address", "10.0.0.5", "--label", "__address__=x"], "reserves"),
        (&["--zone", "prom.local", "--address", "10.0.0.5", "--label", "1x=y"], "must match"),
        (&["--zone", "prom.local", "--address", "10.0.0.5", "--label", "env"], "expected NAME=VALUE"),
        (&["--zone", "prom.local", "--address", "10.0.0.5", "--label", "a=1", "--label", "a=2"], "given twice"),
        (&["--zone", "prom.local", "--address", "10.0.0.5", "--metrics-path", "metrics"], "must start with '/'"),
        (&["--zone", "prom.local", "--address", "10.0.0.5:9100", "--port", "9100"], "for '--address <HOST>'"),
        // A mistyped IP address is not a host name.
        (
            &["--zone", "prom.local", "--address", "999.1.1.1", "--port", "9100"],
            "invalid value '999.1.1.1' for '--address",
        ),
        (&["--zone", "prom local", "--address", "10.0.0.5"], "zone"),
        (&["--address", "10.0.0.5"], "--zone"),
        (&["--zone", "prom.local", "--address", "10.0.0.5", "--port", "70000"], "--port"),
        (&["--zone", "prom.local", "--address", "10.0.0.5", "--instance", "a.b"], "instance"),
    ];
    for (args, expected) in cases {
        let out = run(registrar().args(base).args(args));
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} should fail");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains(expected), "{args:?}: expected {expected:?} in {err}");
        assert!(!err.contains("unreachable"), "{args:?} reached for etcd: {err}");
    }
}

#[test]
fn unreachable_etcd_is_one_clear_line_after_the_timeout() {
    let port = free_port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let out = run(registrar()
        .args(["set", "--endpoints", &nowhere, "--timeout", "1s", "--zone", "prom.local"])
        .args(["--service", "node", "--address", "10.0.0.5", "--port", "9100"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("registrar: etcd unreachable at {nowhere} after ")), "{err}");
    assert!(last.contains("Connection refused"), "{err}");
}
