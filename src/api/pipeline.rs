//! An explicit pipeline: many statements encoded into one request, sent in
//! one write, answered in order.
//!
//! Implicit pipelining (concurrent futures on one connection) gives each
//! request its own Sync, and so its own implicit transaction on the server.
//! A batch with a single Sync is one transaction for all of it: far less
//! work for the server, and all-or-nothing. `Pipeline` offers both: per
//! statement Syncs (independent) or one Sync at the end (atomic).

use std::sync::Arc;

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use postgres_types::ToSql;

use crate::actors::connection::Ends;
use crate::api::response::{data_row, server_error};
use crate::api::row::Column;
use crate::protocol::framing::Backend;
use crate::protocol::frontend;
use crate::{Connection, PgError, QueryResult, ToStatement, Transaction};

/// How a pipeline's statements relate to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum PipelineMode {
    /// A Sync after each statement: each runs in its own implicit
    /// transaction (or in the caller's transaction), and one failing does
    /// not stop the rest.
    #[default]
    Independent,
    /// One Sync at the end: all statements run in one implicit transaction;
    /// the first failure rolls all of them back and skips the rest.
    Atomic,
}

/// A batch of statements sent in one write; see [`Connection::pipeline`].
///
/// ```no_run
/// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
/// use wasi_pg_client::PipelineMode;
/// let mut batch = conn.pipeline().mode(PipelineMode::Atomic);
/// for id in 0..1000i32 {
///     batch.push("INSERT INTO items (id) VALUES ($1)", &[&id]).await?;
/// }
/// let results = batch.run().await?; // all 1000 inserted, or none
/// assert_eq!(results.len(), 1000);
/// # Ok(()) }
/// ```
#[must_use = "a Pipeline sends nothing until `run` is awaited"]
pub struct Pipeline {
    conn: Connection,
    mode: PipelineMode,
    /// Bind + Execute of every statement so far, without Syncs.
    bytes: BytesMut,
    /// Where each statement's messages end in `bytes`.
    ends: Vec<usize>,
    /// Each statement's result columns, in order.
    columns: Vec<Arc<[Column]>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("mode", &self.mode)
            .field("statements", &self.columns.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Pipeline {
    fn new(conn: Connection) -> Pipeline {
        Pipeline {
            conn,
            mode: PipelineMode::default(),
            bytes: BytesMut::new(),
            ends: Vec::new(),
            columns: Vec::new(),
        }
    }

    /// Sets the mode (independent by default).
    pub fn mode(mut self, mode: PipelineMode) -> Self {
        self.mode = mode;
        self
    }

    /// Adds a statement with its parameters. The statement is prepared now
    /// if the connection's cache does not hold it yet (one round trip per
    /// new SQL text); the parameters are encoded now, so a bad one fails
    /// here and the pipeline is unchanged.
    pub async fn push<S: ToStatement + ?Sized>(
        &mut self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(), PgError> {
        if u32::try_from(self.columns.len() + 1).is_err() {
            return Err(PgError::Encode(
                "too many statements in one pipeline".into(),
            ));
        }
        // No reservation: the pipeline runs later, as a request of its own.
        let (statement, _none) = self.conn.statement(statement, false).await?;
        frontend::execute_unsynced(
            &statement.0.name,
            &statement.0.sql,
            &statement.0.params,
            params,
            &mut self.bytes,
        )?;
        self.ends.push(self.bytes.len());
        self.columns.push(statement.0.columns.clone());
        Ok(())
    }

    /// How many statements were pushed.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Sends every statement in one write and returns their results in
    /// order.
    ///
    /// Independent mode: one entry per statement, `Ok` or its own error.
    /// Atomic mode: all `Ok`, or the outer `Err` of the first failure
    /// (nothing was applied). The outer `Err` also reports a connection
    /// failure.
    pub async fn run(self) -> Result<Vec<Result<QueryResult, PgError>>, PgError> {
        let Pipeline {
            conn,
            mode,
            bytes: statements,
            ends,
            columns,
        } = self;
        let count = columns.len();
        if count == 0 {
            return Ok(Vec::new());
        }
        let (bytes, syncs) = with_syncs(mode, statements, &ends)?;
        conn.timed(async {
            let mut responses = conn
                .request_in(bytes, conn.current_lease(), Ends::Syncs(syncs))
                .await?;
            let mut results = Vec::with_capacity(count);
            let mut current = QueryResult::default();
            while let Some(backend) = responses.next_backend().await? {
                let index = results.len();
                if current.columns.is_none() {
                    current.columns = columns.get(index).cloned();
                }
                let message = match backend {
                    Backend::Row(raw) => {
                        current
                            .rows
                            .push(data_row(raw, current.columns.as_ref(), false)?);
                        continue;
                    }
                    Backend::Complete(tag) => {
                        current.command_tag = Some(tag.as_str()?.to_string());
                        results.push(Ok(std::mem::take(&mut current)));
                        continue;
                    }
                    Backend::Ready => continue,
                    Backend::CopyData(_) => return Err(unexpected_message()),
                    Backend::Other(message) => message,
                };
                match message {
                    Message::EmptyQueryResponse => {
                        results.push(Ok(std::mem::take(&mut current)));
                    }
                    Message::ErrorResponse(body) => {
                        current = QueryResult::default();
                        results.push(Err(server_error(&body)));
                    }
                    Message::ParseComplete | Message::BindComplete | Message::NoData => {}
                    _ => return Err(unexpected_message()),
                }
            }
            finish(mode, count, results)
        })
        .await
    }
}

fn unexpected_message() -> PgError {
    PgError::Protocol(
        "unexpected message in a pipeline's answer (COPY cannot run in a pipeline)".into(),
    )
}

/// The request: the statements with a Sync after each (independent) or
/// one at the end (atomic), and how many Syncs that is.
fn with_syncs(
    mode: PipelineMode,
    mut statements: BytesMut,
    ends: &[usize],
) -> Result<(BytesMut, u32), PgError> {
    match mode {
        PipelineMode::Atomic => {
            frontend::sync(&mut statements);
            Ok((statements, 1))
        }
        PipelineMode::Independent => {
            let syncs = u32::try_from(ends.len())
                .map_err(|_| PgError::Encode("too many statements in one pipeline".into()))?;
            let mut bytes = BytesMut::with_capacity(statements.len() + SYNC_LEN * ends.len());
            let mut start = 0;
            for &end in ends {
                bytes.extend_from_slice(&statements[start..end]);
                frontend::sync(&mut bytes);
                start = end;
            }
            Ok((bytes, syncs))
        }
    }
}

/// The size of one Sync message.
const SYNC_LEN: usize = 5;

/// Checks the answers add up, and applies atomic mode's all-or-nothing.
fn finish(
    mode: PipelineMode,
    count: usize,
    results: Vec<Result<QueryResult, PgError>>,
) -> Result<Vec<Result<QueryResult, PgError>>, PgError> {
    if mode == PipelineMode::Atomic {
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            return Err(e.clone());
        }
    }
    if results.len() != count {
        return Err(PgError::Protocol(format!(
            "a pipeline of {count} statements was answered with {} results",
            results.len()
        )));
    }
    Ok(results)
}

impl Connection {
    /// A batch of statements to send in one write; see [`Pipeline`].
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::new(self.clone())
    }
}

impl Transaction {
    /// A batch of statements to run inside this transaction, sent in one
    /// write; see [`Pipeline`]. In atomic mode a failure aborts the
    /// transaction, as any failed statement in it would.
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::new(self.connection().clone())
    }
}
