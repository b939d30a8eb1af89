//! `localhost` without a resolver: RFC 6761 §6.3 says localhost names always mean the loopback address, and a
//! machine without an /etc/hosts (a debootstrap root, a minimal container) would otherwise fail to find it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The loopback addresses, IPv4 first, when `host` is `localhost` or a name below it; `None` otherwise.
pub fn loopback_for(host: &str) -> Option<[IpAddr; 2]> {
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    (name == "localhost" || name.ends_with(".localhost"))
        .then_some([IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_names_are_loopback_and_others_are_not() {
        for name in ["localhost", "LocalHost.", "exporter.localhost"] {
            assert_eq!(loopback_for(name).map(|a| a[0]), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), "{name}");
        }
        for name in ["localhost.example.org", "mylocalhost", "127.0.0.1", ""] {
            assert_eq!(loopback_for(name), None, "{name}");
        }
    }
}
