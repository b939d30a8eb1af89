//! Durations written the way Prometheus, etcdctl and Go (`time.ParseDuration`, as exporter_exporter's and
//! CoreDNS's files take them) write them: `500ms`, `1.5s`, `10s`, `5m`, `1m30s`, `1h30m`, `2d`, `250us`.

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
    #[error("invalid duration {0:?}: missing unit (ns, us, ms, s, m, h, d)")]
    MissingUnit(String),
    #[error("invalid duration {text:?}: unknown unit {unit:?}")]
    UnknownUnit { text: String, unit: String },
    #[error("invalid duration {0:?}: too large")]
    TooLarge(String),
}

/// Parses `1h30m`, `10s`, `1.5s`, `250ms`; a bare number means seconds (as CoreDNS's `min-lease-ttl 30`
/// does). Go's units (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`) and fractions are taken as Go takes them, plus
/// `d` (Prometheus's day); a sign is not (no duration here is negative).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let too_large = || DurationError::TooLarge(text.to_string());
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !is_number(c)).unwrap_or(rest.len());
        let (whole, fraction) = rest[..number_len].split_once('.').unwrap_or((&rest[..number_len], ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(DurationError::NoNumber(text.to_string()));
        }
        rest = &rest[number_len..];
        let unit_len = rest.find(is_number).unwrap_or(rest.len());
        let nanos: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "" => return Err(DurationError::MissingUnit(text.to_string())),
            other => return Err(DurationError::UnknownUnit { text: text.to_string(), unit: other.to_string() }),
        };
        rest = &rest[unit_len..];
        let number = |digits: &str| -> Result<u128, DurationError> {
            if digits.is_empty() {
                return Ok(0);
            }
            digits.parse().map_err(|_| DurationError::NumberTooLarge(text.to_string()))
        };
        // Digits past nanosecond precision change nothing (Go drops them too).
        let fraction = &fraction[..fraction.len().min(30)];
        let scale = 10u128.pow(u32::try_from(fraction.len()).unwrap_or(30));
        let part = number(whole)?.checked_mul(nanos).ok_or_else(too_large)?
            + number(fraction)?.checked_mul(nanos).ok_or_else(too_large)? / scale;
        total = total.checked_add(part).ok_or_else(too_large)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| too_large())?;
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| too_large())?;
    Ok(Duration::new(secs, nanos))
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

    /// What Go's `time.ParseDuration` (exporter_exporter's `timeout`, CoreDNS's options) accepts.
    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("2h45m0.5s"), Ok(Duration::from_millis(9_900_500)));
        assert_eq!(parse_duration("1.000000001s"), Ok(Duration::new(1, 1)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("10ns"), Ok(Duration::from_nanos(10)));
        assert_eq!(parse_duration("0.1m"), Ok(Duration::from_secs(6)));
        for bad in [".s", "1..5s", "1.5.5s", "-1s", "1.5", "99999999999999999999999999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
