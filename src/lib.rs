//! A PostgreSQL client for WASI Preview 2 components and native tokio.

#![warn(missing_docs)]

mod actors;
mod api;
mod protocol;
pub mod transport;

pub use api::config::{Config, Host, SslMode};
pub use api::error::{classify_error, DbError, ErrorClass, PgError};
pub use transport::AsyncTransport;
