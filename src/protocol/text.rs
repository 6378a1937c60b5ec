//! Text-format values from the simple query protocol, turned into the binary
//! form postgres-types decodes, for the built-in scalar types.
//!
//! `query` falls back to the simple protocol only for multi-statement
//! strings; its rows arrive as text. Converting the common scalar types here
//! keeps `row.get::<i32>(0)` working there too.

use postgres_types::Type;

/// The binary encoding of text value `text` of type `ty`, when `ty` is a
/// scalar this module knows; `None` otherwise (or when the text does not
/// parse, which a real server never sends).
pub(crate) fn to_binary(ty: &Type, text: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(text).ok()?;
    let bytes = match *ty {
        Type::BOOL => match s {
            "t" | "true" => vec![1],
            "f" | "false" => vec![0],
            _ => return None,
        },
        Type::INT2 => s.parse::<i16>().ok()?.to_be_bytes().to_vec(),
        Type::INT4 => s.parse::<i32>().ok()?.to_be_bytes().to_vec(),
        Type::INT8 => s.parse::<i64>().ok()?.to_be_bytes().to_vec(),
        Type::OID => s.parse::<u32>().ok()?.to_be_bytes().to_vec(),
        Type::FLOAT4 => (parse_float(s)? as f32).to_be_bytes().to_vec(),
        Type::FLOAT8 => parse_float(s)?.to_be_bytes().to_vec(),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => {
            text.to_vec()
        }
        _ => return None,
    };
    Some(bytes)
}

/// PostgreSQL spells infinities and NaN its own way.
fn parse_float(s: &str) -> Option<f64> {
    match s {
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_types::FromSql;

    #[test]
    fn scalars_round_trip() {
        let b = to_binary(&Type::INT4, b"-42").unwrap();
        assert_eq!(i32::from_sql(&Type::INT4, &b).unwrap(), -42);
        let b = to_binary(&Type::BOOL, b"t").unwrap();
        assert!(bool::from_sql(&Type::BOOL, &b).unwrap());
        let b = to_binary(&Type::FLOAT4, b"1.5").unwrap();
        assert_eq!(f32::from_sql(&Type::FLOAT4, &b).unwrap(), 1.5);
        let b = to_binary(&Type::FLOAT8, b"-Infinity").unwrap();
        assert_eq!(f64::from_sql(&Type::FLOAT8, &b).unwrap(), f64::NEG_INFINITY);
        assert!(to_binary(&Type::NUMERIC, b"1.0").is_none());
    }
}
