//! A strict check that an exporter's output is Prometheus text format (0.0.4) or OpenMetrics, so a broken
//! exporter gives a clear 502 instead of a scrape that fails somewhere else. It checks the line grammar,
//! not semantics (type/sample consistency), which is what breaks a scrape.

/// Checks `body`; `openmetrics` when the exporter declared `application/openmetrics-text`.
pub fn verify(body: &[u8], openmetrics: bool) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|_| "output is not UTF-8".to_string())?;
    let mut saw_eof = false;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if saw_eof {
            return Err(format!("line {number}: content after # EOF"));
        }
        if line.is_empty() {
            if openmetrics {
                return Err(format!("line {number}: empty lines are not allowed in OpenMetrics"));
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if openmetrics && comment == " EOF" {
                saw_eof = true;
            }
            check_comment(comment).map_err(|e| format!("line {number}: {e}"))?;
            continue;
        }
        check_sample(line, openmetrics).map_err(|e| format!("line {number}: {e}: {:?}", truncate(line)))?;
    }
    if openmetrics && !saw_eof {
        return Err("OpenMetrics output does not end with # EOF".into());
    }
    Ok(())
}

fn truncate(line: &str) -> String {
    line.chars().take(120).collect()
}

fn check_comment(comment: &str) -> Result<(), String> {
    let mut words = comment.trim_start().splitn(3, ' ');
    match words.next() {
        Some("HELP") | Some("TYPE") | Some("UNIT") => {
            let name = words.next().unwrap_or_default();
            if !is_metric_name(name) {
                return Err(format!(
                    "invalid metric name {name:?} in a # {} line",
                    comment.trim_start().split(' ').next().unwrap_or("")
                ));
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
fn check_sample(line: &str, openmetrics: bool) -> Result<(), String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    if !is_metric_name(&line[..name_end]) {
        return Err("invalid metric name".into());
    }
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        rest = labels(&rest[1..])?;
    }
    let rest = rest.strip_prefix(' ').ok_or("expected a space before the value")?;
    let (sample, exemplar) = match rest.split_once(" # ") {
        Some((sample, exemplar)) if openmetrics => (sample, Some(exemplar)),
        _ => (rest, None),
    };
    let mut fields = sample.split(' ');
    let value = fields.next().ok_or("no value")?;
    if !is_value(value) {
        return Err(format!("invalid value {value:?}"));
    }
    if let Some(timestamp) = fields.next()
        && timestamp.parse::<f64>().is_err()
    {
        return Err(format!("invalid timestamp {timestamp:?}"));
    }
    if fields.next().is_some() {
        return Err("unexpected text after the timestamp".into());
    }
    if let Some(exemplar) = exemplar {
        let after = labels(exemplar.strip_prefix('{').ok_or("exemplar without labels")?)?;
        let value = after.trim_start().split(' ').next().unwrap_or_default();
        if !is_value(value) {
            return Err("invalid exemplar value".into());
        }
    }
    Ok(())
}

fn is_value(value: &str) -> bool {
    matches!(value, "+Inf" | "-Inf" | "Inf" | "NaN") || value.parse::<f64>().is_ok()
}

/// Parses `a="x",b="y"}` and returns what follows the closing brace.
fn labels(mut rest: &str) -> Result<&str, String> {
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = rest[..eq].trim();
        if !is_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\' | '"' | 'n')) => {}
                    _ => return Err("invalid escape in a label value".into()),
                },
                Some((i, '"')) => break i,
                Some(_) => {}
                None => return Err("unterminated label value".into()),
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
            let error = verify(body.as_bytes(), openmetrics).expect_err(body);
            assert!(error.contains(expected), "{body:?}: {error}");
        }
        assert!(verify(&[0xff, 0xfe], false).is_err());
    }
}
