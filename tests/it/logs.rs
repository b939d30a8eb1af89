//! Log lines as Prometheus components write them, from both binaries: logfmt by default (`ts=<RFC 3339>
//! level=... caller=... msg=...`), one JSON object per line with `--log.format=json`, never colour codes.

use std::process::Command;

use promsd_tests::{Etcd, Process, free_port, workspace_bin};

/// dnsd (which logs a load) and the agent (which logs a registration), with `extra` flags, until both have
/// logged what they do at start; their logs.
fn logs(etcd: &Etcd, extra: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut dnsd = Command::new(workspace_bin("dnsd"));
    dnsd.args(["--endpoints", &etcd.endpoint, "--zone", "prom.local"])
        .args(["--dns.listen-address", &format!("127.0.0.1:{}", free_port()), "--web.listen-address", "127.0.0.1:0"])
        .args(extra);
    let dnsd = Process::spawn("dnsd", dnsd, &dir.path().join("dnsd.log"));
    let config = crate::file_module_agent_config(dir.path(), &etcd.endpoint);
    let mut agent = Command::new(workspace_bin("registrar"));
    agent.args(extra).arg("agent").arg("--config").arg(&config);
    agent.args(["--web.listen-address", "127.0.0.1:0"]);
    let agent = Process::spawn("agent", agent, &dir.path().join("agent.log"));
    dnsd.wait_for_log("serving DNS", std::time::Duration::from_secs(20));
    // Its start line says `registered=1` and its registration `registered`, in either order: both.
    agent.wait_for_log_count("registered", 2, std::time::Duration::from_secs(20));
    vec![dnsd.log(), agent.log()]
}

#[test]
fn logs_are_logfmt_or_json_lines_as_prometheus_writes_them() {
    let etcd = Etcd::start();
    for log in logs(&etcd, &[]) {
        assert!(log.lines().count() >= 2, "{log}");
        for line in log.lines() {
            let fields: Vec<&str> = line.splitn(5, ' ').collect();
            let ok = fields.len() >= 4
                && fields[0].strip_prefix("ts=").is_some_and(|ts| ts.len() == 24 && ts.ends_with('Z'))
                && ["level=debug", "level=info", "level=warn", "level=error"].contains(&fields[1])
                && fields[2].starts_with("caller=")
                && fields[3].starts_with("msg=");
            assert!(ok && !line.contains('\u{1b}'), "not a logfmt line: {line:?}");
        }
    }
    for log in logs(&etcd, &["--log.format", "json"]) {
        for line in log.lines() {
            let json: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            for key in ["ts", "level", "caller", "msg"] {
                assert!(json[key].is_string(), "{key} in {line}");
            }
        }
    }
}
