//! etcd and dnsd running in a fresh network namespace: the base every end-to-end test builds on.

use std::process::Command;
use std::time::Duration;

use promsd_tests::dig::dig_with;
use promsd_tests::{Dig, Etcd, Netns, Process, require, workspace_bin};

pub const ETCD: &str = "http://127.0.0.1:2379";

pub struct Stack {
    // Fields drop in declaration order: dnsd and etcd go before the namespace they live in.
    pub dnsd: Process,
    pub etcd: Etcd,
    pub netns: Netns,
    pub dir: tempfile::TempDir,
}

impl Stack {
    /// etcd, and dnsd for prom.local on 127.0.0.1:53 following it.
    pub fn start() -> Self {
        let args = ["--endpoints", ETCD, "--zone", "prom.local", "--dns.listen-address", "127.0.0.1:53"];
        Self::start_with(|_| args.iter().map(|a| a.to_string()).collect())
    }

    /// etcd, then dnsd started with the flags `prepare` returns (given the test's directory for files it
    /// writes). dnsd's web address must stay 127.0.0.1:9153 or the default.
    pub fn start_with(prepare: impl FnOnce(&std::path::Path) -> Vec<String>) -> Self {
        require("curl");
        require("dig");
        let dir = tempfile::tempdir().expect("temp dir");
        let netns = Netns::new("127.0.0.1");
        let etcd = Etcd::start_in(&netns, 2379);
        let args = prepare(dir.path());
        let mut command = netns.command(workspace_bin("dnsd").to_str().expect("path"));
        command.args(args).env_remove("ETCDCTL_ENDPOINTS");
        let dnsd = Process::spawn("dnsd", command, &dir.path().join("dnsd.log"));
        let stack = Self { dnsd, etcd, netns, dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !stack.curl("http://127.0.0.1:9153/-/ready").is_some_and(|body| body.contains("Ready")) {
            assert!(std::time::Instant::now() < deadline, "dnsd did not become ready:\n{}", stack.dnsd.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        stack
    }

    /// `curl -sf URL` inside the namespace.
    pub fn curl(&self, url: &str) -> Option<String> {
        let output = self.netns.command("curl").args(["-sf", "--max-time", "5", url]).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub fn dig(&self, args: &[&str]) -> Dig {
        dig_with(self.netns.command("dig"), "127.0.0.1", 53, args)
    }

    /// The registrar inside the namespace, without inherited registrar variables.
    pub fn registrar(&self) -> Command {
        let mut command = self.netns.command(workspace_bin("registrar").to_str().expect("path"));
        for var in ["ETCDCTL_ENDPOINTS", "ETCDCTL_DISCOVERY_SRV", "ETCD_ENDPOINT", "ETCD_BASE_PATH", "EXPORTER_TYPE"] {
            command.env_remove(var);
        }
        command
    }

    /// Prometheus in the namespace with `config` as its prometheus.yml, its API on 127.0.0.1:9090.
    pub fn prometheus(&self, config: &str) -> Process {
        let path = self.dir.path().join("prometheus.yml");
        std::fs::write(&path, config).expect("write prometheus.yml");
        let mut command = self.netns.command("prometheus");
        command
            .arg(format!("--config.file={}", path.display()))
            .arg(format!("--storage.tsdb.path={}", self.dir.path().join("tsdb").display()))
            .arg("--web.listen-address=127.0.0.1:9090");
        Process::spawn("prometheus", command, &self.log_path("prometheus"))
    }

    pub fn log_path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }
}
