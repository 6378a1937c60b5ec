//! One benchmark cell per process: a client, a runtime flavour and a
//! workload, chosen by arguments. Prints one machine-readable line:
//!
//! ```text
//! RESULT client=ours runtime=current workload=latency n=20000 in_flight=1 secs=0.41 ops_per_sec=48500 cpu_secs=0.1520
//! ```
//!
//! `cpu_secs` is the CPU time (user + system, every thread) this process
//! spent over the same timed section as `secs`; it is left out where there
//! is no process CPU clock (wasm32).
//!
//! Usage: `wasi-pg-client-bench --client ours|ours-nocache|floor|tokio-postgres
//!         --runtime current|multi --workload WORKLOAD [--n N] [--in-flight K]`,
//! server from the `BENCH_URL` environment variable (a `postgresql://` URI).
//! Built for wasm32-wasip2 only our client (and floor) exists and the
//! runtime is wstd's. `ours-nocache` is our client with
//! `statement_cache_size(0)`. `floor` is no client library at all (latency
//! and the concurrent workloads; floor.rs): the most any client could do here.
//! `scripts/bench.sh` runs every cell and tabulates the results.
//!
//! Workloads, every answer checked; ops are the N counted:
//! - latency: N sequential `SELECT $1::int4`.
//! - pipeline: N `SELECT $1::int4` with up to K in flight on one connection.
//! - pipeline_batch: N `SELECT $1::int4`, each client's best batching. Ours:
//!   explicit atomic pipelines of K statements (one Sync each). tokio-postgres
//!   has no explicit pipeline, so as in `pipeline`: up to K futures in flight.
//! - fetch_many: one query streaming N rows `(g int4, md5(g::text) text)`,
//!   both columns read from every row; ops are rows.
//! - transaction: N sequential transactions, each BEGIN, one `SELECT
//!   $1::int4` (checked) and COMMIT. Ours: `transaction()`, `query_one`,
//!   `commit()`. tokio-postgres: `BEGIN` and `COMMIT` by `batch_execute`
//!   (what its `Transaction` sends) around the prepared echo.
//! - insert_batch: N sequential single-row parameterized INSERTs into a
//!   fresh temporary table, then `count(*)` checked.
//! - insert_pipeline: the same N INSERTs (and check), pipelined without COPY.
//!   Ours: one atomic pipeline of all N. tokio-postgres: up to K `execute`
//!   futures of the prepared INSERT in flight on one connection.
//! - copy_in_binary: N rows `(id int4, name text)`, name `row name {id}`,
//!   into a fresh temporary table with `COPY … FROM STDIN (FORMAT binary)`
//!   through each client's binary COPY writer; the rows copied and
//!   `count(*)` checked; ops are rows.
//! - copy_in_csv: the same rows with `COPY … FROM STDIN (FORMAT csv)`. Ours:
//!   `CsvCopyInWriter` (which checks every field for quoting). tokio-postgres
//!   has no CSV writer: the CSV is formatted here (the names need no quoting)
//!   into ~64 KiB `Bytes` chunks sent to its `CopyInSink`.
//! - copy_out: N such rows, put in a temporary table (and indexed) before
//!   the timed run, read back with `COPY (SELECT … ORDER BY id) TO STDOUT
//!   (FORMAT binary)` through each client's binary COPY reader, every id
//!   and name checked; ops are rows.
//! - notify_1, notify_100: N notifications (payload = the number) on one
//!   channel, sent by the same connection in batches of K with `pg_notify`
//!   (one statement per batch), each delivered to 1 or 100 subscribers on
//!   that connection, every payload checked in order; ops are notifications
//!   sent. Ours only: tokio-postgres has no subscribers (its connection
//!   yields notifications to one consumer).
//! - cache: N sequential executions cycling through 20 distinct statements
//!   `SELECT $1::int4 + k`, by SQL text. Ours uses its statement cache;
//!   tokio-postgres has none, so `query_one(text)` prepares every time.
//! - concurrent: N `SELECT $1::int4` by 8 tasks (N/8 each, spawned on the
//!   runtime) through a pool of 4 connections; every operation takes a
//!   connection, runs the query, checks the answer and gives the connection
//!   back. Ours: `Pool::acquire` and `release` (exclusive), the query by SQL
//!   text through each connection's statement cache. tokio-postgres:
//!   deadpool-postgres (default recycling, `Fast`), `get`, the statement
//!   from its `prepare_cached`, then the object dropped.
//! - concurrent_shared: the same, ours with `Pool::get_shared` (requests of
//!   the tasks sharing a connection pipelined on it), the SharedConnection
//!   dropped after each query; tokio-postgres as in concurrent.

mod floor;

use std::error::Error;
use std::future::Future;
use std::ops::Range;
use std::time::Instant;

#[cfg(not(target_arch = "wasm32"))]
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, StreamExt, TryStreamExt};
#[cfg(not(target_arch = "wasm32"))]
use futures_util::SinkExt;
use wasi_pg_client::types::Type;
use wasi_pg_client::PipelineMode;

type BoxError = Box<dyn Error>;
/// What a spawned task fails with (tokio's tasks must be `Send`).
type TaskError = Box<dyn Error + Send + Sync>;

const ECHO_SQL: &str = "SELECT $1::int4";
const CREATE_SQL: &str = "CREATE TEMP TABLE bench_insert (id int4, name text)";
const INSERT_SQL: &str = "INSERT INTO bench_insert (id, name) VALUES ($1, $2)";
const CREATE_COPY_SQL: &str = "CREATE TEMP TABLE bench_copy (id int4, name text)";
const COPY_IN_BINARY_SQL: &str = "COPY bench_copy (id, name) FROM STDIN (FORMAT binary)";
const COPY_IN_CSV_SQL: &str = "COPY bench_copy (id, name) FROM STDIN (FORMAT csv)";
/// The `name` of row `id` in `bench_copy` is this followed by `id`.
const COPY_NAME_PREFIX: &str = "row name ";
/// CSV gathered before tokio-postgres's copy_in_csv sends it.
#[cfg(not(target_arch = "wasm32"))]
const CSV_CHUNK: usize = 64 * 1024;
/// The `name` of every inserted row.
const INSERT_NAME: &str = "bench row name";
/// The notify workloads' channel, and their batch of notifications.
const NOTIFY_CHANNEL: &str = "bench_notify";
const NOTIFY_SQL: &str =
    "SELECT count(pg_notify($1, g::text)) FROM generate_series($2::int4, $3::int4) g";
/// Distinct statements of the cache workload.
const CACHE_STATEMENTS: i32 = 20;
/// The concurrent workloads: tasks, and connections in their pool.
const TASKS: usize = 8;
const POOL_SIZE: usize = 4;
/// Untimed operations first, so connection setup, statement preparation and
/// allocator growth stay out of the measurement.
const WARM_UP: i32 = 200;

/// What the timed section took.
#[derive(Clone, Copy)]
struct Timing {
    secs: f64,
    /// This process's CPU seconds over the same section, where known: with
    /// the server on the same CPU, what is left of `secs` is the server's
    /// (and the kernel's) share, which no client can win back.
    cpu_secs: Option<f64>,
}

/// Started at the beginning of a timed section; `stop` at its end.
struct Stopwatch {
    wall: Instant,
    cpu: Option<f64>,
}

impl Stopwatch {
    fn start() -> Self {
        // The CPU clock is read outside the wall-clock window, so its
        // system calls do not lengthen `secs`.
        let cpu = process_cpu_secs();
        Stopwatch {
            wall: Instant::now(),
            cpu,
        }
    }

    fn stop(self) -> Timing {
        let secs = self.wall.elapsed().as_secs_f64();
        let cpu_secs = process_cpu_secs()
            .zip(self.cpu)
            .map(|(end, start)| end - start);
        Timing { secs, cpu_secs }
    }
}

/// CPU seconds this process has used so far, all threads, user + system.
#[cfg(not(target_arch = "wasm32"))]
fn process_cpu_secs() -> Option<f64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the whole call, and
    // CLOCK_PROCESS_CPUTIME_ID is a clock id the platform defines.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    (rc == 0).then_some(now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9)
}

/// WASI has no clock of the process's CPU time.
#[cfg(target_arch = "wasm32")]
fn process_cpu_secs() -> Option<f64> {
    None
}

#[derive(Clone, Copy)]
enum Client {
    Ours,
    OursNoCache,
    /// No client library: the floor of the round-trip workloads (floor.rs).
    Floor,
    #[cfg(not(target_arch = "wasm32"))]
    TokioPostgres,
}

#[derive(Clone, Copy)]
enum Runtime {
    #[cfg(not(target_arch = "wasm32"))]
    Current,
    #[cfg(not(target_arch = "wasm32"))]
    Multi,
    #[cfg(target_arch = "wasm32")]
    Wstd,
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Latency,
    Pipeline,
    PipelineBatch,
    FetchMany,
    Transaction,
    InsertBatch,
    InsertPipeline,
    CopyInBinary,
    CopyInCsv,
    CopyOut,
    Notify1,
    Notify100,
    Cache,
    Concurrent,
    ConcurrentShared,
}

const WORKLOADS: [Workload; 15] = [
    Workload::Latency,
    Workload::Pipeline,
    Workload::PipelineBatch,
    Workload::FetchMany,
    Workload::Transaction,
    Workload::InsertBatch,
    Workload::InsertPipeline,
    Workload::CopyInBinary,
    Workload::CopyInCsv,
    Workload::CopyOut,
    Workload::Notify1,
    Workload::Notify100,
    Workload::Cache,
    Workload::Concurrent,
    Workload::ConcurrentShared,
];

struct Args {
    client: Client,
    runtime: Runtime,
    workload: Workload,
    n: i32,
    in_flight: usize,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Ours => "ours",
            Client::OursNoCache => "ours-nocache",
            Client::Floor => "floor",
            #[cfg(not(target_arch = "wasm32"))]
            Client::TokioPostgres => "tokio-postgres",
        }
    }
}

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Runtime::Current => "current",
            #[cfg(not(target_arch = "wasm32"))]
            Runtime::Multi => "multi",
            #[cfg(target_arch = "wasm32")]
            Runtime::Wstd => "wstd",
        }
    }
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Latency => "latency",
            Workload::Pipeline => "pipeline",
            Workload::PipelineBatch => "pipeline_batch",
            Workload::FetchMany => "fetch_many",
            Workload::Transaction => "transaction",
            Workload::InsertBatch => "insert_batch",
            Workload::InsertPipeline => "insert_pipeline",
            Workload::CopyInBinary => "copy_in_binary",
            Workload::CopyInCsv => "copy_in_csv",
            Workload::CopyOut => "copy_out",
            Workload::Notify1 => "notify_1",
            Workload::Notify100 => "notify_100",
            Workload::Cache => "cache",
            Workload::Concurrent => "concurrent",
            Workload::ConcurrentShared => "concurrent_shared",
        }
    }

    fn default_n(self) -> i32 {
        match self {
            Workload::Latency => 20_000,
            Workload::Pipeline => 100_000,
            Workload::PipelineBatch => 100_000,
            Workload::FetchMany => 1_000_000,
            Workload::Transaction => 10_000,
            Workload::InsertBatch => 10_000,
            Workload::InsertPipeline => 10_000,
            Workload::CopyInBinary => 1_000_000,
            Workload::CopyInCsv => 1_000_000,
            Workload::CopyOut => 1_000_000,
            Workload::Notify1 => 100_000,
            Workload::Notify100 => 100_000,
            Workload::Cache => 20_000,
            Workload::Concurrent | Workload::ConcurrentShared => 50_000,
        }
    }

    /// The fresh temporary table it uses, if any: created first (copy_out's
    /// filled then too), its `count(*)` checked after the timed run.
    fn table(self) -> Option<&'static str> {
        match self {
            Workload::InsertBatch | Workload::InsertPipeline => Some("bench_insert"),
            Workload::CopyInBinary | Workload::CopyInCsv | Workload::CopyOut => Some("bench_copy"),
            _ => None,
        }
    }

    /// Whether the floor client (no client library) runs it.
    fn has_floor(self) -> bool {
        matches!(
            self,
            Workload::Latency | Workload::Concurrent | Workload::ConcurrentShared
        )
    }

    /// Whether it runs on a pool of connections rather than on one.
    fn pooled(self) -> bool {
        matches!(self, Workload::Concurrent | Workload::ConcurrentShared)
    }

    /// Whether it fills its table, so the warm-up's rows are deleted.
    fn fills_table(self) -> bool {
        self.table().is_some() && self != Workload::CopyOut
    }
}

fn parse_args() -> Result<Args, BoxError> {
    let (mut client, mut runtime, mut workload, mut n, mut in_flight) =
        (None, None, None, None, 1000);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match (flag.as_str(), value.as_str()) {
            ("--client", "ours") => client = Some(Client::Ours),
            ("--client", "ours-nocache") => client = Some(Client::OursNoCache),
            ("--client", "floor") => client = Some(Client::Floor),
            #[cfg(not(target_arch = "wasm32"))]
            ("--client", "tokio-postgres") => client = Some(Client::TokioPostgres),
            #[cfg(not(target_arch = "wasm32"))]
            ("--runtime", "current") => runtime = Some(Runtime::Current),
            #[cfg(not(target_arch = "wasm32"))]
            ("--runtime", "multi") => runtime = Some(Runtime::Multi),
            #[cfg(target_arch = "wasm32")]
            ("--runtime", "wstd") => runtime = Some(Runtime::Wstd),
            ("--workload", w) => {
                workload = Some(
                    WORKLOADS
                        .into_iter()
                        .find(|k| k.name() == w)
                        .ok_or_else(|| format!("unknown workload {w}"))?,
                )
            }
            ("--n", v) => n = Some(v.parse::<i32>()?),
            ("--in-flight", v) => in_flight = v.parse::<usize>()?,
            (flag, value) => return Err(format!("unsupported argument {flag} {value}").into()),
        }
    }
    #[cfg(target_arch = "wasm32")]
    let runtime = runtime.or(Some(Runtime::Wstd));
    let workload = workload.ok_or("--workload is required")?;
    let n = n.unwrap_or(workload.default_n());
    if n < 1 {
        return Err("--n must be at least 1".into());
    }
    let client = client.ok_or("--client is required")?;
    if let (Client::Floor, false) = (client, workload.has_floor()) {
        return Err("the floor client runs latency, concurrent and concurrent_shared only".into());
    }
    Ok(Args {
        client,
        runtime: runtime.ok_or("--runtime current|multi is required")?,
        workload,
        n,
        in_flight: in_flight.max(1),
    })
}

/// What every workload is made of, for each client.
trait Db {
    /// `SELECT $1::int4` with `i`; the client's fastest way to repeat it.
    async fn echo(&self, i: i32) -> Result<i32, BoxError>;
    /// `SELECT $1::int4` for every value, each answer checked; the client's
    /// fastest way to send many, `batch` at a time.
    async fn echo_batch(&self, values: Range<i32>, batch: usize) -> Result<(), BoxError>;
    /// Notifies every value on one channel, `batch` per statement, and
    /// checks that each of `subscribers` receives all of them in order.
    async fn notify_fanout(
        &self,
        subscribers: usize,
        values: Range<i32>,
        batch: usize,
    ) -> Result<(), BoxError>;
    /// `sql` (one int4 parameter, one int4 row) by SQL text.
    async fn query_text(&self, sql: &str, i: i32) -> Result<i32, BoxError>;
    /// BEGIN, `SELECT $1::int4` with `i`, COMMIT.
    async fn echo_in_transaction(&self, i: i32) -> Result<i32, BoxError>;
    /// Runs `sql` (no parameters, no rows wanted).
    async fn batch(&self, sql: &str) -> Result<(), BoxError>;
    /// Creates `bench_insert` (`CREATE_SQL`) and readies `insert`.
    async fn create_insert_table(&mut self) -> Result<(), BoxError>;
    /// `INSERT_SQL` with one row; returns the rows affected.
    async fn insert(&self, id: i32, name: &str) -> Result<u64, BoxError>;
    /// `INSERT_SQL` once per id, each inserting one row (checked); the
    /// client's fastest way without COPY, up to `in_flight` at a time where
    /// it has no better way.
    async fn insert_many(
        &self,
        ids: Range<i32>,
        name: &str,
        in_flight: usize,
    ) -> Result<(), BoxError>;
    /// `sql` returning one int8.
    async fn scalar_i64(&self, sql: &str) -> Result<i64, BoxError>;
    /// Streams the rows of `sql` (int4, text) through `each`.
    async fn fetch<F>(&self, sql: &str, each: F) -> Result<(), BoxError>
    where
        F: FnMut(i32, &str) -> Result<(), BoxError>;
    /// `COPY_IN_BINARY_SQL` with a row `(id, row_name(id))` per id, through
    /// the client's binary COPY writer; returns the rows copied.
    async fn copy_in_binary(&self, ids: Range<i32>) -> Result<u64, BoxError>;
    /// `COPY_IN_CSV_SQL` with the same rows as CSV; returns the rows copied.
    async fn copy_in_csv(&self, ids: Range<i32>) -> Result<u64, BoxError>;
    /// Streams the rows of `sql`, a binary `COPY … TO STDOUT` of (int4,
    /// text), through the client's binary COPY reader and `each`.
    async fn copy_out<F>(&self, sql: &str, each: F) -> Result<(), BoxError>
    where
        F: FnMut(i32, &str) -> Result<(), BoxError>;
}

struct Ours(wasi_pg_client::Connection);

impl Db for Ours {
    async fn echo(&self, i: i32) -> Result<i32, BoxError> {
        // By SQL text on purpose: the connection's statement cache is part of
        // what is measured.
        self.query_text(ECHO_SQL, i).await
    }

    async fn echo_in_transaction(&self, i: i32) -> Result<i32, BoxError> {
        let txn = self.0.transaction().await?;
        let got = txn.query_one(ECHO_SQL, &[&i]).await?.get(0)?;
        txn.commit().await?;
        Ok(got)
    }

    async fn notify_fanout(
        &self,
        subscribers: usize,
        values: Range<i32>,
        batch: usize,
    ) -> Result<(), BoxError> {
        let mut subscriptions = Vec::with_capacity(subscribers);
        for _ in 0..subscribers {
            subscriptions.push(self.0.subscribe(NOTIFY_CHANNEL).await?);
        }
        // A batch at a time, received by all before the next is sent: each
        // subscriber's queue (1024) never overflows.
        for chunk in chunks(values, batch) {
            let (first, last) = (chunk.start, chunk.end - 1);
            let params: [&(dyn wasi_pg_client::ToSql + Sync); 3] = [&NOTIFY_CHANNEL, &first, &last];
            let send = self.0.query_params(NOTIFY_SQL, &params);
            let receive =
                futures_util::future::try_join_all(subscriptions.iter_mut().map(|subscription| {
                    let chunk = chunk.clone();
                    async move {
                        for i in chunk {
                            let n = subscription.next().await?.ok_or("subscription ended")?;
                            check("payload", i.to_string(), n.payload)?;
                        }
                        Ok::<(), BoxError>(())
                    }
                }));
            let (sent, received) = futures_util::future::join(send, receive).await;
            sent?;
            received?;
        }
        Ok(())
    }

    async fn echo_batch(&self, values: Range<i32>, batch: usize) -> Result<(), BoxError> {
        // Waits for each batch before sending the next: one pipeline is one
        // request, and its answers are checked together.
        for chunk in chunks(values, batch) {
            let mut pipeline = self.0.pipeline().mode(PipelineMode::Atomic);
            for i in chunk.clone() {
                pipeline.push(ECHO_SQL, &[&i]).await?;
            }
            let results = pipeline.run().await?;
            check("results", chunk.len(), results.len())?;
            for (i, result) in chunk.zip(results) {
                let result = result?;
                check("rows", 1, result.rows().len())?;
                let row = result.rows().first().ok_or("echo returned no row")?;
                check("echo", i, row.get::<_, i32>(0)?)?;
            }
        }
        Ok(())
    }

    async fn query_text(&self, sql: &str, i: i32) -> Result<i32, BoxError> {
        Ok(self.0.query_one(sql, &[&i]).await?.get(0)?)
    }

    async fn batch(&self, sql: &str) -> Result<(), BoxError> {
        self.0.simple_query(sql).await?;
        Ok(())
    }

    async fn create_insert_table(&mut self) -> Result<(), BoxError> {
        self.batch(CREATE_SQL).await
    }

    async fn insert(&self, id: i32, name: &str) -> Result<u64, BoxError> {
        Ok(self.0.execute(INSERT_SQL, &[&id, &name]).await?)
    }

    async fn insert_many(
        &self,
        ids: Range<i32>,
        name: &str,
        _in_flight: usize,
    ) -> Result<(), BoxError> {
        // All of them in one request and one transaction: no limit needed,
        // the server answers as it reads.
        let mut pipeline = self.0.pipeline().mode(PipelineMode::Atomic);
        for id in ids.clone() {
            pipeline.push(INSERT_SQL, &[&id, &name]).await?;
        }
        let results = pipeline.run().await?;
        check("results", ids.len(), results.len())?;
        for result in results {
            let inserted = result?
                .rows_affected()
                .ok_or("INSERT reported no row count")?;
            check("rows inserted", 1, inserted)?;
        }
        Ok(())
    }

    async fn scalar_i64(&self, sql: &str) -> Result<i64, BoxError> {
        Ok(self.0.query_one(sql, &[]).await?.get(0)?)
    }

    async fn fetch<F>(&self, sql: &str, mut each: F) -> Result<(), BoxError>
    where
        F: FnMut(i32, &str) -> Result<(), BoxError>,
    {
        let mut rows = self.0.query_stream(sql).await?;
        while let Some(row) = rows.next().await? {
            each(row.get(0)?, row.get(1)?)?;
        }
        Ok(())
    }

    async fn copy_in_binary(&self, ids: Range<i32>) -> Result<u64, BoxError> {
        let copy = self.0.copy_in(COPY_IN_BINARY_SQL).await?;
        let mut writer = wasi_pg_client::BinaryCopyInWriter::new(copy, &[Type::INT4, Type::TEXT]);
        let mut buf = String::new();
        for id in ids {
            let name = row_name(&mut buf, id);
            writer.write(&[&id, &name]).await?;
        }
        Ok(writer.finish().await?)
    }

    async fn copy_in_csv(&self, ids: Range<i32>) -> Result<u64, BoxError> {
        let copy = self.0.copy_in(COPY_IN_CSV_SQL).await?;
        let mut writer = wasi_pg_client::CsvCopyInWriter::new(copy);
        let (mut id_text, mut buf) = (itoa::Buffer::new(), String::new());
        for id in ids {
            writer
                .write(&[id_text.format(id), row_name(&mut buf, id)])
                .await?;
        }
        Ok(writer.finish().await?)
    }

    async fn copy_out<F>(&self, sql: &str, mut each: F) -> Result<(), BoxError>
    where
        F: FnMut(i32, &str) -> Result<(), BoxError>,
    {
        let out = self.0.copy_out(sql).await?;
        let mut reader = wasi_pg_client::BinaryCopyOutReader::new(out, &[Type::INT4, Type::TEXT]);
        while let Some(row) = reader.next().await? {
            each(row.get::<_, i32>(0)?, row.get::<_, &str>(1)?)?;
        }
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
struct TokioPg {
    client: tokio_postgres::Client,
    echo: tokio_postgres::Statement,
    /// Prepared once `bench_insert` exists.
    insert: Option<tokio_postgres::Statement>,
}

#[cfg(not(target_arch = "wasm32"))]
impl Db for TokioPg {
    async fn echo(&self, i: i32) -> Result<i32, BoxError> {
        let row = self.client.query_one(&self.echo, &[&i]).await?;
        Ok(row.try_get(0)?)
    }

    async fn echo_in_transaction(&self, i: i32) -> Result<i32, BoxError> {
        // `Client::transaction` needs `&mut`; these are the statements its
        // `Transaction` sends.
        self.client.batch_execute("BEGIN").await?;
        let got = self.echo(i).await?;
        self.client.batch_execute("COMMIT").await?;
        Ok(got)
    }

    async fn notify_fanout(
        &self,
        _subscribers: usize,
        _values: Range<i32>,
        _batch: usize,
    ) -> Result<(), BoxError> {
        Err("tokio-postgres has no notification subscribers".into())
    }

    async fn echo_batch(&self, values: Range<i32>, batch: usize) -> Result<(), BoxError> {
        // No explicit pipeline in tokio-postgres: its best is the pipeline
        // workload's, a steady `batch` futures in flight.
        concurrently(values, batch, |i| async move {
            check("echo", i, self.echo(i).await?)
        })
        .await
    }

    async fn query_text(&self, sql: &str, i: i32) -> Result<i32, BoxError> {
        // tokio-postgres has no statement cache: this prepares, binds and
        // closes a named statement every time.
        Ok(self.client.query_one(sql, &[&i]).await?.try_get(0)?)
    }

    async fn batch(&self, sql: &str) -> Result<(), BoxError> {
        Ok(self.client.batch_execute(sql).await?)
    }

    async fn create_insert_table(&mut self) -> Result<(), BoxError> {
        self.batch(CREATE_SQL).await?;
        self.insert = Some(self.client.prepare(INSERT_SQL).await?);
        Ok(())
    }

    async fn insert(&self, id: i32, name: &str) -> Result<u64, BoxError> {
        let statement = self.insert.as_ref().ok_or("bench_insert not created")?;
        Ok(self.client.execute(statement, &[&id, &name]).await?)
    }

    async fn insert_many(
        &self,
        ids: Range<i32>,
        name: &str,
        in_flight: usize,
    ) -> Result<(), BoxError> {
        // Concurrent `execute`s of the prepared INSERT are pipelined onto the
        // connection's socket, each with its own Sync.
        concurrently(ids, in_flight, |id| async move {
            check("rows inserted", 1, self.insert(id, name).await?)
        })
        .await
    }

    async fn scalar_i64(&self, sql: &str) -> Result<i64, BoxError> {
        Ok(self.client.query_one(sql, &[]).await?.try_get(0)?)
    }

    async fn fetch<F>(&self, sql: &str, mut each: F) -> Result<(), BoxError>
    where
        F: FnMut(i32, &str) -> Result<(), BoxError>,
    {
        let rows = self
            .client
            .query_raw(sql, std::iter::empty::<i32>())
            .await?;
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = rows.try_next().await? {
            each(row.try_get(0)?, row.try_get(1)?)?;
        }
        Ok(())
    }

    async fn copy_in_binary(&self, ids: Range<i32>) -> Result<u64, BoxError> {
        use tokio_postgres::{binary_copy::BinaryCopyInWriter, types::Type};
        let sink = self.client.copy_in(COPY_IN_BINARY_SQL).await?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::INT4, Type::TEXT]);
        let mut writer = std::pin::pin!(writer);
        let mut buf = String::new();
        for id in ids {
            let name = row_name(&mut buf, id);
            writer.as_mut().write(&[&id, &name]).await?;
        }
        Ok(writer.finish().await?)
    }

    async fn copy_in_csv(&self, ids: Range<i32>) -> Result<u64, BoxError> {
        let sink: tokio_postgres::CopyInSink<Bytes> = self.client.copy_in(COPY_IN_CSV_SQL).await?;
        let mut sink = std::pin::pin!(sink);
        let mut chunk = BytesMut::with_capacity(CSV_CHUNK + 1024);
        let (mut id_text, mut buf) = (itoa::Buffer::new(), String::new());
        for id in ids {
            // Neither field has a comma, quote or line break to quote.
            chunk.extend_from_slice(id_text.format(id).as_bytes());
            chunk.extend_from_slice(b",");
            chunk.extend_from_slice(row_name(&mut buf, id).as_bytes());
            chunk.extend_from_slice(b"\n");
            if chunk.len() >= CSV_CHUNK {
                sink.send(chunk.split().freeze()).await?;
            }
        }
        if !chunk.is_empty() {
            sink.send(chunk.split().freeze()).await?;
        }
        Ok(sink.as_mut().finish().await?)
    }

    async fn copy_out<F>(&self, sql: &str, mut each: F) -> Result<(), BoxError>
    where
        F: FnMut(i32, &str) -> Result<(), BoxError>,
    {
        use tokio_postgres::{binary_copy::BinaryCopyOutStream, types::Type};
        let out = self.client.copy_out(sql).await?;
        let rows = BinaryCopyOutStream::new(out, &[Type::INT4, Type::TEXT]);
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = rows.try_next().await? {
            each(row.try_get::<i32>(0)?, row.try_get::<&str>(1)?)?;
        }
        Ok(())
    }
}

fn check<T: PartialEq + std::fmt::Display>(what: &str, want: T, got: T) -> Result<(), BoxError> {
    if want == got {
        Ok(())
    } else {
        Err(format!("{what}: expected {want}, got {got}").into())
    }
}

/// `values` cut into consecutive ranges of at most `size` (at least 1).
fn chunks(values: Range<i32>, size: usize) -> impl Iterator<Item = Range<i32>> {
    let size = size.max(1);
    let step = i32::try_from(size).unwrap_or(i32::MAX);
    let end = values.end;
    values
        .step_by(size)
        .map(move |start| start..end.min(start.saturating_add(step)))
}

/// Runs `op` on every value with up to `in_flight` futures at once. All of
/// them share one connection, and both clients pipeline the requests of
/// concurrent futures onto its socket.
async fn concurrently<F, Fut>(values: Range<i32>, in_flight: usize, op: F) -> Result<(), BoxError>
where
    F: FnMut(i32) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    stream::iter(values)
        .map(op)
        .buffer_unordered(in_flight)
        .try_for_each(|()| async { Ok(()) })
        .await
}

/// The `name` of row `id` in `bench_copy`, `row name {id}`, in `buf`.
fn row_name(buf: &mut String, id: i32) -> &str {
    buf.clear();
    buf.push_str(COPY_NAME_PREFIX);
    buf.push_str(itoa::Buffer::new().format(id));
    buf
}

fn cache_sql() -> Vec<String> {
    (0..CACHE_STATEMENTS)
        .map(|k| format!("SELECT $1::int4 + {k}"))
        .collect()
}

/// Runs `values.len()` operations of `workload` (rows, for fetch_many and
/// the COPY workloads).
async fn run_workload<D: Db>(db: &D, args: &Args, values: Range<i32>) -> Result<(), BoxError> {
    match args.workload {
        Workload::Latency => {
            for i in values {
                check("echo", i, db.echo(i).await?)?;
            }
        }
        Workload::Pipeline => {
            concurrently(values, args.in_flight, |i| async move {
                check("echo", i, db.echo(i).await?)
            })
            .await?;
        }
        Workload::PipelineBatch => db.echo_batch(values, args.in_flight).await?,
        Workload::Notify1 => db.notify_fanout(1, values, args.in_flight).await?,
        Workload::Notify100 => db.notify_fanout(100, values, args.in_flight).await?,
        Workload::FetchMany => {
            let n = values.len();
            let sql = format!("SELECT g, md5(g::text) FROM generate_series(1, {n}) g");
            let mut last = 0i32;
            db.fetch(&sql, |g, md5| {
                check("g", last + 1, g)?;
                check("md5 length", 32, md5.len())?;
                last = g;
                Ok(())
            })
            .await?;
            check("rows", i32::try_from(n)?, last)?;
        }
        Workload::Transaction => {
            for i in values {
                check("echo in a transaction", i, db.echo_in_transaction(i).await?)?;
            }
        }
        Workload::InsertBatch => {
            for i in values {
                check("rows inserted", 1, db.insert(i, INSERT_NAME).await?)?;
            }
        }
        Workload::InsertPipeline => db.insert_many(values, INSERT_NAME, args.in_flight).await?,
        Workload::CopyInBinary => {
            let n = u64::try_from(values.len())?;
            check("rows copied", n, db.copy_in_binary(values).await?)?;
        }
        Workload::CopyInCsv => {
            let n = u64::try_from(values.len())?;
            check("rows copied", n, db.copy_in_csv(values).await?)?;
        }
        Workload::CopyOut => {
            // bench_copy holds ids 1..=N (at least as many as asked for).
            let n = values.len();
            let sql = format!(
                "COPY (SELECT id, name FROM bench_copy ORDER BY id LIMIT {n}) \
                 TO STDOUT (FORMAT binary)"
            );
            let (mut last, mut want) = (0i32, String::new());
            db.copy_out(&sql, |id, name| {
                check("id", last + 1, id)?;
                check("name", row_name(&mut want, id), name)?;
                last = id;
                Ok(())
            })
            .await?;
            check("rows", i32::try_from(n)?, last)?;
        }
        Workload::Cache => {
            let sql = cache_sql();
            for i in values {
                let k = i % CACHE_STATEMENTS;
                check("sum", i + k, db.query_text(&sql[k as usize], i).await?)?;
            }
        }
        Workload::Concurrent | Workload::ConcurrentShared => {
            return Err(format!(
                "{} runs on a pool, not one connection",
                args.workload.name()
            )
            .into())
        }
    }
    Ok(())
}

/// The pool of a concurrent workload, cloned into every task.
#[derive(Clone)]
enum EchoPool {
    /// Ours, connections lent exclusively (`acquire`) or shared.
    Ours {
        pool: wasi_pg_client::pool::Pool,
        shared: bool,
    },
    #[cfg(not(target_arch = "wasm32"))]
    Deadpool(deadpool_postgres::Pool),
}

impl EchoPool {
    /// Takes a connection, runs `SELECT $1::int4` with `i`, checks the
    /// answer and gives the connection back.
    async fn echo(&self, i: i32) -> Result<(), TaskError> {
        let got: i32 = match self {
            EchoPool::Ours {
                pool,
                shared: false,
            } => {
                let conn = pool.acquire().await?;
                let got = conn.query_one(ECHO_SQL, &[&i]).await?.get(0)?;
                conn.release().await;
                got
            }
            EchoPool::Ours { pool, shared: true } => {
                let conn = pool.get_shared().await?;
                let got = conn.query_one(ECHO_SQL, &[&i]).await?.get(0)?;
                drop(conn);
                got
            }
            #[cfg(not(target_arch = "wasm32"))]
            EchoPool::Deadpool(pool) => {
                let client = pool.get().await?;
                let statement = client.prepare_cached(ECHO_SQL).await?;
                let got = client.query_one(&statement, &[&i]).await?.try_get(0)?;
                drop(client);
                got
            }
        };
        if got == i {
            Ok(())
        } else {
            Err(format!("echo: expected {i}, got {got}").into())
        }
    }

    /// Ours: prints the pool's connections (the sanity check that the
    /// tasks were spread over all of them).
    fn report(&self, client: Client) {
        match self {
            EchoPool::Ours { pool, .. } => {
                let status = pool.status();
                eprintln!(
                    "pool ({}, after the timed run): size={} idle={} in_use={} shared={} waiters={}",
                    client.name(),
                    status.size,
                    status.idle,
                    status.in_use,
                    status.shared,
                    status.waiters
                );
            }
            #[cfg(not(target_arch = "wasm32"))]
            EchoPool::Deadpool(_) => {}
        }
    }

    async fn close(self) {
        match self {
            EchoPool::Ours { pool, .. } => pool.close().await,
            #[cfg(not(target_arch = "wasm32"))]
            EchoPool::Deadpool(pool) => pool.close(),
        }
    }
}

/// Runs `values` through `pool.echo`, cut into `TASKS` consecutive shares,
/// each on its own spawned task; waits for all of them.
async fn echo_tasks(pool: &EchoPool, values: Range<i32>) -> Result<(), BoxError> {
    let share = values.len().div_ceil(TASKS);
    let tasks: Vec<_> = chunks(values, share)
        .map(|share| {
            let pool = pool.clone();
            spawn(async move {
                for i in share {
                    pool.echo(i).await?;
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    Ok(())
}

/// Spawns `task` on the runtime; awaiting the result waits for it to end.
#[cfg(not(target_arch = "wasm32"))]
fn spawn<F>(task: F) -> impl Future<Output = Result<(), BoxError>>
where
    F: Future<Output = Result<(), TaskError>> + Send + 'static,
{
    let handle = tokio::spawn(task);
    async move {
        let result: Result<(), TaskError> = handle.await?;
        result.map_err(|e| -> BoxError { e })
    }
}

/// Spawns `task` on the runtime; awaiting the result waits for it to end.
#[cfg(target_arch = "wasm32")]
fn spawn<F>(task: F) -> impl Future<Output = Result<(), BoxError>>
where
    F: Future<Output = Result<(), TaskError>> + 'static,
{
    let task = wstd::runtime::spawn(task);
    async move { task.await.map_err(|e| -> BoxError { e }) }
}

/// A concurrent workload: opens the pool, warms it up with the same tasks,
/// then returns what the timed run took.
async fn measure_pooled(args: &Args, url: &str) -> Result<Timing, BoxError> {
    let pool = match args.client {
        // No pool and no tasks: as many sockets, all busy at once.
        Client::Floor if args.workload == Workload::ConcurrentShared => {
            return floor::measure_shared(url, args.n, TASKS, POOL_SIZE).await
        }
        Client::Floor => return floor::measure_concurrent(url, args.n, POOL_SIZE).await,
        Client::Ours | Client::OursNoCache => {
            let mut config = wasi_pg_client::Config::from_uri(url)?;
            if let Client::OursNoCache = args.client {
                config = config.statement_cache_size(0);
            }
            let pool = wasi_pg_client::pool::Pool::new(
                wasi_pg_client::pool::PoolConfig::default()
                    .connection(config)
                    .max_size(POOL_SIZE),
            )
            .await?;
            EchoPool::Ours {
                pool,
                shared: args.workload == Workload::ConcurrentShared,
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        Client::TokioPostgres => {
            let manager = deadpool_postgres::Manager::new(url.parse()?, tokio_postgres::NoTls);
            EchoPool::Deadpool(
                deadpool_postgres::Pool::builder(manager)
                    .max_size(POOL_SIZE)
                    .build()?,
            )
        }
    };
    echo_tasks(&pool, 0..WARM_UP).await?;
    let stopwatch = Stopwatch::start();
    echo_tasks(&pool, 0..args.n).await?;
    let timing = stopwatch.stop();
    pool.report(args.client);
    pool.close().await;
    Ok(timing)
}

/// Sets up, warms up, then returns what the timed run took (and checks
/// what the timed run left behind).
async fn measure<D: Db>(db: &mut D, args: &Args) -> Result<Timing, BoxError> {
    let table = args.workload.table();
    match args.workload {
        Workload::InsertBatch | Workload::InsertPipeline => db.create_insert_table().await?,
        Workload::CopyInBinary | Workload::CopyInCsv | Workload::CopyOut => {
            db.batch(CREATE_COPY_SQL).await?
        }
        _ => {}
    }
    if args.workload == Workload::CopyOut {
        // In id order, indexed, so the ORDER BY costs the server no sort.
        db.batch(&format!(
            "INSERT INTO bench_copy SELECT g, '{COPY_NAME_PREFIX}' || g \
             FROM generate_series(1, {}) g; \
             CREATE INDEX ON bench_copy (id); ANALYZE bench_copy",
            args.n.max(WARM_UP)
        ))
        .await?;
    }
    run_workload(db, args, 0..WARM_UP).await?;
    if let (Some(table), true) = (table, args.workload.fills_table()) {
        db.batch(&format!("DELETE FROM {table}")).await?;
    }
    let stopwatch = Stopwatch::start();
    run_workload(db, args, 0..args.n).await?;
    let timing = stopwatch.stop();
    if let Some(table) = table {
        let rows = if args.workload.fills_table() {
            args.n
        } else {
            args.n.max(WARM_UP)
        };
        check(
            "count(*)",
            i64::from(rows),
            db.scalar_i64(&format!("SELECT count(*) FROM {table}"))
                .await?,
        )?;
    }
    Ok(timing)
}

async fn run(args: &Args, url: &str) -> Result<Timing, BoxError> {
    if args.workload.pooled() {
        return measure_pooled(args, url).await;
    }
    match args.client {
        Client::Floor => floor::measure(url, args.n).await,
        Client::Ours | Client::OursNoCache => {
            let mut config = wasi_pg_client::Config::from_uri(url)?;
            if let Client::OursNoCache = args.client {
                config = config.statement_cache_size(0);
            }
            let conn = wasi_pg_client::Connection::connect(&config).await?;
            let timing = measure(&mut Ours(conn.clone()), args).await?;
            if args.workload == Workload::Cache {
                let stats = conn.statement_cache_stats();
                eprintln!(
                    "statement cache ({}, warm-up included): hits={} misses={}",
                    args.client.name(),
                    stats.hits,
                    stats.misses
                );
            }
            conn.close().await?;
            Ok(timing)
        }
        #[cfg(not(target_arch = "wasm32"))]
        Client::TokioPostgres => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            let driver = tokio::spawn(connection);
            let echo = client.prepare(ECHO_SQL).await?;
            let mut db = TokioPg {
                client,
                echo,
                insert: None,
            };
            let timing = measure(&mut db, args).await?;
            // Dropping the client ends the connection task.
            drop(db);
            driver.await??;
            Ok(timing)
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn block_on<F: Future>(runtime: Runtime, fut: F) -> Result<F::Output, BoxError> {
    let mut builder = match runtime {
        Runtime::Current => tokio::runtime::Builder::new_current_thread(),
        Runtime::Multi => tokio::runtime::Builder::new_multi_thread(),
    };
    Ok(builder.enable_all().build()?.block_on(fut))
}

#[cfg(target_arch = "wasm32")]
fn block_on<F: Future>(_runtime: Runtime, fut: F) -> Result<F::Output, BoxError> {
    Ok(wstd::runtime::block_on(fut))
}

/// The most requests the workload had unanswered at once (for the report).
fn in_flight(args: &Args) -> usize {
    match (args.workload, args.client) {
        (
            Workload::Pipeline | Workload::PipelineBatch | Workload::Notify1 | Workload::Notify100,
            _,
        ) => args.in_flight,
        // Ours sends the whole run as one pipeline.
        (Workload::InsertPipeline, Client::Ours | Client::OursNoCache) => {
            usize::try_from(args.n).unwrap_or(usize::MAX)
        }
        #[cfg(not(target_arch = "wasm32"))]
        (Workload::InsertPipeline, Client::TokioPostgres) => args.in_flight,
        // Every task's request in flight, pipelined on the pool's connections
        // (the floor's sockets).
        (Workload::ConcurrentShared, Client::Ours | Client::OursNoCache | Client::Floor) => TASKS,
        // One request per lent connection.
        (Workload::Concurrent, _) => TASKS.min(POOL_SIZE),
        #[cfg(not(target_arch = "wasm32"))]
        (Workload::ConcurrentShared, Client::TokioPostgres) => TASKS.min(POOL_SIZE),
        _ => 1,
    }
}

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let url = std::env::var("BENCH_URL").map_err(|_| "set BENCH_URL to a postgresql:// URI")?;
    let Timing { secs, cpu_secs } = block_on(args.runtime, run(&args, &url))??;
    let in_flight = in_flight(&args);
    // Scripts find the fields by name; cpu_secs comes last, and only when
    // known.
    let cpu = cpu_secs
        .map(|cpu| format!(" cpu_secs={cpu:.4}"))
        .unwrap_or_default();
    println!(
        "RESULT client={} runtime={} workload={} n={} in_flight={} secs={:.4} ops_per_sec={:.0}{}",
        args.client.name(),
        args.runtime.name(),
        args.workload.name(),
        args.n,
        in_flight,
        secs,
        f64::from(args.n) / secs,
        cpu,
    );
    Ok(())
}
