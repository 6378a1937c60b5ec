//! `WakeFlag`: a waker that remembers it fired.
//!
//! A future made of several parts (the actor and the dispatcher in `Both`;
//! the socket read among the actor's other work) polls a part only when
//! that part's own waker fired since its last poll, not on every wake of
//! the task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

use futures_util::task::AtomicWaker;

/// A waker that remembers it fired: lets a future made of several parts
/// poll only the parts whose own waker fired since their last poll.
pub(crate) struct WakeFlag {
    flag: Arc<Flag>,
    waker: Waker,
}

/// What a [`WakeFlag`]'s waker does: marks it and wakes the task.
#[derive(Default)]
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl WakeFlag {
    /// A flag that starts raised: a new part is polled once, like any new
    /// future.
    pub(crate) fn new() -> Self {
        let flag = Arc::new(Flag::default());
        flag.woken.store(true, Ordering::Relaxed);
        WakeFlag {
            waker: Waker::from(flag.clone()),
            flag,
        }
    }

    /// Raises the flag: the part is polled next time (a new part in the
    /// same place, say).
    pub(crate) fn raise(&self) {
        self.flag.woken.store(true, Ordering::Release);
    }

    /// Whether the part's waker fired since the last call (it is to be
    /// polled now, with [`waker`](Self::waker)), lowering the flag; `task`
    /// is woken whenever it fires.
    pub(crate) fn take(&self, task: &Waker) -> bool {
        // Registered before the flag is read: a wake in between is seen by
        // the next poll of the task.
        self.flag.task.register(task);
        self.flag.woken.swap(false, Ordering::AcqRel)
    }

    /// The waker to poll the part with.
    pub(crate) fn waker(&self) -> &Waker {
        &self.waker
    }
}
