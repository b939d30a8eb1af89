//! What a promsd agent serves, sent with each poll in the `Promsd-Announce` header: its modules and their
//! labels, and the port its targets are listed with. PushProx's proxy ignores the header; promsd's gateway
//! lists each announced module as its own target in `/clients` and in etcd.

use std::collections::BTreeMap;

use http::HeaderName;
use serde::{Deserialize, Serialize};

pub const ANNOUNCE: HeaderName = HeaderName::from_static("promsd-announce");

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// The port of the agent's targets (`<fqdn>:<port>`); the agent answers on any, it only names them.
    pub port: u16,
    pub modules: BTreeMap<String, AnnouncedModule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncedModule {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `https` when the agent's own port has TLS (informational: scrapes come through the gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}

impl Announce {
    /// JSON with every non-ASCII character escaped, so the header value is plain ASCII.
    pub fn to_header(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        let mut out = String::with_capacity(json.len());
        for c in json.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out
    }

    pub fn from_header(value: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_ascii_and_reads_back() {
        let mut announce = Announce { port: 9998, ..Announce::default() };
        let labels = BTreeMap::from([("site".to_string(), "Zürich 🏔".to_string())]);
        announce.modules.insert("node".into(), AnnouncedModule { labels, scheme: None });
        let header = announce.to_header();
        assert!(header.is_ascii(), "{header}");
        assert!(http::HeaderValue::from_str(&header).is_ok());
        assert_eq!(Announce::from_header(header.as_bytes()).expect("reads"), announce);
        assert!(Announce::from_header(b"{not json").is_err());
    }
}
