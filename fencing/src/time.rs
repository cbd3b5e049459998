//! Overflow-safe time on tokio's clock.
//!
//! All time goes through `tokio::time::Instant`, so a paused test clock
//! governs every deadline.

use std::time::Duration;
use tokio::time::Instant;

/// `now + after`, or `None` when that is not representable: an overflowing
/// duration means "no deadline", never a panic.
pub(crate) fn deadline_after(now: Instant, after: Duration) -> Option<Instant> {
    now.checked_add(after)
}

/// How far ahead the fence's timer is set at most: tokio's own "far future".
/// A deadline beyond it is representable but too close to `Instant`'s limit
/// for tokio's timer arithmetic, and means "never" in practice.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The instant to set the fence's timer for, to watch `at`: `at` itself, or
/// thirty years from `now` if that is sooner.
pub(crate) fn timer_deadline(at: Instant, now: Instant) -> Instant {
    deadline_after(now, FAR_FUTURE).map_or(at, |far| at.min(far))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_means_no_deadline() {
        let now = Instant::now();
        assert_eq!(deadline_after(now, Duration::MAX), None);
        assert_eq!(deadline_after(now, Duration::ZERO), Some(now));
    }
}
