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
        let consumer = state.consumer.take();
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
        let consumer = state.consumer.take();
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
        let consumer = state.consumer.take();
        drop(state);
        if let Some(w) = consumer {
            w.wake();
        }
    }
}

impl<T> ReplyReceiver<T> {
    /// The next item; `None` once the actor dropped its end and everything
    /// sent was read.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.0.lock();
        if !state.queue.is_empty() {
            let item = state.queue.remove(0);
            let producer = state.producer.take();
            drop(state);
            if let Some(w) = producer {
                w.wake();
            }
            return Poll::Ready(Some(item));
        }
        if state.producer_gone {
            return Poll::Ready(None);
        }
        crate::sync::set_waker(&mut state.consumer, cx.waker());
        Poll::Pending
    }

    /// [`poll_recv`](Self::poll_recv) for a caller that may hold the
    /// connection's read turn: while the channel is empty, it runs the
    /// actor's read itself (see `in_place`). `turn` is cleared when it
    /// ends.
    pub(crate) fn poll_recv_driving(
        &mut self,
        cx: &mut Context<'_>,
        turn: &mut Option<ReadTurn>,
    ) -> Poll<Option<T>> {
        loop {
            let Some(reader) = turn.as_mut() else {
                return self.poll_recv(cx);
            };
            {
                let mut state = self.0.lock();
                if !state.queue.is_empty() || state.producer_gone {
                    drop(state);
                    return self.poll_recv(cx);
                }
                // The answer this caller runs in is not to wake it: that
                // wake would cost what running in place saves.
                state.consumer = None;
            }
            match reader.drive(cx.waker()) {
                Drive::Ran => {}
                Drive::Over => *turn = None,
                // Woken by the read, or by the channel when someone else
                // ran the actor.
                Drive::Waiting | Drive::Busy => return self.poll_recv(cx),
            }
        }
    }

    /// [`poll_recv`](Self::poll_recv) as a future.
    #[cfg(test)]
    pub(crate) async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
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
