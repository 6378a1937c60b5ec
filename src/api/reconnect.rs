//! Opening the session that replaces a broken one (`Config::auto_reconnect`)
//! and restoring on it what the old session had: the parameters set with
//! `set_param` and the channels listened to.
//!
//! It lives apart from the connection's request path because restoring
//! runs ordinary requests, and those can themselves reconnect: the future
//! is boxed here so the two do not form one recursive type.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::actors::dispatcher::Subscribers;
use crate::sync::lock;
use crate::{Config, Connection, PgError};

/// A new session, with `params` set and every channel in `subscribers`
/// listened to, as a handle of its own.
pub(crate) fn reopen(
    config: Config,
    subscribers: Arc<Subscribers>,
    params: Vec<(String, String)>,
) -> Pin<Box<dyn Future<Output = Result<Connection, PgError>> + Send>> {
    Box::pin(async move {
        let conn = Connection::connect_session(&config, subscribers.clone()).await?;
        #[cfg(feature = "tracing")]
        tracing::info!(backend_pid = ?conn.backend_pid(), "reconnected after the connection broke");
        for (name, value) in params {
            conn.set_param(&name, &value).await?;
        }
        let channels = lock(&subscribers.registry).channels();
        for channel in channels {
            conn.listen_again(&channel).await?;
        }
        Ok(conn)
    })
}
