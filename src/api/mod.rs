//! What users hold: thin handles that build requests and send them to actors.

pub(crate) mod cancel;
pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod copy;
pub(crate) mod copy_rows;
pub(crate) mod cursor;
pub(crate) mod error;
pub(crate) mod generic;
pub(crate) mod notify;
pub(crate) mod pgpass;
pub(crate) mod pipeline;
#[cfg(feature = "pool")]
pub(crate) mod pool;
pub(crate) mod reconnect;
pub(crate) mod response;
pub(crate) mod retry;
pub(crate) mod row;
pub(crate) mod session;
pub(crate) mod statement;
pub(crate) mod stream;
pub(crate) mod tls_config;
pub(crate) mod transaction;
