//! `Connection`: the handle users hold. Cheap to clone, shared across tasks;
//! every method builds a request and sends it to the connection actor.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use futures_channel::oneshot;
use futures_util::future::Either;
use postgres_types::ToSql;

use crate::actors::both::Both;
use crate::actors::cancel::{CancelService, CancelTarget};
use crate::actors::connection::{
    Command, ConnectionActor, Ends, Opening, MAILBOX_BOUND, RESPONSE_CHANNEL_BOUND,
};
use crate::actors::dispatcher::{self, Subscribers};
use crate::actors::handshake::handshake;
use crate::actors::in_place::{ActorCell, ReadTurn, RunInPlace};
use crate::actors::mailbox::{mailbox, MailboxSender, Sent};
use crate::actors::reply::reply_channel;
use crate::actors::rt;
use crate::actors::shared::{NoticeHandler, Shared};
use crate::api::cancel::CancelToken;
use crate::api::config::{Config, Host};
use crate::api::cursor::CursorStream;
use crate::api::response::{collect, collect_as, Answer, FirstRow, Responses, RowsAffected};
use crate::api::row::{QueryResult, Row};
use crate::api::statement::{
    Statement, StatementCacheStats, StatementMemo, StatementRef, ToStatement,
};
use crate::api::stream::RowStream;
use crate::protocol::frontend;
use crate::protocol::startup::StartupParams;
use crate::transport::connect::{describe, open};
use crate::transport::negotiate::{negotiate, Attempt};
use crate::{AsyncTransport, DbError, PgError, SslMode};

/// A connection to PostgreSQL.
///
/// `Clone + Send + Sync`; every method takes `&self`. Clones share one
/// socket: requests from all of them are pipelined by the connection actor
/// in the order they arrive, each answered independently. The actor ends
/// (sending Terminate) when the last clone is dropped, or on [`close`].
///
/// [`close`]: Connection::close
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
    /// Per handle, so `with_query_timeout` views share one connection.
    query_timeout: Option<Duration>,
    /// Set on a transaction's own view of the connection: its requests go
    /// out under this lease (see [`Transaction`](crate::Transaction)).
    lease: Option<u64>,
}

struct Inner {
    /// The server session in use; a reconnection replaces it.
    session: SessionSlot,
    /// Who listens to which channel (shared with the dispatcher of every
    /// session).
    subscribers: Arc<Subscribers>,
    statements: StatementMemo,
    /// How to open the next session, with `auto_reconnect` on.
    reconnect: Option<Reconnect>,
    /// `close()` was called: never reconnect.
    closed: AtomicBool,
}

/// Where a connection keeps its session: for its whole life, or, with
/// `auto_reconnect`, replaceable (only then does every call take a lock).
enum SessionSlot {
    Fixed(Arc<Session>),
    Replaceable(RwLock<Arc<Session>>),
}

impl SessionSlot {
    fn get(&self) -> Arc<Session> {
        match self {
            SessionSlot::Fixed(session) => session.clone(),
            SessionSlot::Replaceable(slot) => crate::sync::read(slot).clone(),
        }
    }

    fn shared(&self) -> Arc<Shared> {
        match self {
            SessionSlot::Fixed(session) => session.shared.clone(),
            SessionSlot::Replaceable(slot) => crate::sync::read(slot).shared.clone(),
        }
    }
}

/// One server session: its actor's mailbox and state.
pub(crate) struct Session {
    mailbox: MailboxSender<Command>,
    shared: Arc<Shared>,
    backend_key: Option<(i32, i32)>,
    cancel: CancelToken,
}

/// A reconnection, shared by every caller that finds the session broken.
type Reopening = futures_util::future::Shared<
    Pin<Box<dyn Future<Output = Result<Arc<Session>, PgError>> + Send>>,
>;

struct Reconnect {
    config: Config,
    under_way: Mutex<Option<Reopening>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("backend_pid", &self.backend_pid())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A call running under a deadline (the rare, boxed path of `timed`).
type BoxedCall<'a, T> = Pin<Box<dyn Future<Output = Result<T, PgError>> + Send + 'a>>;

/// Room for the message headers of one request, so encoding a typical
/// request allocates once.
const REQUEST_OVERHEAD: usize = 128;

/// The actor future returned by [`Connection::connect_with_transport`]: run
/// it on any executor; it finishes when the connection ends.
pub type ConnectionTask = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

impl Connection {
    /// Connects and authenticates, trying each configured host in order.
    ///
    /// The connection actor is spawned on tokio (native, feature
    /// `tokio-transport`) or on wstd's reactor (wasm32-wasip2).
    /// `connect_timeout` bounds each host's connect and startup.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), wasi_pg_client::PgError> {
    /// use wasi_pg_client::{Config, Connection};
    /// let config = Config::from_uri("postgresql://app:secret@localhost/shop?sslmode=disable")?;
    /// let conn = Connection::connect(&config).await?;
    /// let row = conn.query_one("SELECT $1::int4 + 1", &[&41i32]).await?;
    /// assert_eq!(row.get::<_, i32>(0)?, 42);
    /// conn.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: &Config) -> Result<Connection, PgError> {
        let subscribers = Arc::new(Subscribers::default());
        let session = Connection::open_session(config, &subscribers).await?;
        let reconnect = config.auto_reconnect.then(|| Reconnect {
            config: config.clone(),
            under_way: Mutex::new(None),
        });
        Ok(Connection::with_session(
            session,
            subscribers,
            config,
            reconnect,
        ))
    }

    /// Opens a session (trying each host in turn) and spawns its actor.
    async fn open_session(
        config: &Config,
        subscribers: &Arc<Subscribers>,
    ) -> Result<Session, PgError> {
        if !rt::HAS_RUNTIME {
            return Err(PgError::Config(
                "Connection::connect needs a runtime: enable the `tokio-transport` feature, or \
                 use Connection::connect_with_transport and run the returned task yourself"
                    .into(),
            ));
        }
        let default_host = [Host::Tcp("localhost".into())];
        let hosts = if config.hosts.is_empty() {
            &default_host[..]
        } else {
            &config.hosts[..]
        };
        // libpq's `allow`: plaintext first, TLS if the server refuses that.
        let attempts: &[Attempt] = if config.ssl_mode == SslMode::Allow {
            &[Attempt::PlainFirst, Attempt::AsConfigured]
        } else {
            &[Attempt::AsConfigured]
        };
        let mut last_error = None;
        for (i, host) in hosts.iter().enumerate() {
            let port = match config.ports.as_slice() {
                [] => 5432,
                [one] => *one,
                many => many.get(i).copied().unwrap_or(5432),
            };
            let target = describe(host, port);
            for &attempt in attempts {
                let connecting = async {
                    let socket = open(host, port).await?;
                    Connection::start(config, socket, host, attempt, Some(port), subscribers).await
                };
                let what = format!("connecting to {target}");
                match rt::timeout(config.connect_timeout, &what, connecting).await {
                    Ok(Ok((session, task))) => {
                        rt::spawn(task);
                        return Ok(session);
                    }
                    Ok(Err(e)) | Err(e) => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(%target, error = %e, "connection attempt failed");
                        let refused =
                            matches!(&e, PgError::Server(db) if db.code.starts_with("28"));
                        last_error = Some(e);
                        if !(attempt == Attempt::PlainFirst && refused) {
                            break;
                        }
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| PgError::Config("no host to connect to".into())))
    }

    /// Negotiates TLS (per `sslmode`), authenticates over a stream you
    /// opened yourself, and returns the handle plus the actor future. Run
    /// the future on your executor (it is `Send`); the handle works once it
    /// runs. The first configured host (default `localhost`) is the name a
    /// server certificate is checked against.
    ///
    /// This is how a user of another executor drives the actor, and how
    /// tests talk to a fake server over [`transport::memory`](crate::transport::memory).
    pub async fn connect_with_transport<T: AsyncTransport>(
        config: &Config,
        transport: T,
    ) -> Result<(Connection, ConnectionTask), PgError> {
        let localhost = Host::Tcp("localhost".into());
        let host = config.hosts.first().unwrap_or(&localhost);
        let attempt = if config.ssl_mode == SslMode::Allow {
            Attempt::PlainFirst
        } else {
            Attempt::AsConfigured
        };
        let subscribers = Arc::new(Subscribers::default());
        let (session, task) =
            Connection::start(config, transport, host, attempt, None, &subscribers).await?;
        Ok((
            Connection::with_session(session, subscribers, config, None),
            task,
        ))
    }

    fn with_session(
        session: Session,
        subscribers: Arc<Subscribers>,
        config: &Config,
        reconnect: Option<Reconnect>,
    ) -> Connection {
        let session = Arc::new(session);
        let session = if reconnect.is_some() {
            SessionSlot::Replaceable(RwLock::new(session))
        } else {
            SessionSlot::Fixed(session)
        };
        Connection {
            inner: Arc::new(Inner {
                session,
                subscribers,
                statements: StatementMemo::new(config.statement_cache_size),
                reconnect,
                closed: AtomicBool::new(false),
            }),
            query_timeout: config.query_timeout,
            lease: None,
        }
    }

    /// `port` is known when we opened the socket ourselves; only then can a
    /// cancel request reach the same server.
    async fn start<T: AsyncTransport>(
        config: &Config,
        transport: T,
        host: &Host,
        attempt: Attempt,
        port: Option<u16>,
        subscribers: &Arc<Subscribers>,
    ) -> Result<(Session, ConnectionTask), PgError> {
        let stream = negotiate(transport, config, host, attempt).await?;
        let encrypted = stream.is_encrypted();
        let params = StartupParams {
            user: config
                .user
                .clone()
                .ok_or_else(|| PgError::Config("no user name configured (user=…)".into()))?,
            password: config.password.clone(),
            dbname: config.dbname.clone(),
            application_name: config.application_name.clone(),
            options: config.options.clone(),
            allow_insecure_auth: config.allow_insecure_auth,
            encrypted,
            channel_binding: stream.channel_binding(),
            channel_binding_mode: config.channel_binding,
            require_auth: config.require_auth.clone(),
        };
        let (info, frames) = handshake(&stream, params, config.max_message_size).await?;
        let shared = Arc::new(Shared::new(info.parameters));
        for notice in &info.notices {
            shared.notice(notice);
        }
        let (tx, rx) = mailbox(MAILBOX_BOUND);
        let (notify_tx, notify_rx) = futures_channel::mpsc::unbounded();
        let actor = ConnectionActor::new(
            stream,
            frames,
            rx,
            shared.clone(),
            config.statement_cache_size,
            notify_tx,
        );
        let read = actor.read_redirect();
        let target = match (port, info.backend_key) {
            (Some(port), Some((process_id, secret_key))) => Some(Arc::new(CancelTarget {
                config: config.clone(),
                host: host.clone(),
                port,
                attempt: if encrypted {
                    Attempt::AsConfigured
                } else {
                    Attempt::PlainFirst
                },
                process_id,
                secret_key,
            })),
            _ => None,
        };
        let session = Session {
            mailbox: tx,
            shared,
            backend_key: info.backend_key,
            cancel: CancelToken {
                service: CancelService::spawn(),
                target,
            },
        };
        // The dispatcher runs beside the connection actor, in the same task
        // (so `connect_with_transport` still hands over a single future), and
        // ends after it.
        let (cell, task) = ActorCell::new(
            Both::new(
                actor.run(),
                dispatcher::run(
                    notify_rx,
                    subscribers.clone(),
                    session.shared.clone(),
                    // Only a connection that opened its own socket can open
                    // another.
                    port.is_some() && config.auto_reconnect,
                ),
            ),
            session.shared.clone(),
            read,
        );
        // Weak: a task dropped unfinished (its runtime shut down) takes the
        // actor with it, as before.
        let cell: Arc<dyn RunInPlace> = cell;
        session.mailbox.run_in_place_with(Arc::downgrade(&cell));
        Ok((session, Box::pin(task)))
    }

    /// The session in use.
    fn session(&self) -> Arc<Session> {
        self.inner.session.get()
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.inner.session.shared()
    }

    async fn send(&self, command: Command) -> Result<(), PgError> {
        self.send_with(|_| command).await.map(drop)
    }

    /// Sends the command `make` builds for the live session (reconnecting
    /// first if need be), and returns that session.
    async fn send_with(
        &self,
        make: impl FnOnce(&Arc<Session>) -> Command,
    ) -> Result<Arc<Session>, PgError> {
        let session = self.live_session().await?;
        session
            .mailbox
            .send(make(&session))
            .await
            .map_err(|_| session.shared.gone())?;
        Ok(session)
    }

    /// The session in use; if it broke and `auto_reconnect` is on, a new
    /// one (opened now, or by another caller that found it broken first).
    async fn live_session(&self) -> Result<Arc<Session>, PgError> {
        let session = self.session();
        let Some(error) = session.shared.broken() else {
            return Ok(session);
        };
        match &self.inner.reconnect {
            Some(how) if !self.inner.closed.load(Ordering::Relaxed) => {
                self.reconnect(how, &session).await
            }
            _ => Err(error),
        }
    }

    async fn reconnect(
        &self,
        how: &Reconnect,
        broken: &Arc<Session>,
    ) -> Result<Arc<Session>, PgError> {
        let reopening = {
            let mut under_way = crate::sync::lock(&how.under_way);
            let current = self.session();
            if !Arc::ptr_eq(&current, broken) {
                // Another caller has already replaced it.
                return Ok(current);
            }
            under_way
                .get_or_insert_with(|| {
                    // Only a weak reference: a reconnection nobody waits for
                    // any more must not keep the connection alive.
                    let inner = Arc::downgrade(&self.inner);
                    let opening = crate::api::reconnect::reopen(
                        how.config.clone(),
                        self.inner.subscribers.clone(),
                        broken.shared.session_params(),
                    );
                    let reopen: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
                        let restored = opening.await;
                        let inner = inner.upgrade().ok_or_else(|| {
                            PgError::Closed("the connection was dropped while reconnecting".into())
                        })?;
                        Connection::put_in_place(&inner, restored)
                    });
                    futures_util::FutureExt::shared(reopen)
                })
                .clone()
        };
        reopening.await
    }

    /// Makes the restored session (or the failure to open one) the
    /// outcome of the reconnection under way: the new session replaces the
    /// broken one for every clone, with the old one's notice handler.
    fn put_in_place(
        inner: &Inner,
        restored: Result<Connection, PgError>,
    ) -> Result<Arc<Session>, PgError> {
        if let Some(how) = inner.reconnect.as_ref() {
            *crate::sync::lock(&how.under_way) = None;
        }
        let session = restored?.session();
        let SessionSlot::Replaceable(slot) = &inner.session else {
            return Err(PgError::Closed("reconnecting is off".into()));
        };
        let mut current = crate::sync::write(slot);
        session
            .shared
            .set_notice_handler(current.shared.notice_handler());
        *current = session.clone();
        drop(current);
        // The old session's prepared statements are gone with it.
        inner.statements.clear();
        Ok(session)
    }

    /// A handle on a new session of its own (no reconnecting), sharing
    /// `subscribers`: what a reconnection restores the old session's state
    /// on.
    pub(crate) async fn connect_session(
        config: &Config,
        subscribers: Arc<Subscribers>,
    ) -> Result<Connection, PgError> {
        let session = Connection::open_session(config, &subscribers).await?;
        Ok(Connection::with_session(session, subscribers, config, None))
    }

    /// Encodes and sends one execution of `statement` (checked before
    /// anything is sent).
    async fn execute_request(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
        reservation: Reservation,
    ) -> Result<Responses, PgError> {
        let mut bytes = BytesMut::with_capacity(REQUEST_OVERHEAD + 16 * params.len());
        frontend::execute_statement(
            &statement.0.name,
            &statement.0.sql,
            &statement.0.params,
            params,
            &mut bytes,
        )?;
        self.send_request(bytes, self.lease, Ends::SYNC, reservation, false)
            .await
    }

    /// Sends an encoded request (under this view's lease, if any) and
    /// returns its answer's messages.
    pub(crate) async fn request(&self, bytes: BytesMut) -> Result<Responses, PgError> {
        self.request_in(bytes, self.lease, Ends::SYNC).await
    }

    /// Sends a request, as part of `lease` if given.
    pub(crate) async fn request_in(
        &self,
        bytes: BytesMut,
        lease: Option<u64>,
        ends: Ends,
    ) -> Result<Responses, PgError> {
        self.send_request(bytes, lease, ends, Reservation::none(), false)
            .await
    }

    /// Sends the last request of `lease` (a COMMIT, a cursor's Close): the
    /// lease ends as the request is queued, so its release costs no command
    /// of its own.
    pub(crate) async fn request_ending_lease(
        &self,
        bytes: BytesMut,
        lease: u64,
    ) -> Result<Responses, PgError> {
        self.send_request(bytes, Some(lease), Ends::SYNC, Reservation::none(), true)
            .await
    }

    /// Sends a request that settles `reservation` (if it holds one) and,
    /// if `ends_lease`, ends its lease.
    async fn send_request(
        &self,
        bytes: BytesMut,
        lease: Option<u64>,
        ends: Ends,
        reservation: Reservation,
        ends_lease: bool,
    ) -> Result<Responses, PgError> {
        let (tx, rx) = reply_channel(RESPONSE_CHANNEL_BOUND);
        // `send_with` spelt out: on this, every query's path, the closure
        // measured about 60 more instructions per request (callgrind).
        let session = self.live_session().await?;
        let sent = session
            .mailbox
            .send(Command::Request {
                bytes,
                responses: tx,
                lease,
                ends,
                reserved: reservation.is_for(&session),
                ends_lease,
            })
            .await
            .map_err(|_| session.shared.gone())?;
        reservation.settled();
        // Sent in place: the actor has nothing else to do, and this caller
        // may read the answer itself.
        let turn = sent
            .ran_in_place
            .map(|runner| ReadTurn::new(runner, sent.number));
        Ok(Responses::new(rx, session.shared.clone(), ends, turn))
    }

    /// Takes the connection's lease: until it is released, only requests
    /// made with it reach the socket; other handles' requests wait in
    /// order. Asked under a lease (a transaction's view), it is granted on
    /// top of that one, which waits for it in turn.
    pub(crate) async fn lease(&self) -> Result<u64, PgError> {
        self.lease_settling(Reservation::none()).await
    }

    /// [`lease`](Self::lease) as the next step of a statement prepared
    /// with a reservation (a cursor's), which it settles.
    pub(crate) async fn lease_settling(&self, reservation: Reservation) -> Result<u64, PgError> {
        let (lease, _, _) = self.lease_with(reservation, None).await?;
        Ok(lease)
    }

    /// [`lease`](Self::lease) with `opening` (a transaction's BEGIN) as the
    /// lease's first request, sent in the same command as the lease is
    /// granted: the lease, and the opening's answer.
    pub(crate) async fn lease_opening(
        &self,
        opening: BytesMut,
    ) -> Result<(u64, Responses), PgError> {
        let (tx, rx) = reply_channel(RESPONSE_CHANNEL_BOUND);
        let opening = Opening {
            bytes: opening,
            responses: tx,
        };
        let (lease, sent, session) = self.lease_with(Reservation::none(), Some(opening)).await?;
        // Sent in place (and granted at once): the caller may read BEGIN's
        // answer itself, as for any request.
        let turn = sent
            .ran_in_place
            .map(|runner| ReadTurn::new(runner, sent.number));
        Ok((
            lease,
            Responses::new(rx, session.shared.clone(), Ends::SYNC, turn),
        ))
    }

    /// Asks for the lease (with `opening`, if any) and waits for the grant;
    /// a caller that gives up meanwhile leaves nothing held (`PendingLease`).
    async fn lease_with(
        &self,
        reservation: Reservation,
        opening: Option<Opening>,
    ) -> Result<(u64, Sent, Arc<Session>), PgError> {
        let (reply, granted) = oneshot::channel();
        let opens = opening.is_some();
        let session = self.live_session().await?;
        let sent = session
            .mailbox
            .send(Command::Lease {
                reply,
                reserved: reservation.is_for(&session),
                parent: self.lease,
                opening,
            })
            .await
            .map_err(|_| session.shared.gone())?;
        reservation.settled();
        let mut pending = PendingLease {
            conn: self,
            granted,
            opens,
        };
        let lease = (&mut pending.granted).await.map_err(|_| {
            if self.is_closed() {
                self.shared().gone()
            } else {
                // Refused: the lease it was asked under has ended.
                PgError::Transaction("this transaction has already ended".into())
            }
        })?;
        Ok((lease, sent, session))
    }

    /// The lease this view runs under, if it is a transaction's.
    pub(crate) fn current_lease(&self) -> Option<u64> {
        self.lease
    }

    /// This connection as seen by the holder of `lease`.
    pub(crate) fn leased(&self, lease: u64) -> Connection {
        Connection {
            inner: self.inner.clone(),
            query_timeout: self.query_timeout,
            lease: Some(lease),
        }
    }

    /// Sends a request at once, even past the mailbox's bound: for the
    /// LISTEN/UNLISTEN that must be queued in the same critical section as
    /// the registry change they follow.
    pub(crate) fn request_now(&self, bytes: BytesMut) -> Result<Responses, PgError> {
        let session = self.session();
        if let Some(e) = session.shared.broken() {
            return Err(e);
        }
        let (tx, rx) = reply_channel(RESPONSE_CHANNEL_BOUND);
        session
            .mailbox
            .force_send(Command::Request {
                bytes,
                responses: tx,
                lease: self.lease,
                ends: Ends::SYNC,
                reserved: false,
                ends_lease: false,
            })
            .map_err(|_| session.shared.gone())?;
        Ok(Responses::new(rx, session.shared.clone(), Ends::SYNC, None))
    }

    /// Fails if the connection is closed or broken, unless `auto_reconnect`
    /// can open a new session (then it does).
    pub(crate) async fn ensure_live(&self) -> Result<(), PgError> {
        self.live_session().await.map(drop)
    }

    /// Starts reconnecting in the background (a subscriber found out the
    /// session broke, and may be the only one using the connection).
    pub(crate) fn reconnect_in_background(&self) {
        if self.inner.reconnect.is_some() {
            let conn = self.clone();
            rt::try_spawn(async move {
                let _ = conn.ensure_live().await;
            });
        }
    }

    /// The notification subscribers' registry, and the connection's own.
    pub(crate) fn subscribers(&self) -> &Subscribers {
        &self.inner.subscribers
    }

    /// Queues `bytes` under `lease` with its answer discarded, without
    /// waiting: for `Drop`, which cannot await.
    pub(crate) fn send_detached(&self, lease: u64, bytes: BytesMut) {
        self.force_request(lease, bytes, false);
    }

    /// Queues `bytes` under `lease`, past the mailbox's bound, with the
    /// answer discarded; `ends_lease`: as the lease's last request.
    fn force_request(&self, lease: u64, bytes: BytesMut, ends_lease: bool) {
        let (tx, _discarded) = reply_channel(1);
        let _ = self.session().mailbox.force_send(Command::Request {
            bytes,
            responses: tx,
            lease: Some(lease),
            ends: Ends::SYNC,
            reserved: false,
            ends_lease,
        });
    }

    /// Queues bytes with no answer of their own under `lease` (COPY data);
    /// `taken` is told once they are in the actor's write buffer. Never
    /// waits: the copy keeps at most one chunk on its way.
    pub(crate) fn send_data(
        &self,
        lease: u64,
        bytes: BytesMut,
        taken: Option<oneshot::Sender<()>>,
    ) -> Result<(), PgError> {
        let session = self.session();
        session
            .mailbox
            .force_send(Command::Data {
                bytes,
                lease,
                taken,
            })
            .map_err(|_| session.shared.gone())
    }

    /// Sends `bytes` (if any) as the lease's last request, with its answer
    /// discarded, and releases the lease, without waiting: for `Drop`.
    pub(crate) fn release_lease(&self, lease: u64, last: Option<BytesMut>) {
        match last {
            Some(bytes) => self.force_request(lease, bytes, true),
            None => {
                let _ = self
                    .session()
                    .mailbox
                    .force_send(Command::Release { lease });
            }
        }
    }

    /// Runs SQL without parameters and returns its rows.
    ///
    /// The SQL may hold several statements separated by `;` (a DDL script,
    /// say). A single statement runs through the extended protocol with
    /// binary results, in one round trip. When the server refuses a string
    /// of several statements there (SQLSTATE 42601, nothing has run yet),
    /// it is re-sent through the simple protocol; then, like libpq's
    /// `PQexec`, the result of the last statement is returned and its values
    /// arrive as text: built-in scalars (bool, integers, floats, oid, text
    /// types) still read as their Rust types, anything else reads as
    /// `String`.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, PgError> {
        self.timed(async {
            let mut bytes = BytesMut::with_capacity(sql.len() + REQUEST_OVERHEAD);
            frontend::query_extended(sql, &mut bytes)?;
            match collect(self.request(bytes).await?, None).await {
                Err(PgError::Server(db)) if is_multi_statement_refusal(&db) => {
                    self.simple_query_untimed(sql).await
                }
                other => other,
            }
        })
        .await
    }

    /// Runs SQL through the simple query protocol (several statements
    /// allowed; text values; the last statement's result is returned).
    pub async fn simple_query(&self, sql: &str) -> Result<QueryResult, PgError> {
        self.timed(self.simple_query_untimed(sql)).await
    }

    async fn simple_query_untimed(&self, sql: &str) -> Result<QueryResult, PgError> {
        let mut bytes = BytesMut::with_capacity(sql.len() + REQUEST_OVERHEAD);
        frontend::simple_query(sql, &mut bytes)?;
        collect(self.request(bytes).await?, None).await
    }

    /// Runs `call` under this handle's query timeout: when it fires, the
    /// server is asked to cancel (so the query does not run on unseen) and
    /// the call fails with `PgError::Timeout`.
    pub(crate) fn timed<'a, T, F>(&'a self, call: F) -> Either<F, BoxedCall<'a, T>>
    where
        F: Future<Output = Result<T, PgError>> + Send + 'a,
        T: Send + 'a,
    {
        // Not an `async fn`: one taking `call` as an argument and awaiting
        // it stores the future twice, doubling every query's future. The
        // deadline path is boxed for the same reason (timer and cancel).
        match self.query_timeout {
            None => Either::Left(call),
            Some(limit) => Either::Right(Box::pin(self.with_deadline(limit, call))),
        }
    }

    async fn with_deadline<T, F>(&self, limit: Duration, call: F) -> Result<T, PgError>
    where
        F: Future<Output = Result<T, PgError>>,
    {
        match rt::timeout(Some(limit), "the query", call).await {
            Ok(result) => result,
            Err(timeout) => {
                if let Err(_e) = self.cancel_token().cancel().await {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(error = %_e, "cancelling a timed-out query failed");
                }
                Err(timeout)
            }
        }
    }

    /// A handle to the same connection whose calls fail with
    /// `PgError::Timeout` after `limit`, cancelling the query on the server
    /// (the per-call form of `Config::query_timeout`).
    ///
    /// ```no_run
    /// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
    /// use std::time::Duration;
    /// let rows = conn.with_query_timeout(Duration::from_secs(2)).query("SELECT 1").await?;
    /// # let _ = rows; Ok(()) }
    /// ```
    pub fn with_query_timeout(&self, limit: Duration) -> Connection {
        Connection {
            inner: self.inner.clone(),
            query_timeout: Some(limit),
            lease: self.lease,
        }
    }

    /// A token that cancels whatever this connection is running; see
    /// [`CancelToken`].
    pub fn cancel_token(&self) -> CancelToken {
        self.session().cancel.clone()
    }

    /// Prepares `sql` (or takes it from the connection's statement cache).
    pub async fn prepare(&self, sql: &str) -> Result<Statement, PgError> {
        let (statement, _none) = self.prepare_replacing(sql, None, false).await?;
        Ok(statement)
    }

    /// Prepares `sql` (afresh if `stale`). With `reserve`, an execution
    /// will follow at once: the reservation returned holds back any lease
    /// asked for meanwhile (see `Command::Prepare`), so a transaction
    /// begun by another handle cannot shut this query out.
    async fn prepare_replacing(
        &self,
        sql: &str,
        stale: Option<Statement>,
        reserve: bool,
    ) -> Result<(Statement, Reservation), PgError> {
        // Inside a lease nobody can cut in.
        let reserve = reserve && self.lease.is_none();
        let (reply, answer) = oneshot::channel();
        self.send(Command::Prepare {
            sql: sql.to_string(),
            lease: self.lease,
            reserve,
            stale,
            reply,
        })
        .await?;
        // From here on the actor counts the reservation: the guard settles
        // it however this call ends.
        let reservation = if reserve {
            Reservation::held(self)
        } else {
            Reservation::none()
        };
        let statement = answer.await.map_err(|_| self.shared().gone())??;
        Ok((statement, reservation))
    }

    /// The statement to execute: given, remembered, or prepared now (with a
    /// reservation when `reserve`, see [`prepare_replacing`]).
    ///
    /// [`prepare_replacing`]: Self::prepare_replacing
    pub(crate) async fn statement<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        reserve: bool,
    ) -> Result<(Statement, Reservation), PgError> {
        match statement.as_statement() {
            StatementRef::Sql(sql) => {
                if let Some(statement) = self.inner.statements.get(sql) {
                    self.shared()
                        .statement_hits
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok((statement, Reservation::none()));
                }
                // Boxed, like the other rare paths here: query futures stay
                // small (callers box or spawn them, and wasm's stack is 1 MiB).
                let (statement, reservation) =
                    Box::pin(self.prepare_replacing(sql, None, reserve)).await?;
                self.inner.statements.insert(&statement);
                Ok((statement, reservation))
            }
            StatementRef::Prepared(s) => Ok((s.clone(), Reservation::none())),
        }
    }

    /// Runs a statement with parameters (extended protocol, binary values)
    /// and returns its rows. Parameters are checked and encoded before
    /// anything is sent: a wrong count or an unencodable value is an
    /// `Encode` error and the connection stays usable.
    ///
    /// ```no_run
    /// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
    /// let result = conn
    ///     .query_params("SELECT * FROM users WHERE age > $1 AND city = $2", &[&18i32, &"Paris"])
    ///     .await?;
    /// for row in result.iter() {
    ///     let name: &str = row.get("name")?;
    ///     # let _ = name;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn query_params<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<QueryResult, PgError> {
        self.query_as(statement, params).await
    }

    /// [`query_params`](Self::query_params), keeping of the answer what `A`
    /// keeps.
    async fn query_as<A: Answer, S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<A, PgError> {
        self.timed(async {
            let (mut statement, mut reservation) = self.statement(statement, true).await?;
            let mut retried = false;
            loop {
                let responses = self
                    .execute_request(&statement, params, reservation)
                    .await?;
                match collect_as(responses, Some(statement.0.columns.clone())).await {
                    // The server dropped the statement (DEALLOCATE, a
                    // pooler) or its plan no longer fits: nothing ran, so
                    // prepare again and retry, once. Inside a transaction
                    // block the error has aborted it; the caller decides.
                    Err(PgError::Server(db))
                        if !retried
                            && is_stale_statement(&db)
                            && self.shared().transaction_status() == b'I' =>
                    {
                        retried = true;
                        self.inner.statements.invalidate(&statement);
                        let (fresh, held) = Box::pin(self.prepare_replacing(
                            statement.sql(),
                            Some(statement.clone()),
                            true,
                        ))
                        .await?;
                        self.inner.statements.insert(&fresh);
                        statement = fresh;
                        reservation = held;
                    }
                    other => return other,
                }
            }
        })
        .await
    }

    /// Runs SQL without parameters and streams its rows (one statement;
    /// binary values). See [`RowStream`] for memory and ordering.
    pub async fn query_stream(&self, sql: &str) -> Result<RowStream, PgError> {
        let mut bytes = BytesMut::with_capacity(sql.len() + REQUEST_OVERHEAD);
        frontend::query_extended(sql, &mut bytes)?;
        Ok(RowStream::new(self.request(bytes).await?, None))
    }

    /// Runs a statement with parameters and streams its rows.
    ///
    /// ```no_run
    /// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
    /// let mut stream = conn
    ///     .query_params_stream("SELECT * FROM users WHERE age > $1", &[&18i32])
    ///     .await?;
    /// while let Some(row) = stream.next().await? {
    ///     let name: String = row.get("name")?;
    ///     # let _ = name;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn query_params_stream<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<RowStream, PgError> {
        let (statement, reservation) = self.statement(statement, true).await?;
        let responses = self
            .execute_request(&statement, params, reservation)
            .await?;
        Ok(RowStream::new(responses, Some(statement.0.columns.clone())))
    }

    /// Streams a statement's rows through a portal, `fetch_size` rows per
    /// round trip: memory stays at one batch on both sides, for results
    /// too large to stream in one go.
    ///
    /// While the cursor is open it holds the connection's lease (the portal
    /// lives in its own implicit transaction): other handles' requests
    /// wait, in order, until it ends or is dropped.
    ///
    /// ```no_run
    /// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
    /// let mut cursor = conn
    ///     .query_cursor_stream("SELECT * FROM huge_table WHERE category = $1", &[&"electronics"], 1000)
    ///     .await?;
    /// while let Some(row) = cursor.next().await? {
    ///     # let _ = row;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn query_cursor_stream<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
        fetch_size: usize,
    ) -> Result<CursorStream, PgError> {
        let (statement, reservation) = self.statement(statement, true).await?;
        CursorStream::open(self, &statement, params, fetch_size, reservation).await
    }

    /// Runs a statement with parameters; the result's `rows_affected()`
    /// gives the count the command reported.
    pub async fn execute_params<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<QueryResult, PgError> {
        self.query_params(statement, params).await
    }

    /// Runs a statement with parameters and returns how many rows it
    /// affected (0 for commands that report no count).
    pub async fn execute<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PgError> {
        let RowsAffected(rows) = self.query_as(statement, params).await?;
        Ok(rows)
    }

    /// Runs a statement that must return exactly one row.
    pub async fn query_one<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgError> {
        match self.query_as(statement, params).await? {
            FirstRow {
                first: Some(row),
                rows: 1,
            } => Ok(row),
            FirstRow { rows, .. } => Err(PgError::Decode(format!(
                "expected exactly one row, got {rows}"
            ))),
        }
    }

    /// Runs a statement that returns at most one row.
    pub async fn query_opt<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PgError> {
        match self.query_as(statement, params).await? {
            FirstRow { first, rows: 0 | 1 } => Ok(first),
            FirstRow { rows, .. } => Err(PgError::Decode(format!(
                "expected at most one row, got {rows}"
            ))),
        }
    }

    /// A server parameter reported through ParameterStatus
    /// (`server_version`, `TimeZone`, `application_name`, …), kept current
    /// as the server reports changes.
    pub fn parameter(&self, name: &str) -> Option<String> {
        self.shared().parameter(name)
    }

    /// How often a statement was found prepared (`hits`) or had to be
    /// prepared (`misses`, one Parse each), since the connection opened.
    pub fn statement_cache_stats(&self) -> StatementCacheStats {
        use std::sync::atomic::Ordering::Relaxed;
        StatementCacheStats {
            hits: self.shared().statement_hits.load(Relaxed),
            misses: self.shared().statement_misses.load(Relaxed),
        }
    }

    /// Bytes read from the server that wait inside the connection actor
    /// for callers that have not taken them yet: now, and the most since
    /// the connection opened. Besides these, each request's channel holds
    /// at most a fixed number of chunks. A slow stream consumer makes the
    /// actor stop reading, so these stay small however large the result.
    pub fn buffered_bytes(&self) -> BufferedBytes {
        let (now, peak) = self.shared().buffered_bytes();
        BufferedBytes { now, peak }
    }

    /// The server process ID serving this connection.
    pub fn backend_pid(&self) -> Option<i32> {
        self.session().backend_key.map(|(pid, _)| pid)
    }

    /// Sets the callback for server notices (NoticeResponse: `RAISE NOTICE`,
    /// warnings). Without one, notices are logged through `tracing` at INFO.
    pub fn set_notice_handler<F>(&self, handler: F)
    where
        F: Fn(&DbError) + Send + Sync + 'static,
    {
        self.shared()
            .set_notice_handler(Some(Arc::new(handler) as NoticeHandler));
    }

    /// Whether the connection is closed or broken (later calls fail at
    /// once, or, with `auto_reconnect`, the next one reconnects first).
    pub fn is_closed(&self) -> bool {
        let session = self.session();
        session.shared.broken().is_some() || session.mailbox.is_closed()
    }

    /// Finishes the work already queued, sends Terminate and waits for the
    /// actor to end. Later calls on any clone fail with `Closed` (it does
    /// not reconnect, even with `auto_reconnect`).
    pub async fn close(&self) -> Result<(), PgError> {
        self.inner.closed.store(true, Ordering::Relaxed);
        let session = self.session();
        if session.shared.broken().is_some() {
            return Ok(());
        }
        let (reply, done) = oneshot::channel();
        if session
            .mailbox
            .send(Command::Close { reply })
            .await
            .is_err()
        {
            // Already closed: nothing left to finish.
            return Ok(());
        }
        let _ = done.await;
        Ok(())
    }
}

/// What the pool needs to know about, and do to, a connection it takes
/// back.
#[cfg(feature = "pool")]
impl Connection {
    /// The transaction status (`b'I'`, `b'T'` or `b'E'`) once every
    /// request sent before this call has been answered. No round trip to
    /// the server: the actor answers when the answers before it are in.
    pub(crate) async fn settle(&self) -> Result<u8, PgError> {
        let (reply, status) = oneshot::channel();
        self.send(Command::Settle { reply }).await?;
        status.await.map_err(|_| self.shared().gone())
    }

    /// The transaction status, when the actor is known to have finished
    /// everything ever sent to it (so no `settle` is needed); `None` when
    /// that is not known right now.
    pub(crate) fn status_if_settled(&self) -> Option<u8> {
        let session = self.session();
        session.shared.status_if_settled(session.mailbox.pushed())
    }

    /// Forgets the client-side state of a session the server has just reset
    /// (`DISCARD ALL`): prepared statements, parameters set with
    /// `set_param`, listened channels.
    pub(crate) fn forget_session(&self) {
        let _ = self.session().mailbox.force_send(Command::ForgetStatements);
        self.inner.statements.clear();
        self.shared().forget_session_params();
        crate::sync::lock(&self.subscribers().registry).forget_channels();
    }

    /// Whether this handle (or a view of it sharing its clone count) is the
    /// only one left: nobody else can send it anything.
    pub(crate) fn is_sole_handle(&self) -> bool {
        Arc::strong_count(&self.inner) == 1
    }
}

/// What [`Connection::buffered_bytes`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BufferedBytes {
    /// Bytes waiting in the actor now.
    pub now: usize,
    /// The most that ever waited at once.
    pub peak: usize,
}

/// A promise to the actor that an execution follows a Prepare (see
/// `Command::Prepare`): settled by sending that execution, or, if the call
/// ends first (an error, the caller giving up), given up by message.
pub(crate) struct Reservation {
    /// The session the reservation was made in (a reconnection may have
    /// replaced it since; the new one knows nothing of it).
    session: Option<Arc<Session>>,
}

impl Reservation {
    pub(crate) fn none() -> Self {
        Reservation { session: None }
    }

    fn held(conn: &Connection) -> Self {
        Reservation {
            session: Some(conn.session()),
        }
    }

    /// Whether it was made in `session` (so sending there settles it).
    fn is_for(&self, session: &Arc<Session>) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, session))
    }

    /// The execution was sent: nothing left to give up.
    pub(crate) fn settled(mut self) {
        self.session = None;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.mailbox.force_send(Command::Unreserve);
        }
    }
}

/// A lease asked for but not yet seen: if the caller gives up after the
/// actor granted it, the grant is still in the channel and is released here,
/// or the connection would stay leased to nobody.
struct PendingLease<'a> {
    conn: &'a Connection,
    granted: oneshot::Receiver<u64>,
    /// An opening request (BEGIN) went out with the grant: it is rolled
    /// back before the release.
    opens: bool,
}

impl Drop for PendingLease<'_> {
    fn drop(&mut self) {
        // Closed first, so a grant cannot slip in after the look below and
        // leave the lease held by no one.
        self.granted.close();
        if let Ok(Some(lease)) = self.granted.try_recv() {
            let rollback = self.opens.then(|| frontend::own_query("ROLLBACK").ok());
            self.conn.release_lease(lease, rollback.flatten());
        }
    }
}

/// 26000: the prepared statement does not exist; 0A000 with this message:
/// a table changed under a cached plan.
fn is_stale_statement(db: &DbError) -> bool {
    db.code == "26000"
        || (db.code == "0A000"
            && db
                .message
                .contains("cached plan must not change result type"))
}

fn is_multi_statement_refusal(db: &DbError) -> bool {
    db.code == "42601" && db.message.contains("cannot insert multiple commands")
}

/// The API's promise (API.md): handles are `Clone + Send + Sync` and every
/// future they return is `Send`, natively and on wasm32-wasip2. Never
/// called; it fails to compile if a change breaks the promise.
#[allow(dead_code)]
fn handles_and_futures_are_send(conn: &Connection, config: &Config, stmt: &Statement) {
    fn send<T: Send>(_: &T) {}
    fn handle<T: Clone + Send + Sync + 'static>() {}
    handle::<Connection>();
    handle::<Config>();
    handle::<Statement>();
    handle::<PgError>();
    send(&Connection::connect(config));
    send(&conn.query(""));
    send(&conn.simple_query(""));
    send(&conn.prepare(""));
    send(&conn.query_params("", &[&1i32]));
    send(&conn.query_params(stmt, &[]));
    send(&conn.execute_params("", &[]));
    send(&conn.execute("", &[]));
    send(&conn.query_one("", &[]));
    send(&conn.query_opt("", &[]));
    send(&conn.close());
    send(&conn.query_stream(""));
    send(&conn.query_cursor_stream("", &[], 10));
    send(&conn.query_params_stream("", &[]));
    handle::<CancelToken>();
    send(&conn.cancel_token().cancel());
    handle::<crate::Transaction>();
    send(&conn.transaction());
    send(&conn.build_transaction().start());
    send(&conn.with_transaction(|txn| async move { txn.execute("", &[]).await }));
    let policy = crate::RetryPolicy::default();
    send(&conn.with_transaction_retry(&policy, |txn| async move { txn.query("").await }));
    send(&conn.set_param("", ""));
    send(&conn.reset_param(""));
    send(&conn.pipeline().run());
    let mut pipeline = conn.pipeline();
    send(&pipeline.push("", &[&1i32]));
    send(&conn.copy_in(""));
    send(&conn.copy_out(""));
}

/// The same promise for the COPY handles' futures.
#[allow(dead_code)]
fn copy_futures_are_send(
    copy_in: &mut crate::CopyIn,
    copy_out: &mut crate::CopyOut,
    binary_in: &mut crate::BinaryCopyInWriter,
    binary_out: &mut crate::BinaryCopyOutReader,
    csv: &mut crate::CsvCopyInWriter,
) {
    fn send<T: Send>(_: &T) {}
    send(&copy_in.write(b""));
    send(&copy_out.next());
    send(&binary_in.write(&[&1i32]));
    send(&binary_out.next());
    send(&csv.write(&["a"]));
}
