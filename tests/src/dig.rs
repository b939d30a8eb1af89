//! Queries with the real `dig`, parsed into the header and sections so tests can compare them exactly.

use std::process::Command;

#[derive(Debug, Default, Clone)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    pub answer: Vec<String>,
    pub authority: Vec<String>,
    pub additional: Vec<String>,
    pub raw: String,
}

impl Dig {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The answer records without their TTLs, sorted: `name TYPE rdata`.
    pub fn answer_sorted(&self) -> Vec<String> {
        sorted(&self.answer)
    }

    pub fn additional_sorted(&self) -> Vec<String> {
        sorted(&self.additional)
    }
}

fn sorted(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = lines.to_vec();
    out.sort();
    out
}

/// `dig @server -p port ARGS...` through `command` (so it can run inside a namespace).
pub fn dig_with(mut command: Command, server: &str, port: u16, args: &[&str]) -> Dig {
    let output = command
        .args([format!("@{server}"), "-p".into(), port.to_string(), "+tries=1".into(), "+time=2".into()])
        .args(["+nocmd", "+nostats", "+noquestion"])
        .args(args)
        .output()
        .expect("run dig (bind9-dnsutils)");
    parse(&String::from_utf8_lossy(&output.stdout))
}

pub fn dig(server: std::net::SocketAddr, args: &[&str]) -> Dig {
    dig_with(Command::new("dig"), &server.ip().to_string(), server.port(), args)
}

/// Parses dig's default output. Record lines are normalised to `name TTL CLASS TYPE rdata` with single spaces.
pub fn parse(text: &str) -> Dig {
    let mut dig = Dig { raw: text.to_string(), ..Dig::default() };
    let mut section = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<-") {
            dig.status = rest.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("").to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags:") {
            dig.flags = rest.split(';').next().unwrap_or("").split_whitespace().map(str::to_string).collect();
        } else if line.starts_with(";; ANSWER SECTION") {
            section = Some(0);
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = Some(1);
        } else if line.starts_with(";; ADDITIONAL SECTION") {
            section = Some(2);
        } else if line.trim().is_empty() || line.starts_with(';') {
            if line.trim().is_empty() {
                section = None;
            }
        } else if let Some(index) = section {
            let record = line.split_whitespace().collect::<Vec<_>>().join(" ");
            match index {
                0 => dig.answer.push(record),
                1 => dig.authority.push(record),
                _ => dig.additional.push(record),
            }
        }
    }
    dig
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_dig_output() {
        let out = ";; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n;; flags: qr aa rd; QUERY: 1, ANSWER: 1\n\n;; OPT PSEUDOSECTION:\n; EDNS: version: 0\n\n;; ANSWER SECTION:\nnode.prom.local.\t300\tIN\tSRV\t10 100 9100 a.node.prom.local.\n\n;; ADDITIONAL SECTION:\na.node.prom.local. 300 IN A 10.0.0.1\n";
        let dig = super::parse(out);
        assert_eq!(dig.status, "NOERROR");
        assert!(dig.has_flag("aa"));
        assert_eq!(dig.answer, ["node.prom.local. 300 IN SRV 10 100 9100 a.node.prom.local."]);
        assert_eq!(dig.additional, ["a.node.prom.local. 300 IN A 10.0.0.1"]);
    }
}
