//! COPY in and out: text, CSV and binary.

mod common;

use common::{connect, run, unique, TestResult};
use wasi_pg_client::{Connection, PgError};

async fn table(conn: &Connection, prefix: &str) -> Result<String, PgError> {
    let name = unique(prefix);
    conn.simple_query(&format!("CREATE TABLE {name} (id int4, name text)"))
        .await?;
    Ok(name)
}

#[test]
fn text_copy_in_then_copy_out_round_trips() -> TestResult {
    run(async {
        let conn = connect().await?;
        let name = table(&conn, "copy_text").await?;
        let mut copy = conn.copy_in(&format!("COPY {name} FROM STDIN")).await?;
        for i in 0..100_000 {
            copy.write(format!("{i}\trow {i}\n").as_bytes()).await?;
        }
        check_eq!(copy.finish().await?, 100_000);
        let mut out = conn
            .copy_out(&format!(
                "COPY (SELECT * FROM {name} ORDER BY id) TO STDOUT"
            ))
            .await?;
        let mut all = Vec::new();
        while let Some(chunk) = out.next().await? {
            all.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(all)?;
        check_eq!(text.lines().count(), 100_000);
        check_eq!(text.lines().nth(5), Some("5\trow 5"));
        Ok(())
    })
}
