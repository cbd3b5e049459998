//! Two-phase cancel (DESIGN.md rule 18): with a grace period the body first
//! sees the cancellation, and is dropped only if it still runs when the
//! grace period ends.

use fencing::{current, Fencing, Token};
use futures_test::task::new_count_waker;
use std::future::{pending, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready};

fn poll<F: Future>(fenced: &mut Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    fenced.as_mut().poll(cx)
}

#[tokio::test(start_paused = true)]
async fn two_phase_body_finishes_within_the_grace_period() {
    let shutdown = Token::new();
    let fencing = Fencing::new()
        .token(&shutdown)
        .code("shutdown")
        .grace(Duration::from_secs(5));
    let fenced = fencing.run(async {
        let seen = current().cancelled().await;
        assert!(current().is_cancelled());
        // Cleanup that takes a while, but less than the grace period.
        tokio::time::sleep(Duration::from_secs(2)).await;
        seen.reason().message().to_owned()
    });
    let (waker, _) = new_count_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fenced = pin!(fenced);

    assert_pending!(poll(&mut fenced, &mut cx));
    shutdown.cancel_with("SIGTERM");
    assert_pending!(
        poll(&mut fenced, &mut cx),
        "phase one: the body is told, not dropped"
    );
    assert!(fenced.is_cancelled());
    advance(Duration::from_secs(2)).await;

    let out = assert_ready!(poll(&mut fenced, &mut cx));
    assert_eq!(out.unwrap(), "SIGTERM");
    assert!(!fenced.is_interrupted(), "finished within the grace period");
    assert!(fenced.cancelled_by("shutdown"));
}

#[tokio::test(start_paused = true)]
async fn two_phase_body_still_running_is_dropped_when_the_grace_period_ends() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = OnDrop::flag(&dropped);
    let fenced = Fencing::new()
        .timeout(Duration::from_secs(10))
        .code("budget")
        .grace(Duration::from_secs(3))
        .run(async move {
            let _flag = flag;
            pending::<()>().await;
        });
    let (waker, wakes) = new_count_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fenced = pin!(fenced);

    assert_pending!(poll(&mut fenced, &mut cx));
    advance(Duration::from_secs(10)).await;
    assert_eq!(wakes.get(), 1, "the deadline wakes the fence");
    assert_pending!(poll(&mut fenced, &mut cx), "the grace period starts");
    assert!(!dropped.load(Ordering::SeqCst));

    advance(Duration::from_millis(2_999)).await;
    assert_pending!(poll(&mut fenced, &mut cx));
    assert!(!dropped.load(Ordering::SeqCst));

    advance(Duration::from_millis(1)).await;
    let err = assert_ready!(poll(&mut fenced, &mut cx)).unwrap_err();
    assert!(dropped.load(Ordering::SeqCst));
    assert!(fenced.is_interrupted());
    assert!(err.cancelled_by("budget"));
    assert_eq!(err.reasons().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn two_phase_zero_grace_drops_at_once_and_the_shorter_grace_wins() {
    let token = Token::new();
    token.cancel();
    let zero = Fencing::new().token(&token).grace(Duration::ZERO);
    assert!(zero.run(pending::<()>()).await.is_err());

    let fencing = Fencing::new()
        .grace(Duration::from_secs(9))
        .grace(Duration::from_secs(1));
    assert_eq!(fencing.grace_period(), Some(Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn two_phase_overflowing_grace_never_drops_the_body() {
    let token = Token::new();
    let fenced = Fencing::new()
        .token(&token)
        .grace(Duration::MAX)
        .run(async {
            current().cancelled().await;
            "told, never dropped"
        });
    let mut fenced = tokio_test::task::spawn(fenced);
    assert_pending!(fenced.poll());
    token.cancel();
    // The body resolves on its own, after seeing the cancellation.
    assert_eq!(assert_ready!(fenced.poll()).unwrap(), "told, never dropped");
}

#[tokio::test(start_paused = true)]
async fn two_phase_pre_fired_body_never_starts_even_with_grace() {
    let token = Token::new();
    token.cancel();
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let result = Fencing::new()
        .token(&token)
        .grace(Duration::from_secs(5))
        .run(async move { s.store(true, Ordering::SeqCst) })
        .await;
    assert!(result.is_err());
    assert!(
        !started.load(Ordering::SeqCst),
        "rule 6 holds with a grace period"
    );
}

#[tokio::test(start_paused = true)]
async fn two_phase_cancelled_future_resolves_with_what_fired() {
    let token = Token::new();
    let fencing = Fencing::new()
        .token(&token)
        .code("stop")
        .timeout(Duration::from_secs(60));
    let mut waiting = tokio_test::task::spawn(fencing.clone().cancelled());
    assert_pending!(waiting.poll());
    token.cancel_with("bye");
    assert!(waiting.is_woken());
    let fired = assert_ready!(waiting.poll());
    assert!(fired.cancelled_by("stop"));
    assert_eq!(
        token.__waiter_count(),
        0,
        "the wait released its registration"
    );
    // Already fired: resolves at once.
    assert!(fencing.cancelled().await.cancelled_by("stop"));
}

// ---------------------------------------------------------------------------
// Grace per code (`Fencing::grace_for`)
// ---------------------------------------------------------------------------

mod support;

use support::{codes, hand, OnDrop, Probe};
use tokio_test::{assert_ready_err, assert_ready_ok};

/// A request: a 10 s budget that cuts hard, and a shutdown with 5 s grace.
fn request(shutdown: &Token) -> Fencing {
    Fencing::new()
        .timeout(Duration::from_secs(10))
        .code("budget")
        .token(shutdown)
        .code("shutdown")
        .grace_for("shutdown", Duration::from_secs(5))
}

#[tokio::test(start_paused = true)]
async fn grace_per_trigger() {
    // The budget firing first drops the body at once.
    let shutdown = Token::new();
    let gate = Probe::default();
    let mut task = hand(request(&shutdown).run(gate.body()));
    assert_pending!(task.poll());
    advance(Duration::from_secs(10)).await;
    assert!(task.is_woken());
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["budget"]);
    assert_eq!(
        gate.drops(),
        1,
        "dropped within the poll that saw the budget"
    );

    // The shutdown firing first tells the body, which finishes in time.
    let shutdown = Token::new();
    let mut task = hand(request(&shutdown).run(async {
        current().cancelled().await;
        assert!(current().is_cancelled());
        tokio::time::sleep(Duration::from_secs(4)).await; // the clean-up
        "answered"
    }));
    assert_pending!(task.poll());
    shutdown.cancel_with("SIGTERM");
    assert!(task.is_woken());
    assert_pending!(task.poll(), "phase one: told, not dropped");
    advance(Duration::from_secs(4)).await;
    assert_eq!(assert_ready_ok!(task.poll()), "answered");
    assert!(!task.is_interrupted());
    assert_eq!(codes(&task.reasons()), ["shutdown"]);

    // The budget firing during the shutdown's grace period drops the body
    // at once, and both reasons are reported in firing order.
    let shutdown = Token::new();
    let gate = Probe::default();
    let mut task = hand(request(&shutdown).run(gate.body()));
    assert_pending!(task.poll());
    advance(Duration::from_secs(7)).await;
    shutdown.cancel_with("SIGTERM");
    assert_pending!(task.poll(), "the grace period runs to 12 s");
    assert!(gate.told());
    advance(Duration::from_millis(2_999)).await;
    assert!(!task.is_woken(), "nothing is due before the budget");
    advance(Duration::from_millis(1)).await;
    assert!(task.is_woken(), "the one timer serves the deadline");
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["shutdown", "budget"]);
    assert!(err.reasons()[1].is_timeout());
    assert_eq!(gate.drops(), 1);
    assert!(task.is_interrupted());
}

#[tokio::test(start_paused = true)]
async fn grace_for_zero_is_hard_even_under_a_fence_wide_grace() {
    let shutdown = Token::new();
    let fencing = request(&shutdown)
        .grace(Duration::from_secs(60))
        .grace_for("budget", Duration::ZERO);
    assert_eq!(fencing.grace_period_for("budget"), Some(Duration::ZERO));
    assert_eq!(fencing.grace_period(), Some(Duration::from_secs(60)));
    let gate = Probe::default();
    let mut task = hand(fencing.run(gate.body()));
    assert_pending!(task.poll());
    advance(Duration::from_secs(10)).await;
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["budget"]);
    assert_eq!(gate.drops(), 1);
}

#[tokio::test(start_paused = true)]
async fn grace_for_overflowing_never_drops_for_that_reason() {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    let shutdown = Token::new();
    let admin = Token::new();
    let gate = Probe::default();
    let mut task = hand(
        Fencing::new()
            .token(&shutdown)
            .code("shutdown")
            .token(&admin)
            .code("admin")
            .grace_for("shutdown", Duration::MAX)
            .run(gate.body()),
    );
    assert_pending!(task.poll());
    shutdown.cancel();
    assert_pending!(task.poll());
    assert!(gate.told());
    advance(100 * YEAR).await;
    assert!(!task.is_woken(), "no timer for a grace that never ends");
    assert_pending!(task.poll());
    assert_eq!(gate.drops(), 0, "never dropped for the shutdown, only told");

    // A reason without a grace period still cuts.
    admin.cancel();
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["shutdown", "admin"]);
    assert_eq!(gate.drops(), 1);
}

#[tokio::test(start_paused = true)]
async fn grace_for_declared_twice_the_shorter_wins() {
    let shutdown = Token::new();
    let fencing = Fencing::new()
        .token(&shutdown)
        .code("shutdown")
        .grace_for("shutdown", Duration::from_secs(9))
        .grace_for("shutdown", Duration::from_secs(2))
        .grace_for("shutdown", Duration::from_secs(4));
    assert_eq!(
        fencing.grace_period_for("shutdown"),
        Some(Duration::from_secs(2))
    );
    assert_eq!(fencing.grace_period_for("other"), None);
    assert_eq!(fencing.grace_period(), None);

    let gate = Probe::default();
    let mut task = hand(fencing.run(gate.body()));
    assert_pending!(task.poll());
    shutdown.cancel();
    assert_pending!(task.poll());
    advance(Duration::from_millis(1_999)).await;
    assert_pending!(task.poll());
    advance(Duration::from_millis(1)).await;
    assert!(task.is_woken());
    assert_ready_err!(task.poll());
    assert_eq!(gate.drops(), 1);
}

#[tokio::test(start_paused = true)]
async fn grace_for_overrides_the_fence_wide_grace_and_the_earliest_end_wins() {
    // "shutdown" has 5 s of its own, "admin" the fence-wide 1 s.
    let shutdown = Token::new();
    let admin = Token::new();
    let gate = Probe::default();
    let mut task = hand(
        Fencing::new()
            .token(&shutdown)
            .code("shutdown")
            .token(&admin)
            .code("admin")
            .grace(Duration::from_secs(1))
            .grace_for("shutdown", Duration::from_secs(5))
            .run(gate.body()),
    );
    assert_pending!(task.poll());
    shutdown.cancel();
    assert_pending!(task.poll());
    advance(Duration::from_secs(1)).await;
    assert!(
        !task.is_woken(),
        "the shutdown's 5 s, not the fence-wide 1 s"
    );
    assert_pending!(task.poll());

    // At 2 s admin fires: its grace period ends at 3 s, before the 5 s.
    advance(Duration::from_secs(1)).await;
    admin.cancel();
    assert_pending!(task.poll());
    advance(Duration::from_millis(999)).await;
    assert_pending!(task.poll());
    assert_eq!(gate.drops(), 0);
    advance(Duration::from_millis(1)).await;
    assert!(task.is_woken());
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["shutdown", "admin"]);
    assert_eq!(gate.drops(), 1);
}

#[tokio::test(start_paused = true)]
async fn grace_for_the_deadline_during_another_grace_counts_from_when_it_fires() {
    // The shutdown fires at 0 s (grace to 5 s); the budget at 1 s with 3 s
    // of its own (to 4 s): dropped at 4 s.
    let shutdown = Token::new();
    let gate = Probe::default();
    let mut task = hand(
        request(&shutdown)
            .timeout(Duration::from_secs(1))
            .code("tight")
            .grace_for("tight", Duration::from_secs(3))
            .run(gate.body()),
    );
    assert_pending!(task.poll());
    shutdown.cancel();
    assert_pending!(task.poll());
    advance(Duration::from_secs(1)).await;
    assert!(task.is_woken(), "the deadline during the grace period");
    assert_pending!(task.poll());
    assert_eq!(codes(&task.reasons()), ["shutdown", "tight"]);
    advance(Duration::from_millis(2_999)).await;
    assert_pending!(task.poll());
    advance(Duration::from_millis(1)).await;
    assert!(task.is_woken());
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["shutdown", "tight"]);
    assert_eq!(gate.drops(), 1);
}

#[tokio::test(start_paused = true)]
async fn two_phase_a_deadline_passing_during_the_grace_period_is_recorded() {
    let token = Token::new();
    let gate = Probe::default();
    let mut task = hand(
        Fencing::new()
            .timeout(Duration::from_secs(10))
            .code("budget")
            .token(&token)
            .code("stop")
            .grace(Duration::from_secs(5))
            .run(gate.body()),
    );
    assert_pending!(task.poll());
    advance(Duration::from_secs(7)).await;
    token.cancel();
    assert_pending!(task.poll(), "grace to 12 s");
    advance(Duration::from_secs(3)).await;
    assert!(task.is_woken(), "the deadline is still watched");
    assert_pending!(task.poll(), "the budget's own grace ends at 15 s");
    assert_eq!(codes(&task.reasons()), ["stop", "budget"]);
    advance(Duration::from_millis(1_999)).await;
    assert_pending!(task.poll());
    advance(Duration::from_millis(1)).await;
    assert!(task.is_woken());
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["stop", "budget"]);
}

#[tokio::test(start_paused = true)]
async fn grace_for_protect_defers_the_drop_past_the_grace_end() {
    let shutdown = Token::new();
    let release = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let (r, flag) = (release.clone(), OnDrop::flag(&dropped));
    let mut task = hand(request(&shutdown).run(async move {
        let _flag = flag;
        let guard = fencing::protect();
        std::future::poll_fn(|_| {
            if r.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        drop(guard);
        pending::<()>().await;
    }));
    assert_pending!(task.poll());
    shutdown.cancel();
    assert_pending!(task.poll());
    advance(Duration::from_secs(5)).await;
    assert!(task.is_woken(), "the grace period ended");
    assert_pending!(task.poll(), "but a guard is alive");
    assert!(!dropped.load(Ordering::SeqCst));

    release.store(true, Ordering::SeqCst);
    let err = assert_ready_err!(task.poll());
    assert!(
        dropped.load(Ordering::SeqCst),
        "dropped once the guard went"
    );
    assert_eq!(codes(err.reasons()), ["shutdown"]);
}

#[tokio::test(start_paused = true)]
async fn grace_for_is_inherited_by_derived_fencings_and_left_out_by_cancelled() {
    let shutdown = Token::new();
    let fencing = request(&shutdown);
    let mut task = hand(fencing.clone().run(async {
        let inner = current().timeout(Duration::from_secs(60)).code("db");
        assert_eq!(
            inner.grace_period_for("shutdown"),
            Some(Duration::from_secs(5))
        );
        // The inner fence gives its body the shutdown's grace period too.
        inner
            .run(async {
                current().cancelled().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                "flushed"
            })
            .await
    }));
    assert_pending!(task.poll());
    shutdown.cancel();
    assert_pending!(task.poll());
    advance(Duration::from_secs(1)).await;
    assert_eq!(assert_ready_ok!(task.poll()).unwrap(), "flushed");

    // `cancelled()` resolves as soon as a trigger fires: no grace there.
    let shutdown = Token::new();
    let mut waiting = hand(request(&shutdown).cancelled());
    assert_pending!(waiting.poll());
    shutdown.cancel();
    assert!(assert_ready!(waiting.poll()).cancelled_by("shutdown"));
}
