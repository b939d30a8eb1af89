//! A real single-member etcd (Debian's etcd-server 3.4) on free loopback ports with a temporary data dir.

use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::netns::Netns;
use crate::process::Process;
use crate::{CommandError, eventually, free_port, output_of, require};

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

    /// Starts etcd on 127.0.0.1 with chosen client and peer ports: a wiped etcd started again on the ports of
    /// an old one is a new cluster with the same cluster ID.
    pub fn start_on_ports(client_port: u16, peer_port: u16) -> Self {
        Self::start_on(None, client_port, peer_port)
    }

    /// Starts etcd inside `netns` on the given client port (the namespace has its ports to itself).
    pub fn start_in(netns: &Netns, client_port: u16) -> Self {
        Self::start_on(Some(netns), client_port, client_port + 1)
    }

    /// Restores `snapshot` (`etcdctl snapshot restore`, as an operator recovering from a backup) and starts
    /// etcd on it with the given ports: the cluster ID of a member of that name and peer URL, the data and
    /// the revision of the snapshot.
    pub fn restored_from(snapshot: &std::path::Path, client_port: u16, peer_port: u16) -> Self {
        require("etcdctl");
        let dir = tempfile::tempdir().expect("temp dir");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut restore = Command::new("etcdctl");
        restore.env("ETCDCTL_API", "3").arg("snapshot").arg("restore").arg(snapshot);
        restore.args(["--name", "test", "--initial-cluster", &format!("test={peer}")]);
        restore.args(["--initial-advertise-peer-urls", &peer, "--data-dir"]).arg(dir.path().join("data"));
        output_of(&mut restore).unwrap_or_else(|e| panic!("etcdctl snapshot restore: {e}"));
        Self::start_in_dir(None, client_port, peer_port, dir)
    }

    /// Saves a snapshot of this etcd's data to `path` (`etcdctl snapshot save`).
    pub fn snapshot(&self, path: &std::path::Path) {
        let path = path.display().to_string();
        self.etcdctl(&["snapshot", "save", &path]);
    }

    fn start_on(netns: Option<&Netns>, client_port: u16, peer_port: u16) -> Self {
        Self::start_in_dir(netns, client_port, peer_port, tempfile::tempdir().expect("temp dir"))
    }

    /// Starts etcd with its data under `dir`/data (empty: a new cluster).
    fn start_in_dir(netns: Option<&Netns>, client_port: u16, peer_port: u16, dir: TempDir) -> Self {
        require("etcd");
        require("etcdctl");
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

    pub fn try_etcdctl(&self, args: &[&str]) -> Result<String, CommandError> {
        output_of(self.etcdctl_command().args(args))
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

/// A real etcd cluster of several members on loopback, whose members can be killed and restarted with their
/// data, for failover, outage and compaction tests.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: TempDir,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    process: Option<Process>,
}

impl EtcdCluster {
    pub fn start(size: usize) -> Self {
        require("etcd");
        require("etcdctl");
        let dir = tempfile::tempdir().expect("temp dir");
        let members: Vec<Member> = (0..size)
            .map(|i| Member { name: format!("m{i}"), client_port: free_port(), peer_port: free_port(), process: None })
            .collect();
        let mut cluster = Self { members, dir };
        for i in 0..size {
            cluster.restart(i);
        }
        // Every member healthy, not just a quorum: a test that kills one must leave a quorum behind.
        for i in 0..size {
            let endpoint = cluster.endpoint(i);
            let healthy = (0..300).any(|_| {
                let ok = Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args(["--endpoints", &endpoint, "endpoint", "health"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if !ok {
                    std::thread::sleep(Duration::from_millis(100));
                }
                ok
            });
            let log = std::fs::read_to_string(cluster.dir.path().join(format!("m{i}.log"))).unwrap_or_default();
            assert!(healthy, "etcd member m{i} did not become healthy:\n{log}");
        }
        cluster
    }

    fn initial_cluster(&self) -> String {
        let peers: Vec<String> =
            self.members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect();
        peers.join(",")
    }

    /// Starts member `i` (again), with the data it had.
    pub fn restart(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let data = self.dir.path().join(&self.members[i].name);
        let member = &mut self.members[i];
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let mut command = Command::new("etcd");
        command
            .args(["--name", &member.name, "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial, "--initial-cluster-state", "new"])
            // Twice etcd's defaults: tests share two cores, and missed heartbeats would start elections.
            .args(["--heartbeat-interval", "200", "--election-timeout", "2000"]);
        let log = self.dir.path().join(format!("{}.log", member.name));
        member.process = Some(Process::spawn(&member.name, command, &log));
    }

    /// Kills member `i` (SIGKILL, as a crashed host).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.members[i].process.take() {
            process.kill();
        }
    }

    /// Sends a signal by name to member `i` (STOP freezes it: its connections stay open but silent).
    pub fn signal(&self, i: usize, signal: &str) {
        if let Some(process) = &self.members[i].process {
            process.signal(signal);
        }
    }

    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// All client URLs, comma separated.
    pub fn endpoints(&self) -> String {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect::<Vec<_>>().join(",")
    }

    /// The endpoints of the members that are running.
    pub fn live_endpoints(&self) -> String {
        let live: Vec<String> =
            (0..self.members.len()).filter(|&i| self.members[i].process.is_some()).map(|i| self.endpoint(i)).collect();
        live.join(",")
    }

    pub fn try_etcdctl(&self, args: &[&str]) -> Result<String, CommandError> {
        let endpoints = self.live_endpoints();
        output_of(
            Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &endpoints, "--command-timeout", "5s"])
                .args(args),
        )
    }

    pub fn etcdctl(&self, args: &[&str]) -> String {
        self.try_etcdctl(args).unwrap_or_else(|e| panic!("etcdctl {args:?} failed: {e}"))
    }

    /// The index of the current leader, asked of the live members.
    pub fn leader(&self) -> usize {
        eventually("a leader", Duration::from_secs(20), || self.try_leader())
    }

    /// The index of the current leader if the live members agree on one that is live, asked once.
    pub fn try_leader(&self) -> Option<usize> {
        let status = self.try_etcdctl(&["endpoint", "status", "-w", "json"]).ok()?;
        let json: serde_json::Value = serde_json::from_str(&status).ok()?;
        json.as_array()?.iter().find_map(|member| {
            let status = &member["Status"];
            let is_leader = status["header"]["member_id"].as_u64()? == status["leader"].as_u64()?;
            let endpoint = member["Endpoint"].as_str()?;
            is_leader.then(|| (0..self.members.len()).find(|&i| self.endpoint(i) == endpoint)).flatten()
        })
    }
}
