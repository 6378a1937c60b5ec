//! The PostgreSQL wire protocol, pure: no I/O, no async. Thin over
//! postgres-protocol, with our own checks where it trusts its input.

pub(crate) mod copy_format;
pub(crate) mod describe;
pub(crate) mod framing;
pub(crate) mod frontend;
pub(crate) mod sql;
pub(crate) mod startup;
pub(crate) mod text;
pub(crate) mod values;
