//! TSIG (RFC 8945) for zone transfers: the keys (`--transfer.tsig-key-file`, in BIND's, Knot's or kdig's
//! notation), checking a request's signature, and signing each message of the response: the first over the
//! request's MAC and all TSIG variables, each later one over the previous MAC and the timers only.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use ring::hmac;
use thiserror::Error;

/// TSIG's record type, and the class its records use.
const TSIG_TYPE: u16 = 250;
const CLASS_ANY: u16 = 255;
/// Seconds a signature's time may differ from ours (RFC 8945 recommends 300).
pub const FUDGE: u16 = 300;

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "{path}: no key in it (expected BIND's `key \"NAME\" {{ algorithm ...; secret \"...\"; }};`, Knot's `key:` list, or ALGORITHM:NAME:SECRET)"
    )]
    NoKey { path: PathBuf },
    #[error("{path}: key {name:?}: {problem}")]
    Bad { path: PathBuf, name: String, problem: String },
}

/// The HMACs a key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha384,
    Sha512,
    Sha1,
}

impl Algorithm {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" => Some(Self::Sha256),
            "hmac-sha384" => Some(Self::Sha384),
            "hmac-sha512" => Some(Self::Sha512),
            "hmac-sha1" => Some(Self::Sha1),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "hmac-sha256.",
            Self::Sha384 => "hmac-sha384.",
            Self::Sha512 => "hmac-sha512.",
            Self::Sha1 => "hmac-sha1.",
        }
    }

    fn ring(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha384 => hmac::HMAC_SHA384,
            Self::Sha512 => hmac::HMAC_SHA512,
            Self::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        }
    }
}

/// One shared secret.
#[derive(Clone)]
pub struct Key {
    /// Lowercase, with the trailing dot.
    pub name: String,
    pub algorithm: Algorithm,
    key: hmac::Key,
}

/// The name only: the secret stays out of logs.
impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("name", &self.name).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.algorithm == other.algorithm
    }
}

impl Key {
    pub fn new(name: &str, algorithm: Algorithm, secret: &[u8]) -> Self {
        let mut name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        name.push('.');
        Self { name, algorithm, key: hmac::Key::new(algorithm.ring(), secret) }
    }
}

/// The keys in `path`: BIND's `key` clauses (what `tsig-keygen` writes), Knot's `key:` list (what
/// `keymgr -t` writes), or lines of `ALGORITHM:NAME:SECRET` (kdig's `-y`). Secrets are base64.
pub fn load_keys(path: &Path) -> Result<Vec<Key>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.into(), source })?;
    let found = parse_bind(&text).or_else(|| parse_knot(&text)).unwrap_or_else(|| parse_lines(&text));
    if found.is_empty() {
        return Err(KeyError::NoKey { path: path.into() });
    }
    found
        .into_iter()
        .map(|(name, algorithm, secret)| {
            let bad = |problem: String| KeyError::Bad { path: path.into(), name: name.clone(), problem };
            let algorithm = Algorithm::parse(&algorithm)
                .ok_or_else(|| bad(format!("algorithm {algorithm:?} is not hmac-sha256, -sha384, -sha512 or -sha1")))?;
            let secret = base64::engine::general_purpose::STANDARD
                .decode(secret.trim())
                .map_err(|e| bad(format!("secret is not base64: {e}")))?;
            if secret.is_empty() {
                return Err(bad("secret is empty".into()));
            }
            Name::from_ascii(&name).map_err(|e| bad(format!("not a valid key name: {e}")))?;
            Ok(Key::new(&name, algorithm, &secret))
        })
        .collect()
}

type Found = (String, String, String);

/// `key "name" { algorithm hmac-sha256; secret "..."; };`, any number of them.
fn parse_bind(text: &str) -> Option<Vec<Found>> {
    let text: String = text.lines().filter(|l| !l.trim_start().starts_with(['#', '/'])).collect::<Vec<_>>().join("\n");
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("key ") {
        let after = &rest[start + 4..];
        let open = after.find('{')?;
        let close = after.find('}')?;
        let name = after[..open].trim().trim_matches('"').to_string();
        let body = &after[open + 1..close];
        let field = |field: &str| {
            body.split(';')
                .map(str::trim)
                .find_map(|s| s.strip_prefix(field))
                .map(|v| v.trim().trim_matches('"').to_string())
        };
        found.push((name, field("algorithm")?, field("secret")?));
        rest = &after[close + 1..];
    }
    (!found.is_empty()).then_some(found)
}

/// Knot's `key: [{id, algorithm, secret}]`.
fn parse_knot(text: &str) -> Option<Vec<Found>> {
    #[derive(serde::Deserialize)]
    struct File {
        key: Vec<KnotKey>,
    }
    #[derive(serde::Deserialize)]
    struct KnotKey {
        id: String,
        algorithm: String,
        secret: String,
    }
    let file: File = serde_norway::from_str(text).ok()?;
    Some(file.key.into_iter().map(|k| (k.id, k.algorithm, k.secret)).collect())
}

/// `ALGORITHM:NAME:SECRET` (or `NAME:SECRET` for hmac-sha256), one per line; `#` starts a comment.
fn parse_lines(text: &str) -> Vec<Found> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let parts: Vec<&str> = line.splitn(3, ':').collect();
            match parts.as_slice() {
                [algorithm, name, secret] => Some((name.to_string(), algorithm.to_string(), secret.to_string())),
                [name, secret] => Some((name.to_string(), "hmac-sha256".to_string(), secret.to_string())),
                _ => None,
            }
        })
        .collect()
}

/// A request's TSIG record, found and checked.
#[derive(Debug)]
pub enum Checked {
    /// No TSIG record.
    Unsigned,
    /// Signed with a known key, and the signature holds.
    Valid(Box<Signer>),
    /// Signed, and refused: the response is NOTAUTH with this TSIG error (unsigned for BADKEY and BADSIG,
    /// signed for BADTIME), and the bytes to send.
    Refused { error: TsigError, response: Vec<u8> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigError {
    BadSig = 16,
    BadKey = 17,
    BadTime = 18,
}

impl std::fmt::Display for TsigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::BadSig => "BADSIG",
            Self::BadKey => "BADKEY",
            Self::BadTime => "BADTIME",
        })
    }
}

/// Where the request's TSIG record is and what it says.
struct RequestTsig {
    /// Offset of the TSIG record (the end of the rest of the message).
    start: usize,
    key_name: String,
    algorithm: String,
    time_signed: u64,
    fudge: u16,
    mac: Vec<u8>,
    original_id: u16,
    error: u16,
    other: Vec<u8>,
}

/// Signs the messages of one response, each after the one before.
#[derive(Debug)]
pub struct Signer {
    key: Key,
    /// The request's MAC for the first message, then each message's own.
    previous_mac: Vec<u8>,
    original_id: u16,
    first: bool,
}

/// Checks the TSIG record of `request`, if it has one, against `keys`.
pub fn check(request: &[u8], keys: &[Key]) -> Checked {
    let Some(tsig) = find(request) else { return Checked::Unsigned };
    let Some(key) =
        keys.iter().find(|k| k.name == tsig.key_name && Algorithm::parse(&tsig.algorithm) == Some(k.algorithm))
    else {
        let response = error_response(request, &tsig, TsigError::BadKey, None);
        return Checked::Refused { error: TsigError::BadKey, response };
    };
    let mut data = unsigned_copy(request, tsig.start, tsig.original_id);
    variables(&mut data, &key.name, key.algorithm, tsig.time_signed, tsig.fudge, tsig.error);
    data.extend_from_slice(&(tsig.other.len() as u16).to_be_bytes());
    data.extend_from_slice(&tsig.other);
    if hmac::verify(&key.key, &data, &tsig.mac).is_err() {
        let response = error_response(request, &tsig, TsigError::BadSig, None);
        return Checked::Refused { error: TsigError::BadSig, response };
    }
    let signer =
        Signer { key: key.clone(), previous_mac: tsig.mac.clone(), original_id: tsig.original_id, first: true };
    if now().abs_diff(tsig.time_signed) > u64::from(tsig.fudge) {
        let response = error_response(request, &tsig, TsigError::BadTime, Some(signer));
        return Checked::Refused { error: TsigError::BadTime, response };
    }
    Checked::Valid(Box::new(signer))
}

impl Signer {
    /// Appends this message's TSIG record to `message` (a complete message without one).
    pub fn sign(&mut self, message: &mut Vec<u8>) {
        self.sign_with(message, 0, &[]);
    }

    fn sign_with(&mut self, message: &mut Vec<u8>, error: u16, other: &[u8]) {
        let time = now();
        let mut data = Vec::with_capacity(message.len() + 128);
        data.extend_from_slice(&(self.previous_mac.len() as u16).to_be_bytes());
        data.extend_from_slice(&self.previous_mac);
        data.extend_from_slice(message);
        if self.first {
            variables(&mut data, &self.key.name, self.key.algorithm, time, FUDGE, error);
            data.extend_from_slice(&(other.len() as u16).to_be_bytes());
            data.extend_from_slice(other);
        } else {
            data.extend_from_slice(&time.to_be_bytes()[2..]);
            data.extend_from_slice(&FUDGE.to_be_bytes());
        }
        let mac = hmac::sign(&self.key.key, &data).as_ref().to_vec();
        append_record(message, &self.key, time, &mac, self.original_id, error, other);
        self.previous_mac = mac;
        self.first = false;
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The request as it was before it was signed: without its TSIG record, ARCOUNT one less, the original ID.
fn unsigned_copy(request: &[u8], tsig_start: usize, original_id: u16) -> Vec<u8> {
    let mut data = request[..tsig_start].to_vec();
    data[..2].copy_from_slice(&original_id.to_be_bytes());
    let arcount = u16::from_be_bytes([data[10], data[11]]).saturating_sub(1);
    data[10..12].copy_from_slice(&arcount.to_be_bytes());
    data
}

/// The TSIG variables a first MAC covers, up to the Error field; the caller adds Other Len and Other Data.
fn variables(data: &mut Vec<u8>, key_name: &str, algorithm: Algorithm, time: u64, fudge: u16, error: u16) {
    canonical_name(data, key_name);
    data.extend_from_slice(&CLASS_ANY.to_be_bytes());
    data.extend_from_slice(&0u32.to_be_bytes());
    canonical_name(data, algorithm.name());
    data.extend_from_slice(&time.to_be_bytes()[2..]);
    data.extend_from_slice(&fudge.to_be_bytes());
    data.extend_from_slice(&error.to_be_bytes());
}

/// A name in canonical wire form: lowercase labels, uncompressed.
fn canonical_name(out: &mut Vec<u8>, name: &str) {
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
}

fn append_record(message: &mut Vec<u8>, key: &Key, time: u64, mac: &[u8], original_id: u16, error: u16, other: &[u8]) {
    canonical_name(message, &key.name);
    message.extend_from_slice(&TSIG_TYPE.to_be_bytes());
    message.extend_from_slice(&CLASS_ANY.to_be_bytes());
    message.extend_from_slice(&0u32.to_be_bytes());
    let mut rdata = Vec::with_capacity(64 + mac.len());
    canonical_name(&mut rdata, key.algorithm.name());
    rdata.extend_from_slice(&time.to_be_bytes()[2..]);
    rdata.extend_from_slice(&FUDGE.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(mac);
    rdata.extend_from_slice(&original_id.to_be_bytes());
    rdata.extend_from_slice(&error.to_be_bytes());
    rdata.extend_from_slice(&(other.len() as u16).to_be_bytes());
    rdata.extend_from_slice(other);
    message.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    message.extend_from_slice(&rdata);
    let arcount = u16::from_be_bytes([message[10], message[11]]).saturating_add(1);
    message[10..12].copy_from_slice(&arcount.to_be_bytes());
}

/// NOTAUTH to a signed request that is refused, with a TSIG record carrying the error: unsigned (empty MAC)
/// for BADKEY and BADSIG, signed for BADTIME with our time as Other Data (RFC 8945 5.2).
fn error_response(request: &[u8], tsig: &RequestTsig, error: TsigError, signer: Option<Signer>) -> Vec<u8> {
    let question_end = question_end(request).unwrap_or(12).min(tsig.start);
    let mut message = request[..question_end].to_vec();
    message[2] = 0x80 | (request[2] & 0x79); // QR, the opcode and RD as asked
    message[3] = 9; // NOTAUTH
    message[6..12].fill(0);
    message[4..6].copy_from_slice(&u16::from(question_end > 12).to_be_bytes());
    match signer {
        Some(mut signer) => signer.sign_with(&mut message, error as u16, &now().to_be_bytes()[2..]),
        None => {
            let key = Key::new(&tsig.key_name, Algorithm::parse(&tsig.algorithm).unwrap_or(Algorithm::Sha256), &[0]);
            append_record(&mut message, &key, tsig.time_signed, &[], tsig.original_id, error as u16, &[]);
        }
    }
    message
}

/// The end of the header and the one question, if it parses.
fn question_end(request: &[u8]) -> Option<usize> {
    let qdcount = u16::from_be_bytes([*request.get(4)?, *request.get(5)?]);
    if qdcount != 1 {
        return Some(12);
    }
    let end = skip_name(request, 12)? + 4;
    (end <= request.len()).then_some(end)
}

/// The offset after the name at `at` (following no pointers: a pointer ends a name).
fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *message.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return Some(at + 2),
            l if l & 0xC0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// The TSIG record, when it is the message's last additional record.
fn find(message: &[u8]) -> Option<RequestTsig> {
    let count = |i: usize| usize::from(u16::from_be_bytes([message[i], message[i + 1]]));
    if message.len() < 12 || count(10) == 0 {
        return None;
    }
    let mut at = 12;
    for _ in 0..count(4) {
        at = skip_name(message, at)? + 4;
    }
    let records = count(6) + count(8) + count(10);
    let mut start = at;
    for _ in 0..records {
        start = at;
        at = skip_name(message, at)?;
        let rdlen = usize::from(u16::from_be_bytes([*message.get(at + 8)?, *message.get(at + 9)?]));
        at += 10 + rdlen;
    }
    if at != message.len() {
        return None;
    }
    let mut decoder = BinDecoder::new(message).clone(u16::try_from(start).ok()?);
    let key_name = Name::read(&mut decoder).ok()?;
    let rtype = decoder.read_u16().ok()?.unverified();
    if rtype != TSIG_TYPE {
        return None;
    }
    let _class_ttl = (decoder.read_u16().ok()?, decoder.read_u32().ok()?, decoder.read_u16().ok()?);
    let algorithm = Name::read(&mut decoder).ok()?;
    let high = u64::from(decoder.read_u16().ok()?.unverified());
    let low = u64::from(decoder.read_u32().ok()?.unverified());
    let fudge = decoder.read_u16().ok()?.unverified();
    let mac_len = usize::from(decoder.read_u16().ok()?.unverified());
    let mac = decoder.read_vec(mac_len).ok()?.unverified();
    let original_id = decoder.read_u16().ok()?.unverified();
    let error = decoder.read_u16().ok()?.unverified();
    let other_len = usize::from(decoder.read_u16().ok()?.unverified());
    let other = decoder.read_vec(other_len).ok()?.unverified();
    Some(RequestTsig {
        start,
        key_name: key_name.to_lowercase().to_ascii(),
        algorithm: algorithm.to_ascii(),
        time_signed: (high << 32) | low,
        fudge,
        mac,
        original_id,
        error,
        other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<Vec<Key>, KeyError> {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("key");
        std::fs::write(&path, text).expect("write");
        load_keys(&path)
    }

    #[test]
    fn reads_bind_knot_and_kdig_notations() {
        let secret = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0";
        let bind = file(&format!("key \"xfr.key\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret}\";\n}};\n"));
        let knot = file(&format!(
            "# hmac-sha256:xfr.key:{secret}\nkey:\n  - id: xfr.key\n    algorithm: hmac-sha256\n    secret: {secret}\n"
        ));
        let kdig = file(&format!("hmac-sha256:xfr.key:{secret}\n"));
        for keys in [bind, knot, kdig] {
            let keys = keys.expect("keys");
            assert_eq!(keys.len(), 1);
            assert_eq!((keys[0].name.as_str(), keys[0].algorithm), ("xfr.key.", Algorithm::Sha256));
        }
        let message = file("hmac-md5:k:c2VjcmV0\n").expect_err("md5").to_string();
        assert!(message.contains("key \"k\": algorithm \"hmac-md5\""), "{message}");
        assert!(file("nothing here\n").expect_err("no key").to_string().contains("no key in it"));
        assert!(file("hmac-sha256:k:!!!\n").expect_err("base64").to_string().contains("not base64"));
    }
}
