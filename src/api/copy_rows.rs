//! Typed rows over COPY: binary rows written from `ToSql` values and read
//! back as `Row`s, and CSV rows written from text fields.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use postgres_types::{ToSql, Type};

use crate::api::row::{Column, Row};
use crate::protocol::copy_format::{
    binary_header, binary_row, encode_binary_row, encode_csv_row, BinaryItem, CsvField,
    BINARY_HEADER, BINARY_TRAILER,
};
use crate::{CopyIn, CopyOut, PgError};

/// Writes rows of typed values into a `COPY … FROM STDIN (FORMAT binary)`.
///
/// ```no_run
/// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
/// use wasi_pg_client::{types::Type, BinaryCopyInWriter};
/// let copy = conn.copy_in("COPY items (id, name) FROM STDIN (FORMAT binary)").await?;
/// let mut writer = BinaryCopyInWriter::new(copy, &[Type::INT4, Type::TEXT]);
/// writer.write(&[&1i32, &"apple"]).await?;
/// writer.write(&[&2i32, &None::<&str>]).await?;
/// assert_eq!(writer.finish().await?, 2);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BinaryCopyInWriter {
    copy: CopyIn,
    types: Vec<Type>,
    header_written: bool,
}

impl BinaryCopyInWriter {
    /// A writer of rows with these column types, in the COPY's column
    /// order.
    pub fn new(copy: CopyIn, types: &[Type]) -> Self {
        BinaryCopyInWriter {
            copy,
            types: types.to_vec(),
            header_written: false,
        }
    }

    /// Appends the header before the first row (or the trailer).
    fn header(&mut self, out: &mut BytesMut) {
        if !self.header_written {
            self.header_written = true;
            out.extend_from_slice(BINARY_HEADER);
        }
    }

    /// Writes one row: a value per type. A wrong count or a value that
    /// cannot be encoded as its type is an `Encode` error, and the row is
    /// not written.
    pub async fn write(&mut self, values: &[&(dyn ToSql + Sync)]) -> Result<(), PgError> {
        let BinaryCopyInWriter {
            copy,
            types,
            header_written,
        } = self;
        copy.write_with(|out| {
            let start = out.len();
            if !*header_written {
                out.extend_from_slice(BINARY_HEADER);
            }
            match encode_binary_row(types, values, out) {
                Ok(()) => {
                    *header_written = true;
                    Ok(())
                }
                Err(e) => {
                    out.truncate(start);
                    Err(e)
                }
            }
        })
        .await
    }

    /// Writes the trailer and finishes the copy; the number of rows copied.
    pub async fn finish(mut self) -> Result<u64, PgError> {
        let mut ending = BytesMut::new();
        self.header(&mut ending);
        ending.extend_from_slice(&BINARY_TRAILER);
        self.copy.write(&ending).await?;
        self.copy.finish().await
    }

    /// Abandons the copy; see [`CopyIn::abort`].
    pub async fn abort(self, reason: &str) -> Result<(), PgError> {
        self.copy.abort(reason).await
    }
}

/// Writes rows of text fields as CSV into a `COPY … FROM STDIN (FORMAT
/// csv)` (default delimiter, quote and NULL), quoting what needs it.
///
/// ```no_run
/// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
/// use wasi_pg_client::CsvCopyInWriter;
/// let copy = conn.copy_in("COPY items (id, name) FROM STDIN (FORMAT csv)").await?;
/// let mut writer = CsvCopyInWriter::new(copy);
/// writer.write(&["1", "apple, green"]).await?;
/// writer.write(&[Some("2"), None]).await?; // NULL name
/// assert_eq!(writer.finish().await?, 2);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CsvCopyInWriter {
    copy: CopyIn,
}

impl CsvCopyInWriter {
    /// A writer into `copy`, which must have been started with
    /// `FORMAT csv` and the default options.
    pub fn new(copy: CopyIn) -> Self {
        CsvCopyInWriter { copy }
    }

    /// Writes one row: `&str`, `String`, or `Option` of either (`None` is
    /// NULL).
    pub async fn write<F: CsvField + Sync>(&mut self, fields: &[F]) -> Result<(), PgError> {
        self.copy
            .write_with(|out| {
                encode_csv_row(fields, out);
                Ok(())
            })
            .await
    }

    /// Finishes the copy; the number of rows copied.
    pub async fn finish(self) -> Result<u64, PgError> {
        self.copy.finish().await
    }

    /// Abandons the copy; see [`CopyIn::abort`].
    pub async fn abort(self, reason: &str) -> Result<(), PgError> {
        self.copy.abort(reason).await
    }
}

/// Reads the rows of a `COPY … TO STDOUT (FORMAT binary)` as [`Row`]s of
/// the given types (`row.get::<_, T>(i)`; the columns have no names).
///
/// ```no_run
/// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
/// use wasi_pg_client::{types::Type, BinaryCopyOutReader};
/// let out = conn.copy_out("COPY items (id, name) TO STDOUT (FORMAT binary)").await?;
/// let mut reader = BinaryCopyOutReader::new(out, &[Type::INT4, Type::TEXT]);
/// while let Some(row) = reader.next().await? {
///     let id: i32 = row.get(0)?;
///     let name: Option<&str> = row.get(1)?;
///     # let _ = (id, name);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BinaryCopyOutReader {
    copy: CopyOut,
    columns: Arc<[Column]>,
    /// Received bytes not read yet. The server sends a row per chunk, so
    /// rows are cut out of the chunks as they came (no copy); only a row
    /// split across chunks is joined.
    unread: Bytes,
    header_read: bool,
    ended: bool,
}

impl BinaryCopyOutReader {
    /// A reader of rows with these column types, in the COPY's column
    /// order.
    pub fn new(copy: CopyOut, types: &[Type]) -> Self {
        let columns = types
            .iter()
            .map(|ty| Column::new(String::new(), ty.clone(), 0, 0))
            .collect();
        BinaryCopyOutReader {
            copy,
            columns,
            unread: Bytes::new(),
            header_read: false,
            ended: false,
        }
    }

    /// The next row; `Ok(None)` after the trailer. The header, every
    /// field count and every length are checked.
    pub async fn next(&mut self) -> Result<Option<Row>, PgError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            if !self.header_read {
                if let Some(len) = binary_header(&self.unread)? {
                    self.unread.advance(len);
                    self.header_read = true;
                    continue;
                }
            } else {
                match binary_row(&self.unread, self.columns.len())? {
                    BinaryItem::Row { len, fields } => {
                        let data = self.unread.split_to(len);
                        return Row::new(self.columns.clone(), data, fields).map(Some);
                    }
                    BinaryItem::End(len) => {
                        self.unread.advance(len);
                        self.ended = true;
                        // Read the copy to its end, so its outcome counts.
                        while self.copy.next().await?.is_some() {}
                        return Ok(None);
                    }
                    BinaryItem::Incomplete => {}
                }
            }
            match self.copy.next().await? {
                Some(chunk) if self.unread.is_empty() => self.unread = chunk,
                Some(chunk) => {
                    // Copied once out of the shared chunk; a row spread over
                    // many chunks then grows in place (amortized), as its
                    // buffer is ours alone until the row is complete.
                    let mut joined = BytesMut::from(std::mem::take(&mut self.unread));
                    joined.extend_from_slice(&chunk);
                    self.unread = joined.freeze();
                }
                None => {
                    return Err(PgError::Protocol(
                        "the binary COPY data ended without its trailer".into(),
                    ))
                }
            }
        }
    }
}
