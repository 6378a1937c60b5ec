//! The pool's clock: one task that keeps the pool's time, for maintenance
//! and for every waiting caller's `acquire_timeout`.
//!
//! A timer per waiting caller cost every wait a timer armed and disarmed,
//! though nearly every waiter is served long before its deadline. Under
//! WASI that is a pollable made, checked and dropped (three host calls),
//! plus a host timer set up again on every `wasi:io/poll` while it waits.
//! Waiters' deadlines are all known to the pool, so this task sleeps until
//! the earliest of them (or the next maintenance), fails the waiters whose
//! deadline passed, and sleeps again. A waiter served in time costs one
//! clock reading. A caller that starts waiting with a deadline earlier than
//! the task's wake-up time raises the [`Alarm`], and the task looks again.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::task::AtomicWaker;
use futures_util::FutureExt;

use super::pool::PoolCore;
use super::rt;

/// Wakes the clock task to look at the pool's deadlines again.
#[derive(Debug, Default)]
pub(crate) struct Alarm {
    raised: AtomicBool,
    task: AtomicWaker,
}

impl Alarm {
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        self.task.wake();
    }

    fn poll_raised(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.raised.swap(false, Ordering::SeqCst) {
            return Poll::Ready(());
        }
        self.task.register(cx.waker());
        // A raise between the check and the registration woke nobody.
        if self.raised.swap(false, Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Runs until the pool is dropped (`stop` fires): maintenance every
/// `upkeep` (if any), and waiters failed at their deadlines.
pub(crate) async fn keep_time(
    core: Weak<PoolCore>,
    alarm: Arc<Alarm>,
    upkeep: Option<Duration>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut next_upkeep = upkeep.map(|every| rt::now() + every);
    loop {
        let Some(pool) = core.upgrade() else {
            return;
        };
        let now = rt::now();
        if let (Some(at), Some(every)) = (next_upkeep, upkeep) {
            if now >= at {
                pool.maintain();
                next_upkeep = Some(now + every);
            }
        }
        let wake_at = pool.expire_waiters(now, next_upkeep);
        // No strong handle across the wait: the pool ends with its users.
        drop(pool);
        let mut sleep = pin!(async {
            match wake_at {
                Some(at) => rt::sleep(at.saturating_duration_since(now)).await,
                // Nothing to wait for but the alarm: no timer pending, so
                // a wasm program may end while the pool is unused.
                None => std::future::pending().await,
            }
        });
        let stopped = poll_fn(|cx| {
            if stop.poll_unpin(cx).is_ready() {
                return Poll::Ready(true);
            }
            if alarm.poll_raised(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            Poll::Pending
        })
        .await;
        if stopped {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    use super::*;

    /// Counts its wakes.
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn an_alarm_raised_before_the_clock_waits_is_not_lost() {
        let alarm = Alarm::default();
        alarm.raise();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(alarm.poll_raised(&mut cx).is_ready());
        // Taken: the next look waits for the next alarm.
        assert!(alarm.poll_raised(&mut cx).is_pending());
    }

    #[test]
    fn an_alarm_raised_while_the_clock_waits_wakes_it_once() {
        let alarm = Alarm::default();
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(alarm.poll_raised(&mut cx).is_pending());
        alarm.raise();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(alarm.poll_raised(&mut cx).is_ready());
        assert!(alarm.poll_raised(&mut cx).is_pending());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    }
}
