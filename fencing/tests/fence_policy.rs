//! Policies: a `Fencing` may decline fired reasons; declined reasons are
//! recorded and do not cancel.

use fencing::{Fencing, Reason, Token};
use std::future::{pending, Future};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready, task};

fn counted(
    verdict: impl Fn(&Reason) -> bool + Send + Sync + 'static,
) -> (
    Arc<AtomicU32>,
    impl Fn(&Reason) -> bool + Send + Sync + 'static,
) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    (calls, move |reason: &Reason| {
        c.fetch_add(1, Ordering::SeqCst);
        verdict(reason)
    })
}

#[tokio::test(start_paused = true)]
async fn policy_declines_a_pre_fired_token_and_a_live_timeout_still_fires() {
    let shutdown = Token::new();
    shutdown.cancel();
    let (calls, policy) = counted(|reason| !reason.has_code("shutdown"));
    let polls = Arc::new(AtomicU32::new(0));
    let p = polls.clone();
    let mut fenced = task::spawn(
        Fencing::new()
            .token(&shutdown)
            .code("shutdown")
            .timeout(Duration::from_secs(5))
            .code("budget")
            .policy(policy)
            .run(async move {
                loop {
                    p.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }),
    );
    assert_pending!(fenced.poll());
    assert_eq!(polls.load(Ordering::SeqCst), 1, "the body runs on");
    for _ in 0..4 {
        advance(Duration::from_secs(1)).await;
        assert_pending!(fenced.poll());
    }
    advance(Duration::from_secs(1)).await;
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(err.cancelled_by("budget"));
    assert!(
        !err.cancelled_by("shutdown"),
        "a declined reason is not a cancellation"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "once per reason");
}

#[tokio::test(start_paused = true)]
async fn policy_declines_are_recorded_and_other_triggers_stay_armed() {
    let noisy = Token::new();
    let real = Token::new();
    let (calls, policy) = counted(|reason| !reason.has_code("noisy"));
    let fenced = Fencing::new()
        .token(&noisy)
        .code("noisy")
        .token(&real)
        .code("real")
        .policy(policy)
        .run(pending::<()>());
    let mut fenced = Box::pin(fenced);
    let waker = futures_test::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);

    assert!(fenced.as_mut().poll(&mut cx).is_pending());
    noisy.cancel_with("spurious");
    assert!(
        fenced.as_mut().poll(&mut cx).is_pending(),
        "declined: no cancel"
    );
    assert!(fenced.as_mut().poll(&mut cx).is_pending());
    assert!(fenced.declined_by("noisy"));
    assert_eq!(fenced.declined()[0].message(), "spurious");
    assert!(!fenced.is_cancelled());

    real.cancel();
    let err = match fenced.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(result) => result.unwrap_err(),
        std::task::Poll::Pending => panic!("the other trigger stayed armed"),
    };
    assert!(err.cancelled_by("real"));
    assert_eq!(err.reasons().len(), 1);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "exactly once per reason, over four polls"
    );
}

#[tokio::test(start_paused = true)]
async fn policy_declines_nothing_and_is_never_called_when_nothing_fires() {
    let token = Token::new();
    let (calls, policy) = counted(|_| true);
    let fencing = Fencing::new()
        .token(&token)
        .timeout(Duration::from_secs(60))
        .policy(policy);
    assert_eq!(fencing.clone().run(async { 1 }).await.unwrap(), 1);
    let mut pending_fence = task::spawn(fencing.run(async {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }));
    assert_pending!(pending_fence.poll());
    advance(Duration::from_secs(1)).await;
    assert!(assert_ready!(pending_fence.poll()).is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn policy_declines_when_either_of_two_policies_declines() {
    let token = Token::new();
    token.cancel();
    let (second_calls, second) = counted(|_| true);
    let result = Fencing::new()
        .token(&token)
        .code("t")
        .policy(|_| false)
        .policy(second)
        .run(async { "ran" })
        .await;
    assert_eq!(result.unwrap(), "ran");
    assert_eq!(
        second_calls.load(Ordering::SeqCst),
        0,
        "not consulted after a decline"
    );
}

/// A policy that panics accepts the reason: the fence cancels as if the
/// policy had said `true`, counts the panic as a fault, still consults the
/// next policy, and leaves nothing armed. Another fence from the same
/// `Fencing` fares the same: nothing is poisoned.
#[tokio::test(start_paused = true)]
async fn policy_panic_accepts_reason() {
    let noisy = Token::new();
    let shutdown = Token::new();
    let (second_calls, second) = counted(|_| true);
    let fencing = Fencing::new()
        .token(&noisy)
        .code("noisy")
        .token(&shutdown)
        .code("shutdown")
        .timeout(Duration::from_secs(60))
        .policy(|reason| {
            assert!(!reason.has_code("shutdown"), "policy bug");
            !reason.has_code("noisy")
        })
        .policy(second);
    let mut fenced = task::spawn(Box::pin(fencing.clone().run(pending::<()>())));
    assert_pending!(fenced.poll());

    noisy.cancel();
    assert_pending!(fenced.poll());
    assert!(fenced.declined_by("noisy"));
    assert_eq!(fenced.faults(), 0, "a decline is no fault");

    shutdown.cancel_with("SIGTERM");
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(err.cancelled_by("shutdown"), "the panic accepted it");
    assert_eq!(err.reasons().len(), 1);
    assert_eq!(fenced.faults(), 1);
    assert_eq!(
        second_calls.load(Ordering::SeqCst),
        1,
        "the second policy was consulted for shutdown"
    );
    assert!(fenced.is_interrupted());
    assert_eq!(shutdown.__waiter_count(), 0, "nothing stays armed");
    assert_eq!(noisy.__waiter_count(), 0);
    drop(fenced);

    // Pre-fired: the body never starts, the same way.
    let ran = Arc::new(AtomicU32::new(0));
    let r = ran.clone();
    let mut again = Box::pin(fencing.run(async move {
        r.fetch_add(1, Ordering::SeqCst);
    }));
    let err = (&mut again).await.unwrap_err();
    assert!(err.cancelled_by("shutdown") && !err.cancelled_by("noisy"));
    assert_eq!(again.faults(), 1);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

/// `unless(code, predicate)` declines only reasons with that code, reading
/// the predicate when such a reason fires: other codes never call it, and a
/// decline holds for the rest of that fence.
#[tokio::test(start_paused = true)]
async fn unless_scoped_to_code() {
    let shutdown = Token::new();
    let admin = Token::new();
    let plain = Token::new();
    let critical = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let calls = Arc::new(AtomicU32::new(0));
    let (flag, c) = (critical.clone(), calls.clone());
    let fencing = Fencing::new()
        .token(&shutdown)
        .code("shutdown")
        .token(&admin)
        .code("admin")
        .token(&plain)
        .unless("shutdown", move || {
            c.fetch_add(1, Ordering::SeqCst);
            flag.load(Ordering::SeqCst)
        });

    let mut fenced = task::spawn(Box::pin(fencing.clone().run(pending::<()>())));
    assert_pending!(fenced.poll());
    shutdown.cancel();
    assert_pending!(fenced.poll());
    assert!(fenced.declined_by("shutdown"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "read when it fired");

    critical.store(false, Ordering::SeqCst);
    assert_pending!(fenced.poll());
    assert_eq!(calls.load(Ordering::SeqCst), 1, "declined once, for good");

    admin.cancel();
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(err.cancelled_by("admin") && !err.cancelled_by("shutdown"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "another code never asks");
    drop(fenced);

    // The next fence reads the predicate again; it no longer holds.
    plain.cancel();
    let mut next = Box::pin(fencing.run(pending::<()>()));
    let err = (&mut next).await.unwrap_err();
    assert_eq!(err.reasons().len(), 3);
    assert!(err.cancelled_by("shutdown") && err.cancelled_by("admin"));
    assert!(next.declined().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 2, "once, for shutdown only");
}
