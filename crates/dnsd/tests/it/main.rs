//! dnsd against a real etcd, queried with real dig. dnsd runs in process on port 0 (see `server`).

mod answers;
mod conformance;
mod corefile;
mod flags;
mod following;
mod http_sd;
mod knot;
mod metrics;
mod replaced;
mod retry;
mod robustness;
mod server;
mod signals;
mod store;
mod transfer;
mod webconfig;
