//! `Both`: two futures run as one, each polled only when its own waker
//! fired.
//!
//! The connection actor and its notification dispatcher share one task (so
//! `connect_with_transport` hands the caller a single future). With
//! `futures::join` every wake of one polled the other as well: the
//! dispatcher was polled twice per query for nothing, and the actor once per
//! notification.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::actors::wake_flag::WakeFlag;

/// One of the two futures, until it has finished.
struct Side<F> {
    future: Option<Pin<Box<F>>>,
    woken: WakeFlag,
}

impl<F: Future<Output = ()>> Side<F> {
    fn new(future: F) -> Self {
        Side {
            future: Some(Box::pin(future)),
            woken: WakeFlag::new(),
        }
    }

    /// Polls the future if its waker fired since it was last polled;
    /// whether it has finished.
    fn poll(&mut self, task: &Waker) -> bool {
        let Some(future) = self.future.as_mut() else {
            return true;
        };
        if self.woken.take(task)
            && future
                .as_mut()
                .poll(&mut Context::from_waker(self.woken.waker()))
                .is_ready()
        {
            self.future = None;
        }
        self.future.is_none()
    }
}

/// Runs `a` and `b` to completion; see the module docs.
pub(crate) struct Both<A, B> {
    a: Side<A>,
    b: Side<B>,
}

impl<A: Future<Output = ()>, B: Future<Output = ()>> Both<A, B> {
    pub(crate) fn new(a: A, b: B) -> Self {
        Both {
            a: Side::new(a),
            b: Side::new(b),
        }
    }

    /// Polls `a` whether or not its waker fired (and `b` if its did), for
    /// the task whose waker is `task`: how a sender runs the actor in place
    /// after queuing it a command without waking it (see `in_place`).
    pub(crate) fn poll_first_side(&mut self, task: &Waker) -> Poll<()> {
        self.a.woken.raise();
        self.poll_sides(task)
    }

    fn poll_sides(&mut self, task: &Waker) -> Poll<()> {
        let a_done = self.a.poll(task);
        let b_done = self.b.poll(task);
        if a_done && b_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl<A: Future<Output = ()>, B: Future<Output = ()>> Future for Both<A, B> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_sides(cx.waker())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts its polls; finishes once `release` is set.
    fn counted(polls: Arc<AtomicUsize>, release: Arc<AtomicBool>) -> impl Future<Output = ()> {
        std::future::poll_fn(move |cx| {
            polls.fetch_add(1, Ordering::SeqCst);
            if release.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                // Keep the waker so the test can fire it.
                WAKERS.with(|w| w.borrow_mut().push(cx.waker().clone()));
                Poll::Pending
            }
        })
    }

    thread_local! {
        static WAKERS: std::cell::RefCell<Vec<Waker>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    #[test]
    fn only_the_woken_side_is_polled_and_both_finish() {
        let (a_polls, b_polls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (a_go, b_go) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let mut both = Box::pin(Both::new(
            counted(a_polls.clone(), a_go.clone()),
            counted(b_polls.clone(), b_go.clone()),
        ));
        let task = Waker::noop();
        let mut cx = Context::from_waker(task);
        assert!(both.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            (
                a_polls.load(Ordering::SeqCst),
                b_polls.load(Ordering::SeqCst)
            ),
            (1, 1)
        );
        let wakers = WAKERS.with(|w| std::mem::take(&mut *w.borrow_mut()));
        let [a_waker, b_waker] = <[Waker; 2]>::try_from(wakers).expect("two wakers");

        // Nothing woken: nothing polled.
        assert!(both.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            (
                a_polls.load(Ordering::SeqCst),
                b_polls.load(Ordering::SeqCst)
            ),
            (1, 1)
        );

        // Only b woken: only b polled.
        b_waker.wake_by_ref();
        assert!(both.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            (
                a_polls.load(Ordering::SeqCst),
                b_polls.load(Ordering::SeqCst)
            ),
            (1, 2)
        );

        // a finishes; b still runs; then b finishes too.
        a_go.store(true, Ordering::SeqCst);
        a_waker.wake();
        assert!(both.as_mut().poll(&mut cx).is_pending());
        assert_eq!(a_polls.load(Ordering::SeqCst), 2);
        b_go.store(true, Ordering::SeqCst);
        b_waker.wake();
        assert!(both.as_mut().poll(&mut cx).is_ready());
        assert_eq!(
            (
                a_polls.load(Ordering::SeqCst),
                b_polls.load(Ordering::SeqCst)
            ),
            (2, 3)
        );
    }
}
