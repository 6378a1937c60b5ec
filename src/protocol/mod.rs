//! The PostgreSQL wire protocol, pure: no I/O, no async.
