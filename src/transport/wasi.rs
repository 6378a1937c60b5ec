//! WASI Preview 2 TCP (placeholder until the wasi socket code lands).
