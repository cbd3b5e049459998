//! Locking for the crate's plain (not loom-modelled) mutexes.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, ignoring poison: no critical section of ours leaves data
/// half-updated, so a lock poisoned by a panic elsewhere (a waker or a
/// user callback dropped under it) still guards consistent data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
