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
        command.args(["--mount", "--net", "--propagation", mount_propagation(), "--", "sh", "-c", &script]);
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
        // --root: the target's root, which is not the mount namespace's own in a chroot (a clean room).
        command.args(["--target", &pid.to_string(), "--mount", "--root", "--net", "--", program]);
        command
    }

    /// A veth pair between this namespace (`ours`, `CIDR` address) and `other` (`theirs`), both up. Made from
    /// inside the namespaces: nothing appears in the host's.
    pub fn link(&self, ours: (&str, &str), other: &Netns, theirs: (&str, &str)) {
        let peer = other.pid().to_string();
        self.run("ip", &["link", "add", ours.0, "type", "veth", "peer", "name", theirs.0, "netns", &peer]);
        for (netns, (name, address)) in [(self, ours), (other, theirs)] {
            netns.run("ip", &["addr", "add", address, "dev", name]);
            netns.run("ip", &["link", "set", name, "up"]);
        }
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

/// unshare's `--propagation` for the namespace: `private`, as on a booted machine. In a chroot whose root is
/// not a mount point (a debootstrap folder), unshare cannot change it; `unchanged` is as private there as long
/// as the mounts in sight do not propagate. Same rule as `mount_propagation` in scripts/lib.sh.
fn mount_propagation() -> &'static str {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    // Fields: id, parent, dev, root, mount point, options, optional fields..., "-", ...
    let mounts: Vec<Vec<&str>> = mountinfo.lines().map(|line| line.split(' ').collect()).collect();
    if mounts.iter().any(|fields| fields.get(4) == Some(&"/")) {
        return "private";
    }
    let shared = mounts.iter().any(|fields| {
        fields.iter().skip(6).take_while(|field| **field != "-").any(|field| field.starts_with("shared:"))
    });
    assert!(!shared, "/ is not a mount point and the mounts here propagate: run in a root that is one");
    "unchanged"
}
