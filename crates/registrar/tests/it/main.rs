//! registrar as its users run it: the real binary against a real etcd, with real node exporters.

mod agent;
mod antientropy;
mod fatal;
mod isolation;
mod oneshot;
mod parity;
mod replaced;
mod stopping;
mod supervise;
mod webconfig;

use std::process::{Command, Output};

/// The registrar binary with a clean environment for the variables it reads.
pub fn registrar() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_registrar"));
    for var in [
        "ETCDCTL_ENDPOINTS",
        "ETCDCTL_DISCOVERY_SRV",
        "ETCDCTL_USER",
        "ETCDCTL_PASSWORD",
        "ETCD_ENDPOINT",
        "ETCD_BASE_PATH",
        "EXPORTER_TYPE",
        "EXPORTER_ADDRESS",
        "EXPORTER_PORT",
        "EXPORTER_INSTANCE",
        "PROMSD_ZONE",
    ] {
        command.env_remove(var);
    }
    command
}

pub fn run(command: &mut Command) -> Output {
    command.output().expect("run registrar")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
