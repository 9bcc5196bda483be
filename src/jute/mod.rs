//! Jute, ZooKeeper's record encoding — the primitives.
//!
//! Owns: reading and writing the jute primitive types over byte buffers. Pure: no I/O, no clock.
//! Must not know about opcodes or sessions; records built from these primitives live in
//! [`records`], and request/response framing in `crate::proto`.
//!
//! Layout (all integers big-endian, as Java's `DataOutputStream` writes them):
//!
//! | jute type      | bytes                                                              |
//! |----------------|--------------------------------------------------------------------|
//! | `int`          | 4, two's complement                                                |
//! | `long`         | 8, two's complement                                                |
//! | `boolean`      | 1, `0` false, anything else true                                   |
//! | `buffer`       | `int` length, then that many bytes; length `-1` means null         |
//! | `ustring`      | `int` length, then that many UTF-8 bytes; `-1` means null          |
//! | `vector<T>`    | `int` count, then each `T`; `-1` means null (read back as empty)   |
//! | record         | its fields in declaration order, no header, no padding             |
//!
//! Every read checks the remaining length first and returns [`DecodeError`] instead of
//! panicking, so any byte string can be fed to the decoder (see the fuzz target and the
//! property tests).

pub mod records;

use bytes::{BufMut, Bytes, BytesMut};

/// Why a record could not be decoded. The connection that sent it is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record ends early: {needed} more bytes needed at offset {at}")]
    Short { at: usize, needed: usize },
    #[error("invalid length {len} at offset {at}")]
    BadLength { at: usize, len: i32 },
    #[error("string at offset {at} is not UTF-8")]
    Utf8 { at: usize },
    #[error("{0}")]
    Invalid(String),
}

/// A cursor over one frame's bytes. Buffers come out as zero-copy slices of the frame.
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Short {
                at: self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.take(1)?[0] != 0)
    }

    /// A length prefix: `-1` is null, other negatives and lengths past the end are errors.
    fn len(&mut self) -> Result<Option<usize>, DecodeError> {
        let at = self.pos;
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 || len as usize > self.remaining() {
            return Err(DecodeError::BadLength { at, len });
        }
        Ok(Some(len as usize))
    }

    pub fn buffer(&mut self) -> Result<Option<Bytes>, DecodeError> {
        match self.len()? {
            None => Ok(None),
            Some(n) => {
                let start = self.pos;
                self.pos += n;
                Ok(Some(self.buf.slice(start..start + n)))
            }
        }
    }

    /// A buffer copied into an allocation of its own, for data that outlives the frame
    /// (cheaper than a slice of the frame followed by a copy).
    pub fn buffer_owned(&mut self) -> Result<Option<Bytes>, DecodeError> {
        match self.len()? {
            None => Ok(None),
            Some(n) => Ok(Some(Bytes::copy_from_slice(self.take(n)?))),
        }
    }

    pub fn ustring(&mut self) -> Result<Option<String>, DecodeError> {
        let at = self.pos;
        match self.len()? {
            None => Ok(None),
            Some(n) => {
                let b = self.take(n)?;
                String::from_utf8(b.to_vec())
                    .map(Some)
                    .map_err(|_| DecodeError::Utf8 { at })
            }
        }
    }

    /// A string that must be present; null reads as empty (ZooKeeper then rejects the path).
    pub fn string(&mut self) -> Result<String, DecodeError> {
        Ok(self.ustring()?.unwrap_or_default())
    }

    /// A vector; null reads as empty. Each element must take at least one byte, so a huge
    /// count in a small frame fails fast instead of allocating.
    pub fn vec<T>(
        &mut self,
        mut item: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let at = self.pos;
        let count = self.i32()?;
        if count == -1 {
            return Ok(Vec::new());
        }
        if count < 0 || count as usize > self.remaining() {
            return Err(DecodeError::BadLength { at, len: count });
        }
        let mut v = Vec::with_capacity(count as usize);
        for _ in 0..count {
            v.push(item(self)?);
        }
        Ok(v)
    }

    pub fn strings(&mut self) -> Result<Vec<String>, DecodeError> {
        self.vec(|r| r.string())
    }
}

/// Appends jute primitives to a growing buffer.
#[derive(Default)]
pub struct Writer {
    buf: BytesMut,
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            buf: BytesMut::with_capacity(128),
        }
    }

    /// A writer whose buffer starts at `bytes` (no regrowth below that).
    pub fn with_capacity(bytes: usize) -> Self {
        Writer {
            buf: BytesMut::with_capacity(bytes),
        }
    }

    /// A writer that starts with a 4-byte placeholder for the frame length; see [`Writer::finish_frame`].
    pub fn framed() -> Self {
        Writer::framed_with_capacity(128)
    }

    /// [`Writer::framed`] with room for `bytes` in all, so a large frame is allocated once
    /// and at its size (a doubled buffer would hold twice the memory while it is queued).
    pub fn framed_with_capacity(bytes: usize) -> Self {
        let mut w = Writer::with_capacity(bytes);
        w.i32(0);
        w
    }

    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.put_i32(v);
        self
    }

    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.put_i64(v);
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.put_u8(v as u8);
        self
    }

    pub fn buffer(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            None => self.i32(-1),
            Some(b) => {
                self.buf.put_i32(b.len() as i32);
                self.buf.put_slice(b);
                self
            }
        }
    }

    pub fn ustring(&mut self, v: Option<&str>) -> &mut Self {
        self.buffer(v.map(str::as_bytes))
    }

    pub fn string(&mut self, v: &str) -> &mut Self {
        self.buffer(Some(v.as_bytes()))
    }

    pub fn vec<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Writer, &T)) -> &mut Self {
        self.i32(items.len() as i32);
        for it in items {
            each(self, it);
        }
        self
    }

    pub fn strings<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        self.vec(items, |w, s| {
            w.string(s.as_ref());
        })
    }

    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.put_slice(b);
        self
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_bytes(self) -> Bytes {
        self.buf.freeze()
    }

    /// Overwrites the int32 at byte `at` (a length written before what it counts).
    pub fn patch_i32(&mut self, at: usize, v: i32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Fills in the length placeholder written by [`Writer::framed`] and returns the frame.
    pub fn finish_frame(mut self) -> Bytes {
        let n = (self.buf.len() - 4) as i32;
        self.buf[..4].copy_from_slice(&n.to_be_bytes());
        self.buf.freeze()
    }
}

/// A type with a jute encoding.
pub trait Record: Sized {
    fn read(r: &mut Reader) -> Result<Self, DecodeError>;
    fn write(&self, w: &mut Writer);

    fn to_bytes(&self) -> Bytes {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_bytes()
    }

    fn from_bytes(b: Bytes) -> Result<Self, DecodeError> {
        Self::read(&mut Reader::new(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip() {
        let mut w = Writer::new();
        w.i32(-7)
            .i64(1 << 40)
            .bool(true)
            .buffer(None)
            .buffer(Some(b"ab"))
            .ustring(Some("/x"))
            .strings(&["a", "b"]);
        let mut r = Reader::new(w.into_bytes());
        assert_eq!(r.i32().unwrap(), -7);
        assert_eq!(r.i64().unwrap(), 1 << 40);
        assert!(r.bool().unwrap());
        assert_eq!(r.buffer().unwrap(), None);
        assert_eq!(r.buffer().unwrap().unwrap(), Bytes::from_static(b"ab"));
        assert_eq!(r.ustring().unwrap().unwrap(), "/x");
        assert_eq!(r.strings().unwrap(), vec!["a", "b"]);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn lengths_past_the_end_are_errors() {
        let mut w = Writer::new();
        w.i32(100).raw(b"abc");
        let mut r = Reader::new(w.into_bytes());
        assert!(matches!(r.buffer(), Err(DecodeError::BadLength { .. })));
        let mut r = Reader::new(Bytes::from_static(&[0, 0]));
        assert!(matches!(r.i32(), Err(DecodeError::Short { .. })));
        let mut w = Writer::new();
        w.i32(i32::MAX);
        assert!(Reader::new(w.into_bytes()).strings().is_err());
    }

    #[test]
    fn frame_length_is_filled_in() {
        let mut w = Writer::framed();
        w.i32(5);
        assert_eq!(&w.finish_frame()[..], &[0, 0, 0, 4, 0, 0, 0, 5]);
    }
}
