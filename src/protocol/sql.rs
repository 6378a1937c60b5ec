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

/// Whether any statement in `sql` is a `COPY … FROM STDIN`, which puts the
/// server in copy-in mode: only `copy_in` can feed it, so the query methods
/// refuse it up front. A small lexer, so that quotes, comments and
/// dollar-quoted bodies cannot hide or fake one.
pub(crate) fn has_copy_from_stdin(sql: &str) -> bool {
    let mut copy = CopyStatement::default();
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = skip_until(bytes, i, b"\n");
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'\'' => {
                i = skip_quoted(bytes, i, b'\'', false);
                copy.other_token();
            }
            b'"' => {
                i = skip_quoted(bytes, i, b'"', false);
                copy.other_token();
            }
            b'$' => {
                i = skip_dollar(bytes, i);
                copy.other_token();
            }
            b';' => {
                copy = CopyStatement::default();
                i += 1;
            }
            b'(' => {
                copy.depth += 1;
                i += 1;
            }
            b')' => {
                copy.depth = copy.depth.saturating_sub(1);
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'$'))
                {
                    i += 1;
                }
                let word = &sql[start..i];
                if bytes.get(i) == Some(&b'\'') && word.eq_ignore_ascii_case("e") {
                    // E'…': an escape string, where a backslash escapes the
                    // next character (a typed literal such as name'…' is not).
                    i = skip_quoted(bytes, i, b'\'', true);
                    copy.other_token();
                    continue;
                }
                if copy.word(word) {
                    return true;
                }
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                copy.other_token();
                i += 1;
            }
        }
    }
    false
}

/// Where a statement's tokens stand on the way to `COPY … FROM STDIN`.
#[derive(Default)]
struct CopyStatement {
    /// Tokens seen in this statement.
    tokens: usize,
    is_copy: bool,
    /// The last token at depth 0 was `FROM`.
    after_from: bool,
    depth: usize,
}

impl CopyStatement {
    /// Takes a word; true once the statement is a `COPY … FROM STDIN`.
    fn word(&mut self, word: &str) -> bool {
        self.tokens += 1;
        if self.tokens == 1 {
            self.is_copy = word.eq_ignore_ascii_case("copy");
            return false;
        }
        if !self.is_copy || self.depth > 0 {
            return false;
        }
        if self.after_from && word.eq_ignore_ascii_case("stdin") {
            return true;
        }
        self.after_from = word.eq_ignore_ascii_case("from");
        false
    }

    fn other_token(&mut self) {
        self.tokens += 1;
        if self.depth == 0 {
            self.after_from = false;
        }
    }
}

/// The index just past the next `end` sequence after `from` (or the end).
fn skip_until(bytes: &[u8], from: usize, end: &[u8]) -> usize {
    bytes[from..]
        .windows(end.len())
        .position(|w| w == end)
        .map_or(bytes.len(), |at| from + at + end.len())
}

/// Past a (nested) `/* … */` comment starting at `from`.
fn skip_block_comment(bytes: &[u8], from: usize) -> usize {
    let mut depth = 0usize;
    let mut i = from;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Past a `quote`-delimited token starting at `from` (a doubled quote stays
/// inside; with `escapes`, so does a backslash-escaped character).
fn skip_quoted(bytes: &[u8], from: usize, quote: u8, escapes: bool) -> usize {
    let mut i = from + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            c if c == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Past a dollar-quoted string (`$$…$$`, `$tag$…$tag$`) starting at
/// `from`, or just past the `$` of anything else (`$1`).
fn skip_dollar(bytes: &[u8], from: usize) -> usize {
    let mut i = from + 1;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        if i == from + 1 && bytes[i].is_ascii_digit() {
            return from + 1;
        }
        i += 1;
    }
    if bytes.get(i) != Some(&b'$') {
        return from + 1;
    }
    let tag = &bytes[from..=i];
    skip_until(bytes, i + 1, tag)
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
    fn finds_copy_from_stdin_and_nothing_else() {
        for sql in [
            "COPY t FROM STDIN",
            "copy t (a, b) from stdin with (format csv)",
            "  /* lead */ COPY -- note\n t FROM\n\tSTDIN;",
            "SELECT 1; COPY public.t FROM STDIN",
            "COPY \"my table\" FROM STDIN",
            "SELECT name'\\'; COPY t FROM STDIN",
            "SELECT e'it''s'; COPY t FROM STDIN",
        ] {
            assert!(has_copy_from_stdin(sql), "{sql}");
        }
        for sql in [
            "SELECT 'COPY t FROM STDIN'",
            "SELECT $$COPY t FROM STDIN$$",
            "SELECT $q$ ; COPY t FROM STDIN $q$",
            "COPY t TO STDOUT",
            "COPY (SELECT a FROM stdin) TO STDOUT",
            "COPY t FROM 'data.csv'",
            "SELECT * FROM stdin",
            "-- COPY t FROM STDIN",
            "/* COPY t FROM STDIN /* nested */ still */ SELECT 1",
            "SELECT E'\\' ; COPY t FROM STDIN'",
            "SELECT $1::text, 'COPY t FROM STDIN'",
            "",
        ] {
            assert!(!has_copy_from_stdin(sql), "{sql}");
        }
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
