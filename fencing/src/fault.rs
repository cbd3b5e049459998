//! Faults: user code a fence runs that failed to give an answer, which the
//! fence survives instead of passing the failure on: a policy that panicked
//! (the reason counts as accepted). Each is reported once, here: a `WARN` event (feature `tracing`) and one more in
//! the count of the fence whose poll ran the code ([`Fenced::faults`]).
//!
//! The count goes through the thread: [`report`] adds to a per-thread
//! counter, which a fence reads before and after it runs user code
//! ([`mark`], [`since`]). The counter only grows, so a fence nested in a
//! trigger (a part of `all_of`) counts what it reported, and the fence
//! around it counts it too.
//!
//! [`Fenced::faults`]: crate::Fenced::faults

use crate::reason::Code;
use std::any::Any;
use std::cell::Cell;

thread_local! {
    static FAULTS: Cell<u64> = const { Cell::new(0) };
}

/// The text of a panic's payload, as the default panic hook prints it.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned())
}

/// Reports a fault: `what` happened (`"policy panicked"`), with `error`,
/// in user code run for a trigger declared under `code`.
pub(crate) fn report(code: Option<&Code>, what: &'static str, error: &str) {
    FAULTS.with(|faults| faults.set(faults.get().wrapping_add(1)));
    #[cfg(feature = "tracing")]
    tracing::warn!(
        target: "fencing::fence",
        code = code.map(Code::as_str),
        error,
        "{what}"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (code, what, error);
}

/// Where the thread's count stands, to pass to [`since`].
#[inline]
pub(crate) fn mark() -> u64 {
    FAULTS.with(Cell::get)
}

/// How many faults were reported on this thread since `mark`.
#[inline]
pub(crate) fn since(mark: u64) -> u32 {
    u32::try_from(FAULTS.with(Cell::get).wrapping_sub(mark)).unwrap_or(u32::MAX)
}
