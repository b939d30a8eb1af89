//! A private network and mount namespace for a test: its own loopback (so port 53 is free) and its own
//! /etc/resolv.conf, bind-mounted, pointing at dnsd. Prometheus and etcdctl resolve through it as they would
//! on a host whose resolver leads to dnsd. Processes join it with nsenter.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::Process;
use crate::{eventually, require};

pub struct Netns {
    holder: Process,
    _dir: TempDir,
}

impl Netns {
    /// A namespace whose resolv.conf names `nameserver` (an address inside the namespace).
    pub fn new(nameserver: &str) -> Self {
        require("unshare");
        require("nsenter");
        require("ip");
        let dir = tempfile::tempdir().expect("temp dir");
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, format!("nameserver {nameserver}\noptions timeout:1 attempts:2\n")).expect("write");
        let ready = dir.path().join("ready");
        let script = format!(
            "mount --bind {resolv} /etc/resolv.conf && ip link set lo up && touch {ready} && exec sleep 3600",
            resolv = resolv.display(),
            ready = ready.display()
        );
        let mut command = Command::new("unshare");
        command.args(["--mount", "--net", "--propagation", "private", "--", "sh", "-c", &script]);
        let holder = Process::spawn("netns", command, &dir.path().join("netns.log"));
        let netns = Self { holder, _dir: dir };
        eventually("the network namespace to be set up", Duration::from_secs(10), || {
            Path::new(&ready).exists().then_some(())
        });
        netns
    }

    pub fn pid(&self) -> u32 {
        self.holder.pid()
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        Self::command_for(self.pid(), program)
    }

    pub fn command_for(pid: u32, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["--target", &pid.to_string(), "--mount", "--net", "--", program]);
        command
    }

    /// Runs a command in the namespace and returns its stdout; panics when it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let output = self.command(program).args(args).output().expect("run in netns");
        assert!(
            output.status.success(),
            "{program} {args:?} failed in the namespace: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}
