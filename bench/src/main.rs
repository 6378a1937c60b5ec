//! One benchmark cell per process: a client, a runtime flavour and a
//! workload, chosen by arguments. Prints one machine-readable line:
//!
//! ```text
//! RESULT client=ours runtime=current workload=latency n=20000 in_flight=1 secs=0.41 ops_per_sec=48500
//! ```
//!
//! Usage: `wasi-pg-client-bench --client ours|tokio-postgres --runtime current|multi
//!         --workload latency|pipeline [--n N] [--in-flight K]`, server from the
//! `BENCH_URL` environment variable (a `postgresql://` URI). Built for
//! wasm32-wasip2 only `--client ours` exists and the runtime is wstd's.
//! `scripts/bench.sh` runs every cell and tabulates the results.
//!
//! Workloads, each `SELECT $1::int4` with the answer checked:
//! - latency: N sequential round trips.
//! - pipeline: N queries with up to K in flight on one connection.

use std::error::Error;
use std::future::Future;
use std::ops::Range;
use std::time::Instant;

use futures_util::stream::{self, StreamExt, TryStreamExt};

type BoxError = Box<dyn Error>;

const SQL: &str = "SELECT $1::int4";
/// Untimed operations first, so connection setup, statement preparation and
/// allocator growth stay out of the measurement.
const WARM_UP: i32 = 200;

#[derive(Clone, Copy)]
enum Client {
    Ours,
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

#[derive(Clone, Copy)]
enum Workload {
    Latency,
    Pipeline,
}

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
        }
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
            #[cfg(not(target_arch = "wasm32"))]
            ("--client", "tokio-postgres") => client = Some(Client::TokioPostgres),
            #[cfg(not(target_arch = "wasm32"))]
            ("--runtime", "current") => runtime = Some(Runtime::Current),
            #[cfg(not(target_arch = "wasm32"))]
            ("--runtime", "multi") => runtime = Some(Runtime::Multi),
            #[cfg(target_arch = "wasm32")]
            ("--runtime", "wstd") => runtime = Some(Runtime::Wstd),
            ("--workload", "latency") => workload = Some(Workload::Latency),
            ("--workload", "pipeline") => workload = Some(Workload::Pipeline),
            ("--n", v) => n = Some(v.parse::<i32>()?),
            ("--in-flight", v) => in_flight = v.parse::<usize>()?,
            (flag, value) => return Err(format!("unsupported argument {flag} {value}").into()),
        }
    }
    #[cfg(target_arch = "wasm32")]
    let runtime = runtime.or(Some(Runtime::Wstd));
    let workload = workload.ok_or("--workload latency|pipeline is required")?;
    Ok(Args {
        client: client.ok_or("--client is required")?,
        runtime: runtime.ok_or("--runtime current|multi is required")?,
        workload,
        n: n.unwrap_or(match workload {
            Workload::Latency => 20_000,
            Workload::Pipeline => 100_000,
        }),
        in_flight: in_flight.max(1),
    })
}

/// The single operation every workload is made of: `SELECT $1::int4` with `i`.
trait Echo {
    async fn echo(&self, i: i32) -> Result<i32, BoxError>;
}

struct Ours(wasi_pg_client::Connection);

impl Echo for Ours {
    async fn echo(&self, i: i32) -> Result<i32, BoxError> {
        // By SQL text on purpose: the connection's statement cache is part of
        // what is measured.
        let row = self.0.query_one(SQL, &[&i]).await?;
        Ok(row.get(0)?)
    }
}

#[cfg(not(target_arch = "wasm32"))]
struct TokioPg {
    client: tokio_postgres::Client,
    statement: tokio_postgres::Statement,
}

#[cfg(not(target_arch = "wasm32"))]
impl Echo for TokioPg {
    async fn echo(&self, i: i32) -> Result<i32, BoxError> {
        let row = self.client.query_one(&self.statement, &[&i]).await?;
        Ok(row.try_get(0)?)
    }
}

fn check(sent: i32, got: i32) -> Result<(), BoxError> {
    if sent == got {
        Ok(())
    } else {
        Err(format!("sent {sent}, got back {got}").into())
    }
}

async fn run_workload<E: Echo>(
    db: &E,
    workload: Workload,
    values: Range<i32>,
    in_flight: usize,
) -> Result<(), BoxError> {
    match workload {
        Workload::Latency => {
            for i in values {
                check(i, db.echo(i).await?)?;
            }
            Ok(())
        }
        Workload::Pipeline => {
            // All futures share one connection; both clients pipeline the
            // requests of concurrent futures onto its socket.
            stream::iter(values)
                .map(|i| async move { check(i, db.echo(i).await?) })
                .buffer_unordered(in_flight)
                .try_for_each(|()| async { Ok(()) })
                .await
        }
    }
}

/// Warms up, then returns the seconds the timed run took.
async fn measure<E: Echo>(db: &E, args: &Args) -> Result<f64, BoxError> {
    run_workload(db, args.workload, 0..WARM_UP, args.in_flight).await?;
    let start = Instant::now();
    run_workload(db, args.workload, 0..args.n, args.in_flight).await?;
    Ok(start.elapsed().as_secs_f64())
}

async fn run(args: &Args, url: &str) -> Result<f64, BoxError> {
    match args.client {
        Client::Ours => {
            let config = wasi_pg_client::Config::from_uri(url)?;
            let conn = wasi_pg_client::Connection::connect(&config).await?;
            let secs = measure(&Ours(conn.clone()), args).await?;
            conn.close().await?;
            Ok(secs)
        }
        #[cfg(not(target_arch = "wasm32"))]
        Client::TokioPostgres => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            let driver = tokio::spawn(connection);
            let statement = client.prepare(SQL).await?;
            let db = TokioPg { client, statement };
            let secs = measure(&db, args).await?;
            // Dropping the client ends the connection task.
            drop(db);
            driver.await??;
            Ok(secs)
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

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let url = std::env::var("BENCH_URL").map_err(|_| "set BENCH_URL to a postgresql:// URI")?;
    let secs = block_on(args.runtime, run(&args, &url))??;
    let in_flight = match args.workload {
        Workload::Latency => 1,
        Workload::Pipeline => args.in_flight,
    };
    println!(
        "RESULT client={} runtime={} workload={} n={} in_flight={} secs={:.4} ops_per_sec={:.0}",
        args.client.name(),
        args.runtime.name(),
        args.workload.name(),
        args.n,
        in_flight,
        secs,
        f64::from(args.n) / secs,
    );
    Ok(())
}
