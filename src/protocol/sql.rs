//! Building the few SQL statements the client writes itself (BEGIN,
//! SAVEPOINT, RESET, …) from names the user gave: identifiers are quoted so
//! that no name can end the statement early or start another.

use std::fmt::Write;

/// `name` as a double-quoted identifier (`"` doubled), as PostgreSQL's
/// `quote_ident` would always quote it. NUL bytes are refused later, when
/// the statement is encoded.
pub(crate) fn quote_identifier(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for c in name.chars() {
        if c == '"' {
            quoted.push('"');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// How a transaction isolates itself from concurrent ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IsolationLevel {
    /// `READ UNCOMMITTED` (PostgreSQL runs it as `READ COMMITTED`).
    ReadUncommitted,
    /// `READ COMMITTED`, PostgreSQL's default.
    ReadCommitted,
    /// `REPEATABLE READ`: one snapshot for the whole transaction.
    RepeatableRead,
    /// `SERIALIZABLE`: as if transactions ran one at a time; conflicts fail
    /// with SQLSTATE 40001 (see [`RetryPolicy`](crate::RetryPolicy)).
    Serializable,
}

/// The options of a `BEGIN`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BeginOptions {
    pub(crate) isolation: Option<IsolationLevel>,
    pub(crate) read_only: Option<bool>,
    pub(crate) deferrable: Option<bool>,
}

/// `BEGIN` with the options set (the server's defaults for the others).
pub(crate) fn begin(options: &BeginOptions) -> String {
    let mut modes = Vec::new();
    if let Some(level) = options.isolation {
        modes.push(match level {
            IsolationLevel::ReadUncommitted => "ISOLATION LEVEL READ UNCOMMITTED",
            IsolationLevel::ReadCommitted => "ISOLATION LEVEL READ COMMITTED",
            IsolationLevel::RepeatableRead => "ISOLATION LEVEL REPEATABLE READ",
            IsolationLevel::Serializable => "ISOLATION LEVEL SERIALIZABLE",
        });
    }
    if let Some(read_only) = options.read_only {
        modes.push(if read_only { "READ ONLY" } else { "READ WRITE" });
    }
    if let Some(deferrable) = options.deferrable {
        modes.push(if deferrable {
            "DEFERRABLE"
        } else {
            "NOT DEFERRABLE"
        });
    }
    let mut sql = String::from("BEGIN");
    if !modes.is_empty() {
        let _ = write!(sql, " {}", modes.join(", "));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_so_they_cannot_break_out() {
        assert_eq!(quote_identifier("sp1"), "\"sp1\"");
        assert_eq!(
            quote_identifier("a\"; DROP TABLE t; --"),
            "\"a\"\"; DROP TABLE t; --\""
        );
        assert_eq!(quote_identifier(""), "\"\"");
    }

    #[test]
    fn begin_lists_only_the_options_set() {
        assert_eq!(begin(&BeginOptions::default()), "BEGIN");
        let all = BeginOptions {
            isolation: Some(IsolationLevel::Serializable),
            read_only: Some(true),
            deferrable: Some(true),
        };
        assert_eq!(
            begin(&all),
            "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE"
        );
    }
}
