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

impl Knot {
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
        std::fs::write(d.join("knot.conf"), config).expect("write knot.conf");
        let mut command = Command::new("knotd");
        command.arg("-c").arg(d.join("knot.conf"));
        let process = Process::spawn("knotd", command, &d.join("knot.log"));
        eventually("Knot to serve the zone", Duration::from_secs(10), || {
            (dig(addr, &["SOA", zone]).answer.len() == 1).then_some(())
        });
        Self { addr, _process: process, _dir: dir }
    }
}
