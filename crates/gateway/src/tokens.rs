//! Service tokens: an id and a secret, sent as two headers (Cloudflare Access's by default). The token file
//! stores only the secret's SHA-256; each token has an expiry and scopes: the client names it may register
//! over `/poll` (and answer scrapes for over `/push`), the names it may scrape through the proxy, and the
//! tenant it writes for. The file (or etcd key) is read again when it changes; a broken new version keeps
//! the previous one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promsd_common::stamp::{Stamp, stamp};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Cloudflare Access's service-token headers, what sites behind Zero Trust already send.
pub const DEFAULT_ID_HEADER: &str = "CF-Access-Client-Id";
pub const DEFAULT_SECRET_HEADER: &str = "CF-Access-Client-Secret";

#[derive(Debug, Error)]
pub enum TokenError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Not YAML, or an unknown or missing key: serde_norway's message names the line and column.
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: serde_norway::Error },
    #[error("{path}: token {id:?}: {reason}")]
    Entry { path: PathBuf, id: String, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    id: String,
    secret_sha256: String,
    /// RFC 3339; required, so no token lives forever by omission.
    expires: String,
    #[serde(default)]
    clients: Vec<String>,
    #[serde(default)]
    scrape: Vec<String>,
    tenant: Option<String>,
}

/// A name pattern: `host.example.org` (that name), `*.example.org` (every name below it), or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim_end_matches('.').to_ascii_lowercase();
        let name = text.strip_prefix("*.").unwrap_or(&text);
        if text != "*" {
            promsd_common::name::validate_name("name pattern", name).map_err(|e| e.to_string())?;
        }
        Ok(Self(text))
    }

    pub fn matches(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        if self.0 == "*" {
            return true;
        }
        match self.0.strip_prefix('*') {
            // `*.example.org`: a name that ends in `.example.org` and has at least one label before it.
            Some(suffix) => name.len() > suffix.len() && name.to_ascii_lowercase().ends_with(suffix),
            None => name.eq_ignore_ascii_case(&self.0),
        }
    }
}

pub struct Token {
    pub id: String,
    hash: [u8; 32],
    pub expires: SystemTime,
    pub clients: Vec<Pattern>,
    pub scrape: Vec<Pattern>,
    pub tenant: Option<String>,
}

/// Everything but the hash, which is not for logs.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.id)
            .field("expires", &self.expires)
            .field("clients", &self.clients)
            .field("scrape", &self.scrape)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl Token {
    pub fn valid_at(&self, now: SystemTime) -> bool {
        now < self.expires
    }

    pub fn may_register(&self, name: &str) -> bool {
        self.clients.iter().any(|p| p.matches(name))
    }

    pub fn may_scrape(&self, name: &str) -> bool {
        self.scrape.iter().any(|p| p.matches(name))
    }

    /// The same token with the same grants: a changed file that leaves it so keeps its clients.
    fn same_grants(&self, other: &Token) -> bool {
        self.hash == other.hash
            && self.expires == other.expires
            && self.clients == other.clients
            && self.scrape == other.scrape
            && self.tenant == other.tenant
    }
}

/// Why a request's credentials were refused; the label of `promsd_gateway_token_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Unknown,
    WrongSecret,
    Expired,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [Refusal::Missing, Refusal::Unknown, Refusal::WrongSecret, Refusal::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Unknown => "unknown",
            Refusal::WrongSecret => "wrong_secret",
            Refusal::Expired => "expired",
        }
    }
}

#[derive(Debug, Default)]
pub struct Tokens {
    by_id: HashMap<String, Arc<Token>>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read { path: path.into(), source })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, TokenError> {
        let file: TokenFile =
            serde_norway::from_str(text).map_err(|source| TokenError::Parse { path: path.into(), source })?;
        let mut by_id = HashMap::new();
        for entry in file.tokens {
            let entry_error = |reason: String| TokenError::Entry { path: path.into(), id: entry.id.clone(), reason };
            if entry.id.is_empty() {
                return Err(entry_error("the id is empty".into()));
            }
            let hash = decode_sha256(&entry.secret_sha256)
                .ok_or_else(|| entry_error("secret_sha256 must be 64 hex digits (sha256sum of the secret)".into()))?;
            let expires = promsd_buildinfo::parse_rfc3339(&entry.expires)
                .and_then(|s| u64::try_from(s).ok())
                .map(|s| UNIX_EPOCH + Duration::from_secs(s))
                .ok_or_else(|| entry_error(format!("expires {:?} is not an RFC 3339 time", entry.expires)))?;
            let patterns = |list: &[String]| -> Result<Vec<Pattern>, TokenError> {
                list.iter().map(|p| Pattern::parse(p).map_err(entry_error)).collect()
            };
            let (clients, scrape) = (patterns(&entry.clients)?, patterns(&entry.scrape)?);
            if entry.tenant.as_deref() == Some("") {
                return Err(entry_error("tenant is empty".into()));
            }
            let token = Token { id: entry.id.clone(), hash, expires, clients, scrape, tenant: entry.tenant };
            if by_id.insert(entry.id.clone(), Arc::new(token)).is_some() {
                return Err(entry_error("the id is used twice".into()));
            }
        }
        Ok(Self { by_id })
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The token with this id and secret, valid at `now`. The secret's hash is compared in constant time,
    /// and an unknown id costs the same hash and comparison, so timing tells neither secrets nor ids.
    pub fn authenticate(
        &self,
        id: Option<&[u8]>,
        secret: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<Arc<Token>, Refusal> {
        let (Some(id), Some(secret)) = (id, secret) else { return Err(Refusal::Missing) };
        let given = ring::digest::digest(&ring::digest::SHA256, secret);
        let token = std::str::from_utf8(id).ok().and_then(|id| self.by_id.get(id));
        let expected = token.map_or([0u8; 32], |t| t.hash);
        let matches: bool = given.as_ref().ct_eq(&expected).into();
        match token {
            None => Err(Refusal::Unknown),
            Some(_) if !matches => Err(Refusal::WrongSecret),
            Some(token) if !token.valid_at(now) => Err(Refusal::Expired),
            Some(token) => Ok(token.clone()),
        }
    }

    /// Whether `token` (as a client's registration holds it) still stands in this version of the file.
    pub fn still_grants(&self, token: &Token, now: SystemTime) -> bool {
        self.by_id.get(&token.id).is_some_and(|t| t.same_grants(token) && t.valid_at(now))
    }
}

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

/// Where the tokens come from: `--token.file`, or one etcd key holding the same YAML (`--token.etcd-key`).
#[derive(Debug, Clone)]
enum Origin {
    File(PathBuf),
    Etcd(String),
}

/// The tokens in force and where they come from.
pub struct TokenSource {
    origin: Origin,
    current: Mutex<(Option<Stamp>, Arc<Tokens>)>,
}

impl TokenSource {
    /// Reads the file; an error here stops the gateway from starting.
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let stamp = stamp(path);
        let tokens = Tokens::load(path)?;
        Ok(Self { origin: Origin::File(path.into()), current: Mutex::new((stamp, Arc::new(tokens))) })
    }

    /// Tokens from etcd key `key`: none until [`follow_etcd`] has read it (the gateway is closed meanwhile).
    pub fn etcd(key: &str) -> Self {
        Self { origin: Origin::Etcd(key.to_string()), current: Mutex::new((None, Arc::new(Tokens::default()))) }
    }

    /// `file /etc/...` or `etcd key /...`, for log lines.
    pub fn describe(&self) -> String {
        match &self.origin {
            Origin::File(path) => format!("file {}", path.display()),
            Origin::Etcd(key) => format!("etcd key {key}"),
        }
    }

    pub fn current(&self) -> Arc<Tokens> {
        self.current.lock().map(|c| c.1.clone()).unwrap_or_default()
    }

    fn replace(&self, tokens: Tokens) {
        if let Ok(mut current) = self.current.lock() {
            current.1 = Arc::new(tokens);
        }
    }

    /// Reads the file again if it changed: `Some(Ok)` with the new tokens, `Some(Err)` when the new version
    /// is broken (the previous one stays), `None` when nothing changed (or the tokens are in etcd, which
    /// [`follow_etcd`] follows). `force` reads it whatever its stamp (SIGHUP).
    pub fn refresh(&self, force: bool) -> Option<Result<Arc<Tokens>, TokenError>> {
        let Origin::File(path) = &self.origin else { return None };
        let stamp = stamp(path);
        let mut current = self.current.lock().ok()?;
        if stamp == current.0 && !force {
            return None;
        }
        current.0 = stamp;
        Some(Tokens::load(path).map(|tokens| {
            current.1 = Arc::new(tokens);
            current.1.clone()
        }))
    }
}

/// Keeps `source` (an etcd one) equal to its key until `shutdown`: read, then watched; a value that does
/// not parse is logged and the tokens before it stay; a deleted key revokes every token. Reconnects with
/// the shared backoff.
pub async fn follow_etcd(
    source: Arc<TokenSource>,
    etcd: promsd_common::EtcdArgs,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let Origin::Etcd(key) = source.origin.clone() else { return };
    let mut backoff = promsd_backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut attempt = 0;
    let apply = |value: Option<&[u8]>| match value {
        None => {
            tracing::warn!(%key, "the token key is gone from etcd: no token is valid");
            source.replace(Tokens::default());
        }
        Some(value) => match Tokens::parse(Path::new(&key), &String::from_utf8_lossy(value)) {
            Ok(tokens) => {
                tracing::info!(%key, tokens = tokens.len(), "tokens read from etcd");
                source.replace(tokens);
            }
            Err(error) => tracing::error!(%error, "cannot read the tokens in etcd; keeping the tokens in force"),
        },
    };
    loop {
        let session = async {
            let (mut client, _) = etcd.connect_attempt(attempt).await.map_err(|e| e.to_string())?;
            let got = client.get(key.as_str(), None).await.map_err(|e| promsd_common::etcd::describe(&e))?;
            apply(got.kvs().first().map(|kv| kv.value()));
            backoff.reset();
            let revision = got.header().map_or(0, |h| h.revision()) + 1;
            let options = etcd_client::WatchOptions::new().with_start_revision(revision);
            let mut stream =
                client.watch(key.as_str(), Some(options)).await.map_err(|e| promsd_common::etcd::describe(&e))?;
            while let Some(response) = stream.message().await.map_err(|e| promsd_common::etcd::describe(&e))? {
                for event in response.events() {
                    match event.event_type() {
                        etcd_client::EventType::Put => apply(event.kv().map(|kv| kv.value())),
                        etcd_client::EventType::Delete => apply(None),
                    }
                }
            }
            Err::<(), String>("the watch on the token key closed".into())
        };
        let error = tokio::select! {
            _ = shutdown.cancelled() => return,
            Err(error) = session => error,
        };
        attempt += 1;
        let delay = backoff.next_delay();
        tracing::warn!(%key, %error, retry_in = ?delay, "cannot follow the tokens in etcd; retrying");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sha256("s3cret")
    const S3CRET: &str = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0";

    fn tokens(text: &str) -> Result<Tokens, TokenError> {
        Tokens::parse(Path::new("tokens.yml"), text)
    }

    fn site_a() -> Tokens {
        tokens(&format!(
            "tokens:\n  - id: site-a\n    secret_sha256: {S3CRET}\n    expires: 2999-01-01T00:00:00Z\n    clients: [\"*.site-a.example.org\"]\n    tenant: site-a\n  - id: old\n    secret_sha256: {S3CRET}\n    expires: 2001-01-01T00:00:00Z\n"
        ))
        .expect("parses")
    }

    #[test]
    fn authenticates_by_id_and_hashed_secret() {
        let tokens = site_a();
        let now = SystemTime::now();
        let token = tokens.authenticate(Some(b"site-a"), Some(b"s3cret"), now).expect("valid");
        assert_eq!(token.tenant.as_deref(), Some("site-a"));
        assert_eq!(tokens.authenticate(Some(b"site-a"), Some(b"s3cre"), now).err(), Some(Refusal::WrongSecret));
        assert_eq!(tokens.authenticate(Some(b"site-b"), Some(b"s3cret"), now).err(), Some(Refusal::Unknown));
        assert_eq!(tokens.authenticate(Some(b"old"), Some(b"s3cret"), now).err(), Some(Refusal::Expired));
        assert_eq!(tokens.authenticate(None, Some(b"s3cret"), now).err(), Some(Refusal::Missing));
        assert_eq!(tokens.authenticate(Some(b"\xff"), Some(b"s3cret"), now).err(), Some(Refusal::Unknown));
        assert!(!format!("{token:?}").contains("1ec1"), "no hash in {token:?}");
    }

    #[test]
    fn scopes_match_names_below_a_wildcard() {
        let token = site_a().authenticate(Some(b"site-a"), Some(b"s3cret"), SystemTime::now()).expect("valid");
        assert!(token.may_register("host1.site-a.example.org"));
        assert!(token.may_register("a.b.SITE-A.example.org."));
        assert!(!token.may_register("site-a.example.org"), "the wildcard needs a label in front");
        assert!(!token.may_register("host1.evilsite-a.example.org"));
        assert!(!token.may_register("host1.site-b.example.org"));
        assert!(!token.may_scrape("host1.site-a.example.org"), "no scrape scope given");
        assert!(Pattern::parse("*").expect("all").matches("anything.at.all"));
        assert!(Pattern::parse("bad name").is_err());
    }

    #[test]
    fn bad_files_name_the_token_and_what_is_wrong() {
        let entry =
            |fields: &str| tokens(&format!("tokens:\n  - id: t\n{fields}")).map(|_| ()).map_err(|e| e.to_string());
        let ok = format!("    secret_sha256: {S3CRET}\n    expires: 2999-01-01T00:00:00Z\n");
        assert_eq!(entry(&ok), Ok(()));
        let short = "    secret_sha256: abc\n    expires: 2999-01-01T00:00:00Z\n";
        assert!(entry(short).is_err_and(|e| e.contains("token \"t\": secret_sha256 must be 64 hex digits")));
        let no_expiry = format!("    secret_sha256: {S3CRET}\n");
        assert!(entry(&no_expiry).is_err_and(|e| e.contains("missing field `expires`")));
        let bad_expiry = format!("    secret_sha256: {S3CRET}\n    expires: tomorrow\n");
        assert!(entry(&bad_expiry).is_err_and(|e| e.contains("not an RFC 3339 time")));
        let bad_scope = format!("{ok}    clients: [\"a b\"]\n");
        assert!(entry(&bad_scope).is_err_and(|e| e.contains("token \"t\"")));
        let unknown = format!("{ok}    secret: plain\n");
        assert!(entry(&unknown).is_err_and(|e| e.contains("unknown field `secret`")));
        let twice = format!("tokens:\n  - id: t\n{ok}  - id: t\n{ok}");
        assert!(tokens(&twice).is_err_and(|e| e.to_string().contains("used twice")));
    }

    #[test]
    fn a_changed_grant_ends_what_the_old_one_allowed() {
        let before = site_a();
        let now = SystemTime::now();
        let token = before.authenticate(Some(b"site-a"), Some(b"s3cret"), now).expect("valid");
        assert!(before.still_grants(&token, now));
        assert!(!tokens("tokens: []").expect("empty").still_grants(&token, now), "revoked");
        let narrowed = tokens(&format!(
            "tokens:\n  - id: site-a\n    secret_sha256: {S3CRET}\n    expires: 2999-01-01T00:00:00Z\n    clients: [\"host1.site-a.example.org\"]\n    tenant: site-a\n"
        ))
        .expect("parses");
        assert!(!narrowed.still_grants(&token, now), "scope changed");
        assert!(!before.still_grants(&token, UNIX_EPOCH + Duration::from_secs(32_503_680_000)), "expired");
    }
}
