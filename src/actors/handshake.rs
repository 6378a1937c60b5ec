//! Runs the startup state machine over a fresh transport, before the
//! connection actor takes the socket over.

use bytes::BytesMut;

use crate::protocol::framing::{parse_frame, FrameReader};
use crate::protocol::startup::{Progress, SessionInfo, Startup, StartupParams};
use crate::transport::{write_all, AsyncTransport};
use crate::PgError;

/// Authenticates and reads the session's parameters. Returns what the server
/// said and the reader (which may hold bytes that followed ReadyForQuery).
pub(crate) async fn handshake<T: AsyncTransport>(
    transport: &T,
    params: StartupParams,
    max_message_size: usize,
) -> Result<(SessionInfo, FrameReader), PgError> {
    let mut out = BytesMut::new();
    let mut startup = Startup::begin(params, &mut out)?;
    let mut frames = FrameReader::new(max_message_size);
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        if !out.is_empty() {
            write_all(transport, &out)
                .await
                .map_err(|e| PgError::io("sending startup messages", e))?;
            out.clear();
        }
        while let Some(frame) = frames.next_frame()? {
            if startup.on_message(parse_frame(frame)?, &mut out)? == Progress::Ready {
                return Ok((startup.info, frames));
            }
        }
        if !out.is_empty() {
            continue;
        }
        let n = transport
            .read(&mut buf)
            .await
            .map_err(|e| PgError::io("reading the server's startup answer", e))?;
        if n == 0 {
            return Err(PgError::Closed(
                "the server closed the connection during startup".into(),
            ));
        }
        frames.extend(&buf[..n]);
    }
}
