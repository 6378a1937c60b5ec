//! What users hold: thin handles that build requests and send them to actors.

pub(crate) mod config;
pub(crate) mod error;
