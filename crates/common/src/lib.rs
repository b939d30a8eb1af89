//! What promsd's `registrar` and `dnsd` share: the SkyDNS record model stored in etcd, the mapping between DNS
//! names and etcd keys, and how both connect to etcd (flags, `ETCDCTL_*` variables, `--discovery-srv`).

pub mod cli;
pub mod discovery;
pub mod duration;
pub mod etcd;
pub mod labels;
pub mod listen;
pub mod localhost;
pub mod name;
pub mod record;
pub mod stamp;

pub use etcd::{EtcdArgs, EtcdError};
pub use labels::{LabelError, Lenient, Pairs};
pub use name::{KeyPrefix, NameError};
pub use record::{RecordError, Service};
