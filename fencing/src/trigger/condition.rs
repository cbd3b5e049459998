//! Polled conditions as triggers.

use super::BoxFuture;
use crate::fault::panic_message;
use crate::reason::{Reason, ReasonKind};
use std::fmt;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::time::Duration;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

/// What a condition's predicate returns: `bool`, or `Result<bool, E>` for a
/// predicate that can fail, whose error is then reported in the reason
/// (`"condition failed: …"`). You never name it: return either from the
/// predicate of [`Fencing::condition`](crate::Fencing::condition) or
/// [`Fencing::condition_async`](crate::Fencing::condition_async).
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

/// The reason a condition fires with, from one evaluation; `None` to keep
/// polling.
fn judge(outcome: std::thread::Result<Result<bool, String>>) -> Option<Reason> {
    match outcome {
        Ok(Ok(false)) => None,
        Ok(Ok(true)) => Some(Reason::with_kind(ReasonKind::Condition, "condition met")),
        Ok(Err(err)) => Some(Reason::with_kind(
            ReasonKind::Condition,
            format!("condition failed: {err}"),
        )),
        Err(payload) => Some(Reason::with_kind(
            ReasonKind::Condition,
            format!("condition panicked: {}", panic_message(&*payload)),
        )),
    }
}

/// Runs `check` every `every`, the first time one interval from the first
/// poll, late ticks delayed rather than bunched, until it gives a reason.
async fn every_until_fired<C, F>(every: Duration, mut check: C) -> Reason
where
    C: FnMut() -> F,
    F: Future<Output = std::thread::Result<Result<bool, String>>>,
{
    let mut ticks = interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Some(reason) = judge(check().await) {
            return reason;
        }
    }
}

/// A condition polled every `every`: fires when `predicate` returns `true`
/// (`"condition met"`), fails (`"condition failed: …"`) or panics
/// (`"condition panicked: …"`). See [`Fencing::condition`](crate::Fencing::condition).
///
/// # Panics
///
/// If `every` is zero, as [`tokio::time::interval`] does.
#[track_caller]
pub(crate) fn condition<P, V>(every: Duration, mut predicate: P) -> BoxFuture
where
    P: FnMut() -> V + Send + 'static,
    V: Verdict,
{
    assert_nonzero(every);
    Box::pin(every_until_fired(every, move || {
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
pub(crate) fn condition_async<P, F>(every: Duration, mut predicate: P) -> BoxFuture
where
    P: FnMut() -> F + Send + 'static,
    F: Future + Send + 'static,
    F::Output: Verdict,
{
    assert_nonzero(every);
    Box::pin(every_until_fired(every, move || {
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
