//! Answers already encoded, per UDP receive loop: a repeated question (same name bytes, type, class and
//! OPT record) is answered by copying the bytes and patching the ID, the RD/CD bits and the SOA serial,
//! without parsing or encoding. Each answer remembers the keys of the view it read; when a snapshot is
//! published, only the answers that read a changed key (or a key above it) are dropped, so a write
//! elsewhere in a million keys costs the cache nothing. An answer with a lease's TTL (which counts down) is
//! kept for a second at most. So the cache never answers anything the slow path would not.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::store::{Changes, Store, View};
use crate::wire::{Outcome, Reuse};

const MAX_ENTRIES: usize = 50_000;
/// Links from read keys to answers, counted with the stale ones that invalidation leaves behind.
const MAX_LINKS: usize = 4 * MAX_ENTRIES;
/// How long an answer with a lease's TTL may be served from the cache.
const MAX_AGE: Duration = Duration::from_secs(1);

/// What makes two UDP requests get the same answer bytes (apart from ID, RD and CD).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The question as sent (name with its case, since answers echo it; type; class) and the OPT record
    /// whole: its options included, so a malformed option gets its FORMERR without poisoning the answer
    /// for everyone else's well-formed query.
    request: Vec<u8>,
}

impl Key {
    /// The key of a plain query: QUERY opcode, one question without compression, no answer or authority
    /// records, at most an EDNS version 0 OPT record. Anything else takes the slow path (None).
    pub fn of(request: &[u8]) -> Option<Self> {
        if request.len() < 17 || request[2] & 0xf8 != 0 {
            return None; // a response, or an opcode other than QUERY
        }
        let count = |at: usize| u16::from_be_bytes([request[at], request[at + 1]]);
        if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
            return None;
        }
        let mut at = 12;
        loop {
            let len = usize::from(*request.get(at)?);
            if len == 0 {
                break;
            }
            if len > 63 {
                return None; // a compression pointer or an extended label type
            }
            at += 1 + len;
        }
        let question_end = at + 5;
        if count(10) == 0 {
            let question = request.get(12..question_end)?.to_vec();
            return (question_end == request.len()).then_some(Self { request: question });
        }
        // The OPT record: root name, type 41, class = UDP size, TTL = extended rcode, version, flags.
        let opt = request.get(question_end..)?;
        if opt.len() < 11 || opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != 41 || opt[6] != 0 {
            return None;
        }
        let rdlen = usize::from(u16::from_be_bytes([opt[9], opt[10]]));
        if opt.len() != 11 + rdlen || opt[5] != 0 {
            return None;
        }
        Some(Self { request: request[12..].to_vec() })
    }
}

struct Cached {
    bytes: Vec<u8>,
    outcome: Outcome,
    serials: Vec<usize>,
    /// When an answer with a lease's TTL was made.
    timed: Option<Instant>,
}

#[derive(Default)]
pub struct AnswerCache {
    /// The generation of the snapshot every cached answer is still true for.
    generation: u64,
    /// The generation of the settings ([`crate::config::Live`]) the cached answers were made with.
    settings: u64,
    answers: HashMap<Key, Cached>,
    /// Key of the view -> the cached answers that read it.
    readers: HashMap<String, Vec<Key>>,
    links: usize,
}

impl AnswerCache {
    /// Brings the cache up to `view`: drops the answers that read what changed since the last snapshot it
    /// saw, or everything when it is full or too far behind to know.
    /// `settings` is the generation of the settings answers depend on (the lease TTL bounds).
    pub fn refresh(&mut self, view: &View, store: &Store, settings: u64) {
        if self.answers.len() >= MAX_ENTRIES || self.links >= MAX_LINKS || settings != self.settings {
            self.clear();
            self.settings = settings;
        } else if view.generation != self.generation {
            match store.changes_since(self.generation) {
                Changes::All => self.clear(),
                Changes::Keys(keys) => keys.iter().for_each(|key| self.invalidate(key)),
            }
        }
        self.generation = view.generation;
    }

    fn clear(&mut self) {
        self.answers.clear();
        self.readers.clear();
        self.links = 0;
    }

    /// Drops every answer that read `key` or a key above it (a lookup reads the subtree below its key).
    fn invalidate(&mut self, key: &str) {
        let ancestors = key.match_indices('/').filter(|(at, _)| *at > 0).map(|(at, _)| &key[..at]);
        for read in ancestors.chain([key]) {
            for stale in self.readers.remove(read).into_iter().flatten() {
                self.links -= 1;
                self.answers.remove(&stale);
            }
        }
    }

    /// The cached answer to `request` received at `now`, with its ID, RD/CD bits and the current SOA serial.
    pub fn answer(&self, key: &Key, request: &[u8], serial: u32, now: Instant) -> Option<(Vec<u8>, Outcome)> {
        let cached = self.answers.get(key)?;
        if cached.timed.is_some_and(|made| now.saturating_duration_since(made) > MAX_AGE) {
            return None; // replaced by the fresh answer made next
        }
        let mut bytes = cached.bytes.clone();
        bytes[0] = request[0];
        bytes[1] = request[1];
        bytes[2] = (bytes[2] & !0x01) | (request[2] & 0x01); // RD
        bytes[3] = (bytes[3] & !0x10) | (request[3] & 0x10); // CD
        for &at in &cached.serials {
            if let Some(field) = bytes.get_mut(at..at + 4) {
                field.copy_from_slice(&serial.to_be_bytes());
            }
        }
        Some((bytes, cached.outcome))
    }

    pub fn insert(&mut self, key: Key, bytes: &[u8], outcome: Outcome, reuse: Reuse, now: Instant) {
        if bytes.len() < 12 {
            return;
        }
        for read in reuse.reads {
            self.links += 1;
            self.readers.entry(read).or_default().push(key.clone());
        }
        let timed = reuse.timed.then_some(now);
        self.answers.insert(key, Cached { bytes: bytes.to_vec(), outcome, serials: reuse.serials, timed });
    }
}

#[cfg(test)]
mod tests {
    use super::Key;

    #[test]
    fn keys_only_plain_queries() {
        // id, flags (RD), 1 question, 0, 0, 0; "a." A IN
        let plain = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
        let key = Key::of(&plain).expect("plain query");
        let mut response = plain;
        response[2] |= 0x80;
        assert!(Key::of(&response).is_none(), "responses are not cached");
        let mut trailing = plain.to_vec();
        trailing.push(0);
        assert!(Key::of(&trailing).is_none(), "trailing bytes take the slow path");
        let mut with_opt = plain.to_vec();
        with_opt[11] = 1;
        with_opt.extend([0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        assert!(Key::of(&with_opt).is_some_and(|k| k != key), "EDNS answers differ from plain ones");
        let mut with_option = with_opt.clone();
        with_option[19 + 10] = 4;
        with_option.extend([0, 10, 0, 0]);
        assert!(Key::of(&with_option).is_some_and(|k| k != Key::of(&with_opt).expect("key")), "options count");
        with_opt[19 + 6] = 1; // EDNS version 1: BADVERS comes from the slow path
        assert!(Key::of(&with_opt).is_none());
    }
}
