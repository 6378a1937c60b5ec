//! The one lock policy of this crate (mutexes and read-write locks).
//!
//! Every mutex here guards a short critical section (one push, pop, swap or
//! copy), never held across an await. A panic inside such a section cannot
//! leave the data half-updated, so a poisoned lock is still safe to use, and
//! refusing it would turn one bug into a dead connection.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::Waker;

/// Locks `m`, ignoring poisoning (see the module docs).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads `l`, ignoring poisoning (as [`lock`]).
pub(crate) fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes `l`, ignoring poisoning (as [`lock`]).
pub(crate) fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Stores `waker` in `slot` (under the slot's lock), keeping the one there
/// if it would wake the same task: a task that polls again and again (the
/// connection actor checks its mailbox several times per request) then
/// clones and drops nothing.
pub(crate) fn set_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(old) if old.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}
