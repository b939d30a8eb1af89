//! promsd end to end: both binaries, real etcd, real etcdctl, real Prometheus and node exporters, inside a
//! network namespace whose resolv.conf leads to dnsd on 127.0.0.1:53, as a host's resolver would.

mod cluster;
mod corefile;
mod discovery;
mod docs;
mod http_sd;
mod logs;
mod nat;
mod prometheus;
mod remote_write;
mod security;
mod stack;
mod systemd;
mod version;

/// Writes DIR/agent.yml for an agent with one file module (`files`, serving `up 1`) registered through
/// `etcd`; returns its path.
pub fn file_module_agent_config(dir: &std::path::Path, etcd: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("up.prom"), "up 1\n").expect("write");
    let config = format!(
        "etcd:\n  endpoints: [{etcd}]\nzone: prom.local\naddress: 127.0.0.1\nmodules:\n  files:\n    method: file\n    file:\n      path: {}\n",
        dir.join("up.prom").display()
    );
    let path = dir.join("agent.yml");
    std::fs::write(&path, config).expect("write");
    path
}
