//! COPY's binary and CSV formats, pure: encoding rows into bytes and
//! splitting binary bytes back into rows, with every count and length
//! checked.

use bytes::{BufMut, BytesMut};
use postgres_types::{IsNull, ToSql, Type};

use crate::protocol::values::{ValueRanges, ValueSpan};
use crate::PgError;

/// The binary format's signature, then flags (0) and the header extension
/// length (0).
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
pub(crate) const BINARY_HEADER: &[u8; 19] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The field count that ends the data.
pub(crate) const BINARY_TRAILER: [u8; 2] = (-1i16).to_be_bytes();

/// Appends one binary row: its field count, then each value's length (-1
/// for NULL) and bytes, encoded for `types`. On error nothing is appended.
pub(crate) fn encode_binary_row(
    types: &[Type],
    values: &[&(dyn ToSql + Sync)],
    out: &mut BytesMut,
) -> Result<(), PgError> {
    if values.len() != types.len() {
        return Err(PgError::Encode(format!(
            "a binary COPY row needs {} values (one per type), got {}",
            types.len(),
            values.len()
        )));
    }
    let count = i16::try_from(types.len())
        .map_err(|_| PgError::Encode("too many columns for one COPY row".into()))?;
    let start = out.len();
    let result = (|| {
        out.put_i16(count);
        for (i, (ty, value)) in types.iter().zip(values).enumerate() {
            let at = out.len();
            out.put_i32(0);
            let is_null = value
                .to_sql_checked(ty, out)
                .map_err(|e| PgError::Encode(format!("COPY value {i}: {e}")))?;
            let len = match is_null {
                IsNull::Yes => -1,
                IsNull::No => i32::try_from(out.len() - at - 4)
                    .map_err(|_| PgError::Encode(format!("COPY value {i} is too large")))?,
            };
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        Ok(())
    })();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Where a binary COPY stream stands.
#[derive(Debug)]
pub(crate) enum BinaryItem {
    /// More bytes are needed to go on.
    Incomplete,
    /// A row: its length in the buffer, and each field's range (None for
    /// NULL) within it.
    Row { len: usize, fields: ValueRanges },
    /// The trailer: the data ended (its length).
    End(usize),
}

/// The length of the binary header at the start of `buf`, once it is
/// complete and valid.
pub(crate) fn binary_header(buf: &[u8]) -> Result<Option<usize>, PgError> {
    let Some(fixed) = buf.get(..19) else {
        if !SIGNATURE.starts_with(&buf[..buf.len().min(11)]) {
            return Err(not_binary());
        }
        return Ok(None);
    };
    if &fixed[..11] != SIGNATURE {
        return Err(not_binary());
    }
    let flags = u32::from_be_bytes([fixed[11], fixed[12], fixed[13], fixed[14]]);
    // Bit 16 says OIDs are included; other high bits are critical and
    // unknown to us.
    if flags & 0xffff_0000 != 0 {
        return Err(PgError::Protocol(format!(
            "binary COPY header has flags {flags:#x} this client does not understand"
        )));
    }
    let extension = u32::from_be_bytes([fixed[15], fixed[16], fixed[17], fixed[18]]) as usize;
    let total = 19usize
        .checked_add(extension)
        .ok_or_else(|| PgError::Protocol("binary COPY header extension too large".into()))?;
    Ok((buf.len() >= total).then_some(total))
}

fn not_binary() -> PgError {
    PgError::Protocol("the COPY data does not start with the binary format's signature".into())
}

/// The next row (or the trailer) at the start of `buf`, checking its field
/// count against `columns` and every length against the bytes.
pub(crate) fn binary_row(buf: &[u8], columns: usize) -> Result<BinaryItem, PgError> {
    let Some(count) = buf.get(..2) else {
        return Ok(BinaryItem::Incomplete);
    };
    let count = i16::from_be_bytes([count[0], count[1]]);
    if count == -1 {
        return Ok(BinaryItem::End(2));
    }
    if usize::try_from(count).ok() != Some(columns) {
        return Err(PgError::Decode(format!(
            "a binary COPY row has {count} fields; {columns} types were given"
        )));
    }
    let mut at = 2usize;
    let mut fields = ValueRanges::with_capacity(columns);
    for _ in 0..columns {
        let Some(len) = buf.get(at..at + 4) else {
            return Ok(BinaryItem::Incomplete);
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4;
        if len == -1 {
            fields.push(ValueSpan::NULL);
            continue;
        }
        let len = usize::try_from(len)
            .map_err(|_| PgError::Protocol(format!("binary COPY field of length {len}")))?;
        let end = at
            .checked_add(len)
            .ok_or_else(|| PgError::Protocol("binary COPY field too large".into()))?;
        if buf.len() < end {
            return Ok(BinaryItem::Incomplete);
        }
        let span = ValueSpan::new(at, end)
            .ok_or_else(|| PgError::Protocol("binary COPY row too large".into()))?;
        fields.push(span);
        at = end;
    }
    Ok(BinaryItem::Row { len: at, fields })
}

/// One CSV field: text, or NULL (`None`).
pub trait CsvField {
    /// The field's text, or `None` for NULL.
    fn csv_text(&self) -> Option<&str>;
}

impl CsvField for str {
    fn csv_text(&self) -> Option<&str> {
        Some(self)
    }
}

impl CsvField for String {
    fn csv_text(&self) -> Option<&str> {
        Some(self)
    }
}

impl<T: CsvField + ?Sized> CsvField for &T {
    fn csv_text(&self) -> Option<&str> {
        (**self).csv_text()
    }
}

impl<T: CsvField> CsvField for Option<T> {
    fn csv_text(&self) -> Option<&str> {
        self.as_ref().and_then(CsvField::csv_text)
    }
}

/// Appends one row in COPY's default CSV format (comma, double quote,
/// NULL as an unquoted empty field) and a newline. A field is quoted when
/// it must be: empty (or it would read as NULL), holding a comma, quote,
/// CR or LF, or starting with a backslash (`\.` alone ends the data).
pub(crate) fn encode_csv_row<F: CsvField>(fields: &[F], out: &mut BytesMut) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        let Some(text) = field.csv_text() else {
            continue;
        };
        let quote = text.is_empty()
            || text.starts_with('\\')
            || text
                .bytes()
                .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
        if !quote {
            out.extend_from_slice(text.as_bytes());
            continue;
        }
        out.put_u8(b'"');
        for piece in text.split_inclusive('"') {
            out.extend_from_slice(piece.as_bytes());
            if piece.ends_with('"') {
                out.put_u8(b'"');
            }
        }
        out.put_u8(b'"');
    }
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let mut out = BytesMut::new();
        let row: [Option<&str>; 7] = [
            Some("plain"),
            None,
            Some(""),
            Some("a,b"),
            Some("say \"hi\""),
            Some("line\nbreak"),
            Some("\\."),
        ];
        encode_csv_row(&row, &mut out);
        assert_eq!(
            &out[..],
            b"plain,,\"\",\"a,b\",\"say \"\"hi\"\"\",\"line\nbreak\",\"\\.\"\n"
        );
    }

    #[test]
    fn binary_rows_round_trip_and_counts_are_checked() {
        let mut out = BytesMut::new();
        out.extend_from_slice(BINARY_HEADER);
        let types = [Type::INT4, Type::TEXT];
        encode_binary_row(&types, &[&7i32, &"seven"], &mut out).unwrap();
        encode_binary_row(&types, &[&8i32, &None::<&str>], &mut out).unwrap();
        assert!(encode_binary_row(&types, &[&9i32], &mut out).is_err());
        assert!(encode_binary_row(&types, &[&"x", &"y"], &mut out).is_err());
        out.extend_from_slice(&BINARY_TRAILER);

        let header = binary_header(&out).unwrap().unwrap();
        let mut rest = &out[header..];
        let BinaryItem::Row { len, fields } = binary_row(rest, 2).unwrap() else {
            panic!("expected a row");
        };
        assert_eq!(&rest[fields[1].range().unwrap()], b"seven");
        rest = &rest[len..];
        let BinaryItem::Row { len, fields } = binary_row(rest, 2).unwrap() else {
            panic!("expected a row");
        };
        assert_eq!(fields[1].range(), None);
        rest = &rest[len..];
        assert!(matches!(binary_row(rest, 2).unwrap(), BinaryItem::End(2)));
        // Wrong field count, truncated rows, a bad signature.
        assert!(binary_row(&[0, 3], 2).is_err());
        assert!(matches!(
            binary_row(&[0, 2, 0, 0], 2).unwrap(),
            BinaryItem::Incomplete
        ));
        assert!(binary_header(b"NOTCOPY").is_err());
        assert!(binary_header(b"PGCO").unwrap().is_none());
    }
}
