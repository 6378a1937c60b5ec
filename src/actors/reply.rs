//! The bounded channel that carries one request's answer from the actor to
//! the caller.
//!
//! One producer (the actor), one consumer (the caller), a few chunks: a
//! mutex-guarded queue with two wakers is all it needs, and costs one
//! allocation per request where futures' mpsc costs one per message plus
//! its sender bookkeeping (measured: the largest single cost of a round
//! trip). The actor never waits on it: `try_send` says Full, and
//! `poll_ready` tells the actor when to read the socket again.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use smallvec::SmallVec;

use crate::actors::in_place::{Drive, ReadTurn};

#[derive(Debug)]
struct State<T> {
    /// Most answers are one chunk: it is kept inline, no allocation. The
    /// queue never holds more than `bound` (a few), so taking from the
    /// front by shifting is cheap.
    queue: SmallVec<[T; 1]>,
    bound: usize,
    consumer: Option<Waker>,
    producer: Option<Waker>,
    producer_gone: bool,
    consumer_gone: bool,
    /// The consumer is running the actor itself (see `in_place`): it
    /// looks at the queue when that run ends, and is not woken.
    driving: bool,
}

impl<T> State<T> {
    /// The consumer's waker, to wake now that there is something for it;
    /// `None` while it is running the actor itself (it keeps its waker
    /// for later).
    fn wake_consumer(&mut self) -> Option<Waker> {
        if self.driving {
            None
        } else {
            self.consumer.take()
        }
    }
}

#[derive(Debug)]
struct Channel<T>(Mutex<State<T>>);

impl<T> Channel<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        crate::sync::lock(&self.0)
    }
}

/// The actor's end.
#[derive(Debug)]
pub(crate) struct ReplySender<T>(Arc<Channel<T>>);

/// The caller's end.
#[derive(Debug)]
pub(crate) struct ReplyReceiver<T>(Arc<Channel<T>>);

/// Why `try_send` did not take the item.
#[derive(Debug)]
pub(crate) enum TrySendError<T> {
    /// The queue holds `bound` items; the item is handed back.
    Full(T),
    /// The caller went away; the item is dropped.
    Gone,
}

/// A channel holding at most `bound` unread items.
pub(crate) fn reply_channel<T>(bound: usize) -> (ReplySender<T>, ReplyReceiver<T>) {
    let channel = Arc::new(Channel(Mutex::new(State {
        queue: SmallVec::new(),
        bound: bound.max(1),
        consumer: None,
        producer: None,
        producer_gone: false,
        consumer_gone: false,
        driving: false,
    })));
    (ReplySender(channel.clone()), ReplyReceiver(channel))
}

impl<T> ReplySender<T> {
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut state = self.0.lock();
        if state.consumer_gone {
            return Err(TrySendError::Gone);
        }
        if state.queue.len() >= state.bound {
            return Err(TrySendError::Full(item));
        }
        state.queue.push(item);
        let consumer = state.wake_consumer();
        drop(state);
        if let Some(w) = consumer {
            w.wake();
        }
        Ok(())
    }

    /// Queues `item` even when the channel is full: for the one error that
    /// ends an answer, which must not wait for room.
    pub(crate) fn force_send(&self, item: T) {
        let mut state = self.0.lock();
        if state.consumer_gone {
            return;
        }
        state.queue.push(item);
        let consumer = state.wake_consumer();
        drop(state);
        if let Some(w) = consumer {
            w.wake();
        }
    }

    /// Ready when there is room, or when the caller is gone.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.0.lock();
        if state.consumer_gone || state.queue.len() < state.bound {
            return Poll::Ready(());
        }
        crate::sync::set_waker(&mut state.producer, cx.waker());
        Poll::Pending
    }
}

impl<T> Drop for ReplySender<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.producer_gone = true;
        let consumer = state.wake_consumer();
        drop(state);
        if let Some(w) = consumer {
            w.wake();
        }
    }
}

impl<T> ReplyReceiver<T> {
    /// The next item; `None` once the actor dropped its end and everything
    /// sent was read. A caller holding the connection's read turn runs the
    /// actor's read itself while the channel is empty (see `in_place`);
    /// `turn` is cleared when it ends.
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        turn: &mut Option<ReadTurn>,
    ) -> Poll<Option<T>> {
        let mut may_drive = turn.is_some();
        loop {
            let mut state = self.0.lock();
            if let Some((answer, producer)) = Self::take_answer(&mut state) {
                state.driving = false;
                drop(state);
                if let Some(w) = producer {
                    w.wake();
                }
                return Poll::Ready(answer);
            }
            let reader = match turn.as_mut() {
                Some(reader) if may_drive => reader,
                _ => {
                    state.driving = false;
                    crate::sync::set_waker(&mut state.consumer, cx.waker());
                    return Poll::Pending;
                }
            };
            // What the caller's own run of the actor sends must not wake
            // it: that wake would cost what running in place saves.
            state.driving = true;
            drop(state);
            match reader.drive(cx.waker()) {
                Drive::Ran => {}
                Drive::Over => {
                    *turn = None;
                    may_drive = false;
                }
                // Woken by the read, or by the channel when someone else
                // runs the actor.
                Drive::Waiting | Drive::Busy => may_drive = false,
            }
        }
    }

    /// The next item, or the end, if either is there; with the actor's
    /// waker if it waits for room, to wake once the lock is released.
    fn take_answer(state: &mut MutexGuard<'_, State<T>>) -> Option<(Option<T>, Option<Waker>)> {
        if !state.queue.is_empty() {
            let item = state.queue.remove(0);
            return Some((Some(item), state.producer.take()));
        }
        state.producer_gone.then_some((None, None))
    }

    /// [`poll_recv`](Self::poll_recv) without a read turn, as a future.
    #[cfg(test)]
    pub(crate) async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx, &mut None)).await
    }
}

impl<T> Drop for ReplyReceiver<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.consumer_gone = true;
        // Unread items go now, not when the actor's end drops.
        state.queue.clear();
        let producer = state.producer.take();
        drop(state);
        if let Some(w) = producer {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_order_and_closes() {
        let (tx, mut rx) = reply_channel(2);
        assert!(tx.try_send(1).is_ok());
        assert!(tx.try_send(2).is_ok());
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        drop(tx);
        let got = futures_executor_lite(async move {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        assert_eq!(got, vec![1, 2]);
    }

    #[test]
    fn a_gone_consumer_refuses_items() {
        let (tx, rx) = reply_channel::<u8>(2);
        drop(rx);
        assert!(matches!(tx.try_send(1), Err(TrySendError::Gone)));
        let waker = Waker::noop();
        assert!(tx.poll_ready(&mut Context::from_waker(waker)).is_ready());
    }

    /// Polls a future that never waits on anything outside this test.
    fn futures_executor_lite<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }
}
