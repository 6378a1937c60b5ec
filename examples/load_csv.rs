//! Loads a CSV file into a table with COPY, natively and under wasmtime
//! (which sees the file through a preopened directory). The file is streamed
//! in chunks, never read whole.
//!
//! ```text
//! DATABASE_URL='postgresql://user:pass@127.0.0.1/db?sslmode=disable' \
//!     cargo run --example load_csv --features tokio-transport -- examples/data/cities.csv
//! ```
//!
//! Under wasmtime, preopen the file's directory at the same path:
//! `wasmtime run -S inherit-network=y -S inherit-env=y --dir examples/data
//! target/wasm32-wasip2/debug/examples/load_csv.wasm examples/data/cities.csv`
//! (`scripts/wasm-runner.sh` does this for `examples/data`).

use std::io::Read;

use wasi_pg_client::{Config, Connection, PgError};

/// How much of the file is read (and sent) at a time.
const CHUNK: usize = 64 * 1024;

async fn load(path: &str) -> Result<(), PgError> {
    let url = std::env::var("DATABASE_URL").map_err(|_| {
        PgError::Config(
            "set DATABASE_URL, e.g. postgresql://user:pass@127.0.0.1/db?sslmode=disable".into(),
        )
    })?;
    let conn = Connection::connect(&Config::from_uri(&url)?).await?;
    conn.query("CREATE TEMP TABLE cities (name text NOT NULL, country text, population int8)")
        .await?;

    let mut file = std::fs::File::open(path)
        .map_err(|e| PgError::Config(format!("cannot open {path}: {e}")))?;
    let mut copy = conn
        .copy_in("COPY cities FROM STDIN (FORMAT csv, HEADER true)")
        .await?;
    let mut buf = vec![0; CHUNK];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| PgError::Config(format!("cannot read {path}: {e}")))?;
        if n == 0 {
            break;
        }
        copy.write(&buf[..n]).await?;
    }
    let rows = copy.finish().await?;
    println!("loaded {rows} rows from {path}");

    let largest = conn
        .query("SELECT name, population FROM cities WHERE population IS NOT NULL ORDER BY population DESC LIMIT 3")
        .await?;
    for row in largest.iter() {
        let name: String = row.get(0)?;
        let population: i64 = row.get(1)?;
        println!("{name}: {population}");
    }
    let quoted: i64 = conn
        .query_one(
            "SELECT count(*) FROM cities WHERE name IN ('Washington, D.C.', 'Saint-Denis \"93\"')",
            &[],
        )
        .await?
        .get(0)?;
    println!("quoted names read back: {quoted}");
    conn.close().await
}

fn path() -> String {
    std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/data/cities.csv".into())
}

#[cfg(not(target_arch = "wasm32"))]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), PgError> {
    load(&path()).await
}

#[cfg(target_arch = "wasm32")]
#[wstd::main]
async fn main() -> Result<(), PgError> {
    load(&path()).await
}
