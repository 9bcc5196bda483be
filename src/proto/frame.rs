//! Framing: is a whole frame in the buffer yet, and is its length acceptable?
//!
//! Owns: the two-step decode of mini-redis — first [`check`] that a frame is complete and
//! within the limit, then hand its payload to the parser. Pure.
//!
//! Layout: `int32 length` (big-endian, not counting itself), then `length` payload bytes.
//! A negative length, or one above the limit, is a [`FrameError`]: the server logs it and
//! closes that connection. The limit is `jute.maxbuffer` plus [`HEADER_ALLOWANCE`] so that
//! a value of exactly `jute.maxbuffer` bytes still fits beside its path and headers.

/// Bytes allowed on top of jute.maxbuffer for headers, path and ACLs of a maximal value.
pub const HEADER_ALLOWANCE: usize = 1024;

/// Apache ZooKeeper's default jute.maxbuffer (0xfffff).
pub const DEFAULT_MAX_BUFFER: usize = 0xfffff;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is negative")]
    Negative(i32),
    #[error("frame length {len} exceeds the limit of {limit} bytes (jute.maxbuffer)")]
    TooLarge { len: usize, limit: usize },
}

/// Returns `Ok(Some(n))` when `buf` starts with a whole frame whose payload is `n` bytes,
/// `Ok(None)` when more bytes are needed.
pub fn check(buf: &[u8], limit: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 {
        return Err(FrameError::Negative(len));
    }
    let len = len as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    Ok(if buf.len() >= 4 + len {
        Some(len)
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_whole_and_bad() {
        assert_eq!(check(&[0, 0], 10), Ok(None));
        assert_eq!(check(&[0, 0, 0, 2, 1], 10), Ok(None));
        assert_eq!(check(&[0, 0, 0, 2, 1, 2, 3], 10), Ok(Some(2)));
        assert_eq!(
            check(&[255, 255, 255, 255], 10),
            Err(FrameError::Negative(-1))
        );
        assert!(matches!(
            check(&[0, 0, 1, 0], 10),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
