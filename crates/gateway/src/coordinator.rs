//! Who polls and what they are asked: the PushProx proxy's coordination, with bounds. A client is known
//! while a poll of it waits and for `--registration.timeout` after its last one. Each known client has at
//! most one waiting poll (a newer poll ends the older, as PushProx's does: the older's connection may be
//! dead behind a NAT) and a bounded queue of scrapes that arrived while it had none. A scrape waits for its
//! push until its deadline; every waiting request is dropped cleanly if its own client goes away.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use bytes::Bytes;
use promsd_pushprox::{Announce, ScrapeRequest, ScrapeResponse};
use thiserror::Error;
use tokio::sync::oneshot;

use crate::tokens::{Token, Tokens};

/// Scrapes queued for one client that has no waiting poll: more means it is not keeping up.
const QUEUE_PER_CLIENT: usize = 64;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client stays known after its last poll (`--registration.timeout`).
    pub registration: Duration,
    /// How long a poll is held waiting for a scrape before it is answered 408 (the client polls again).
    pub hold: Duration,
    /// Known clients at most (`--registration.max-clients`): memory stays bounded whoever polls.
    pub max_clients: usize,
    /// Scrapes waiting for their push at most, over all clients.
    pub max_pending: usize,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PollError {
    #[error("{0} is registered by another token")]
    Taken(String),
    #[error("too many clients are registered")]
    TooManyClients,
    #[error("request is expired: a newer poll of this client replaced it")]
    Replaced,
    #[error("no scrape within {0:?}; poll again")]
    Held(Duration),
    #[error("the token of this client was revoked or has expired")]
    Revoked,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScrapeError {
    #[error("no client {0} is polling this gateway")]
    UnknownClient(String),
    #[error("too many scrapes are waiting for {0}")]
    Busy(String),
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("{0} went away before answering")]
    Gone(String),
    #[error("no random numbers for a scrape id")]
    Random,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PushError {
    #[error("the pushed response has no Id header")]
    NoId,
    #[error("no scrape {0} is waiting (unknown, answered, or timed out)")]
    UnknownId(String),
    #[error("this token may not answer scrapes of {0}")]
    Forbidden(String),
}

/// How a waiting poll ends without a scrape.
#[derive(Debug, Clone, Copy)]
enum Ended {
    Replaced,
    Revoked,
}

struct Waiter {
    serial: u64,
    tx: oneshot::Sender<Result<Bytes, Ended>>,
}

struct Queued {
    id: String,
    request: Bytes,
    deadline: Instant,
}

struct Client {
    /// The token that registered the name; none when the gateway is open.
    token: Option<Arc<Token>>,
    waiting: Option<Waiter>,
    queue: VecDeque<Queued>,
    last_seen: Instant,
    announce: Option<Arc<Announce>>,
}

impl Client {
    fn alive(&self, now: Instant, registration: Duration) -> bool {
        self.waiting.is_some() || now.saturating_duration_since(self.last_seen) < registration
    }
}

struct Pending {
    client: String,
    tx: oneshot::Sender<ScrapeResponse>,
}

#[derive(Default)]
struct State {
    clients: HashMap<String, Client>,
    pending: HashMap<String, Pending>,
    serial: u64,
}

/// A known client, for `/clients` and discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub name: String,
    pub token: Option<String>,
    pub announce: Option<Arc<Announce>>,
}

#[derive(Debug, Default)]
pub struct Counts {
    pub polls: AtomicU64,
    pub polls_held: AtomicU64,
    pub scrapes: AtomicU64,
    pub scrape_timeouts: AtomicU64,
    pub scrape_failures: AtomicU64,
    pub pushes: AtomicU64,
    pub pushes_unknown: AtomicU64,
    pub revoked: AtomicU64,
}

pub struct Coordinator {
    state: Mutex<State>,
    pub limits: Limits,
    pub counts: Counts,
}

impl Coordinator {
    pub fn new(limits: Limits) -> Self {
        Self { state: Mutex::new(State::default()), limits, counts: Counts::default() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way later calls trust.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A client's poll: the next scrape for `name` (serialized), once one comes.
    pub async fn poll(
        &self,
        name: &str,
        token: Option<Arc<Token>>,
        announce: Option<Announce>,
    ) -> Result<Bytes, PollError> {
        self.counts.polls.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let (serial, rx) = {
            let mut state = self.lock();
            let registration = self.limits.registration;
            if !state.clients.contains_key(name) && state.clients.len() >= self.limits.max_clients {
                return Err(PollError::TooManyClients);
            }
            state.serial += 1;
            let serial = state.serial;
            let client = state.clients.entry(name.to_string()).or_insert_with(|| Client {
                token: None,
                waiting: None,
                queue: VecDeque::new(),
                last_seen: now,
                announce: None,
            });
            if let (Some(owner), Some(token)) = (&client.token, &token)
                && owner.id != token.id
                && client.alive(now, registration)
            {
                return Err(PollError::Taken(name.to_string()));
            }
            client.token = token;
            client.last_seen = now;
            if let Some(announce) = announce
                && client.announce.as_deref() != Some(&announce)
            {
                client.announce = Some(Arc::new(announce));
            }
            while let Some(queued) = client.queue.pop_front() {
                if queued.deadline > now {
                    return Ok(queued.request);
                }
            }
            let (tx, rx) = oneshot::channel();
            if let Some(older) = client.waiting.replace(Waiter { serial, tx }) {
                let _ = older.tx.send(Err(Ended::Replaced));
            }
            (serial, rx)
        };
        // Clears the waiting slot however this poll ends, also when its connection closes and the future is
        // dropped: the client was alive until now.
        let _waiting = WaitGuard { coordinator: self, name, serial };
        match tokio::time::timeout(self.limits.hold, rx).await {
            Ok(Ok(Ok(request))) => Ok(request),
            Ok(Ok(Err(Ended::Replaced))) => Err(PollError::Replaced),
            Ok(Ok(Err(Ended::Revoked)) | Err(_)) => Err(PollError::Revoked),
            Err(_) => {
                self.counts.polls_held.fetch_add(1, Ordering::Relaxed);
                Err(PollError::Held(self.limits.hold))
            }
        }
    }

    /// A scrape from Prometheus for `name`: handed to its waiting poll (or queued for its next one), then the
    /// pushed response, within `timeout`.
    pub async fn scrape(
        &self,
        name: &str,
        mut request: ScrapeRequest,
        timeout: Duration,
    ) -> Result<ScrapeResponse, ScrapeError> {
        self.counts.scrapes.fetch_add(1, Ordering::Relaxed);
        let id = scrape_id().ok_or(ScrapeError::Random)?;
        if let Ok(value) = id.parse() {
            request.headers.insert(promsd_pushprox::ID, value);
        }
        if let Ok(value) = format!("{:.3}", timeout.as_secs_f64()).parse() {
            request.headers.insert(promsd_pushprox::SCRAPE_TIMEOUT, value);
        }
        let bytes = Bytes::from(request.encode());
        let now = Instant::now();
        let (tx, rx) = oneshot::channel();
        {
            let mut guard = self.lock();
            let state = &mut *guard;
            let registration = self.limits.registration;
            let Some(client) = state.clients.get_mut(name).filter(|c| c.alive(now, registration)) else {
                self.counts.scrape_failures.fetch_add(1, Ordering::Relaxed);
                return Err(ScrapeError::UnknownClient(name.to_string()));
            };
            if state.pending.len() >= self.limits.max_pending {
                self.counts.scrape_failures.fetch_add(1, Ordering::Relaxed);
                return Err(ScrapeError::Busy(name.to_string()));
            }
            let mut unsent = Some(bytes);
            if let Some(waiter) = client.waiting.take()
                && let Some(bytes) = unsent.take()
                && let Err(Ok(bytes)) = waiter.tx.send(Ok(bytes))
            {
                unsent = Some(bytes); // that poll's connection closed meanwhile
            }
            if let Some(request) = unsent {
                if client.queue.len() >= QUEUE_PER_CLIENT {
                    self.counts.scrape_failures.fetch_add(1, Ordering::Relaxed);
                    return Err(ScrapeError::Busy(name.to_string()));
                }
                client.queue.push_back(Queued { id: id.clone(), request, deadline: now + timeout });
            }
            state.pending.insert(id.clone(), Pending { client: name.to_string(), tx });
        }
        // Forgets the scrape however it ends, also when Prometheus hangs up first.
        let _pending = PendingGuard { coordinator: self, name, id: &id };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => {
                self.counts.scrape_failures.fetch_add(1, Ordering::Relaxed);
                Err(ScrapeError::Gone(name.to_string()))
            }
            Err(_) => {
                self.counts.scrape_timeouts.fetch_add(1, Ordering::Relaxed);
                Err(ScrapeError::Timeout(name.to_string(), timeout))
            }
        }
    }

    /// A client's answer to a scrape. With tokens, only the token that registered the scraped client may
    /// answer for it.
    pub fn push(&self, mut response: ScrapeResponse, token: Option<&Token>) -> Result<(), PushError> {
        let id = response.id().ok_or(PushError::NoId)?.to_string();
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(pending) = state.pending.remove(&id) else {
            self.counts.pushes_unknown.fetch_add(1, Ordering::Relaxed);
            return Err(PushError::UnknownId(id));
        };
        let owner = state.clients.get(&pending.client).and_then(|c| c.token.as_ref());
        if let Some(token) = token
            && (owner.is_some_and(|o| o.id != token.id) || !token.may_register(&pending.client))
        {
            let client = pending.client.clone();
            state.pending.insert(id, pending);
            return Err(PushError::Forbidden(client));
        }
        // Internal headers are not Prometheus's business.
        for name in [promsd_pushprox::ID, promsd_pushprox::TIME_LEFT, promsd_pushprox::SCRAPE_TIMEOUT] {
            response.headers.remove(name);
        }
        self.counts.pushes.fetch_add(1, Ordering::Relaxed);
        pending.tx.send(response).map_err(|_| PushError::UnknownId(id))
    }

    /// The clients known now, sorted by name.
    pub fn known(&self) -> Vec<Known> {
        let now = Instant::now();
        let state = self.lock();
        let mut known: Vec<Known> = state
            .clients
            .iter()
            .filter(|(_, c)| c.alive(now, self.limits.registration))
            .map(|(name, c)| Known {
                name: name.clone(),
                token: c.token.as_ref().map(|t| t.id.clone()),
                announce: c.announce.clone(),
            })
            .collect();
        known.sort_by(|a, b| a.name.cmp(&b.name));
        known
    }

    /// How many clients are known now, without copying them.
    pub fn known_count(&self) -> usize {
        let now = Instant::now();
        self.lock().clients.values().filter(|c| c.alive(now, self.limits.registration)).count()
    }

    /// Scrapes waiting for a push now.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Forgets clients whose registration expired, and ends everything of a client whose token `tokens` no
    /// longer grants (revoked, expired, narrowed): its waiting poll, its queued and pending scrapes.
    pub fn sweep(&self, tokens: Option<&Tokens>, now: SystemTime) -> Vec<String> {
        let instant = Instant::now();
        let mut guard = self.lock();
        let state = &mut *guard;
        let registration = self.limits.registration;
        let mut revoked = Vec::new();
        state.clients.retain(|name, client| {
            let granted = match (&client.token, tokens) {
                (Some(token), Some(tokens)) => tokens.still_grants(token, now),
                (Some(token), None) => token.valid_at(now),
                (None, _) => true,
            };
            if !granted {
                if let Some(waiter) = client.waiting.take() {
                    let _ = waiter.tx.send(Err(Ended::Revoked));
                }
                revoked.push(name.clone());
                return false;
            }
            client.queue.retain(|q| q.deadline > instant);
            client.alive(instant, registration)
        });
        if !revoked.is_empty() {
            self.counts.revoked.fetch_add(revoked.len() as u64, Ordering::Relaxed);
            // Dropping their senders ends the scrapes waiting for them at once.
            state.pending.retain(|_, p| !revoked.contains(&p.client));
        }
        revoked
    }
}

struct WaitGuard<'a> {
    coordinator: &'a Coordinator,
    name: &'a str,
    serial: u64,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.coordinator.lock();
        if let Some(client) = state.clients.get_mut(self.name)
            && client.waiting.as_ref().is_some_and(|w| w.serial == self.serial)
        {
            client.waiting = None;
            client.last_seen = Instant::now();
        }
    }
}

struct PendingGuard<'a> {
    coordinator: &'a Coordinator,
    name: &'a str,
    id: &'a str,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.coordinator.lock();
        state.pending.remove(self.id);
        if let Some(client) = state.clients.get_mut(self.name) {
            client.queue.retain(|q| q.id != self.id);
        }
    }
}

/// A random (version 4) UUID, as PushProx's scrape ids are: an answer cannot be pushed for a scrape whose id
/// was not handed to the pusher.
fn scrape_id() -> Option<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use http::{HeaderMap, Method, StatusCode};

    use super::*;

    const NAME: &str = "host1.site-a.example.org";

    fn coordinator() -> Arc<Coordinator> {
        Arc::new(Coordinator::new(Limits {
            registration: Duration::from_secs(300),
            hold: Duration::from_secs(300),
            max_clients: 2,
            max_pending: 100,
        }))
    }

    fn request() -> ScrapeRequest {
        ScrapeRequest {
            method: Method::GET,
            uri: format!("http://{NAME}:9100/metrics").parse().expect("uri"),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    fn answer(to: &Bytes) -> ScrapeResponse {
        let request = ScrapeRequest::parse(to).expect("a scrape request");
        let mut headers = HeaderMap::new();
        headers.insert(promsd_pushprox::ID, request.id().expect("id").parse().expect("value"));
        ScrapeResponse { status: StatusCode::OK, headers, body: Bytes::from_static(b"up 1\n") }
    }

    fn tokens(text: &str) -> Tokens {
        Tokens::parse(Path::new("t.yml"), text).expect("tokens")
    }

    /// site-a and site-b, both may register every name; the secret of each is its id.
    fn two_tokens() -> Tokens {
        let entry = |id: &str| {
            let hash: String = ring::digest::digest(&ring::digest::SHA256, id.as_bytes())
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("  - id: {id}\n    secret_sha256: {hash}\n    expires: 2999-01-01T00:00:00Z\n    clients: ['*']\n")
        };
        tokens(&format!("tokens:\n{}{}", entry("site-a"), entry("site-b")))
    }

    fn token(tokens: &Tokens, id: &str) -> Arc<Token> {
        tokens.authenticate(Some(id.as_bytes()), Some(id.as_bytes()), SystemTime::now()).expect("valid")
    }

    #[tokio::test(start_paused = true)]
    async fn a_scrape_goes_to_the_waiting_poll_and_its_push_comes_back() {
        let c = coordinator();
        let poll = tokio::spawn({
            let c = c.clone();
            async move { c.poll(NAME, None, None).await }
        });
        tokio::task::yield_now().await;
        let scrape = tokio::spawn({
            let c = c.clone();
            async move { c.scrape(NAME, request(), Duration::from_secs(10)).await }
        });
        let handed = poll.await.expect("poll").expect("a scrape");
        let text = String::from_utf8_lossy(&handed).to_string();
        assert!(text.starts_with(&format!("GET http://{NAME}:9100/metrics HTTP/1.1\r\n")), "{text}");
        assert!(text.contains("X-Prometheus-Scrape-Timeout-Seconds: 10.000\r\n"), "{text}");
        c.push(answer(&handed), None).expect("push accepted");
        let response = scrape.await.expect("scrape").expect("answered");
        assert_eq!(&response.body[..], b"up 1\n");
        assert!(response.headers.get(promsd_pushprox::ID).is_none(), "internal headers are removed");
        assert_eq!(c.pending(), 0);
        assert_eq!(c.known().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_scrape_waits_in_the_queue_for_the_next_poll() {
        let c = coordinator();
        // Known, but between polls (its last poll just ended).
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.poll(NAME, None, None).await }
        });
        tokio::task::yield_now().await;
        first.abort();
        let _ = first.await;
        let scrape = tokio::spawn({
            let c = c.clone();
            async move { c.scrape(NAME, request(), Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        let handed = c.poll(NAME, None, None).await.expect("the queued scrape at once");
        c.push(answer(&handed), None).expect("push");
        assert!(scrape.await.expect("scrape").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn scrapes_of_unknown_clients_fail_at_once_and_unanswered_ones_time_out() {
        let c = coordinator();
        assert_eq!(
            c.scrape(NAME, request(), Duration::from_secs(10)).await.err(),
            Some(ScrapeError::UnknownClient(NAME.into()))
        );
        let _poll = tokio::spawn({
            let c = c.clone();
            async move { c.poll(NAME, None, None).await }
        });
        tokio::task::yield_now().await;
        let result = c.scrape(NAME, request(), Duration::from_secs(3)).await;
        assert_eq!(result.err(), Some(ScrapeError::Timeout(NAME.into(), Duration::from_secs(3))));
        assert_eq!(c.pending(), 0, "a timed-out scrape is forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_poll_replaces_the_older_and_a_held_poll_ends() {
        let c = coordinator();
        let older = tokio::spawn({
            let c = c.clone();
            async move { c.poll(NAME, None, None).await }
        });
        tokio::task::yield_now().await;
        let newer = tokio::spawn({
            let c = c.clone();
            async move { c.poll(NAME, None, None).await }
        });
        assert_eq!(older.await.expect("older").err(), Some(PollError::Replaced));
        assert_eq!(newer.await.expect("newer").err(), Some(PollError::Held(Duration::from_secs(300))));
        assert_eq!(c.known().len(), 1, "a client whose poll was just held is still known");
        tokio::time::sleep(Duration::from_secs(301)).await;
        c.sweep(None, SystemTime::now());
        assert!(c.known().is_empty(), "forgotten --registration.timeout after its last poll");
    }

    #[tokio::test(start_paused = true)]
    async fn a_name_belongs_to_the_token_that_registered_it() {
        let (c, tokens) = (coordinator(), two_tokens());
        let (a, b) = (token(&tokens, "site-a"), token(&tokens, "site-b"));
        let poll = tokio::spawn({
            let (c, a) = (c.clone(), a.clone());
            async move { c.poll(NAME, Some(a), None).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(c.poll(NAME, Some(b.clone()), None).await.err(), Some(PollError::Taken(NAME.into())));
        let scrape = tokio::spawn({
            let c = c.clone();
            async move { c.scrape(NAME, request(), Duration::from_secs(10)).await }
        });
        let handed = poll.await.expect("poll").expect("scrape");
        assert_eq!(c.push(answer(&handed), Some(&b)).err(), Some(PushError::Forbidden(NAME.into())));
        c.push(answer(&handed), Some(&a)).expect("the owner answers");
        assert!(scrape.await.expect("scrape").is_ok());
        assert!(matches!(c.push(answer(&handed), Some(&a)), Err(PushError::UnknownId(_))), "only once");
    }

    #[tokio::test(start_paused = true)]
    async fn revoking_a_token_ends_its_polls_and_scrapes() {
        let (c, tokens) = (coordinator(), two_tokens());
        let a = token(&tokens, "site-a");
        let poll = tokio::spawn({
            let (c, a) = (c.clone(), a.clone());
            async move { c.poll(NAME, Some(a), None).await }
        });
        tokio::task::yield_now().await;
        assert!(c.sweep(Some(&tokens), SystemTime::now()).is_empty(), "nothing changed");
        let without_a = tokens_without_site_a();
        assert_eq!(c.sweep(Some(&without_a), SystemTime::now()), vec![NAME.to_string()]);
        assert_eq!(poll.await.expect("poll").err(), Some(PollError::Revoked));
        assert!(c.known().is_empty());
        assert!(matches!(c.scrape(NAME, request(), Duration::from_secs(1)).await, Err(ScrapeError::UnknownClient(_))));
    }

    fn tokens_without_site_a() -> Tokens {
        tokens("tokens: []")
    }

    #[tokio::test(start_paused = true)]
    async fn clients_are_bounded() {
        let c = coordinator();
        for name in ["a.example.org", "b.example.org"] {
            let c = c.clone();
            tokio::spawn(async move { c.poll(name, None, None).await });
        }
        tokio::task::yield_now().await;
        assert_eq!(c.poll("c.example.org", None, None).await.err(), Some(PollError::TooManyClients));
    }
}
