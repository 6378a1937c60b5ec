//! Rows and results as users read them.
//!
//! `Row::get` never panics: a wrong type, a NULL read into a non-`Option`, or
//! an unknown column is a `PgError::Decode` that names the column.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use postgres_types::{FromSql, Type, WrongType};

use crate::protocol::values::ValueRanges;
use crate::protocol::{text, values};
use crate::PgError;

/// A result column: its name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Column {
    name: String,
    type_: Type,
    table_oid: Option<u32>,
    column_id: Option<i16>,
    /// Its values declare element counts to check before decoding (decided
    /// once here, not on every `get`).
    declares_counts: bool,
}

impl Column {
    pub(crate) fn new(name: String, type_: Type, table_oid: u32, column_id: i16) -> Column {
        Column {
            name,
            declares_counts: values::declares_counts(&type_),
            type_,
            table_oid: (table_oid != 0).then_some(table_oid),
            column_id: (column_id != 0).then_some(column_id),
        }
    }
    /// The column's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The column's type.
    pub fn type_(&self) -> &Type {
        &self.type_
    }
    /// The OID of the table the column comes from, if it is a table column.
    pub fn table_oid(&self) -> Option<u32> {
        self.table_oid
    }
    /// The column's attribute number in that table.
    pub fn column_id(&self) -> Option<i16> {
        self.column_id
    }
}

/// Something that picks a column: a `usize` position or a `&str` name.
pub trait RowIndex: fmt::Display + sealed::Sealed {
    #[doc(hidden)]
    fn position(&self, columns: &[Column]) -> Option<usize>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for usize {}
    impl Sealed for str {}
    impl<T: ?Sized + Sealed> Sealed for &T {}
}

impl RowIndex for usize {
    fn position(&self, columns: &[Column]) -> Option<usize> {
        (*self < columns.len()).then_some(*self)
    }
}

impl RowIndex for str {
    fn position(&self, columns: &[Column]) -> Option<usize> {
        columns.iter().position(|c| c.name == self).or_else(|| {
            columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(self))
        })
    }
}

impl<T: ?Sized + RowIndex> RowIndex for &T {
    fn position(&self, columns: &[Column]) -> Option<usize> {
        T::position(*self, columns)
    }
}

/// Text rows (from the simple protocol) keep their text and, for scalar
/// types, a binary copy that postgres-types can decode.
#[derive(Debug, Clone)]
struct TextRow {
    binary: Vec<Option<Vec<u8>>>,
}

/// One row of a result.
#[derive(Clone)]
pub struct Row {
    columns: Arc<[Column]>,
    data: Bytes,
    ranges: ValueRanges,
    text: Option<Box<TextRow>>,
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Row")
            .field("columns", &self.columns)
            .field("len", &self.ranges.len())
            .finish()
    }
}

impl Row {
    /// A binary-format row.
    pub(crate) fn new(
        columns: Arc<[Column]>,
        data: Bytes,
        ranges: ValueRanges,
    ) -> Result<Row, PgError> {
        if ranges.len() != columns.len() {
            return Err(PgError::Protocol(format!(
                "a row has {} values for {} columns",
                ranges.len(),
                columns.len()
            )));
        }
        Ok(Row {
            columns,
            data,
            ranges,
            text: None,
        })
    }

    /// A text-format row (simple query protocol).
    pub(crate) fn new_text(
        columns: Arc<[Column]>,
        data: Bytes,
        ranges: ValueRanges,
    ) -> Result<Row, PgError> {
        let mut row = Row::new(columns, data, ranges)?;
        let binary = row
            .columns
            .iter()
            .zip(&row.ranges)
            .map(|(c, r)| {
                r.range()
                    .and_then(|r| row.data.get(r))
                    .and_then(|raw| text::to_binary(&c.type_, raw))
            })
            .collect();
        row.text = Some(Box::new(TextRow { binary }));
        Ok(row)
    }

    /// The row's columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the row has no values.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Reads a value by position (`usize`) or column name (`&str`).
    ///
    /// Borrowing types such as `&str` and `&[u8]` read without copying.
    ///
    /// ```no_run
    /// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
    /// let row = conn.query_one("SELECT 1::int4 AS id, 'x'::text AS name", &[]).await?;
    /// let id: i32 = row.get(0)?;
    /// let name: &str = row.get("name")?;
    /// let missing: Option<i32> = row.get("id")?;
    /// # let _ = (id, name, missing); Ok(()) }
    /// ```
    pub fn get<'a, I, T>(&'a self, index: I) -> Result<T, PgError>
    where
        I: RowIndex,
        T: FromSql<'a>,
    {
        let Some(i) = index.position(&self.columns) else {
            return Err(PgError::Decode(format!(
                "no column {index} (the row has {}: {})",
                self.columns.len(),
                self.columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let column = &self.columns[i];
        let raw = self.ranges[i].range().and_then(|r| self.data.get(r));
        let decode_err = |e: Box<dyn std::error::Error + Sync + Send>| {
            let what = if e.is::<WrongType>() {
                format!(
                    "column {index} has type {} which cannot be read as {}",
                    column.type_,
                    std::any::type_name::<T>()
                )
            } else if raw.is_none() {
                format!(
                    "column {index} is NULL; read it as Option<{}>",
                    std::any::type_name::<T>()
                )
            } else {
                format!(
                    "column {index} (type {}) could not be decoded: {e}",
                    column.type_
                )
            };
            PgError::Decode(what)
        };

        if let Some(text) = &self.text {
            // Scalars decode from their binary copy; anything else can be
            // read as text.
            if T::accepts(&column.type_) {
                if let Some(binary) = text.binary.get(i).and_then(|b| b.as_deref()) {
                    return T::from_sql(&column.type_, binary).map_err(decode_err);
                }
                if raw.is_none() {
                    return T::from_sql_null(&column.type_).map_err(decode_err);
                }
            }
            if T::accepts(&Type::TEXT) {
                return T::from_sql_nullable(&Type::TEXT, raw).map_err(decode_err);
            }
            return Err(PgError::Decode(format!(
                "column {index} (type {}) came in text format from a multi-statement query; \
                 read it as String, or run the statement alone to get binary values",
                column.type_
            )));
        }

        if !T::accepts(&column.type_) {
            return Err(decode_err(Box::new(WrongType::new::<T>(
                column.type_.clone(),
            ))));
        }
        if let (true, Some(raw)) = (column.declares_counts, raw) {
            values::check_declared_counts(&column.type_, raw)
                .map_err(|why| PgError::Decode(format!("column {index}: {why}")))?;
        }
        T::from_sql_nullable(&column.type_, raw).map_err(decode_err)
    }
}

/// The outcome of a query: its rows (possibly none), their columns, and the
/// command tag.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    pub(crate) columns: Option<Arc<[Column]>>,
    pub(crate) rows: Vec<Row>,
    pub(crate) command_tag: Option<String>,
}

impl QueryResult {
    /// Iterates over the rows.
    pub fn iter(&self) -> std::slice::Iter<'_, Row> {
        self.rows.iter()
    }
    /// The rows.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }
    /// Takes the rows.
    pub fn into_rows(self) -> Vec<Row> {
        self.rows
    }
    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    /// The result's columns (empty for a statement that returns no rows).
    pub fn columns(&self) -> &[Column] {
        self.columns.as_deref().unwrap_or(&[])
    }
    /// The command tag, e.g. `INSERT 0 3`.
    pub fn command_tag(&self) -> Option<&str> {
        self.command_tag.as_deref()
    }
    /// Rows inserted, updated, deleted, selected, copied… as the command tag
    /// reports; `None` for commands that report no count (e.g. `CREATE`).
    pub fn rows_affected(&self) -> Option<u64> {
        rows_affected(self.command_tag.as_deref()?)
    }
}

impl<'a> IntoIterator for &'a QueryResult {
    type Item = &'a Row;
    type IntoIter = std::slice::Iter<'a, Row>;
    fn into_iter(self) -> Self::IntoIter {
        self.rows.iter()
    }
}

impl IntoIterator for QueryResult {
    type Item = Row;
    type IntoIter = std::vec::IntoIter<Row>;
    fn into_iter(self) -> Self::IntoIter {
        self.rows.into_iter()
    }
}

/// The count at the end of a command tag such as `UPDATE 5` or `INSERT 0 1`.
pub(crate) fn rows_affected(tag: &str) -> Option<u64> {
    let mut words = tag.split_whitespace();
    let command = words.next()?;
    if !matches!(
        command,
        "INSERT" | "UPDATE" | "DELETE" | "SELECT" | "MERGE" | "MOVE" | "FETCH" | "COPY"
    ) {
        return None;
    }
    words.last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::values::ValueSpan;

    #[test]
    fn command_tags() {
        assert_eq!(rows_affected("INSERT 0 3"), Some(3));
        assert_eq!(rows_affected("UPDATE 5"), Some(5));
        assert_eq!(rows_affected("SELECT 0"), Some(0));
        assert_eq!(rows_affected("CREATE TABLE"), None);
    }

    fn row() -> Row {
        let columns: Arc<[Column]> = vec![
            Column::new("id".into(), Type::INT4, 0, 0),
            Column::new("name".into(), Type::TEXT, 0, 0),
        ]
        .into();
        let data = Bytes::from_static(b"\x00\x00\x00\x07bob");
        let spans = [ValueSpan::new(0, 4).unwrap(), ValueSpan::NULL];
        Row::new(columns, data, spans.into_iter().collect()).unwrap()
    }

    #[test]
    fn get_by_index_and_name() {
        let row = row();
        assert_eq!(row.get::<_, i32>(0).unwrap(), 7);
        assert_eq!(row.get::<_, i32>("id").unwrap(), 7);
        assert_eq!(row.get::<_, Option<&str>>("name").unwrap(), None);
    }

    #[test]
    fn errors_name_the_column() {
        let row = row();
        let e = row.get::<_, String>(0).unwrap_err().to_string();
        assert!(e.contains("column 0 has type int4"), "{e}");
        let e = row.get::<_, String>("name").unwrap_err().to_string();
        assert!(e.contains("is NULL"), "{e}");
        let e = row.get::<_, i32>("nope").unwrap_err().to_string();
        assert!(e.contains("no column nope"), "{e}");
        let e = row.get::<_, i32>(9).unwrap_err().to_string();
        assert!(e.contains("no column 9"), "{e}");
    }
}
