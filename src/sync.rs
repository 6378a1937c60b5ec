//! The one mutex policy of this crate.
//!
//! Every mutex here guards a short critical section (one push, pop, swap or
//! copy), never held across an await. A panic inside such a section cannot
//! leave the data half-updated, so a poisoned lock is still safe to use, and
//! refusing it would turn one bug into a dead connection.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning (see the module docs).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
