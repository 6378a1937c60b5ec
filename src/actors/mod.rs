//! The actors and their mailboxes, and `rt`, the runtime shim.

pub(crate) mod answer;
pub(crate) mod both;
pub(crate) mod cancel;
pub(crate) mod connection;
pub(crate) mod dispatcher;
pub(crate) mod handshake;
pub(crate) mod in_place;
pub(crate) mod mailbox;
#[cfg(feature = "pool")]
pub(crate) mod pool;
#[cfg(feature = "pool")]
pub(crate) mod pool_clock;
pub(crate) mod reply;
pub(crate) mod rt;
pub(crate) mod shared;
pub(crate) mod statements;
pub(crate) mod wake_flag;
