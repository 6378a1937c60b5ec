//! Splitting the backend byte stream into messages, with a cap on one message.
//!
//! postgres-protocol's `Message::parse` trusts the declared length: it
//! reserves whatever a server claims and, on 32-bit targets, `len + 1`
//! overflows for 0xFFFF_FFFF. So the header is checked here (known tag,
//! 4 ≤ length ≤ cap) and `parse` only ever sees a complete frame. The buffer
//! grows with bytes actually received, never by a declared length.

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;

use crate::PgError;

/// Tag byte plus the 4-byte length.
pub(crate) const HEADER_LEN: usize = 5;

/// Whether `tag` starts a message a PostgreSQL 3.x backend may send.
pub(crate) fn is_backend_tag(tag: u8) -> bool {
    matches!(
        tag,
        b'R' | b'K'
            | b'2'
            | b'3'
            | b'C'
            | b'd'
            | b'c'
            | b'G'
            | b'H'
            | b'W'
            | b'D'
            | b'I'
            | b'E'
            | b'V'
            | b'v'
            | b'n'
            | b'N'
            | b'A'
            | b't'
            | b'S'
            | b'1'
            | b's'
            | b'Z'
            | b'T'
    )
}

/// The total length (tag included) of the frame starting at `buf`, once its
/// header is complete; an error when the header is invalid.
pub(crate) fn frame_len(buf: &[u8], max_message_size: usize) -> Result<Option<usize>, PgError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let tag = header[0];
    if !is_backend_tag(tag) {
        return Err(PgError::Protocol(format!(
            "unknown message type {:?} (0x{tag:02x}) from the server",
            char::from(tag)
        )));
    }
    let declared = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if declared < 4 {
        return Err(PgError::Protocol(format!(
            "message {:?} declares length {declared}, below the minimum of 4",
            char::from(tag)
        )));
    }
    // u64 so the comparison cannot wrap on 32-bit targets.
    if u64::from(declared) > max_message_size as u64 {
        return Err(PgError::Protocol(format!(
            "message {:?} declares {declared} bytes, over the limit of {max_message_size} \
             (Config::max_message_size)",
            char::from(tag)
        )));
    }
    // declared ≤ max_message_size ≤ usize::MAX, and +1 for the tag cannot
    // overflow because a usize cap below usize::MAX was checked above
    // unless the cap itself is usize::MAX; use checked_add to be sure.
    let total = (declared as usize)
        .checked_add(1)
        .ok_or_else(|| PgError::Protocol("message length overflows".into()))?;
    Ok(Some(total))
}

/// Accumulates received bytes and hands out complete frames.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    max_message_size: usize,
}

impl FrameReader {
    /// A reader accepting messages up to `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        FrameReader {
            buf: BytesMut::new(),
            max_message_size,
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet handed out as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame (tag, length and body), if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<BytesMut>, PgError> {
        match frame_len(&self.buf, self.max_message_size)? {
            Some(len) if self.buf.len() >= len => Ok(Some(self.buf.split_to(len))),
            _ => Ok(None),
        }
    }

    /// The tag and length of the complete frame starting `offset` bytes
    /// into the buffer (where an earlier call said the last one ended), if
    /// it has fully arrived; for scanning a run of frames before taking
    /// them all at once with [`take`](Self::take).
    pub(crate) fn frame_at(&self, offset: usize) -> Result<Option<(u8, usize)>, PgError> {
        let rest = self.buf.get(offset..).unwrap_or_default();
        match frame_len(rest, self.max_message_size)? {
            Some(len) if rest.len() >= len => Ok(Some((rest[0], len))),
            _ => Ok(None),
        }
    }

    /// The byte at `offset`, if buffered.
    pub(crate) fn byte_at(&self, offset: usize) -> Option<u8> {
        self.buf.get(offset).copied()
    }

    /// Takes the first `len` bytes: frames scanned with
    /// [`frame_at`](Self::frame_at).
    pub(crate) fn take(&mut self, len: usize) -> BytesMut {
        self.buf.split_to(len.min(self.buf.len()))
    }

    /// The tag of the next complete frame, without taking it.
    pub fn peek_complete_tag(&self) -> Result<Option<u8>, PgError> {
        match frame_len(&self.buf, self.max_message_size)? {
            Some(len) if self.buf.len() >= len => Ok(Some(self.buf[0])),
            _ => Ok(None),
        }
    }
}

/// Parses one complete frame (as returned by [`FrameReader::next_frame`]).
pub fn parse_frame(mut frame: BytesMut) -> Result<Message, PgError> {
    let tag = frame.first().copied().unwrap_or(0);
    match Message::parse(&mut frame) {
        Ok(Some(message)) => Ok(message),
        Ok(None) => Err(PgError::Protocol(format!(
            "incomplete message {:?} handed to the parser",
            char::from(tag)
        ))),
        Err(e) => Err(PgError::Protocol(format!(
            "malformed message {:?} from the server: {e}",
            char::from(tag)
        ))),
    }
}

/// Splits a buffer of complete frames into messages, in order.
///
/// The actor hands over only frames it has checked, but the header is
/// checked again before postgres-protocol splits one off: it must never see
/// an incomplete frame.
pub(crate) fn next_message(frames: &mut BytesMut) -> Result<Option<Message>, PgError> {
    let Some(&tag) = frames.first() else {
        return Ok(None);
    };
    let truncated = || PgError::Protocol("truncated message in a response chunk".into());
    match frame_len(frames, usize::MAX)? {
        Some(len) if frames.len() >= len => {}
        _ => return Err(truncated()),
    }
    match Message::parse(frames) {
        Ok(Some(message)) => Ok(Some(message)),
        Ok(None) => Err(truncated()),
        Err(e) => Err(PgError::Protocol(format!(
            "malformed message {:?} from the server: {e}",
            char::from(tag)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_for_query() -> Vec<u8> {
        vec![b'Z', 0, 0, 0, 5, b'I']
    }

    #[test]
    fn frames_arrive_in_pieces() {
        let mut r = FrameReader::new(1024);
        let bytes = ready_for_query();
        r.extend(&bytes[..3]);
        assert!(r.next_frame().unwrap().is_none());
        r.extend(&bytes[3..]);
        let frame = r.next_frame().unwrap().unwrap();
        assert!(matches!(
            parse_frame(frame).unwrap(),
            Message::ReadyForQuery(_)
        ));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn unknown_tag_is_an_error() {
        let mut r = FrameReader::new(1024);
        r.extend(b"\x00\x00\x00\x00\x05x");
        let e = r.next_frame().unwrap_err();
        assert!(e.to_string().contains("unknown message type"), "{e}");
    }

    #[test]
    fn length_below_four_is_an_error() {
        let mut r = FrameReader::new(1024);
        r.extend(&[b'Z', 0, 0, 0, 3]);
        assert!(matches!(r.next_frame(), Err(PgError::Protocol(_))));
    }

    #[test]
    fn length_over_cap_is_an_error_not_an_allocation() {
        let mut r = FrameReader::new(1 << 20);
        r.extend(&[b'D', 0xff, 0xff, 0xff, 0xff]);
        let e = r.next_frame().unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
        assert!(r.buf.capacity() < 1024);
    }

    #[test]
    fn malformed_body_is_an_error() {
        // A CommandComplete whose tag lacks its terminating NUL.
        let frame = BytesMut::from(&[b'C', 0, 0, 0, 6, b'o', b'k'][..]);
        assert!(parse_frame(frame).is_err());
    }
}
