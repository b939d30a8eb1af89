//! external-dns keeps the data of an SRV record in its target, `"<priority> <weight> <port> <target>"`, and of
//! an MX record, `"<preference> <exchange>"`; its CoreDNS provider writes that target as the SkyDNS `host`
//! (no `port`, `priority` or `mail`): such a host is that record itself.

/// The record a host of either form gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRecord<'a> {
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        /// As written, possibly with a trailing dot; `.` (no service) is the root.
        target: &'a str,
    },
    Mx {
        preference: u16,
        /// As written, possibly with a trailing dot; `.` (null MX, RFC 7505) is the root.
        exchange: &'a str,
    },
}

impl<'a> HostRecord<'a> {
    /// The record of `host`, or None when it is not one or three numbers of 0-65535 followed by a name.
    pub fn parse(host: &'a str) -> Option<Self> {
        let mut fields = [""; 4];
        let mut count = 0;
        for field in host.split_ascii_whitespace() {
            *fields.get_mut(count)? = field;
            count += 1;
        }
        let (&name, numbers) = fields[..count].split_last()?;
        let number = |i: usize| numbers[i].parse::<u16>().ok();
        match numbers.len() {
            1 => Some(Self::Mx { preference: number(0)?, exchange: name }),
            3 => Some(Self::Srv { priority: number(0)?, weight: number(1)?, port: number(2)?, target: name }),
            _ => None,
        }
    }

    /// The name the record points at, as written.
    pub fn target(&self) -> &'a str {
        match self {
            Self::Srv { target, .. } => target,
            Self::Mx { exchange, .. } => exchange,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HostRecord;

    #[test]
    fn parses_external_dns_srv_and_mx_targets() {
        let srv = HostRecord::parse("10 5 8080 lb.prom.local.");
        assert_eq!(srv, Some(HostRecord::Srv { priority: 10, weight: 5, port: 8080, target: "lb.prom.local." }));
        assert_eq!(HostRecord::parse(" 0  0 1 . ").map(|r| r.target()), Some("."));
        let mx = HostRecord::parse("10 mail.example.org");
        assert_eq!(mx, Some(HostRecord::Mx { preference: 10, exchange: "mail.example.org" }));
        assert_eq!(HostRecord::parse("0 ."), Some(HostRecord::Mx { preference: 0, exchange: "." }));
        let malformed = [
            "lb.prom.local",
            "10 5 lb.prom.local",
            "10 5 8080 a b",
            "1 2 3 4 a",
            "10 5 65536 a",
            "-1 5 80 a",
            "65536 mail",
            "-1 mail",
            "ten mail",
            "10",
            "",
        ];
        for not_a_record in malformed {
            assert_eq!(HostRecord::parse(not_a_record), None, "{not_a_record:?}");
        }
    }
}
