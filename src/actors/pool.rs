//! The pool actor: owns the idle connections, the FIFO of callers waiting
//! for one, and the count of connections lent out.
//!
//! It never waits on a socket itself. Connections are opened by spawned
//! tasks that report back by message; a returned connection is reset by
//! whoever returns it (its guard) before it comes back; a health check runs
//! in the acquiring task. So a slow server holds up only the caller who
//! met it, never the pool's bookkeeping.
//!
//! A connection is idle, lent out exclusively (a [`PooledConnection`]), or
//! shared: pipelined by several callers at once (each holding a
//! [`SharedConnection`]) until the last of them is done.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures_channel::oneshot;
use futures_util::StreamExt;

use crate::actors::rt::{self, Instant};
use crate::api::pool::{PoolStatus, PooledConnection, Settings, SharedConnection};
use crate::sync::lock;
use crate::{Connection, PgError};

/// What handles and guards ask of the pool.
pub(crate) enum PoolCommand {
    /// A connection for this caller alone.
    Acquire {
        reply: oneshot::Sender<Result<PooledConnection, PgError>>,
    },
    /// A connection this caller may share with others.
    Share {
        reply: oneshot::Sender<Result<SharedConnection, PgError>>,
    },
    /// An exclusive guard is done: the connection, already reset, or
    /// `None` when it broke or left the pool.
    Return {
        slot: Slot,
        conn: Option<Connection>,
    },
    /// A shared guard is done.
    Unshare { id: u64 },
    /// Stop lending; answer once every connection is back and closed.
    Close { reply: oneshot::Sender<()> },
}

/// Which connection a guard holds, and until when the pool keeps it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) id: u64,
    /// `max_lifetime`, less a random part of it, after it was opened: a
    /// pool's connections opened together do not all retire together.
    retire_at: Option<Instant>,
}

impl Slot {
    fn expired(&self, now: Instant) -> bool {
        self.retire_at.is_some_and(|at| now >= at)
    }
}

/// What an acquirer should do before using a connection it was lent.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Checkup {
    /// Idle long enough that it may have died unseen: ping it.
    pub(crate) ping: bool,
    /// It was shared: its users may have left a transaction open.
    pub(crate) reset: bool,
}

/// The link every handle and guard holds to the actor.
pub(crate) struct PoolLink {
    pub(crate) commands: UnboundedSender<PoolCommand>,
    pub(crate) status: Mutex<PoolStatus>,
    pub(crate) settings: Settings,
}

impl PoolLink {
    /// Tells the actor without waiting. The mailbox is unbounded because
    /// every command stands for a caller waiting on its answer or for a
    /// connection coming back, so it never holds more than the callers and
    /// connections there are.
    pub(crate) fn tell(&self, command: PoolCommand) -> Result<(), PgError> {
        self.commands
            .unbounded_send(command)
            .map_err(|_| PgError::Closed("the pool has stopped".into()))
    }
}

struct Idle {
    conn: Connection,
    slot: Slot,
    since: Instant,
    /// Came back from shared use, unreset.
    dirty: bool,
}

struct Shared {
    conn: Connection,
    slot: Slot,
    users: usize,
}

enum Waiter {
    Exclusive(oneshot::Sender<Result<PooledConnection, PgError>>),
    Shared(oneshot::Sender<Result<SharedConnection, PgError>>),
}

impl Waiter {
    fn is_gone(&self) -> bool {
        match self {
            Waiter::Exclusive(reply) => reply.is_canceled(),
            Waiter::Shared(reply) => reply.is_canceled(),
        }
    }

    fn fail(self, error: PgError) {
        match self {
            Waiter::Exclusive(reply) => drop(reply.send(Err(error))),
            Waiter::Shared(reply) => drop(reply.send(Err(error))),
        }
    }
}

enum Event {
    Command(PoolCommand),
    Opened(Result<Connection, PgError>),
    Tick,
    /// Every handle and guard is gone.
    Done,
}

type Timer = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(crate) struct PoolActor {
    link: Weak<PoolLink>,
    settings: Settings,
    commands: UnboundedReceiver<PoolCommand>,
    opened_tx: UnboundedSender<Result<Connection, PgError>>,
    opened: UnboundedReceiver<Result<Connection, PgError>>,
    /// Most recently returned last: reused first, so under light load the
    /// rest stay idle long enough to be closed.
    idle: VecDeque<Idle>,
    shared: Vec<Shared>,
    lent: usize,
    opening: usize,
    waiters: VecDeque<Waiter>,
    next_id: u64,
    closed: bool,
    /// Connections to close once the pool has drained, and who waits.
    closing: Vec<Connection>,
    closers: Vec<oneshot::Sender<()>>,
    tick_every: Option<Duration>,
    timer: Option<Timer>,
}

impl PoolActor {
    /// The actor and its link, with `initial` connections idle.
    pub(crate) fn new(settings: Settings, initial: Vec<Connection>) -> (PoolActor, Arc<PoolLink>) {
        let (commands_tx, commands) = unbounded();
        let (opened_tx, opened) = unbounded();
        let link = Arc::new(PoolLink {
            commands: commands_tx,
            status: Mutex::new(PoolStatus::default()),
            settings: settings.clone(),
        });
        let tick_every = [settings.idle_timeout, settings.max_lifetime]
            .into_iter()
            .flatten()
            .chain((settings.min_idle > 0).then_some(MAINTENANCE_TICK))
            .map(|d| (d / 2).clamp(MIN_TICK, MAINTENANCE_TICK))
            .min();
        let mut actor = PoolActor {
            link: Arc::downgrade(&link),
            settings,
            commands,
            opened_tx,
            opened,
            idle: VecDeque::new(),
            shared: Vec::new(),
            lent: 0,
            opening: 0,
            waiters: VecDeque::new(),
            next_id: 0,
            closed: false,
            closing: Vec::new(),
            closers: Vec::new(),
            tick_every,
            timer: None,
        };
        for conn in initial {
            actor.add_idle(conn);
        }
        actor.maintain();
        actor.publish();
        (actor, link)
    }

    pub(crate) async fn run(mut self) {
        loop {
            match poll_fn(|cx| self.poll_event(cx)).await {
                Event::Command(command) => self.handle(command),
                Event::Opened(result) => self.opened(result),
                Event::Tick => self.maintain(),
                Event::Done => return,
            }
            self.serve();
            self.finish_closing();
            self.publish();
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if let Poll::Ready(Some(result)) = self.opened.poll_next_unpin(cx) {
            return Poll::Ready(Event::Opened(result));
        }
        match self.commands.poll_next_unpin(cx) {
            Poll::Ready(Some(command)) => return Poll::Ready(Event::Command(command)),
            Poll::Ready(None) => return Poll::Ready(Event::Done),
            Poll::Pending => {}
        }
        if let Some(every) = self.tick_every {
            let timer = self.timer.get_or_insert_with(|| Box::pin(rt::sleep(every)));
            if timer.as_mut().poll(cx).is_ready() {
                self.timer = None;
                return Poll::Ready(Event::Tick);
            }
        }
        Poll::Pending
    }

    fn handle(&mut self, command: PoolCommand) {
        match command {
            PoolCommand::Acquire { reply } => {
                if self.closed {
                    let _ = reply.send(Err(pool_closed()));
                } else {
                    self.waiters.push_back(Waiter::Exclusive(reply));
                }
            }
            PoolCommand::Share { reply } => {
                if self.closed {
                    let _ = reply.send(Err(pool_closed()));
                } else if self.waiters.is_empty() {
                    // Nobody is ahead of it: served now if a connection can
                    // be shared, else it waits like the rest.
                    if let Err(reply) = self.share(reply, true) {
                        self.waiters.push_back(Waiter::Shared(reply));
                    }
                } else {
                    self.waiters.push_back(Waiter::Shared(reply));
                }
            }
            PoolCommand::Return { slot, conn } => {
                self.lent = self.lent.saturating_sub(1);
                if let Some(conn) = conn {
                    self.take_back(conn, slot, false);
                }
            }
            PoolCommand::Unshare { id } => self.unshare(id),
            PoolCommand::Close { reply } => {
                self.closers.push(reply);
                if !self.closed {
                    self.closed = true;
                    for waiter in self.waiters.drain(..) {
                        waiter.fail(pool_closed());
                    }
                    self.closing
                        .extend(self.idle.drain(..).map(|idle| idle.conn));
                    self.demote_unused_shared();
                }
            }
        }
    }

    fn opened(&mut self, result: Result<Connection, PgError>) {
        self.opening = self.opening.saturating_sub(1);
        match result {
            Ok(conn) => self.add_idle(conn),
            Err(error) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(%error, "the pool could not open a connection");
                // The caller it was opened for hears why, rather than
                // waiting for its timeout.
                while let Some(waiter) = self.waiters.pop_front() {
                    if !waiter.is_gone() {
                        waiter.fail(error);
                        break;
                    }
                }
            }
        }
    }

    fn add_idle(&mut self, conn: Connection) {
        self.next_id += 1;
        let retire_at = self.settings.max_lifetime.map(|lifetime| {
            // Up to an eighth of the lifetime earlier, at random.
            let spread = lifetime / 8;
            let nanos = spread.as_nanos().max(1) as u64;
            rt::now() + lifetime - Duration::from_nanos(rt::random_u64() % nanos)
        });
        let slot = Slot {
            id: self.next_id,
            retire_at,
        };
        self.take_back(conn, slot, false);
    }

    /// A connection is free again: idle, unless it is broken, too old, or
    /// the pool is closing.
    fn take_back(&mut self, conn: Connection, slot: Slot, dirty: bool) {
        if conn.is_closed() || slot.expired(rt::now()) {
            return;
        }
        if self.closed {
            self.closing.push(conn);
            return;
        }
        self.idle.push_back(Idle {
            conn,
            slot,
            since: rt::now(),
            dirty,
        });
    }

    fn size(&self) -> usize {
        self.idle.len() + self.shared.len() + self.lent + self.opening
    }

    /// Hands out what can be handed out, in FIFO order, and opens
    /// connections for the callers still waiting.
    fn serve(&mut self) {
        if self.closed {
            return;
        }
        while let Some(waiter) = self.waiters.pop_front() {
            let unserved = match waiter {
                _ if waiter.is_gone() => continue,
                Waiter::Exclusive(reply) => self.lend(reply).err().map(Waiter::Exclusive),
                Waiter::Shared(reply) => self.share(reply, false).err().map(Waiter::Shared),
            };
            if let Some(waiter) = unserved {
                self.waiters.push_front(waiter);
                break;
            }
        }
        let wanted = self.waiters.len().saturating_sub(self.opening);
        let room = self.settings.max_size.saturating_sub(self.size());
        for _ in 0..wanted.min(room) {
            self.open();
        }
    }

    /// Lends the most recently used healthy idle connection; gives `reply`
    /// back when there is none.
    fn lend(
        &mut self,
        reply: oneshot::Sender<Result<PooledConnection, PgError>>,
    ) -> Result<(), oneshot::Sender<Result<PooledConnection, PgError>>> {
        let Some(idle) = self.pop_idle() else {
            return Err(reply);
        };
        let Some(link) = self.link.upgrade() else {
            return Err(reply);
        };
        let checkup = Checkup {
            ping: self.settings.test_on_acquire
                && idle.since.elapsed() >= self.settings.test_after_idle,
            reset: idle.dirty,
        };
        let Idle {
            conn, since, dirty, ..
        } = idle;
        self.lent += 1;
        let guard = PooledConnection::new(conn, idle.slot, checkup, link);
        if let Err(Ok(guard)) = reply.send(Ok(guard)) {
            // The caller gave up just now: the connection stays ours.
            self.lent -= 1;
            if let Some((conn, slot)) = guard.disarm() {
                self.idle.push_back(Idle {
                    conn,
                    slot,
                    since,
                    dirty,
                });
            }
        }
        Ok(())
    }

    /// Shares the least used shared connection while it has fewer than
    /// `sharers_per_connection` users, else makes an idle one shared. With
    /// `first_come` (nobody waits ahead), a full shared connection is
    /// shared further rather than making the caller wait for one to be
    /// opened.
    fn share(
        &mut self,
        reply: oneshot::Sender<Result<SharedConnection, PgError>>,
        first_come: bool,
    ) -> Result<(), oneshot::Sender<Result<SharedConnection, PgError>>> {
        let now = rt::now();
        self.shared.retain(|s| !s.conn.is_closed());
        let least = self
            .shared
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.slot.expired(now))
            .min_by_key(|(_, s)| s.users)
            .map(|(i, s)| (i, s.users));
        let index = match least {
            Some((i, users)) if users < self.settings.sharers_per_connection => i,
            _ => match self.pop_idle() {
                Some(idle) => {
                    self.shared.push(Shared {
                        conn: idle.conn,
                        slot: idle.slot,
                        users: 0,
                    });
                    self.shared.len() - 1
                }
                None => match least {
                    Some((i, _)) => {
                        if first_come && self.size() < self.settings.max_size {
                            // Grow for the next caller; this one shares now.
                            self.open();
                        }
                        i
                    }
                    None => return Err(reply),
                },
            },
        };
        let Some(link) = self.link.upgrade() else {
            return Err(reply);
        };
        let shared = &mut self.shared[index];
        let guard = SharedConnection::new(shared.conn.clone(), shared.slot.id, link);
        shared.users += 1;
        if let Err(Ok(guard)) = reply.send(Ok(guard)) {
            guard.disarm();
            shared.users -= 1;
        }
        Ok(())
    }

    fn unshare(&mut self, id: u64) {
        if let Some(shared) = self.shared.iter_mut().find(|s| s.slot.id == id) {
            shared.users = shared.users.saturating_sub(1);
        }
        self.demote_unused_shared();
    }

    /// Shared connections nobody uses any more become idle (if no clone of
    /// them is left anywhere), to be lent exclusively after a reset. While
    /// closing, one still cloned somewhere is let go (its clones keep it).
    fn demote_unused_shared(&mut self) {
        let mut i = 0;
        while i < self.shared.len() {
            let s = &self.shared[i];
            let free = s.conn.is_sole_handle() || s.conn.is_closed();
            if s.users == 0 && (free || self.closed) {
                let s = self.shared.swap_remove(i);
                if free {
                    self.take_back(s.conn, s.slot, true);
                }
            } else {
                i += 1;
            }
        }
    }

    /// The newest idle connection that is still healthy and young enough.
    fn pop_idle(&mut self) -> Option<Idle> {
        let now = rt::now();
        while let Some(idle) = self.idle.pop_back() {
            if !idle.conn.is_closed() && !idle.slot.expired(now) {
                return Some(idle);
            }
        }
        None
    }

    fn open(&mut self) {
        self.opening += 1;
        let config = self.settings.connection.clone();
        let report = self.opened_tx.clone();
        rt::spawn(async move {
            let result = Connection::connect(&config).await;
            let _ = report.unbounded_send(result);
        });
    }

    /// Closes idle connections that are broken, too old, or idle too long
    /// (down to `min_idle`), and opens connections up to `min_idle`.
    fn maintain(&mut self) {
        if self.closed {
            return;
        }
        let now = rt::now();
        let settings = &self.settings;
        let mut keep = self.idle.len();
        self.idle.retain(|idle| {
            let stale = settings
                .idle_timeout
                .is_some_and(|limit| now.duration_since(idle.since) >= limit);
            let drop = idle.conn.is_closed()
                || idle.slot.expired(now)
                || (stale && keep > settings.min_idle);
            if drop {
                keep -= 1;
            }
            !drop
        });
        self.demote_unused_shared();
        let missing = self
            .settings
            .min_idle
            .saturating_sub(self.idle.len() + self.opening);
        let room = self.settings.max_size.saturating_sub(self.size());
        for _ in 0..missing.min(room) {
            self.open();
        }
    }

    /// Once closed and everything is back, closes the connections (each
    /// finishing its queued work and sending Terminate) and answers.
    fn finish_closing(&mut self) {
        if !self.closed || self.closers.is_empty() {
            return;
        }
        self.demote_unused_shared();
        if self.lent > 0 || self.opening > 0 || !self.shared.is_empty() {
            return;
        }
        let conns = std::mem::take(&mut self.closing);
        let closers = std::mem::take(&mut self.closers);
        rt::spawn(async move {
            for conn in conns {
                let _ = conn.close().await;
            }
            for closer in closers {
                let _ = closer.send(());
            }
        });
    }

    fn publish(&self) {
        let Some(link) = self.link.upgrade() else {
            return;
        };
        let mut status = lock(&link.status);
        status.size = self.size();
        status.idle = self.idle.len();
        status.in_use = self.lent;
        status.shared = self.shared.len();
        status.waiters = self.waiters.iter().filter(|w| !w.is_gone()).count();
        status.max_size = self.settings.max_size;
        status.closed = self.closed;
    }
}

/// Maintenance runs at least this often when there is any to do.
const MAINTENANCE_TICK: Duration = Duration::from_secs(1);
/// And at most this often (for tiny timeouts in tests).
const MIN_TICK: Duration = Duration::from_millis(10);

fn pool_closed() -> PgError {
    PgError::Closed("the pool is closed".into())
}
