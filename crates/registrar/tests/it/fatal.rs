//! What no retry can fix (a malformed endpoint, an unreadable CA) stops `run` before the exporter starts and
//! the agent before it serves, with one line naming it.

use std::time::Duration;

use promsd_tests::Process;

use crate::{registrar, run, stderr};

#[test]
fn run_refuses_to_start_on_settings_no_retry_can_fix() {
    for (args, expected) in [
        (vec!["--endpoints", "127.0.0.1:2379"], "invalid endpoint \"127.0.0.1:2379\""),
        (vec!["--cacert", "/nonexistent/ca.pem"], "/nonexistent/ca.pem"),
    ] {
        let output = run(registrar()
            .args(["run", "--zone", "prom.local", "--service", "node", "--address", "127.0.0.1", "--port", "9"])
            .args(&args)
            .args(["--", "sh", "-c", "echo the exporter started; sleep 30"]));
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("started"), "the exporter was started");
    }
}

#[test]
fn the_agent_refuses_to_start_on_etcd_settings_no_retry_can_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("agent.yml");
    std::fs::write(
        &config,
        "etcd:\n  endpoints: [\"etcd.example:2379\"]\nzone: prom.local\naddress: 127.0.0.1\nmodules:\n  up:\n    method: exec\n    exec:\n      command: echo\n",
    )
    .expect("write");
    let mut command = registrar();
    command.arg("agent").arg("--config").arg(&config).args(["--web.listen-address", "127.0.0.1:0"]);
    let mut agent = Process::spawn("agent", command, &dir.path().join("agent.log"));
    let status = agent.wait_timeout(Duration::from_secs(5)).expect("the agent exits at once");
    assert_eq!(status.code(), Some(1), "{}", agent.log());
    let log = agent.log();
    assert!(log.contains("agent.yml: etcd: invalid endpoint \"etcd.example:2379\""), "{log}");
}

/// etcd's refusals that no retry changes (wrong password, a user without permission for the record's key,
/// credentials for a cluster without authentication) stop `run` before the exporter starts and the agent
/// before it serves, with one line that names the cause and not the password.
#[test]
fn a_refusal_by_etcd_stops_run_and_the_agent_at_once() {
    let etcd = promsd_tests::Etcd::start();
    let plain = promsd_tests::Etcd::start();
    etcd.etcdctl(&["user", "add", "root:rootpw"]);
    etcd.etcdctl(&["user", "add", "nobody:nobodypw"]);
    etcd.etcdctl(&["auth", "enable"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (&etcd.endpoint, "root", "wrong", "authentication failed"),
        (&etcd.endpoint, "nobody", "nobodypw", "permission denied"),
        (&plain.endpoint, "root", "rootpw", "authentication is not enabled"),
    ];
    for (endpoint, user, password, expected) in cases {
        let output = run(registrar()
            .args(["run", "--endpoints", endpoint, "--user", &format!("{user}:{password}")])
            .args(["--zone", "prom.local", "--service", "node", "--address", "127.0.0.1", "--port", "9"])
            .args(["--", "sh", "-c", "echo the exporter started; sleep 30"]));
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "run as {user}: {err}");
        assert!(err.contains(expected) && !err.contains(password), "run as {user}: {err}");
        assert_eq!(err.lines().count(), 1, "run as {user}: one line: {err}");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("started"), "the exporter was started");

        let config = dir.path().join("agent.yml");
        std::fs::write(
            &config,
            format!("etcd:\n  endpoints: [{endpoint}]\n  user: {user}\n  password: {password}\nzone: prom.local\naddress: 127.0.0.1\nmodules:\n  up:\n    method: exec\n    exec:\n      command: echo\n"),
        )
        .expect("write");
        let mut command = registrar();
        command.arg("agent").arg("--config").arg(&config).args(["--web.listen-address", "127.0.0.1:0"]);
        let log = dir.path().join(format!("agent-{user}.log"));
        let mut agent = Process::spawn("agent", command, &log);
        let status = agent.wait_timeout(Duration::from_secs(10)).expect("the agent exits at once");
        let log = agent.log();
        assert_eq!(status.code(), Some(1), "agent as {user}: {log}");
        let last = log.lines().last().unwrap_or_default();
        assert!(last.contains(expected) && !log.contains(password), "agent as {user}: {log}");
    }
}
