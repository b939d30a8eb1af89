//! Answers already encoded, per UDP receive loop: a repeated question (same name bytes, type, class, EDNS
//! and size limit) is answered by copying the bytes and patching the ID and the RD/CD bits, without parsing
//! or encoding. A cache belongs to one view snapshot and lives at most a second (lease TTLs count down), so
//! it never answers anything the slow path would not.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::view::View;
use crate::wire::{MAX_UDP_PAYLOAD, Outcome};

const MAX_ENTRIES: usize = 50_000;
const MAX_AGE: Duration = Duration::from_secs(1);
const PLAIN_UDP_PAYLOAD: u16 = 512;

/// What makes two UDP requests get the same answer bytes (apart from ID, RD and CD).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The question as sent: name (case kept, since answers echo it), type and class.
    question: Vec<u8>,
    /// Whether the request had EDNS, and the UDP size the answer must fit in.
    edns: bool,
    limit: u16,
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
        let question = request.get(12..question_end)?.to_vec();
        if count(10) == 0 {
            return (question_end == request.len()).then_some(Self { question, edns: false, limit: PLAIN_UDP_PAYLOAD });
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
        let limit = u16::from_be_bytes([opt[3], opt[4]]).clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD);
        Some(Self { question, edns: true, limit })
    }
}

pub struct AnswerCache {
    view: Option<Arc<View>>,
    started: Instant,
    answers: HashMap<Key, (Vec<u8>, Outcome)>,
}

impl Default for AnswerCache {
    fn default() -> Self {
        Self { view: None, started: Instant::now(), answers: HashMap::new() }
    }
}

impl AnswerCache {
    /// Empties the cache when the view changed or it is older than a second.
    pub fn refresh(&mut self, view: &Arc<View>) {
        let same_view = self.view.as_ref().is_some_and(|v| Arc::ptr_eq(v, view));
        if !same_view || self.started.elapsed() > MAX_AGE || self.answers.len() >= MAX_ENTRIES {
            self.answers.clear();
            self.view = Some(view.clone());
            self.started = Instant::now();
        }
    }

    /// The cached answer to `request`, with its ID and RD/CD bits.
    pub fn answer(&self, key: &Key, request: &[u8]) -> Option<(Vec<u8>, Outcome)> {
        let (bytes, outcome) = self.answers.get(key)?;
        let mut bytes = bytes.clone();
        bytes[0] = request[0];
        bytes[1] = request[1];
        bytes[2] = (bytes[2] & !0x01) | (request[2] & 0x01); // RD
        bytes[3] = (bytes[3] & !0x10) | (request[3] & 0x10); // CD
        Some((bytes, *outcome))
    }

    pub fn insert(&mut self, key: Key, bytes: &[u8], outcome: Outcome) {
        if bytes.len() >= 12 {
            self.answers.insert(key, (bytes.to_vec(), outcome));
        }
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
        assert!(!key.edns);
        assert_eq!(key.limit, 512);
        let mut response = plain;
        response[2] |= 0x80;
        assert!(Key::of(&response).is_none(), "responses are not cached");
        let mut trailing = plain.to_vec();
        trailing.push(0);
        assert!(Key::of(&trailing).is_none(), "trailing bytes take the slow path");
        let mut with_opt = plain.to_vec();
        with_opt[11] = 1;
        with_opt.extend([0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Key::of(&with_opt).map(|k| (k.edns, k.limit)), Some((true, 1232)));
        with_opt[19 + 6] = 1; // EDNS version 1: BADVERS comes from the slow path
        assert!(Key::of(&with_opt).is_none());
    }
}
