//! Faults: user code a fence runs that failed to give an answer, which the
//! fence survives instead of passing the failure on: a policy that panicked
//! (the reason counts as accepted), a condition check that returned `Err`
//! or panicked (the condition keeps polling, unless declared fail-fast).
//! Each is reported once, here: a `WARN` event (feature `tracing`), and one
//! more in the count of the fence whose poll ran the code
//! ([`Fenced::faults`]).
//!
//! A condition runs inside a shared future trigger, which knows neither the
//! fence polling it nor the code it was declared under. So the count goes
//! through the thread: [`report`] adds to a per-thread counter, which a
//! fence reads before and after it runs user code ([`mark`], [`since`]),
//! and the trigger being polled leaves its code with the thread for the
//! event ([`in_trigger`]). The counter only grows, so fences nested in a
//! trigger (the parts of `all_of`) count what their own triggers reported,
//! and the fence around them counts it too.
//!
//! [`Fenced::faults`]: crate::Fenced::faults

use crate::reason::Code;
use std::any::Any;
use std::cell::Cell;

thread_local! {
    static FAULTS: Cell<u64> = const { Cell::new(0) };
}

#[cfg(feature = "tracing")]
thread_local! {
    /// The code of the trigger being polled on this thread, if any.
    static CODE: Cell<Option<Code>> = const { Cell::new(None) };
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

/// Reports a fault in the trigger being polled, under its code.
pub(crate) fn report_in_trigger(what: &'static str, error: &str) {
    #[cfg(feature = "tracing")]
    {
        let code = CODE.with(Cell::take);
        report(code.as_ref(), what, error);
        CODE.with(|slot| slot.set(code));
    }
    #[cfg(not(feature = "tracing"))]
    report(None, what, error);
}

/// Runs `poll`, the poll of a trigger declared under `code`, so that what
/// it reports carries that code.
#[inline]
pub(crate) fn in_trigger<R>(code: Option<&Code>, poll: impl FnOnce() -> R) -> R {
    #[cfg(feature = "tracing")]
    {
        /// Puts the outer code back, even if `poll` panics.
        struct Restore(Option<Code>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let outer = self.0.take();
                CODE.with(|slot| slot.set(outer));
            }
        }
        let _restore = Restore(CODE.with(|slot| slot.replace(code.cloned())));
        poll()
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = code;
        poll()
    }
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
