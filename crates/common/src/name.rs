//! The SkyDNS mapping between DNS names and etcd keys: `node.prom.local` under `/skydns` is
//! `/skydns/local/prom/node`. Unlike CoreDNS, any number of path segments works (`/skydns/ka2`).

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{what} {value:?} is empty")]
    Empty { what: &'static str, value: String },
    #[error("{what} {value:?}: label {label:?} is longer than 63 bytes")]
    LabelTooLong { what: &'static str, value: String, label: String },
    #[error("{what} {value:?}: label {label:?} may only hold letters, digits, '-' and '_'")]
    BadLabel { what: &'static str, value: String, label: String },
    #[error("{what} {value:?} is longer than 253 bytes")]
    NameTooLong { what: &'static str, value: String },
    #[error("{what} {value:?} must be a single label (no dots)")]
    NotALabel { what: &'static str, value: String },
    #[error("path {0:?} must start with '/'")]
    RelativePath(String),
}

/// The etcd key prefix all records live under, e.g. `/skydns`. Kept without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// `/skydns`, `/skydns/`, `skydns` all give `/skydns` (CoreDNS accepts a path without the leading slash).
    pub fn new(path: &str) -> Self {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if segments.is_empty() { Self(String::new()) } else { Self(format!("/{}", segments.join("/"))) }
    }

    /// The prefix as a key; empty for the root path `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What a prefix range read or watch asks for: the prefix with a trailing `/`.
    pub fn range_prefix(&self) -> String {
        format!("{}/", self.0)
    }

    /// The key for `name` (any case, trailing dot optional): labels reversed below the prefix, lowercased.
    pub fn key_for_name(&self, name: &str) -> String {
        let name = name.trim_end_matches('.');
        let mut key = self.0.clone();
        if !name.is_empty() {
            for label in name.rsplit('.') {
                key.push('/');
                key.extend(label.chars().map(|c| c.to_ascii_lowercase()));
            }
        }
        key
    }

    /// The DNS name (no trailing dot) for `key`, or None when the key is not below this prefix.
    pub fn name_for_key(&self, key: &str) -> Option<String> {
        let rest = key.strip_prefix(&self.0)?.strip_prefix('/')?;
        if rest.is_empty() {
            return None;
        }
        let labels: Vec<&str> = rest.split('/').rev().collect();
        Some(labels.join("."))
    }
}

/// Checks a DNS name written by a user (`prom.local`, `node.a`): non-empty labels of letters, digits, `-`, `_`.
pub fn validate_name(what: &'static str, value: &str) -> Result<(), NameError> {
    let name = value.strip_suffix('.').unwrap_or(value);
    if name.is_empty() {
        return Err(NameError::Empty { what, value: value.into() });
    }
    if name.len() > 253 {
        return Err(NameError::NameTooLong { what, value: value.into() });
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameError::Empty { what: "label in name", value: value.into() });
        }
        if label.len() > 63 {
            return Err(NameError::LabelTooLong { what, value: value.into(), label: label.into() });
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(NameError::BadLabel { what, value: value.into(), label: label.into() });
        }
    }
    Ok(())
}

/// Checks a single DNS label, such as an instance name.
pub fn validate_label(what: &'static str, value: &str) -> Result<(), NameError> {
    if value.contains('.') {
        return Err(NameError::NotALabel { what, value: value.into() });
    }
    validate_name(what, value)
}

/// Checks a key prefix given by the user: it must be absolute.
pub fn validate_path(value: &str) -> Result<(), NameError> {
    if value.starts_with('/') { Ok(()) } else { Err(NameError::RelativePath(value.into())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_names_to_keys_and_back() {
        let p = KeyPrefix::new("/skydns");
        assert_eq!(p.key_for_name("Node.Prom.Local."), "/skydns/local/prom/node");
        assert_eq!(p.name_for_key("/skydns/local/prom/node/server01").as_deref(), Some("server01.node.prom.local"));
        assert_eq!(p.name_for_key("/other/local"), None);
        assert_eq!(p.name_for_key("/skydnsx/local"), None);
        assert_eq!(KeyPrefix::new("skydns/").as_str(), "/skydns");
    }

    #[test]
    fn multi_segment_paths_round_trip() {
        let p = KeyPrefix::new("/skydns/ka2");
        let key = p.key_for_name("a.example.org");
        assert_eq!(key, "/skydns/ka2/org/example/a");
        assert_eq!(p.name_for_key(&key).as_deref(), Some("a.example.org"));
        let root = KeyPrefix::new("/");
        assert_eq!(root.key_for_name("a.b"), "/b/a");
        assert_eq!(root.name_for_key("/b/a").as_deref(), Some("a.b"));
    }

    #[test]
    fn validates_names() {
        assert!(validate_name("zone", "prom.local").is_ok());
        assert!(validate_name("service", "_etcd-client._tcp").is_ok());
        assert!(matches!(validate_name("zone", "a..b"), Err(NameError::Empty { .. })));
        assert!(matches!(validate_name("zone", "a b"), Err(NameError::BadLabel { .. })));
        assert!(matches!(validate_label("instance", "a.b"), Err(NameError::NotALabel { .. })));
        assert!(matches!(validate_name("zone", &"x".repeat(64)), Err(NameError::LabelTooLong { .. })));
    }
}
