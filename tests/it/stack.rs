//! etcd and dnsd running in a fresh network namespace: the base every end-to-end test builds on.

use std::process::Command;
use std::time::Duration;

use promsd_tests::dig::dig_with;
use promsd_tests::{Dig, Etcd, Netns, Process, eventually, require, workspace_bin};

pub const ETCD: &str = "http://127.0.0.1:2379";

pub struct Stack {
    // Fields drop in declaration order: dnsd and etcd go before the namespace they live in.
    pub dnsd: Process,
    pub etcd: Etcd,
    pub netns: Netns,
    pub dir: tempfile::TempDir,
}

impl Stack {
    pub fn start() -> Self {
        require("curl");
        require("dig");
        let dir = tempfile::tempdir().expect("temp dir");
        let netns = Netns::new("127.0.0.1");
        let etcd = Etcd::start_in(&netns, 2379);
        let mut command = netns.command(workspace_bin("dnsd").to_str().expect("path"));
        command.args(["--endpoints", ETCD, "--zone", "prom.local"]).args([
            "--dns.listen-address",
            "127.0.0.1:53",
            "--web.listen-address",
            "127.0.0.1:9153",
        ]);
        let dnsd = Process::spawn("dnsd", command, &dir.path().join("dnsd.log"));
        let stack = Self { dnsd, etcd, netns, dir };
        eventually("dnsd to be ready", Duration::from_secs(20), || {
            stack.curl("http://127.0.0.1:9153/-/ready").filter(|body| body.contains("Ready")).map(|_| ())
        });
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

    pub fn log_path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }
}
