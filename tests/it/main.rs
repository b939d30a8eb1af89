//! promsd end to end: both binaries, real etcd, real etcdctl, real Prometheus and node exporters, inside a
//! network namespace whose resolv.conf leads to dnsd on 127.0.0.1:53, as a host's resolver would.

mod cluster;
mod corefile;
mod discovery;
mod docs;
mod logs;
mod prometheus;
mod security;
mod stack;
mod systemd;
