//! An actor's mailbox: a bounded multi-producer queue with `send(&self)`.
//!
//! Handles share one sender (no per-call clone, unlike futures' mpsc, whose
//! sender bookkeeping was the largest cost left in a round trip). A full
//! mailbox makes senders wait, which is the backpressure on handles. The
//! actor can close it: queued items are still delivered, new sends fail.
//! When the last sender is gone, the actor sees the end of the queue.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Waker};

use crate::actors::in_place::RunInPlace;

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    bound: usize,
    receiver: Option<Waker>,
    /// Senders waiting for room. All are woken when an item is taken (one
    /// of them may have given up, and its wake-up must not be lost); the
    /// mailbox is rarely full, so the herd is small.
    waiting: Vec<Waker>,
    senders: usize,
    closed: bool,
    /// Items ever queued: with the actor's count of items taken, tells a
    /// sender whether everything it sent has reached the actor.
    pushed: u64,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Runs the actor's next step on the sender's stack (see `in_place`),
    /// once set.
    runner: OnceLock<Weak<dyn RunInPlace>>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("state", &self.state)
            .finish()
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        crate::sync::lock(&self.state)
    }
}

/// The sending side; clones share the queue.
#[derive(Debug)]
pub(crate) struct MailboxSender<T>(Arc<Shared<T>>);

/// The actor's side.
#[derive(Debug)]
pub(crate) struct MailboxReceiver<T>(Arc<Shared<T>>);

/// A mailbox holding at most `bound` items.
pub(crate) fn mailbox<T>(bound: usize) -> (MailboxSender<T>, MailboxReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            bound: bound.max(1),
            receiver: None,
            waiting: Vec::new(),
            senders: 1,
            closed: false,
            pushed: 0,
        }),
        runner: OnceLock::new(),
    });
    (MailboxSender(shared.clone()), MailboxReceiver(shared))
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        MailboxSender(self.0.clone())
    }
}

impl<T> Drop for MailboxSender<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.senders -= 1;
        let receiver = if state.senders == 0 {
            state.receiver.take()
        } else {
            None
        };
        drop(state);
        if let Some(w) = receiver {
            w.wake();
        }
    }
}

impl<T> MailboxSender<T> {
    /// Queues `item`, waiting while the mailbox is full; `Err(Closed)` (the
    /// item dropped) once the actor has closed it.
    pub(crate) async fn send(&self, item: T) -> Result<Sent, Closed> {
        let mut item = Some(item);
        poll_fn(|cx| {
            let mut state = self.0.lock();
            if state.closed {
                return Poll::Ready(Err(Closed));
            }
            if state.queue.len() >= state.bound {
                state.waiting.push(cx.waker().clone());
                return Poll::Pending;
            }
            if let Some(item) = item.take() {
                state.queue.push_back(item);
                state.pushed += 1;
            }
            let (receiver, number) = (state.receiver.take(), state.pushed);
            drop(state);
            let ran_in_place = receiver.and_then(|w| self.run_or_wake(w, number));
            Poll::Ready(Ok(Sent {
                number,
                ran_in_place,
            }))
        })
        .await
    }

    /// From now on, `send` runs the actor with `runner` instead of waking
    /// it, where it can.
    pub(crate) fn run_in_place_with(&self, runner: Weak<dyn RunInPlace>) {
        let _ = self.0.runner.set(runner);
    }

    /// Runs the quiet actor in place if it can (and returns what ran it),
    /// else wakes it (`receiver` is the waker it left on the empty mailbox,
    /// `pushed` the count of items queued with the one just sent).
    fn run_or_wake(&self, receiver: Waker, pushed: u64) -> Option<Arc<dyn RunInPlace>> {
        match self.0.runner.get().and_then(Weak::upgrade) {
            Some(runner) if runner.run_in_place(pushed) => Some(runner),
            _ => {
                receiver.wake();
                None
            }
        }
    }

    /// Queues `item` even when the mailbox is full: for the few control
    /// messages a `Drop` must send and cannot wait for (releasing a lease).
    pub(crate) fn force_send(&self, item: T) -> Result<(), Closed> {
        let mut state = self.0.lock();
        if state.closed {
            return Err(Closed);
        }
        state.queue.push_back(item);
        state.pushed += 1;
        let receiver = state.receiver.take();
        drop(state);
        if let Some(w) = receiver {
            w.wake();
        }
        Ok(())
    }

    /// How many items were ever queued (by every sender).
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    pub(crate) fn pushed(&self) -> u64 {
        self.0.lock().pushed
    }

    /// Whether the actor closed the mailbox.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.lock().closed
    }
}

/// An item `send` queued.
pub(crate) struct Sent {
    /// Its number: the count of items ever queued, with it.
    pub(crate) number: u64,
    /// What ran the actor in place right after, if anything did.
    pub(crate) ran_in_place: Option<Arc<dyn RunInPlace>>,
}

/// The mailbox no longer takes items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

impl<T> MailboxReceiver<T> {
    /// The next item; `None` when the mailbox is empty and either closed or
    /// without senders.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.0.lock();
        if let Some(item) = state.queue.pop_front() {
            let waiting = std::mem::take(&mut state.waiting);
            drop(state);
            for w in waiting {
                w.wake();
            }
            return Poll::Ready(Some(item));
        }
        if state.closed || state.senders == 0 {
            return Poll::Ready(None);
        }
        crate::sync::set_waker(&mut state.receiver, cx.waker());
        Poll::Pending
    }

    /// An item if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        self.0.lock().queue.pop_front()
    }

    /// Refuses new items; queued ones are still delivered.
    pub(crate) fn close(&mut self) {
        let mut state = self.0.lock();
        state.closed = true;
        let waiting = std::mem::take(&mut state.waiting);
        drop(state);
        for w in waiting {
            w.wake();
        }
    }
}

impl<T> Drop for MailboxReceiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn full_mailbox_makes_senders_wait_until_an_item_is_taken() {
        let (tx, mut rx) = mailbox(1);
        let mut first = std::pin::pin!(tx.send(1));
        assert!(matches!(
            poll_once(first.as_mut()),
            Poll::Ready(Ok(Sent { number: 1, .. }))
        ));
        let mut second = std::pin::pin!(tx.send(2));
        assert!(poll_once(second.as_mut()).is_pending());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(Some(1))));
        assert!(matches!(
            poll_once(second.as_mut()),
            Poll::Ready(Ok(Sent { number: 2, .. }))
        ));
        assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(Some(2))));
    }

    #[test]
    fn close_refuses_new_items_and_delivers_queued_ones() {
        let (tx, mut rx) = mailbox(4);
        assert!(matches!(
            poll_once(std::pin::pin!(tx.send(1))),
            Poll::Ready(Ok(Sent { number: 1, .. }))
        ));
        rx.close();
        assert!(tx.is_closed());
        assert!(matches!(
            poll_once(std::pin::pin!(tx.send(2))),
            Poll::Ready(Err(Closed))
        ));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(Some(1))));
        assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn the_last_sender_leaving_ends_the_queue() {
        let (tx, mut rx) = mailbox::<u8>(4);
        let other = tx.clone();
        drop(tx);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(rx.poll_recv(&mut cx).is_pending());
        drop(other);
        assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(None)));
    }
}
