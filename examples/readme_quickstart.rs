//! The README's quick start, exactly as written there, so CI proves it
//! compiles for wasm32-wasip2. (Natively it is an empty program.)

#[cfg(target_arch = "wasm32")]
use wasi_pg_client::{Config, Connection};

#[cfg(target_arch = "wasm32")]
#[wstd::main]
async fn main() -> Result<(), wasi_pg_client::PgError> {
    let config = Config::from_uri("postgresql://user:pass@localhost/mydb")?;
    let conn = Connection::connect(&config).await?;
    let result = conn.query("SELECT id, name FROM users").await?;
    for row in result.iter() {
        let id: i32 = row.get(0)?;
        let name: String = row.get(1)?;
        println!("{}: {}", id, name);
    }
    conn.close().await?;
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {}
