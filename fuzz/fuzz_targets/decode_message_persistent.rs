//! Framing must not depend on how the bytes arrive. The first byte says how
//! many chunk-size bytes follow (1..=8); those sizes (1..=256 each, cycled)
//! cut the rest of the input into chunks fed one at a time to one
//! `FrameReader`, taking frames after each. The frames (and the error, if
//! any) must equal those from feeding the stream at once.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wasi_pg_client::__fuzz::{parse_frame, FrameReader};

const CAP: usize = 1 << 20;

/// Frames until the first error (its text) or until no complete frame is left.
fn drain(reader: &mut FrameReader, frames: &mut Vec<BytesMut>) -> Option<String> {
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return None,
            Err(e) => return Some(e.to_string()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8) + 1;
    if rest.len() < n {
        return;
    }
    let (sizes, stream) = rest.split_at(n);

    let mut whole = FrameReader::new(CAP);
    whole.extend(stream);
    let mut expected = Vec::new();
    let expected_err = drain(&mut whole, &mut expected);

    let mut chunked = FrameReader::new(CAP);
    let mut got = Vec::new();
    let mut got_err = None;
    let mut fed = 0;
    for size in sizes.iter().cycle() {
        if fed >= stream.len() {
            break;
        }
        let end = (fed + usize::from(*size) + 1).min(stream.len());
        chunked.extend(&stream[fed..end]);
        fed = end;
        got_err = drain(&mut chunked, &mut got);
        if got_err.is_some() {
            break;
        }
    }

    assert_eq!(
        got.len(),
        expected.len(),
        "frame count differs with chunking"
    );
    for (a, b) in got.iter().zip(&expected) {
        assert_eq!(a, b, "frame differs with chunking");
    }
    assert_eq!(got_err, expected_err, "error differs with chunking");
    if expected_err.is_none() {
        assert_eq!(
            chunked.buffered(),
            whole.buffered(),
            "leftover bytes differ"
        );
    }
    // Parsing is a function of the frame alone.
    for (a, b) in got.into_iter().zip(expected) {
        assert_eq!(parse_frame(a).is_ok(), parse_frame(b).is_ok());
    }
});
