//! What a record tells Prometheus beyond host and port, for dnsd's http_sd endpoint: its own labels and how
//! its target is scraped (`scheme`, `metrics_path`, `params`). Stored as promsd's own fields of the SkyDNS
//! value, which CoreDNS and external-dns ignore (both decode with Go's encoding/json, which skips unknown
//! fields). Names and values are checked as Prometheus checks them: a writer refuses what Prometheus would
//! reject, and a reader serves a record whose fields are broken without them.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("label {0:?}: expected NAME=VALUE")]
    NotAPair(String),
    #[error("label name {0:?} must match [a-zA-Z_][a-zA-Z0-9_]*")]
    BadName(String),
    #[error("label name {0:?} starts with \"__\", which Prometheus reserves for itself")]
    Reserved(String),
    #[error("label {0:?} is given twice")]
    Duplicate(String),
    #[error("labels: not a map of label names to strings")]
    NotAMap,
    #[error("param name {0:?} must match [a-zA-Z0-9_]+")]
    BadParam(String),
    #[error("params: not a map of parameter names to strings")]
    ParamsNotAMap,
    #[error("metrics_path {0:?} must start with '/'")]
    MetricsPath(String),
    #[error("scheme {0:?} must be http or https")]
    Scheme(String),
    #[error("{0}: not a string")]
    NotAString(&'static str),
}

/// A field of the value that may hold anything: a wrong type never fails the whole record (its host and
/// port still answer DNS), it only makes the field [`Lenient::Invalid`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Lenient<T> {
    #[default]
    Absent,
    Valid(T),
    /// Present but not of the type the field needs.
    Invalid,
}

impl<T> Lenient<T> {
    pub fn is_absent_or_invalid(&self) -> bool {
        !matches!(self, Self::Valid(_))
    }

    pub fn get(&self) -> Option<&T> {
        match self {
            Self::Valid(value) => Some(value),
            Self::Absent | Self::Invalid => None,
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        if value.is_null() {
            return Ok(Self::Absent);
        }
        Ok(serde_json::from_value(value).map_or(Self::Invalid, Self::Valid))
    }
}

/// Only a valid value is written (the field is skipped otherwise, see [`Lenient::is_absent_or_invalid`]).
impl<T: Serialize> Serialize for Lenient<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Valid(value) => value.serialize(serializer),
            Self::Absent | Self::Invalid => serializer.serialize_none(),
        }
    }
}

/// Names and values, sorted by name, each name once: a record's labels or params. Kept as one boxed slice,
/// a few bytes beside its strings, since every record of a fleet may carry some (a map would cost more than
/// the rest of the record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs(Box<[(Box<str>, Box<str>)]>);

impl Pairs {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|(n, v)| (&**n, &**v))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|(n, _)| (**n).cmp(name)).ok().map(|i| &*self.0[i].1)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.iter().map(|(n, _)| &**n)
    }
}

/// From a map: sorted, each name once. Later pairs of one name replace earlier ones.
impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Pairs {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> Self {
        let map: BTreeMap<String, String> = pairs.into_iter().map(|(n, v)| (n.into(), v.into())).collect();
        Self(map.into_iter().map(|(n, v)| (n.into_boxed_str(), v.into_boxed_str())).collect())
    }
}

impl Serialize for Pairs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(BTreeMap::<String, String>::deserialize(deserializer)?.into_iter().collect())
    }
}

/// Label names as Prometheus 2 accepts them: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A label a record may carry: a valid name without the `__` Prometheus keeps for its own labels.
pub fn validate_label_name(name: &str) -> Result<(), LabelError> {
    if !is_label_name(name) {
        return Err(LabelError::BadName(name.to_string()));
    }
    if name.starts_with("__") {
        return Err(LabelError::Reserved(name.to_string()));
    }
    Ok(())
}

/// One `NAME=VALUE` (`--label`), its name checked; only the first `=` separates.
pub fn parse_pair(text: &str) -> Result<(String, String), LabelError> {
    let (name, value) = text.split_once('=').ok_or_else(|| LabelError::NotAPair(text.to_string()))?;
    validate_label_name(name)?;
    Ok((name.to_string(), value.to_string()))
}

/// Labels, refusing bad names and names given twice.
pub fn collect(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Pairs, LabelError> {
    let mut labels = BTreeMap::new();
    for (name, value) in pairs {
        validate_label_name(&name)?;
        if labels.contains_key(&name) {
            return Err(LabelError::Duplicate(name));
        }
        labels.insert(name, value);
    }
    Ok(labels.into_iter().collect())
}

/// Every name checked with [`validate_label_name`].
pub fn validate_labels<'a>(mut names: impl Iterator<Item = &'a str>) -> Result<(), LabelError> {
    names.try_for_each(validate_label_name)
}

/// A parameter name, which becomes the label `__param_<name>`.
pub fn validate_param_name(name: &str) -> Result<(), LabelError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(LabelError::BadParam(name.to_string()));
    }
    Ok(())
}

pub fn validate_metrics_path(path: &str) -> Result<(), LabelError> {
    if !path.starts_with('/') || path.chars().any(char::is_control) {
        return Err(LabelError::MetricsPath(path.to_string()));
    }
    Ok(())
}

pub fn validate_scheme(scheme: &str) -> Result<(), LabelError> {
    match scheme {
        "http" | "https" => Ok(()),
        _ => Err(LabelError::Scheme(scheme.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_follow_prometheus() {
        for good in ["env", "_x", "rack_1", "A"] {
            assert_eq!(validate_label_name(good), Ok(()), "{good}");
        }
        for bad in ["", "1x", "a-b", "a.b", "é", "a b"] {
            assert_eq!(validate_label_name(bad), Err(LabelError::BadName(bad.into())), "{bad}");
        }
        assert_eq!(validate_label_name("__address__"), Err(LabelError::Reserved("__address__".into())));
    }

    #[test]
    fn pairs_become_labels() {
        let pairs = ["env=prod", "team=db=x", "empty="].map(|p| parse_pair(p).expect("valid"));
        let labels = collect(pairs).expect("valid");
        assert_eq!(labels.get("env"), Some("prod"));
        assert_eq!(labels.get("team"), Some("db=x"), "only the first '=' separates");
        assert_eq!(labels.get("empty"), Some(""));
        assert_eq!(labels.names().collect::<Vec<_>>(), ["empty", "env", "team"]);
        assert_eq!(parse_pair("env"), Err(LabelError::NotAPair("env".into())));
        assert_eq!(parse_pair("__x=1"), Err(LabelError::Reserved("__x".into())));
        let twice = [("a", "1"), ("a", "2")].map(|(n, v)| (n.to_string(), v.to_string()));
        assert_eq!(collect(twice), Err(LabelError::Duplicate("a".into())));
    }

    #[test]
    fn lenient_fields_never_fail_the_value() {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Value {
            labels: Lenient<Pairs>,
        }
        let parse = |json: &str| serde_json::from_str::<Value>(json).expect("parses").labels;
        assert_eq!(parse("{}"), Lenient::Absent);
        assert_eq!(parse(r#"{"labels":null}"#), Lenient::Absent);
        assert_eq!(
            parse(r#"{"labels":{"b":"2","a":"1"}}"#),
            Lenient::Valid(Pairs::from_iter([("a", "1"), ("b", "2")]))
        );
        for broken in [r#"{"labels":["a"]}"#, r#"{"labels":{"a":1}}"#, r#"{"labels":"a=b"}"#] {
            assert_eq!(parse(broken), Lenient::Invalid, "{broken}");
        }
    }

    #[test]
    fn scrape_settings_are_checked() {
        assert!(validate_metrics_path("/proxy").is_ok());
        assert!(validate_metrics_path("proxy").is_err());
        assert!(validate_scheme("https").is_ok());
        assert!(validate_scheme("ftp").is_err());
        assert!(validate_param_name("module").is_ok());
        assert!(validate_param_name("a-b").is_err());
    }
}
