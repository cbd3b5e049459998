//! Polled conditions as triggers.

use super::BoxFuture;
use crate::fault::{self, panic_message};
use crate::reason::{Reason, ReasonKind};
use std::fmt;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::time::Duration;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

/// What a condition's predicate returns: `bool`, or `Result<bool, E>` for a
/// predicate that can fail. An `Err` is a failed check: the condition keeps
/// polling and the error is reported as a fault
/// ([`Fenced::faults`](crate::Fenced::faults)), or, for a condition declared
/// with [`condition_fail_fast`](crate::Fencing::condition_fail_fast), the
/// condition fires with it (`"condition failed: …"`). You never name it:
/// return either from the predicate of
/// [`Fencing::condition`](crate::Fencing::condition) and its siblings.
///
/// # Examples
///
/// ```
/// use fencing::Fencing;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let plain = Fencing::new().condition(Duration::from_secs(1), || true);
/// let fallible = Fencing::new()
///     .condition(Duration::from_secs(1), || "7".parse::<u32>().map(|depth| depth > 5));
/// let err = fallible.run(std::future::pending::<()>()).await.unwrap_err();
/// assert_eq!(err.reason().message(), "condition met");
/// # }
/// ```
pub trait Verdict {
    /// `Ok(true)` fires the condition; `Err` carries why it could not be
    /// evaluated.
    fn verdict(self) -> Result<bool, String>;
}

impl Verdict for bool {
    fn verdict(self) -> Result<bool, String> {
        Ok(self)
    }
}

impl<E: fmt::Display> Verdict for Result<bool, E> {
    fn verdict(self) -> Result<bool, String> {
        self.map_err(|err| err.to_string())
    }
}

/// What a check that fails (returns `Err` or panics) does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum OnError {
    /// Reports a fault and keeps polling: the default.
    KeepPolling,
    /// Fires the condition with the error.
    Fire,
}

/// The reason a condition fires with, from one evaluation; `None` to keep
/// polling.
fn judge(outcome: std::thread::Result<Result<bool, String>>, on_error: OnError) -> Option<Reason> {
    // What the reason says when the check fails, what the fault says.
    let (fired, fault, error) = match outcome {
        Ok(Ok(false)) => return None,
        Ok(Ok(true)) => return Some(Reason::with_kind(ReasonKind::Condition, "condition met")),
        Ok(Err(err)) => ("condition failed", "condition check failed", err),
        Err(payload) => (
            "condition panicked",
            "condition check panicked",
            panic_message(&*payload),
        ),
    };
    match on_error {
        OnError::Fire => Some(Reason::with_kind(
            ReasonKind::Condition,
            format!("{fired}: {error}"),
        )),
        OnError::KeepPolling => {
            fault::report_in_trigger(fault, &error);
            None
        }
    }
}

/// Runs `check` every `every`, the first time one interval from the first
/// poll, late ticks delayed rather than bunched, until it gives a reason.
async fn every_until_fired<C, F>(every: Duration, on_error: OnError, mut check: C) -> Reason
where
    C: FnMut() -> F,
    F: Future<Output = std::thread::Result<Result<bool, String>>>,
{
    let mut ticks = interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Some(reason) = judge(check().await, on_error) {
            return reason;
        }
    }
}

/// A condition polled every `every`: fires when `predicate` returns `true`
/// (`"condition met"`). A check that fails or panics is a fault, or, with
/// [`OnError::Fire`], fires it (`"condition failed: …"`, `"condition
/// panicked: …"`). See [`Fencing::condition`](crate::Fencing::condition).
///
/// # Panics
///
/// If `every` is zero, as [`tokio::time::interval`] does.
#[track_caller]
pub(crate) fn condition<P, V>(every: Duration, on_error: OnError, mut predicate: P) -> BoxFuture
where
    P: FnMut() -> V + Send + 'static,
    V: Verdict,
{
    assert_nonzero(every);
    Box::pin(every_until_fired(every, on_error, move || {
        std::future::ready(catch_unwind(AssertUnwindSafe(|| predicate().verdict())))
    }))
}

/// A zero interval would evaluate the predicate in a busy loop.
#[track_caller]
fn assert_nonzero(every: Duration) {
    assert!(
        !every.is_zero(),
        "a condition's interval must be greater than zero"
    );
}

/// A condition with an async predicate, awaited every `every`. See
/// [`Fencing::condition_async`](crate::Fencing::condition_async).
///
/// # Panics
///
/// If `every` is zero.
#[track_caller]
pub(crate) fn condition_async<P, F>(
    every: Duration,
    on_error: OnError,
    mut predicate: P,
) -> BoxFuture
where
    P: FnMut() -> F + Send + 'static,
    F: Future + Send + 'static,
    F::Output: Verdict,
{
    assert_nonzero(every);
    Box::pin(every_until_fired(every, on_error, move || {
        let check = catch_unwind(AssertUnwindSafe(&mut predicate));
        async move {
            let mut check = pin!(check?);
            poll_fn(
                |cx| match catch_unwind(AssertUnwindSafe(|| check.as_mut().poll(cx))) {
                    Ok(poll) => poll.map(|v| Ok(v.verdict())),
                    Err(payload) => std::task::Poll::Ready(Err(payload)),
                },
            )
            .await
        }
    }))
}
