//! The actors and their mailboxes, and `rt`, the runtime shim.

pub(crate) mod rt;
