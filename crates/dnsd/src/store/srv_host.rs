//! external-dns keeps an SRV record's data in its target, `"<priority> <weight> <port> <target>"`, and its
//! CoreDNS provider writes that target as the SkyDNS `host`: such a host is the SRV record itself.

/// The SRV data a host of that form gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvHost<'a> {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// As written, possibly with a trailing dot; `.` (no service) is the root.
    pub target: &'a str,
}

impl<'a> SrvHost<'a> {
    /// The SRV data of `host`, or None when it is not exactly three numbers of 0-65535 and a target.
    pub fn parse(host: &'a str) -> Option<Self> {
        let mut fields = host.split_ascii_whitespace();
        let mut number = || fields.next()?.parse::<u16>().ok();
        let (priority, weight, port) = (number()?, number()?, number()?);
        let target = fields.next()?;
        fields.next().is_none().then_some(Self { priority, weight, port, target })
    }
}

#[cfg(test)]
mod tests {
    use super::SrvHost;

    #[test]
    fn parses_external_dns_srv_targets() {
        let srv = SrvHost::parse("10 5 8080 lb.prom.local.").expect("an SRV host");
        assert_eq!((srv.priority, srv.weight, srv.port, srv.target), (10, 5, 8080, "lb.prom.local."));
        assert_eq!(SrvHost::parse(" 0  0 1 . ").map(|s| s.target), Some("."));
        for not_srv in ["lb.prom.local", "10 5 lb.prom.local", "10 5 8080 a b", "10 5 65536 a", "-1 5 80 a", ""] {
            assert_eq!(SrvHost::parse(not_srv), None, "{not_srv:?}");
        }
    }
}
