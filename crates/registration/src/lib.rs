//! The registration core: "register this record (optionally under a lease), keep it true, remove it", as a
//! typed API. `registrar set/rm/ls`, `registrar run` and the agent all go through it; it knows nothing of
//! flags or config files.
//!
//! - [`location`]: where a record lives (zone, service, instance -> etcd key) and what it says.
//! - [`store`]: one-shot etcd operations (put, delete, revoke, list), retried until a deadline.
//! - [`keeper`]: a record kept true while its owner runs, then removed.
//! - [`status`]: what a keeper reports (written, lease, errors), for metrics.

pub mod keeper;
pub mod location;
pub mod status;
pub mod store;

pub use keeper::Keeper;
pub use location::{
    Identity, Location, RecordValue, Registration, RegistrationError, key_for, owner, validate_address,
};
pub use status::Status;
pub use store::{Store, StoreError, check_at_start};
