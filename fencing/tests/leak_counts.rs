//! Nothing leaks (DESIGN.md rule 21), checked on the process-wide live
//! counts of token nodes, waiters and fence timers. One test function only:
//! the counts are global, so nothing else may run beside it in this binary.
#![cfg(feature = "test-util")]

use fencing::{__live_counts, FenceHandle, Fencing, Token};
use std::future::pending;
use std::time::Duration;
use tokio_test::{assert_pending, assert_ready, task};

#[tokio::test(start_paused = true)]
async fn nothing_leaks_by_the_live_counts() {
    let baseline = __live_counts();

    {
        let parent = Token::new();
        let handle = FenceHandle::new();
        let fencing = Fencing::new()
            .timeout(Duration::from_secs(5))
            .token(&parent)
            .code("a")
            .token(&parent.child())
            .code("b")
            .handle(&handle)
            .future(async { pending::<()>().await });

        // Completes on its first poll: no timer, no waiter.
        let mut fast = task::spawn(fencing.clone().run(async { 1 }));
        assert_eq!(assert_ready!(fast.poll()).unwrap(), 1);
        let during = __live_counts();
        assert_eq!(during.timers, baseline.timers);
        assert_eq!(during.waiters, baseline.waiters);

        // Pending: one timer, one waiter per trigger.
        let mut slow = task::spawn(fencing.clone().run(pending::<()>()));
        assert_pending!(slow.poll());
        let armed = __live_counts();
        assert_eq!(armed.timers, baseline.timers + 1, "one timer per fence");
        assert_eq!(
            armed.waiters,
            baseline.waiters + 4,
            "one waiter per trigger"
        );
        drop(slow);
        assert_eq!(
            __live_counts().timers,
            baseline.timers,
            "dropped: timer released"
        );
        assert_eq!(__live_counts().waiters, baseline.waiters);

        // Cancelled by its deadline.
        let mut timed = task::spawn(fencing.clone().run(pending::<()>()));
        assert_pending!(timed.poll());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(assert_ready!(timed.poll()).is_err());
        assert_eq!(__live_counts().timers, baseline.timers);
        assert_eq!(__live_counts().waiters, baseline.waiters);

        // Cancelled by a token, with hooks registered and removed.
        let hook = parent.on_cancel(|_| {});
        let kept = parent.on_cancel(|_| {});
        drop(hook);
        drop(fencing); // its deadline has passed; a fresh one for the token
        let fencing = Fencing::new()
            .timeout(Duration::from_secs(60))
            .token(&parent)
            .code("a");
        let mut cancelled = task::spawn(fencing.run(pending::<()>()));
        assert_pending!(cancelled.poll());
        parent.cancel();
        assert!(assert_ready!(cancelled.poll())
            .unwrap_err()
            .cancelled_by("a"));
        assert!(!kept.remove());
        assert_eq!(__live_counts().waiters, baseline.waiters);

        // A future trigger that panics when the fence first registers on it
        // (its second poll, after the waker was registered): the fence,
        // dropped while the panic unwinds, still releases that waiter.
        let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = std::sync::Arc::clone(&polls);
        let fencing = Fencing::new()
            .future(std::future::poll_fn(move |_| {
                if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                    panic!("trigger bug");
                }
                std::task::Poll::<()>::Pending
            }))
            .code("probe");
        let mut panicking = task::spawn(fencing.clone().run(pending::<()>()));
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = panicking.poll();
        }));
        assert!(polled.is_err(), "the trigger's panic passes through");
        assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 2);
        drop(panicking);
        assert_eq!(__live_counts().waiters, baseline.waiters, "no waiter left");
        drop(fencing);

        // A million short-lived children of one long-lived parent.
        let root = Token::new();
        for _ in 0..1_000_000 {
            drop(root.child());
        }
        assert_eq!(root.__child_count(), 0);
    }

    assert_eq!(
        __live_counts(),
        baseline,
        "every node, waiter and timer is gone"
    );
}
