//! A strict check that an exporter's output is Prometheus text format (0.0.4) or OpenMetrics, so a broken
//! exporter gives a clear 502 instead of a scrape that fails somewhere else. It checks the line grammar,
//! not semantics (type/sample consistency), which is what breaks a scrape.

use thiserror::Error;

/// Why a body is not valid exposition format. The proxy answers 502 with this text, so it names the line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    #[error("output is not UTF-8")]
    NotUtf8(#[source] std::str::Utf8Error),
    #[error("OpenMetrics output does not end with # EOF")]
    MissingEof,
    /// `line` counts from 1.
    #[error("line {line}: {kind}")]
    Line { line: usize, kind: LineError },
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineError {
    #[error("content after # EOF")]
    AfterEof,
    #[error("empty lines are not allowed in OpenMetrics")]
    Empty,
    #[error("invalid metric name {name:?} in a # {keyword} line")]
    CommentName { keyword: String, name: String },
    /// `text` is the sample line, cut to 120 characters, so the message shows what the exporter sent.
    #[error("{kind}: {text:?}")]
    Sample { kind: SampleError, text: String },
}

/// What is wrong with a sample line (`name{labels} value [timestamp]`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SampleError {
    #[error("no value")]
    NoValue,
    #[error("invalid metric name")]
    MetricName,
    #[error("expected a space before the value")]
    NoSpace,
    #[error("invalid value {0:?}")]
    Value(String),
    #[error("invalid timestamp {0:?}")]
    Timestamp(String),
    #[error("unexpected text after the timestamp")]
    AfterTimestamp,
    #[error("exemplar without labels")]
    ExemplarWithoutLabels,
    #[error("invalid exemplar value")]
    ExemplarValue,
    #[error("label without '='")]
    LabelWithoutEquals,
    #[error("invalid label name {0:?}")]
    LabelName(String),
    #[error("label value not quoted")]
    LabelNotQuoted,
    #[error("invalid escape in a label value")]
    LabelEscape,
    #[error("unterminated label value")]
    UnterminatedLabel,
}

/// Checks `body`; `openmetrics` when the exporter declared `application/openmetrics-text`.
pub fn verify(body: &[u8], openmetrics: bool) -> Result<(), FormatError> {
    let text = std::str::from_utf8(body).map_err(FormatError::NotUtf8)?;
    let mut saw_eof = false;
    for (index, line) in text.lines().enumerate() {
        let at = |kind| FormatError::Line { line: index + 1, kind };
        if saw_eof {
            return Err(at(LineError::AfterEof));
        }
        if line.is_empty() {
            if openmetrics {
                return Err(at(LineError::Empty));
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if openmetrics && comment == " EOF" {
                saw_eof = true;
            }
            check_comment(comment).map_err(at)?;
            continue;
        }
        check_sample(line, openmetrics).map_err(|kind| at(LineError::Sample { kind, text: truncate(line) }))?;
    }
    if openmetrics && !saw_eof {
        return Err(FormatError::MissingEof);
    }
    Ok(())
}

fn truncate(line: &str) -> String {
    line.chars().take(120).collect()
}

fn check_comment(comment: &str) -> Result<(), LineError> {
    let mut words = comment.trim_start().splitn(3, ' ');
    match words.next() {
        Some(keyword @ ("HELP" | "TYPE" | "UNIT")) => {
            let name = words.next().unwrap_or_default();
            if !is_metric_name(name) {
                return Err(LineError::CommentName { keyword: keyword.to_string(), name: name.to_string() });
            }
            Ok(())
        }
        _ => Ok(()), // other comments are free text
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name{label="value",...} value [timestamp]` (OpenMetrics may add ` # {labels} value [timestamp]`).
fn check_sample(line: &str, openmetrics: bool) -> Result<(), SampleError> {
    let name_end = line.find(['{', ' ']).ok_or(SampleError::NoValue)?;
    if !is_metric_name(&line[..name_end]) {
        return Err(SampleError::MetricName);
    }
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        rest = labels(&rest[1..])?;
    }
    let rest = rest.strip_prefix(' ').ok_or(SampleError::NoSpace)?;
    let (sample, exemplar) = match rest.split_once(" # ") {
        Some((sample, exemplar)) if openmetrics => (sample, Some(exemplar)),
        _ => (rest, None),
    };
    let mut fields = sample.split(' ');
    let value = fields.next().ok_or(SampleError::NoValue)?;
    if !is_value(value) {
        return Err(SampleError::Value(value.to_string()));
    }
    if let Some(timestamp) = fields.next()
        && timestamp.parse::<f64>().is_err()
    {
        return Err(SampleError::Timestamp(timestamp.to_string()));
    }
    if fields.next().is_some() {
        return Err(SampleError::AfterTimestamp);
    }
    if let Some(exemplar) = exemplar {
        let after = labels(exemplar.strip_prefix('{').ok_or(SampleError::ExemplarWithoutLabels)?)?;
        let value = after.trim_start().split(' ').next().unwrap_or_default();
        if !is_value(value) {
            return Err(SampleError::ExemplarValue);
        }
    }
    Ok(())
}

fn is_value(value: &str) -> bool {
    matches!(value, "+Inf" | "-Inf" | "Inf" | "NaN") || value.parse::<f64>().is_ok()
}

/// Parses `a="x",b="y"}` and returns what follows the closing brace.
fn labels(mut rest: &str) -> Result<&str, SampleError> {
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let eq = rest.find('=').ok_or(SampleError::LabelWithoutEquals)?;
        let name = rest[..eq].trim();
        if !is_label_name(name) {
            return Err(SampleError::LabelName(name.to_string()));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or(SampleError::LabelNotQuoted)?;
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\' | '"' | 'n')) => {}
                    _ => return Err(SampleError::LabelEscape),
                },
                Some((i, '"')) => break i,
                Some(_) => {}
                None => return Err(SampleError::UnterminatedLabel),
            }
        };
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').map(str::trim_start).unwrap_or(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::verify;

    #[test]
    fn accepts_both_formats() {
        let text = "# HELP up Whether up.\n# TYPE up gauge\nup 1\nhttp_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\nx{path=\"a,b=c\\\"d\"} +Inf\n\n";
        assert_eq!(verify(text.as_bytes(), false), Ok(()));
        let om = "# TYPE foo counter\n# HELP foo A counter.\nfoo_total 17.0 1520879607.789 # {id=\"c0ffee\"} 0.67 1520879600\n# EOF\n";
        assert_eq!(verify(om.as_bytes(), true), Ok(()));
    }

    #[test]
    fn rejects_garbage_with_the_line() {
        for (body, openmetrics, expected) in [
            ("up 1\n<html>oops</html>\n", false, "line 2"),
            ("up{a=\"1\" 1\n", false, "line 1"),
            ("up one\n", false, "invalid value"),
            ("9up 1\n", false, "invalid metric name"),
            ("foo 1\n", true, "# EOF"),
            ("foo 1\n# EOF\nbar 2\n", true, "after # EOF"),
            ("up{a=\"\\x\"} 1\n", false, "escape"),
        ] {
            let error = verify(body.as_bytes(), openmetrics).expect_err(body).to_string();
            assert!(error.contains(expected), "{body:?}: {error}");
        }
        assert!(verify(&[0xff, 0xfe], false).is_err());
    }

    /// The 502 body quotes these, so their wording is kept as it was when they were plain strings.
    #[test]
    fn messages_name_the_line_and_quote_it() {
        for (body, openmetrics, expected) in [
            ("up one\n", false, "line 1: invalid value \"one\": \"up one\""),
            ("up 1\n# TYPE 9x gauge\n", false, "line 2: invalid metric name \"9x\" in a # TYPE line"),
            ("up 1\n\n", true, "line 2: empty lines are not allowed in OpenMetrics"),
            ("up 1\n", true, "OpenMetrics output does not end with # EOF"),
        ] {
            assert_eq!(verify(body.as_bytes(), openmetrics).map_err(|e| e.to_string()), Err(expected.to_string()));
        }
        assert_eq!(verify(&[0xff], false).map_err(|e| e.to_string()), Err("output is not UTF-8".to_string()));
    }
}
