//! The pool's state, and what lending, giving back and waiting do to it.
//!
//! Lending is done by the callers themselves, under one short mutex: taking
//! an idle connection, taking one back, handing it straight to the first
//! waiter. A message to a pool task for each of these would put two task
//! switches on every query's path (a thread switch on a multi-thread
//! runtime, a host poll under wstd), which the `concurrent` benchmark
//! showed costing more than the query itself saves. What needs waiting runs
//! on tasks: each connection is opened by a task of its own that reports
//! back, the clock task (`pool_clock`) runs the maintenance on a timer
//! (closing old, idle and broken connections, keeping `min_idle` open) and
//! fails waiters at their `acquire_timeout`, and a closing pool's
//! connections are closed by a task. The lock is never held across an
//! await, and nothing that could take it again (a guard's `Drop`) runs
//! while it is held.
//!
//! A connection is idle, lent to one caller (a [`PooledConnection`]), or
//! shared by several (each holding a [`SharedConnection`]) until the last
//! of them is done.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use futures_channel::oneshot;

use crate::actors::pool_clock;
use crate::actors::rt::{self, Instant};
use crate::actors::wake_flag::WakeFlag;
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
    /// What the caller is doing, for its timeout error.
    fn what(&self) -> &'static str {
        match self {
            Waiter::Exclusive(_) => ACQUIRING,
            Waiter::Shared(_) => GETTING_SHARED,
        }
    }

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

/// A caller in the queue, and when it stops waiting (`None`: never, for an
/// `acquire_timeout` too long to add to the clock).
struct Queued {
    waiter: Waiter,
    deadline: Option<Instant>,
}

#[derive(Default)]
struct State {
    /// Most recently returned last: reused first, so under light load the
    /// rest stay idle long enough to be closed.
    idle: VecDeque<Idle>,
    shared: Vec<Shared>,
    lent: usize,
    opening: usize,
    waiters: VecDeque<Queued>,
    /// When the clock task looks next (`None`: only when alarmed).
    clock_at: Option<Instant>,
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
    /// Wakes the clock task for a deadline earlier than it knows of.
    alarm: Waker,
    /// Dropped with the pool: ends the clock task at once (a pending timer
    /// would keep a wasm program from exiting until it fires).
    _stop_clock: oneshot::Sender<()>,
}

impl PoolCore {
    /// The pool, with `initial` connections idle, and its clock task; a
    /// config error outside the runtime, where that task cannot start.
    pub(crate) fn start(
        settings: Settings,
        initial: Vec<Connection>,
    ) -> Result<Arc<PoolCore>, PgError> {
        let (stop, stopped) = oneshot::channel();
        let upkeep = [settings.idle_timeout, settings.max_lifetime]
            .into_iter()
            .flatten()
            .chain((settings.min_idle > 0).then_some(MAINTENANCE_TICK))
            .map(|d| (d / 2).clamp(MIN_TICK, MAINTENANCE_TICK))
            .min();
        let alarm = WakeFlag::new();
        let core = Arc::new(PoolCore {
            state: Mutex::new(State::default()),
            settings,
            alarm: alarm.waker().clone(),
            _stop_clock: stop,
        });
        let clock = pool_clock::keep_time(Arc::downgrade(&core), alarm, upkeep, stopped);
        if !rt::try_spawn(clock) {
            return Err(PgError::Config(
                "a pool must be started inside the async runtime, where its tasks run".into(),
            ));
        }
        {
            let mut state = core.lock();
            for conn in initial {
                core.add(&mut state, conn);
            }
        }
        core.maintain();
        Ok(core)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// An exclusive connection now, if one is idle and nobody waits ahead;
    /// else a place in the queue until `acquire_timeout` after `started`
    /// (set to now if this caller had not waited yet).
    pub(crate) fn acquire(
        self: &Arc<Self>,
        started: &mut Option<Instant>,
    ) -> Result<Lending<PooledConnection>, PgError> {
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
        self.enqueue(&mut state, Waiter::Exclusive(reply), started);
        Ok(Lending::Later(answer))
    }

    /// A shared connection now, unless callers wait ahead or none exists
    /// yet; else a place in the queue until `acquire_timeout` from now.
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
        self.enqueue(&mut state, Waiter::Shared(reply), &mut None);
        Ok(Lending::Later(answer))
    }

    /// Queues `waiter` until `acquire_timeout` after `started` (now, if
    /// unset), alarms the clock if that is earlier than it would look, and
    /// serves the queue.
    fn enqueue(self: &Arc<Self>, state: &mut State, waiter: Waiter, started: &mut Option<Instant>) {
        let started = *started.get_or_insert_with(rt::now);
        let deadline = started.checked_add(self.settings.acquire_timeout);
        if let Some(deadline) = deadline {
            if state.clock_at.is_none_or(|at| deadline < at) {
                state.clock_at = Some(deadline);
                self.alarm.wake_by_ref();
            }
        }
        state.waiters.push_back(Queued { waiter, deadline });
        self.serve(state);
    }

    /// Fails the waiters whose deadline is past at `now`; returns when the
    /// clock is to look next: the earliest deadline left or `upkeep`.
    pub(crate) fn expire_waiters(&self, now: Instant, upkeep: Option<Instant>) -> Option<Instant> {
        let mut state = self.lock();
        let queued = std::mem::take(&mut state.waiters);
        let mut expired = Vec::new();
        for q in queued {
            if q.waiter.is_gone() {
                continue;
            }
            if q.deadline.is_some_and(|deadline| deadline <= now) {
                expired.push(q.waiter);
            } else {
                state.waiters.push_back(q);
            }
        }
        for waiter in expired {
            let error = acquire_timed_out(waiter.what(), &self.settings, state.waiters.len());
            waiter.fail(error);
        }
        let earliest = state.waiters.iter().filter_map(|q| q.deadline).min();
        state.clock_at = earliest.into_iter().chain(upkeep).min();
        state.clock_at
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
            for queued in std::mem::take(&mut state.waiters) {
                queued.waiter.fail(pool_closed());
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
            waiters: state.waiters.iter().filter(|q| !q.waiter.is_gone()).count(),
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
        while let Some(Queued { waiter, deadline }) = state.waiters.pop_front() {
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
                state.waiters.push_front(Queued { waiter, deadline });
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
                while let Some(queued) = state.waiters.pop_front() {
                    if !queued.waiter.is_gone() {
                        queued.waiter.fail(error);
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
    pub(crate) fn maintain(self: &Arc<Self>) {
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

/// What a waiting [`Pool::acquire`](crate::pool::Pool::acquire) does, for
/// its timeout error.
pub(crate) const ACQUIRING: &str = "acquiring a pooled connection";
/// The same for [`Pool::get_shared`](crate::pool::Pool::get_shared).
const GETTING_SHARED: &str = "getting a shared pooled connection";

/// The error of a caller that waited `acquire_timeout` in vain, with
/// `waiting` callers still in line.
pub(crate) fn acquire_timed_out(what: &str, settings: &Settings, waiting: usize) -> PgError {
    PgError::Timeout(format!(
        "{what} did not finish within {} ms (acquire_timeout): all {} connections \
         were in use ({waiting} waiting)",
        settings.acquire_timeout.as_millis(),
        settings.max_size,
    ))
}

fn pool_closed() -> PgError {
    PgError::Closed("the pool is closed".into())
}
