//! Encoding of frontend requests, with every length and count checked before
//! the request can reach the socket.
//!
//! Each function appends one complete request to a buffer of its own; on any
//! error the buffer is truncated back to where it started, so a request that
//! cannot be encoded sends nothing (a wrapped length would let a value split
//! into attacker-chosen messages: pgx CVE-2024-27304).

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use postgres_types::{ToSql, Type};

use crate::PgError;

/// The most parameters one Bind can carry (the count is a 16-bit field).
pub(crate) const MAX_PARAMETERS: usize = u16::MAX as usize;

/// Binary format code.
const BINARY: i16 = 1;

/// Runs `f` on `buf`, undoing whatever it appended if it fails.
fn transactional<F>(buf: &mut BytesMut, f: F) -> Result<(), PgError>
where
    F: FnOnce(&mut BytesMut) -> Result<(), PgError>,
{
    let start = buf.len();
    let result = f(buf);
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

fn encode_error(what: &str, e: std::io::Error) -> PgError {
    PgError::Encode(format!("{what}: {e}"))
}

/// Parse + Bind + Describe portal + Execute + Sync for SQL without
/// parameters, through the unnamed statement and portal, binary results.
pub(crate) fn query_extended(sql: &str, buf: &mut BytesMut) -> Result<(), PgError> {
    refuse_copy_from_stdin(sql)?;
    transactional(buf, |buf| {
        frontend::parse("", sql, std::iter::empty(), buf).map_err(|e| encode_error("query", e))?;
        bind(buf, "", &[], &[])?;
        frontend::describe(b'P', "", buf).map_err(|e| encode_error("describe", e))?;
        frontend::execute("", 0, buf).map_err(|e| encode_error("execute", e))?;
        frontend::sync(buf);
        Ok(())
    })
}

/// A simple-protocol Query (several statements allowed; text results).
pub(crate) fn simple_query(sql: &str, buf: &mut BytesMut) -> Result<(), PgError> {
    refuse_copy_from_stdin(sql)?;
    copy_query(sql, buf)
}

/// A simple Query for a statement the library composed itself (BEGIN,
/// COMMIT, SAVEPOINT, LISTEN, RESET…), in a buffer of its size. Never a
/// COPY, so it skips the scan user SQL gets.
pub(crate) fn own_query(sql: &str) -> Result<BytesMut, PgError> {
    // Tag, length, the text and its terminating NUL.
    let mut buf = BytesMut::with_capacity(sql.len() + 6);
    copy_query(sql, &mut buf)?;
    Ok(buf)
}

/// A simple-protocol Query that may be a `COPY … FROM STDIN`: only
/// `copy_in` sends one, and follows it with the data.
pub(crate) fn copy_query(sql: &str, buf: &mut BytesMut) -> Result<(), PgError> {
    transactional(buf, |buf| {
        frontend::query(sql, buf).map_err(|e| encode_error("query", e))
    })
}

/// A `COPY … FROM STDIN` sent by a query method would leave the server
/// waiting for data that never comes.
fn refuse_copy_from_stdin(sql: &str) -> Result<(), PgError> {
    if crate::protocol::sql::has_copy_from_stdin(sql) {
        return Err(PgError::Encode(
            "COPY … FROM STDIN cannot run through a query method; use copy_in (and copy_out \
             for COPY … TO STDOUT)"
                .into(),
        ));
    }
    Ok(())
}

/// Parse + Describe statement + Sync: prepares `sql` as statement `name`.
pub(crate) fn prepare(name: &str, sql: &str, buf: &mut BytesMut) -> Result<(), PgError> {
    refuse_copy_from_stdin(sql)?;
    transactional(buf, |buf| {
        frontend::parse(name, sql, std::iter::empty(), buf)
            .map_err(|e| encode_error("prepare", e))?;
        frontend::describe(b'S', name, buf).map_err(|e| encode_error("describe", e))?;
        frontend::sync(buf);
        Ok(())
    })
}

/// Bind + Execute + Sync of prepared statement `statement` with `params`
/// encoded for `types`, binary results. The unnamed statement (`""`) is
/// parsed again from `sql` with the parameter types spelled out, so the
/// request stands alone: another request, or a pooler handing us another
/// server connection, may have replaced it since it was described.
pub(crate) fn execute_statement(
    statement: &str,
    sql: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
    buf: &mut BytesMut,
) -> Result<(), PgError> {
    transactional(buf, |buf| {
        execute_unsynced(statement, sql, types, params, buf)?;
        frontend::sync(buf);
        Ok(())
    })
}

/// [`execute_statement`] without the Sync: one statement of a pipeline.
pub(crate) fn execute_unsynced(
    statement: &str,
    sql: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
    buf: &mut BytesMut,
) -> Result<(), PgError> {
    transactional(buf, |buf| {
        bind_statement(buf, "", statement, sql, types, params)?;
        frontend::execute("", 0, buf).map_err(|e| encode_error("execute", e))
    })
}

/// Sync: ends a pipeline's implicit transaction (or one of its statements).
pub(crate) fn sync(buf: &mut BytesMut) {
    frontend::sync(buf);
}

/// Opens `portal` on `statement` and fetches its first `fetch_size` rows:
/// [Parse] + Bind + Execute + Flush. No Sync: the portal lives in the
/// implicit transaction until [`cursor_close`] syncs.
pub(crate) fn cursor_open(
    portal: &str,
    statement: &str,
    sql: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
    fetch_size: i32,
    buf: &mut BytesMut,
) -> Result<(), PgError> {
    transactional(buf, |buf| {
        bind_statement(buf, portal, statement, sql, types, params)?;
        cursor_fetch(portal, fetch_size, buf)
    })
}

/// Execute `fetch_size` more rows of `portal` + Flush.
pub(crate) fn cursor_fetch(
    portal: &str,
    fetch_size: i32,
    buf: &mut BytesMut,
) -> Result<(), PgError> {
    transactional(buf, |buf| {
        frontend::execute(portal, fetch_size, buf).map_err(|e| encode_error("execute", e))?;
        frontend::flush(buf);
        Ok(())
    })
}

/// Close portal + Sync: ends the cursor's implicit transaction.
pub(crate) fn cursor_close(portal: &str, buf: &mut BytesMut) -> Result<(), PgError> {
    transactional(buf, |buf| {
        frontend::close(b'P', portal, buf).map_err(|e| encode_error("close", e))?;
        frontend::sync(buf);
        Ok(())
    })
}

/// Close statement + Sync.
pub(crate) fn close_statement(name: &str, buf: &mut BytesMut) -> Result<(), PgError> {
    transactional(buf, |buf| {
        frontend::close(b'S', name, buf).map_err(|e| encode_error("close", e))?;
        frontend::sync(buf);
        Ok(())
    })
}

/// CopyDone: the data is complete.
pub(crate) fn copy_done(buf: &mut BytesMut) {
    frontend::copy_done(buf);
}

/// CopyFail: abandons the copy with `reason` (the server's error quotes it).
pub(crate) fn copy_fail(reason: &str, buf: &mut BytesMut) -> Result<(), PgError> {
    transactional(buf, |buf| {
        frontend::copy_fail(reason, buf).map_err(|e| encode_error("copy fail", e))
    })
}

/// Terminate.
pub(crate) fn terminate(buf: &mut BytesMut) {
    frontend::terminate(buf);
}

/// Checks the parameter count against the statement before encoding.
pub(crate) fn check_param_count(expected: usize, given: usize) -> Result<(), PgError> {
    if given > MAX_PARAMETERS {
        return Err(PgError::Encode(format!(
            "{given} parameters given; the protocol allows at most {MAX_PARAMETERS}"
        )));
    }
    if expected != given {
        return Err(PgError::Encode(format!(
            "the statement expects {expected} parameter{}, but {given} {} given",
            if expected == 1 { "" } else { "s" },
            if given == 1 { "was" } else { "were" }
        )));
    }
    Ok(())
}

fn bind(
    buf: &mut BytesMut,
    statement: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), PgError> {
    bind_portal(buf, "", statement, types, params)
}

/// Bind of `statement` into `portal`; the unnamed statement is parsed
/// again first, from `sql` with its parameter types, so the request does not
/// depend on what an earlier one left behind.
fn bind_statement(
    buf: &mut BytesMut,
    portal: &str,
    statement: &str,
    sql: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), PgError> {
    if statement.is_empty() {
        frontend::parse("", sql, types.iter().map(Type::oid), buf)
            .map_err(|e| encode_error("query", e))?;
    }
    bind_portal(buf, portal, statement, types, params)
}

fn bind_portal(
    buf: &mut BytesMut,
    portal: &str,
    statement: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), PgError> {
    check_param_count(types.len(), params.len())?;
    let mut failed = None;
    let formats = params
        .iter()
        .zip(types)
        .map(|(p, ty)| p.encode_format(ty) as i16);
    let values = params.iter().zip(types).enumerate();
    let result = frontend::bind(
        portal,
        statement,
        formats,
        values,
        |(index, (param, ty)), buf| match param.to_sql_checked(ty, buf) {
            Ok(postgres_types::IsNull::No) => Ok(postgres_protocol::IsNull::No),
            Ok(postgres_types::IsNull::Yes) => Ok(postgres_protocol::IsNull::Yes),
            Err(e) => {
                failed = Some((index, ty.clone(), e.to_string()));
                Err(e)
            }
        },
        Some(BINARY),
        buf,
    );
    match (result, failed) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some((index, ty, reason))) => Err(PgError::Encode(format!(
            "parameter ${} (type {ty}) could not be encoded: {reason}",
            index + 1
        ))),
        (Err(frontend::BindError::Conversion(e)), None) => Err(PgError::Encode(format!(
            "a parameter could not be encoded: {e}"
        ))),
        (Err(frontend::BindError::Serialization(e)), None) => Err(encode_error("bind", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_parameter_count_appends_nothing() {
        let mut buf = BytesMut::from(&b"prefix"[..]);
        let e = execute_statement("s1", "", &[Type::INT4], &[], &mut buf).unwrap_err();
        assert!(e.to_string().contains("expects 1 parameter"), "{e}");
        assert_eq!(&buf[..], b"prefix");
    }

    #[test]
    fn unencodable_parameter_appends_nothing() {
        let mut buf = BytesMut::new();
        let e = execute_statement("s1", "", &[Type::INT4], &[&"text"], &mut buf).unwrap_err();
        assert!(e.to_string().contains("parameter $1"), "{e}");
        assert!(buf.is_empty());
    }

    #[test]
    fn embedded_nul_in_sql_is_refused() {
        let mut buf = BytesMut::new();
        assert!(query_extended("SELECT 1\0", &mut buf).is_err());
        assert!(buf.is_empty());
    }

    #[test]
    fn too_many_parameters_is_refused() {
        let e = check_param_count(70_000, 70_000).unwrap_err();
        assert!(e.to_string().contains("at most 65535"), "{e}");
    }
}
