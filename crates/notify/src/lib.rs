//! systemd's readiness protocol (sd_notify(3)): a daemon in a `Type=notify` unit sends `READY=1` on the
//! datagram socket named by `$NOTIFY_SOCKET` once it serves, `RELOADING=1` while it applies a SIGHUP,
//! `STOPPING=1` when it begins to stop, and `STATUS=...` for `systemctl status`. Outside systemd (no
//! variable) every call does nothing, so the daemons call it unconditionally.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use thiserror::Error;

#[derive(Debug, Error)]
#[error("cannot notify systemd at {socket:?}: {source}")]
pub struct NotifyError {
    socket: String,
    source: std::io::Error,
}

/// The daemon serves: systemd's start job completes, `After=` units start.
pub fn ready(status: &str) {
    send(&format!("READY=1\nSTATUS={status}"));
}

/// What `systemctl status` shows, while the daemon is not ready yet or after it changed state.
pub fn status(status: &str) {
    send(&format!("STATUS={status}"));
}

/// A SIGHUP is being applied; [`ready`] follows when it is done.
pub fn reloading() {
    send("RELOADING=1");
}

/// The daemon has begun to stop.
pub fn stopping() {
    send("STOPPING=1");
}

/// Sends `state` to `$NOTIFY_SOCKET`, logging a failure to stderr once per call: systemd's side of the
/// protocol is best effort (a unit without `Type=notify` has no socket, and nothing else depends on it).
fn send(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    if let Err(error) = notify_to(&socket, state) {
        eprintln!("{error}");
    }
}

/// Sends one notification datagram to `socket`: a path, or an abstract address written `@name`.
pub fn notify_to(socket: &OsStr, state: &str) -> Result<(), NotifyError> {
    let failed = |source| NotifyError { socket: socket.to_string_lossy().into_owned(), source };
    let bytes = socket.as_bytes();
    let address = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name).map_err(failed)?
        }
        None => SocketAddr::from_pathname(socket).map_err(failed)?,
    };
    let sender = UnixDatagram::unbound().map_err(failed)?;
    sender.send_to_addr(state.as_bytes(), &address).map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).expect("bind");
        notify_to(path.as_os_str(), "READY=1\nSTATUS=serving").expect("send");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("promsd-notify-test-{}", std::process::id());
        let abstract_receiver =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).expect("name")).expect("bind");
        notify_to(OsStr::new(&format!("@{name}")), "STOPPING=1").expect("send");
        let n = abstract_receiver.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");

        let missing = dir.path().join("nobody-listens");
        assert!(notify_to(missing.as_os_str(), "READY=1").is_err(), "a socket nobody binds is an error");
    }
}
