//! LISTEN/NOTIFY: subscriptions fed by the notification dispatcher, and the
//! connection-level `listen` / `wait_for_notification` of the seed's API.
//!
//! Any number of subscribers share one connection's notifications; LISTEN
//! goes out for a channel's first subscriber and UNLISTEN after its last is
//! gone. Channel names are quoted as identifiers, and `notify` passes the
//! channel and payload as bound parameters, so any string is safe.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::actors::dispatcher::{Delivery, Queue};
use crate::actors::rt;
use crate::api::response::collect;
use crate::protocol::frontend;
use crate::protocol::sql::quote_identifier;
use crate::sync::lock;
use crate::{Connection, Notification, PgError};

/// The longest identifier the server keeps (NAMEDATALEN - 1); LISTEN cuts a
/// longer channel name to this, and notifications carry the cut name.
const MAX_IDENTIFIER: usize = 63;

/// Notifications on one channel, as a stream; see
/// [`Connection::subscribe`].
///
/// Each subscription has its own bounded queue (1024 notifications or
/// 1 MiB of payload). One that falls behind
/// gets `Err(PgError::Lagged(n))` where `n` notifications were dropped for
/// it, then the ones after. The stream ends when the connection does.
/// Dropping the last subscription of a channel sends UNLISTEN.
pub struct Subscription {
    conn: Connection,
    id: u64,
    channel: String,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.channel)
            .field("queued", &self.queue.len())
            .finish()
    }
}

impl Subscription {
    /// The channel, as the server names it.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next notification; `Ok(None)` once the connection has ended;
    /// `Err(PgError::Lagged(n))` where this subscriber missed `n`.
    pub async fn next(&mut self) -> Result<Option<Notification>, PgError> {
        poll_fn(|cx| poll_delivery(&self.conn, &self.queue, cx)).await
    }
}

fn poll_delivery(
    conn: &Connection,
    queue: &Queue,
    cx: &mut Context<'_>,
) -> Poll<Result<Option<Notification>, PgError>> {
    queue.poll_next(cx).map(|delivery| match delivery {
        Delivery::Notification(n) => Ok(Some(n)),
        Delivery::Lagged(missed) => Err(PgError::Lagged(missed)),
        Delivery::Interrupted => {
            // A program that only listens makes no other call that would
            // reconnect: start it here.
            conn.reconnect_in_background();
            Err(PgError::Interrupted(
                "the connection broke; it reconnects and listens again, and notifications \
                 sent meanwhile are missed"
                    .into(),
            ))
        }
        Delivery::Closed => Ok(None),
    })
}

impl futures_core::Stream for Subscription {
    type Item = Result<Notification, PgError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        poll_delivery(&self.conn, &self.queue, cx).map(Result::transpose)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut registry = lock(&self.conn.subscribers().registry);
        for channel in registry.remove_subscriber(self.id) {
            // Queued under the registry lock, so a LISTEN by a subscriber
            // that comes next is queued after it.
            let _ = send_listen(&self.conn, "UNLISTEN", &channel);
        }
    }
}

/// Queues LISTEN or UNLISTEN for `channel`; its answer, to wait for or not.
fn send_listen(
    conn: &Connection,
    verb: &str,
    channel: &str,
) -> Result<crate::api::response::Responses, PgError> {
    let bytes = frontend::own_query(&format!("{verb} {}", quote_identifier(channel)))?;
    // From now on the server may speak unasked: the actor's task reads.
    conn.shared().set_listening();
    conn.request_now(bytes)
}

/// `name` as the server will know it: cut to the identifier length limit,
/// at a character boundary.
fn server_channel_name(name: &str) -> String {
    let mut end = name.len().min(MAX_IDENTIFIER);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

impl Connection {
    /// Subscribes to `channel`: LISTEN is sent if nobody on this connection
    /// listens to it yet. Any number of subscriptions, on any tasks, may
    /// share a channel; each gets every notification.
    ///
    /// ```no_run
    /// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
    /// let mut orders = conn.subscribe("orders").await?;
    /// conn.notify("orders", "order 42 shipped").await?;
    /// if let Some(n) = orders.next().await? {
    ///     println!("{}: {}", n.channel, n.payload);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, PgError> {
        self.check_open().await?;
        let channel = server_channel_name(channel);
        let (subscription, listen) = {
            let mut registry = lock(&self.subscribers().registry);
            let (id, queue) = registry.new_subscriber();
            let listen = if registry.add_channel(id, &channel) {
                match send_listen(self, "LISTEN", &channel) {
                    Ok(responses) => Some(responses),
                    Err(e) => {
                        registry.remove_subscriber(id);
                        return Err(e);
                    }
                }
            } else {
                None
            };
            let subscription = Subscription {
                conn: self.clone(),
                id,
                channel,
                queue,
            };
            (subscription, listen)
        };
        if let Some(responses) = listen {
            // On failure the subscription is dropped: unregistered again.
            collect(responses, None).await?;
        }
        Ok(subscription)
    }

    /// Fails once the connection is closed or broken, even when nothing
    /// needs to be sent (the channel is already listened to); with
    /// `auto_reconnect`, reconnects instead.
    async fn check_open(&self) -> Result<(), PgError> {
        self.ensure_live().await
    }

    /// LISTEN on a new session for a channel the registry already has (a
    /// reconnection restoring what the old session listened to).
    pub(crate) async fn listen_again(&self, channel: &str) -> Result<(), PgError> {
        collect(send_listen(self, "LISTEN", channel)?, None)
            .await
            .map(drop)
    }

    /// The connection's own subscriber, made on first use.
    fn listener(&self) -> (u64, Arc<Queue>) {
        let subscribers = self.subscribers();
        subscribers
            .own
            .get_or_init(|| lock(&subscribers.registry).new_subscriber())
            .clone()
    }

    /// Listens to `channel` for [`wait_for_notification`]
    /// (LISTEN, unless a subscription already listens to it).
    ///
    /// [`wait_for_notification`]: Connection::wait_for_notification
    pub async fn listen(&self, channel: &str) -> Result<(), PgError> {
        self.check_open().await?;
        let channel = server_channel_name(channel);
        let (id, _) = self.listener();
        let registry = &self.subscribers().registry;
        let listen = {
            let mut registry = lock(registry);
            if !registry.add_channel(id, &channel) {
                return Ok(());
            }
            match send_listen(self, "LISTEN", &channel) {
                Ok(responses) => responses,
                Err(e) => {
                    registry.remove_channel(id, &channel);
                    return Err(e);
                }
            }
        };
        if let Err(e) = collect(listen, None).await {
            let mut registry = lock(registry);
            if registry.remove_channel(id, &channel) {
                let _ = send_listen(self, "UNLISTEN", &channel);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Stops [`listen`](Connection::listen)ing to `channel` (UNLISTEN,
    /// unless a subscription still listens to it).
    pub async fn unlisten(&self, channel: &str) -> Result<(), PgError> {
        let channel = server_channel_name(channel);
        let (id, _) = self.listener();
        let unlisten = {
            let mut registry = lock(&self.subscribers().registry);
            if !registry.remove_channel(id, &channel) {
                return Ok(());
            }
            send_listen(self, "UNLISTEN", &channel)?
        };
        collect(unlisten, None).await.map(drop)
    }

    /// The next notification on a channel this connection
    /// [`listen`](Connection::listen)s to. `Err(PgError::Lagged(n))` says
    /// `n` were dropped because nobody read them in time; `Closed` once the
    /// connection has ended.
    pub async fn wait_for_notification(&self) -> Result<Notification, PgError> {
        let (_, queue) = self.listener();
        match poll_fn(|cx| poll_delivery(self, &queue, cx)).await? {
            Some(notification) => Ok(notification),
            None => Err(self.shared().gone()),
        }
    }

    /// [`wait_for_notification`](Connection::wait_for_notification), giving
    /// up after `timeout` with `Ok(None)`. A notification already received
    /// is returned even with a zero timeout.
    ///
    /// ```no_run
    /// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
    /// conn.listen("events").await?;
    /// if let Some(n) = conn
    ///     .wait_for_notification_with_timeout(std::time::Duration::from_secs(5))
    ///     .await?
    /// {
    ///     println!("Got notification on {}: {}", n.channel, n.payload);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn wait_for_notification_with_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<Notification>, PgError> {
        match rt::timeout(
            Some(timeout),
            "waiting for a notification",
            self.wait_for_notification(),
        )
        .await
        {
            Ok(result) => result.map(Some),
            Err(PgError::Timeout(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends a notification (`pg_notify($1, $2)`: channel and payload are
    /// bound parameters). The server limits payloads to 8000 bytes.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), PgError> {
        self.query_params("SELECT pg_notify($1, $2)", &[&channel, &payload])
            .await
            .map(drop)
    }

    /// The channels someone on this connection listens to (session state a
    /// reconnection restores), sorted.
    pub fn listened_channels(&self) -> Vec<String> {
        lock(&self.subscribers().registry).channels()
    }
}
