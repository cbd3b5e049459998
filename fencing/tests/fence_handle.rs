//! Manual control of an armed fence: cancel it with a reason from anywhere,
//! and move its deadline earlier or later.

use fencing::{current, FenceHandle, Fencing, ReasonKind};
use std::future::pending;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{advance, Instant};
use tokio_test::{assert_pending, assert_ready, task};

#[tokio::test(start_paused = true)]
async fn reschedule_cancel_from_another_task_and_thread() {
    let handle = FenceHandle::new();
    let job = tokio::spawn(
        Fencing::new()
            .timeout(Duration::from_secs(60))
            .handle(&handle)
            .code("admin")
            .run(pending::<()>()),
    );
    tokio::task::yield_now().await;
    let remote = handle.clone();
    std::thread::spawn(move || assert!(remote.cancel_with("operator")))
        .join()
        .unwrap();
    let err = job.await.unwrap().unwrap_err();
    assert!(err.cancelled_by("admin"));
    assert_eq!(err.reason().kind(), ReasonKind::Token);
    assert_eq!(err.reason().message(), "operator");
    assert!(!handle.cancel(), "the first cancel wins");
}

#[tokio::test(start_paused = true)]
async fn reschedule_cancel_before_the_fence_starts() {
    let handle = FenceHandle::new();
    handle.cancel();
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let fenced = Fencing::new()
        .handle(&handle)
        .run(async move { s.store(true, Ordering::SeqCst) });
    assert!(fenced.is_cancelled(), "inspect before await");
    assert!(fenced.await.is_err());
    assert!(!started.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn reschedule_earlier_fires_at_the_new_deadline() {
    let handle = FenceHandle::new();
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(60))
        .code("budget")
        .handle(&handle)
        .code("moved");
    let mut fenced = task::spawn(fencing.clone().run(pending::<()>()));
    assert_pending!(fenced.poll());

    let at = Instant::now() + Duration::from_secs(1);
    handle.reschedule(at);
    assert!(fenced.is_woken(), "a running fence re-arms at once");
    assert_eq!(fencing.effective_deadline(), Some(at), "reflected at once");
    assert_pending!(fenced.poll());

    advance(Duration::from_millis(999)).await;
    assert_pending!(fenced.poll());
    advance(Duration::from_millis(1)).await;
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(err.cancelled_by("moved"));
    assert!(!err.cancelled_by("budget"));
    assert!(err.is_deadline());
}

#[tokio::test(start_paused = true)]
async fn reschedule_later_replaces_the_declared_timeout() {
    let handle = FenceHandle::new();
    let mut fenced = task::spawn(
        Fencing::new()
            .timeout(Duration::from_secs(1))
            .code("budget")
            .handle(&handle)
            .code("extended")
            .run(pending::<()>()),
    );
    assert_pending!(fenced.poll());
    handle.reschedule_after(Duration::from_secs(10));
    assert_pending!(fenced.poll());

    advance(Duration::from_secs(1)).await;
    assert_pending!(fenced.poll(), "the declared 1 s no longer applies");
    advance(Duration::from_secs(9)).await;
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(err.cancelled_by("extended"));
    assert_eq!(err.reason().message(), "timed out after 10s");
}

#[tokio::test(start_paused = true)]
async fn reschedule_after_the_old_deadline_elapsed_but_before_the_poll() {
    let handle = FenceHandle::new();
    let mut fenced = task::spawn(
        Fencing::new()
            .timeout(Duration::from_secs(1))
            .handle(&handle)
            .run(pending::<()>()),
    );
    assert_pending!(fenced.poll());
    advance(Duration::from_secs(1)).await;
    assert!(fenced.is_woken(), "the old deadline's timer fired");
    handle.reschedule_after(Duration::from_secs(5));
    assert_pending!(fenced.poll(), "moved later before the fence looked");
    advance(Duration::from_secs(5)).await;
    assert!(assert_ready!(fenced.poll()).is_err());
}

#[tokio::test(start_paused = true)]
async fn reschedule_with_an_overflowing_duration_removes_the_deadline() {
    let handle = FenceHandle::new();
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(1))
        .handle(&handle);
    let mut fenced = task::spawn(fencing.clone().run(pending::<()>()));
    assert_pending!(fenced.poll());
    handle.reschedule_after(Duration::MAX);
    assert_eq!(fencing.effective_deadline(), None);
    assert_pending!(fenced.poll());
    advance(Duration::from_secs(3600)).await;
    assert_pending!(fenced.poll(), "no deadline any more");
    handle.cancel();
    assert!(assert_ready!(fenced.poll()).is_err(), "still cancellable");
}

#[tokio::test(start_paused = true)]
async fn reschedule_in_the_past_fires_at_the_next_poll() {
    let handle = FenceHandle::new();
    let mut fenced = task::spawn(
        Fencing::new()
            .handle(&handle)
            .code("now")
            .run(pending::<()>()),
    );
    assert_pending!(fenced.poll());
    handle.reschedule(Instant::now() - Duration::from_secs(1));
    assert!(fenced.is_woken());
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(err.cancelled_by("now"));
}

#[tokio::test(start_paused = true)]
async fn reschedule_idle_timeout_is_one_line_per_progress() {
    let idle = FenceHandle::new();
    idle.reschedule_after(Duration::from_secs(5));
    let progress = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p = progress.clone();
    let started = Instant::now();
    let err = Fencing::new()
        .handle(&idle)
        .code("idle")
        .run(async {
            // Steps of 1, 2, 3, ... s. The 5 s step ends in the same tick as
            // the idle limit and wins the tie; the 6 s step exceeds it.
            for step in 1..=10 {
                tokio::time::sleep(Duration::from_secs(step)).await;
                p.fetch_add(1, Ordering::SeqCst);
                idle.reschedule_after(Duration::from_secs(5));
            }
        })
        .await
        .unwrap_err();
    assert!(err.cancelled_by("idle"));
    assert_eq!(
        progress.load(Ordering::SeqCst),
        5,
        "steps of 1 to 5 s made progress"
    );
    // 1+2+3+4+5 s of progress, then 5 s idle.
    assert_eq!(started.elapsed(), Duration::from_secs(20));
}

/// Issue 10: a moved handle is one more deadline in effect, never a
/// replacement of those the context brought in or those derived inside
/// (rules 3 and 16): the effective deadline is the tightest of them all, and
/// the tightest one's code fires.
#[tokio::test(start_paused = true)]
async fn reschedule_composes_with_derived_deadline() {
    // An outer handle moved later; a tighter deadline derived inside.
    let idle = FenceHandle::new();
    let started = Instant::now();
    let inner = Fencing::new()
        .handle(&idle)
        .code("idle")
        .run(async {
            idle.reschedule_after(Duration::from_secs(60));
            let db = current().timeout(Duration::from_secs(1)).code("db");
            assert_eq!(db.remaining(), Some(Duration::from_secs(1)));
            assert_eq!(
                db.effective_deadline(),
                Some(started + Duration::from_secs(1))
            );
            let fenced = db.run(pending::<()>());
            // Moved again while the inner fence runs: still the tighter one.
            idle.reschedule_after(Duration::from_secs(90));
            fenced.await
        })
        .await
        .expect("the inner fence fires first and returns to the body");
    let err = inner.unwrap_err();
    assert!(err.cancelled_by("db"), "{err}");
    assert!(!err.cancelled_by("idle"));
    assert_eq!(started.elapsed(), Duration::from_secs(1));

    // The reverse: an inner handle moved later never reports more than the
    // outer budget allows, and the budget fires first, under its code.
    let moved = FenceHandle::new();
    let started = Instant::now();
    let inner = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("budget")
        .run(async {
            let fencing = current().handle(&moved).code("moved");
            moved.reschedule_after(Duration::from_secs(60));
            assert_eq!(fencing.remaining(), Some(Duration::from_secs(5)));
            assert_eq!(
                fencing.effective_deadline(),
                Some(started + Duration::from_secs(5))
            );
            let fenced = fencing.run(pending::<()>());
            moved.reschedule_after(Duration::from_secs(120));
            fenced.await
        })
        .await
        .expect("the inner fence fires first and returns to the body");
    let err = inner.unwrap_err();
    assert!(err.cancelled_by("budget"), "{err}");
    assert!(!err.cancelled_by("moved"));
    assert_eq!(started.elapsed(), Duration::from_secs(5));

    // Moved earlier than the derived deadline, the handle wins, under its
    // own code.
    let moved = FenceHandle::new();
    let started = Instant::now();
    let err = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("budget")
        .handle(&moved)
        .code("moved")
        .run(async {
            let fenced = current()
                .timeout(Duration::from_secs(3))
                .code("db")
                .run(pending::<()>());
            moved.reschedule_after(Duration::from_secs(2));
            fenced.await
        })
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.cancelled_by("moved"), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

/// Issue 12, the moved-handle rule of `docs/design.md`: on a root
/// `Fencing::new()` a handle takes over only the deadline declared before
/// it (keeping that one's code until it is moved); a deadline declared
/// after it stays a candidate; derived from the context, a handle takes
/// nothing over; the effective deadline is always the minimum.
#[tokio::test(start_paused = true)]
async fn reschedule_takes_over_only_the_deadline_declared_before() {
    let start = Instant::now();
    let secs = |n| Some(start + Duration::from_secs(n));
    let handle = FenceHandle::new();
    let root = Fencing::new()
        .timeout(Duration::from_secs(1))
        .code("before")
        .handle(&handle)
        .code("moved")
        .timeout(Duration::from_secs(5))
        .code("after");
    assert_eq!(
        root.effective_deadline(),
        secs(1),
        "not moved yet: `before`"
    );
    handle.reschedule_after(Duration::from_secs(60));
    assert_eq!(
        root.effective_deadline(),
        secs(5),
        "`before` replaced; `after` stays"
    );
    handle.reschedule_after(Duration::from_secs(2));
    assert_eq!(root.effective_deadline(), secs(2));
    let err = root.run(pending::<()>()).await.unwrap_err();
    assert!(
        err.cancelled_by("moved") && !err.cancelled_by("before"),
        "{err}"
    );

    // Derived: the context's 5 s is never taken over, only tightened.
    let derived = FenceHandle::new();
    let start = Instant::now();
    let seen = Fencing::new()
        .timeout(Duration::from_secs(5))
        .bind(async {
            let inner = current().handle(&derived).code("moved");
            let before = inner.effective_deadline();
            derived.reschedule_after(Duration::from_secs(60));
            let later = inner.effective_deadline();
            derived.reschedule_after(Duration::from_secs(2));
            (before, later, inner.effective_deadline())
        })
        .await;
    let secs = |n| Some(start + Duration::from_secs(n));
    assert_eq!(seen, (secs(5), secs(5), secs(2)));
}
