//! Reading one request's answer on the caller's side: chunks of frames from
//! the actor, parsed here (so decoding runs on the caller's task, not the
//! actor's) and folded into a `QueryResult`.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use postgres_protocol::message::backend::Message;

use crate::actors::connection::{Chunk, Ends};
use crate::actors::in_place::ReadTurn;
use crate::actors::reply::ReplyReceiver;
use crate::actors::shared::Shared;
use crate::api::error::DbError;
use crate::api::row::{rows_affected, Column, QueryResult, Row};
use crate::protocol::describe;
use crate::protocol::framing::{ending_tag, Backend, CommandTag, FrameCursor, RawRow};
use crate::PgError;

/// The backend messages answering one request, up to its ReadyForQuery.
pub(crate) struct Responses {
    rx: ReplyReceiver<Chunk>,
    ends: Ends,
    chunk: FrameCursor,
    shared: Arc<Shared>,
    done: bool,
    /// While this request is the actor's only work, the caller reads the
    /// socket itself (see `in_place`).
    turn: Option<ReadTurn>,
}

impl Responses {
    pub(crate) fn new(
        rx: ReplyReceiver<Chunk>,
        shared: Arc<Shared>,
        ends: Ends,
        turn: Option<ReadTurn>,
    ) -> Self {
        Responses {
            rx,
            ends,
            chunk: FrameCursor::default(),
            shared,
            done: false,
            turn,
        }
    }

    /// The next message; `None` after ReadyForQuery.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Message>, PgError>> {
        self.poll_parsed(cx, FrameCursor::next_message, ending_tag)
    }

    /// [`poll_next`](Self::poll_next) for the paths that read rows or COPY
    /// data, which come without postgres-protocol's bodies (see
    /// [`Backend`]).
    pub(crate) fn poll_next_backend(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Backend>, PgError>> {
        self.poll_parsed(cx, FrameCursor::next_backend, Backend::ending_tag)
    }

    #[inline]
    fn poll_parsed<M>(
        &mut self,
        cx: &mut Context<'_>,
        parse: impl Fn(&mut FrameCursor) -> Result<Option<M>, PgError>,
        tag: impl Fn(&M) -> u8,
    ) -> Poll<Result<Option<M>, PgError>> {
        loop {
            match parse(&mut self.chunk) {
                Ok(Some(message)) => {
                    if self.ends.is_end(tag(&message)) {
                        self.done = true;
                        self.turn = None;
                    }
                    return Poll::Ready(Ok(Some(message)));
                }
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if self.done {
                return Poll::Ready(Ok(None));
            }
            match ready!(self.rx.poll_recv(cx, &mut self.turn)) {
                Some(Ok(chunk)) => self.chunk = FrameCursor::new(chunk.freeze()),
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Err(self.shared.gone())),
            }
        }
    }

    /// [`poll_next`](Self::poll_next) as a future.
    pub(crate) async fn next(&mut self) -> Result<Option<Message>, PgError> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`poll_next_backend`](Self::poll_next_backend) as a future.
    pub(crate) async fn next_backend(&mut self) -> Result<Option<Backend>, PgError> {
        poll_fn(|cx| self.poll_next_backend(cx)).await
    }
}

/// A DataRow as a `Row` of `columns` (text values from the simple protocol
/// when `text`).
pub(crate) fn data_row(
    raw: RawRow,
    columns: Option<&Arc<[Column]>>,
    text: bool,
) -> Result<Row, PgError> {
    let columns = columns
        .cloned()
        .ok_or_else(|| PgError::Protocol("a row arrived before its description".into()))?;
    if text {
        Row::new_text(columns, raw.frame, raw.values)
    } else {
        Row::new(columns, raw.frame, raw.values)
    }
}

pub(crate) fn server_error(
    body: &postgres_protocol::message::backend::ErrorResponseBody,
) -> PgError {
    match DbError::parse(&mut body.fields()) {
        Ok(db) => PgError::Server(Box::new(db)),
        Err(e) => e,
    }
}

/// What a query keeps of its answer, as it is read.
///
/// `QueryResult` keeps everything. `query_one`, `query_opt` and `execute`
/// need less, and their own kinds cost no vector of rows and no command
/// tag string per query (nor memory for rows nobody will look at).
pub(crate) trait Answer: Default + Send + 'static {
    /// A row of the current statement.
    fn row(&mut self, row: Row);
    /// The current statement ended: its columns, and its command tag
    /// (`None` for an empty query or an answer cut short), read as text
    /// only by the kinds that keep it.
    fn complete(
        &mut self,
        columns: Option<Arc<[Column]>>,
        tag: Option<&CommandTag>,
    ) -> Result<(), PgError>;
}

impl Answer for QueryResult {
    fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    fn complete(
        &mut self,
        columns: Option<Arc<[Column]>>,
        tag: Option<&CommandTag>,
    ) -> Result<(), PgError> {
        self.columns = columns;
        self.command_tag = tag.map(|t| t.as_str().map(str::to_string)).transpose()?;
        Ok(())
    }
}

/// The first row, and how many there were: all `query_one` and `query_opt`
/// look at.
#[derive(Default)]
pub(crate) struct FirstRow {
    pub(crate) first: Option<Row>,
    pub(crate) rows: usize,
}

impl Answer for FirstRow {
    fn row(&mut self, row: Row) {
        self.rows += 1;
        self.first.get_or_insert(row);
    }

    fn complete(
        &mut self,
        _: Option<Arc<[Column]>>,
        _: Option<&CommandTag>,
    ) -> Result<(), PgError> {
        Ok(())
    }
}

/// The rows affected, from the command tag: all `execute` returns.
#[derive(Default)]
pub(crate) struct RowsAffected(pub(crate) u64);

impl Answer for RowsAffected {
    fn row(&mut self, _: Row) {}

    fn complete(
        &mut self,
        _: Option<Arc<[Column]>>,
        tag: Option<&CommandTag>,
    ) -> Result<(), PgError> {
        self.0 = match tag {
            Some(tag) => rows_affected(tag.as_str()?).unwrap_or(0),
            None => 0,
        };
        Ok(())
    }
}

#[cold]
fn copy_in_a_query() -> PgError {
    PgError::Protocol("COPY cannot run through query/query_params; use copy_in/copy_out".into())
}

/// Folds a whole answer into a result. `columns` are known in advance for a
/// prepared statement (no RowDescription is sent for it).
///
/// A string of several statements yields several results; like libpq's
/// `PQexec`, the last one is returned. The first error wins, but the answer
/// is always read to its end so the connection stays in step.
pub(crate) async fn collect(
    responses: Responses,
    columns: Option<Arc<[Column]>>,
) -> Result<QueryResult, PgError> {
    collect_as(responses, columns).await
}

/// [`collect`] into any kind of [`Answer`].
pub(crate) async fn collect_as<A: Answer>(
    mut responses: Responses,
    mut columns: Option<Arc<[Column]>>,
) -> Result<A, PgError> {
    let mut current = A::default();
    let mut text = false;
    let mut last = None;
    let mut error = None;
    while let Some(backend) = responses.next_backend().await? {
        let message = match backend {
            Backend::Row(raw) => {
                current.row(data_row(raw, columns.as_ref(), text)?);
                continue;
            }
            Backend::Complete(tag) => {
                current.complete(columns.take(), Some(&tag))?;
                last = Some(std::mem::take(&mut current));
                continue;
            }
            Backend::Ready => continue,
            Backend::CopyData(_) => return Err(copy_in_a_query()),
            Backend::Other(message) => message,
        };
        match message {
            Message::RowDescription(body) => {
                text = describe::is_text_format(&body)?;
                columns = Some(describe::columns(&body)?);
                current = A::default();
            }
            Message::EmptyQueryResponse => {
                current.complete(columns.take(), None)?;
                last = Some(std::mem::take(&mut current));
            }
            Message::ErrorResponse(body) => {
                error.get_or_insert_with(|| server_error(&body));
            }
            Message::ParseComplete
            | Message::BindComplete
            | Message::CloseComplete
            | Message::NoData
            | Message::ParameterDescription(_)
            | Message::PortalSuspended => {}
            Message::CopyInResponse(_) | Message::CopyOutResponse(_) => {
                return Err(copy_in_a_query());
            }
            _ => {
                return Err(PgError::Protocol(
                    "unexpected message in a query's answer".into(),
                ))
            }
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    match last {
        Some(last) => Ok(last),
        None => {
            current.complete(columns, None)?;
            Ok(current)
        }
    }
}
