//! Just enough of protobuf's wire format to rewrite a message field by field: walk its fields (keeping
//! each one's bytes, to copy it unchanged) and write length-delimited ones. remote_write's and Loki's bodies
//! are rewritten with it, so whatever fields they carry pass through untouched.

/// Why a snappy-compressed body could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snappy<E> {
    NotSnappy,
    /// Larger than the limit once decompressed.
    TooLarge,
    Rewrite(E),
}

/// Decompresses a snappy block body of at most `limit` bytes decompressed, rewrites it with `rewrite`,
/// and compresses the result again; with the count `rewrite` returns.
pub fn rewrite_snappy<E>(
    body: &[u8],
    limit: usize,
    rewrite: impl FnOnce(&[u8]) -> Result<(Vec<u8>, u64), E>,
) -> Result<(Vec<u8>, u64), Snappy<E>> {
    let length = snap::raw::decompress_len(body).map_err(|_| Snappy::NotSnappy)?;
    if length > limit {
        return Err(Snappy::TooLarge);
    }
    let decoded = snap::raw::Decoder::new().decompress_vec(body).map_err(|_| Snappy::NotSnappy)?;
    let (rewritten, count) = rewrite(&decoded).map_err(Snappy::Rewrite)?;
    let compressed = snap::raw::Encoder::new().compress_vec(&rewritten).map_err(|_| Snappy::NotSnappy)?;
    Ok((compressed, count))
}

/// A malformed message, named for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub fn put_bytes(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// One protobuf field: its number, its value, and its bytes as they were (to copy it unchanged).
pub struct Field<'a> {
    pub number: u64,
    pub value: Value<'a>,
    pub raw: &'a [u8],
}

pub enum Value<'a> {
    Bytes(&'a [u8]),
    Other,
}

/// The fields of one message, in order; an error ends them.
pub struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0, failed: false }
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or(Malformed("truncated varint"))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Malformed("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or(Malformed("truncated field"))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn field(&mut self) -> Result<Field<'a>, Malformed> {
        let start = self.at;
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return Err(Malformed("field number 0"));
        }
        let value = match key & 7 {
            0 => {
                self.varint()?;
                Value::Other
            }
            1 => {
                self.take(8)?;
                Value::Other
            }
            2 => {
                let length = usize::try_from(self.varint()?).map_err(|_| Malformed("length too large"))?;
                Value::Bytes(self.take(length)?)
            }
            5 => {
                self.take(4)?;
                Value::Other
            }
            _ => return Err(Malformed("unsupported wire type")),
        };
        Ok(Field { number, value, raw: &self.bytes[start..self.at] })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.bytes.len() {
            return None;
        }
        let field = self.field();
        self.failed = field.is_err();
        Some(field)
    }
}
