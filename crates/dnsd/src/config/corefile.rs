//! Reads a CoreDNS Corefile, so a server moving from CoreDNS + `etcd` runs dnsd with the file it has.
//! Server blocks `ZONE[:PORT] ... { ... }` with `etcd` (all of its options), `errors`, `log`, `prometheus`,
//! `health`, `ready` and `transfer { to ADDRESS... }`. Anything else is an error naming the file, line and directive: a setting that is
//! silently ignored is a setting that silently does not work.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use promsd_common::duration::parse_duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CorefileError {
    #[error("cannot read Corefile {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Syntax { path: PathBuf, line: usize, message: String },
}

/// What a Corefile sets, for the flags to override.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileSettings {
    pub zones: Vec<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub endpoints: Vec<String>,
    pub credentials: Option<(String, String)>,
    pub tls: Option<TlsFiles>,
    pub min_lease_ttl: Option<Duration>,
    pub max_lease_ttl: Option<Duration>,
    pub fallthrough: Option<Vec<String>>,
    pub log_queries: bool,
    /// The `debug` plugin: log at debug level (CoreDNS's debug plugin turns its debug messages on).
    pub debug: bool,
    pub metrics: Option<SocketAddr>,
    pub health: Option<SocketAddr>,
    pub ready: Option<SocketAddr>,
    /// The `transfer` plugin's `to` addresses: `*`, an IP (NOTIFY to its port 53), IP:PORT, or a network.
    pub transfer_to: Vec<String>,
}

/// `tls [CERT [KEY [CA]]]`: one argument is the CA, two the client pair, three all of them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    text: String,
    line: usize,
}

#[derive(Debug)]
struct Directive {
    name: String,
    args: Vec<String>,
    line: usize,
    block: Vec<Directive>,
}

pub fn load(path: &Path) -> Result<FileSettings, CorefileError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| CorefileError::Read { path: path.to_path_buf(), source })?;
    parse(&text, path)
}

pub fn parse(text: &str, path: &Path) -> Result<FileSettings, CorefileError> {
    let err = |line: usize, message: String| CorefileError::Syntax { path: path.to_path_buf(), line, message };
    let tokens = tokenize(text).map_err(|(line, message)| err(line, message))?;
    let mut settings = FileSettings::default();
    let mut etcd_seen: Option<(usize, String)> = None;
    let mut pos = 0;
    if tokens.is_empty() {
        return Err(err(1, "the Corefile has no server block".into()));
    }
    while pos < tokens.len() {
        // Server block keys up to `{`.
        let start_line = tokens[pos].line;
        let mut keys = Vec::new();
        while pos < tokens.len() && tokens[pos].text != "{" {
            if tokens[pos].text == "}" {
                return Err(err(tokens[pos].line, "unexpected '}'".into()));
            }
            keys.push(tokens[pos].clone());
            pos += 1;
        }
        if pos == tokens.len() {
            return Err(err(start_line, "server block without '{'".into()));
        }
        pos += 1;
        let (directives, next) = parse_block(&tokens, pos, &err)?;
        pos = next;
        let mut block_zones = Vec::new();
        for key in &keys {
            let (zone, port) = server_key(&key.text, key.line, &err)?;
            if let Some(port) = port {
                match settings.port {
                    Some(existing) if existing != port => {
                        return Err(err(
                            key.line,
                            format!("dnsd serves one DNS port; blocks use {existing} and {port}"),
                        ));
                    }
                    _ => settings.port = Some(port),
                }
            }
            block_zones.push(zone);
        }
        let mut has_etcd = false;
        for directive in directives {
            let line = directive.line;
            match directive.name.as_str() {
                "etcd" => {
                    has_etcd = true;
                    let described =
                        format!("{:?}", (&directive.block.iter().map(|d| (&d.name, &d.args)).collect::<Vec<_>>()));
                    if let Some((first, seen)) = &etcd_seen
                        && *seen != described
                    {
                        return Err(err(
                            line,
                            format!("etcd settings differ from those on line {first}; dnsd follows one etcd"),
                        ));
                    }
                    etcd_seen = Some((line, described));
                    let zones = if directive.args.is_empty() { block_zones.clone() } else { directive.args.clone() };
                    for zone in zones {
                        let zone = zone.trim_end_matches('.').to_string();
                        if !settings.zones.contains(&zone) {
                            settings.zones.push(zone);
                        }
                    }
                    etcd_options(&directive.block, &mut settings, &err)?;
                }
                "errors" => no_args(&directive, &err)?,
                "debug" => {
                    no_args(&directive, &err)?;
                    settings.debug = true;
                }
                "log" => {
                    no_args(&directive, &err)?;
                    settings.log_queries = true;
                }
                "prometheus" => settings.metrics = Some(address(&directive, "localhost:9153", &err)?),
                "health" => settings.health = Some(address(&directive, ":8080", &err)?),
                "ready" => settings.ready = Some(address(&directive, ":8181", &err)?),
                "transfer" => transfer(&directive, &mut settings, &err)?,
                other => {
                    return Err(err(
                        line,
                        format!(
                            "directive {other:?} is not supported by dnsd (supported: etcd, errors, log, debug, prometheus, health, ready, transfer)"
                        ),
                    ));
                }
            }
        }
        if !has_etcd {
            return Err(err(
                start_line,
                "server block has no etcd directive: dnsd would have nothing to answer".into(),
            ));
        }
    }
    Ok(settings)
}

fn parse_block<E>(tokens: &[Token], mut pos: usize, err: &E) -> Result<(Vec<Directive>, usize), CorefileError>
where
    E: Fn(usize, String) -> CorefileError,
{
    let mut directives = Vec::new();
    loop {
        let Some(token) = tokens.get(pos) else {
            let line = tokens.last().map(|t| t.line).unwrap_or(1);
            return Err(err(line, "missing '}'".into()));
        };
        if token.text == "}" {
            return Ok((directives, pos + 1));
        }
        if token.text == "{" {
            return Err(err(token.line, "unexpected '{'".into()));
        }
        let line = token.line;
        let name = token.text.clone();
        pos += 1;
        let mut args = Vec::new();
        while let Some(t) = tokens.get(pos)
            && t.line == line
            && t.text != "{"
            && t.text != "}"
        {
            args.push(t.text.clone());
            pos += 1;
        }
        let mut block = Vec::new();
        if let Some(t) = tokens.get(pos)
            && t.text == "{"
            && t.line == line
        {
            let (inner, next) = parse_block(tokens, pos + 1, err)?;
            block = inner;
            pos = next;
        }
        directives.push(Directive { name, args, line, block });
    }
}

fn etcd_options<E>(options: &[Directive], settings: &mut FileSettings, err: &E) -> Result<(), CorefileError>
where
    E: Fn(usize, String) -> CorefileError,
{
    for option in options {
        let line = option.line;
        let args = &option.args;
        let duration = |value: &str| parse_duration(value).map_err(|e| err(line, format!("{}: {e}", option.name)));
        match option.name.as_str() {
            "path" => match args.as_slice() {
                [path] => settings.path = Some(if path.starts_with('/') { path.clone() } else { format!("/{path}") }),
                _ => return Err(err(line, "path takes exactly one argument".into())),
            },
            "endpoint" => {
                if args.is_empty() {
                    return Err(err(line, "endpoint needs at least one URL".into()));
                }
                settings.endpoints.extend(args.iter().cloned());
            }
            "credentials" => match args.as_slice() {
                [user, password] => settings.credentials = Some((user.clone(), password.clone())),
                _ => return Err(err(line, "credentials takes exactly 2 arguments: USER PASSWORD".into())),
            },
            "tls" => {
                let path = |i: usize| args.get(i).map(PathBuf::from);
                settings.tls = Some(match args.len() {
                    0 => TlsFiles::default(),
                    1 => TlsFiles { ca: path(0), ..TlsFiles::default() },
                    2 => TlsFiles { cert: path(0), key: path(1), ca: None },
                    3 => TlsFiles { cert: path(0), key: path(1), ca: path(2) },
                    _ => return Err(err(line, "tls takes at most 3 arguments: CERT KEY CA".into())),
                });
            }
            "min-lease-ttl" | "max-lease-ttl" => {
                let [value] = args.as_slice() else {
                    return Err(err(line, format!("{} takes exactly one duration", option.name)));
                };
                let value = duration(value)?;
                if option.name == "min-lease-ttl" {
                    settings.min_lease_ttl = Some(value);
                } else {
                    settings.max_lease_ttl = Some(value);
                }
            }
            "fallthrough" => settings.fallthrough = Some(args.clone()),
            // Accepted and ignored by CoreDNS itself; dnsd does the same so such files keep working.
            "stubzones" | "debug" | "upstream" => {
                tracing::warn!(line, option = %option.name, "etcd option accepted and ignored, as CoreDNS does");
            }
            other => return Err(err(line, format!("unknown etcd property {other:?}"))),
        }
        if !option.block.is_empty() {
            return Err(err(line, format!("{} takes no block", option.name)));
        }
    }
    Ok(())
}

/// `transfer { to ADDRESS... }`, as CoreDNS's transfer plugin spells it, for every zone dnsd serves.
fn transfer<E>(directive: &Directive, settings: &mut FileSettings, err: &E) -> Result<(), CorefileError>
where
    E: Fn(usize, String) -> CorefileError,
{
    if !directive.args.is_empty() {
        let message = "transfer applies to every zone dnsd serves: give it without zones".to_string();
        return Err(err(directive.line, message));
    }
    if directive.block.is_empty() {
        return Err(err(directive.line, "transfer needs a block with `to ADDRESS...`".into()));
    }
    for option in &directive.block {
        match option.name.as_str() {
            "to" if !option.args.is_empty() => {
                for address in &option.args {
                    crate::transfer::parse_to(address).map_err(|message| err(option.line, message))?;
                    settings.transfer_to.push(address.clone());
                }
            }
            "to" => return Err(err(option.line, "to needs at least one address".into())),
            other => return Err(err(option.line, format!("unknown transfer property {other:?}"))),
        }
    }
    Ok(())
}

fn no_args<E>(directive: &Directive, err: &E) -> Result<(), CorefileError>
where
    E: Fn(usize, String) -> CorefileError,
{
    if directive.args.is_empty() && directive.block.is_empty() {
        Ok(())
    } else {
        Err(err(directive.line, format!("{} with arguments is not supported by dnsd", directive.name)))
    }
}

/// `:8080`, `localhost:9153`, `127.0.0.1:8181` as CoreDNS takes them.
fn address<E>(directive: &Directive, default: &str, err: &E) -> Result<SocketAddr, CorefileError>
where
    E: Fn(usize, String) -> CorefileError,
{
    if !directive.block.is_empty() || directive.args.len() > 1 {
        return Err(err(directive.line, format!("{} takes at most one address and no block", directive.name)));
    }
    let text = directive.args.first().map(String::as_str).unwrap_or(default);
    let bad = || err(directive.line, format!("{}: invalid address {text:?}", directive.name));
    // As the flags take them; beyond that, CoreDNS resolves host names, and so does dnsd.
    if let Ok(addr) = promsd_common::listen::parse_listen_address(text) {
        return Ok(addr);
    }
    if let Some((host, port)) = text.rsplit_once(':')
        && let Some([ipv4, _]) = promsd_common::localhost::loopback_for(host)
    {
        return Ok(SocketAddr::new(ipv4, port.parse().map_err(|_| bad())?));
    }
    let mut addrs = text.to_socket_addrs().map_err(|_| bad())?;
    addrs.find(|a| a.is_ipv4()).ok_or_else(bad)
}

/// `prom.local`, `prom.local:1053`, `dns://prom.local:53`, `.:53` (the root zone: every name).
fn server_key<E>(key: &str, line: usize, err: &E) -> Result<(String, Option<u16>), CorefileError>
where
    E: Fn(usize, String) -> CorefileError,
{
    let key = key.strip_prefix("dns://").unwrap_or(key);
    if key.contains("://") {
        return Err(err(line, format!("server address {key:?}: only plain DNS (dns://) is supported by dnsd")));
    }
    let (zone, port) = match key.rsplit_once(':') {
        Some((zone, port)) => {
            (zone, Some(port.parse::<u16>().map_err(|_| err(line, format!("invalid port in {key:?}")))?))
        }
        None => (key, None),
    };
    let zone = zone.trim_end_matches('.');
    Ok((if zone.is_empty() { ".".into() } else { zone.to_string() }, port))
}

/// Splits into tokens with their line numbers: words, quoted strings, `{` and `}`; `#` starts a comment;
/// `{$VAR}` is replaced by the environment variable, as CoreDNS does.
fn tokenize(text: &str) -> Result<Vec<Token>, (usize, String)> {
    let mut tokens = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let mut chars = raw.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
            } else if c == '#' {
                break;
            } else if c == '"' {
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.extend(chars.next()),
                        Some(c) => word.push(c),
                        None => return Err((line, "unterminated quoted string".into())),
                    }
                }
                tokens.push(Token { text: expand_env(&word), line });
            } else {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    word.push(c);
                    chars.next();
                    // `{$VAR}` is part of a word; a lone `{` or `}` is a token of its own.
                    if (c == '{' || c == '}') && word.len() == 1 && !matches!(chars.peek(), Some('$')) {
                        break;
                    }
                }
                tokens.push(Token { text: expand_env(&word), line });
            }
        }
    }
    Ok(tokens)
}

fn expand_env(word: &str) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(start) = rest.find("{$") {
        let Some(len) = rest[start..].find('}') else { break };
        out.push_str(&rest[..start]);
        out.push_str(&std::env::var(&rest[start + 2..start + len]).unwrap_or_default());
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<FileSettings, CorefileError> {
        parse(text, Path::new("Corefile"))
    }

    #[test]
    fn reads_the_seed_corefile() {
        let seed = "prom.local {\n    etcd prom.local {\n        path /skydns\n        endpoint http://localhost:2379\n    }\n    errors\n    log\n}\n";
        let settings = parse_str(seed).expect("seed Corefile");
        assert_eq!(settings.zones, ["prom.local"]);
        assert_eq!(settings.path.as_deref(), Some("/skydns"));
        assert_eq!(settings.endpoints, ["http://localhost:2379"]);
        assert!(settings.log_queries);
        assert_eq!(settings.port, None);
    }

    #[test]
    fn reads_every_etcd_option() {
        let text = r#"
# comment
prom.local:1053 10.0.0.0/24 {
    etcd {
        path skydns/ka2
        endpoint http://10.0.0.1:2379 http://10.0.0.2:2379
        credentials root "s3cret pass"
        tls cert.pem key.pem ca.pem
        min-lease-ttl 60
        max-lease-ttl 2h
        fallthrough
        stubzones
    }
    prometheus :9253
    health 127.0.0.1:8080
    ready
}
"#;
        let s = parse_str(text).expect("valid");
        assert_eq!(s.zones, ["prom.local", "10.0.0.0/24"]);
        assert_eq!(s.port, Some(1053));
        assert_eq!(s.path.as_deref(), Some("/skydns/ka2"));
        assert_eq!(s.endpoints.len(), 2);
        assert_eq!(s.credentials, Some(("root".into(), "s3cret pass".into())));
        assert_eq!(s.tls.as_ref().and_then(|t| t.ca.clone()), Some(PathBuf::from("ca.pem")));
        assert_eq!(s.min_lease_ttl, Some(Duration::from_secs(60)));
        assert_eq!(s.max_lease_ttl, Some(Duration::from_secs(7200)));
        assert_eq!(s.fallthrough, Some(vec![]));
        // `:PORT` is every address of both families, as the flags take it.
        assert_eq!(s.metrics, Some("[::]:9253".parse().expect("addr")));
        assert_eq!(s.health, Some("127.0.0.1:8080".parse().expect("addr")));
        assert_eq!(s.ready, Some("[::]:8181".parse().expect("addr")));
    }

    #[test]
    fn the_example_corefile_parses() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Corefile.example"));
        let settings = load(path).expect("Corefile.example is valid");
        assert_eq!(settings.zones, ["prom.local", "10.0.0.0/24"]);
        assert_eq!(settings.endpoints.len(), 3);
        assert_eq!(settings.port, Some(53));
    }

    #[test]
    fn reads_the_transfer_plugin() {
        let text = "prom.local {\n  etcd\n  transfer {\n    to 192.0.2.1 192.0.2.2:5300\n    to 10.0.0.0/8\n  }\n}\n";
        let settings = parse_str(text).expect("valid");
        assert_eq!(settings.transfer_to, ["192.0.2.1", "192.0.2.2:5300", "10.0.0.0/8"]);
        let (allow, notify) = crate::transfer::parse_to("192.0.2.2:5300").expect("valid");
        assert_eq!(
            (allow[0].to_string(), notify.map(|n| n.to_string())),
            ("192.0.2.2/32".into(), Some("192.0.2.2:5300".into()))
        );
        assert_eq!(crate::transfer::parse_to("192.0.2.1").expect("valid").1.map(|n| n.port()), Some(53));
        assert_eq!(crate::transfer::parse_to("*").expect("valid").0.len(), 2);
    }

    #[test]
    fn errors_name_the_file_line_and_directive() {
        let cases = [
            ("prom.local {\n  etcd\n  cache 30\n}\n", "Corefile:3: directive \"cache\" is not supported"),
            ("prom.local {\n  etcd {\n    bogus 1\n  }\n}\n", "Corefile:3: unknown etcd property \"bogus\""),
            ("prom.local {\n  etcd {\n    credentials a\n  }\n}\n", "Corefile:3: credentials takes exactly 2"),
            ("prom.local {\n  errors\n}\n", "Corefile:1: server block has no etcd"),
            ("prom.local {\n  etcd\n", "missing '}'"),
            ("a:53 {\n etcd\n}\nb:54 {\n etcd\n}\n", "Corefile:4: dnsd serves one DNS port"),
            ("tls://a {\n etcd\n}\n", "only plain DNS"),
            ("a {\n etcd {\n  min-lease-ttl 5x\n }\n}\n", "Corefile:3: min-lease-ttl"),
            ("a {\n etcd\n transfer {\n  to 10.0.0.300\n }\n}\n", "Corefile:4: to \"10.0.0.300\": expected *"),
            ("a {\n etcd\n transfer a {\n  to *\n }\n}\n", "Corefile:3: transfer applies to every zone"),
            ("a {\n etcd\n transfer {\n  from x\n }\n}\n", "Corefile:4: unknown transfer property \"from\""),
            ("a {\n etcd\n transfer\n}\n", "Corefile:3: transfer needs a block"),
        ];
        for (text, expected) in cases {
            let error = parse_str(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
