//! The connection actor: the one task that owns the socket.
//!
//! Handles send it already-encoded requests through a bounded mailbox. It
//! drains every waiting request into one buffer and writes it while earlier
//! answers are still coming (implicit pipelining); each request ends with its
//! own Sync, so each is answered by exactly one ReadyForQuery and one failure
//! does not poison the others. Answers go, in FIFO order, to each request's
//! bounded response channel; when a consumer is slow the actor stops reading
//! the socket instead of buffering. Reads, writes and the mailbox are polled
//! together, so a large pipeline never blocks the read side (pgjdbc #194).
//!
//! A lease (a transaction, a cursor) gives one holder the socket: other
//! commands are held, in order, until it is released. A query that had to
//! prepare its statement first holds a reservation from its Prepare to its
//! execution, and a lease asked for meanwhile waits for it, so a query that
//! began before a transaction is never shut out by it.

use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use futures_channel::mpsc::UnboundedSender;
use futures_channel::oneshot;
use postgres_protocol::message::backend::Message;

use crate::actors::answer::Answer;
use crate::actors::mailbox::MailboxReceiver;
use crate::actors::reply::ReplySender;
use crate::actors::shared::{Notification, Shared};
use crate::actors::statements::StatementCache;
use crate::actors::wake_flag::{Redirect, WakeFlag};
use crate::api::error::DbError;
use crate::api::statement::{Statement, StatementInner};
use crate::protocol::framing::{parse_frame, FrameReader};
use crate::protocol::{describe, frontend};
use crate::transport::{write_all, AsyncTransport};
use crate::PgError;

/// Chunks of complete backend frames for one request, or the error that
/// ended it.
pub(crate) type Chunk = Result<BytesMut, PgError>;

/// How many unread chunks a request's response channel holds before the
/// actor stops reading the socket.
pub(crate) const RESPONSE_CHANNEL_BOUND: usize = 16;
/// Mailbox capacity.
pub(crate) const MAILBOX_BOUND: usize = 128;
/// Bytes read per socket read.
const READ_CHUNK: usize = 64 * 1024;
/// Stop taking new requests while this much is waiting to be written.
const WRITE_HIGH_WATER: usize = 1024 * 1024;
/// How much of a held, unread stream the actor buffers while other requests
/// wait behind it, before it fails that stream (see [`RowStream`]).
///
/// [`RowStream`]: crate::RowStream
pub const STALLED_STREAM_LIMIT: usize = 16 * 1024 * 1024;
/// Hand a chunk to its consumer once it holds this much.
const CHUNK_TARGET: usize = 64 * 1024;

/// The next lease number, for every connection in the process.
static NEXT_LEASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn count(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// What handles ask of the actor.
pub(crate) enum Command {
    /// Encoded frontend messages ending with one Sync (or one simple
    /// Query), or, for a cursor's fetch, with a Flush (`ends`).
    Request {
        bytes: BytesMut,
        responses: ReplySender<Chunk>,
        /// The lease this request belongs to, if any.
        lease: Option<u64>,
        ends: Ends,
        /// It executes a statement prepared with `reserve`: it settles that
        /// reservation.
        reserved: bool,
        /// It is its lease's last request (a COMMIT, say): the lease ends
        /// once it is queued, with no `Release` of its own to send.
        ends_lease: bool,
    },
    /// Exclusive use of the connection: until `Release`, only requests
    /// of this lease reach the socket; everyone else's wait, in order.
    Lease {
        reply: oneshot::Sender<u64>,
        /// It is the next step of a statement prepared with `reserve` (a
        /// cursor): it settles that reservation.
        reserved: bool,
        /// Asked for by the holder of this lease (a COPY inside a
        /// transaction): granted at once, on top of it, and until released
        /// even the parent's own commands wait.
        parent: Option<u64>,
        /// The lease's first request (a transaction's BEGIN), queued the
        /// moment it is granted.
        opening: Option<Opening>,
    },
    /// A reservation will not be used (its caller gave up, or the prepare
    /// failed).
    Unreserve,
    /// Bytes for the server with no answer of their own (COPY data, under
    /// the copy's lease). `taken` is told once they are in the write
    /// buffer, so a writer can keep a bounded amount on its way.
    Data {
        bytes: BytesMut,
        lease: u64,
        taken: Option<oneshot::Sender<()>>,
    },
    /// Ends a lease.
    Release { lease: u64 },
    /// A prepared statement for `sql`, from the cache or prepared now.
    Prepare {
        sql: String,
        /// The lease of the transaction asking, if any.
        lease: Option<u64>,
        /// An execution of the statement follows: no lease is granted until
        /// it has arrived (or the reservation is given up), so a query that
        /// began before a transaction is not shut out by it.
        reserve: bool,
        /// The server no longer knows this statement (or its plan changed):
        /// prepare afresh.
        stale: Option<Statement>,
        reply: oneshot::Sender<Result<Statement, PgError>>,
    },
    /// Answered, with the transaction status, once every request sent
    /// before it has been answered: how a pool learns the state a returned
    /// connection is really in. Held like any request while a lease is.
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    Settle { reply: oneshot::Sender<u8> },
    /// The server dropped every prepared statement (`DISCARD ALL`): forget
    /// the cache without closing them.
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    ForgetStatements,
    /// Finish queued work, send Terminate, then stop.
    Close { reply: oneshot::Sender<()> },
}

/// A request that travels with the `Lease` command it opens: one command,
/// one step of the actor, where asking for the lease and then sending under
/// it would take two. It ends with one Sync or simple Query.
pub(crate) struct Opening {
    pub(crate) bytes: BytesMut,
    pub(crate) responses: ReplySender<Chunk>,
}

/// Which message ends a request's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ends {
    /// The last of this many ReadyForQuery messages: one per Sync (or
    /// simple Query) the request holds.
    Syncs(u32),
    /// The end of one Execute of a portal, after a Flush: PortalSuspended,
    /// CommandComplete, EmptyQueryResponse, or an ErrorResponse.
    Execute,
    /// ReadyForQuery, after a `COPY … FROM STDIN` whose data the caller
    /// sends: the only request for which the server may enter copy-in mode.
    CopyIn,
}

impl Ends {
    /// A request ending with one Sync: most of them.
    pub(crate) const SYNC: Ends = Ends::Syncs(1);

    /// Whether the message tagged `tag` ends the answer (counting down the
    /// ReadyForQuery messages still owed).
    pub(crate) fn is_end(&mut self, tag: u8) -> bool {
        match self {
            Ends::Syncs(left) => {
                if tag == b'Z' {
                    *left = left.saturating_sub(1);
                }
                *left == 0
            }
            Ends::Execute => matches!(tag, b's' | b'C' | b'I' | b'E'),
            Ends::CopyIn => tag == b'Z',
        }
    }
}

/// A request whose answer has not ended yet.
enum InFlight {
    User {
        answer: Answer,
        ends: Ends,
        /// Frames read for it but not yet handed over.
        pending: BytesMut,
    },
    Prepare {
        sql: String,
        name: String,
        params: Vec<postgres_types::Type>,
        columns: Option<Arc<[crate::api::row::Column]>>,
        error: Option<PgError>,
    },
    /// Our own housekeeping (Close of an evicted statement).
    Internal,
    /// A `Settle`: answered as soon as it is the head, never routed to.
    Settle(oneshot::Sender<u8>),
}

type IoFuture<B, R> = Pin<Box<dyn Future<Output = (B, io::Result<R>)> + Send>>;

enum Event {
    Wrote(BytesMut, io::Result<()>),
    Read(Vec<u8>, io::Result<usize>),
    ConsumerReady,
    MailboxDone,
}

pub(crate) struct ConnectionActor<T> {
    transport: Arc<T>,
    mailbox: MailboxReceiver<Command>,
    mailbox_done: bool,
    shared: Arc<Shared>,
    frames: FrameReader,
    read: Option<IoFuture<Vec<u8>, usize>>,
    /// Whether `read` is to be polled: its waker fired, or it is new. An
    /// actor woken for anything else (a request, most often) leaves it be,
    /// which under wasmtime spares a host call per round trip.
    read_woken: WakeFlag,
    spare_read_buf: Option<Vec<u8>>,
    write: Option<IoFuture<BytesMut, ()>>,
    outgoing: BytesMut,
    in_flight: VecDeque<InFlight>,
    /// Complete answers whose callers have not taken everything yet.
    draining: Vec<Answer>,
    /// The leases holding the connection, innermost last (a COPY inside a
    /// transaction), and what waits for them to end.
    leases: Vec<u64>,
    held: VecDeque<Command>,
    /// Prepares made with `reserve` whose execution has not arrived yet.
    reservations: usize,
    /// A lease asked for while reservations were open, and its opening
    /// request.
    pending_lease: Option<(oneshot::Sender<u64>, Option<Opening>)>,
    statements: StatementCache,
    preparing: HashMap<String, Vec<oneshot::Sender<Result<Statement, PgError>>>>,
    closers: Vec<oneshot::Sender<()>>,
    /// Commands taken from the mailbox, for `Shared::publish_settled`.
    taken: u64,
    /// To the notification dispatcher.
    notifications: UnboundedSender<Notification>,
}

impl<T: AsyncTransport> ConnectionActor<T> {
    pub(crate) fn new(
        transport: T,
        frames: FrameReader,
        mailbox: MailboxReceiver<Command>,
        shared: Arc<Shared>,
        statement_cache_size: usize,
        notifications: UnboundedSender<Notification>,
    ) -> Self {
        ConnectionActor {
            transport: Arc::new(transport),
            mailbox,
            mailbox_done: false,
            shared,
            frames,
            read: None,
            read_woken: WakeFlag::new(),
            spare_read_buf: Some(vec![0; READ_CHUNK]),
            write: None,
            outgoing: BytesMut::new(),
            in_flight: VecDeque::new(),
            draining: Vec::new(),
            leases: Vec::new(),
            held: VecDeque::new(),
            reservations: 0,
            pending_lease: None,
            statements: StatementCache::new(statement_cache_size),
            preparing: HashMap::new(),
            closers: Vec::new(),
            taken: 0,
            notifications,
        }
    }

    /// A handle on the socket read's wakes, for the cell that runs the
    /// actor (see `in_place`).
    pub(crate) fn read_redirect(&self) -> Redirect {
        self.read_woken.redirect()
    }

    /// Runs until the last handle is gone (or `close()`), or the connection
    /// breaks.
    pub(crate) async fn run(mut self) {
        match self.serve().await {
            Ok(()) => {
                let mut bye = BytesMut::new();
                frontend::terminate(&mut bye);
                // The server may already be gone; nothing is waiting on us.
                let _ = write_all(&*self.transport, &bye).await;
                let _ = self.transport.shutdown().await;
                self.shared.set_ended_cleanly();
                self.shared
                    .set_broken(PgError::Closed("the connection was closed".into()));
            }
            Err(error) => self.fail_everything(error),
        }
        self.read = None;
        self.write = None;
        for closer in self.closers.drain(..) {
            let _ = closer.send(());
        }
    }

    async fn serve(&mut self) -> Result<(), PgError> {
        // Bytes that arrived right behind ReadyForQuery during startup.
        self.process_frames()?;
        loop {
            if self.mailbox_done
                && self.in_flight.is_empty()
                && self.outgoing.is_empty()
                && self.write.is_none()
                && self.draining.is_empty()
            {
                return Ok(());
            }
            match poll_fn(|cx| self.poll_event(cx)).await {
                Event::Wrote(mut buf, result) => {
                    result.map_err(|e| PgError::io("writing to the server", e))?;
                    if self.outgoing.is_empty() {
                        buf.clear();
                        self.outgoing = buf;
                    }
                }
                Event::Read(buf, result) => {
                    let n = result.map_err(|e| PgError::io("reading from the server", e))?;
                    if n == 0 {
                        return Err(PgError::Closed("the server closed the connection".into()));
                    }
                    self.frames.extend(&buf[..n]);
                    self.spare_read_buf = Some(buf);
                    self.process_frames()?;
                }
                Event::ConsumerReady => {
                    self.deliver();
                    self.publish_buffered();
                }
                Event::MailboxDone => {}
            }
        }
    }

    /// Sends what is waiting in `outgoing`. A socket usually takes a
    /// write at once: where the transport allows dropping an unfinished
    /// write, and nothing waits in the mailbox (`in_place`), the first
    /// attempt runs right here, and a future is boxed (one allocation) only
    /// for the rest, to wait for room. An error of that first attempt is
    /// returned.
    fn start_write(&mut self, cx: &mut Context<'_>, in_place: bool) -> io::Result<()> {
        if self.write.is_some() || self.outgoing.is_empty() {
            return Ok(());
        }
        if in_place && self.transport.write_is_cancel_safe() {
            let attempt = {
                let attempt = std::pin::pin!(self.transport.write(&self.outgoing));
                attempt.poll(cx)
            };
            // Pending: the attempt was dropped unfinished and wrote nothing.
            if let Poll::Ready(written) = attempt {
                let written = written?;
                if written >= self.outgoing.len() {
                    self.outgoing.clear();
                    return Ok(());
                }
                self.outgoing.advance(written);
            }
        }
        let buf = std::mem::take(&mut self.outgoing);
        let transport = self.transport.clone();
        self.write = Some(Box::pin(async move {
            let result = write_all(&*transport, &buf).await;
            (buf, result)
        }));
        Ok(())
    }

    fn start_read(&mut self) {
        // Backpressure: while a consumer has no room, leave bytes in the
        // kernel.
        if self.read.is_some() || !self.may_read() {
            return;
        }
        let Some(mut buf) = self.spare_read_buf.take() else {
            return;
        };
        let transport = self.transport.clone();
        self.read = Some(Box::pin(async move {
            let result = transport.read(&mut buf).await;
            (buf, result)
        }));
        self.read_woken.raise();
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        self.retire_statements();
        // Take every waiting request before starting a write, so one write
        // carries all of them.
        let mut mailbox_closed = false;
        let mut more_waiting = false;
        while !self.mailbox_done {
            if self.outgoing.len() >= WRITE_HIGH_WATER {
                // Left in the mailbox, unregistered: the write's completion
                // (an event, so this runs again) is what brings them in.
                more_waiting = true;
                break;
            }
            match self.mailbox.poll_recv(cx) {
                Poll::Ready(Some(command)) => {
                    self.taken += 1;
                    self.accept(command);
                }
                Poll::Ready(None) => {
                    self.mailbox_done = true;
                    mailbox_closed = true;
                }
                Poll::Pending => break,
            }
        }
        if let Err(e) = self.start_write(cx, !more_waiting) {
            return Poll::Ready(Event::Wrote(BytesMut::new(), Err(e)));
        }
        if let Some(write) = self.write.as_mut() {
            if let Poll::Ready((buf, result)) = write.as_mut().poll(cx) {
                self.write = None;
                return Poll::Ready(Event::Wrote(buf, result));
            }
        }
        self.start_read();
        if let Some(read) = self.read.as_mut() {
            if self.read_woken.take(cx.waker()) {
                let mut read_cx = Context::from_waker(self.read_woken.waker());
                if let Poll::Ready((buf, result)) = read.as_mut().poll(&mut read_cx) {
                    self.read = None;
                    return Poll::Ready(Event::Read(buf, result));
                }
            }
        }
        let head_has_room = match self.in_flight.front() {
            Some(InFlight::User { answer, .. }) => answer.poll_room(cx),
            _ => false,
        };
        if head_has_room || self.draining.iter().any(|a| a.poll_room(cx)) {
            return Poll::Ready(Event::ConsumerReady);
        }
        if mailbox_closed {
            // The loop decides whether the actor is done.
            return Poll::Ready(Event::MailboxDone);
        }
        // Going to sleep: say whether everything taken so far is done, and
        // whether, with no lease open either, the transaction status is
        // final (idle).
        let quiet = self.is_quiet();
        self.shared
            .publish_settled(self.taken, quiet, quiet && self.leases.is_empty());
        Poll::Pending
    }

    /// Nothing in flight, held back or reserved: every answer to what was
    /// taken is in (a lease may be open).
    fn is_quiet(&self) -> bool {
        self.in_flight.is_empty()
            && self.held.is_empty()
            && self.reservations == 0
            && self.pending_lease.is_none()
    }

    /// Takes a command from the mailbox: runs it now (or refuses it), or
    /// holds it, in order, until it may pass.
    fn accept(&mut self, command: Command) {
        if !self.may_pass(&command) {
            self.held.push_back(command);
            return;
        }
        self.admit(command);
        if !self.held.is_empty() || self.pending_lease.is_some() {
            self.admit_held();
        }
    }

    /// Whether `command` may run now. While a lease is held only its own
    /// commands pass. While a lease waits for reservations (queries that
    /// were prepared before it was asked for and have yet to send their
    /// execution), only those executions (or their cancellations) pass.
    /// Commands of ended leases pass, to be refused.
    fn may_pass(&self, command: &Command) -> bool {
        let (belongs_to, redeems) = match command {
            Command::Request {
                lease, reserved, ..
            } => (*lease, *reserved),
            Command::Prepare { lease, .. } => (*lease, false),
            Command::Release { lease } | Command::Data { lease, .. } => (Some(*lease), false),
            Command::Lease {
                reserved, parent, ..
            } => (*parent, *reserved),
            // Held like the execution it stands for, so it never overtakes
            // the Prepare that made its reservation.
            Command::Unreserve => (None, true),
            Command::Settle { .. } | Command::ForgetStatements | Command::Close { .. } => {
                (None, false)
            }
        };
        if belongs_to.is_some_and(|lease| !self.leases.contains(&lease)) {
            return true;
        }
        match (self.holder(), &self.pending_lease) {
            (Some(lease), _) => belongs_to == Some(lease),
            (None, Some(_)) => redeems,
            (None, None) => true,
        }
    }

    /// The innermost lease, whose commands alone may pass.
    fn holder(&self) -> Option<u64> {
        self.leases.last().copied()
    }

    fn admit(&mut self, command: Command) {
        let belongs_to = match &command {
            Command::Request { lease, .. } | Command::Prepare { lease, .. } => *lease,
            Command::Lease { parent, .. } => *parent,
            Command::Release { lease } | Command::Data { lease, .. } => Some(*lease),
            _ => None,
        };
        if belongs_to.is_some() && belongs_to != self.holder() {
            // Its lease has ended (a committed transaction's clone, say): it
            // must not run outside the transaction it was written for.
            refuse(command, &ended_lease());
            return;
        }
        match command {
            Command::Request {
                bytes,
                responses,
                lease,
                ends,
                reserved,
                ends_lease,
            } => {
                if reserved {
                    self.redeem();
                }
                self.queue_request(bytes, responses, ends);
                if ends_lease && lease.is_some() {
                    // Its lease is the innermost (checked above).
                    self.leases.pop();
                }
            }
            Command::Lease {
                reply,
                reserved,
                parent,
                opening,
            } => {
                if reserved {
                    self.redeem();
                }
                if self.reservations > 0 && !reserved && parent.is_none() {
                    // Queries prepared before this was asked for go first.
                    self.pending_lease = Some((reply, opening));
                } else {
                    self.grant(reply, opening);
                }
            }
            Command::Unreserve => self.redeem(),
            Command::Data { bytes, taken, .. } => {
                self.queue_bytes(bytes);
                if let Some(taken) = taken {
                    let _ = taken.send(());
                }
            }
            Command::Release { .. } => {
                self.leases.pop();
            }
            Command::Prepare {
                sql,
                stale,
                reply,
                reserve,
                ..
            } => {
                if reserve {
                    self.reservations += 1;
                }
                if let Some(stale) = stale {
                    self.statements.invalidate(&sql, &stale);
                }
                self.prepare(sql, reply)
            }
            Command::Settle { reply } => {
                self.in_flight.push_back(InFlight::Settle(reply));
                self.answer_settles();
            }
            Command::ForgetStatements => self.statements.forget_all(),
            Command::Close { reply } => {
                self.closers.push(reply);
                // Queued requests are still delivered; new ones are refused.
                self.mailbox.close();
            }
        }
    }

    /// Answers the `Settle`s that reached the head: everything before them
    /// has been answered, so the transaction status is theirs.
    fn answer_settles(&mut self) {
        while let Some(InFlight::Settle(_)) = self.in_flight.front() {
            if let Some(InFlight::Settle(reply)) = self.in_flight.pop_front() {
                let _ = reply.send(self.shared.transaction_status());
            }
        }
    }

    /// Appends to the write buffer, taking `bytes` over when nothing else
    /// waits there (no copy).
    fn queue_bytes(&mut self, bytes: BytesMut) {
        if self.outgoing.is_empty() {
            self.outgoing = bytes;
        } else {
            self.outgoing.extend_from_slice(&bytes);
        }
    }

    fn grant(&mut self, reply: oneshot::Sender<u64>, opening: Option<Opening>) {
        // Unique in the process, not per actor: a transaction of a session
        // that was replaced (a reconnection) can never pass for one of the
        // new session's.
        let lease = NEXT_LEASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A requester that gave up leaves nothing to hold, and nothing to
        // send: its BEGIN would open a transaction no one ends.
        if reply.send(lease).is_err() {
            return;
        }
        self.leases.push(lease);
        if let Some(Opening { bytes, responses }) = opening {
            self.queue_request(bytes, responses, Ends::SYNC);
        }
    }

    /// A user's request goes out, its answer awaited in order.
    fn queue_request(&mut self, bytes: BytesMut, responses: ReplySender<Chunk>, ends: Ends) {
        self.queue_bytes(bytes);
        self.in_flight.push_back(InFlight::User {
            answer: Answer::new(responses),
            ends,
            pending: BytesMut::new(),
        });
    }

    /// One reservation kept its promise (or was given up).
    fn redeem(&mut self) {
        self.reservations = self.reservations.saturating_sub(1);
    }

    /// After a lease ended or a reservation was settled: grants the waiting
    /// lease once nothing holds it back, and lets through, in order, every
    /// held command that may pass.
    fn admit_held(&mut self) {
        loop {
            if self.leases.is_empty() && self.reservations == 0 {
                if let Some((reply, opening)) = self.pending_lease.take() {
                    self.grant(reply, opening);
                }
            }
            let Some(next) = self.held.iter().position(|c| self.may_pass(c)) else {
                return;
            };
            if let Some(command) = self.held.remove(next) {
                self.admit(command);
            }
        }
    }

    fn prepare(&mut self, sql: String, reply: oneshot::Sender<Result<Statement, PgError>>) {
        if let Some(statement) = self.statements.get(&sql) {
            count(&self.shared.statement_hits);
            let _ = reply.send(Ok(statement));
            return;
        }
        if let Some(waiters) = self.preparing.get_mut(&sql) {
            // Shares the Parse already on its way.
            count(&self.shared.statement_hits);
            waiters.push(reply);
            return;
        }
        count(&self.shared.statement_misses);
        // Without a cache, statements stay unnamed (safe behind PgBouncer in
        // transaction mode); each execution parses again.
        let name = if self.statements.is_enabled() {
            self.statements.next_name()
        } else {
            String::new()
        };
        if let Err(e) = frontend::prepare(&name, &sql, &mut self.outgoing) {
            let _ = reply.send(Err(e));
            return;
        }
        self.preparing.insert(sql.clone(), vec![reply]);
        self.in_flight.push_back(InFlight::Prepare {
            sql,
            name,
            params: Vec::new(),
            columns: None,
            error: None,
        });
    }

    /// Queues Close for evicted statements nobody holds any more, ahead of
    /// the requests about to be taken from the mailbox. Once the handles
    /// are gone, Terminate frees every statement anyway.
    fn retire_statements(&mut self) {
        if self.mailbox_done {
            return;
        }
        for name in self.statements.take_retired() {
            // Our own names never hold a NUL, the only way this can fail.
            if frontend::close_statement(&name, &mut self.outgoing).is_ok() {
                self.in_flight.push_back(InFlight::Internal);
            }
        }
    }

    /// Whether to read the socket: not while the only answer in flight
    /// waits for its caller (backpressure), but yes while other requests
    /// wait behind it (up to the stalled-stream limit).
    fn may_read(&self) -> bool {
        match self.in_flight.front() {
            Some(InFlight::User { answer, .. }) if answer.is_waiting() => {
                self.in_flight.len() > 1 && answer.backlog_bytes() <= STALLED_STREAM_LIMIT
            }
            _ => true,
        }
    }

    /// Routes every complete frame that has arrived.
    fn process_frames(&mut self) -> Result<(), PgError> {
        loop {
            if self.take_user_run()? {
                continue;
            }
            let Some(frame) = self.frames.next_frame()? else {
                break;
            };
            match frame[0] {
                b'A' | b'N' | b'S' => self.asynchronous(parse_frame(frame)?)?,
                tag => self.route(tag, frame)?,
            }
        }
        // Hand over what arrived so far, so streams see rows promptly.
        self.flush_head(false);
        // A caller holding an unread stream must not hold up the requests
        // behind it for ever.
        if self.in_flight.len() > 1 {
            if let Some(InFlight::User { answer, .. }) = self.in_flight.front_mut() {
                if answer.backlog_bytes() > STALLED_STREAM_LIMIT {
                    answer.fail(PgError::Decode(format!(
                        "this row stream was not read while other requests on its connection \
                         waited, and more than {STALLED_STREAM_LIMIT} bytes of it piled up; it \
                         was ended so they could proceed (read streams promptly, or drop them)"
                    )));
                }
            }
        }
        self.publish_buffered();
        Ok(())
    }

    /// Publishes the bytes read from the server that wait here for their
    /// callers: unparsed input, the head answer's unsent frames, and the
    /// backlogs of answers whose callers have no room.
    fn publish_buffered(&self) {
        let mut bytes = self.frames.buffered();
        if let Some(InFlight::User {
            answer, pending, ..
        }) = self.in_flight.front()
        {
            bytes += pending.len() + answer.backlog_bytes();
        }
        bytes += self
            .draining
            .iter()
            .map(Answer::backlog_bytes)
            .sum::<usize>();
        self.shared.set_buffered_bytes(bytes);
    }

    /// While the head request is a user's, takes the run of its frames
    /// that has arrived (up to its end, an asynchronous message, or a
    /// chunk's worth) in one piece: a large result is handed on without
    /// splitting it frame by frame. The only way a user request's frames
    /// are taken. Returns whether it took anything.
    fn take_user_run(&mut self) -> Result<bool, PgError> {
        let Some(InFlight::User { pending, ends, .. }) = self.in_flight.front_mut() else {
            return Ok(false);
        };
        let mut run = 0;
        let mut last = false;
        loop {
            // Rows and COPY data neither end an answer nor need routing:
            // skip them in bulk.
            run = self
                .frames
                .skip_data(run, CHUNK_TARGET.saturating_sub(pending.len()));
            if pending.len() + run >= CHUNK_TARGET {
                break;
            }
            let Some((tag, len)) = self.frames.frame_at(run)? else {
                break;
            };
            if matches!(tag, b'A' | b'N' | b'S') {
                // Not the caller's: `asynchronous` takes it on its own.
                break;
            }
            if tag == b'Z' {
                if let Some(status) = self.frames.byte_at(run + 5) {
                    self.shared.set_transaction_status(status);
                }
            }
            if is_copy_in_start(tag) && *ends != Ends::CopyIn {
                return Err(unexpected_copy_in());
            }
            run += len;
            if ends.is_end(tag) {
                last = true;
                break;
            }
        }
        if run == 0 {
            return Ok(false);
        }
        pending.unsplit(self.frames.take(run));
        if last || pending.len() >= CHUNK_TARGET {
            self.flush_head(last);
        }
        Ok(true)
    }

    fn route(&mut self, tag: u8, frame: BytesMut) -> Result<(), PgError> {
        let Some(head) = self.in_flight.front_mut() else {
            return Err(match parse_frame(frame)? {
                Message::ErrorResponse(body) => {
                    PgError::Server(Box::new(DbError::parse(&mut body.fields())?))
                }
                _ => PgError::Protocol(format!(
                    "the server sent a {:?} message while no request was waiting",
                    char::from(tag)
                )),
            });
        };
        let done = tag == b'Z';
        if done {
            if let Some(&status) = frame.get(5) {
                self.shared.set_transaction_status(status);
            }
        }
        match head {
            // A user request's frames are all taken, in runs, by
            // `take_user_run`; only asynchronous messages are left between
            // them, and those never reach here.
            InFlight::User { .. } => {
                return Err(PgError::Protocol(format!(
                    "internal: a {:?} frame of a request was routed on its own",
                    char::from(tag)
                )));
            }
            InFlight::Prepare {
                params,
                columns,
                error,
                ..
            } => match parse_frame(frame)? {
                Message::ParameterDescription(body) => *params = describe::params(&body)?,
                Message::RowDescription(body) => *columns = Some(describe::columns(&body)?),
                Message::ErrorResponse(body) => {
                    *error = Some(PgError::Server(Box::new(DbError::parse(
                        &mut body.fields(),
                    )?)))
                }
                Message::ReadyForQuery(_) => self.finish_prepare(),
                _ => {}
            },
            InFlight::Internal => {
                if let Message::ErrorResponse(body) = parse_frame(frame)? {
                    let _db = DbError::parse(&mut body.fields())?;
                    #[cfg(feature = "tracing")]
                    tracing::warn!(error = %_db, "closing an evicted statement failed");
                }
                if done {
                    self.in_flight.pop_front();
                    self.answer_settles();
                }
            }
            InFlight::Settle(_) => {
                return Err(PgError::Protocol(format!(
                    "internal: a {:?} frame reached a settled point",
                    char::from(tag)
                )));
            }
        }
        Ok(())
    }

    /// Hands the head request's buffered frames to its caller; `last`
    /// when they end with its ReadyForQuery.
    fn flush_head(&mut self, last: bool) {
        let Some(InFlight::User {
            answer, pending, ..
        }) = self.in_flight.front_mut()
        else {
            return;
        };
        // Splitting even an empty buffer allocates (bytes promotes it to a
        // shared one), and this runs after every read.
        if !pending.is_empty() {
            answer.push(pending.split());
        }
        if last {
            if let Some(InFlight::User { answer, .. }) = self.in_flight.pop_front() {
                if answer.is_waiting() {
                    self.draining.push(answer);
                }
            }
            self.answer_settles();
        }
    }

    /// Callers made room: send them what waits.
    fn deliver(&mut self) {
        if let Some(InFlight::User { answer, .. }) = self.in_flight.front_mut() {
            answer.deliver();
        }
        for answer in &mut self.draining {
            answer.deliver();
        }
        self.draining.retain(Answer::is_waiting);
    }

    fn finish_prepare(&mut self) {
        let Some(InFlight::Prepare {
            sql,
            name,
            params,
            columns,
            error,
        }) = self.in_flight.pop_front()
        else {
            return;
        };
        self.answer_settles();
        let waiters = self.preparing.remove(&sql).unwrap_or_default();
        let result = match error {
            Some(e) => Err(e),
            None => {
                let statement = Statement(Arc::new(StatementInner {
                    name,
                    sql: sql.clone(),
                    params,
                    columns: columns.unwrap_or_else(|| Vec::new().into()),
                }));
                if !statement.0.name.is_empty() {
                    self.statements.insert(sql, statement.clone());
                }
                Ok(statement)
            }
        };
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }

    /// NotificationResponse, NoticeResponse and ParameterStatus can arrive
    /// at any time, between any two messages of a request.
    fn asynchronous(&mut self, message: Message) -> Result<(), PgError> {
        let malformed = |e: io::Error| PgError::Protocol(format!("malformed message: {e}"));
        match message {
            Message::NotificationResponse(body) => {
                // The dispatcher ends only after this actor, so the send
                // fails only while shutting down, when nobody is listening.
                let _ = self.notifications.unbounded_send(Notification {
                    channel: body.channel().map_err(malformed)?.to_string(),
                    payload: body.message().map_err(malformed)?.to_string(),
                    process_id: body.process_id(),
                });
            }
            Message::NoticeResponse(body) => {
                let notice = DbError::parse(&mut body.fields())?;
                self.shared.notice(&notice);
            }
            Message::ParameterStatus(body) => {
                self.shared.set_parameter(
                    body.name().map_err(malformed)?.to_string(),
                    body.value().map_err(malformed)?.to_string(),
                );
            }
            _ => {}
        }
        Ok(())
    }

    /// The connection is unusable: every waiter and every queued request
    /// gets `error` (their channels close; handles read the reason from
    /// `Shared`), and later calls fail at once.
    fn fail_everything(&mut self, error: PgError) {
        #[cfg(feature = "tracing")]
        tracing::debug!(%error, "connection broken");
        self.shared.set_broken(error.clone());
        for request in self.in_flight.drain(..) {
            if let InFlight::User { answer, .. } = request {
                answer.break_off(error.clone());
            }
        }
        for answer in self.draining.drain(..) {
            answer.break_off(error.clone());
        }
        for (_, waiters) in self.preparing.drain() {
            for waiter in waiters {
                let _ = waiter.send(Err(error.clone()));
            }
        }
        self.mailbox.close();
        let mut waiting: Vec<Command> = self.held.drain(..).collect();
        while let Some(command) = self.mailbox.try_recv() {
            waiting.push(command);
        }
        for command in waiting {
            match command {
                Command::Close { reply } => self.closers.push(reply),
                other => refuse(other, &error),
            }
        }
    }
}

/// CopyInResponse or CopyBothResponse: the server now waits for data.
fn is_copy_in_start(tag: u8) -> bool {
    matches!(tag, b'G' | b'W')
}

/// The server entered copy-in mode for a request that has no data to send.
/// The query methods refuse `COPY … FROM STDIN` before sending it, so this
/// is a server (or a statement) we cannot follow; requests pipelined behind
/// it may already have been swallowed by the copy, so no answer after it can
/// be trusted: the connection ends.
fn unexpected_copy_in() -> PgError {
    PgError::Protocol(
        "the server began a COPY FROM STDIN for a request that cannot send data (use copy_in)"
            .into(),
    )
}

/// Answers a command that will not run with `error`.
fn refuse(command: Command, error: &PgError) {
    match command {
        Command::Request { responses, .. } => {
            let _ = responses.try_send(Err(error.clone()));
        }
        Command::Prepare { reply, .. } => {
            let _ = reply.send(Err(error.clone()));
        }
        Command::Close { .. }
        | Command::Settle { .. }
        | Command::ForgetStatements
        | Command::Lease { .. }
        | Command::Release { .. }
        | Command::Unreserve
        | Command::Data { .. } => {}
    }
}

fn ended_lease() -> PgError {
    PgError::Transaction(
        "this transaction (or cursor) has already ended; its handle can no longer run \
         statements"
            .into(),
    )
}
