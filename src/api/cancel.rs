//! `CancelToken`: cancels the query a connection is running, from any task,
//! even after the connection is gone.

use std::sync::Arc;

use crate::actors::cancel::{CancelService, CancelTarget};
use crate::PgError;

/// Asks the server to cancel whatever the connection is running.
///
/// Cheap to clone and `Send`; usable from any task. The query being
/// cancelled fails with SQLSTATE 57014 (query_canceled); cancelling an idle
/// connection does nothing. As with libpq, a cancel that arrives just after
/// the query finished may hit the next one on that connection.
///
/// A token names one server session (its backend and secret key). After an
/// automatic reconnection ([`Config::auto_reconnect`](crate::Config::auto_reconnect))
/// an older token cancels nothing; `conn.cancel_token()` gives one for the
/// new session.
///
/// ```no_run
/// # async fn demo(conn: wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
/// let token = conn.cancel_token();
/// let slow = conn.query("SELECT pg_sleep(30)");
/// let (result, _) = futures_util::join!(slow, token.cancel());
/// assert_eq!(result.unwrap_err().code(), Some("57014"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CancelToken {
    pub(crate) service: CancelService,
    pub(crate) target: Option<Arc<CancelTarget>>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key stays out of logs.
        f.debug_struct("CancelToken")
            .field("process_id", &self.target.as_ref().map(|t| t.process_id))
            .finish()
    }
}

impl CancelToken {
    /// Sends the cancel request over a new connection (with the original's
    /// TLS settings) and returns once the server has taken it.
    pub async fn cancel(&self) -> Result<(), PgError> {
        let Some(target) = &self.target else {
            return Err(PgError::Config(
                "this connection cannot be cancelled: it was made over a caller-supplied \
                 transport (connect_with_transport), or the server sent no cancel key"
                    .into(),
            ));
        };
        self.service.cancel(target.clone()).await
    }
}
