//! `WakeFlag`: a waker that remembers it fired.
//!
//! A future made of several parts (the actor and the dispatcher in `Both`;
//! the socket read among the actor's other work) polls a part only when
//! that part's own waker fired since its last poll, not on every wake of
//! the task.
//!
//! A flag's wakes can be redirected for a while to another waker (see
//! [`Redirect`]): that is how a caller waiting for its answer is woken by
//! the socket itself, and reads it on its own task (`in_place`).
//!
//! The pool's clock task uses one as its alarm: other tasks fire its waker
//! when a deadline comes earlier than the clock knows of.

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

/// What a [`WakeFlag`]'s waker does: marks it and wakes the task, or the
/// waker it is redirected to.
#[derive(Default)]
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
    /// While set, wakes go to `redirect`, not `task`.
    redirected: AtomicBool,
    redirect: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // SeqCst with `Redirect::stop`: either this wake sees the redirect
        // ended, or `stop` sees the flag raised; never neither.
        self.woken.store(true, Ordering::SeqCst);
        if self.redirected.load(Ordering::SeqCst) {
            self.redirect.wake();
        } else {
            self.task.wake();
        }
    }
}

/// A handle on a [`WakeFlag`] that sends its wakes elsewhere for a while.
///
/// Its owner must serialise `to` calls (they register a waker, which
/// must not race with another registration): the connection's cell calls
/// it only under its mutex.
pub(crate) struct Redirect(Arc<Flag>);

impl Redirect {
    /// From now on, wakes go to `waker` instead of the task, until
    /// [`stop`](Self::stop).
    pub(crate) fn to(&self, waker: &Waker) {
        self.0.redirect.register(waker);
        self.0.redirected.store(true, Ordering::SeqCst);
    }

    /// Wakes go to the task again; whether the flag is raised (a wake came
    /// that nobody has handled yet).
    pub(crate) fn stop(&self) -> bool {
        self.0.redirected.store(false, Ordering::SeqCst);
        self.is_raised()
    }

    /// Whether the flag is raised: the part is to be polled.
    pub(crate) fn is_raised(&self) -> bool {
        self.0.woken.load(Ordering::SeqCst)
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

    /// A handle that can send this flag's wakes elsewhere.
    pub(crate) fn redirect(&self) -> Redirect {
        Redirect(self.flag.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts its wakes.
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    // As the pool's clock uses a flag: an alarm, fired through its waker by
    // other tasks, taken by the clock task.

    #[test]
    fn a_wake_before_the_task_looks_is_not_lost() {
        let flag = WakeFlag::new();
        // A new flag starts raised.
        assert!(flag.take(Waker::noop()));
        flag.waker().wake_by_ref();
        assert!(flag.take(Waker::noop()));
        // Taken: the next look waits for the next wake.
        assert!(!flag.take(Waker::noop()));
    }

    #[test]
    fn a_wake_while_the_task_waits_wakes_it_once() {
        let flag = WakeFlag::new();
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let task = Waker::from(wakes.clone());
        assert!(flag.take(&task));
        assert!(!flag.take(&task));
        flag.waker().wake_by_ref();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(flag.take(&task));
        assert!(!flag.take(&task));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    }
}
