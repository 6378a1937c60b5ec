//! COPY in and out: text, CSV and binary; errors from the server and from
//! the data; the lease a copy-in holds; backpressure both ways; COPY inside
//! transactions; and the query methods refusing COPY.

mod common;

use std::cell::Cell;
use std::error::Error;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::time::Duration;

use bytes::Bytes;
use common::{connect, count, expect_err, run, unique, until_backend, TestResult};
use futures_core::Stream;
use futures_util::future::join;
use futures_util::{poll, StreamExt};
use wasi_pg_client::types::Type;
use wasi_pg_client::{
    BinaryCopyInWriter, BinaryCopyOutReader, Connection, CsvCopyInWriter, PgError,
};

async fn table(conn: &Connection, prefix: &str) -> Result<String, PgError> {
    let name = unique(prefix);
    conn.simple_query(&format!("CREATE TABLE {name} (id int4, name text)"))
        .await?;
    Ok(name)
}

/// Awaits `fut`, or fails after a generous limit: a guard against a hang
/// (a request stuck behind a lease, a copy nobody ends), never
/// synchronisation.
async fn within<F: Future>(fut: F, what: &str) -> Result<F::Output, String> {
    common::within(Duration::from_secs(20), what, fut).await
}

/// The SQLSTATE of an error the server reported (not one made up by the
/// client).
fn server_code(e: &PgError) -> Option<&str> {
    match e {
        PgError::Server(db) => Some(db.code()),
        _ => None,
    }
}

/// The connection answers a query, in step, without hanging.
async fn check_usable(conn: &Connection) -> TestResult {
    let row = within(
        conn.query_one("SELECT 41 + $1::int4", &[&1i32]),
        "a query after the copy",
    )
    .await??;
    check_eq!(row.get::<_, i32>(0)?, 42);
    let text = within(
        conn.simple_query("SELECT 'still' || ' here'"),
        "a simple query",
    )
    .await??;
    check_eq!(text.rows()[0].get::<_, String>(0)?, "still here");
    Ok(())
}

/// Everything a copy-out yields, concatenated.
async fn copy_out_bytes(conn: &Connection, sql: &str) -> Result<Vec<u8>, PgError> {
    let mut out = conn.copy_out(sql).await?;
    let mut all = Vec::new();
    while let Some(chunk) = out.next().await? {
        all.extend_from_slice(&chunk);
    }
    Ok(all)
}

/// `StreamExt::forward` into a sink, written against `futures_sink::Sink`
/// directly: futures-util's `sink` feature (`SinkExt`, `forward`) is not
/// enabled for the tests. Feeds every item, then closes (flushes) the sink.
async fn forward<K, S>(mut sink: K, mut items: S) -> Result<(), PgError>
where
    K: futures_sink::Sink<Bytes, Error = PgError> + Unpin,
    S: Stream<Item = Bytes> + Unpin,
{
    while let Some(item) = items.next().await {
        poll_fn(|cx| Pin::new(&mut sink).poll_ready(cx)).await?;
        Pin::new(&mut sink).start_send(item)?;
    }
    poll_fn(|cx| Pin::new(&mut sink).poll_close(cx)).await
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

/// One row of the binary round trip, a pure function of its id.
#[derive(Debug, PartialEq)]
struct Typed {
    id: i32,
    name: Option<String>,
    score: f64,
    flag: Option<bool>,
    data: Vec<u8>,
    big: i64,
}

fn typed(id: i32) -> Typed {
    let score = match id {
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => -0.0,
        _ => f64::from(id) * 0.5 - 1234.125,
    };
    Typed {
        id,
        name: (id % 7 != 0).then(|| format!("name {id} ✓ 'q' \"dq\" \\ \t")),
        score,
        flag: (id % 11 != 0).then_some(id % 3 == 0),
        // Empty every 50th row; bytes 0..=255 all appear.
        data: (0..id % 50).map(|b| (b * 7 + id) as u8).collect(),
        big: i64::from(id) * 1_000_000_007 - i64::from(i32::MAX),
    }
}

const TYPED_COLUMNS: [Type; 6] = [
    Type::INT4,
    Type::TEXT,
    Type::FLOAT8,
    Type::BOOL,
    Type::BYTEA,
    Type::INT8,
];

#[test]
fn binary_rows_round_trip_value_for_value() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = unique("copy_binary");
        conn.simple_query(&format!(
            "CREATE TABLE {t} (id int4, name text, score float8, flag bool, data bytea, big int8)"
        ))
        .await?;
        const ROWS: i32 = 12_345;
        let copy = conn
            .copy_in(&format!("COPY {t} FROM STDIN (FORMAT binary)"))
            .await?;
        let mut writer = BinaryCopyInWriter::new(copy, &TYPED_COLUMNS);
        for id in 1..=ROWS {
            let row = typed(id);
            writer
                .write(&[
                    &row.id, &row.name, &row.score, &row.flag, &row.data, &row.big,
                ])
                .await?;
            if id == ROWS / 2 {
                // A wrong count and a value of the wrong type are refused
                // before anything is written; the copy goes on.
                let short = writer.write(&[&id, &row.name]).await;
                check!(matches!(short, Err(PgError::Encode(_))), "got {short:?}");
                let wrong_type = writer
                    .write(&[
                        &"not an int",
                        &row.name,
                        &row.score,
                        &row.flag,
                        &row.data,
                        &row.big,
                    ])
                    .await;
                check!(
                    matches!(wrong_type, Err(PgError::Encode(_))),
                    "got {wrong_type:?}"
                );
            }
        }
        check_eq!(writer.finish().await?, ROWS as u64);
        check_eq!(count(&conn, &t).await?, i64::from(ROWS));

        let out = conn
            .copy_out(&format!(
                "COPY (SELECT id, name, score, flag, data, big FROM {t} ORDER BY id) \
                 TO STDOUT (FORMAT binary)"
            ))
            .await?;
        let mut reader = BinaryCopyOutReader::new(out, &TYPED_COLUMNS);
        let mut expected = 1;
        while let Some(row) = reader.next().await? {
            check_eq!(row.len(), 6);
            let got = Typed {
                id: row.get(0)?,
                name: row.get(1)?,
                score: row.get(2)?,
                flag: row.get(3)?,
                data: row.get(4)?,
                big: row.get(5)?,
            };
            let want = typed(expected);
            check_eq!(got, want);
            // -0.0 == 0.0: compare the sign too.
            check_eq!(got.score.to_bits(), want.score.to_bits());
            expected += 1;
        }
        check_eq!(expected, ROWS + 1);
        check!(
            reader.next().await?.is_none(),
            "a finished reader stays ended"
        );
        // The server agrees on what it stored (not just our own decoding).
        let nulls = conn
            .query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE name IS NULL), \
                     count(*) FILTER (WHERE flag IS NULL), \
                     count(*) FILTER (WHERE data = ''::bytea), \
                     sum(length(data))::int8 FROM {t}"
                ),
                &[],
            )
            .await?;
        let want_len: i64 = (1..=ROWS).map(|id| i64::from(id % 50)).sum();
        check_eq!(nulls.get::<_, i64>(0)?, i64::from(ROWS / 7));
        check_eq!(nulls.get::<_, i64>(1)?, i64::from(ROWS / 11));
        check_eq!(nulls.get::<_, i64>(2)?, i64::from(ROWS / 50));
        check_eq!(nulls.get::<_, i64>(3)?, want_len);
        Ok(())
    })
}

#[test]
fn a_binary_reader_with_the_wrong_types_fails_and_the_connection_survives() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = table(&conn, "copy_binary_wrong").await?;
        conn.simple_query(&format!(
            "INSERT INTO {t} SELECT g, 'row ' || g FROM generate_series(1, 20000) g"
        ))
        .await?;
        let sql = format!("COPY (SELECT id, name FROM {t} ORDER BY id) TO STDOUT (FORMAT binary)");

        // One type for two columns: the first row is refused.
        let mut reader = BinaryCopyOutReader::new(conn.copy_out(&sql).await?, &[Type::INT4]);
        let error = expect_err(
            reader.next().await,
            "a reader with one type for two columns",
        )?;
        check!(matches!(error, PgError::Decode(_)), "got {error:?}");
        // Dropped with most of the 20,000 rows unread.
        drop(reader);
        check_usable(&conn).await?;

        // Three types for two columns, read to the end with the right ones
        // afterwards: the connection is in step.
        let mut reader = BinaryCopyOutReader::new(
            conn.copy_out(&sql).await?,
            &[Type::INT4, Type::TEXT, Type::TEXT],
        );
        let error = expect_err(
            reader.next().await,
            "a reader with three types for two columns",
        )?;
        check!(matches!(error, PgError::Decode(_)), "got {error:?}");
        drop(reader);
        let mut reader =
            BinaryCopyOutReader::new(conn.copy_out(&sql).await?, &[Type::INT4, Type::TEXT]);
        let mut rows = 0;
        while let Some(row) = reader.next().await? {
            rows += 1;
            check_eq!(row.get::<_, i32>(0)?, rows);
            check_eq!(row.get::<_, String>(1)?, format!("row {rows}"));
        }
        check_eq!(rows, 20_000);

        // Text data is not binary data.
        let text = conn.copy_out(&format!("COPY {t} TO STDOUT")).await?;
        let mut reader = BinaryCopyOutReader::new(text, &[Type::INT4, Type::TEXT]);
        let error = expect_err(reader.next().await, "a binary reader over text data")?;
        check!(matches!(error, PgError::Protocol(_)), "got {error:?}");
        drop(reader);
        check_usable(&conn).await?;
        Ok(())
    })
}

/// Fields that need quoting in CSV, or that must not be quoted, or that
/// look like something else (NULL, the end-of-data marker).
const TRICKY: &[Option<&str>] = &[
    Some("plain"),
    Some(""),
    None,
    Some("a,b"),
    Some("say \"hi\""),
    Some("\""),
    Some("\"\""),
    Some(",\","),
    Some("line\nbreak"),
    Some("cr\r\nlf"),
    Some("\r"),
    Some("\n"),
    Some("\\."),
    Some("\\.\n"),
    Some("x\n\\.\ny"),
    Some("\\"),
    Some("\\N"),
    Some("back\\slash"),
    Some("  padded  "),
    Some(" "),
    Some("tab\there"),
    Some("NULL"),
    Some("ünïcødé ✓ 日本語 🐘"),
    Some("'single'"),
];

#[test]
fn csv_fields_round_trip_exactly() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = unique("copy_csv");
        // The tricky column first: a field at the start of a line is where
        // `\.` would end the data.
        conn.simple_query(&format!("CREATE TABLE {t} (a text, id int4, b text)"))
            .await?;
        let copy = conn
            .copy_in(&format!("COPY {t} (a, id, b) FROM STDIN (FORMAT csv)"))
            .await?;
        let mut writer = CsvCopyInWriter::new(copy);
        let n = TRICKY.len();
        for (i, a) in TRICKY.iter().enumerate() {
            let id = i.to_string();
            writer
                .write(&[*a, Some(id.as_str()), TRICKY[n - 1 - i]])
                .await?;
        }
        // The other field types: `&str` and `String`.
        writer.write(&["&str", &n.to_string(), "x,y"]).await?;
        writer
            .write(&[String::from("\\."), (n + 1).to_string(), String::new()])
            .await?;
        check_eq!(writer.finish().await?, n as u64 + 2);

        let mut expected: Vec<(Option<String>, Option<String>)> = TRICKY
            .iter()
            .zip(TRICKY.iter().rev())
            .map(|(a, b)| (a.map(str::to_string), b.map(str::to_string)))
            .collect();
        expected.push((Some("&str".into()), Some("x,y".into())));
        expected.push((Some("\\.".into()), Some(String::new())));

        let rows = conn
            .query(&format!("SELECT a, b FROM {t} ORDER BY id"))
            .await?;
        let got = rows
            .iter()
            .map(|row| Ok((row.get(0)?, row.get(1)?)))
            .collect::<Result<Vec<(Option<String>, Option<String>)>, PgError>>()?;
        check_eq!(got, expected);
        // NULL stayed NULL and the empty string stayed empty, per the server.
        let kinds = conn
            .query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE a IS NULL), count(*) FILTER (WHERE a = '') FROM {t}"
                ),
                &[],
            )
            .await?;
        check_eq!(kinds.get::<_, i64>(0)?, 1);
        check_eq!(kinds.get::<_, i64>(1)?, 1);

        // The server's own CSV of the table, fed back in through a raw
        // CopyIn (read as a futures Stream), gives the same table.
        let copy_back = unique("copy_csv_back");
        conn.simple_query(&format!(
            "CREATE TABLE {copy_back} (a text, id int4, b text)"
        ))
        .await?;
        let out = conn
            .copy_out(&format!("COPY {t} TO STDOUT (FORMAT csv)"))
            .await?;
        let chunks: Vec<Result<Bytes, PgError>> = out.collect().await;
        let mut copy = conn
            .copy_in(&format!("COPY {copy_back} FROM STDIN (FORMAT csv)"))
            .await?;
        for chunk in chunks {
            copy.send(chunk?).await?;
        }
        check_eq!(copy.finish().await?, n as u64 + 2);
        let differences = conn
            .query_one(
                &format!(
                    "SELECT count(*) FROM ((TABLE {t} EXCEPT ALL TABLE {copy_back}) \
                     UNION ALL (TABLE {copy_back} EXCEPT ALL TABLE {t})) d"
                ),
                &[],
            )
            .await?;
        check_eq!(differences.get::<_, i64>(0)?, 0);
        Ok(())
    })
}

#[test]
fn malformed_csv_fails_at_finish_with_the_servers_error() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = table(&conn, "copy_bad_csv").await?;
        let csv = format!("COPY {t} FROM STDIN (FORMAT csv)");

        // A row with a column too many.
        let mut copy = conn.copy_in(&csv).await?;
        copy.write(b"1,one\n2,two,extra\n3,three\n").await?;
        let error = expect_err(copy.finish().await, "a row with an extra column")?;
        check_eq!(server_code(&error), Some("22P04"));
        check_eq!(count(&conn, &t).await?, 0);
        check_usable(&conn).await?;

        // A value that is no integer.
        let mut copy = conn.copy_in(&csv).await?;
        copy.write(b"1,one\nx,two\n").await?;
        let error = expect_err(copy.finish().await, "a non-integer id")?;
        check_eq!(server_code(&error), Some("22P02"));
        check_eq!(count(&conn, &t).await?, 0);
        check_usable(&conn).await?;

        // A row with a column missing.
        let mut copy = conn.copy_in(&csv).await?;
        copy.write(b"1\n").await?;
        let error = expect_err(copy.finish().await, "a row with a column missing")?;
        check_eq!(server_code(&error), Some("22P04"));
        check_eq!(count(&conn, &t).await?, 0);

        // The server refuses the first row while more data is on its way:
        // a later write reports the error, with far less written than the
        // limit, and finish reports it again.
        const LIMIT: usize = 64 * 1024 * 1024;
        let mut copy = conn.copy_in(&csv).await?;
        copy.write(b"not a number,first\n").await?;
        let block = "7,filler\n".repeat(1024);
        let mut written = 0;
        let early = loop {
            if written >= LIMIT {
                break None;
            }
            match copy.write(block.as_bytes()).await {
                Ok(()) => written += block.len(),
                Err(e) => break Some(e),
            }
        };
        let early = early.ok_or(format!(
            "{LIMIT} bytes written after a refused row and no write failed"
        ))?;
        check_eq!(server_code(&early), Some("22P02"));
        let error = expect_err(copy.finish().await, "finish after a refused row")?;
        check_eq!(server_code(&error), Some("22P02"));
        check_eq!(count(&conn, &t).await?, 0);
        check_usable(&conn).await?;

        // Dropped instead of finished after the server refused a row.
        let mut copy = conn.copy_in(&csv).await?;
        copy.write(b"1,one,too many\n").await?;
        drop(copy);
        check_eq!(count(&conn, &t).await?, 0);
        check_usable(&conn).await?;

        // And a good copy afterwards works.
        let mut copy = conn.copy_in(&csv).await?;
        copy.write(b"1,one\n2,two\n").await?;
        check_eq!(copy.finish().await?, 2);
        Ok(())
    })
}

/// The binary format's signature, flags and header extension length.
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Appends one binary field: its length, then its bytes.
fn binary_field(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as i32).to_be_bytes());
    out.extend_from_slice(data);
}

#[test]
fn a_binary_row_with_the_wrong_field_count_is_refused_by_the_server() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = table(&conn, "copy_bad_binary").await?;
        let sql = format!("COPY {t} FROM STDIN (FORMAT binary)");

        let mut good_row = Vec::new();
        good_row.extend_from_slice(&2i16.to_be_bytes());
        binary_field(&mut good_row, &1i32.to_be_bytes());
        binary_field(&mut good_row, b"ok");

        // A good row, then one declaring 3 fields for 2 columns.
        let mut data = BINARY_HEADER.to_vec();
        data.extend_from_slice(&good_row);
        data.extend_from_slice(&3i16.to_be_bytes());
        binary_field(&mut data, &2i32.to_be_bytes());
        binary_field(&mut data, b"ab");
        binary_field(&mut data, b"x");
        data.extend_from_slice(&(-1i16).to_be_bytes());
        let mut copy = conn.copy_in(&sql).await?;
        copy.write(&data).await?;
        let error = expect_err(copy.finish().await, "a row of 3 fields for 2 columns")?;
        check_eq!(server_code(&error), Some("22P04"));
        check_eq!(count(&conn, &t).await?, 0);
        check_usable(&conn).await?;

        // A row cut short.
        let mut data = BINARY_HEADER.to_vec();
        data.extend_from_slice(&good_row);
        data.extend_from_slice(&good_row[..good_row.len() - 1]);
        let mut copy = conn.copy_in(&sql).await?;
        copy.write(&data).await?;
        let error = expect_err(copy.finish().await, "a row cut short")?;
        check_eq!(server_code(&error), Some("22P04"));
        check_eq!(count(&conn, &t).await?, 0);

        // No signature.
        let mut copy = conn.copy_in(&sql).await?;
        copy.write(b"1\tnot binary\n").await?;
        let error = expect_err(copy.finish().await, "text data in a binary copy")?;
        check_eq!(server_code(&error), Some("22P04"));
        check_eq!(count(&conn, &t).await?, 0);
        check_usable(&conn).await?;

        // The same bytes, well formed, do go in.
        let mut data = BINARY_HEADER.to_vec();
        data.extend_from_slice(&good_row);
        data.extend_from_slice(&(-1i16).to_be_bytes());
        let mut copy = conn.copy_in(&sql).await?;
        copy.write(&data).await?;
        check_eq!(copy.finish().await?, 1);
        check_eq!(count(&conn, &t).await?, 1);
        Ok(())
    })
}

#[test]
fn abort_copies_nothing_and_leaves_the_connection_usable() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = table(&conn, "copy_abort").await?;
        let mut copy = conn.copy_in(&format!("COPY {t} FROM STDIN")).await?;
        for i in 0..50_000 {
            copy.write(format!("{i}\tdoomed {i}\n").as_bytes()).await?;
        }
        within(copy.abort("changed my mind"), "abort").await??;
        check_eq!(count(&conn, &t).await?, 0);
        check_usable(&conn).await?;

        // The typed writer's abort, too.
        let copy = conn
            .copy_in(&format!("COPY {t} FROM STDIN (FORMAT binary)"))
            .await?;
        let mut writer = BinaryCopyInWriter::new(copy, &[Type::INT4, Type::TEXT]);
        for i in 0..10_000i32 {
            writer.write(&[&i, &"doomed"]).await?;
        }
        within(writer.abort("no"), "the writer's abort").await??;
        check_eq!(count(&conn, &t).await?, 0);
        check_usable(&conn).await?;
        Ok(())
    })
}

#[test]
fn dropping_a_copy_in_copies_nothing_and_releases_the_lease() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = table(&conn, "copy_drop").await?;
        let mut copy = conn.copy_in(&format!("COPY {t} FROM STDIN")).await?;
        for i in 0..50_000 {
            copy.write(format!("{i}\tdropped {i}\n").as_bytes()).await?;
        }
        // Another handle's query waits behind the copy's lease...
        let other = conn.clone();
        let sql = format!("SELECT count(*) FROM {t}");
        let mut queued = pin!(other.query_one(sql.as_str(), &[]));
        check!(poll!(queued.as_mut()).is_pending());
        copy.write(b"50000\tmore\n").await?;
        check!(
            poll!(queued.as_mut()).is_pending(),
            "a query ran while the copy held the connection"
        );
        // ...and runs once the dropped copy has let go: nothing was copied.
        drop(copy);
        let seen: i64 = within(queued, "the query queued behind the dropped copy")
            .await??
            .get(0)?;
        check_eq!(seen, 0);
        check_eq!(count(&conn, &t).await?, 0);
        check_usable(&conn).await?;

        // Dropped right after it started, before any data.
        let copy = conn.copy_in(&format!("COPY {t} FROM STDIN")).await?;
        drop(copy);
        check_eq!(count(&conn, &t).await?, 0);
        check_usable(&conn).await?;

        // A copy_in given up before the server answered it, and one given
        // up while another copy held the connection.
        let sql = format!("COPY {t} FROM STDIN");
        {
            // One poll sends the COPY (the idle connection grants the lease
            // and writes in place); the server's answer is almost always
            // still on its way. Should it have come already, this is a copy
            // dropped just after it started, which must be as harmless.
            let mut starting = pin!(conn.copy_in(&sql));
            let _ = poll!(starting.as_mut());
        }
        check_usable(&conn).await?;
        let mut holder = conn.copy_in(&sql).await?;
        {
            let mut waiting = pin!(other.copy_in(&sql));
            check!(poll!(waiting.as_mut()).is_pending());
        }
        holder.write(b"7\tkept\n").await?;
        check_eq!(within(holder.finish(), "finish").await??, 1);
        check_usable(&conn).await?;
        check_eq!(count(&conn, &t).await?, 1);
        Ok(())
    })
}

#[test]
fn other_handles_wait_for_an_open_copy_in_and_run_after_it() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = table(&conn, "copy_lease").await?;
        let mut copy = conn.copy_in(&format!("COPY {t} FROM STDIN")).await?;
        copy.write(b"1\tfirst\n").await?;

        // Queued while the copy is open: an insert recording how many rows
        // it saw, and a second copy.
        let other = conn.clone();
        let insert = format!("INSERT INTO {t} SELECT -1, count(*)::text FROM {t}");
        let mut inserting = pin!(other.execute(insert.as_str(), &[]));
        check!(poll!(inserting.as_mut()).is_pending());
        let second_sql = format!("COPY {t} FROM STDIN");
        let mut second = pin!(other.copy_in(&second_sql));
        check!(poll!(second.as_mut()).is_pending());

        for i in 2..=20_000 {
            copy.write(format!("{i}\trow {i}\n").as_bytes()).await?;
        }
        check!(
            poll!(inserting.as_mut()).is_pending(),
            "the insert ran while the copy held the connection"
        );
        check!(
            poll!(second.as_mut()).is_pending(),
            "a second copy started while the first was open"
        );
        check_eq!(within(copy.finish(), "finish").await??, 20_000);

        check_eq!(within(inserting, "the queued insert").await??, 1);
        // The second copy got the connection next (until it ends, it holds
        // the lease: nothing else runs).
        let mut second = within(second, "the queued copy").await??;
        second.write(b"30000\tsecond\n").await?;
        check_eq!(within(second.finish(), "the second finish").await??, 1);
        // The insert ran after the first copy: it saw every row copied.
        let seen = conn
            .query_one(&format!("SELECT name FROM {t} WHERE id = -1"), &[])
            .await?;
        check_eq!(seen.get::<_, String>(0)?, "20000");
        check_eq!(count(&conn, &t).await?, 20_002);
        check_usable(&conn).await?;
        Ok(())
    })
}

#[test]
fn a_server_error_mid_copy_out_is_an_err_and_the_connection_survives() -> TestResult {
    run(async {
        let conn = connect().await?;
        // 4,999 rows, then a division by zero.
        let mut out = conn
            .copy_out(
                "COPY (SELECT g, 10000 / (g - 5000) FROM generate_series(1, 10000) g) TO STDOUT",
            )
            .await?;
        let mut data = Vec::new();
        let error = loop {
            match out.next().await {
                Ok(Some(chunk)) => data.extend_from_slice(&chunk),
                Ok(None) => return Err("the division by zero must surface".into()),
                Err(e) => break e,
            }
        };
        check_eq!(server_code(&error), Some("22012"));
        let text = String::from_utf8(data)?;
        check_eq!(text.lines().count(), 4999);
        check_eq!(text.lines().next(), Some("1\t-2"));
        check_eq!(text.lines().last(), Some("4999\t-10000"));
        check!(out.next().await?.is_none(), "a failed copy stays ended");
        check_usable(&conn).await?;

        // The same through the Stream interface and the binary reader.
        let mut stream = conn
            .copy_out("COPY (SELECT 1 / (g - 3000) FROM generate_series(1, 6000) g) TO STDOUT")
            .await?;
        let mut chunks = 0;
        let error = loop {
            match StreamExt::next(&mut stream).await {
                Some(Ok(_)) => chunks += 1,
                Some(Err(e)) => break e,
                None => return Err("the stream ended without the error".into()),
            }
        };
        check_eq!(server_code(&error), Some("22012"));
        check_eq!(chunks, 2999);
        check!(
            StreamExt::next(&mut stream).await.is_none(),
            "a failed stream stays ended"
        );

        let out = conn
            .copy_out(
                "COPY (SELECT g, 1 / (g - 3000) FROM generate_series(1, 6000) g) \
                 TO STDOUT (FORMAT binary)",
            )
            .await?;
        let mut reader = BinaryCopyOutReader::new(out, &[Type::INT4, Type::INT4]);
        let mut rows = 0;
        let error = loop {
            match reader.next().await {
                Ok(Some(row)) => {
                    rows += 1;
                    check_eq!(row.get::<_, i32>(0)?, rows);
                }
                Ok(None) => return Err("the binary reader ended without the error".into()),
                Err(e) => break e,
            }
        };
        check_eq!(server_code(&error), Some("22012"));
        check_eq!(rows, 2999);
        check_usable(&conn).await?;
        Ok(())
    })
}

/// The message of an error, for what it mentions.
fn mentions(e: &PgError, word: &str) -> bool {
    e.to_string().contains(word)
}

#[test]
fn query_methods_refuse_copy_from_stdin_before_sending_it() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = table(&conn, "copy_refused").await?;
        let copy_from = format!("COPY {t} FROM STDIN");
        let lower = format!("copy {t} (id, name) from stdin with (format csv)");
        let script = format!("SELECT 1; {copy_from}");

        let mut refusals: Vec<(&str, Result<(), PgError>)> = Vec::new();
        for sql in [&copy_from, &lower, &script] {
            refusals.push(("query", within(conn.query(sql), "query").await?.map(drop)));
            refusals.push((
                "simple_query",
                within(conn.simple_query(sql), "simple_query")
                    .await?
                    .map(drop),
            ));
        }
        refusals.push((
            "query_params",
            within(conn.query_params(copy_from.as_str(), &[]), "query_params")
                .await?
                .map(drop),
        ));
        refusals.push((
            "execute",
            within(conn.execute(copy_from.as_str(), &[]), "execute")
                .await?
                .map(drop),
        ));
        refusals.push((
            "prepare",
            within(conn.prepare(&copy_from), "prepare").await?.map(drop),
        ));
        refusals.push((
            "query_stream",
            within(conn.query_stream(&copy_from), "query_stream")
                .await?
                .map(drop),
        ));
        refusals.push((
            "query_cursor_stream",
            within(
                conn.query_cursor_stream(copy_from.as_str(), &[], 10),
                "query_cursor_stream",
            )
            .await?
            .map(drop),
        ));
        let mut pipeline = conn.pipeline();
        refusals.push((
            "pipeline push",
            within(pipeline.push(copy_from.as_str(), &[]), "pipeline push").await?,
        ));
        refusals.push((
            "copy_out",
            within(conn.copy_out(&copy_from), "copy_out")
                .await?
                .map(drop),
        ));
        for (method, result) in refusals {
            let error = expect_err(result, method)?;
            check!(
                matches!(error, PgError::Encode(_)) && mentions(&error, "copy_in"),
                "{method}: got {error:?}"
            );
        }
        check_eq!(pipeline.len(), 0);
        check_usable(&conn).await?;

        // Inside a transaction: refused, and the transaction is unharmed.
        let txn = conn.transaction().await?;
        let error = expect_err(
            within(txn.query(&copy_from), "txn.query").await?,
            "txn.query",
        )?;
        check!(matches!(error, PgError::Encode(_)), "got {error:?}");
        check_eq!(count(&txn, &t).await?, 0);
        txn.commit().await?;

        // Look-alikes in strings and comments run.
        for (sql, want) in [
            ("SELECT 'COPY t FROM STDIN'::text", "COPY t FROM STDIN"),
            ("SELECT $$COPY t FROM STDIN$$::text", "COPY t FROM STDIN"),
            (
                "SELECT $q$ ; COPY t FROM STDIN $q$::text",
                " ; COPY t FROM STDIN ",
            ),
            (
                "SELECT E'\\' ; COPY t FROM STDIN'::text",
                "' ; COPY t FROM STDIN",
            ),
            ("/* COPY t FROM STDIN */ SELECT 'c'::text", "c"),
            ("-- COPY t FROM STDIN\nSELECT 'd'::text", "d"),
            ("SELECT 'stdin'::text AS copy", "stdin"),
        ] {
            let result = within(conn.query(sql), sql).await??;
            check_eq!(result.rows()[0].get::<_, String>(0)?, want);
            let result = within(conn.simple_query(sql), sql).await??;
            check_eq!(result.rows()[0].get::<_, String>(0)?, want);
        }
        let named = within(
            conn.query_params("SELECT $1::text, 'COPY t FROM STDIN'", &[&"p"]),
            "query_params look-alike",
        )
        .await??;
        check_eq!(named.rows()[0].get::<_, String>(1)?, "COPY t FROM STDIN");
        check_usable(&conn).await?;
        Ok(())
    })
}

#[test]
fn a_copy_from_stdin_behind_a_typed_literal_is_still_refused() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = table(&conn, "copy_refused_typed").await?;
        // `name'\'` is a typed literal (the type `name`, the value `\`):
        // not an escape string, so the quote after the backslash closes it.
        let sql = format!("SELECT name'\\'; COPY {t} FROM STDIN; SELECT 'x'");
        for (method, result) in [
            (
                "simple_query",
                within(conn.simple_query(&sql), "simple_query").await?,
            ),
            ("query", within(conn.query(&sql), "query").await?),
        ] {
            let error = expect_err(result, method)?;
            check!(
                matches!(error, PgError::Encode(_)),
                "{method}: got {error:?} (the COPY reached the server)"
            );
            check!(!conn.is_closed(), "{method} closed the connection");
        }
        check_usable(&conn).await?;
        Ok(())
    })
}

#[test]
fn copy_to_stdout_through_query_methods_is_an_error_and_the_connection_survives() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = table(&conn, "copy_out_refused").await?;
        conn.simple_query(&format!(
            "INSERT INTO {t} SELECT g, repeat('y', 100) FROM generate_series(1, 50000) g"
        ))
        .await?;
        let copy_to = format!("COPY {t} TO STDOUT");
        let results: Vec<(&str, Result<(), PgError>)> = vec![
            (
                "query",
                within(conn.query(&copy_to), "query").await?.map(drop),
            ),
            (
                "simple_query",
                within(conn.simple_query(&copy_to), "simple_query")
                    .await?
                    .map(drop),
            ),
            (
                "query_params",
                within(conn.query_params(copy_to.as_str(), &[]), "query_params")
                    .await?
                    .map(drop),
            ),
        ];
        for (method, result) in results {
            let error = expect_err(result, method)?;
            check!(mentions(&error, "copy_out"), "{method}: got {error:?}");
            check_usable(&conn).await?;
        }
        // Through a row stream: the error comes from the stream.
        let streamed = async {
            let mut stream = conn.query_stream(&copy_to).await?;
            while stream.next().await?.is_some() {}
            Ok::<_, PgError>(())
        };
        let error = expect_err(within(streamed, "query_stream").await?, "query_stream")?;
        check!(mentions(&error, "copy_out"), "query_stream: got {error:?}");
        check_usable(&conn).await?;
        check_eq!(count(&conn, &t).await?, 50_000);
        Ok(())
    })
}

#[test]
fn copy_in_and_copy_out_refuse_other_statements_and_release_the_lease() -> TestResult {
    run(async {
        let conn = connect().await?;
        let other = conn.clone();
        let t = table(&conn, "copy_misuse").await?;
        let missing = unique("copy_missing");

        // Not a COPY at all: the statement runs, no copy starts.
        let error = expect_err(
            within(conn.copy_in("SELECT 1"), "copy_in(SELECT)").await?,
            "copy_in(SELECT 1)",
        )?;
        check!(mentions(&error, "copy_in"), "got {error:?}");
        check_usable(&other).await?;

        // The wrong direction.
        let error = expect_err(
            within(conn.copy_in(&format!("COPY {t} TO STDOUT")), "copy_in(TO)").await?,
            "copy_in(COPY … TO STDOUT)",
        )?;
        check!(server_code(&error).is_none(), "got {error:?}");
        check_usable(&other).await?;

        // A table that does not exist, and a syntax error: the server's errors.
        let error = expect_err(
            within(
                conn.copy_in(&format!("COPY {missing} FROM STDIN")),
                "copy_in",
            )
            .await?,
            "copy_in of a missing table",
        )?;
        check_eq!(server_code(&error), Some("42P01"));
        check_usable(&other).await?;
        let error = expect_err(
            within(
                conn.copy_in(&format!("COPY {t} FROM STDIN WITH (FORMAT nope)")),
                "copy_in",
            )
            .await?,
            "copy_in with a bad format",
        )?;
        check_eq!(server_code(&error), Some("22023"));
        let error = expect_err(
            within(conn.copy_in("COPY FROM STDIN"), "copy_in").await?,
            "copy_in of a syntax error",
        )?;
        check_eq!(server_code(&error), Some("42601"));
        check_usable(&other).await?;

        // A statement before the COPY fails: its error, no copy.
        let error = expect_err(
            within(
                conn.copy_in(&format!("SELECT 1/0; COPY {t} FROM STDIN")),
                "copy_in",
            )
            .await?,
            "copy_in after a failing statement",
        )?;
        check_eq!(server_code(&error), Some("22012"));
        check_usable(&other).await?;

        // copy_out, likewise.
        let error = expect_err(
            within(conn.copy_out("SELECT 1"), "copy_out(SELECT)").await?,
            "copy_out(SELECT 1)",
        )?;
        check!(mentions(&error, "copy_out"), "got {error:?}");
        let error = expect_err(
            within(
                conn.copy_out(&format!("COPY {missing} TO STDOUT")),
                "copy_out",
            )
            .await?,
            "copy_out of a missing table",
        )?;
        check_eq!(server_code(&error), Some("42P01"));
        check_usable(&other).await?;

        // After all that, a copy works on either handle.
        let mut copy = other.copy_in(&format!("COPY {t} FROM STDIN")).await?;
        copy.write(b"1\tone\n").await?;
        check_eq!(copy.finish().await?, 1);
        check_eq!(
            copy_out_bytes(&conn, &format!("COPY {t} TO STDOUT")).await?,
            b"1\tone\n".to_vec()
        );
        Ok(())
    })
}

#[test]
fn copy_in_followed_by_another_statement_reports_the_copys_count() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = table(&conn, "copy_then_select").await?;
        let mut copy = conn
            .copy_in(&format!("COPY {t} FROM STDIN; SELECT 1"))
            .await?;
        copy.write(b"1\ta\n2\tb\n").await?;
        let copied = within(copy.finish(), "finish of COPY; SELECT").await?;
        check_eq!(count(&conn, &t).await?, 2);
        // Two rows went in: finish must not say 0 (nor pass off another
        // statement's count as the copy's).
        check_eq!(copied?, 2);
        check_usable(&conn).await?;
        Ok(())
    })
}

#[test]
fn copy_in_of_two_copy_statements_ends_instead_of_hanging() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = table(&conn, "copy_two_a").await?;
        let u = table(&conn, "copy_two_b").await?;
        // Once the first copy is done the server asks for the second one's
        // data. finish must end (an error is fine), not wait for data
        // nobody will send, and the connection must stay usable.
        let mut copy = conn
            .copy_in(&format!("COPY {t} FROM STDIN; COPY {u} FROM STDIN"))
            .await?;
        copy.write(b"3\tc\n").await?;
        let finished = within(copy.finish(), "finish of two COPY statements").await?;
        check_usable(&conn).await?;
        check_eq!(count(&conn, &u).await?, 0);
        // What finish reports matches what the table holds: the rows, or
        // (the statements ran as one implicit transaction) an error and
        // nothing.
        match finished {
            Ok(n) => check_eq!(count(&conn, &t).await?, n as i64),
            Err(e) => {
                check!(server_code(&e).is_some(), "got {e:?}");
                check_eq!(count(&conn, &t).await?, 0);
            }
        }
        Ok(())
    })
}

#[test]
fn inside_a_transaction_copy_in_commits_or_rolls_back_with_it() -> TestResult {
    run(async {
        let conn = connect().await?;
        let observer = connect().await?;
        let t = table(&conn, "copy_txn").await?;
        let sql = format!("COPY {t} FROM STDIN");

        // Rolled back: nothing.
        let txn = conn.transaction().await?;
        let mut copy = txn.copy_in(&sql).await?;
        for i in 0..1000 {
            copy.write(format!("{i}\tin txn\n").as_bytes()).await?;
        }
        check_eq!(copy.finish().await?, 1000);
        check_eq!(count(&txn, &t).await?, 1000);
        check_eq!(count(&observer, &t).await?, 0);
        // copy_out in the transaction sees its own rows.
        let out = txn
            .copy_out(&format!("COPY (SELECT count(*) FROM {t}) TO STDOUT"))
            .await?;
        let chunks: Vec<Result<Bytes, PgError>> = out.collect().await;
        check_eq!(chunks.len(), 1);
        check_eq!(
            chunks[0].as_ref().map_err(Clone::clone)?.as_ref(),
            b"1000\n"
        );
        txn.rollback().await?;
        check_eq!(count(&conn, &t).await?, 0);

        // Committed: all of it, and only then visible to others.
        let txn = conn.transaction().await?;
        let copy = txn.copy_in(&format!("{sql} (FORMAT binary)")).await?;
        let mut writer = BinaryCopyInWriter::new(copy, &[Type::INT4, Type::TEXT]);
        for i in 0..1000i32 {
            writer.write(&[&i, &format!("committed {i}")]).await?;
        }
        check_eq!(writer.finish().await?, 1000);
        check_eq!(count(&observer, &t).await?, 0);
        txn.commit().await?;
        check_eq!(count(&observer, &t).await?, 1000);

        // A failed copy fails the transaction, which rolls back cleanly.
        let txn = conn.transaction().await?;
        txn.execute(
            &format!("INSERT INTO {t} VALUES (-1, 'before the copy')"),
            &[],
        )
        .await?;
        let mut copy = txn.copy_in(&sql).await?;
        copy.write(b"1\tok\nbad\trow\n").await?;
        let error = expect_err(copy.finish().await, "a bad row in a transaction")?;
        check_eq!(server_code(&error), Some("22P02"));
        let error = expect_err(count(&txn, &t).await, "a query in the failed transaction")?;
        check_eq!(server_code(&error), Some("25P02"));
        txn.rollback().await?;

        // An aborted copy likewise.
        let txn = conn.transaction().await?;
        let mut copy = txn.copy_in(&sql).await?;
        copy.write(b"1\tok\n").await?;
        copy.abort("no").await?;
        let error = expect_err(count(&txn, &t).await, "a query after the abort")?;
        check_eq!(server_code(&error), Some("25P02"));
        txn.rollback().await?;

        // And a dropped one.
        let txn = conn.transaction().await?;
        let mut copy = txn.copy_in(&sql).await?;
        copy.write(b"1\tok\n").await?;
        drop(copy);
        let error = expect_err(count(&txn, &t).await, "a query after the drop")?;
        check_eq!(server_code(&error), Some("25P02"));
        txn.rollback().await?;

        check_eq!(count(&conn, &t).await?, 1000);
        check_usable(&conn).await?;
        Ok(())
    })
}

#[test]
fn a_transactions_own_requests_wait_for_its_open_copy() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = table(&conn, "copy_txn_wait").await?;
        let txn = conn.transaction().await?;
        let mut copy = txn.copy_in(&format!("COPY {t} FROM STDIN")).await?;
        copy.write(b"1\tone\n").await?;
        // A request of the same transaction while its copy is open must not
        // reach the server in the middle of the copy data: it waits for the
        // copy to end, then runs inside the transaction.
        let sql = format!("SELECT count(*) FROM {t}");
        {
            let mut during = pin!(txn.query_one(sql.as_str(), &[]));
            check!(poll!(during.as_mut()).is_pending());
            copy.write(b"2\ttwo\n").await?;
            check!(
                poll!(during.as_mut()).is_pending(),
                "the transaction's query ran while its copy was open"
            );
            let copied = within(copy.finish(), "finish with a request queued").await?;
            let seen = within(during, "the transaction's query").await?;
            check_eq!(copied?, 2);
            check_eq!(seen?.get::<_, i64>(0)?, 2);
        }

        // A copy inside a savepoint rolls back with it; the transaction goes on.
        let savepoint = txn.savepoint("copy_sp").await?;
        let mut copy = savepoint.copy_in(&format!("COPY {t} FROM STDIN")).await?;
        copy.write(b"3\tthree\n4\tfour\n").await?;
        check_eq!(within(copy.finish(), "finish in a savepoint").await??, 2);
        check_eq!(count(&savepoint, &t).await?, 4);
        savepoint.rollback().await?;
        check_eq!(count(&txn, &t).await?, 2);
        txn.commit().await?;
        check_eq!(count(&conn, &t).await?, 2);
        Ok(())
    })
}

#[test]
fn copy_in_is_a_sink_of_bytes() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = table(&conn, "copy_sink").await?;
        let mut copy = conn.copy_in(&format!("COPY {t} FROM STDIN")).await?;
        // Chunks of every size: single rows, many rows, one over a megabyte,
        // and rows split across chunks.
        let mut chunks: Vec<Bytes> = (0..5000)
            .map(|i| Bytes::from(format!("{i}\tsmall {i}\n")))
            .collect();
        let big: String = (5000..25_000).map(|i| format!("{i}\tbig {i}\n")).collect();
        chunks.push(Bytes::from(big));
        let split = "25000\tsplit across chunks\n";
        chunks.push(Bytes::from_static(&split.as_bytes()[..7]));
        chunks.push(Bytes::from_static(&split.as_bytes()[7..]));
        forward(&mut copy, futures_util::stream::iter(chunks)).await?;
        // Closing the sink only flushed it: the copy is still open.
        copy.write(b"25001\tafter close\n").await?;
        forward(
            &mut copy,
            futures_util::stream::iter([Bytes::from_static(b"25002\tsecond forward\n")]),
        )
        .await?;
        check_eq!(copy.finish().await?, 25_003);
        let sums = conn
            .query_one(
                &format!("SELECT count(DISTINCT id), sum(id)::int8, min(id), max(id) FROM {t}"),
                &[],
            )
            .await?;
        check_eq!(sums.get::<_, i64>(0)?, 25_003);
        check_eq!(sums.get::<_, i64>(1)?, (0..25_003i64).sum::<i64>());
        check_eq!(sums.get::<_, i32>(2)?, 0);
        check_eq!(sums.get::<_, i32>(3)?, 25_002);
        let split_row = conn
            .query_one(&format!("SELECT name FROM {t} WHERE id = 25000"), &[])
            .await?;
        check_eq!(split_row.get::<_, String>(0)?, "split across chunks");
        Ok(())
    })
}

#[test]
fn a_copy_in_waits_for_a_server_that_stops_reading() -> TestResult {
    run(async {
        const ROW_PAYLOAD: usize = 4000;
        const ROWS: usize = 16 * 1024;
        const ROWS_PER_WRITE: usize = 16;
        let conn = connect().await?;
        let observer = connect().await?;
        let t = unique("copy_gate");
        let key = format!("hashtext('{t}')");
        // Each row passes a gate: an advisory lock the observer holds.
        conn.simple_query(&format!(
            "CREATE TABLE {t} (id int4, payload text); \
             CREATE FUNCTION {t}_gate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               PERFORM pg_advisory_lock_shared({key}); \
               PERFORM pg_advisory_unlock_shared({key}); \
               RETURN NEW; END $$; \
             CREATE TRIGGER {t}_gate BEFORE INSERT ON {t} \
               FOR EACH ROW EXECUTE FUNCTION {t}_gate()"
        ))
        .await?;
        observer
            .query_one(&format!("SELECT pg_advisory_lock({key})"), &[])
            .await?;
        let pid = conn.backend_pid().ok_or("no backend pid")?;
        let total = ROWS * (ROW_PAYLOAD + 7);
        let mut copy = conn.copy_in(&format!("COPY {t} FROM STDIN")).await?;
        let written = Cell::new(0usize);
        let payload = "p".repeat(ROW_PAYLOAD);

        let writer = async {
            let mut block = String::new();
            for id in 0..ROWS {
                block.push_str(&format!("{id:05}\t{payload}\n"));
                if (id + 1) % ROWS_PER_WRITE == 0 {
                    copy.write(block.as_bytes()).await?;
                    written.set(written.get() + block.len());
                    block.clear();
                }
            }
            Ok::<_, PgError>(())
        };
        let gatekeeper = async {
            let held = async {
                // The server is stuck in the first row's trigger, reading
                // nothing more. Give the writer plenty of round trips'
                // time: it must stop once the buffers on the way are full,
                // far short of the total.
                until_backend(&observer, pid, "wait_event = 'advisory'").await?;
                for _ in 0..1000 {
                    observer.query_one("SELECT 1", &[]).await?;
                }
                let at = written.get();
                check!(
                    at < total / 2,
                    "{at} of {total} bytes were accepted while the server read nothing"
                );
                Ok::<_, Box<dyn Error>>(at)
            }
            .await;
            let opened = observer
                .query_one(&format!("SELECT pg_advisory_unlock({key})"), &[])
                .await;
            let at = held?;
            check!(opened?.get::<_, bool>(0)?, "the gate was not held");
            Ok::<_, Box<dyn Error>>(at)
        };
        let (wrote, gate) = within(join(writer, gatekeeper), "the gated copy").await?;
        let at_gate = gate?;
        wrote?;
        check_eq!(written.get(), total);
        check!(at_gate > 0, "nothing was written before the gate");
        check_eq!(copy.finish().await?, ROWS as u64);
        let stored = conn
            .query_one(
                &format!("SELECT count(DISTINCT id), sum(length(payload))::int8 FROM {t}"),
                &[],
            )
            .await?;
        check_eq!(stored.get::<_, i64>(0)?, ROWS as i64);
        check_eq!(stored.get::<_, i64>(1)?, (ROWS * ROW_PAYLOAD) as i64);
        Ok(())
    })
}

#[test]
fn a_slow_copy_out_consumer_makes_the_server_wait() -> TestResult {
    run(async {
        let conn = connect().await?;
        let observer = connect().await?;
        let pid = conn.backend_pid().ok_or("no backend pid")?;
        let mut out = conn
            .copy_out(
                "COPY (SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 50000) g) \
                 TO STDOUT",
            )
            .await?;
        let first = out.next().await?.ok_or("no data")?;
        check!(first.starts_with(b"1\t"));
        // The client has stopped reading: the server is blocked sending the
        // rest of the ~50 MB, and the actor holds only a little of it.
        common::server_waits_for_the_reader(&observer, &conn, pid).await?;
        let mut lines = 1;
        let mut bytes = first.len();
        while let Some(chunk) = out.next().await? {
            lines += chunk.iter().filter(|&&b| b == b'\n').count();
            bytes += chunk.len();
        }
        check_eq!(lines, 50_000);
        check!(bytes > 50_000 * 1024, "only {bytes} bytes");
        common::actor_held_little_throughout(&conn)?;
        Ok(())
    })
}

#[test]
fn empty_copies_in_every_format() -> TestResult {
    run(async {
        let conn = connect().await?;
        let t = table(&conn, "copy_empty").await?;
        let copy = conn.copy_in(&format!("COPY {t} FROM STDIN")).await?;
        check_eq!(copy.finish().await?, 0);
        let copy = conn
            .copy_in(&format!("COPY {t} FROM STDIN (FORMAT binary)"))
            .await?;
        check_eq!(
            BinaryCopyInWriter::new(copy, &[Type::INT4, Type::TEXT])
                .finish()
                .await?,
            0
        );
        let copy = conn
            .copy_in(&format!("COPY {t} FROM STDIN (FORMAT csv)"))
            .await?;
        check_eq!(CsvCopyInWriter::new(copy).finish().await?, 0);
        check_eq!(count(&conn, &t).await?, 0);

        check!(copy_out_bytes(&conn, &format!("COPY {t} TO STDOUT"))
            .await?
            .is_empty());
        let out = conn
            .copy_out(&format!("COPY {t} TO STDOUT (FORMAT binary)"))
            .await?;
        let mut reader = BinaryCopyOutReader::new(out, &[Type::INT4, Type::TEXT]);
        check!(reader.next().await?.is_none());
        check!(reader.next().await?.is_none());
        check_usable(&conn).await?;
        Ok(())
    })
}
