//! Listen addresses as Prometheus components take them (`--web.listen-address :9153`, `[::]:9153`,
//! `127.0.0.1:9153`, `localhost:9153`), and the one way promsd binds them: an empty host is every address of
//! both families, as Go's `:9153` is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ListenAddressError {
    #[error("{0:?} is not HOST:PORT (e.g. :9153, 0.0.0.0:9153, [::1]:9153)")]
    Form(String),
    #[error("{0:?}: the port must be a number from 0 to 65535")]
    Port(String),
    #[error("{0:?}: the host must be an IP address, localhost, or empty for every address")]
    Host(String),
}

/// Parses a listen address: `:PORT` (every address, IPv6 and IPv4), `IP:PORT`, `[IPv6]:PORT`,
/// `localhost:PORT`. Host names other than localhost are refused: a daemon must not listen on what a resolver
/// says at start.
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, ListenAddressError> {
    let (host, port) = text.rsplit_once(':').ok_or_else(|| ListenAddressError::Form(text.to_string()))?;
    let port: u16 = port.parse().map_err(|_| ListenAddressError::Port(text.to_string()))?;
    let ip = match host {
        "" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        h if h.starts_with('[') && h.ends_with(']') => {
            IpAddr::V6(h[1..h.len() - 1].parse().map_err(|_| ListenAddressError::Host(text.to_string()))?)
        }
        h if h.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => IpAddr::V4(h.parse().map_err(|_| ListenAddressError::Host(text.to_string()))?),
    };
    Ok(SocketAddr::new(ip, port))
}

/// A socket for `addr` of `kind`, bound: `[::]` also takes IPv4 (dual stack), and falls back to `0.0.0.0` on a
/// host without IPv6. `reuse_port` lets several sockets share one UDP port.
pub fn bind(addr: SocketAddr, kind: socket2::Type, reuse_port: bool) -> std::io::Result<socket2::Socket> {
    match bind_exactly(addr, kind, reuse_port) {
        Err(e) if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) && is_no_ipv6(&e) => {
            bind_exactly(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port()), kind, reuse_port)
        }
        bound => bound,
    }
}

fn is_no_ipv6(error: &std::io::Error) -> bool {
    // EAFNOSUPPORT (kernel without IPv6) and EADDRNOTAVAIL (IPv6 disabled).
    matches!(error.raw_os_error(), Some(97) | Some(99))
}

fn bind_exactly(addr: SocketAddr, kind: socket2::Type, reuse_port: bool) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket};
    let protocol = if kind == socket2::Type::DGRAM { Protocol::UDP } else { Protocol::TCP };
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    if kind == socket2::Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if kind == socket2::Type::STREAM {
        socket.listen(1024)?;
    }
    Ok(socket)
}

/// A bound, listening TCP socket for tokio.
pub fn tcp_listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = bind(addr, socket2::Type::STREAM, false)?;
    tokio::net::TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_as_prometheus_takes_them() {
        let ok = |s: &str| parse_listen_address(s).unwrap_or_else(|e| panic!("{s}: {e}")).to_string();
        assert_eq!(ok(":9153"), "[::]:9153");
        assert_eq!(ok("[::]:9153"), "[::]:9153");
        assert_eq!(ok("[::1]:9153"), "[::1]:9153");
        assert_eq!(ok("0.0.0.0:9153"), "0.0.0.0:9153");
        assert_eq!(ok("127.0.0.1:0"), "127.0.0.1:0");
        assert_eq!(ok("localhost:9153"), "127.0.0.1:9153");
        for (bad, expected) in [
            ("9153", ListenAddressError::Form("9153".into())),
            (":99999", ListenAddressError::Port(":99999".into())),
            ("999.1.1.1:9153", ListenAddressError::Host("999.1.1.1:9153".into())),
            ("example.com:9153", ListenAddressError::Host("example.com:9153".into())),
            ("[::1:9153", ListenAddressError::Host("[::1:9153".into())),
        ] {
            assert_eq!(parse_listen_address(bad), Err(expected), "{bad}");
        }
    }

    #[tokio::test]
    async fn every_address_takes_ipv4_and_ipv6() {
        let listener = tcp_listener(parse_listen_address(":0").expect("addr")).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        for ip in ["127.0.0.1", "::1"] {
            let ip: IpAddr = ip.parse().expect("ip");
            // ::1 may be missing on a host without IPv6; IPv4 must always connect.
            let connected = tokio::net::TcpStream::connect((ip, port)).await;
            assert!(connected.is_ok() || ip.is_ipv6(), "{ip}: {connected:?}");
        }
    }
}
