//! Checks on binary values before postgres-types decodes them.
//!
//! postgres-types collects arrays and hstore maps with the element count the
//! value declares as a size hint, so `Vec::with_capacity` runs before any
//! element is read: five hostile bytes can ask for gigabytes and abort the
//! program (found by `fuzz/decode_pg_types`). A value whose declared count
//! cannot fit in its bytes is refused here instead.

use std::ops::Range;

use postgres_types::{Kind, Type};
use smallvec::SmallVec;

/// How many values a row keeps inline; wider rows allocate.
const INLINE_VALUES: usize = 4;

/// Where each value of a row lies in the row's bytes. Most rows fit
/// inline, so reading one allocates nothing here; rows are moved by value
/// on their way to the caller, so each span is kept to 8 bytes.
pub(crate) type ValueRanges = SmallVec<[ValueSpan; INLINE_VALUES]>;

/// One value's place in its row's bytes, or NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValueSpan {
    /// `u32::MAX` for NULL: no value starts there, as a protocol message
    /// (and so a row) is shorter than 4 GiB.
    start: u32,
    end: u32,
}

impl ValueSpan {
    pub(crate) const NULL: ValueSpan = ValueSpan {
        start: u32::MAX,
        end: u32::MAX,
    };

    /// The span of `start..end`; `None` if it lies past 4 GiB (impossible
    /// inside one message, checked rather than assumed).
    pub(crate) fn new(start: usize, end: usize) -> Option<ValueSpan> {
        let start = u32::try_from(start).ok().filter(|s| *s != u32::MAX)?;
        Some(ValueSpan {
            start,
            end: u32::try_from(end).ok()?,
        })
    }

    /// The value's byte range, `None` for NULL.
    pub(crate) fn range(self) -> Option<Range<usize>> {
        (self.start != u32::MAX).then_some(self.start as usize..self.end as usize)
    }
}

/// Every array element and every hstore key or value starts with a 4-byte
/// length.
const LENGTH_FIELD: u64 = 4;

/// Refuses a binary value whose declared element count its bytes cannot
/// hold. Other malformations are left to the decoder, which reports them
/// as errors.
pub fn check_declared_counts(ty: &Type, raw: &[u8]) -> Result<(), String> {
    match ty.kind() {
        Kind::Array(_) => check_array(raw),
        _ if ty.name() == "hstore" => check_hstore(raw),
        _ => Ok(()),
    }
}

/// Whether values of `ty` declare counts that [`check_declared_counts`]
/// checks (arrays and hstore).
pub(crate) fn declares_counts(ty: &Type) -> bool {
    matches!(ty.kind(), Kind::Array(_)) || ty.name() == "hstore"
}

fn be_i32(raw: &[u8], at: usize) -> Option<i32> {
    let bytes = raw.get(at..at.checked_add(4)?)?;
    Some(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn check_array(raw: &[u8]) -> Result<(), String> {
    // Header: dimensions, has-nulls flag, element OID; then per dimension
    // its length and lower bound.
    let Some(dimensions) = be_i32(raw, 0) else {
        return Ok(());
    };
    let dimensions =
        u64::try_from(dimensions).map_err(|_| format!("array declares {dimensions} dimensions"))?;
    let header = 12 + 8 * dimensions;
    let mut elements: u64 = if dimensions == 0 { 0 } else { 1 };
    for d in 0..dimensions {
        let at = usize::try_from(12 + 8 * d).map_err(|_| "array header too large".to_string())?;
        let Some(len) = be_i32(raw, at) else {
            return Err(format!(
                "array declares {dimensions} dimensions in {} bytes",
                raw.len()
            ));
        };
        let len = u64::try_from(len).map_err(|_| format!("array dimension of length {len}"))?;
        elements = elements.saturating_mul(len);
    }
    let body = (raw.len() as u64).saturating_sub(header);
    if elements.saturating_mul(LENGTH_FIELD) > body {
        return Err(format!(
            "array declares {elements} elements in {} bytes",
            raw.len()
        ));
    }
    Ok(())
}

fn check_hstore(raw: &[u8]) -> Result<(), String> {
    let Some(count) = be_i32(raw, 0) else {
        return Ok(());
    };
    let count = u64::try_from(count).map_err(|_| format!("hstore declares {count} entries"))?;
    let body = (raw.len() as u64).saturating_sub(4);
    if count.saturating_mul(2 * LENGTH_FIELD) > body {
        return Err(format!(
            "hstore declares {count} entries in {} bytes",
            raw.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_spans_keep_null_apart_from_every_real_offset() {
        assert_eq!(ValueSpan::NULL.range(), None);
        assert_eq!(ValueSpan::new(3, 7).unwrap().range(), Some(3..7));
        let last = u32::MAX as usize;
        assert_eq!(ValueSpan::new(last, last), None);
        // Past 4 GiB exists only where usize is wider than u32.
        if let Some(past) = last.checked_add(1) {
            assert_eq!(ValueSpan::new(0, past), None);
        }
    }

    #[test]
    fn hostile_array_counts_are_refused() {
        // text[]: 1 dimension of 2^31-1 elements, no element bytes (the
        // fuzzer's 51 GB allocation).
        let raw =
            b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x19\x7f\xff\xff\xff\x00\x00\x00\x01";
        let e = check_declared_counts(&Type::TEXT_ARRAY, raw).unwrap_err();
        assert!(e.contains("2147483647 elements"), "{e}");
        let five_dims_huge = [
            &[0, 0, 0, 5][..],
            &[0; 8],
            &[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1].repeat(5),
        ]
        .concat();
        assert!(check_declared_counts(&Type::INT4_ARRAY, &five_dims_huge).is_err());
    }

    #[test]
    fn real_arrays_pass() {
        // int4[] {7}: one dimension, one element of 4 bytes.
        let raw = b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x17\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x04\x00\x00\x00\x07";
        check_declared_counts(&Type::INT4_ARRAY, raw).unwrap();
        let empty = b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17";
        check_declared_counts(&Type::INT4_ARRAY, empty).unwrap();
        check_declared_counts(&Type::INT4, b"\xff\xff\xff\xff").unwrap();
    }

    #[test]
    fn hostile_hstore_counts_are_refused() {
        let hstore = Type::new("hstore".into(), 16_000, Kind::Simple, "public".into());
        assert!(check_declared_counts(&hstore, b"\x02\x20\x02\xff").is_err());
        check_declared_counts(&hstore, b"\x00\x00\x00\x00").unwrap();
    }
}
