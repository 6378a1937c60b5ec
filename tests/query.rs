//! Queries against the real server: simple and extended protocol, types,
//! errors, and the connection staying usable after each kind of error.

mod common;

use common::{connect, run, unique, TestResult};
use wasi_pg_client::{classify_error, ErrorClass, PgError};

#[test]
fn select_one_row_of_each_common_type() -> TestResult {
    run(async {
        let conn = connect().await?;
        let row = conn
            .query_one(
                "SELECT 1::int2, 2::int4, 3::int8, 1.5::float4, 2.5::float8, true, 'héllo'::text, \
                 NULL::int4, '\\x0102'::bytea",
                &[],
            )
            .await?;
        check_eq!(row.get::<_, i16>(0)?, 1);
        check_eq!(row.get::<_, i32>(1)?, 2);
        check_eq!(row.get::<_, i64>(2)?, 3);
        check_eq!(row.get::<_, f32>(3)?, 1.5);
        check_eq!(row.get::<_, f64>(4)?, 2.5);
        check_eq!(row.get::<_, bool>(5)?, true);
        check_eq!(row.get::<_, &str>(6)?, "héllo");
        check_eq!(row.get::<_, Option<i32>>(7)?, None);
        check_eq!(row.get::<_, Vec<u8>>(8)?, vec![1u8, 2]);
        conn.close().await?;
        Ok(())
    })
}

#[test]
fn query_returns_typed_rows_and_columns() -> TestResult {
    run(async {
        let conn = connect().await?;
        let result = conn
            .query("SELECT g AS id, 'n' || g AS name FROM generate_series(1, 3) g")
            .await?;
        check_eq!(result.len(), 3);
        check_eq!(result.columns().len(), 2);
        check_eq!(result.columns()[1].name(), "name");
        check_eq!(result.rows_affected(), Some(3));
        let mut ids = Vec::new();
        for row in result.iter() {
            let id: i32 = row.get(0)?;
            let name: String = row.get("name")?;
            check_eq!(name, format!("n{id}"));
            ids.push(id);
        }
        check_eq!(ids, vec![1, 2, 3]);
        Ok(())
    })
}

#[test]
fn query_accepts_several_statements() -> TestResult {
    run(async {
        let conn = connect().await?;
        let table = unique("multi");
        let result = conn
            .query(&format!(
                "CREATE TEMP TABLE {table} (id int4, label text, score numeric); \
                 INSERT INTO {table} VALUES (7, 'seven', 1.25), (8, NULL, 2); \
                 SELECT id, label, score FROM {table} ORDER BY id"
            ))
            .await?;
        check_eq!(result.len(), 2);
        let first = &result.rows()[0];
        check_eq!(first.get::<_, i32>(0)?, 7);
        check_eq!(first.get::<_, String>("label")?, "seven");
        // Not a scalar this client converts from text: readable as text.
        check_eq!(first.get::<_, String>(2)?, "1.25");
        check_eq!(result.rows()[1].get::<_, Option<String>>(1)?, None);
        Ok(())
    })
}

#[test]
fn query_params_binds_and_reads_back() -> TestResult {
    run(async {
        let conn = connect().await?;
        let table = unique("users");
        conn.query(&format!(
            "CREATE TEMP TABLE {table} (id serial, name text, age int4, city text)"
        ))
        .await?;
        let insert = format!("INSERT INTO {table} (name, age, city) VALUES ($1, $2, $3)");
        check_eq!(conn.execute(&insert, &[&"Ana", &30i32, &"Paris"]).await?, 1);
        let r = conn
            .execute_params(&insert, &[&"Bo", &17i32, &"Paris"])
            .await?;
        check_eq!(r.rows_affected(), Some(1));
        conn.execute(&insert, &[&"Cy", &40i32, &Option::<&str>::None])
            .await?;
        let result = conn
            .query_params(
                &format!("SELECT * FROM {table} WHERE age > $1 AND city = $2"),
                &[&18i32, &"Paris"],
            )
            .await?;
        check_eq!(result.len(), 1);
        check_eq!(result.rows()[0].get::<_, &str>("name")?, "Ana");
        let none = conn
            .query_opt(
                &format!("SELECT name FROM {table} WHERE age > $1"),
                &[&100i32],
            )
            .await?;
        check!(none.is_none());
        Ok(())
    })
}

#[test]
fn single_row_queries_count_the_rows_they_do_not_keep() -> TestResult {
    run(async {
        let conn = connect().await?;
        let series = "SELECT g FROM generate_series(1, $1::int4) g";
        let row = conn.query_one(series, &[&1i32]).await?;
        check_eq!(row.get::<_, i32>(0)?, 1);
        for (rows, want) in [(0i32, "got 0"), (3, "got 3")] {
            match conn.query_one(series, &[&rows]).await {
                Err(PgError::Decode(message)) => check!(message.contains(want), "{message}"),
                other => return Err(format!("query_one of {rows} rows: {other:?}").into()),
            }
        }
        check!(conn.query_opt(series, &[&0i32]).await?.is_none());
        let row = conn.query_opt(series, &[&1i32]).await?;
        check_eq!(row.map(|r| r.get::<_, i32>(0)).transpose()?, Some(1));
        match conn.query_opt(series, &[&2i32]).await {
            Err(PgError::Decode(message)) => check!(message.contains("got 2"), "{message}"),
            other => return Err(format!("query_opt of 2 rows: {other:?}").into()),
        }
        // execute reads the count from the command tag, rows or not.
        check_eq!(conn.execute(series, &[&5i32]).await?, 5);
        check_eq!(conn.execute("SET application_name = 'x'", &[]).await?, 0);
        check_eq!(conn.query_one("SELECT 7", &[]).await?.get::<_, i32>(0)?, 7);
        Ok(())
    })
}

#[test]
fn prepared_statement_runs_without_sql() -> TestResult {
    run(async {
        let conn = connect().await?;
        let stmt = conn.prepare("SELECT $1::int4 * 2 AS doubled").await?;
        check_eq!(stmt.params().len(), 1);
        check_eq!(stmt.columns()[0].name(), "doubled");
        for i in 0..5i32 {
            let row = conn.query_one(&stmt, &[&i]).await?;
            check_eq!(row.get::<_, i32>(0)?, i * 2);
        }
        Ok(())
    })
}

#[test]
fn server_error_carries_sqlstate_and_connection_survives() -> TestResult {
    run(async {
        let conn = connect().await?;
        let table = unique("uniq");
        conn.query(&format!("CREATE TEMP TABLE {table} (email text UNIQUE)"))
            .await?;
        let insert = format!("INSERT INTO {table} VALUES ($1)");
        conn.execute(&insert, &[&"a@example.com"]).await?;
        match conn.execute_params(&insert, &[&"a@example.com"]).await {
            Err(PgError::Server(e)) if e.is_unique_violation() => {
                check_eq!(e.code(), "23505");
                check!(e.constraint.is_some());
            }
            other => return Err(format!("expected a unique violation, got {other:?}").into()),
        }
        let e = conn
            .query("SELEC 1")
            .await
            .err()
            .ok_or("syntax error expected")?;
        check_eq!(e.code(), Some("42601"));
        check!(
            e.to_string().contains("42601"),
            "Display shows SQLSTATE: {e}"
        );
        check_eq!(classify_error(&e), ErrorClass::Permanent);
        let e = conn
            .query("SELECT 1/0")
            .await
            .err()
            .ok_or("division by zero expected")?;
        check_eq!(e.code(), Some("22012"));
        // Still usable.
        check_eq!(conn.query_one("SELECT 5", &[]).await?.get::<_, i32>(0)?, 5);
        Ok(())
    })
}

#[test]
fn bad_parameters_fail_before_sending() -> TestResult {
    run(async {
        let conn = connect().await?;
        let e = conn
            .query_params("SELECT $1::int4, $2::int4", &[&1i32])
            .await
            .err()
            .ok_or("wrong parameter count must fail")?;
        check!(matches!(e, PgError::Encode(_)), "{e:?}");
        check!(e.to_string().contains("expects 2 parameters"), "{e}");
        let e = conn
            .query_params("SELECT $1::int4", &[&"not an int"])
            .await
            .err()
            .ok_or("a text for an int4 must fail")?;
        check!(matches!(e, PgError::Encode(_)), "{e:?}");
        check_eq!(
            conn.query_one("SELECT $1::int4", &[&9i32])
                .await?
                .get::<_, i32>(0)?,
            9
        );
        Ok(())
    })
}

#[test]
fn row_get_errors_are_clear() -> TestResult {
    run(async {
        let conn = connect().await?;
        let row = conn
            .query_one("SELECT 1::int4 AS n, NULL::text AS t", &[])
            .await?;
        let e = row
            .get::<_, String>("n")
            .err()
            .ok_or("wrong type must fail")?;
        check!(e.to_string().contains("int4"), "{e}");
        let e = row.get::<_, String>("t").err().ok_or("NULL must fail")?;
        check!(e.to_string().contains("NULL"), "{e}");
        let e = row
            .get::<_, i32>("missing")
            .err()
            .ok_or("unknown column must fail")?;
        check!(e.to_string().contains("missing"), "{e}");
        Ok(())
    })
}

#[test]
fn parameter_status_is_readable() -> TestResult {
    run(async {
        let conn = connect().await?;
        let version = conn
            .parameter("server_version")
            .ok_or("server_version missing")?;
        check!(
            version.chars().next().is_some_and(|c| c.is_ascii_digit()),
            "{version}"
        );
        conn.query("SET application_name = 'param_test'").await?;
        // ParameterStatus arrives before the SET's ReadyForQuery.
        check_eq!(
            conn.parameter("application_name").as_deref(),
            Some("param_test")
        );
        Ok(())
    })
}

#[test]
fn notices_reach_the_handler() -> TestResult {
    run(async {
        let conn = connect().await?;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        conn.set_notice_handler(move |n| {
            if let Ok(mut v) = sink.lock() {
                v.push(n.message.clone());
            }
        });
        conn.query("DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$")
            .await?;
        let seen = seen.lock().map_err(|e| e.to_string())?.clone();
        check_eq!(seen, vec!["hello from plpgsql".to_string()]);
        Ok(())
    })
}

#[test]
fn close_then_calls_fail_as_broken() -> TestResult {
    run(async {
        let conn = connect().await?;
        let other = conn.clone();
        conn.close().await?;
        let e = other
            .query("SELECT 1")
            .await
            .err()
            .ok_or("closed connection must fail")?;
        check_eq!(classify_error(&e), ErrorClass::Broken);
        check!(other.is_closed());
        Ok(())
    })
}

#[test]
fn admin_termination_breaks_every_request() -> TestResult {
    run(async {
        let victim = connect().await?;
        let admin = connect().await?;
        let pid = victim.backend_pid().ok_or("no backend pid")?;
        admin
            .query_params("SELECT pg_terminate_backend($1)", &[&pid])
            .await?;
        let e = victim
            .query("SELECT 1")
            .await
            .err()
            .ok_or("terminated backend must fail")?;
        check_eq!(classify_error(&e), ErrorClass::Broken);
        let e = victim
            .query("SELECT 1")
            .await
            .err()
            .ok_or("later calls must fail too")?;
        check_eq!(classify_error(&e), ErrorClass::Broken);
        Ok(())
    })
}

#[test]
fn without_a_statement_cache_nothing_stays_prepared() -> TestResult {
    run(async {
        let config = common::config()?.statement_cache_size(0);
        let conn = wasi_pg_client::Connection::connect(&config).await?;
        for i in 0..5i32 {
            let row = conn.query_one("SELECT $1::int4 + 1", &[&i]).await?;
            check_eq!(row.get::<_, i32>(0)?, i + 1);
        }
        // Only unnamed statements, which pg_prepared_statements never lists
        // (what PgBouncer in transaction mode needs), also when pipelined.
        let answers = futures_util::future::join_all((0..20i32).map(|i| {
            let conn = &conn;
            async move { conn.query_one("SELECT $1::int4 * 2", &[&i]).await }
        }))
        .await;
        for (i, answer) in answers.into_iter().enumerate() {
            check_eq!(answer?.get::<_, i32>(0)?, 2 * i as i32);
        }
        let named: i64 = conn
            .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
            .await?
            .get(0)?;
        check_eq!(named, 0);
        // Nothing was cached: each sequential call described its statement
        // (a miss); concurrent ones may share a description in flight.
        let stats = conn.statement_cache_stats();
        check!(stats.misses >= 6, "{stats:?}");
        check_eq!(stats.hits + stats.misses, 26);
        Ok(())
    })
}

#[test]
fn the_statement_cache_keeps_statements_for_reuse() -> TestResult {
    run(async {
        let conn = connect().await?;
        for i in 0..5i32 {
            conn.query_one("SELECT $1::int4 * 3", &[&i]).await?;
        }
        let stats = conn.statement_cache_stats();
        check_eq!((stats.hits, stats.misses), (4, 1));
        let names: i64 = conn
            .query_one(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int4 * 3'",
                &[],
            )
            .await?
            .get(0)?;
        check_eq!(names, 1);
        Ok(())
    })
}

#[test]
fn a_statement_dropped_behind_our_back_is_prepared_again() -> TestResult {
    run(async {
        let conn = connect().await?;
        for i in 0..2i32 {
            check_eq!(
                conn.query_one("SELECT $1::int4 + 10", &[&i])
                    .await?
                    .get::<_, i32>(0)?,
                i + 10
            );
        }
        conn.query("DEALLOCATE ALL").await?;
        check_eq!(
            conn.query_one("SELECT $1::int4 + 10", &[&5i32])
                .await?
                .get::<_, i32>(0)?,
            15
        );
        check_eq!(
            conn.query_one("SELECT $1::int4 + 10", &[&6i32])
                .await?
                .get::<_, i32>(0)?,
            16
        );
        Ok(())
    })
}

#[test]
fn a_table_changed_under_a_cached_plan_is_prepared_again() -> TestResult {
    run(async {
        let conn = connect().await?;
        let table = unique("replan");
        conn.query(&format!(
            "CREATE TEMP TABLE {table} (a int4); INSERT INTO {table} VALUES (1)"
        ))
        .await?;
        let select = format!("SELECT * FROM {table} WHERE a = $1");
        check_eq!(
            conn.query_params(&select, &[&1i32]).await?.columns().len(),
            1
        );
        conn.query(&format!("ALTER TABLE {table} ADD COLUMN b int4 DEFAULT 5"))
            .await?;
        let result = conn.query_params(&select, &[&1i32]).await?;
        check_eq!(result.columns().len(), 2);
        check_eq!(result.rows()[0].get::<_, i32>("b")?, 5);
        Ok(())
    })
}
