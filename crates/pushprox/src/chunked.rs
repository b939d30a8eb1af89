//! HTTP/1.1 chunked bodies (RFC 9112 section 7.1), which Go's client writes for a scrape response of
//! unknown length. Extensions and trailers are read and dropped.

use crate::WireError;

pub fn decode(mut rest: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::new();
    loop {
        let (line, after) = split_line(rest)?;
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size).map_err(|_| WireError::Chunked)?.trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| WireError::Chunked)?;
        if size == 0 {
            // Trailers until the empty line (or the end, which Go's readers accept too).
            let mut trailers = after;
            while !trailers.is_empty() {
                let (line, next) = split_line(trailers)?;
                if line.is_empty() {
                    break;
                }
                trailers = next;
            }
            return Ok(body);
        }
        let data = after.get(..size).ok_or(WireError::Chunked)?;
        body.extend_from_slice(data);
        rest = after.get(size..).and_then(|r| r.strip_prefix(b"\r\n")).ok_or(WireError::Chunked)?;
    }
}

fn split_line(bytes: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let end = bytes.windows(2).position(|w| w == b"\r\n").ok_or(WireError::Chunked)?;
    Ok((&bytes[..end], &bytes[end + 2..]))
}
