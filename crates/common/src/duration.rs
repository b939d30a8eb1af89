//! Durations written the way Prometheus and etcdctl flags take them: `500ms`, `10s`, `5m`, `1h30m`, `2d`.

use std::time::Duration;

use thiserror::Error;

/// Why a duration flag or setting cannot be read; the message quotes the text and says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration {0:?}: expected a number before the unit")]
    NoNumber(String),
    #[error("invalid duration {0:?}: number too large")]
    NumberTooLarge(String),
    #[error("invalid duration {0:?}: missing unit (ms, s, m, h, d)")]
    MissingUnit(String),
    #[error("invalid duration {text:?}: unknown unit {unit:?}")]
    UnknownUnit { text: String, unit: String },
    #[error("invalid duration {0:?}: too large")]
    TooLarge(String),
}

/// Parses `1h30m`, `10s`, `250ms`; a bare number means seconds (as CoreDNS's `min-lease-ttl 30` does).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let too_large = || DurationError::TooLarge(text.to_string());
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::NoNumber(text.to_string()));
        }
        let value: u64 = rest[..digits].parse().map_err(|_| DurationError::NumberTooLarge(text.to_string()))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86400),
            "" => return Err(DurationError::MissingUnit(text.to_string())),
            other => return Err(DurationError::UnknownUnit { text: text.to_string(), unit: other.to_string() }),
        };
        rest = &rest[unit_len..];
        let part = unit.checked_mul(u32::try_from(value).map_err(|_| too_large())?).ok_or_else(too_large)?;
        total = total.checked_add(part).ok_or_else(too_large)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_style_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10").is_ok());
        assert!(parse_duration("10x").unwrap_err().to_string().contains("unknown unit"));
        assert!(parse_duration("5m3").unwrap_err().to_string().contains("missing unit"));
    }
}
