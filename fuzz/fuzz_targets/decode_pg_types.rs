//! Value decoding as `Row::get` does it: the first byte picks a type from
//! `fuzz_types()`, the rest is the binary value (the second byte, when it is
//! 0xff and nothing follows, means NULL). Every Rust type that accepts the
//! PostgreSQL type decodes it: errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasi_pg_client_fuzz::{decode_value, fuzz_types};

fuzz_target!(|data: &[u8]| {
    let Some((&b, value)) = data.split_first() else {
        return;
    };
    let types = fuzz_types();
    let ty = &types[usize::from(b) % types.len()];
    let raw = if value == [0xff] { None } else { Some(value) };
    decode_value(ty, raw);
});
