//! `registrar agent --config FILE`: the modules a host serves behind its one port, the way exporter_exporter
//! lists them, plus the etcd connection and what the host registers. Strict YAML: an unknown key is an
//! error naming the file, line and column.
//!
//! exporter_exporter 0.4's files are read unchanged: its `global` section (ignored, as it ignores it), its
//! `http.verify` and `http.tls_ca_cert_file`, Go durations (`1.5s`), a `path` without its leading `/`.
//! Without `etcd` and `address` the agent only proxies, as exporter_exporter does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use promsd_common::duration::parse_duration;
use promsd_common::{EtcdArgs, NameError};
use serde::{Deserialize, Deserializer};
use thiserror::Error;

/// Why the agent's configuration cannot be used; each names the file it is in (`--config` or a file in a
/// `--config.dirs` directory) and, for a module check, the module.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Not YAML, or an unknown or missing key: serde_norway's message names the line and column.
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: serde_norway::Error },
    #[error("{path}: {source}")]
    ModuleName { path: PathBuf, source: NameError },
    #[error("{path}: module {module}: method {method:?} needs its own section")]
    NoSection { path: PathBuf, module: String, method: Method },
    /// The module's TLS client cannot be built from its settings (a CA or key file that cannot be read).
    #[error("{path}: module {module}: {source}")]
    Tls { path: PathBuf, module: String, source: crate::backend::tls::TlsError },
    /// `dir` is the `--config.dirs` directory that defines `module` again.
    #[error("module {module} is defined twice (in {path} and {dir})")]
    Duplicate { module: String, path: PathBuf, dir: PathBuf },
    /// Half of what registering needs: `etcd` without `address`, or the other way round.
    #[error(
        "{path}: {given} is set but {missing} is not (registering needs both; without either the agent only proxies)"
    )]
    HalfRegistration { path: PathBuf, given: &'static str, missing: &'static str },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// exporter_exporter's (empty) `global` section: accepted and ignored, as exporter_exporter does.
    #[serde(default)]
    pub global: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub etcd: EtcdSection,
    /// Zone the modules are registered in, e.g. prom.local.
    pub zone: Option<String>,
    #[serde(default = "default_path")]
    pub path: String,
    pub base_path: Option<String>,
    /// The address Prometheus reaches this host's proxy at; without it (and `etcd`) nothing is registered.
    pub address: Option<String>,
    /// Instance name [default: the short host name].
    pub instance: Option<String>,
    /// Bind the registrations to an etcd lease of this TTL.
    #[serde(default, deserialize_with = "optional_duration")]
    pub lease_ttl: Option<Duration>,
    /// A static secret expected in a request header (as access gateways pass service tokens).
    pub token: Option<TokenConfig>,
    /// Labels of every module's target in dnsd's http_sd (a module's own `labels` win).
    #[serde(default, deserialize_with = "labels")]
    pub labels: BTreeMap<String, String>,
    /// Poll a gateway (promsd-gateway or a PushProx proxy) for scrapes; flags `--proxy-url`, `--proxy.*`
    /// override these.
    #[serde(default)]
    pub gateway: GatewaySection,
    #[serde(default)]
    pub modules: BTreeMap<String, ModuleConfig>,
}

/// `gateway:` in the agent's file: where to poll, as whom, with which credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// `--proxy-url`: the gateway's URL, e.g. https://gateway.example.org:8080/
    pub url: Option<String>,
    /// `--proxy.fqdn`: the name this host polls as, and Prometheus scrapes it by [default: the host's FQDN]
    pub fqdn: Option<String>,
    /// `--proxy.token-id`
    pub token_id: Option<String>,
    /// `--proxy.token-secret-file`: a file holding the token's secret (a trailing newline is ignored)
    pub token_secret_file: Option<PathBuf>,
    /// Header names for the token [default: CF-Access-Client-Id, CF-Access-Client-Secret]
    pub token_id_header: Option<String>,
    pub token_secret_header: Option<String>,
    /// `--proxy.cacert`, `--proxy.cert`, `--proxy.key`: TLS to an https gateway
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// The name the gateway's certificate is checked for [default: the URL's host]
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSection {
    #[serde(default)]
    pub endpoints: Vec<String>,
    pub discovery_srv: Option<String>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

/// A credential from the configuration: usable, but never shown by `Debug` (logs, error messages).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub header: String,
    pub value: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Http,
    Exec,
    File,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    /// The file the module is defined in, for messages.
    #[serde(skip)]
    pub defined_in: PathBuf,
    pub method: Method,
    #[serde(default, deserialize_with = "optional_duration")]
    pub timeout: Option<Duration>,
    /// Check the output parses as Prometheus text or OpenMetrics before passing it on (also `http.verify`,
    /// where exporter_exporter has it; `false` in either place turns it off).
    #[serde(default = "yes")]
    pub verify: bool,
    pub http: Option<Http>,
    pub exec: Option<ExecModule>,
    pub file: Option<FileModule>,
    /// Labels of this module's target in dnsd's http_sd.
    #[serde(default, deserialize_with = "labels")]
    pub labels: BTreeMap<String, String>,
}

/// What is wrong with an `http` section on its own. Raised while parsing, so the message names the module
/// and its line (`modules.node: ... at line 4 column 5`).
#[derive(Debug, Error)]
pub enum HttpSettingError {
    #[error("scheme {0:?} must be http or https")]
    Scheme(String),
    #[error("https needs tls_ca_file (or tls_insecure_skip_verify: true)")]
    HttpsWithoutCa,
    #[error("tls_cert_file and tls_key_file go together")]
    CertWithoutKey,
    /// TLS settings on a plain-http module would be silently ignored: the operator meant https.
    #[error("{0} is set but scheme is http (set scheme: https, or remove it)")]
    TlsWithoutHttps(&'static str),
    #[error("header {name:?}: {reason}")]
    Header { name: String, reason: &'static str },
}

/// An `http` section that passed [`HttpSettingError`]'s checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "HttpModule")]
pub struct Http(HttpModule);

impl std::ops::Deref for Http {
    type Target = HttpModule;
    fn deref(&self) -> &HttpModule {
        &self.0
    }
}

impl TryFrom<HttpModule> for Http {
    type Error = HttpSettingError;

    fn try_from(mut http: HttpModule) -> Result<Self, HttpSettingError> {
        if http.scheme != "http" && http.scheme != "https" {
            return Err(HttpSettingError::Scheme(http.scheme));
        }
        if http.scheme == "https" && http.tls_ca_file.is_none() && !http.tls_insecure_skip_verify {
            return Err(HttpSettingError::HttpsWithoutCa);
        }
        if http.tls_cert_file.is_some() != http.tls_key_file.is_some() {
            return Err(HttpSettingError::CertWithoutKey);
        }
        if http.scheme == "http" {
            let tls_settings = [
                ("tls_ca_file", http.tls_ca_file.is_some()),
                ("tls_cert_file", http.tls_cert_file.is_some()),
                ("tls_key_file", http.tls_key_file.is_some()),
                ("tls_insecure_skip_verify", http.tls_insecure_skip_verify),
                ("server_name", http.server_name.is_some()),
            ];
            if let Some((setting, _)) = tls_settings.into_iter().find(|(_, set)| *set) {
                return Err(HttpSettingError::TlsWithoutHttps(setting));
            }
        }
        for (name, value) in &http.headers {
            let reason = if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                Some("not a valid header name")
            } else if hyper::header::HeaderValue::from_str(value).is_err() {
                Some("not a valid header value")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(HttpSettingError::Header { name: name.clone(), reason });
            }
        }
        // exporter_exporter's own example has `path: probe`: the path is meant from the root. An empty one is
        // its default, as there.
        if http.path.is_empty() {
            http.path = metrics_path();
        } else if !http.path.starts_with('/') {
            http.path.insert(0, '/');
        }
        Ok(Self(http))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpModule {
    pub port: u16,
    #[serde(default = "localhost")]
    pub address: String,
    #[serde(default = "http")]
    pub scheme: String,
    #[serde(default = "metrics_path")]
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub basic_auth_username: Option<String>,
    pub basic_auth_password: Option<Secret>,
    /// For `scheme: https`: the CA that signs the exporter's certificate (else the system's store is not
    /// consulted: give one, or `tls_insecure_skip_verify`). `tls_ca_cert_file` is exporter_exporter's name.
    #[serde(alias = "tls_ca_cert_file")]
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate for exporters that require one.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_insecure_skip_verify: bool,
    /// The name to verify the exporter's certificate for [default: address].
    pub server_name: Option<String>,
    /// exporter_exporter's place for the module's `verify` (`false` skips checking the output).
    pub verify: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecModule {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModule {
    pub path: PathBuf,
}

fn default_path() -> String {
    "/skydns".into()
}
fn yes() -> bool {
    true
}
fn localhost() -> String {
    "localhost".into()
}
fn http() -> String {
    "http".into()
}
fn metrics_path() -> String {
    "/metrics".into()
}

fn optional_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(deserializer)?;
    text.map(|t| parse_duration(&t).map_err(serde::de::Error::custom)).transpose()
}

/// A `labels` map, its names checked as Prometheus checks them (the message names the line).
fn labels<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    let labels = BTreeMap::<String, String>::deserialize(deserializer)?;
    promsd_common::labels::validate_labels(labels.keys().map(String::as_str)).map_err(serde::de::Error::custom)?;
    Ok(labels)
}

/// `--config.dirs DIR`: every `NAME.yml` / `NAME.yaml` in DIR is the module NAME.
pub fn load_module_dir(dir: &Path) -> Result<Vec<(String, ModuleConfig)>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Read { path: dir.into(), source })?;
    let mut modules = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| ConfigError::Read { path: dir.into(), source })?.path();
        let (Some(stem), Some(ext)) =
            (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|e| e.to_str()))
        else {
            continue;
        };
        if ext != "yml" && ext != "yaml" {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        let mut module: ModuleConfig =
            serde_norway::from_str(&text).map_err(|source| ConfigError::Parse { path: path.clone(), source })?;
        module.defined_in = path.clone();
        check_module(&path, stem, &module)?;
        modules.push((stem.to_string(), module));
    }
    modules.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(modules)
}

/// `path` is the file the module is defined in, for the message.
fn check_module(path: &Path, name: &str, module: &ModuleConfig) -> Result<(), ConfigError> {
    promsd_common::name::validate_label("module", name)
        .map_err(|source| ConfigError::ModuleName { path: path.into(), source })?;
    let (path, module_name) = (path.to_path_buf(), name.to_string());
    let section = match module.method {
        Method::Http => module.http.is_some(),
        Method::Exec => module.exec.is_some(),
        Method::File => module.file.is_some(),
    };
    if !section {
        return Err(ConfigError::NoSection { path, module: module_name, method: module.method });
    }
    Ok(())
}

impl ModuleConfig {
    /// Whether the output is checked: neither the module's `verify` nor its `http.verify` is `false`.
    pub fn verifies(&self) -> bool {
        self.verify && self.http.as_ref().and_then(|h| h.verify).unwrap_or(true)
    }
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut config: AgentConfig =
            serde_norway::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })?;
        for (name, module) in &mut config.modules {
            module.defined_in = path.to_path_buf();
            check_module(path, name, module)?;
        }
        let etcd = !config.etcd.endpoints.is_empty() || config.etcd.discovery_srv.is_some();
        let half = match (etcd, config.address.is_some()) {
            (true, false) => Some(("etcd", "address")),
            (false, true) => Some(("address", "etcd (endpoints or discovery_srv)")),
            _ => None,
        };
        if let Some((given, missing)) = half {
            return Err(ConfigError::HalfRegistration { path: path.into(), given, missing });
        }
        Ok(config)
    }

    /// Whether the modules are registered in etcd; without `etcd` and `address` the agent only proxies.
    pub fn registers(&self) -> bool {
        self.address.is_some()
    }

    /// The etcd flags this section stands for.
    pub fn etcd_args(&self) -> EtcdArgs {
        EtcdArgs {
            endpoints: self.etcd.endpoints.clone(),
            discovery_srv: self.etcd.discovery_srv.clone(),
            cacert: self.etcd.cacert.clone(),
            cert: self.etcd.cert.clone(),
            key: self.etcd.key.clone(),
            user: self.etcd.user.clone(),
            password: self.etcd.password.as_ref().map(|p| p.expose().to_string()),
            dial_timeout: Duration::from_secs(2),
            ..EtcdArgs::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AgentConfig, ConfigError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("agent.yml");
        std::fs::write(&path, text).expect("write");
        AgentConfig::load(&path)
    }

    #[test]
    fn reads_modules() {
        let config = load(
            "etcd: {endpoints: [http://127.0.0.1:2379]}\nzone: prom.local\naddress: 10.0.0.5\nlease_ttl: 30s\nmodules:\n  node:\n    method: http\n    timeout: 5s\n    http:\n      port: 9100\n  script:\n    method: exec\n    verify: false\n    exec:\n      command: /bin/echo\n      args: [up 1]\n",
        )
        .expect("valid");
        assert_eq!(
            config.modules["node"].http.as_ref().map(|h| (h.port, h.address.as_str(), h.path.as_str())),
            Some((9100, "localhost", "/metrics"))
        );
        assert_eq!(config.modules["node"].timeout, Some(Duration::from_secs(5)));
        assert!(!config.modules["script"].verify);
        assert_eq!(config.lease_ttl, Some(Duration::from_secs(30)));
    }

    #[test]
    fn unknown_keys_name_the_file_and_line() {
        let error = load("modules:\n  node:\n    method: http\n    htp:\n      port: 1\n").expect_err("unknown key");
        let message = error.to_string();
        assert!(
            message.contains("agent.yml") && message.contains("unknown field `htp`") && message.contains("line 4"),
            "{message}"
        );
        let missing = load("modules:\n  x:\n    method: exec\n").expect_err("no exec section").to_string();
        assert!(missing.contains("needs its own section"), "{missing}");
    }

    #[test]
    fn labels_prometheus_would_reject_name_the_line() {
        let module = load("modules:\n  node:\n    method: http\n    http: {port: 1}\n    labels:\n      __x: y\n");
        let message = module.expect_err("reserved name").to_string();
        assert!(
            message.contains("modules.node: label name \"__x\" starts with \"__\"") && message.contains("line 3"),
            "{message}"
        );
        let agent = load("labels: {1x: y}\nmodules: {}\n").expect_err("bad name").to_string();
        assert!(agent.ends_with("agent.yml: label name \"1x\" must match [a-zA-Z_][a-zA-Z0-9_]*"), "{agent}");
    }

    #[test]
    fn module_checks_name_the_file_and_module() {
        let message = load("modules:\n  x:\n    method: exec\n").expect_err("no section").to_string();
        assert!(message.ends_with("agent.yml: module x: method Exec needs its own section"), "{message}");
    }

    /// Checks of an http section name the module's path and the line, as an unknown key does.
    #[test]
    fn http_checks_name_the_module_and_line() {
        let http =
            |settings: &str| format!("modules:\n  node:\n    method: http\n    http:\n      port: 1\n{settings}");
        for (text, expected) in [
            (http("      scheme: ftp\n"), "scheme \"ftp\" must be http or https"),
            (http("      scheme: https\n"), "https needs tls_ca_file (or tls_insecure_skip_verify: true)"),
            (http("      tls_cert_file: c.pem\n"), "tls_cert_file and tls_key_file go together"),
            (
                http("      tls_ca_file: ca.pem\n"),
                "tls_ca_file is set but scheme is http (set scheme: https, or remove it)",
            ),
            (
                http("      tls_insecure_skip_verify: true\n"),
                "tls_insecure_skip_verify is set but scheme is http (set scheme: https, or remove it)",
            ),
            (http("      headers:\n        \"bad name\": x\n"), "header \"bad name\": not a valid header name"),
        ] {
            let message = load(&text).expect_err(expected).to_string();
            assert!(
                message.contains("agent.yml: modules.node: ")
                    && message.contains(expected)
                    && message.contains("line 3"),
                "{message}"
            );
        }
    }

    /// exporter_exporter 0.4's own file, as its README and example write it, loads unchanged.
    #[test]
    fn reads_exporter_exporter_files() {
        let config = load(
            "global: {}\nmodules:\n  node:\n    method: http\n    timeout: 1.5s\n    http:\n      port: 9100\n      verify: false\n  blackbox:\n    method: http\n    timeout: 1m30s\n    http:\n      port: 9115\n      path: probe\n      scheme: https\n      tls_ca_cert_file: /etc/ssl/ca.pem\n  script:\n    method: exec\n    timeout: 500ms\n    exec:\n      command: /tmp/myscript.sh\n      args: [myarg1]\n      env: {THING: \"1\"}\n",
        )
        .expect("exporter_exporter's file");
        let (node, blackbox) = (&config.modules["node"], &config.modules["blackbox"]);
        assert_eq!(node.timeout, Some(Duration::from_millis(1500)));
        assert!(!node.verifies() && blackbox.verifies() && config.modules["script"].verifies());
        assert_eq!(blackbox.timeout, Some(Duration::from_secs(90)));
        let http = blackbox.http.as_ref().expect("http");
        assert_eq!((http.path.as_str(), http.tls_ca_file.as_deref()), ("/probe", Some(Path::new("/etc/ssl/ca.pem"))));
        assert_eq!(config.modules["script"].timeout, Some(Duration::from_millis(500)));
        assert!(!config.registers());
        // What exporter_exporter refuses is refused here too, naming the line.
        let message = load("modules:\n  x:\n    method: http\n    http:\n      port: 1\n      tls_ca_certfile: x\n")
            .expect_err("unknown key")
            .to_string();
        assert!(message.contains("unknown field `tls_ca_certfile`") && message.contains("line 6"), "{message}");
    }

    /// Registering needs etcd and the address; one without the other is a mistake, not proxy-only.
    #[test]
    fn etcd_and_address_go_together() {
        let message = load("address: 10.0.0.5\n").expect_err("no etcd").to_string();
        assert!(message.ends_with("agent.yml: address is set but etcd (endpoints or discovery_srv) is not (registering needs both; without either the agent only proxies)"), "{message}");
        let message = load("etcd: {discovery_srv: prom.local}\n").expect_err("no address").to_string();
        assert!(message.contains("etcd is set but address is not"), "{message}");
        assert!(load("etcd: {discovery_srv: prom.local}\naddress: a\n").expect("both").registers());
    }
}
