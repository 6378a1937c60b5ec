//! Opening a byte stream to one of the configured hosts.
