//! Helpers shared by several test files (`mod support;`).

use std::time::Duration;
use tokio::time::Instant;

/// The latest instant the clock can represent, found a second and then a
/// nanosecond at a time.
pub(crate) fn latest_instant() -> Instant {
    let now = Instant::now();
    let secs = now
        + Duration::from_secs(last_fit(u64::MAX, |s| {
            now.checked_add(Duration::from_secs(s)).is_some()
        }));
    secs + Duration::from_nanos(last_fit(999_999_999, |n| {
        secs.checked_add(Duration::from_nanos(n)).is_some()
    }))
}

/// The largest `x` in `0..=max` for which `fits(x)` holds, `fits` being
/// monotone and true at 0.
fn last_fit(max: u64, fits: impl Fn(u64) -> bool) -> u64 {
    let (mut lo, mut hi) = (0, max);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}
