//! Flags as Prometheus components take them: `--web.listen-address :PORT` (every address, both families),
//! `[::]:PORT`, several web addresses; a bad value is one line naming the flag and the value, exit code 2,
//! nothing started.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use promsd_tests::{Etcd, Process, eventually, free_port, http_get};

fn dnsd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dnsd"));
    // A backtrace (RUST_BACKTRACE in the caller's environment) is not part of what a user sees.
    command.env_remove("ETCDCTL_ENDPOINTS").env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE");
    command
}

#[test]
fn a_bad_flag_value_is_one_line_naming_it_and_exit_code_2() {
    for (flag, value) in [
        ("--web.listen-address", "999.1.1.1:9153"),
        ("--web.listen-address", "9153"),
        ("--dns.listen-address", "[::1:53"),
        ("--min-lease-ttl", "5x"),
        ("--log.format", "text"),
        ("--transfer.allow", "10.0.0.300/8"),
        ("--transfer.notify", "knot.example.org:53"),
        ("--transfer.ixfr-history", "many"),
    ] {
        let output = dnsd().args(["--zone", "prom.local", flag, value]).output().expect("run dnsd");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flag} {value}: one line: {stderr}");
        assert!(stderr.starts_with("dnsd: ") && stderr.contains(flag) && stderr.contains(value), "{stderr}");
    }
}

/// A key file that cannot be used stops dnsd at once with one line naming the file and the key.
#[test]
fn a_bad_tsig_key_file_is_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("xfr.key");
    std::fs::write(&file, "key \"xfr\" {\n  algorithm hmac-md5;\n  secret \"c2VjcmV0\";\n};\n").expect("write");
    for (path, expected) in
        [(file.clone(), "key \"xfr\": algorithm \"hmac-md5\""), (dir.path().join("none"), "cannot read")]
    {
        let output =
            dnsd().args(["--zone", "prom.local", "--transfer.tsig-key-file"]).arg(&path).output().expect("run dnsd");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(&path.display().to_string()) && stderr.contains(expected), "{stderr}");
    }
}

#[test]
fn web_addresses_take_the_port_only_form_and_repeat() {
    let etcd = Etcd::start();
    let (any, loopback) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = dnsd();
    command
        .args(["--endpoints", &etcd.endpoint, "--zone", "prom.local"])
        .args(["--dns.listen-address", &format!("127.0.0.1:{}", free_port())])
        .args(["--web.listen-address", &format!(":{any}"), "--web.listen-address", &format!("127.0.0.1:{loopback}")]);
    let _dnsd = Process::spawn("dnsd", command, &dir.path().join("dnsd.log"));
    let healthy = |addr: SocketAddr| matches!(http_get(addr, "/-/healthy"), Ok((200, _)));
    let v4 = |port| SocketAddr::from(([127, 0, 0, 1], port));
    eventually("both web addresses", Duration::from_secs(10), || {
        (healthy(v4(any)) && healthy(v4(loopback))).then_some(())
    });
    // `:PORT` is every address of both families (where the host has IPv6).
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        assert!(healthy(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, any))), ":{any} over IPv6");
    }
}
