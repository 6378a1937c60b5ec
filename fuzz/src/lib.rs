//! Shared pieces of the fuzz targets: an allocation meter, the message
//! accessors the client uses, and the value decoders behind `Row::get`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;
use postgres_protocol::types as raw;
use postgres_types::{FromSql, Kind, Type};

// ---------------------------------------------------------------------------
// Allocation meter
// ---------------------------------------------------------------------------

/// Counts live heap bytes and the high-water mark since the last
/// [`alloc_meter::reset`], so a target can assert that decoding `n` input
/// bytes never allocates much more than `n` (plus the frame cap).
pub mod alloc_meter {
    use super::*;

    pub(crate) static LIVE: AtomicUsize = AtomicUsize::new(0);
    pub(crate) static PEAK: AtomicUsize = AtomicUsize::new(0);

    /// Starts a measurement: the peak is reset to the bytes live now.
    pub fn reset() -> usize {
        let live = LIVE.load(Ordering::Relaxed);
        PEAK.store(live, Ordering::Relaxed);
        live
    }

    /// The most bytes live at once since [`reset`].
    pub fn peak() -> usize {
        PEAK.load(Ordering::Relaxed)
    }

    pub struct Meter;

    unsafe impl GlobalAlloc for Meter {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = System.alloc(layout);
            if !p.is_null() {
                grow(layout.size());
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = System.alloc_zeroed(layout);
            if !p.is_null() {
                grow(layout.size());
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = System.realloc(ptr, layout, new_size);
            if !p.is_null() {
                LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
                grow(new_size);
            }
            p
        }
    }

    fn grow(size: usize) {
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(live, Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: alloc_meter::Meter = alloc_meter::Meter;

/// What the client may legitimately allocate beyond the bytes it was given:
/// `describe::columns` and the DataRow `ranges()` collect preallocate from a
/// u16 count (≤ 65 535 elements of ≤ 64 bytes), whatever the frame's size.
pub const U16_COUNT_ALLOWANCE: usize = 65_535 * 64;

// ---------------------------------------------------------------------------
// Message accessors, as the client calls them
// ---------------------------------------------------------------------------

/// What a stream of messages leaves behind for the next ones, like the
/// client's per-query state.
#[derive(Default)]
pub struct StreamState {
    /// The types of the last RowDescription's columns.
    pub columns: Option<Vec<Type>>,
    /// Whether that description had a text-format column.
    pub text: bool,
    /// Rows read, for the curious.
    pub rows: usize,
}

/// name, type, table OID, column id, type size, type modifier.
type ColumnInfo = (String, Type, u32, i16, i16, i32);

/// The type for `oid`, as `describe::type_for_oid` builds it.
pub fn type_for_oid(oid: u32) -> Type {
    Type::from_oid(oid)
        .unwrap_or_else(|| Type::new(format!("oid{oid}"), oid, Kind::Simple, String::new()))
}

/// `DbError::parse`: every field as lossy UTF-8; a report needs a SQLSTATE.
fn error_fields(
    mut fields: postgres_protocol::message::backend::ErrorFields<'_>,
) -> Result<Vec<(u8, String)>, ()> {
    let mut out = Vec::new();
    let mut code = false;
    while let Some(field) = fields.next().map_err(drop)? {
        let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
        if matches!(field.type_(), b'P' | b'p' | b'L') {
            let _ = value.parse::<u32>();
        }
        code |= field.type_() == b'C' && !value.is_empty();
        out.push((field.type_(), value));
    }
    if code {
        Ok(out)
    } else {
        Err(())
    }
}

/// Reads every part of `message` the way the client's handlers do
/// (`describe`, `response::collect`, `startup::on_message`,
/// `Connection::asynchronous`). Errors are fine; panics are not.
pub fn exercise_message(message: Message, state: &mut StreamState) {
    match message {
        Message::RowDescription(body) => {
            let mut fields = body.fields();
            let mut text = false;
            while let Ok(Some(f)) = fields.next() {
                text |= f.format() == 0;
            }
            let columns: Result<Vec<ColumnInfo>, _> = body
                .fields()
                .map(|f| {
                    Ok((
                        f.name().to_string(),
                        type_for_oid(f.type_oid()),
                        f.table_oid(),
                        f.column_id(),
                        f.type_size(),
                        f.type_modifier(),
                    ))
                })
                .collect();
            match columns {
                Ok(columns) => {
                    state.columns = Some(columns.into_iter().map(|c| c.1).collect());
                    state.text = text;
                }
                Err(_) => state.columns = None,
            }
        }
        Message::DataRow(body) => {
            let ranges: Result<Vec<Option<Range<usize>>>, _> = body.ranges().collect();
            let Ok(ranges) = ranges else { return };
            let data = body.buffer_bytes().clone();
            for r in ranges.iter().flatten() {
                // The client reads with `get`; the parser promises in-bounds
                // ranges, so check that promise too.
                assert!(
                    r.start <= r.end && r.end <= data.len(),
                    "range {r:?} out of {}",
                    data.len()
                );
                let _ = data.get(r.clone());
            }
            if let Some(columns) = &state.columns {
                if columns.len() == ranges.len() {
                    state.rows += 1;
                }
            }
        }
        Message::CommandComplete(body) => {
            if let Ok(tag) = body.tag() {
                let tag = tag.to_string();
                // Row counts are the last word of the tag.
                let _ = tag.rsplit(' ').next().map(str::parse::<u64>);
            }
        }
        Message::ErrorResponse(body) => {
            let _ = error_fields(body.fields());
        }
        Message::NoticeResponse(body) => {
            let _ = error_fields(body.fields());
        }
        Message::ParameterDescription(body) => {
            let _: Result<Vec<Type>, _> =
                body.parameters().map(|oid| Ok(type_for_oid(oid))).collect();
        }
        Message::ParameterStatus(body) => {
            let _ = body.name().map(str::to_string);
            let _ = body.value().map(str::to_string);
        }
        Message::NotificationResponse(body) => {
            let _ = body.process_id();
            let _ = body.channel().map(str::to_string);
            let _ = body.message().map(str::to_string);
        }
        Message::BackendKeyData(body) => {
            let _ = (body.process_id(), body.secret_key());
        }
        Message::ReadyForQuery(body) => {
            let _ = body.status();
            state.columns = None;
        }
        Message::AuthenticationMd5Password(body) => {
            let _ = body.salt();
        }
        Message::AuthenticationSasl(body) => {
            let mut mechanisms = Vec::new();
            let mut iter = body.mechanisms();
            while let Ok(Some(m)) = iter.next() {
                mechanisms.push(m.to_string());
            }
        }
        Message::AuthenticationSaslContinue(body) => {
            let _ = body.data().len();
        }
        Message::AuthenticationSaslFinal(body) => {
            let _ = body.data().len();
        }
        Message::AuthenticationGssContinue(body) => {
            let _ = body.data().len();
        }
        Message::CopyInResponse(body) => {
            let _ = body.format();
            let _: Result<Vec<u16>, _> = body.column_formats().collect();
        }
        Message::CopyOutResponse(body) => {
            let _ = body.format();
            let _: Result<Vec<u16>, _> = body.column_formats().collect();
        }
        Message::CopyData(body) => {
            let _ = body.data().len();
            let _ = body.into_bytes();
        }
        Message::AuthenticationCleartextPassword
        | Message::AuthenticationGss
        | Message::AuthenticationKerberosV5
        | Message::AuthenticationOk
        | Message::AuthenticationScmCredential
        | Message::AuthenticationSspi
        | Message::BindComplete
        | Message::CloseComplete
        | Message::CopyDone
        | Message::EmptyQueryResponse
        | Message::NoData
        | Message::ParseComplete
        | Message::PortalSuspended => {}
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Value decoding, as `Row::get` does it
// ---------------------------------------------------------------------------

/// The types `decode_pg_types` picks from with its first byte. The order is
/// fixed (feature-gated decoders stay in the list) so seeds keep their type.
/// `fuzz/capture_seeds.py` uses the same indices.
pub fn fuzz_types() -> Vec<Type> {
    let ext = |name: &str, oid: u32| Type::new(name.into(), oid, Kind::Simple, "public".into());
    vec![
        Type::BOOL,            // 0
        Type::INT2,            // 1
        Type::INT4,            // 2
        Type::INT8,            // 3
        Type::FLOAT4,          // 4
        Type::FLOAT8,          // 5
        Type::TEXT,            // 6
        Type::VARCHAR,         // 7
        Type::BPCHAR,          // 8
        Type::NAME,            // 9
        Type::BYTEA,           // 10
        Type::OID,             // 11
        Type::CHAR,            // 12
        Type::NUMERIC,         // 13
        Type::JSON,            // 14
        Type::JSONB,           // 15
        Type::DATE,            // 16
        Type::TIME,            // 17
        Type::TIMESTAMP,       // 18
        Type::TIMESTAMPTZ,     // 19
        Type::UUID,            // 20
        Type::INET,            // 21
        Type::INT4_ARRAY,      // 22
        Type::TEXT_ARRAY,      // 23
        Type::INT8_ARRAY,      // 24
        Type::BYTEA_ARRAY,     // 25
        Type::BOOL_ARRAY,      // 26
        Type::FLOAT8_ARRAY,    // 27
        ext("hstore", 16_385), // 28
        Type::PG_LSN,          // 29
        Type::TIMESTAMP_ARRAY, // 30
        Type::VARBIT,          // 31
        Type::POINT,           // 32
        Type::BOX,             // 33
        Type::PATH,            // 34
        Type::INT4_RANGE,      // 35
        ext("ltree", 16_500),  // 36
        Type::CIDR,            // 37
        Type::INTERVAL,        // 38
        Type::MACADDR,         // 39
        Type::JSONB_ARRAY,     // 40
        Type::UUID_ARRAY,      // 41
        Type::DATE_ARRAY,      // 42
        ext("citext", 16_600), // 43
        type_for_oid(999_999), // 44: unknown OID, as the client names it
    ]
}

/// `Row::get::<T>` on a binary value: only when `T` accepts the type
/// (postgres-types may panic otherwise, e.g. `Vec<T>` on a non-array).
fn get<'a, T: FromSql<'a>>(ty: &Type, raw: Option<&'a [u8]>) {
    if T::accepts(ty) {
        let _ = T::from_sql_nullable(ty, raw);
    }
}

/// The text fallback of `Row::get` for text-format rows: any column can be
/// read as a string.
fn get_as_text(raw: Option<&[u8]>) {
    let _ = String::from_sql_nullable(&Type::TEXT, raw);
    let _ = <Option<&str>>::from_sql_nullable(&Type::TEXT, raw);
}

/// Every decoder the client can reach for a value of type `ty`.
pub fn decode_value(ty: &Type, raw: Option<&[u8]>) {
    // Row::get refuses these before decoding (postgres-types would
    // preallocate the declared count); the harness takes the same path.
    if let Some(bytes) = raw {
        if wasi_pg_client::__fuzz::check_declared_counts(ty, bytes).is_err() {
            return;
        }
    }
    get::<bool>(ty, raw);
    get::<i8>(ty, raw);
    get::<i16>(ty, raw);
    get::<i32>(ty, raw);
    get::<i64>(ty, raw);
    get::<u32>(ty, raw);
    get::<f32>(ty, raw);
    get::<f64>(ty, raw);
    get::<String>(ty, raw);
    get::<&str>(ty, raw);
    get::<Box<str>>(ty, raw);
    get::<std::borrow::Cow<'_, str>>(ty, raw);
    get::<Vec<u8>>(ty, raw);
    get::<&[u8]>(ty, raw);
    get::<Option<i32>>(ty, raw);
    get::<Option<String>>(ty, raw);
    get::<SystemTime>(ty, raw);
    get::<IpAddr>(ty, raw);
    get::<postgres_types::PgLsn>(ty, raw);
    get::<HashMap<String, Option<String>>>(ty, raw);
    get::<postgres_types::Date<SystemTime>>(ty, raw);
    get::<postgres_types::Timestamp<SystemTime>>(ty, raw);
    get::<Vec<i32>>(ty, raw);
    get::<Vec<Option<i32>>>(ty, raw);
    get::<Vec<i64>>(ty, raw);
    get::<Vec<bool>>(ty, raw);
    get::<Vec<f64>>(ty, raw);
    get::<Vec<String>>(ty, raw);
    get::<Vec<Option<String>>>(ty, raw);
    get::<Vec<&str>>(ty, raw);
    get::<Vec<Vec<u8>>>(ty, raw);
    get::<Vec<SystemTime>>(ty, raw);
    get::<Box<[i32]>>(ty, raw);
    #[cfg(feature = "serde-json")]
    {
        get::<serde_json::Value>(ty, raw);
        get::<postgres_types::Json<serde_json::Value>>(ty, raw);
        get::<Vec<serde_json::Value>>(ty, raw);
    }
    #[cfg(feature = "uuid")]
    {
        get::<uuid::Uuid>(ty, raw);
        get::<Vec<uuid::Uuid>>(ty, raw);
    }
    #[cfg(feature = "chrono")]
    {
        get::<chrono::NaiveDate>(ty, raw);
        get::<chrono::NaiveTime>(ty, raw);
        get::<chrono::NaiveDateTime>(ty, raw);
        get::<chrono::DateTime<chrono::Utc>>(ty, raw);
        get::<chrono::DateTime<chrono::FixedOffset>>(ty, raw);
        get::<Vec<chrono::NaiveDate>>(ty, raw);
        get::<postgres_types::Date<chrono::NaiveDate>>(ty, raw);
        get::<postgres_types::Timestamp<chrono::NaiveDateTime>>(ty, raw);
    }
    get_as_text(raw);
    if let Some(raw) = raw {
        decode_raw(ty, raw);
    }
}

/// postgres-protocol's raw decoders for the types with no std `FromSql`
/// impl (what a user's own `FromSql` impl would build on).
fn decode_raw(ty: &Type, bytes: &[u8]) {
    match *ty {
        Type::DATE => {
            let _ = raw::date_from_sql(bytes);
        }
        Type::TIME => {
            let _ = raw::time_from_sql(bytes);
        }
        Type::UUID => {
            let _ = raw::uuid_from_sql(bytes);
        }
        Type::CIDR | Type::INET => {
            let _ = raw::inet_from_sql(bytes).map(|i| (i.addr(), i.netmask()));
        }
        Type::MACADDR => {
            let _ = raw::macaddr_from_sql(bytes);
        }
        Type::VARBIT => {
            if let Ok(v) = raw::varbit_from_sql(bytes) {
                let _ = (v.len(), v.bytes().len());
            }
        }
        Type::POINT => {
            let _ = raw::point_from_sql(bytes).map(|p| (p.x(), p.y()));
        }
        Type::BOX => {
            let _ = raw::box_from_sql(bytes).map(|b| (b.upper_right().x(), b.lower_left().y()));
        }
        Type::PATH => {
            if let Ok(path) = raw::path_from_sql(bytes) {
                let _ = path.closed();
                let mut points = path.points();
                // Bounded by the bytes: each point needs 16.
                while let Ok(Some(p)) = points.next() {
                    let _ = p.x();
                }
            }
        }
        Type::INT4_RANGE => {
            if let Ok(raw::Range::Nonempty(lower, upper)) = raw::range_from_sql(bytes) {
                for bound in [lower, upper] {
                    if let raw::RangeBound::Inclusive(Some(v))
                    | raw::RangeBound::Exclusive(Some(v)) = bound
                    {
                        let _ = raw::int4_from_sql(v);
                    }
                }
            }
        }
        _ => {}
    }
    if let Kind::Array(member) = ty.kind() {
        // What a hand-written array reader does: walk, never collect.
        if let Ok(array) = raw::array_from_sql(bytes) {
            let _ = (array.has_nulls(), array.element_type());
            let mut dims = array.dimensions();
            while let Ok(Some(d)) = dims.next() {
                let _ = (d.len, d.lower_bound);
            }
            let mut values = array.values();
            while let Ok(Some(v)) = values.next() {
                if let Some(v) = v {
                    decode_raw(member, v);
                }
            }
        }
    }
}
