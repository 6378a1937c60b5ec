//! State the connection actor publishes for its handles to read without a
//! round trip: ParameterStatus values, the error that broke the connection,
//! the notice handler.
//!
//! Locks here are held only for a copy or an insert, never across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::sync::lock;

use crate::api::error::DbError;
use crate::PgError;

/// A user-supplied callback for NoticeResponse messages.
pub type NoticeHandler = Arc<dyn Fn(&DbError) + Send + Sync>;

/// A notification received through LISTEN.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Notification {
    /// The channel it was sent on.
    pub channel: String,
    /// The payload (possibly empty).
    pub payload: String,
    /// The process ID of the notifying backend.
    pub process_id: i32,
}

#[derive(Default)]
pub(crate) struct Shared {
    /// The status byte of the last ReadyForQuery: `I` idle, `T` in a
    /// transaction block, `E` in a failed one.
    transaction_status: std::sync::atomic::AtomicU8,
    /// Statement lookups answered without a Parse, and Parses sent.
    pub(crate) statement_hits: std::sync::atomic::AtomicU64,
    pub(crate) statement_misses: std::sync::atomic::AtomicU64,
    parameters: Mutex<HashMap<String, String>>,
    broken: OnceLock<PgError>,
    notice_handler: RwLock<Option<NoticeHandler>>,
    /// Bytes read from the server that wait in the actor for their callers
    /// (now, and the most ever).
    buffered_bytes: std::sync::atomic::AtomicUsize,
    peak_buffered_bytes: std::sync::atomic::AtomicUsize,
    /// Parameters set with `set_param`, in order, to apply again on a new
    /// session.
    session_params: Mutex<Vec<(String, String)>>,
    /// What the actor last published before going to sleep: how many
    /// commands it had taken from its mailbox (all but the two low bits),
    /// whether it was quiet (bit 1: nothing in flight or held back, though
    /// a lease may be open) and whether it was idle (bit 0: quiet, and no
    /// lease either).
    settled: std::sync::atomic::AtomicU64,
    /// The session ended because it was closed or its last handle went,
    /// not because it broke.
    ended_cleanly: std::sync::atomic::AtomicBool,
    /// A LISTEN was sent: the server may speak unasked, so no caller may
    /// hold the read turn (see `in_place`).
    listening: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(crate) fn new(parameters: HashMap<String, String>) -> Shared {
        Shared {
            parameters: Mutex::new(parameters),
            ..Shared::default()
        }
    }

    pub(crate) fn set_transaction_status(&self, status: u8) {
        self.transaction_status
            .store(status, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn transaction_status(&self) -> u8 {
        self.transaction_status
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The actor has taken `taken` commands and, if `quiet`, answered them
    /// all (nothing in flight, nothing held back), and, if `idle`, holds no
    /// lease either.
    pub(crate) fn publish_settled(&self, taken: u64, quiet: bool, idle: bool) {
        self.settled.store(
            taken << 2 | u64::from(quiet) << 1 | u64::from(idle && quiet),
            std::sync::atomic::Ordering::Release,
        );
    }

    /// The transaction status, if the actor had finished the first `sent`
    /// commands and taken no others when it last published.
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    pub(crate) fn status_if_settled(&self, sent: u64) -> Option<u8> {
        self.settled_after(sent).then(|| self.transaction_status())
    }

    /// Whether the actor had finished the first `sent` commands and taken
    /// no others when it last published.
    pub(crate) fn settled_after(&self, sent: u64) -> bool {
        self.settled.load(std::sync::atomic::Ordering::Acquire) == sent << 2 | 0b11
    }

    /// Whether the actor had answered the first `sent` commands, held none
    /// back and taken no others when it last published; a lease may be
    /// open (a transaction between two of its statements).
    pub(crate) fn quiet_after(&self, sent: u64) -> bool {
        self.settled.load(std::sync::atomic::Ordering::Acquire) & !0b01 == sent << 2 | 0b10
    }

    pub(crate) fn parameter(&self, name: &str) -> Option<String> {
        lock(&self.parameters).get(name).cloned()
    }

    pub(crate) fn set_parameter(&self, name: String, value: String) {
        lock(&self.parameters).insert(name, value);
    }

    /// Publishes how many bytes the actor holds for callers.
    pub(crate) fn set_buffered_bytes(&self, bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.buffered_bytes.store(bytes, Relaxed);
        self.peak_buffered_bytes.fetch_max(bytes, Relaxed);
    }

    /// The actor's buffered bytes: (now, peak).
    pub(crate) fn buffered_bytes(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.buffered_bytes.load(Relaxed),
            self.peak_buffered_bytes.load(Relaxed),
        )
    }

    /// Records a session parameter set on the server (run-time parameter
    /// names are case-insensitive, so `TimeZone` replaces `timezone`).
    pub(crate) fn remember_session_param(&self, name: &str, value: Option<&str>) {
        let mut params = lock(&self.session_params);
        params.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(value) = value {
            params.push((name.to_string(), value.to_string()));
        }
    }

    /// The server reset the session (`DISCARD ALL`): nothing to restore.
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    pub(crate) fn forget_session_params(&self) {
        lock(&self.session_params).clear();
    }

    pub(crate) fn session_params(&self) -> Vec<(String, String)> {
        lock(&self.session_params).clone()
    }

    /// Marks the session as one that listens for notifications.
    pub(crate) fn set_listening(&self) {
        self.listening
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether a LISTEN was ever sent on this session.
    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn set_ended_cleanly(&self) {
        self.ended_cleanly
            .store(true, std::sync::atomic::Ordering::Release);
    }

    pub(crate) fn ended_cleanly(&self) -> bool {
        self.ended_cleanly
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records why the connection broke; the first reason wins.
    pub(crate) fn set_broken(&self, error: PgError) {
        let _ = self.broken.set(error);
    }

    /// Why the connection is unusable, if it is.
    pub(crate) fn broken(&self) -> Option<PgError> {
        self.broken.get().cloned()
    }

    /// The error for a request whose answer never came.
    pub(crate) fn gone(&self) -> PgError {
        self.broken()
            .unwrap_or_else(|| PgError::Closed("the connection actor has stopped".into()))
    }

    pub(crate) fn set_notice_handler(&self, handler: Option<NoticeHandler>) {
        *crate::sync::write(&self.notice_handler) = handler;
    }

    pub(crate) fn notice_handler(&self) -> Option<NoticeHandler> {
        crate::sync::read(&self.notice_handler).clone()
    }

    pub(crate) fn notice(&self, notice: &DbError) {
        match self.notice_handler() {
            Some(handler) => handler(notice),
            None => log_notice(notice),
        }
    }
}

fn log_notice(notice: &DbError) {
    #[cfg(feature = "tracing")]
    tracing::info!(
        severity = %notice.severity,
        code = %notice.code,
        "server notice: {}",
        notice.message
    );
    #[cfg(not(feature = "tracing"))]
    let _ = notice;
}
