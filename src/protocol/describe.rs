//! Statement and row descriptions: OIDs to `Type`s, fields to `Column`s.

use std::sync::Arc;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{ParameterDescriptionBody, RowDescriptionBody};
use postgres_types::{Kind, Type};

use crate::api::row::Column;
use crate::PgError;

/// The type for `oid`. Built-in types are known; others (extensions, user
/// types) get a placeholder named after the OID, readable as raw bytes.
pub(crate) fn type_for_oid(oid: u32) -> Type {
    Type::from_oid(oid)
        .unwrap_or_else(|| Type::new(format!("oid{oid}"), oid, Kind::Simple, String::new()))
}

fn malformed(what: &str) -> impl Fn(std::io::Error) -> PgError + '_ {
    move |e| PgError::Protocol(format!("malformed {what} from the server: {e}"))
}

/// The columns of a RowDescription.
pub(crate) fn columns(body: &RowDescriptionBody) -> Result<Arc<[Column]>, PgError> {
    let columns: Vec<Column> = body
        .fields()
        .map(|f| {
            Ok(Column::new(
                f.name().to_string(),
                type_for_oid(f.type_oid()),
                f.table_oid(),
                f.column_id(),
            ))
        })
        .collect()
        .map_err(malformed("row description"))?;
    Ok(columns.into())
}

/// The parameter types of a ParameterDescription.
pub(crate) fn params(body: &ParameterDescriptionBody) -> Result<Vec<Type>, PgError> {
    body.parameters()
        .map(|oid| Ok(type_for_oid(oid)))
        .collect()
        .map_err(malformed("parameter description"))
}

/// Whether every column of a RowDescription is in text format.
pub(crate) fn is_text_format(body: &RowDescriptionBody) -> Result<bool, PgError> {
    let mut fields = body.fields();
    let mut text = false;
    while let Some(f) = fields.next().map_err(malformed("row description"))? {
        text |= f.format() == 0;
    }
    Ok(text)
}
