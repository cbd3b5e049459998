//! Protected sections (DESIGN.md rule 17): a guard defers the fence's hard
//! cancel; triggers firing meanwhile are recorded; the body is dropped at
//! the first poll after the last guard is released.

mod support;

use fencing::{current, protect, Fencing, Token};
use futures_test::task::new_count_waker;
use std::future::pending;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use support::OnDrop;
use tokio::sync::oneshot;
use tokio_test::{assert_pending, assert_ready, task};

/// Polls a pinned fence once with `cx`.
fn poll<F: Future>(fenced: &mut Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    fenced.as_mut().poll(cx)
}

#[tokio::test(start_paused = true)]
async fn protected_sections_defer_the_drop_until_the_last_guard_goes() {
    let shutdown = Token::new();
    let dropped = Arc::new(AtomicBool::new(false));
    let (release, released) = oneshot::channel::<()>();

    let flag = OnDrop::flag(&dropped);
    let fenced = Fencing::new()
        .token(&shutdown)
        .code("shutdown")
        .run(async move {
            let _flag = flag;
            let guard = protect();
            assert!(guard.is_protecting());
            released.await.unwrap();
            drop(guard);
            pending::<()>().await;
        });
    let (waker, wakes) = new_count_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fenced = pin!(fenced);

    assert_pending!(poll(&mut fenced, &mut cx));
    shutdown.cancel_with("SIGTERM");
    assert_eq!(wakes.get(), 1);
    assert_pending!(
        poll(&mut fenced, &mut cx),
        "the guard defers the hard cancel"
    );
    assert!(!dropped.load(Ordering::SeqCst), "the body is still alive");
    assert!(fenced.is_cancelled(), "the trigger is recorded meanwhile");
    assert!(!fenced.is_interrupted());

    release.send(()).unwrap();
    assert_eq!(wakes.get(), 2, "releasing the last guard wakes the fence");
    let err = assert_ready!(poll(&mut fenced, &mut cx)).unwrap_err();
    assert!(
        dropped.load(Ordering::SeqCst),
        "dropped at the first poll after release"
    );
    assert!(err.cancelled_by("shutdown"));
    assert_eq!(err.reason().message(), "SIGTERM");
}

#[tokio::test(start_paused = true)]
async fn protected_sections_let_a_body_that_completes_return_its_value() {
    let shutdown = Token::new();
    let (release, released) = oneshot::channel::<()>();
    let fenced = Fencing::new()
        .token(&shutdown)
        .code("shutdown")
        .run(async move {
            let _commit = protect();
            released.await.unwrap();
            "committed"
        });
    let (waker, _) = new_count_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fenced = pin!(fenced);
    assert_pending!(poll(&mut fenced, &mut cx));
    shutdown.cancel();
    assert_pending!(poll(&mut fenced, &mut cx));
    release.send(()).unwrap();

    assert_eq!(
        assert_ready!(poll(&mut fenced, &mut cx)).unwrap(),
        "committed"
    );
    assert!(fenced.is_cancelled(), "the trigger still counts as fired");
    assert!(!fenced.is_interrupted());
    assert!(fenced.cancelled_by("shutdown"));
}

#[tokio::test(start_paused = true)]
async fn protected_sections_nest_and_hold_across_awaits_with_time() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = OnDrop::flag(&dropped);
    let fenced = Fencing::new()
        .timeout(Duration::from_secs(1))
        .code("budget")
        .run(async move {
            let _flag = flag;
            let outer = protect();
            let inner = protect();
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(inner);
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(outer);
            pending::<()>().await;
        });
    let (waker, _) = new_count_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fenced = pin!(fenced);
    assert_pending!(poll(&mut fenced, &mut cx));

    tokio::time::advance(Duration::from_secs(1)).await;
    assert_pending!(
        poll(&mut fenced, &mut cx),
        "the budget fired, both guards alive"
    );
    assert!(fenced.cancelled_by("budget"));

    tokio::time::advance(Duration::from_secs(1)).await;
    assert_pending!(poll(&mut fenced, &mut cx), "one guard is still alive");
    assert!(!dropped.load(Ordering::SeqCst));

    tokio::time::advance(Duration::from_secs(2)).await;
    let err = assert_ready!(poll(&mut fenced, &mut cx)).unwrap_err();
    assert!(dropped.load(Ordering::SeqCst));
    assert!(err.is_timeout());
    assert_eq!(err.reasons().len(), 1, "the budget is recorded once");
}

#[tokio::test(start_paused = true)]
async fn protected_sections_a_guard_in_an_inner_fence_protects_the_outer_too() {
    let shutdown = Token::new();
    let (release, released) = oneshot::channel::<()>();
    let outer = Fencing::new().token(&shutdown).code("outer");

    let mut request = task::spawn(outer.run(async move {
        // The inner fence has no trigger of its own: only the outer fires.
        Fencing::new()
            .run(async move {
                let _commit = protect();
                released.await.unwrap();
                "committed"
            })
            .await
    }));
    assert_pending!(request.poll());
    shutdown.cancel();
    assert_pending!(request.poll(), "the outer fence waits for the inner guard");
    release.send(()).unwrap();
    let inner = assert_ready!(request.poll()).unwrap();
    assert_eq!(inner.unwrap(), "committed");
}

#[tokio::test(start_paused = true)]
async fn protected_sections_a_guard_in_a_bound_future_protects_the_fence() {
    let shutdown = Token::new();
    let (release, released) = oneshot::channel::<()>();
    let fenced = Fencing::new().token(&shutdown).run(async move {
        current()
            .bind(async move {
                let _commit = protect();
                released.await.unwrap();
            })
            .await;
        pending::<()>().await;
    });
    let mut fenced = task::spawn(fenced);
    assert_pending!(fenced.poll());
    shutdown.cancel();
    assert_pending!(fenced.poll());
    release.send(()).unwrap();
    assert!(assert_ready!(fenced.poll()).is_err());
}

#[test]
fn protected_sections_a_guard_outside_a_fence_protects_nothing() {
    let guard = protect();
    assert!(!guard.is_protecting());
}

#[tokio::test(start_paused = true)]
async fn protected_sections_a_released_guard_leaves_the_fence_cancellable() {
    let shutdown = Token::new();
    let fenced = Fencing::new().token(&shutdown).run(async {
        drop(protect());
        pending::<()>().await;
    });
    let mut fenced = task::spawn(fenced);
    assert_pending!(fenced.poll());
    shutdown.cancel();
    assert!(
        assert_ready!(fenced.poll()).is_err(),
        "no guard alive: dropped at once"
    );
}
