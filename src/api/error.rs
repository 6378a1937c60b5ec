//! Errors: one enum for everything a call can fail with, plus the server's own
//! error report (`DbError`) and a coarse classification for retry logic.
//!
//! `PgError` is `Clone` because one broken socket has to fail every request
//! that was waiting on it, each with the same error.

use std::fmt;
use std::io;
use std::sync::Arc;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorFields;

/// Everything a call into this crate can fail with.
///
/// `Display` includes the SQLSTATE for server errors, so a log line is enough
/// to tell a unique violation from a syntax error.
///
/// ```
/// use wasi_pg_client::{classify_error, ErrorClass, PgError};
/// let e = PgError::Closed("the connection was closed".into());
/// assert_eq!(classify_error(&e), ErrorClass::Broken);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PgError {
    /// The server answered with an ErrorResponse.
    Server(Box<DbError>),
    /// The transport failed (connect, read or write).
    Io {
        /// What we were doing when it failed.
        context: String,
        /// The underlying error.
        source: Arc<io::Error>,
    },
    /// TLS could not be set up or failed.
    Tls(String),
    /// Authentication was refused by this client (an insecure method without
    /// opt-in, an unsupported method) or could not be completed.
    Auth(String),
    /// The configuration is invalid; the message names the bad part.
    Config(String),
    /// The server sent something that breaks the protocol. The connection is
    /// no longer usable.
    Protocol(String),
    /// A parameter could not be encoded, or a message would exceed the
    /// protocol's limits. Nothing was sent.
    Encode(String),
    /// A value could not be decoded into the requested Rust type, or a column
    /// does not exist.
    Decode(String),
    /// The connection is closed (by `close()`, by the server, or because an
    /// earlier error broke it).
    Closed(String),
    /// An operation did not finish in time.
    Timeout(String),
    /// A transaction handle was used after its transaction ended, or a
    /// COMMIT found the transaction already failed (the server rolled it
    /// back instead).
    Transaction(String),
    /// A notification subscriber fell behind: this many notifications were
    /// dropped for it (and only for it) at this point; the ones after
    /// follow.
    Lagged(u64),
    /// A notification subscriber's connection broke and is being
    /// re-established (`Config::auto_reconnect`): notifications sent until
    /// it is back were missed; the ones after follow.
    Interrupted(String),
    /// A retry policy gave up: `last` is the error of the final attempt.
    RetriesExhausted {
        /// How many times the work was tried.
        attempts: u32,
        /// What the last attempt failed with.
        last: Box<PgError>,
    },
}

impl PgError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        PgError::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// The SQLSTATE code when the server reported this error (also through
    /// `RetriesExhausted`, for its last attempt).
    pub fn code(&self) -> Option<&str> {
        self.as_db_error().map(DbError::code)
    }

    /// The server's error report, if this is one (also through
    /// `RetriesExhausted`, for its last attempt).
    pub fn as_db_error(&self) -> Option<&DbError> {
        match self {
            PgError::Server(db) => Some(db),
            PgError::RetriesExhausted { last, .. } => last.as_db_error(),
            _ => None,
        }
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::Server(db) => fmt::Display::fmt(db, f),
            PgError::Io { context, source } => write!(f, "I/O error while {context}: {source}"),
            PgError::Tls(m) => write!(f, "TLS error: {m}"),
            PgError::Auth(m) => write!(f, "authentication error: {m}"),
            PgError::Config(m) => write!(f, "configuration error: {m}"),
            PgError::Protocol(m) => write!(f, "protocol error: {m}"),
            PgError::Encode(m) => write!(f, "encode error: {m}"),
            PgError::Decode(m) => write!(f, "decode error: {m}"),
            PgError::Closed(m) => write!(f, "connection closed: {m}"),
            PgError::Timeout(m) => write!(f, "timed out: {m}"),
            PgError::Transaction(m) => write!(f, "transaction error: {m}"),
            PgError::Lagged(n) => write!(
                f,
                "{n} notifications were dropped because this subscriber fell behind"
            ),
            PgError::Interrupted(m) => write!(f, "notifications interrupted: {m}"),
            PgError::RetriesExhausted { attempts, last } => {
                write!(
                    f,
                    "gave up after {attempts} attempts; the last failed with: {last}"
                )
            }
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PgError::Io { source, .. } => Some(source.as_ref()),
            PgError::Server(db) => Some(db.as_ref()),
            PgError::RetriesExhausted { last, .. } => Some(last.as_ref()),
            _ => None,
        }
    }
}

/// An error report from the server (an ErrorResponse or NoticeResponse).
///
/// Field names follow PostgreSQL's documentation of the message fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DbError {
    /// `ERROR`, `FATAL`, `PANIC`, `WARNING`, `NOTICE`, … (not localized when
    /// the server sends the non-localized field).
    pub severity: String,
    /// The five-character SQLSTATE.
    pub code: String,
    /// The primary human-readable message.
    pub message: String,
    /// Optional secondary message with more detail.
    pub detail: Option<String>,
    /// Optional suggestion what to do about the problem.
    pub hint: Option<String>,
    /// 1-based character position in the query string.
    pub position: Option<u32>,
    /// Position in an internally generated query.
    pub internal_position: Option<u32>,
    /// The internally generated query.
    pub internal_query: Option<String>,
    /// Context: call stack traceback.
    pub where_: Option<String>,
    /// Schema name of the object concerned.
    pub schema: Option<String>,
    /// Table name of the object concerned.
    pub table: Option<String>,
    /// Column name of the object concerned.
    pub column: Option<String>,
    /// Data type name of the object concerned.
    pub datatype: Option<String>,
    /// Constraint name of the object concerned.
    pub constraint: Option<String>,
    /// Server source file.
    pub file: Option<String>,
    /// Server source line.
    pub line: Option<u32>,
    /// Server source routine.
    pub routine: Option<String>,
}

impl DbError {
    /// Builds a report from the fields of an ErrorResponse or NoticeResponse.
    pub(crate) fn parse(fields: &mut ErrorFields<'_>) -> Result<DbError, PgError> {
        let mut e = DbError::default();
        let mut localized_severity = None;
        let bad = |err: io::Error| PgError::Protocol(format!("malformed error fields: {err}"));
        while let Some(field) = fields.next().map_err(bad)? {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            let number = || value.parse::<u32>().ok();
            match field.type_() {
                b'S' => localized_severity = Some(value),
                b'V' => e.severity = value,
                b'C' => e.code = value,
                b'M' => e.message = value,
                b'D' => e.detail = Some(value),
                b'H' => e.hint = Some(value),
                b'P' => e.position = number(),
                b'p' => e.internal_position = number(),
                b'q' => e.internal_query = Some(value),
                b'W' => e.where_ = Some(value),
                b's' => e.schema = Some(value),
                b't' => e.table = Some(value),
                b'c' => e.column = Some(value),
                b'd' => e.datatype = Some(value),
                b'n' => e.constraint = Some(value),
                b'F' => e.file = Some(value),
                b'L' => e.line = number(),
                b'R' => e.routine = Some(value),
                _ => {}
            }
        }
        if e.severity.is_empty() {
            e.severity = localized_severity.unwrap_or_default();
        }
        if e.code.is_empty() {
            return Err(PgError::Protocol("error report without a SQLSTATE".into()));
        }
        Ok(e)
    }

    /// The SQLSTATE code.
    pub fn code(&self) -> &str {
        &self.code
    }
    /// The primary message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The severity.
    pub fn severity(&self) -> &str {
        &self.severity
    }
    /// 23505 unique_violation.
    pub fn is_unique_violation(&self) -> bool {
        self.code == "23505"
    }
    /// 23503 foreign_key_violation.
    pub fn is_foreign_key_violation(&self) -> bool {
        self.code == "23503"
    }
    /// 23502 not_null_violation.
    pub fn is_not_null_violation(&self) -> bool {
        self.code == "23502"
    }
    /// 23514 check_violation.
    pub fn is_check_violation(&self) -> bool {
        self.code == "23514"
    }
    /// 40001 serialization_failure.
    pub fn is_serialization_failure(&self) -> bool {
        self.code == "40001"
    }
    /// 40P01 deadlock_detected.
    pub fn is_deadlock(&self) -> bool {
        self.code == "40P01"
    }
    /// 57014 query_canceled.
    pub fn is_query_canceled(&self) -> bool {
        self.code == "57014"
    }
    /// 28P01 invalid_password or 28000 invalid_authorization_specification.
    pub fn is_auth_failure(&self) -> bool {
        self.code == "28P01" || self.code == "28000"
    }
    /// 42P01 undefined_table.
    pub fn is_undefined_table(&self) -> bool {
        self.code == "42P01"
    }
    /// 42601 syntax_error.
    pub fn is_syntax_error(&self) -> bool {
        self.code == "42601"
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DbError {}

/// How a caller should react to an error. See [`classify_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The connection is unusable: reconnect.
    Broken,
    /// The same work may succeed if retried (in a new transaction).
    Transient,
    /// Retrying the same work will fail the same way.
    Permanent,
}

/// Classifies an error for retry and reconnect decisions.
///
/// | error | class |
/// |---|---|
/// | SQLSTATE class `08` (connection exception), `57P01` admin_shutdown, `57P02` crash_shutdown, `57P03` cannot_connect_now | Broken |
/// | `Io`, `Closed`, `Protocol`, `Tls` | Broken |
/// | `40001` serialization_failure, `40P01` deadlock_detected, `55P03` lock_not_available, `53300` too_many_connections | Transient |
/// | `Timeout` | Transient |
/// | `RetriesExhausted` | the class of its last error |
/// | everything else (`Config`, `Auth`, `Encode`, `Decode`, other SQLSTATEs) | Permanent |
pub fn classify_error(error: &PgError) -> ErrorClass {
    match error {
        PgError::Server(db) => {
            let code = db.code();
            if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03") {
                ErrorClass::Broken
            } else if matches!(code, "40001" | "40P01" | "55P03" | "53300") {
                ErrorClass::Transient
            } else {
                ErrorClass::Permanent
            }
        }
        PgError::Io { .. } | PgError::Closed(_) | PgError::Protocol(_) | PgError::Tls(_) => {
            ErrorClass::Broken
        }
        PgError::Timeout(_) | PgError::Interrupted(_) => ErrorClass::Transient,
        PgError::RetriesExhausted { last, .. } => classify_error(last),
        _ => ErrorClass::Permanent,
    }
}
