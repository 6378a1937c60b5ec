//! The pool's state, and the task that keeps it healthy.
//!
//! Lending is done by the callers themselves, under one short mutex: taking
//! an idle connection, taking one back, handing it straight to the first
//! waiter. A message to a pool task for each of these would put two task
//! switches on every query's path (a thread switch on a multi-thread
//! runtime, a host poll under wstd), which the `concurrent` benchmark
//! showed costing more than the query itself saves. What needs waiting runs
//! on tasks: each connection is opened by a task of its own that reports
//! back, the maintenance task closes old, idle and broken connections and
//! keeps `min_idle` open on a timer, and a closing pool's connections are
//! closed by a task. The lock is never held across an await, and nothing
//! that could take it again (a guard's `Drop`) runs while it is held.
//!
//! A connection is idle, lent to one caller (a [`PooledConnection`]), or
//! shared by several (each holding a [`SharedConnection`]) until the last
//! of them is done.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_channel::oneshot;

use crate::actors::rt::{self, Instant};
use crate::api::pool::{PoolStatus, PooledConnection, Settings, SharedConnection};
use crate::{Connection, PgError};

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

/// Why a connection is being opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// For a caller waiting now: if it fails, that caller hears why.
    Waiter,
    /// To keep `min_idle`, or to grow ahead of shared use.
    Growth,
}

/// A connection now, or a promise of one.
pub(crate) enum Lending<T> {
    Now(T),
    Later(oneshot::Receiver<Result<T, PgError>>),
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

#[derive(Default)]
struct State {
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
}

impl State {
    fn size(&self) -> usize {
        self.idle.len() + self.shared.len() + self.lent + self.opening
    }

    /// The newest idle connection that is still healthy and young enough,
    /// and the time it was checked at (the clock is read only when some
    /// connection is idle: under WASI each reading is a host call).
    fn pop_idle(&mut self) -> Option<(Idle, Instant)> {
        if self.idle.is_empty() {
            return None;
        }
        let now = rt::now();
        while let Some(idle) = self.idle.pop_back() {
            if !idle.conn.is_closed() && !idle.slot.expired(now) {
                return Some((idle, now));
            }
        }
        None
    }
}

/// The pool: what every handle and guard holds.
pub(crate) struct PoolCore {
    state: Mutex<State>,
    pub(crate) settings: Settings,
    /// Dropped with the pool: ends the maintenance task at once (a pending
    /// timer would keep a wasm program from exiting until it fires).
    _stop_maintenance: oneshot::Sender<()>,
}

impl PoolCore {
    /// The pool, with `initial` connections idle, and its maintenance task.
    pub(crate) fn start(settings: Settings, initial: Vec<Connection>) -> Arc<PoolCore> {
        let (stop, stopped) = oneshot::channel();
        let every = [settings.idle_timeout, settings.max_lifetime]
            .into_iter()
            .flatten()
            .chain((settings.min_idle > 0).then_some(MAINTENANCE_TICK))
            .map(|d| (d / 2).clamp(MIN_TICK, MAINTENANCE_TICK))
            .min();
        let core = Arc::new(PoolCore {
            state: Mutex::new(State::default()),
            settings,
            _stop_maintenance: stop,
        });
        {
            let mut state = core.lock();
            for conn in initial {
                core.add(&mut state, conn);
            }
        }
        core.maintain();
        if let Some(every) = every {
            rt::spawn(maintain_every(Arc::downgrade(&core), every, stopped));
        }
        core
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// An exclusive connection now, if one is idle and nobody waits ahead;
    /// else a place in the queue.
    pub(crate) fn acquire(self: &Arc<Self>) -> Result<Lending<PooledConnection>, PgError> {
        let mut state = self.lock();
        if state.closed {
            return Err(pool_closed());
        }
        if state.waiters.is_empty() {
            if let Some((idle, now)) = state.pop_idle() {
                return Ok(Lending::Now(self.lend(&mut state, idle, now)));
            }
        }
        let (reply, answer) = oneshot::channel();
        state.waiters.push_back(Waiter::Exclusive(reply));
        self.serve(&mut state);
        Ok(Lending::Later(answer))
    }

    /// A shared connection now, unless callers wait ahead or none exists
    /// yet; else a place in the queue.
    pub(crate) fn share(self: &Arc<Self>) -> Result<Lending<SharedConnection>, PgError> {
        let mut state = self.lock();
        if state.closed {
            return Err(pool_closed());
        }
        if state.waiters.is_empty() {
            if let Some(shared) = self.share_one(&mut state, true) {
                return Ok(Lending::Now(shared));
            }
        }
        let (reply, answer) = oneshot::channel();
        state.waiters.push_back(Waiter::Shared(reply));
        self.serve(&mut state);
        Ok(Lending::Later(answer))
    }

    /// An exclusive guard is done: `conn` is reset (or `None`: it broke or
    /// left the pool).
    pub(crate) fn give_back(self: &Arc<Self>, slot: Slot, conn: Option<Connection>) {
        let mut state = self.lock();
        state.lent = state.lent.saturating_sub(1);
        if let Some(conn) = conn {
            self.take_back(&mut state, conn, slot, false);
        }
        self.serve(&mut state);
        self.finish_closing(&mut state);
    }

    /// A shared guard is done.
    pub(crate) fn unshare(self: &Arc<Self>, id: u64) {
        let mut state = self.lock();
        if let Some(shared) = state.shared.iter_mut().find(|s| s.slot.id == id) {
            shared.users = shared.users.saturating_sub(1);
        }
        self.demote_unused_shared(&mut state);
        self.serve(&mut state);
        self.finish_closing(&mut state);
    }

    /// Stops lending; the answer comes once every connection is back and
    /// closed.
    pub(crate) fn close(self: &Arc<Self>) -> oneshot::Receiver<()> {
        let (reply, done) = oneshot::channel();
        let mut state = self.lock();
        state.closers.push(reply);
        if !state.closed {
            state.closed = true;
            for waiter in std::mem::take(&mut state.waiters) {
                waiter.fail(pool_closed());
            }
            let idle: Vec<Connection> = state.idle.drain(..).map(|idle| idle.conn).collect();
            state.closing.extend(idle);
            self.demote_unused_shared(&mut state);
        }
        self.finish_closing(&mut state);
        done
    }

    pub(crate) fn status(&self) -> PoolStatus {
        let state = self.lock();
        PoolStatus {
            size: state.size(),
            idle: state.idle.len(),
            in_use: state.lent,
            shared: state.shared.len(),
            waiters: state.waiters.iter().filter(|w| !w.is_gone()).count(),
            max_size: self.settings.max_size,
            closed: state.closed,
        }
    }

    /// Lends `idle`, taken from the idle list at `now`.
    fn lend(self: &Arc<Self>, state: &mut State, idle: Idle, now: Instant) -> PooledConnection {
        let checkup = Checkup {
            ping: self.settings.test_on_acquire
                && now.saturating_duration_since(idle.since) >= self.settings.test_after_idle,
            reset: idle.dirty,
        };
        state.lent += 1;
        PooledConnection::new(idle.conn, idle.slot, checkup, self.clone())
    }

    /// Shares the least used shared connection while it has fewer than
    /// `sharers_per_connection` users, else makes an idle one shared. With
    /// `first_come` (nobody waits ahead), a full shared connection is
    /// shared further rather than making the caller wait for one to be
    /// opened.
    fn share_one(
        self: &Arc<Self>,
        state: &mut State,
        first_come: bool,
    ) -> Option<SharedConnection> {
        let now = rt::now();
        state.shared.retain(|s| !s.conn.is_closed());
        let least = state
            .shared
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.slot.expired(now))
            .min_by_key(|(_, s)| s.users)
            .map(|(i, s)| (i, s.users));
        let index = match least {
            Some((i, users)) if users < self.settings.sharers_per_connection => i,
            _ => match state.pop_idle() {
                Some((idle, _)) => {
                    state.shared.push(Shared {
                        conn: idle.conn,
                        slot: idle.slot,
                        users: 0,
                    });
                    state.shared.len() - 1
                }
                None => {
                    let (i, _) = least?;
                    if first_come && state.size() < self.settings.max_size {
                        // Grow for the next caller; this one shares now.
                        self.open(state, Purpose::Growth);
                    }
                    i
                }
            },
        };
        let shared = &mut state.shared[index];
        shared.users += 1;
        Some(SharedConnection::new(
            shared.conn.clone(),
            shared.slot.id,
            self.clone(),
        ))
    }

    /// Hands out what can be handed out, first come first served, and opens
    /// connections for the callers still waiting.
    fn serve(self: &Arc<Self>, state: &mut State) {
        if state.closed {
            return;
        }
        while let Some(waiter) = state.waiters.pop_front() {
            let unserved = match waiter {
                _ if waiter.is_gone() => continue,
                Waiter::Exclusive(reply) => match state.pop_idle() {
                    Some((idle, now)) => {
                        let guard = self.lend(state, idle, now);
                        if let Err(Ok(guard)) = reply.send(Ok(guard)) {
                            // It gave up just now: the connection stays.
                            state.lent -= 1;
                            if let Some((conn, slot)) = guard.disarm() {
                                self.take_back(state, conn, slot, false);
                            }
                        }
                        None
                    }
                    None => Some(Waiter::Exclusive(reply)),
                },
                Waiter::Shared(reply) => match self.share_one(state, false) {
                    Some(shared) => {
                        if let Err(Ok(shared)) = reply.send(Ok(shared)) {
                            let id = shared.disarm();
                            if let Some(s) = state.shared.iter_mut().find(|s| s.slot.id == id) {
                                s.users -= 1;
                            }
                        }
                        None
                    }
                    None => Some(Waiter::Shared(reply)),
                },
            };
            if let Some(waiter) = unserved {
                state.waiters.push_front(waiter);
                break;
            }
        }
        let wanted = state.waiters.len().saturating_sub(state.opening);
        let room = self.settings.max_size.saturating_sub(state.size());
        for _ in 0..wanted.min(room) {
            self.open(state, Purpose::Waiter);
        }
    }

    /// A new connection joins the pool (idle, or straight to a waiter).
    fn add(self: &Arc<Self>, state: &mut State, conn: Connection) {
        state.next_id += 1;
        let retire_at = self.settings.max_lifetime.map(|lifetime| {
            // Up to an eighth of the lifetime earlier, at random.
            let spread = lifetime / 8;
            let nanos = spread.as_nanos().max(1) as u64;
            rt::now() + lifetime - Duration::from_nanos(rt::random_u64() % nanos)
        });
        let slot = Slot {
            id: state.next_id,
            retire_at,
        };
        self.take_back(state, conn, slot, false);
    }

    /// A connection is free again: idle, unless it is broken, too old, or
    /// the pool is closing.
    fn take_back(&self, state: &mut State, conn: Connection, slot: Slot, dirty: bool) {
        if conn.is_closed() {
            return;
        }
        let now = rt::now();
        if slot.expired(now) {
            return;
        }
        if state.closed {
            state.closing.push(conn);
            return;
        }
        state.idle.push_back(Idle {
            conn,
            slot,
            since: now,
            dirty,
        });
    }

    /// Shared connections nobody uses any more become idle (if no clone of
    /// them is left anywhere), to be lent exclusively after a reset. While
    /// closing, one still cloned somewhere is let go (its clones keep it).
    fn demote_unused_shared(&self, state: &mut State) {
        let mut i = 0;
        while i < state.shared.len() {
            let s = &state.shared[i];
            let free = s.conn.is_sole_handle() || s.conn.is_closed();
            if s.users == 0 && (free || state.closed) {
                let s = state.shared.swap_remove(i);
                if free {
                    self.take_back(state, s.conn, s.slot, true);
                }
            } else {
                i += 1;
            }
        }
    }

    fn open(self: &Arc<Self>, state: &mut State, purpose: Purpose) {
        state.opening += 1;
        let config = self.settings.connection.clone();
        let core = Arc::downgrade(self);
        rt::spawn(async move {
            let result = Connection::connect(&config).await;
            if let Some(core) = core.upgrade() {
                core.opened(result, purpose);
            }
        });
    }

    fn opened(self: &Arc<Self>, result: Result<Connection, PgError>, purpose: Purpose) {
        let mut state = self.lock();
        state.opening = state.opening.saturating_sub(1);
        match result {
            Ok(conn) => self.add(&mut state, conn),
            Err(_error) if purpose == Purpose::Growth => {
                // Nobody waits for this one; the next need tries again.
                #[cfg(feature = "tracing")]
                tracing::warn!(error = %_error, "the pool could not open a connection");
            }
            Err(error) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(%error, "the pool could not open a connection");
                // The caller it was opened for hears why, rather than
                // waiting for its timeout.
                while let Some(waiter) = state.waiters.pop_front() {
                    if !waiter.is_gone() {
                        waiter.fail(error);
                        break;
                    }
                }
            }
        }
        self.serve(&mut state);
        self.finish_closing(&mut state);
    }

    /// Closes idle connections that are broken, too old, or idle too long
    /// (down to `min_idle`), and opens connections up to `min_idle`.
    fn maintain(self: &Arc<Self>) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        let now = rt::now();
        let settings = &self.settings;
        let mut keep = state.idle.len();
        state.idle.retain(|idle| {
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
        self.demote_unused_shared(&mut state);
        let missing = settings
            .min_idle
            .saturating_sub(state.idle.len() + state.opening);
        let room = settings.max_size.saturating_sub(state.size());
        for _ in 0..missing.min(room) {
            self.open(&mut state, Purpose::Growth);
        }
        self.serve(&mut state);
    }

    /// Once closed and everything is back, closes the connections (each
    /// finishing its queued work and sending Terminate) and answers.
    fn finish_closing(&self, state: &mut State) {
        if !state.closed || state.closers.is_empty() {
            return;
        }
        if state.lent > 0 || state.opening > 0 || !state.shared.is_empty() {
            return;
        }
        let conns = std::mem::take(&mut state.closing);
        let closers = std::mem::take(&mut state.closers);
        let closing = async move {
            for conn in conns {
                let _ = conn.close().await;
            }
            for closer in closers {
                let _ = closer.send(());
            }
        };
        // From a guard dropped outside the runtime, the connections are
        // dropped instead (each still sends Terminate when its actor runs).
        rt::try_spawn(closing);
    }
}

/// Maintenance runs at least this often when there is any to do.
const MAINTENANCE_TICK: Duration = Duration::from_secs(1);
/// And at most this often (for tiny timeouts in tests).
const MIN_TICK: Duration = Duration::from_millis(10);

async fn maintain_every(core: Weak<PoolCore>, every: Duration, mut stop: oneshot::Receiver<()>) {
    use futures_util::future::{select, Either};
    loop {
        let tick = std::pin::pin!(rt::sleep(every));
        if let Either::Right(_) = select(tick, &mut stop).await {
            return;
        }
        let Some(core) = core.upgrade() else {
            return;
        };
        core.maintain();
    }
}

fn pool_closed() -> PgError {
    PgError::Closed("the pool is closed".into())
}
