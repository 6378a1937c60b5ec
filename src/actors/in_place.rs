//! Running the connection actor's next step on the sender's stack.
//!
//! A request used to wait for a task switch before its bytes left: the
//! caller woke the actor's task, and only when that task ran were they
//! written. When the actor is quiet (every earlier command answered,
//! nothing held back, waiting on its mailbox; a transaction's lease may be
//! open) and nobody is polling it, the sender can run that poll itself,
//! right after queuing its command: the bytes go out at once and the
//! actor's task is not woken.
//! Under wasmtime this also spares a `wasi:io/poll` call per request (wstd
//! checks pollables after any task run that left another task ready).
//!
//! The actor stays a single-threaded owner of its socket: its future sits
//! behind a mutex, polled either by its task ([`ActorTask`]) or by a sender
//! that finds the mutex free ([`RunInPlace::run_in_place`]), never both at
//! once. It is always polled with its task's waker, so whatever it waits
//! for wakes its task, as before. A sender that finds the mutex taken (the
//! task is running, on another thread, or the sender is inside the actor's
//! own poll) wakes the task instead, as before.
//!
//! Only the async `send` path runs the actor in place; `force_send`, used
//! from `Drop`, only wakes.
//!
//! The answer comes back the same way. A request sent in place holds the
//! connection's read turn ([`ReadTurn`]) while the actor's task stays
//! asleep: as its caller waits, the socket's read wakes the caller instead
//! of the task (a [`Redirect`]), and the caller, woken, runs the actor's
//! read on its own task and finds its answer, with no task switch. (Under
//! wasmtime a switch costs a second `wasi:io/poll`; natively, tokio's
//! `block_on` checks for I/O once more before polling a future a task
//! woke.) The turn ends whenever the actor's task runs (another request
//! came, say), when the caller drops its answer, and on connections that
//! listen for notifications: a caller that stops polling then delays
//! nothing but its own answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, TryLockError};
use std::task::{Context, Poll, Waker};

use crate::actors::both::Both;
use crate::actors::shared::Shared;
use crate::actors::wake_flag::Redirect;
use crate::sync::{lock, set_waker};

/// Something that can run an actor's next step in place.
pub(crate) trait RunInPlace: Send + Sync {
    /// Polls the actor once with its task's waker, if it was quiet before
    /// the command just queued (the `pushed`th), no one else is polling it
    /// and its task has run before; whether it did.
    fn run_in_place(&self, pushed: u64) -> bool;

    /// For the caller of command `command`, waiting for its answer: runs
    /// the actor's read if it fired, else has it wake `caller` (see
    /// [`ReadTurn`]).
    fn drive_read(&self, command: u64, caller: &Waker) -> Drive;

    /// The caller of `command` stops waiting: its read turn ends.
    fn end_read_turn(&self, command: u64);
}

/// What [`RunInPlace::drive_read`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drive {
    /// It ran the actor: look for the answer again.
    Ran,
    /// Nothing to read yet: the read wakes the caller when it fires.
    Waiting,
    /// Someone else is running the actor; the answer comes by the reply
    /// channel, as always.
    Busy,
    /// The turn has ended: the actor's task reads from now on.
    Over,
}

/// A caller's right to run the connection's read on its own task while
/// its request, sent in place, is the actor's only work (see the module
/// docs). Dropping it ends the turn.
pub(crate) struct ReadTurn {
    runner: Arc<dyn RunInPlace>,
    command: u64,
    /// The read may be redirected to this caller.
    redirected: bool,
}

impl ReadTurn {
    /// The turn of the caller of command number `command`, if it holds
    /// one.
    pub(crate) fn new(runner: Arc<dyn RunInPlace>, command: u64) -> Self {
        ReadTurn {
            runner,
            command,
            redirected: false,
        }
    }

    /// See [`RunInPlace::drive_read`].
    pub(crate) fn drive(&mut self, caller: &Waker) -> Drive {
        let drive = self.runner.drive_read(self.command, caller);
        self.redirected = drive == Drive::Waiting;
        drive
    }
}

impl Drop for ReadTurn {
    fn drop(&mut self) {
        if self.redirected {
            self.runner.end_read_turn(self.command);
        }
    }
}

/// The connection's future (actor and dispatcher), shared between its task
/// and the senders that run it in place.
pub(crate) struct ActorCell<A, B> {
    state: Mutex<CellState<A, B>>,
    /// Where the actor says whether it is quiet.
    shared: Arc<Shared>,
    /// The actor's socket read's wakes; redirected to the caller holding
    /// the read turn while it waits. Redirected only under `state`'s lock.
    read: Redirect,
}

struct CellState<A, B> {
    /// `None` once it has finished.
    actor: Option<Both<A, B>>,
    /// The waker of the task that runs it, from its last poll.
    task: Option<Waker>,
    /// The command whose caller holds the read turn.
    reader: Option<u64>,
}

impl<A, B> ActorCell<A, B>
where
    A: Future<Output = ()> + Send + 'static,
    B: Future<Output = ()> + Send + 'static,
{
    /// The cell, and the task to spawn: `both`'s runner. `shared` is the
    /// actor's, `read` its socket read's flag.
    pub(crate) fn new(
        both: Both<A, B>,
        shared: Arc<Shared>,
        read: Redirect,
    ) -> (Arc<Self>, ActorTask<A, B>) {
        let cell = Arc::new(ActorCell {
            state: Mutex::new(CellState {
                actor: Some(both),
                task: None,
                reader: None,
            }),
            shared,
            read,
        });
        (cell.clone(), ActorTask { cell })
    }
}

impl<A, B> RunInPlace for ActorCell<A, B>
where
    A: Future<Output = ()> + Send + 'static,
    B: Future<Output = ()> + Send + 'static,
{
    fn run_in_place(&self, pushed: u64) -> bool {
        // Only a request that finds the actor quiet (every earlier command
        // answered; a transaction's lease may be open) goes out on its own.
        // When others are in flight it can wait for the actor's task, which
        // then writes it together with whatever else was queued meanwhile:
        // run here, every request of a pipeline went out in its own `send`.
        if !self.shared.quiet_after(pushed.saturating_sub(1)) {
            return false;
        }
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::WouldBlock | TryLockError::Poisoned(_)) => return false,
        };
        let CellState {
            actor,
            task,
            reader,
        } = &mut *state;
        let (Some(both), Some(task)) = (actor.as_mut(), task.as_ref()) else {
            return false;
        };
        // The previous reader's answer is in (the actor was quiet): its turn
        // is over, and this command's begins.
        self.read.stop();
        *reader = (!self.shared.is_listening()).then_some(pushed);
        if both.poll_first_side(task).is_ready() {
            // Finished here: its task still has to see that it is done.
            *actor = None;
            *reader = None;
            task.wake_by_ref();
        }
        true
    }

    fn drive_read(&self, command: u64, caller: &Waker) -> Drive {
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::WouldBlock) => return Drive::Busy,
            Err(TryLockError::Poisoned(_)) => return Drive::Over,
        };
        let CellState {
            actor,
            task,
            reader,
        } = &mut *state;
        if *reader != Some(command) {
            return Drive::Over;
        }
        let (Some(both), Some(task)) = (actor.as_mut(), task.as_ref()) else {
            *reader = None;
            return Drive::Over;
        };
        if !self.read.is_raised() {
            self.read.to(caller);
            // A read that fired just before went to the task's waker: it
            // is handled here all the same.
            if !self.read.is_raised() {
                return Drive::Waiting;
            }
        }
        self.read.stop();
        if both.poll_first_side(task).is_ready() {
            *actor = None;
            *reader = None;
            task.wake_by_ref();
            return Drive::Over;
        }
        Drive::Ran
    }

    fn end_read_turn(&self, command: u64) {
        // Busy: the cell's holder is the task or a sender in place, which
        // end any redirect themselves, or another caller's turn, which began
        // only after this one's had ended.
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        if state.reader != Some(command) {
            return;
        }
        state.reader = None;
        if self.read.stop() {
            // The read fired for this caller, who will not run it now.
            if let Some(task) = &state.task {
                task.wake_by_ref();
            }
        }
    }
}

/// The future the connection's task runs.
pub(crate) struct ActorTask<A, B> {
    cell: Arc<ActorCell<A, B>>,
}

impl<A, B> Future for ActorTask<A, B>
where
    A: Future<Output = ()> + Send + 'static,
    B: Future<Output = ()> + Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.cell.state);
        set_waker(&mut state.task, cx.waker());
        // The task reads from now on; a read that fired for a caller who
        // has not run it is run here.
        state.reader = None;
        let read_fired = self.cell.read.stop();
        let Some(both) = state.actor.as_mut() else {
            return Poll::Ready(());
        };
        let polled = if read_fired {
            both.poll_first_side(cx.waker())
        } else {
            Pin::new(both).poll(cx)
        };
        if polled.is_ready() {
            state.actor = None;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}
