//! `GenericClient`: the query methods a `Connection`, a `Transaction` and
//! a pooled connection share, so code can take any of them.

use std::future::Future;

use postgres_types::ToSql;

use crate::{
    Connection, CursorStream, PgError, QueryResult, Row, RowStream, Statement, ToStatement,
    Transaction,
};

/// The query methods of [`Connection`] and [`Transaction`] (and of the
/// pool's guards, which deref to a `Connection`), for code that should run
/// either on its own or inside a caller's transaction.
///
/// Each method does what the inherent method of the same name does; the
/// futures are `Send`. `transaction` begins a transaction on a connection
/// and a savepoint inside a transaction.
///
/// ```no_run
/// use wasi_pg_client::{GenericClient, PgError};
///
/// async fn add_user(db: &impl GenericClient, name: &str) -> Result<u64, PgError> {
///     db.execute("INSERT INTO users (name) VALUES ($1)", &[&name]).await
/// }
/// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), PgError> {
/// add_user(conn, "ada").await?;
/// let txn = conn.transaction().await?;
/// add_user(&txn, "grace").await?;
/// txn.commit().await
/// # }
/// ```
pub trait GenericClient: Send + Sync {
    /// See [`Connection::query`].
    fn query(&self, sql: &str) -> impl Future<Output = Result<QueryResult, PgError>> + Send;

    /// See [`Connection::simple_query`].
    fn simple_query(&self, sql: &str) -> impl Future<Output = Result<QueryResult, PgError>> + Send;

    /// See [`Connection::prepare`].
    fn prepare(&self, sql: &str) -> impl Future<Output = Result<Statement, PgError>> + Send;

    /// See [`Connection::query_params`].
    fn query_params<S: ToStatement + Sync + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<QueryResult, PgError>> + Send;

    /// See [`Connection::execute_params`].
    fn execute_params<S: ToStatement + Sync + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<QueryResult, PgError>> + Send;

    /// See [`Connection::execute`].
    fn execute<S: ToStatement + Sync + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<u64, PgError>> + Send;

    /// See [`Connection::query_one`].
    fn query_one<S: ToStatement + Sync + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Row, PgError>> + Send;

    /// See [`Connection::query_opt`].
    fn query_opt<S: ToStatement + Sync + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Option<Row>, PgError>> + Send;

    /// See [`Connection::query_stream`].
    fn query_stream(&self, sql: &str) -> impl Future<Output = Result<RowStream, PgError>> + Send;

    /// See [`Connection::query_params_stream`].
    fn query_params_stream<S: ToStatement + Sync + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<RowStream, PgError>> + Send;

    /// See [`Connection::query_cursor_stream`].
    fn query_cursor_stream<S: ToStatement + Sync + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
        fetch_size: usize,
    ) -> impl Future<Output = Result<CursorStream, PgError>> + Send;

    /// A transaction on a connection; a savepoint inside a transaction.
    fn transaction(&self) -> impl Future<Output = Result<Transaction, PgError>> + Send;
}

/// Implements the trait by forwarding to the inherent methods of `$target`
/// (which take precedence over trait methods of the same name); a guard
/// that derefs to a `Connection` forwards to the connection's.
macro_rules! forward_generic_client {
    ($type:ty) => {
        forward_generic_client!($type => $type);
    };
    ($type:ty => $target:ty) => {
        impl GenericClient for $type {
            fn query(
                &self,
                sql: &str,
            ) -> impl Future<Output = Result<QueryResult, PgError>> + Send {
                <$target>::query(self, sql)
            }

            fn simple_query(
                &self,
                sql: &str,
            ) -> impl Future<Output = Result<QueryResult, PgError>> + Send {
                <$target>::simple_query(self, sql)
            }

            fn prepare(
                &self,
                sql: &str,
            ) -> impl Future<Output = Result<Statement, PgError>> + Send {
                <$target>::prepare(self, sql)
            }

            fn query_params<S: ToStatement + Sync + ?Sized>(
                &self,
                statement: &S,
                params: &[&(dyn ToSql + Sync)],
            ) -> impl Future<Output = Result<QueryResult, PgError>> + Send {
                <$target>::query_params(self, statement, params)
            }

            fn execute_params<S: ToStatement + Sync + ?Sized>(
                &self,
                statement: &S,
                params: &[&(dyn ToSql + Sync)],
            ) -> impl Future<Output = Result<QueryResult, PgError>> + Send {
                <$target>::execute_params(self, statement, params)
            }

            fn execute<S: ToStatement + Sync + ?Sized>(
                &self,
                statement: &S,
                params: &[&(dyn ToSql + Sync)],
            ) -> impl Future<Output = Result<u64, PgError>> + Send {
                <$target>::execute(self, statement, params)
            }

            fn query_one<S: ToStatement + Sync + ?Sized>(
                &self,
                statement: &S,
                params: &[&(dyn ToSql + Sync)],
            ) -> impl Future<Output = Result<Row, PgError>> + Send {
                <$target>::query_one(self, statement, params)
            }

            fn query_opt<S: ToStatement + Sync + ?Sized>(
                &self,
                statement: &S,
                params: &[&(dyn ToSql + Sync)],
            ) -> impl Future<Output = Result<Option<Row>, PgError>> + Send {
                <$target>::query_opt(self, statement, params)
            }

            fn query_stream(
                &self,
                sql: &str,
            ) -> impl Future<Output = Result<RowStream, PgError>> + Send {
                <$target>::query_stream(self, sql)
            }

            fn query_params_stream<S: ToStatement + Sync + ?Sized>(
                &self,
                statement: &S,
                params: &[&(dyn ToSql + Sync)],
            ) -> impl Future<Output = Result<RowStream, PgError>> + Send {
                <$target>::query_params_stream(self, statement, params)
            }

            fn query_cursor_stream<S: ToStatement + Sync + ?Sized>(
                &self,
                statement: &S,
                params: &[&(dyn ToSql + Sync)],
                fetch_size: usize,
            ) -> impl Future<Output = Result<CursorStream, PgError>> + Send {
                <$target>::query_cursor_stream(self, statement, params, fetch_size)
            }

            fn transaction(&self) -> impl Future<Output = Result<Transaction, PgError>> + Send {
                <$target>::transaction(self)
            }
        }
    };
}

forward_generic_client!(Connection);
forward_generic_client!(Transaction);
#[cfg(feature = "pool")]
forward_generic_client!(crate::pool::PooledConnection => Connection);
#[cfg(feature = "pool")]
forward_generic_client!(crate::pool::SharedConnection => Connection);
