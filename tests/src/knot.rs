//! Knot DNS (Debian's `knot`) serving a zone file on a free loopback port: the peer dnsd's answers are
//! compared with.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::{Process, dig, eventually, free_port, require};

pub struct Knot {
    pub addr: SocketAddr,
    _process: Process,
    _dir: tempfile::TempDir,
}

/// A TSIG key as Knot's configuration names it.
pub struct KnotKey<'a> {
    pub name: &'a str,
    pub algorithm: &'a str,
    /// base64
    pub secret: &'a str,
}

impl Knot {
    /// Knot as a secondary of `zone` on `addr`, transferring it from `primary` (signed with `key` when
    /// given) and taking NOTIFY from loopback; waits until it answers the zone's SOA.
    pub fn secondary(addr: SocketAddr, zone: &str, primary: SocketAddr, key: Option<&KnotKey<'_>>) -> Self {
        require("knotd");
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let (key_section, key_ref) = match key {
            Some(k) => (
                format!("key:\n  - id: {}\n    algorithm: {}\n    secret: {}\n", k.name, k.algorithm, k.secret),
                format!("    key: {}\n", k.name),
            ),
            None => (String::new(), String::new()),
        };
        let config = format!(
            "server:\n    rundir: \"{d}\"\n    listen: {ip}@{port}\ndatabase:\n    storage: \"{d}\"\n{key_section}remote:\n  - id: primary\n    address: {pip}@{pport}\n{key_ref}acl:\n  - id: from_primary\n    address: 127.0.0.0/8\n    action: notify\n  - id: transfer_out\n    address: 127.0.0.0/8\n    action: transfer\nzone:\n  - domain: {zone}\n    master: primary\n    acl: [from_primary, transfer_out]\n    file: \"{d}/{zone}.zone\"\nlog:\n  - target: stderr\n    any: info\n",
            d = d.display(),
            ip = addr.ip(),
            port = addr.port(),
            pip = primary.ip(),
            pport = primary.port(),
        );
        Self::run(dir, &config, addr, zone, Duration::from_secs(20))
    }

    /// Knot's log so far.
    pub fn log(&self) -> String {
        self._process.log()
    }

    /// Serves `zone` (its origin) from `zone_file` (text) and waits until Knot answers its SOA.
    pub fn start(zone: &str, zone_file: &str) -> Self {
        require("knotd");
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        std::fs::write(d.join("zone"), zone_file).expect("write zone file");
        let config = format!(
            "server:\n    rundir: \"{d}\"\n    listen: {ip}@{port}\ndatabase:\n    storage: \"{d}\"\nzone:\n  - domain: {zone}\n    file: \"{d}/zone\"\nlog:\n  - target: stderr\n    any: warning\n",
            d = d.display(),
            ip = addr.ip(),
            port = addr.port(),
        );
        Self::run(dir, &config, addr, zone, Duration::from_secs(10))
    }

    /// Starts knotd with `config` in `dir` and waits (up to `within`) until it answers `zone`'s SOA.
    fn run(dir: tempfile::TempDir, config: &str, addr: SocketAddr, zone: &str, within: Duration) -> Self {
        let d = dir.path();
        std::fs::write(d.join("knot.conf"), config).expect("write knot.conf");
        let mut command = Command::new("knotd");
        command.arg("-c").arg(d.join("knot.conf"));
        let process = Process::spawn("knotd", command, &d.join("knot.log"));
        eventually("Knot to serve the zone", within, || (dig(addr, &["SOA", zone]).answer.len() == 1).then_some(()));
        Self { addr, _process: process, _dir: dir }
    }
}
