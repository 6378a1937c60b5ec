//! The whole input is a backend byte stream: split it into frames with the
//! client's `FrameReader` (1 MiB cap), parse every frame, and read every
//! message the way the client does. Never a panic, and never much more
//! memory than the cap plus the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasi_pg_client::__fuzz::{parse_frame, FrameReader};
use wasi_pg_client_fuzz::{alloc_meter, exercise_message, StreamState, U16_COUNT_ALLOWANCE};

const CAP: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let base = alloc_meter::reset();
    {
        let mut reader = FrameReader::new(CAP);
        reader.extend(data);
        let mut state = StreamState::default();
        // A framing error ends the connection in the client: stop there too.
        while let Ok(Some(frame)) = reader.next_frame() {
            assert!(
                frame.len() >= 5 && frame.len() <= CAP + 1,
                "frame of {} bytes",
                frame.len()
            );
            if let Ok(message) = parse_frame(frame) {
                exercise_message(message, &mut state);
            }
        }
        assert!(reader.buffered() <= data.len());
    }
    let used = alloc_meter::peak() - base;
    let bound = CAP + 4 * data.len() + U16_COUNT_ALLOWANCE;
    assert!(
        used <= bound,
        "{used} bytes allocated for a {}-byte input",
        data.len()
    );
});
