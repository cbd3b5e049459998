//! On-cancel hooks (Go's `AfterFunc`, .NET's `Register`).

use fencing::Token;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn counter() -> (Arc<AtomicUsize>, impl Fn() -> usize) {
    let count = Arc::new(AtomicUsize::new(0));
    let read = count.clone();
    (count, move || read.load(Ordering::SeqCst))
}

#[test]
fn on_cancel_hook_runs_once_with_the_reason() {
    let token = Token::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let _hook = token.on_cancel(move |reason| s.lock().unwrap().push(reason.message().to_owned()));
    assert!(seen.lock().unwrap().is_empty(), "not before the cancel");
    token.cancel_with("first");
    token.cancel_with("second");
    assert_eq!(*seen.lock().unwrap(), ["first"]);
}

#[test]
fn on_cancel_hook_registered_after_the_cancel_runs_at_once() {
    let token = Token::new();
    token.cancel_with("earlier");
    let (count, read) = counter();
    let hook = token.on_cancel(move |reason| {
        assert_eq!(reason.message(), "earlier");
        count.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(read(), 1, "ran before on_cancel returned");
    assert!(!hook.remove());
}

#[test]
fn on_cancel_hook_dropped_first_never_runs() {
    let token = Token::new();
    let (count, read) = counter();
    let hook = token.on_cancel(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(token.__waiter_count(), 1);
    drop(hook);
    assert_eq!(token.__waiter_count(), 0, "the registration is gone");
    token.cancel();
    assert_eq!(read(), 0);
}

#[test]
fn on_cancel_hook_remove_reports_whether_it_was_removed_in_time() {
    let token = Token::new();
    let (count, read) = counter();
    let c = count.clone();
    let hook = token.on_cancel(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert!(hook.remove());
    let detached = token.on_cancel(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    detached.detach();
    token.cancel();
    assert_eq!(read(), 1, "only the detached hook ran");
}

#[test]
fn on_cancel_hook_runs_under_no_internal_lock() {
    let token = Token::new();
    let other = Token::new();
    let (count, read) = counter();
    let t = token.clone();
    let o = other.clone();
    let _hook = token.on_cancel(move |_| {
        // Each of these takes the token's own lock: under it, they would deadlock.
        assert!(!t.cancel(), "cancelling the same token again is a no-op");
        assert_eq!(t.__waiter_count(), 0);
        let inner = count.clone();
        t.on_cancel(move |_| {
            inner.fetch_add(1, Ordering::SeqCst);
        })
        .detach();
        let _child = t.child();
        // And they may cancel other tokens.
        assert!(o.cancel_with("from a hook"));
        count.fetch_add(1, Ordering::SeqCst);
    });
    token.cancel();
    assert_eq!(read(), 2, "the hook and the hook it registered both ran");
    assert_eq!(other.reason().unwrap().message(), "from a hook");
}

#[test]
fn on_cancel_hook_on_a_child_runs_when_the_parent_is_cancelled() {
    let parent = Token::new();
    let child = parent.child();
    let (count, read) = counter();
    let _hook = child.on_cancel(move |reason| {
        assert_eq!(reason.message(), "shutdown");
        count.fetch_add(1, Ordering::SeqCst);
    });
    parent.cancel_with("shutdown");
    assert_eq!(read(), 1);
}

#[test]
fn on_cancel_hook_that_panics_does_not_stop_the_rest() {
    let parent = Token::new();
    let child = parent.child();
    let (count, read) = counter();
    let c = count.clone();
    let _bad = parent.on_cancel(|_| panic!("hook exploded"));
    let _good = parent.on_cancel(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let _child_hook = child.on_cancel(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
    });

    let payload = panic::catch_unwind(AssertUnwindSafe(|| parent.cancel())).unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"hook exploded"));
    assert!(parent.is_cancelled() && child.is_cancelled());
    assert_eq!(read(), 2, "the other hook and the child's hook ran");
    assert!(!parent.cancel(), "nothing is poisoned");
}

/// A hook's panic reaches the code that cancelled, not the fences waiting
/// on the token: they see the cancellation with its reason.
#[tokio::test(start_paused = true)]
async fn on_cancel_hook_panic_reaches_the_canceller_not_the_fence() {
    let shutdown = Token::new();
    let _bad = shutdown.on_cancel(|_| panic!("hook exploded"));
    let mut fenced = tokio_test::task::spawn(
        fencing::Fencing::new()
            .token(&shutdown)
            .code("shutdown")
            .run(std::future::pending::<()>()),
    );
    tokio_test::assert_pending!(fenced.poll());
    let payload = panic::catch_unwind(AssertUnwindSafe(|| shutdown.cancel_with("SIGTERM")));
    assert!(payload.is_err(), "resumed from cancel");
    assert!(fenced.is_woken());
    let err = tokio_test::assert_ready!(fenced.poll()).unwrap_err();
    assert!(err.cancelled_by("shutdown"));
    assert_eq!(err.reason().message(), "SIGTERM");
    assert_eq!(shutdown.__waiter_count(), 0);
}

#[test]
fn on_cancel_hook_from_any_thread() {
    let token = Token::new();
    let (count, read) = counter();
    let _hook = token.on_cancel(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    std::thread::spawn(move || token.cancel()).join().unwrap();
    assert_eq!(read(), 1);
}
