//! Session parameters: `set_param` and `reset_param`, remembered so that a
//! new session (a reconnection) can be given the same settings.

use crate::api::response::collect;
use crate::protocol::frontend;
use crate::protocol::sql::quote_identifier;
use crate::{Connection, PgError};

/// Sets a parameter through a function call, so the name and the value are
/// bound parameters: no string can change the statement.
const SET_CONFIG: &str = "SELECT set_config($1, $2, $3)";

impl Connection {
    /// Sets a run-time parameter for the rest of the session, like `SET`.
    ///
    /// The name and the value travel as bound parameters of
    /// `set_config(name, value, false)`, never spliced into SQL, so any
    /// string is safe; the server reads the value as it would in
    /// `postgresql.conf` (a list such as `search_path` takes `"a, b"`).
    /// The setting is remembered ([`session_params`](Connection::session_params))
    /// to be applied again on a new session. Inside a transaction use
    /// [`Transaction::set_local`](crate::Transaction::set_local).
    ///
    /// ```no_run
    /// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
    /// conn.set_param("timezone", "UTC").await?;
    /// conn.set_param("application_name", "my_app").await?;
    /// assert_eq!(conn.parameter("application_name").as_deref(), Some("my_app"));
    /// # Ok(()) }
    /// ```
    pub async fn set_param(&self, name: &str, value: &str) -> Result<(), PgError> {
        self.set_config(name, value, false).await?;
        self.shared().remember_session_param(name, Some(value));
        Ok(())
    }

    /// Puts a run-time parameter back to its default (`RESET`, with the
    /// name quoted as an identifier) and forgets it from the session state.
    pub async fn reset_param(&self, name: &str) -> Result<(), PgError> {
        let bytes = frontend::own_query(&format!("RESET {}", quote_identifier(name)))?;
        collect(self.request(bytes).await?, None).await?;
        self.shared().remember_session_param(name, None);
        Ok(())
    }

    /// The parameters set with [`set_param`](Connection::set_param) and not
    /// reset since, in the order they were set: what a new session would be
    /// given.
    pub fn session_params(&self) -> Vec<(String, String)> {
        self.shared().session_params()
    }

    /// `set_config(name, value, is_local)`.
    pub(crate) async fn set_config(
        &self,
        name: &str,
        value: &str,
        is_local: bool,
    ) -> Result<(), PgError> {
        self.query_params(SET_CONFIG, &[&name, &value, &is_local])
            .await
            .map(drop)
    }
}
