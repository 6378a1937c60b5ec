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
//! the task's wake-up time wakes it through its alarm (a [`WakeFlag`]'s
//! waker), and the task looks again.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Weak;
use std::task::Poll;
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::FutureExt;

use super::pool::PoolCore;
use super::rt;
use super::wake_flag::WakeFlag;

/// Runs until the pool is dropped (`stop` fires): maintenance every
/// `upkeep` (if any), and waiters failed at their deadlines. The pool wakes
/// it early through `alarm`'s waker.
pub(crate) async fn keep_time(
    core: Weak<PoolCore>,
    alarm: WakeFlag,
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
            if alarm.take(cx.waker()) || sleep.as_mut().poll(cx).is_ready() {
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
