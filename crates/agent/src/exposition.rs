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
    #[error("invalid escape in a # HELP line (only \\\\ and \\n)")]
    HelpEscape,
    #[error("unknown metric type {0:?} in a # TYPE line")]
    UnknownType(String),
    #[error("the last line does not end with a newline")]
    NoNewline,
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
    #[error("blank or tab at the end of the line")]
    TrailingBlank,
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
    #[error("label value is not UTF-8")]
    LabelNotUtf8,
    #[error("duplicate label name {0:?}")]
    DuplicateLabel(String),
    #[error("label name __name__ is reserved")]
    ReservedLabel,
    #[error("expected ',' or '}}' after a label value")]
    LabelSeparator,
}

/// Checks `body`; `openmetrics` when the exporter declared `application/openmetrics-text`.
pub fn verify(body: &[u8], openmetrics: bool) -> Result<(), FormatError> {
    if openmetrics { verify_openmetrics(body) } else { verify_text(body) }
}

/// OpenMetrics: single spaces only, no empty lines, `# EOF` last.
fn verify_openmetrics(body: &[u8]) -> Result<(), FormatError> {
    let text = std::str::from_utf8(body).map_err(FormatError::NotUtf8)?;
    let mut saw_eof = false;
    for (index, line) in text.lines().enumerate() {
        let at = |kind| FormatError::Line { line: index + 1, kind };
        if saw_eof {
            return Err(at(LineError::AfterEof));
        }
        if line.is_empty() {
            return Err(at(LineError::Empty));
        }
        if let Some(comment) = line.strip_prefix('#') {
            if comment == " EOF" {
                saw_eof = true;
            }
            check_comment(comment).map_err(at)?;
            continue;
        }
        check_sample(line).map_err(|kind| at(LineError::Sample { kind, text: truncate(line) }))?;
    }
    if !saw_eof {
        return Err(FormatError::MissingEof);
    }
    Ok(())
}

/// Text format 0.0.4 as Prometheus' Go parser (expfmt, behind `promtool check metrics`) reads it: one pass over
/// the bytes, no allocation unless there is an error. Blanks and tabs may repeat wherever one is allowed, but
/// none may trail a value or timestamp; every line ends with `\n` (so CRLF fails); only label values must be
/// UTF-8 (comments are bytes to the peer). Rules that need state across lines (a second TYPE or HELP for a
/// family, TYPE after its samples, `le`/`quantile` values of histograms/summaries) are not checked: they are
/// semantics, and Prometheus' scrape accepts them.
fn verify_text(body: &[u8]) -> Result<(), FormatError> {
    let mut start = 0;
    let mut line = 0;
    while start < body.len() {
        line += 1;
        // The peer skips leading blanks on every line, before a sample or a `#`.
        let i = skip_blanks(body, start);
        let next = match body.get(i) {
            None => return Ok(()), // blanks without a newline at the very end are nothing
            Some(b'\n') => i + 1,
            Some(b'#') => text_comment(body, i + 1).map_err(|kind| FormatError::Line { line, kind })?,
            Some(_) => text_sample(body, i).map_err(|kind| sample_error(body, start, line, kind))?,
        };
        if next > body.len() {
            // The line ended at the end of the body, not at a newline: the peer reads that as a cut-off body.
            return Err(FormatError::Line { line, kind: LineError::NoNewline });
        }
        start = next;
    }
    Ok(())
}

/// Only errors pay for the line's text. A line that is not even a metric name and not UTF-8 is binary output.
fn sample_error(body: &[u8], start: usize, line: usize, kind: SampleError) -> FormatError {
    let text = &body[start..line_end(body, start)];
    match std::str::from_utf8(text) {
        Err(error) if kind == SampleError::MetricName => FormatError::NotUtf8(error),
        _ => {
            FormatError::Line { line, kind: LineError::Sample { kind, text: truncate(&String::from_utf8_lossy(text)) } }
        }
    }
}

fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

fn skip_blanks(body: &[u8], mut i: usize) -> usize {
    while body.get(i).is_some_and(|&b| is_blank(b)) {
        i += 1;
    }
    i
}

/// Index of the `\n` ending the line at `i`, or the body's length.
fn line_end(body: &[u8], i: usize) -> usize {
    body[i..].iter().position(|&b| b == b'\n').map_or(body.len(), |at| i + at)
}

fn at_line_end(body: &[u8], i: usize) -> bool {
    body.get(i).is_none_or(|&b| b == b'\n')
}

/// End of the token at `i`: the peer's tokens run to the next blank, tab or newline.
fn token_end(body: &[u8], mut i: usize) -> usize {
    while body.get(i).is_some_and(|&b| !is_blank(b) && b != b'\n') {
        i += 1;
    }
    i
}

fn metric_name_end(body: &[u8], mut i: usize) -> usize {
    if body.get(i).is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_' || b == b':') {
        i += 1;
        while body.get(i).is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
            i += 1;
        }
    }
    i
}

fn label_name_end(body: &[u8], mut i: usize) -> usize {
    if body.get(i).is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_') {
        i += 1;
        while body.get(i).is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_') {
            i += 1;
        }
    }
    i
}

/// `i` is just after the `#`. Returns where the next line starts.
fn text_comment(body: &[u8], i: usize) -> Result<usize, LineError> {
    let keyword_start = skip_blanks(body, i);
    let mut i = token_end(body, keyword_start);
    let keyword = match &body[keyword_start..i] {
        b"HELP" => "HELP",
        b"TYPE" => "TYPE",
        _ => return Ok(line_end(body, i) + 1), // other comments are free text
    };
    // `# HELP` or `# TYPE x` with nothing after it says nothing, which the peer lets pass.
    if at_line_end(body, i) {
        return Ok(i + 1);
    }
    let name_start = skip_blanks(body, i);
    i = metric_name_end(body, name_start);
    if at_line_end(body, i) {
        return Ok(i + 1);
    }
    if !is_blank(body[i]) {
        let name = String::from_utf8_lossy(&body[name_start..token_end(body, name_start)]).into_owned();
        return Err(LineError::CommentName { keyword: keyword.to_string(), name });
    }
    i = skip_blanks(body, i);
    if keyword == "HELP" {
        // The docstring's only escapes are `\\` and `\n`.
        while let Some(&byte) = body.get(i) {
            match byte {
                b'\n' => break,
                b'\\' if matches!(body.get(i + 1), Some(b'\\' | b'n')) => i += 2,
                b'\\' => return Err(LineError::HelpEscape),
                _ => i += 1,
            }
        }
        return Ok(i + 1);
    }
    let end = line_end(body, i);
    let word = &body[i..end];
    // The rest of the line, blanks included, must name a type; case does not matter to the peer. An empty
    // rest (`# TYPE x ` then the newline) passes, as it does there.
    const TYPES: [&[u8]; 6] = [b"counter", b"gauge", b"histogram", b"summary", b"untyped", b"gauge_histogram"];
    if !word.is_empty() && !TYPES.iter().any(|t| t.eq_ignore_ascii_case(word)) {
        return Err(LineError::UnknownType(String::from_utf8_lossy(word).into_owned()));
    }
    Ok(end + 1)
}

/// `name [{labels}] value [timestamp]` starting at `i`, with blanks or tabs between the parts (none needed
/// before the value after `}`, as for the peer). Returns where the next line starts.
fn text_sample(body: &[u8], start: usize) -> Result<usize, SampleError> {
    let mut i = metric_name_end(body, start);
    if i == start {
        return Err(SampleError::MetricName);
    }
    i = skip_blanks(body, i);
    if body.get(i) == Some(&b'{') {
        i = skip_blanks(body, text_labels(body, i + 1)?);
    }
    let value_start = i;
    i = token_end(body, i);
    if i == value_start {
        return Err(SampleError::NoValue);
    }
    if !is_go_float(&body[value_start..i]) {
        return Err(SampleError::Value(String::from_utf8_lossy(&body[value_start..i]).into_owned()));
    }
    if at_line_end(body, i) {
        return Ok(i + 1);
    }
    let timestamp_start = skip_blanks(body, i);
    i = token_end(body, timestamp_start);
    if i == timestamp_start {
        return Err(SampleError::TrailingBlank);
    }
    let timestamp = &body[timestamp_start..i];
    if std::str::from_utf8(timestamp).ok().and_then(|t| t.parse::<i64>().ok()).is_none() {
        return Err(SampleError::Timestamp(String::from_utf8_lossy(timestamp).into_owned()));
    }
    if at_line_end(body, i) {
        return Ok(i + 1);
    }
    if at_line_end(body, skip_blanks(body, i)) {
        Err(SampleError::TrailingBlank)
    } else {
        Err(SampleError::AfterTimestamp)
    }
}
/// `label = "value" , ...}` after the `{`, blanks allowed around every part and a trailing comma too.
/// Returns the index after the `}`.
fn text_labels(body: &[u8], open: usize) -> Result<usize, SampleError> {
    let mut i = open;
    loop {
        i = skip_blanks(body, i);
        if body.get(i) == Some(&b'}') {
            return Ok(i + 1);
        }
        let name_start = i;
        i = label_name_end(body, i);
        let name = &body[name_start..i];
        if name.is_empty() {
            let end = name_start + body[name_start..].iter().take_while(|&&b| !b"=,}\n".contains(&b)).count();
            return Err(SampleError::LabelName(String::from_utf8_lossy(&body[name_start..end]).into_owned()));
        }
        if name == b"__name__" {
            return Err(SampleError::ReservedLabel);
        }
        if has_label(&body[open..name_start], name) {
            return Err(SampleError::DuplicateLabel(String::from_utf8_lossy(name).into_owned()));
        }
        i = skip_blanks(body, i);
        if body.get(i) != Some(&b'=') {
            return Err(SampleError::LabelWithoutEquals);
        }
        i = skip_blanks(body, i + 1);
        if body.get(i) != Some(&b'"') {
            return Err(SampleError::LabelNotQuoted);
        }
        let value_start = i + 1;
        i = label_value_end(body, value_start)?;
        // Only label values must be UTF-8; checking just those (and only if not ASCII) keeps it one pass.
        let value = &body[value_start..i];
        if !value.is_ascii() && std::str::from_utf8(value).is_err() {
            return Err(SampleError::LabelNotUtf8);
        }
        i = skip_blanks(body, i + 1);
        match body.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(i + 1),
            _ => return Err(SampleError::LabelSeparator),
        }
    }
}

/// Index of the closing quote of the label value starting at `i`; the escapes are `\\`, `\"` and `\n`.
fn label_value_end(body: &[u8], mut i: usize) -> Result<usize, SampleError> {
    loop {
        match body.get(i) {
            Some(b'"') => return Ok(i),
            Some(b'\\') => match body.get(i + 1) {
                Some(b'\\' | b'"' | b'n') => i += 2,
                _ => return Err(SampleError::LabelEscape),
            },
            None | Some(b'\n') => return Err(SampleError::UnterminatedLabel),
            Some(_) => i += 1,
        }
    }
}

/// Whether `labels` (labels already checked, up to the current one) has `name`. Lines have few labels, so
/// scanning them again is cheaper than keeping a set, and allocates nothing.
fn has_label(labels: &[u8], name: &[u8]) -> bool {
    let mut i = 0;
    while i < labels.len() {
        let start = skip_blanks(labels, i);
        let end = label_name_end(labels, start);
        if &labels[start..end] == name {
            return true;
        }
        // Checked already: `= "value"`, then blanks and a comma.
        let Some(quote) = labels[end..].iter().position(|&b| b == b'"') else { return false };
        match label_value_end(labels, end + quote + 1) {
            Ok(close) => i = close + 1 + labels[close + 1..].iter().take_while(|&&b| b != b',').count() + 1,
            Err(_) => return false,
        }
    }
    false
}

/// A value as Go's `strconv.ParseFloat` reads it, without the `p` (hex) exponent and `_` that the peer
/// refuses: a sign is allowed before `Inf` but not before `NaN`, and an overflow to infinity is an error.
fn is_go_float(token: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(token) else { return false };
    let unsigned = text.strip_prefix(['+', '-']);
    if unsigned.is_some_and(|u| u.starts_with(['n', 'N'])) {
        return false;
    }
    match text.parse::<f64>() {
        Ok(value) if value.is_infinite() => {
            let word = unsigned.unwrap_or(text);
            word.eq_ignore_ascii_case("inf") || word.eq_ignore_ascii_case("infinity")
        }
        Ok(_) => true,
        Err(_) => false,
    }
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
fn check_sample(line: &str) -> Result<(), SampleError> {
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
        Some((sample, exemplar)) => (sample, Some(exemplar)),
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

    /// Text-format samples with the verdict of `promtool check metrics` (2.42, Debian's `prometheus` package) on
    /// parsing, lint warnings aside, and a reason where `verify` deliberately differs ("" when it agrees).
    /// `matches_promtool` keeps the middle column true to the real peer.
    const CORPUS: &[(&[u8], bool, &str)] = &[
        // Blanks and tabs: any run where one is allowed, leading blanks too, none trailing.
        (b"up 1\n", true, ""),
        (b"up  1\n", true, ""),
        (b"up\t1\n", true, ""),
        (b"up \t 1\n", true, ""),
        (b"up{a=\"1\"}  1\n", true, ""),
        (b"up{a=\"1\"}\t1\n", true, ""),
        (b"up{a=\"1\"}1\n", true, ""),
        (b"up {a=\"1\"} 1\n", true, ""),
        (b"up\t{a=\"1\"} 1\n", true, ""),
        (b"up-1\n", true, ""), // the name ends at '-', and "-1" is the value
        (b"up 1  123\n", true, ""),
        (b"up 1\t123\n", true, ""),
        (b"up{a=\"1\"}   \t 1  \t 5\n", true, ""),
        (b"  up 1\n", true, ""),
        (b"\tup 1\n", true, ""),
        (b"  # HELP up x\nup 1\n", true, ""),
        (b"up 1 \n", false, ""),
        (b"up 1 \t\n", false, ""),
        (b"up 1 123 \n", false, ""),
        (b"up \n", false, ""),
        (b"up{a=\"1\"} \n", false, ""),
        // Blank lines, the end of the body.
        (b"", true, ""),
        (b"\n", true, ""),
        (b"\n\n", true, ""),
        (b"  \n", true, ""),
        (b"up 1\n\n\nup2 2\n", true, ""),
        (b"up 1\n  \n", true, ""),
        (b"up 1\n \t", true, ""), // blanks after the last newline are no line
        (b"up 1", false, ""),
        (b"#", false, ""),
        (b"# foo", false, ""),
        (b"# HELP up a\\", false, ""),
        (b"up 1\r\n", false, ""), // "1\r" is not a number
        (b"# HELP up x\r\nup 1\n", true, ""),
        // Timestamps: a decimal int64.
        (b"up 1 -5\n", true, ""),
        (b"up 1 +5\n", true, ""),
        (b"up 1 -0\n", true, ""),
        (b"up 1 1.5\n", false, ""),
        (b"up 1 1e3\n", false, ""),
        (b"up 1 -\n", false, ""),
        (b"up 1 99999999999999999999\n", false, ""),
        (b"up{a=\"1\"} 1 2 3\n", false, ""),
        // Values: Go's ParseFloat without hex or '_'.
        (b"up NaN\n", true, ""),
        (b"up nan\n", true, ""),
        (b"up +Inf\n", true, ""),
        (b"up -Inf\n", true, ""),
        (b"up Inf\n", true, ""),
        (b"up inf\n", true, ""),
        (b"up infinity\n", true, ""),
        (b"up +Infinity\n", true, ""),
        (b"up +NaN\n", false, ""),
        (b"up -nan\n", false, ""),
        (b"up infin\n", false, ""),
        (b"up 0x1p-2\n", false, ""),
        (b"up 0x10\n", false, ""),
        (b"up 0X10\n", false, ""),
        (b"up 1_000\n", false, ""),
        (b"up 1e400\n", false, ""), // overflow is an error in Go
        (b"up 1.8e308\n", false, ""),
        (b"up 1.7976931348623158e308\n", true, ""),
        (b"up 1e-400\n", true, ""), // underflow to 0 is not
        (b"up .5\n", true, ""),
        (b"up 5.\n", true, ""),
        (b"up 1E5\n", true, ""),
        (b"up 1e+5\n", true, ""),
        (b"up +1\n", true, ""),
        (b"up -0\n", true, ""),
        (b"up 0123\n", true, ""),
        (b"up 1e\n", false, ""),
        (b"up one\n", false, ""),
        (b"up\n", false, ""),
        (b"up{a=\"1\"}\n", false, ""),
        // Labels.
        (b"up{} 1\n", true, ""),
        (b"up{ } 1\n", true, ""),
        (b"up{a=\"1\",} 1\n", true, ""),
        (b"up{,} 1\n", false, ""),
        (b"up{ a = \"1\" , b = \"2\" } 1\n", true, ""),
        (b"up{a=\"1\"\t,\tb=\"2\"\t}\t1\n", true, ""),
        (b"up{a=\"1\" b=\"2\"} 1\n", false, ""),
        (b"up{a=\"1\",,b=\"2\"} 1\n", false, ""),
        (b"up{a=\"1\",a=\"2\"} 1\n", false, ""),
        (b"up{a=\"1\",b=\"2\",a=\"3\"} 1\n", false, ""),
        (
            b"up{a=\"1\",b=\"2\",c=\"3\",d=\"4\",e=\"5\",f=\"6\",g=\"7\",h=\"8\",i=\"9\",j=\"10\",a=\"11\"} 1\n",
            false,
            "",
        ),
        (b"up{le=\"1\",le=\"2\"} 1\n", false, ""),
        (b"up{__name__=\"x\"} 1\n", false, ""),
        (b"up{__x=\"1\"} 1\n", true, ""),
        (b"up{1a=\"x\"} 1\n", false, ""),
        (b"up{:a=\"1\"} 1\n", false, ""),
        (b"up{a=1} 1\n", false, ""),
        (b"up{a} 1\n", false, ""),
        (b"up{a=\"1\n", false, ""),
        (b"up{a=\"1\" 1\n", false, ""),
        (b"up{a=\"1\"}{b=\"2\"} 1\n", false, ""),
        (b"up{a=\"=,}\"} 1\n", true, ""),
        (b"up{a=\"\"} 1\n", true, ""),
        (b"up{a=\"x\ty\"} 1\n", true, ""),
        // Label value escapes: \\, \" and \n only.
        (b"up{a=\"\\\\ \\\" \\n\"} 1\n", true, ""),
        (b"up{a=\"\\x\"} 1\n", false, ""),
        (b"up{a=\"\\\n", false, ""),
        // UTF-8: label values must be, comments need not.
        (b"up{a=\"\xc3\xa9\xe2\x82\xac\"} 1\n", true, ""),
        (b"up{a=\"\xff\"} 1\n", false, ""),
        (b"up{a=\"\xe2\x82\"} 1\n", false, ""),
        (b"up{\xc3\xa9=\"1\"} 1\n", false, ""),
        (b"# HELP up \xff\nup 1\n", true, ""),
        (b"# \xff\nup 1\n", true, ""),
        (b"\xff 1\n", false, ""),
        (b"up 1\n\xff\n", false, ""),
        (b"\xef\xbb\xbfup 1\n", false, ""), // a byte-order mark
        (b"up 1\n\x00\n", false, ""),
        // Metric names.
        (b"a:b:c 1\n", true, ""),
        (b":x 1\n", true, ""),
        (b"9up 1\n", false, ""),
        // Comments, HELP and TYPE.
        (b"#\n", true, ""),
        (b"# foo bar\nup 1\n", true, ""),
        (b"# HELP\n", true, ""),
        (b"# HELP up\n", true, ""),
        (b"# HELP up \n", true, ""),
        (b"# HELP up   \nup 1\n", true, ""),
        (b"# TYPE up\n", true, ""),
        (b"# TYPE up \n", true, ""),
        (b"#HELP up x\nup 1\n", true, ""),
        (b"#  TYPE up gauge\nup 1\n", true, ""),
        (b"#\tTYPE\tup\tgauge\nup 1\n", true, ""),
        (b"# TYPE  up  gauge\nup 1\n", true, ""),
        (b"# HELP 9x y\n", false, ""),
        (b"# TYPE 9x gauge\n", false, ""),
        (b"# HELP x-y z\n", false, ""),
        (b"# HELP up a \\\\ b \\n c\nup 1\n", true, ""),
        (b"# HELP up a \\\" b\nup 1\n", false, ""), // \" is a label-value escape only
        (b"# HELP up a \\x b\nup 1\n", false, ""),
        (b"# HELP up \\\n", false, ""),
        (b"# TYPE up bogus\nup 1\n", false, ""),
        (b"# TYPE up Counter\nup 1\n", true, ""),
        (b"# TYPE up GAUGE\nup 1\n", true, ""),
        (b"# TYPE up untyped\nup 1\n", true, ""),
        (b"# TYPE up gauge_histogram\nup 1\n", true, ""),
        (b"# TYPE up gaugehistogram\nup 1\n", false, ""), // OpenMetrics' spelling
        (b"# TYPE up gauge \nup 1\n", false, ""),
        (b"# TYPE up gauge\tx\nup 1\n", false, ""),
        (b"# EOF\n", true, ""),
        (b"up 1\n# EOF\nup2 1\n", true, ""),
        (b"# HELP up x\n# TYPE up counter\nup 1\n# HELP up_total y\n", true, ""),
        // Rules across lines: the Go parser keeps every family, verify keeps nothing from line to line.
        (
            b"up 1\n# TYPE up gauge\n",
            false,
            "TYPE after the samples is a rule across lines; Prometheus' scrape accepts it",
        ),
        (
            b"# TYPE up gauge\n# TYPE up gauge\nup 1\n",
            false,
            "a second TYPE is a rule across lines; Prometheus' scrape accepts it",
        ),
        (
            b"# HELP up a\n# HELP up b\nup 1\n",
            false,
            "a second HELP is a rule across lines; Prometheus' scrape accepts it",
        ),
        // Histograms and summaries.
        (b"# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n", true, ""),
        (b"# TYPE h histogram\nh_bucket 1\n", true, ""),
        (
            b"# TYPE h histogram\nh_bucket{le=\"x\"} 1\n",
            false,
            "le must be a number only in a family TYPEd histogram, a rule across lines; Prometheus keeps it as a label",
        ),
        (
            b"# TYPE h histogram\nh_bucket{le=\"1\",le=\"2\"} 1\n",
            true,
            "the Go parser drops a histogram's le from the labels so sees no duplicate; Prometheus' TSDB refuses it",
        ),
        (b"# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 3\ns_count 2\n", true, ""),
        (
            b"# TYPE s summary\ns{quantile=\"x\"} 1\n",
            false,
            "quantile must be a number only in a family TYPEd summary, a rule across lines; Prometheus keeps it as a label",
        ),
        (
            b"# TYPE s summary\ns{quantile=\"1\",quantile=\"2\"} 1\n",
            true,
            "the Go parser drops a summary's quantile from the labels so sees no duplicate; Prometheus' TSDB refuses it",
        ),
        // Not metrics at all.
        (b"<html><body>oops</body></html>\n", false, ""),
        (b"   ", true, ""),
    ];

    /// What verify should say: promtool's verdict unless a reason says otherwise.
    fn expected(accepted: bool, differs: &str) -> bool {
        accepted == differs.is_empty()
    }

    fn show(body: &[u8]) -> String {
        format!("{:?}", String::from_utf8_lossy(body))
    }

    #[test]
    fn corpus_verdicts() {
        for &(body, accepted, differs) in CORPUS {
            let verdict = verify(body, false);
            assert_eq!(verdict.is_ok(), expected(accepted, differs), "{}: {verdict:?}", show(body));
        }
    }

    /// Parse verdict of `promtool check metrics`: exit 0 is clean, 3 is lint problems only (parsed fine), 1 with
    /// "error while linting" is a parse error.
    fn promtool_accepts(body: &[u8]) -> bool {
        let (code, printed) = promsd_tests::promtool(&["check", "metrics"], body);
        match code {
            Some(0 | 3) => true,
            Some(1) if printed.contains("error while linting") => false,
            _ => panic!("promtool: unexpected exit {code:?} on {}: {printed}", show(body)),
        }
    }

    #[test]
    fn matches_promtool() {
        for &(body, accepted, differs) in CORPUS {
            assert_eq!(promtool_accepts(body), accepted, "promtool's verdict on {} changed", show(body));
            assert_eq!(verify(body, false).is_ok(), expected(accepted, differs), "verify on {}", show(body));
        }
    }
}
