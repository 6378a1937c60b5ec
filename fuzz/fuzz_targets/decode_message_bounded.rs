//! Small caps: the first byte picks a cap from 4 to 4096 bytes. Every frame
//! handed out fits the cap (≤ cap + 1 with the tag), over-long messages are
//! errors, and the reader never holds more than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasi_pg_client::__fuzz::{parse_frame, FrameReader};
use wasi_pg_client_fuzz::{exercise_message, StreamState};

fuzz_target!(|data: &[u8]| {
    let Some((&b, stream)) = data.split_first() else {
        return;
    };
    let cap = 4 + usize::from(b) * 4092 / 255;
    let mut reader = FrameReader::new(cap);
    let mut state = StreamState::default();
    // Feed in two halves so partial frames are buffered too.
    let (first, second) = stream.split_at(stream.len() / 2);
    let mut given = 0;
    for part in [first, second] {
        reader.extend(part);
        given += part.len();
        loop {
            assert!(
                reader.buffered() <= given,
                "{} buffered of {given}",
                reader.buffered()
            );
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    assert!(
                        frame.len() <= cap + 1,
                        "frame of {} bytes over cap {cap}",
                        frame.len()
                    );
                    assert!(frame.len() >= 5);
                    if let Ok(message) = parse_frame(frame) {
                        exercise_message(message, &mut state);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = e.to_string();
                    return;
                }
            }
        }
    }
    assert!(reader.buffered() <= stream.len());
});
