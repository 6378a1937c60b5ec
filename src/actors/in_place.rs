//! Running the connection actor's next step on the sender's stack.
//!
//! A request used to wait for a task switch before its bytes left: the
//! caller woke the actor's task, and only when that task ran were they
//! written. When the actor is idle (every earlier command answered, waiting on its
//! mailbox) and nobody is polling it, the sender can run that poll itself,
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

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, TryLockError};
use std::task::{Context, Poll, Waker};

use crate::actors::both::Both;
use crate::actors::shared::Shared;
use crate::sync::{lock, set_waker};

/// Something that can run an actor's next step in place.
pub(crate) trait RunInPlace: Send + Sync {
    /// Polls the actor once with its task's waker, if it was idle before
    /// the command just queued (the `pushed`th), no one else is polling it
    /// and its task has run before; whether it did.
    fn run_in_place(&self, pushed: u64) -> bool;
}

/// The connection's future (actor and dispatcher), shared between its task
/// and the senders that run it in place.
pub(crate) struct ActorCell<A, B> {
    state: Mutex<CellState<A, B>>,
    /// Where the actor says whether it is idle.
    shared: Arc<Shared>,
}

struct CellState<A, B> {
    /// `None` once it has finished.
    actor: Option<Both<A, B>>,
    /// The waker of the task that runs it, from its last poll.
    task: Option<Waker>,
}

impl<A, B> ActorCell<A, B>
where
    A: Future<Output = ()> + Send + 'static,
    B: Future<Output = ()> + Send + 'static,
{
    /// The cell, and the task to spawn: `both`'s runner. `shared` is the
    /// actor's.
    pub(crate) fn new(both: Both<A, B>, shared: Arc<Shared>) -> (Arc<Self>, ActorTask<A, B>) {
        let cell = Arc::new(ActorCell {
            state: Mutex::new(CellState {
                actor: Some(both),
                task: None,
            }),
            shared,
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
        // Only a request that finds the actor idle goes out on its own. When
        // others are in flight it can wait for the actor's task, which then
        // writes it together with whatever else was queued meanwhile: run
        // here, every request of a pipeline went out in its own `send`.
        if !self.shared.settled_after(pushed.saturating_sub(1)) {
            return false;
        }
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::WouldBlock | TryLockError::Poisoned(_)) => return false,
        };
        let CellState { actor, task } = &mut *state;
        let (Some(both), Some(task)) = (actor.as_mut(), task.as_ref()) else {
            return false;
        };
        if both.poll_first_side(task).is_ready() {
            // Finished here: its task still has to see that it is done.
            *actor = None;
            task.wake_by_ref();
        }
        true
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
        let Some(both) = state.actor.as_mut() else {
            return Poll::Ready(());
        };
        if Pin::new(both).poll(cx).is_ready() {
            state.actor = None;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}
