//! One request's answer on its way from the connection actor to its caller:
//! what the caller's bounded channel had no room for waits here, in order.
//!
//! While only this answer is in flight, a backlog stops the actor reading
//! the socket (backpressure: memory stays bounded). While other requests
//! wait behind it, the actor keeps reading so they are not stuck behind a
//! caller that holds a stream without reading it; past
//! [`STALLED_STREAM_LIMIT`] the answer is failed with an error instead of
//! growing further.
//!
//! [`STALLED_STREAM_LIMIT`]: crate::STALLED_STREAM_LIMIT

use std::collections::VecDeque;
use std::task::Context;

use bytes::BytesMut;

use crate::actors::connection::Chunk;
use crate::actors::reply::{ReplySender, TrySendError};
use crate::PgError;

pub(crate) struct Answer {
    responses: ReplySender<Chunk>,
    backlog: VecDeque<BytesMut>,
    backlog_bytes: usize,
    /// The caller went away, or the answer was failed: discard the rest.
    abandoned: bool,
}

impl Answer {
    pub(crate) fn new(responses: ReplySender<Chunk>) -> Answer {
        Answer {
            responses,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            abandoned: false,
        }
    }

    /// Sends `chunk`, or queues it behind what is already waiting.
    pub(crate) fn push(&mut self, chunk: BytesMut) {
        if self.abandoned || chunk.is_empty() {
            return;
        }
        if self.backlog.is_empty() {
            match self.responses.try_send(Ok(chunk)) {
                Ok(()) => {}
                Err(TrySendError::Full(chunk)) => self.queue_back(chunk.unwrap_or_default()),
                Err(TrySendError::Gone) => self.abandon(),
            }
        } else {
            self.queue_back(chunk);
        }
    }

    fn queue_back(&mut self, chunk: BytesMut) {
        self.backlog_bytes += chunk.len();
        self.backlog.push_back(chunk);
    }

    fn abandon(&mut self) {
        self.abandoned = true;
        self.backlog.clear();
        self.backlog_bytes = 0;
    }

    /// Sends what waits while the caller has room.
    pub(crate) fn deliver(&mut self) {
        while let Some(chunk) = self.backlog.pop_front() {
            self.backlog_bytes -= chunk.len();
            match self.responses.try_send(Ok(chunk)) {
                Ok(()) => {}
                Err(TrySendError::Full(chunk)) => {
                    let chunk = chunk.unwrap_or_default();
                    self.backlog_bytes += chunk.len();
                    self.backlog.push_front(chunk);
                    return;
                }
                Err(TrySendError::Gone) => return self.abandon(),
            }
        }
    }

    /// Bytes waiting for room in the caller's channel.
    pub(crate) fn backlog_bytes(&self) -> usize {
        self.backlog_bytes
    }

    /// Whether chunks wait for room.
    pub(crate) fn is_waiting(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Whether the caller made room (or went away) since the last delivery.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> bool {
        self.is_waiting() && self.responses.poll_ready(cx).is_ready()
    }

    /// Ends the answer with `error` (delivered after what the caller
    /// already has) and discards the rest.
    pub(crate) fn fail(&mut self, error: PgError) {
        self.abandon();
        self.responses.force_send(Err(error));
    }

    /// Tells the caller the connection broke (its channel may be full).
    pub(crate) fn break_off(&self, error: PgError) {
        self.responses.force_send(Err(error));
    }
}
