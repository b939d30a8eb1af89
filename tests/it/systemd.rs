//! The units in systemd/ pass `systemd-analyze verify` (with the binaries where this build put them) and
//! `systemd-analyze security` rates each of them OK (below 2.0 of 10), and every daemon speaks systemd's
//! readiness protocol.

use promsd_tests::{require, workspace_bin};

#[test]
fn units_verify() {
    require("systemd-analyze");
    let dir = tempfile::tempdir().expect("temp dir");
    let units = concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd");
    let bin_dir = workspace_bin("registrar").parent().expect("bin dir").display().to_string();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(units).expect("systemd/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "service") {
            let text = std::fs::read_to_string(&path).expect("read unit");
            assert!(
                text.contains("/usr/bin/"),
                "{} runs promsd from /usr/bin, where the packages put it",
                path.display()
            );
            assert!(text.contains("\nUser=promsd\n"), "{} runs as the promsd user", path.display());
            let name = path.file_name().expect("name").to_string_lossy().into_owned();
            let here = text.replace("/usr/bin/dnsd", &format!("{bin_dir}/dnsd"));
            let here = here.replace("/usr/bin/registrar", &format!("{bin_dir}/registrar"));
            let here = here.replace("/usr/bin/promsd-gateway", &format!("{bin_dir}/promsd-gateway"));
            std::fs::write(dir.path().join(&name), here).expect("write unit");
            names.push(name);
        }
    }
    names.sort();
    assert_eq!(
        names,
        ["dnsd.service", "prom-run@.service", "prom@.service", "promsd-gateway.service", "registrar-agent.service"]
    );
    // Verify template instances the way they are started.
    let instances = [
        "dnsd.service",
        "prom-run@node.service",
        "prom@node.service",
        "promsd-gateway.service",
        "registrar-agent.service",
    ];
    for (template, instance) in names.iter().zip(instances) {
        if template != instance {
            std::os::unix::fs::symlink(dir.path().join(template), dir.path().join(instance)).expect("link instance");
        }
    }
    // The man pages that Documentation= names are checked where the package installs them (scripts/check-package).
    let output = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(instances.iter().map(|i| dir.path().join(i)))
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let problems: Vec<&str> = stderr.lines().filter(|l| !l.contains("Failed to connect to bus")).collect();
    assert!(problems.is_empty(), "systemd-analyze verify reported:\n{}", problems.join("\n"));

    for instance in instances {
        let output = std::process::Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(dir.path().join(instance))
            .output()
            .expect("systemd-analyze security");
        let report = String::from_utf8_lossy(&output.stdout);
        let score: f64 = report
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for ")?.1.split_once(": ")?.1.split(' ').next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no exposure level for {instance}:\n{report}"));
        println!("systemd-analyze security {instance}: {score}");
        assert!(score < 2.0, "{instance} is exposed {score} (of 10):\n{report}");
    }
}

/// Receives sd_notify datagrams as systemd does for a `Type=notify` unit, from a socket of the test's own.
struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        socket.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");
        Self { socket, path, _dir: dir }
    }

    /// The next notification (waits up to 30 s).
    fn next(&self) -> String {
        let mut buf = [0u8; 512];
        let n = self.socket.recv(&mut buf).expect("a notification within 30 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Notifications until one contains `needle`; returns it.
    fn until(&self, needle: &str) -> String {
        loop {
            let message = self.next();
            if message.contains(needle) {
                return message;
            }
        }
    }
}

/// Each daemon speaks systemd's readiness protocol: dnsd says READY=1 once it serves DNS (after the first
/// load, not before), the agent once it serves its modules, `registrar run` once the exporter accepts
/// connections, the gateway once it listens; each says STOPPING=1 on SIGTERM.
#[test]
fn every_daemon_says_ready_once_serving_and_stopping_on_sigterm() {
    use std::process::Command;

    use promsd_tests::{Etcd, Process, dig, free_port};
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let notify = NotifySocket::new();

    // dnsd started before etcd: not ready until etcd is there and the view loaded.
    let dns: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut command = Command::new(workspace_bin("dnsd"));
    command
        .env("NOTIFY_SOCKET", &notify.path)
        .args(["--endpoints", &format!("http://127.0.0.1:{port}"), "--zone", "prom.local"])
        .args(["--dns.listen-address", &dns.to_string(), "--web.listen-address", "127.0.0.1:0"]);
    let dnsd = Process::spawn("dnsd", command, &dir.path().join("dnsd.log"));
    assert_eq!(notify.next(), "STATUS=waiting for the first load from etcd");
    let etcd = Etcd::start_on_port(port);
    etcd.put("/skydns/local/prom/x", r#"{"host":"10.0.0.1"}"#);
    assert_eq!(notify.next(), "READY=1\nSTATUS=serving DNS");
    // Serving when it says so: the zone answers at once. The record may come after the first load (etcd can
    // answer dnsd before the put), through the watch.
    let soa = dig(dns, &["SOA", "prom.local"]);
    assert_eq!((soa.status.as_str(), soa.answer.len()), ("NOERROR", 1), "serving when it says so:\n{}", soa.raw);
    promsd_tests::eventually("x.prom.local", std::time::Duration::from_secs(5), || {
        (dig(dns, &["A", "x.prom.local"]).answer.len() == 1).then_some(())
    });
    dnsd.signal("TERM");
    assert_eq!(notify.until("STOPPING"), "STOPPING=1");

    // The agent.
    let config = crate::file_module_agent_config(dir.path(), &etcd.endpoint);
    let mut command = Command::new(workspace_bin("registrar"));
    command.env("NOTIFY_SOCKET", &notify.path).arg("agent").arg("--config").arg(&config);
    command.args(["--web.listen-address", "127.0.0.1:0"]);
    let agent = Process::spawn("agent", command, &dir.path().join("agent.log"));
    assert_eq!(notify.next(), "READY=1\nSTATUS=serving 1 modules");
    agent.signal("TERM");
    assert_eq!(notify.until("STOPPING"), "STOPPING=1");

    // registrar run.
    promsd_tests::require("prometheus-node-exporter");
    let exporter_port = free_port().to_string();
    let mut command = Command::new(workspace_bin("registrar"));
    command
        .env("NOTIFY_SOCKET", &notify.path)
        .args(["run", "--endpoints", &etcd.endpoint, "--zone", "prom.local", "--service", "node"])
        .args(["--address", "127.0.0.1", "--port", &exporter_port, "--"])
        .args(["prometheus-node-exporter", &format!("--web.listen-address=127.0.0.1:{exporter_port}")])
        .args(["--collector.disable-defaults", "--collector.loadavg"]);
    let run = Process::spawn("run", command, &dir.path().join("run.log"));
    assert_eq!(notify.next(), "READY=1\nSTATUS=exporter accepts connections; registering");
    assert!(std::net::TcpStream::connect(("127.0.0.1", exporter_port.parse::<u16>().expect("port"))).is_ok());
    run.signal("TERM");
    assert_eq!(notify.until("STOPPING"), "STOPPING=1");

    // The gateway.
    let mut command = Command::new(workspace_bin("promsd-gateway"));
    command.env("NOTIFY_SOCKET", &notify.path).args(["--web.listen-address", "127.0.0.1:0"]);
    let gateway = Process::spawn("gateway", command, &dir.path().join("gateway.log"));
    assert_eq!(notify.next(), "READY=1\nSTATUS=serving");
    gateway.signal("TERM");
    assert_eq!(notify.until("STOPPING"), "STOPPING=1");
}
