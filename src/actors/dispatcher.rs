//! The notification dispatcher: a sibling of the connection actor that
//! fans each NotificationResponse out to every subscriber of its channel.
//!
//! The connection actor hands notifications over without waiting (an
//! unbounded hand-off the dispatcher empties as fast as they come) and goes
//! back to the socket. Each subscriber has its own bounded queue: one that
//! falls behind loses the newest notifications, counted, and reads a
//! `Lagged(n)` marker where they would have been, then carries on. It never
//! slows the connection or the other subscribers.
//!
//! The registry (who listens to what) is shared with the handles, which
//! change it when they subscribe or drop, in the same critical section in
//! which they queue LISTEN or UNLISTEN, so the server's state follows the
//! registry's in order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures_channel::mpsc::UnboundedReceiver;
use futures_util::StreamExt;

use crate::actors::shared::Notification;
use crate::sync::lock;

/// Notifications a subscriber's queue holds before it lags.
pub(crate) const SUBSCRIBER_QUEUE: usize = 1024;
/// Payload bytes a subscriber's queue holds before it lags (payloads reach
/// 8000 bytes: the count alone would let one queue hold 8 MB).
pub(crate) const SUBSCRIBER_QUEUE_BYTES: usize = 1024 * 1024;

/// What a subscriber reads next.
#[derive(Debug)]
pub(crate) enum Delivery {
    Notification(Notification),
    /// This many notifications were dropped here: the subscriber was
    /// behind.
    Lagged(u64),
    /// The connection broke and reconnects by itself: what was sent
    /// meanwhile is missed, later notifications follow.
    Interrupted,
    /// The connection has ended; nothing more will come.
    Closed,
}

/// One subscriber's bounded queue.
#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Item>,
    /// Channel and payload bytes of the queued notifications.
    bytes: usize,
    waker: Option<Waker>,
    closed: bool,
}

enum Item {
    Notification(Notification),
    Lagged(u64),
    Interrupted,
}

impl Queue {
    fn push(&self, notification: Notification) {
        let mut state = lock(&self.state);
        let size = notification.channel.len() + notification.payload.len();
        if state.items.len() >= SUBSCRIBER_QUEUE || state.bytes + size > SUBSCRIBER_QUEUE_BYTES {
            match state.items.back_mut() {
                Some(Item::Lagged(missed)) => *missed += 1,
                // One slot beyond the bound marks where the gap is.
                _ => state.items.push_back(Item::Lagged(1)),
            }
        } else {
            state.bytes += size;
            state.items.push_back(Item::Notification(notification));
        }
        if let Some(waker) = state.waker.take() {
            drop(state);
            waker.wake();
        }
    }

    fn interrupt(&self) {
        let mut state = lock(&self.state);
        if !matches!(state.items.back(), Some(Item::Interrupted)) {
            state.items.push_back(Item::Interrupted);
        }
        if let Some(waker) = state.waker.take() {
            drop(state);
            waker.wake();
        }
    }

    fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        if let Some(waker) = state.waker.take() {
            drop(state);
            waker.wake();
        }
    }

    /// The next delivery, or `Pending` (waking `cx` when one comes).
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Delivery> {
        let mut state = lock(&self.state);
        match state.items.pop_front() {
            Some(Item::Notification(n)) => {
                state.bytes -= n.channel.len() + n.payload.len();
                Poll::Ready(Delivery::Notification(n))
            }
            Some(Item::Lagged(missed)) => Poll::Ready(Delivery::Lagged(missed)),
            Some(Item::Interrupted) => Poll::Ready(Delivery::Interrupted),
            None if state.closed => Poll::Ready(Delivery::Closed),
            None => {
                crate::sync::set_waker(&mut state.waker, cx.waker());
                Poll::Pending
            }
        }
    }

    /// How many deliveries wait (a lag marker counts as one).
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).items.len()
    }
}

/// What the handles and the dispatcher share: the registry, and the
/// connection's own subscriber (for `listen` and `wait_for_notification`,
/// made on first use).
#[derive(Default)]
pub(crate) struct Subscribers {
    pub(crate) registry: Mutex<Registry>,
    pub(crate) own: std::sync::OnceLock<(u64, Arc<Queue>)>,
}

/// Who listens to which channel.
#[derive(Default)]
pub(crate) struct Registry {
    next_id: u64,
    /// Channel (as the server names it) → subscriber ids.
    channels: HashMap<String, Vec<u64>>,
    queues: HashMap<u64, Arc<Queue>>,
    /// The dispatcher has ended: new subscribers are closed at once.
    closed: bool,
}

impl Registry {
    /// A new subscriber with no channel yet.
    pub(crate) fn new_subscriber(&mut self) -> (u64, Arc<Queue>) {
        self.next_id += 1;
        let queue = Arc::new(Queue::default());
        if self.closed {
            queue.close();
        }
        self.queues.insert(self.next_id, queue.clone());
        (self.next_id, queue)
    }

    /// Adds `channel` to subscriber `id`; true when it is the channel's
    /// first subscriber (LISTEN is needed). Adding a channel twice does
    /// nothing.
    pub(crate) fn add_channel(&mut self, id: u64, channel: &str) -> bool {
        let ids = self.channels.entry(channel.to_string()).or_default();
        if ids.contains(&id) {
            return false;
        }
        ids.push(id);
        ids.len() == 1
    }

    /// Removes `channel` from subscriber `id`; true when nobody listens to
    /// it any more (UNLISTEN is needed).
    pub(crate) fn remove_channel(&mut self, id: u64, channel: &str) -> bool {
        let Some(ids) = self.channels.get_mut(channel) else {
            return false;
        };
        let before = ids.len();
        ids.retain(|&other| other != id);
        if ids.is_empty() {
            self.channels.remove(channel);
            return before > 0;
        }
        false
    }

    /// Removes subscriber `id`; the channels nobody listens to any more.
    pub(crate) fn remove_subscriber(&mut self, id: u64) -> Vec<String> {
        self.queues.remove(&id);
        let mut abandoned = Vec::new();
        self.channels.retain(|channel, ids| {
            ids.retain(|&other| other != id);
            if ids.is_empty() {
                abandoned.push(channel.clone());
            }
            !ids.is_empty()
        });
        abandoned
    }

    /// The server stopped listening to everything (`DISCARD ALL`, which
    /// includes `UNLISTEN *`); subscribers stay, with no channel.
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    pub(crate) fn forget_channels(&mut self) {
        self.channels.clear();
    }

    /// The channels someone listens to (session state for a reconnection).
    pub(crate) fn channels(&self) -> Vec<String> {
        let mut channels: Vec<String> = self.channels.keys().cloned().collect();
        channels.sort();
        channels
    }

    fn deliver(&self, notification: Notification) {
        let Some(ids) = self.channels.get(&notification.channel) else {
            return;
        };
        for id in ids {
            if let Some(queue) = self.queues.get(id) {
                queue.push(notification.clone());
            }
        }
    }

    /// The session ended but the connection will reconnect: subscribers
    /// are told, and stay.
    fn interrupt(&mut self) {
        for queue in self.queues.values() {
            queue.interrupt();
        }
    }

    fn close(&mut self) {
        self.closed = true;
        for queue in self.queues.values() {
            queue.close();
        }
    }
}

/// Runs until the connection actor drops its end of `inbox` (the session
/// ended), then closes every subscriber's queue, or, when the session broke
/// and the connection will `reconnect`, tells them notifications were
/// interrupted.
pub(crate) async fn run(
    mut inbox: UnboundedReceiver<Notification>,
    subscribers: Arc<Subscribers>,
    session: Arc<crate::actors::shared::Shared>,
    reconnect: bool,
) {
    let mut since_yield = 0;
    while let Some(notification) = inbox.next().await {
        lock(&subscribers.registry).deliver(notification);
        // One socket read can bring more notifications than a queue holds.
        // Let the subscribers that were just woken run now and then, or on
        // a single-threaded executor (wasm's) they could only read after
        // the whole burst, and would lag while reading as fast as they can.
        since_yield += 1;
        if since_yield == YIELD_EVERY {
            since_yield = 0;
            yield_now().await;
        }
    }
    let mut registry = lock(&subscribers.registry);
    if reconnect && !session.ended_cleanly() {
        registry.interrupt();
    } else {
        registry.close();
    }
}

/// Deliveries between two chances for subscribers to run.
const YIELD_EVERY: usize = 64;

/// Returns to the executor once, so other woken tasks run first.
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(channel: &str, n: usize) -> Notification {
        Notification {
            channel: channel.into(),
            payload: n.to_string(),
            process_id: 1,
        }
    }

    fn drain(queue: &Queue) -> Vec<Delivery> {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        while let Poll::Ready(d) = queue.poll_next(&mut cx) {
            let closed = matches!(d, Delivery::Closed);
            out.push(d);
            if closed {
                break;
            }
        }
        out
    }

    #[test]
    fn a_full_queue_counts_what_it_drops_and_carries_on() {
        let queue = Queue::default();
        for n in 0..SUBSCRIBER_QUEUE + 10 {
            queue.push(note("c", n));
        }
        assert_eq!(queue.len(), SUBSCRIBER_QUEUE + 1);
        let first = drain(&queue);
        assert_eq!(first.len(), SUBSCRIBER_QUEUE + 1);
        assert!(matches!(first.last(), Some(Delivery::Lagged(10))));
        queue.push(note("c", 99));
        assert!(matches!(&drain(&queue)[..], [Delivery::Notification(n)] if n.payload == "99"));
    }

    #[test]
    fn large_payloads_lag_by_bytes_before_the_count() {
        let queue = Queue::default();
        let big = |n: usize| Notification {
            channel: "c".into(),
            payload: format!("{n:0>7999}"),
            process_id: 1,
        };
        for n in 0..200 {
            queue.push(big(n));
        }
        let kept = SUBSCRIBER_QUEUE_BYTES / 8000;
        let got = drain(&queue);
        assert_eq!(got.len(), kept + 1);
        assert!(
            matches!(got.last(), Some(Delivery::Lagged(missed)) if *missed == (200 - kept) as u64)
        );
    }

    #[test]
    fn channels_need_listen_once_and_unlisten_after_the_last() {
        let mut registry = Registry::default();
        let (a, _) = registry.new_subscriber();
        let (b, _) = registry.new_subscriber();
        assert!(registry.add_channel(a, "news"));
        assert!(!registry.add_channel(b, "news"));
        assert!(!registry.add_channel(a, "news"));
        assert!(registry.remove_subscriber(a).is_empty());
        assert_eq!(registry.remove_subscriber(b), vec!["news".to_string()]);
        assert!(registry.channels().is_empty());
    }
}
