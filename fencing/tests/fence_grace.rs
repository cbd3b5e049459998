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
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let flag = Flag(dropped.clone());
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
