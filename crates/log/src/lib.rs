//! Log lines as every Prometheus component writes them, so the tools that read node_exporter's and
//! Prometheus's logs read promsd's: logfmt by default,
//! `ts=2026-12-01T17:23:07.789Z level=info caller=follow.rs:99 msg="serving DNS" key=value`, or with
//! `--log.format=json` one JSON object per line with the same keys. One line per event, never colour. The
//! level can be changed while the process runs ([`LevelHandle`]), which dnsd's SIGHUP does.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Registry, reload};

/// `--log.format`, as Prometheus components name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Logfmt,
    Json,
}

/// Changes the level of the running process.
#[derive(Clone)]
pub struct LevelHandle(reload::Handle<LevelFilter, Registry>);

impl LevelHandle {
    pub fn set(&self, level: Level) {
        let _ = self.0.reload(LevelFilter::from_level(level));
    }
}

/// Installs the process's logger: `format` to stderr, from `level` up.
pub fn init(format: LogFormat, level: Level) -> LevelHandle {
    let (filter, handle) = reload::Layer::new(LevelFilter::from_level(level));
    let lines =
        tracing_subscriber::fmt::layer().with_ansi(false).with_writer(std::io::stderr).event_format(Lines(format));
    tracing_subscriber::registry().with(filter).with(lines).init();
    LevelHandle(handle)
}

struct Lines(LogFormat);

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let metadata = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let file = metadata.file().map(|f| f.rsplit('/').next().unwrap_or(f));
        let caller = match (file, metadata.line()) {
            (Some(file), Some(line)) => format!("{file}:{line}"),
            (Some(file), None) => file.to_string(),
            _ => metadata.target().to_string(),
        };
        let mut pairs = vec![
            ("ts", timestamp(SystemTime::now())),
            ("level", level_name(*metadata.level()).to_string()),
            ("caller", caller),
            ("msg", fields.message),
        ];
        pairs.extend(fields.others);
        writer.write_str(&render(self.0, &pairs))?;
        writer.write_char('\n')
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "debug",
    }
}

/// One line in `format` from key-value pairs in order.
fn render(format: LogFormat, pairs: &[(&str, String)]) -> String {
    match format {
        LogFormat::Logfmt => {
            let mut line = String::new();
            for (i, (key, value)) in pairs.iter().enumerate() {
                if i > 0 {
                    line.push(' ');
                }
                line.push_str(key);
                line.push('=');
                push_logfmt_value(&mut line, value);
            }
            line
        }
        LogFormat::Json => {
            let object: serde_json::Map<String, serde_json::Value> =
                pairs.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone()))).collect();
            serde_json::Value::Object(object).to_string()
        }
    }
}

/// A value bare when it can be, else quoted with `"` and `\` escaped and control characters written as
/// escapes, so a value never breaks the line (go-logfmt's rules).
fn push_logfmt_value(line: &mut String, value: &str) {
    let bare = !value.is_empty() && !value.chars().any(|c| c <= ' ' || c == '=' || c == '"' || c == '\u{7f}');
    if bare {
        line.push_str(value);
        return;
    }
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(line, "\\u{:04x}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// The event's message and its other fields, each as text.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, format!("{value:?}"));
    }
}

impl Fields {
    fn set(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            // `ts`, `level`, `caller` and `msg` are the line's own: a field of that name gets a prefix.
            name @ ("ts" | "level" | "caller" | "msg") => self.others.push((prefixed(name), value)),
            name => self.others.push((name, value)),
        }
    }
}

fn prefixed(name: &'static str) -> &'static str {
    match name {
        "ts" => "field_ts",
        "level" => "field_level",
        "caller" => "field_caller",
        _ => "field_msg",
    }
}

/// RFC 3339 in UTC with milliseconds, as Prometheus writes `ts`.
fn timestamp(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = promsd_buildinfo::civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_796_145_787_789);
        assert_eq!(timestamp(t), "2026-12-01T17:23:07.789Z");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn logfmt_quotes_only_what_needs_it_and_never_breaks_the_line() {
        let pairs = [
            ("level", "info".to_string()),
            ("msg", "serving DNS".to_string()),
            ("empty", String::new()),
            ("tricky", "a=b \"c\"\nd\\".to_string()),
            ("addr", "127.0.0.1:53".to_string()),
        ];
        assert_eq!(
            render(LogFormat::Logfmt, &pairs),
            r#"level=info msg="serving DNS" empty="" tricky="a=b \"c\"\nd\\" addr=127.0.0.1:53"#
        );
        let json: serde_json::Value = serde_json::from_str(&render(LogFormat::Json, &pairs)).expect("json");
        assert_eq!(json["msg"], "serving DNS");
        assert_eq!(json["tricky"], "a=b \"c\"\nd\\");
    }
}
