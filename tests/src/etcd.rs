//! A real single-member etcd (Debian's etcd-server 3.4) on free loopback ports with a temporary data dir.

use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::netns::Netns;
use crate::process::Process;
use crate::{eventually, free_port, require};

pub struct Etcd {
    pub endpoint: String,
    pub client_port: u16,
    process: Process,
    netns_pid: Option<u32>,
    _dir: TempDir,
}

impl Etcd {
    /// Starts etcd on 127.0.0.1 and waits until it serves requests.
    pub fn start() -> Self {
        Self::start_on(None, free_port(), free_port())
    }

    /// Starts etcd on 127.0.0.1 with a chosen client port (for tests that start etcd after its clients).
    pub fn start_on_port(client_port: u16) -> Self {
        Self::start_on(None, client_port, free_port())
    }

    /// Starts etcd inside `netns` on the given client port (the namespace has its ports to itself).
    pub fn start_in(netns: &Netns, client_port: u16) -> Self {
        Self::start_on(Some(netns), client_port, client_port + 1)
    }

    fn start_on(netns: Option<&Netns>, client_port: u16, peer_port: u16) -> Self {
        require("etcd");
        require("etcdctl");
        let dir = tempfile::tempdir().expect("temp dir");
        let endpoint = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let args = [
            "--name".to_string(),
            "test".into(),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
            "--listen-client-urls".into(),
            endpoint.clone(),
            "--advertise-client-urls".into(),
            endpoint.clone(),
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer.clone(),
            "--initial-cluster".into(),
            format!("test={peer}"),
        ];
        let mut command = match netns {
            Some(ns) => ns.command("etcd"),
            None => Command::new("etcd"),
        };
        command.args(args);
        let process = Process::spawn("etcd", command, &dir.path().join("etcd.log"));
        let etcd = Self { endpoint, client_port, process, netns_pid: netns.map(|n| n.pid()), _dir: dir };
        eventually("etcd to serve requests", Duration::from_secs(20), || {
            etcd.try_etcdctl(&["put", "/promsd-test/ready", "1"]).ok()
        });
        etcd
    }

    fn etcdctl_command(&self) -> Command {
        let mut command = match self.netns_pid {
            Some(pid) => Netns::command_for(pid, "etcdctl"),
            None => Command::new("etcdctl"),
        };
        command.env("ETCDCTL_API", "3").arg("--endpoints").arg(&self.endpoint);
        command
    }

    pub fn try_etcdctl(&self, args: &[&str]) -> Result<String, String> {
        let output = self.etcdctl_command().args(args).output().map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// Runs etcdctl against this etcd; panics when it fails.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        self.try_etcdctl(args).unwrap_or_else(|e| panic!("etcdctl {args:?} failed: {e}"))
    }

    pub fn put(&self, key: &str, value: &str) {
        self.etcdctl(&["put", key, value]);
    }

    pub fn del(&self, key: &str) {
        self.etcdctl(&["del", key]);
    }

    /// The value at `key`, or None.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.etcdctl(&["get", "--print-value-only", key]);
        let value = out.trim_end_matches('\n');
        (!value.is_empty()).then(|| value.to_string())
    }

    /// Stops etcd (SIGKILL): clients see it vanish as on a crashed host.
    pub fn stop(&mut self) {
        self.process.kill();
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}
