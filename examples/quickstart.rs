//! The demo `scripts/demo.sh` runs natively and under wasmtime: connect,
//! create and fill a table, read it back, pipeline lookups from clones of
//! one connection, deliver notifications to two subscribers, then borrow
//! connections from a pool, exclusively and shared.
//!
//! ```text
//! DATABASE_URL='postgresql://user:pass@127.0.0.1/db?sslmode=disable' \
//!     cargo run --example quickstart --features tokio-transport,pool
//! ```

use futures_util::future::try_join_all;
use wasi_pg_client::pool::{Pool, PoolConfig};
use wasi_pg_client::{Config, Connection, PgError};

async fn demo() -> Result<(), PgError> {
    let url = std::env::var("DATABASE_URL").map_err(|_| {
        PgError::Config(
            "set DATABASE_URL, e.g. postgresql://user:pass@127.0.0.1/db?sslmode=disable".into(),
        )
    })?;
    let config = Config::from_uri(&url)?;
    let conn = Connection::connect(&config).await?;
    println!(
        "connected to PostgreSQL {}",
        conn.parameter("server_version").unwrap_or_default()
    );

    conn.query(
        "CREATE TEMP TABLE users (id int4 PRIMARY KEY, name text NOT NULL);
         INSERT INTO users VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Barbara')",
    )
    .await?;

    let result = conn.query("SELECT id, name FROM users ORDER BY id").await?;
    for row in result.iter() {
        let id: i32 = row.get(0)?;
        let name: String = row.get(1)?;
        println!("{}: {}", id, name);
    }

    // Clones share the socket: these three lookups go out together.
    let lookups = (1..=3i32).map(|id| {
        let conn = conn.clone();
        async move {
            let row = conn
                .query_one("SELECT upper(name) FROM users WHERE id = $1", &[&id])
                .await?;
            row.get::<_, String>(0)
        }
    });
    println!("pipelined: {}", try_join_all(lookups).await?.join(", "));

    // Two subscribers share the connection's notifications: each gets all.
    let mut audit = conn.subscribe("user_events").await?;
    let mut mailer = conn.subscribe("user_events").await?;
    conn.notify("user_events", "Ada signed in").await?;
    conn.notify("user_events", "Grace signed out").await?;
    for (name, subscriber) in [("audit", &mut audit), ("mailer", &mut mailer)] {
        for _ in 0..2 {
            if let Some(n) = subscriber.next().await? {
                println!("{name} got {} on {}", n.payload, n.channel);
            }
        }
    }

    conn.close().await?;

    // A pool of up to 5 connections. `acquire` lends one to this caller
    // alone (a transaction, session settings); `get_shared` hands out the
    // least busy one for statements that can share it with other callers.
    let pool = Pool::new(PoolConfig::default().connection(config).max_size(5)).await?;
    let guard = pool.acquire().await?;
    guard.query("SELECT 1").await?;
    guard.release().await; // preferred over Drop: the reset runs before this returns
    let shared = (1..=4i32).map(|n| {
        let pool = pool.clone();
        async move {
            let conn = pool.get_shared().await?;
            conn.query_one("SELECT $1::int4 * 10", &[&n])
                .await?
                .get::<_, i32>(0)
        }
    });
    println!("from the pool: {:?}", try_join_all(shared).await?);
    println!("pool: {:?}", pool.status());
    pool.close().await;
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), PgError> {
    demo().await
}

#[cfg(target_arch = "wasm32")]
#[wstd::main]
async fn main() -> Result<(), PgError> {
    demo().await
}
