//! A PostgreSQL client for WASI Preview 2 components and native tokio.
//!
//! Each connection is a small actor that owns the socket and pipelines the
//! requests of every clone of its [`Connection`] handle. The same code runs
//! natively on tokio (feature `tokio-transport`) and as a `wasm32-wasip2`
//! component on wstd's reactor.
//!
//! ```no_run
//! use wasi_pg_client::{Config, Connection};
//!
//! # async fn demo() -> Result<(), wasi_pg_client::PgError> {
//! let config = Config::from_uri("postgresql://user:pass@localhost/mydb?sslmode=disable")?;
//! let conn = Connection::connect(&config).await?;
//! let result = conn.query("SELECT id, name FROM users").await?;
//! for row in result.iter() {
//!     let id: i32 = row.get(0)?;
//!     let name: String = row.get(1)?;
//!     println!("{}: {}", id, name);
//! }
//! conn.close().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod actors;
mod api;
mod protocol;
mod sync;
pub mod transport;

pub use actors::shared::Notification;
pub use api::cancel::CancelToken;
pub use api::config::{Config, Host, SslMode};
pub use api::connection::{BufferedBytes, Connection, ConnectionTask};
pub use api::copy::{CopyIn, CopyOut};
pub use api::copy_rows::{BinaryCopyInWriter, BinaryCopyOutReader, CsvCopyInWriter};
pub use api::cursor::CursorStream;
pub use api::error::{classify_error, DbError, ErrorClass, PgError};
pub use api::generic::GenericClient;
pub use api::notify::Subscription;
pub use api::pipeline::{Pipeline, PipelineMode};
pub use api::retry::RetryPolicy;
pub use api::row::{Column, QueryResult, Row, RowIndex};
pub use api::statement::{Statement, StatementCacheStats, ToStatement};
pub use api::stream::{RowStream, STALLED_STREAM_LIMIT};
pub use api::tls_config::{AuthMethod, ChannelBinding, PemSource, RootCerts, SslNegotiation};
pub use api::transaction::{Transaction, TransactionBuilder};
pub use protocol::copy_format::CsvField;
pub use protocol::sql::IsolationLevel;
pub use transport::AsyncTransport;

/// Connection pooling (feature `pool`): connections lent exclusively or
/// shared, opened and retired by the pool's own tasks.
#[cfg(feature = "pool")]
pub mod pool {
    pub use crate::api::pool::{Pool, PoolConfig, PoolStatus, PooledConnection, SharedConnection};
}

/// postgres-types, re-exported: `ToSql`, `FromSql`, `Type` and friends, so
/// every existing implementation works here.
pub mod types {
    pub use postgres_types::*;
}
pub use postgres_types::{FromSql, ToSql, Type};

/// Our decoders, exposed for the fuzz targets only. Not a stable API.
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::protocol::framing::{parse_frame, FrameReader};
    pub use crate::protocol::values::check_declared_counts;
}
