//! Splitting the backend byte stream into messages, with a cap on one message.
//!
//! postgres-protocol's `Message::parse` trusts the declared length: it
//! reserves whatever a server claims and, on 32-bit targets, `len + 1`
//! overflows for 0xFFFF_FFFF. So the header is checked here (known tag,
//! 4 ≤ length ≤ cap) and `parse` only ever sees a complete frame. The buffer
//! grows with bytes actually received, never by a declared length.

use bytes::{Bytes, BytesMut};
use postgres_protocol::message::backend::{self, Message};

use crate::protocol::values::{ValueRanges, ValueSpan};
use crate::PgError;

/// Tag byte plus the 4-byte length.
pub(crate) const HEADER_LEN: usize = 5;

/// Whether `tag` starts a message a PostgreSQL 3.x backend may send.
#[inline]
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

/// The tag and declared length (which counts itself, not the tag) of the
/// frame starting at `buf`, once its header has arrived.
#[inline]
fn header(buf: &[u8]) -> Option<(u8, u32)> {
    match buf.get(..HEADER_LEN)? {
        &[tag, a, b, c, d] => Some((tag, u32::from_be_bytes([a, b, c, d]))),
        _ => None,
    }
}

/// Whether a declared length is one we accept: at least the length field
/// itself, at most the cap.
#[inline]
fn length_allowed(declared: u32, max_message_size: usize) -> bool {
    // u64 so the comparison cannot wrap on 32-bit targets.
    declared >= 4 && u64::from(declared) <= max_message_size as u64
}

/// The total length (tag included) of the frame starting at `buf`, once its
/// header is complete; an error when the header is invalid.
///
/// Runs twice per message (scanning, then splitting), so the accepted case
/// is a few comparisons and every error is built out of line.
#[inline]
pub(crate) fn frame_len(buf: &[u8], max_message_size: usize) -> Result<Option<usize>, PgError> {
    let Some((tag, declared)) = header(buf) else {
        return Ok(None);
    };
    if !is_backend_tag(tag) || !length_allowed(declared, max_message_size) {
        return Err(invalid_header(tag, declared, max_message_size));
    }
    // declared ≤ max_message_size ≤ usize::MAX, and +1 for the tag cannot
    // overflow unless the cap itself is usize::MAX: checked_add to be sure.
    match (declared as usize).checked_add(1) {
        Some(total) => Ok(Some(total)),
        None => Err(invalid_header(tag, declared, max_message_size)),
    }
}

/// Why a header `frame_len` refused is invalid.
#[cold]
#[inline(never)]
fn invalid_header(tag: u8, declared: u32, max_message_size: usize) -> PgError {
    PgError::Protocol(if !is_backend_tag(tag) {
        format!(
            "unknown message type {:?} (0x{tag:02x}) from the server",
            char::from(tag)
        )
    } else if declared < 4 {
        format!(
            "message {:?} declares length {declared}, below the minimum of 4",
            char::from(tag)
        )
    } else if u64::from(declared) > max_message_size as u64 {
        format!(
            "message {:?} declares {declared} bytes, over the limit of {max_message_size} \
             (Config::max_message_size)",
            char::from(tag)
        )
    } else {
        "message length overflows".to_string()
    })
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

    /// Where the run of complete, valid DataRow and CopyData frames
    /// starting `offset` bytes in ends, scanning no further once `limit` is
    /// reached. A large result or COPY TO is mostly these: this is the tight
    /// loop over them. Anything else (another tag, an incomplete or invalid
    /// header) ends the run and is left to [`frame_at`](Self::frame_at),
    /// which reports errors.
    #[inline]
    pub(crate) fn skip_data(&self, offset: usize, limit: usize) -> usize {
        let mut at = offset;
        while at < limit {
            let Some((b'D' | b'd', declared)) = header(self.buf.get(at..).unwrap_or_default())
            else {
                break;
            };
            if !length_allowed(declared, self.max_message_size) {
                break;
            }
            match at.checked_add(declared as usize + 1) {
                Some(end) if end <= self.buf.len() => at = end,
                _ => break,
            }
        }
        at
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
        Err(e) => Err(malformed(tag, e)),
    }
}

/// What postgres-protocol's parser refused, as our error.
#[cold]
fn malformed(tag: u8, e: std::io::Error) -> PgError {
    PgError::Protocol(format!(
        "malformed message {:?} from the server: {e}",
        char::from(tag)
    ))
}

/// A chunk of complete frames, read front to back. Taking a frame moves an
/// offset; only what outlives the read (a row, COPY data, a command tag)
/// is sliced off the chunk, one reference count each.
///
/// The actor hands over only frames whose headers it has checked, so here
/// only completeness is checked again before a frame is read: a cut one is
/// an error, and postgres-protocol never sees one (it would reserve the
/// rest).
#[derive(Default)]
pub(crate) struct FrameCursor {
    chunk: Bytes,
    at: usize,
}

impl FrameCursor {
    pub(crate) fn new(chunk: Bytes) -> Self {
        FrameCursor { chunk, at: 0 }
    }

    /// The next frame's tag and where its bytes lie, header included; the
    /// offset moves past it.
    #[inline]
    fn take(&mut self) -> Result<Option<(u8, std::ops::Range<usize>)>, PgError> {
        let rest = &self.chunk[self.at..];
        let Some((tag, len)) = complete_frame(rest)? else {
            return Ok(None);
        };
        let frame = self.at..self.at + len;
        self.at = frame.end;
        Ok(Some((tag, frame)))
    }

    /// The next message, parsed by postgres-protocol (but for the bodiless
    /// ones, built here).
    pub(crate) fn next_message(&mut self) -> Result<Option<Message>, PgError> {
        match self.take()? {
            Some((tag, frame)) => self.parse(tag, frame).map(Some),
            None => Ok(None),
        }
    }

    /// The next message, DataRow, CopyData, CommandComplete and
    /// ReadyForQuery read here (see [`Backend`]).
    pub(crate) fn next_backend(&mut self) -> Result<Option<Backend>, PgError> {
        let Some((tag, frame)) = self.take()? else {
            return Ok(None);
        };
        let body = frame.start + HEADER_LEN..frame.end;
        let backend = match tag {
            backend::DATA_ROW_TAG => Backend::Row(raw_row(self.chunk.slice(frame))?),
            backend::COPY_DATA_TAG => Backend::CopyData(self.chunk.slice(body)),
            // A tag and its NUL, which must be the body's only one and last.
            backend::COMMAND_COMPLETE_TAG
                if self.chunk[body.clone()].iter().position(|&b| b == 0)
                    == Some(body.len().wrapping_sub(1)) =>
            {
                Backend::Complete(CommandTag(self.chunk.slice(body.start..body.end - 1)))
            }
            // Just the status byte.
            backend::READY_FOR_QUERY_TAG if body.len() == 1 => Backend::Ready,
            // Anything else, and the two above when malformed (which
            // postgres-protocol then refuses).
            _ => Backend::Other(self.parse(tag, frame)?),
        };
        Ok(Some(backend))
    }

    /// The frame at `frame` as postgres-protocol's message.
    #[inline]
    fn parse(&self, tag: u8, frame: std::ops::Range<usize>) -> Result<Message, PgError> {
        if frame.len() == HEADER_LEN {
            if let Some(message) = bodiless(tag) {
                return Ok(message);
            }
        }
        // postgres-protocol parses from a buffer of its own; these
        // messages are few (descriptions, errors, notices).
        parse_frame(BytesMut::from(&self.chunk[frame]))
    }
}

/// The next frame's tag and total length; `None` when no bytes are left,
/// an error when a frame is cut short or declares less than its own length
/// field. The actor checked each header fully (tag, size cap) already: on
/// this path, run for every message of every answer, only what keeps the
/// slicing in bounds is checked again.
#[inline]
fn complete_frame(frames: &[u8]) -> Result<Option<(u8, usize)>, PgError> {
    let Some((tag, declared)) = header(frames) else {
        return match frames.is_empty() {
            true => Ok(None),
            false => Err(truncated()),
        };
    };
    if declared < 4 {
        return Err(invalid_header(tag, declared, usize::MAX));
    }
    if u64::from(declared) + 1 > frames.len() as u64 {
        return Err(truncated());
    }
    Ok(Some((tag, declared as usize + 1)))
}

/// A backend message as answers are read. postgres-protocol's bodies cut a
/// `Bytes` out of the frame and another out of that (two reference counts
/// taken and dropped per message); a row here keeps its whole frame, COPY
/// data and a command tag the one slice they need, and ReadyForQuery
/// nothing. These four are every answer's bulk: a round trip's
/// CommandComplete and ReadyForQuery, a stream's rows.
pub(crate) enum Backend {
    /// A DataRow.
    Row(RawRow),
    /// A CopyData's payload.
    CopyData(Bytes),
    /// A CommandComplete.
    Complete(CommandTag),
    /// A ReadyForQuery (its transaction status is the actor's to track).
    Ready,
    /// Any other message.
    Other(Message),
}

impl Backend {
    /// The tag byte of the messages that can end an answer, else 0.
    pub(crate) fn ending_tag(&self) -> u8 {
        match self {
            Backend::Complete(_) => backend::COMMAND_COMPLETE_TAG,
            Backend::Ready => backend::READY_FOR_QUERY_TAG,
            Backend::Other(message) => ending_tag(message),
            Backend::Row(_) | Backend::CopyData(_) => 0,
        }
    }
}

/// The tag byte of the messages that can end an answer, else 0.
pub(crate) fn ending_tag(message: &Message) -> u8 {
    match message {
        Message::ReadyForQuery(_) => backend::READY_FOR_QUERY_TAG,
        Message::PortalSuspended => backend::PORTAL_SUSPENDED_TAG,
        Message::CommandComplete(_) => backend::COMMAND_COMPLETE_TAG,
        Message::EmptyQueryResponse => backend::EMPTY_QUERY_RESPONSE_TAG,
        Message::ErrorResponse(_) => backend::ERROR_RESPONSE_TAG,
        _ => 0,
    }
}

/// A CommandComplete's tag ("INSERT 0 1"), without its NUL.
pub(crate) struct CommandTag(Bytes);

impl CommandTag {
    /// The tag as text; a protocol error if it is not UTF-8.
    pub(crate) fn as_str(&self) -> Result<&str, PgError> {
        std::str::from_utf8(&self.0)
            .map_err(|e| PgError::Protocol(format!("malformed command tag: {e}")))
    }
}

/// A DataRow's bytes and where each value lies in them.
pub(crate) struct RawRow {
    pub(crate) frame: Bytes,
    pub(crate) values: ValueRanges,
}

/// Reads a DataRow frame's value count and lengths: every value must lie
/// inside the frame, and the frame hold nothing after the last.
fn raw_row(frame: Bytes) -> Result<RawRow, PgError> {
    let bad = |why: &str| PgError::Protocol(format!("malformed row from the server: {why}"));
    let count = match frame.get(HEADER_LEN..HEADER_LEN + 2) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => return Err(bad("no value count")),
    };
    let mut values = ValueRanges::with_capacity(usize::from(count));
    let mut at = HEADER_LEN + 2;
    for _ in 0..count {
        let len = match frame.get(at..at + 4) {
            Some(&[a, b, c, d]) => i32::from_be_bytes([a, b, c, d]),
            _ => return Err(bad("a value's length is cut off")),
        };
        at += 4;
        if len == -1 {
            values.push(ValueSpan::NULL);
            continue;
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| at.checked_add(len))
            .filter(|&end| end <= frame.len())
            .ok_or_else(|| bad("a value runs past the message"))?;
        values.push(ValueSpan::new(at, end).ok_or_else(|| bad("a value past 4 GiB"))?);
        at = end;
    }
    if at != frame.len() {
        return Err(bad("bytes after the last value"));
    }
    Ok(RawRow { frame, values })
}

/// The messages that are a tag and nothing else, built here: `parse` would
/// cut a `Bytes` off for each (a reference count taken and dropped), a
/// cost paid on every round trip for BindComplete alone. A bodiless tag
/// that declares a body still goes to `parse`, which refuses it.
fn bodiless(tag: u8) -> Option<Message> {
    Some(match tag {
        backend::PARSE_COMPLETE_TAG => Message::ParseComplete,
        backend::BIND_COMPLETE_TAG => Message::BindComplete,
        backend::CLOSE_COMPLETE_TAG => Message::CloseComplete,
        backend::NO_DATA_TAG => Message::NoData,
        backend::PORTAL_SUSPENDED_TAG => Message::PortalSuspended,
        backend::EMPTY_QUERY_RESPONSE_TAG => Message::EmptyQueryResponse,
        backend::COPY_DONE_TAG => Message::CopyDone,
        _ => return None,
    })
}

#[cold]
fn truncated() -> PgError {
    PgError::Protocol("truncated message in a response chunk".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    /// Reads one message off the front of `chunk` through a cursor.
    fn next_message(chunk: &mut BytesMut) -> Result<Option<Message>, PgError> {
        let mut cursor = FrameCursor::new(Bytes::copy_from_slice(chunk));
        let message = cursor.next_message();
        chunk.advance(cursor.at);
        message
    }

    /// [`next_message`] as [`FrameCursor::next_backend`] reads it.
    fn next_backend(chunk: &mut BytesMut) -> Result<Option<Backend>, PgError> {
        let mut cursor = FrameCursor::new(Bytes::copy_from_slice(chunk));
        let backend = cursor.next_backend();
        chunk.advance(cursor.at);
        backend
    }

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

    fn data_row(values: &[u8]) -> Vec<u8> {
        let mut frame = vec![b'D'];
        frame.extend_from_slice(&(4 + 2 + values.len() as u32).to_be_bytes());
        frame.extend_from_slice(&1u16.to_be_bytes());
        frame.extend_from_slice(values);
        frame
    }

    #[test]
    fn data_frames_are_skipped_up_to_anything_else() {
        let mut r = FrameReader::new(1024);
        let row = data_row(b"\x00\x00\x00\x01x");
        let mut copy_data = row.clone();
        copy_data[0] = b'd';
        for frame in [&row, &copy_data, &row] {
            r.extend(frame);
        }
        r.extend(&ready_for_query());
        assert_eq!(r.skip_data(0, usize::MAX), 3 * row.len());
        // The limit is checked before each row, so the row under way ends it.
        assert_eq!(r.skip_data(0, row.len() + 1), 2 * row.len());
        assert_eq!(r.skip_data(3 * row.len(), usize::MAX), 3 * row.len());
        // An incomplete row or an invalid header ends the run, unreported.
        let mut r = FrameReader::new(1024);
        r.extend(&row);
        r.extend(&row[..row.len() - 1]);
        assert_eq!(r.skip_data(0, usize::MAX), row.len());
        let mut r = FrameReader::new(8);
        r.extend(&row);
        assert_eq!(r.skip_data(0, usize::MAX), 0);
        assert!(r.frame_at(0).is_err());
    }

    #[test]
    fn next_message_refuses_a_truncated_chunk() {
        let row = data_row(b"\x00\x00\x00\x01x");
        let mut chunk = BytesMut::from(&row[..]);
        chunk.extend_from_slice(&row[..row.len() - 2]);
        assert!(matches!(
            next_message(&mut chunk),
            Ok(Some(Message::DataRow(_)))
        ));
        assert!(next_message(&mut chunk).is_err());
        let mut header_only = BytesMut::from(&row[..3]);
        assert!(next_message(&mut header_only).is_err());
        assert!(matches!(next_message(&mut BytesMut::new()), Ok(None)));
    }

    #[test]
    fn bodiless_messages_are_built_and_checked_like_parsed_ones() {
        let mut chunk = BytesMut::new();
        for tag in [b'1', b'2', b'3', b'n', b's', b'I', b'c'] {
            chunk.extend_from_slice(&[tag, 0, 0, 0, 4]);
        }
        chunk.extend_from_slice(&ready_for_query());
        let mut parsed = Vec::new();
        while let Some(message) = next_message(&mut chunk).unwrap() {
            parsed.push(message);
        }
        assert!(matches!(
            parsed.as_slice(),
            [
                Message::ParseComplete,
                Message::BindComplete,
                Message::CloseComplete,
                Message::NoData,
                Message::PortalSuspended,
                Message::EmptyQueryResponse,
                Message::CopyDone,
                Message::ReadyForQuery(_),
            ]
        ));
        // A BindComplete that declares a body is malformed, as `parse` says.
        let mut chunk = BytesMut::from(&[b'2', 0, 0, 0, 5, 0][..]);
        assert!(next_message(&mut chunk).is_err());
    }

    #[test]
    fn malformed_body_is_an_error() {
        // A CommandComplete whose tag lacks its terminating NUL.
        let frame = BytesMut::from(&[b'C', 0, 0, 0, 6, b'o', b'k'][..]);
        assert!(parse_frame(frame).is_err());
    }

    /// A DataRow frame with `count` declared values and `body` after it.
    fn row_frame(count: u16, body: &[u8]) -> BytesMut {
        let mut frame = vec![b'D'];
        frame.extend_from_slice(&(4 + 2 + body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&count.to_be_bytes());
        frame.extend_from_slice(body);
        BytesMut::from(&frame[..])
    }

    #[test]
    fn rows_keep_their_frame_and_the_spans_of_their_values() {
        // "ab", NULL, "" then a ReadyForQuery in the same chunk.
        let mut chunk = row_frame(3, b"\x00\x00\x00\x02ab\xff\xff\xff\xff\x00\x00\x00\x00");
        chunk.extend_from_slice(&ready_for_query());
        let Ok(Some(Backend::Row(row))) = next_backend(&mut chunk) else {
            panic!("expected a row");
        };
        let spans: Vec<_> = row.values.iter().map(|v| v.range()).collect();
        assert_eq!(spans, vec![Some(11..13), None, Some(21..21)]);
        assert_eq!(&row.frame[11..13], b"ab");
        assert!(matches!(next_backend(&mut chunk), Ok(Some(Backend::Ready))));
        assert!(matches!(next_backend(&mut chunk), Ok(None)));
    }

    #[test]
    fn malformed_rows_are_errors() {
        let bodies: [(u16, &[u8]); 5] = [
            // A value longer than the message.
            (1, b"\x00\x00\x00\x09ab"),
            // Bytes after the last value.
            (1, b"\x00\x00\x00\x01abc"),
            // A length cut off.
            (2, b"\x00\x00\x00\x01a\x00\x00"),
            // A negative length other than NULL's.
            (1, b"\xff\xff\xff\xfe"),
            // Fewer values than declared.
            (3, b"\x00\x00\x00\x01a"),
        ];
        for (count, body) in bodies {
            assert!(
                next_backend(&mut row_frame(count, body)).is_err(),
                "{body:?}"
            );
        }
        // No value count at all.
        let mut no_count = BytesMut::from(&[b'D', 0, 0, 0, 5, 0][..]);
        assert!(next_backend(&mut no_count).is_err());
    }

    #[test]
    fn copy_data_is_its_payload_and_a_cut_frame_is_an_error() {
        let mut chunk = BytesMut::from(&[b'd', 0, 0, 0, 7, b'x', b'y', b'z'][..]);
        match next_backend(&mut chunk) {
            Ok(Some(Backend::CopyData(data))) => assert_eq!(&data[..], b"xyz"),
            _ => panic!("expected CopyData"),
        }
        assert!(chunk.is_empty());
        let mut cut = BytesMut::from(&[b'd', 0, 0, 0, 7, b'x'][..]);
        assert!(next_backend(&mut cut).is_err());
        let mut cut_row = row_frame(1, b"\x00\x00\x00\x01a");
        cut_row.truncate(cut_row.len() - 1);
        assert!(next_backend(&mut cut_row).is_err());
    }

    fn command_complete(body: &[u8]) -> BytesMut {
        let mut frame = vec![b'C'];
        frame.extend_from_slice(&(4 + body.len() as u32).to_be_bytes());
        frame.extend_from_slice(body);
        BytesMut::from(&frame[..])
    }

    #[test]
    fn a_command_tag_is_its_text_and_a_malformed_one_is_an_error() {
        let mut chunk = command_complete(b"INSERT 0 1\0");
        chunk.extend_from_slice(&ready_for_query());
        let Ok(Some(Backend::Complete(tag))) = next_backend(&mut chunk) else {
            panic!("expected CommandComplete");
        };
        assert_eq!(tag.as_str().unwrap(), "INSERT 0 1");
        assert!(matches!(next_backend(&mut chunk), Ok(Some(Backend::Ready))));
        assert!(chunk.is_empty());
        // No NUL, a NUL before the end, nothing at all: postgres-protocol
        // refuses what the fast path does not take.
        for body in [&b"SELECT 1"[..], b"SELECT\0 1\0", b""] {
            assert!(
                next_backend(&mut command_complete(body)).is_err(),
                "{body:?}"
            );
        }
        let Ok(Some(Backend::Complete(tag))) = next_backend(&mut command_complete(b"\xff\0"))
        else {
            panic!("expected CommandComplete");
        };
        assert!(tag.as_str().is_err());
    }

    #[test]
    fn ready_for_query_is_one_status_byte() {
        let mut long = BytesMut::from(&[b'Z', 0, 0, 0, 6, b'I', b'I'][..]);
        assert!(next_backend(&mut long).is_err());
        let mut short = BytesMut::from(&[b'Z', 0, 0, 0, 4][..]);
        assert!(next_backend(&mut short).is_err());
    }

    #[test]
    fn a_length_below_its_own_four_bytes_is_an_error_not_a_panic() {
        for tag in [b'D', b'd', b'C', b'Z', b'2'] {
            let mut chunk = BytesMut::from(&[tag, 0, 0, 0, 3, 0, 0][..]);
            assert!(next_backend(&mut chunk).is_err(), "{}", char::from(tag));
            assert!(next_message(&mut chunk).is_err(), "{}", char::from(tag));
        }
    }
}
