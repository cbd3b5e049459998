//! How a fence polls its body and its triggers: rules 5 (inspect before
//! await), 6 (pre-fired bodies never start), 7 (completion wins ties),
//! 8 (hard cancel is drop), 20 (panics pass through) and 21 (nothing leaks)
//! of DESIGN.md.
//!
//! Every test polls by hand where order matters and runs on a paused clock
//! where time is involved; none sleeps in real time.

mod support;

use fencing::{Fencing, ReasonKind, Token};
use std::future::{pending, Future};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::Duration;
use support::{clones_held_elsewhere, counting_waker, fence, hand, OnDrop, Probe};
use tokio::time::{self, Instant};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Sets a flag and sends on a channel when dropped: held by a body, it shows
/// when the body's destructors ran.
fn on_drop() -> (OnDrop, Arc<AtomicBool>, mpsc::Receiver<&'static str>) {
    let flag = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let set = Arc::clone(&flag);
    let guard = OnDrop::new(move || {
        set.store(true, SeqCst);
        let _ = tx.send("dropped");
    });
    (guard, flag, rx)
}

// ---------------------------------------------------------------------------
// Rule 5: inspect before await
// ---------------------------------------------------------------------------

#[test]
fn inspect_before_await_pre_cancelled_token() {
    let token = Token::new();
    token.cancel_with("shutting down");
    let probe = Probe::default();

    let fenced = Fencing::new()
        .token(&token)
        .code("shutdown")
        .run(probe.body());

    assert!(fenced.is_cancelled(), "known before the first poll");
    assert!(fenced.cancelled_by("shutdown"));
    assert!(!fenced.cancelled_by("budget"));
    assert!(!fenced.is_interrupted(), "nothing was dropped yet");
    let reasons = fenced.reasons();
    assert_eq!(reasons.len(), 1);
    assert_eq!(reasons[0].kind(), ReasonKind::Token);
    assert_eq!(reasons[0].message(), "shutting down");
    assert_eq!(reasons[0].code().unwrap(), "shutdown");
    assert_eq!(probe.polls(), 0, "inspecting does not poll the body");
    assert!(fenced.get_ref().is_some());
}

#[test]
fn inspect_before_await_token_cancelled_after_arming() {
    let token = Token::new();
    let probe = Probe::default();
    let fenced = Fencing::new()
        .token(&token)
        .code("shutdown")
        .run(probe.body());
    assert!(!fenced.is_cancelled());

    token.cancel();

    assert!(fenced.is_cancelled(), "seen without a poll");
    assert!(fenced.cancelled_by("shutdown"));
    assert_eq!(probe.polls(), 0);
}

#[tokio::test(start_paused = true)]
async fn inspect_before_await_passed_deadline() {
    let fenced = Fencing::new()
        .deadline(Instant::now())
        .code("slo")
        .run(Probe::default().body());
    assert!(fenced.is_cancelled(), "a deadline equal to now has passed");
    assert!(fenced.cancelled_by("slo"));
    assert!(fenced.reasons()[0].is_deadline());

    assert!(Fencing::new()
        .timeout(Duration::ZERO)
        .run(async {})
        .is_cancelled());

    // A deadline that passes after the fence is armed, before its first poll.
    let probe = Probe::default();
    let fenced = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("budget")
        .run(probe.body());
    assert!(!fenced.is_cancelled());
    time::advance(Duration::from_millis(4_999)).await;
    assert!(!fenced.is_cancelled(), "not a millisecond early");
    time::advance(Duration::from_millis(1)).await;
    assert!(fenced.is_cancelled(), "the clock is read without a poll");
    assert!(fenced.cancelled_by("budget"));
    assert_eq!(fenced.reasons()[0].message(), "timed out after 5s");
    assert_eq!(probe.polls(), 0);
}

#[tokio::test(start_paused = true)]
async fn inspect_before_await_false_otherwise() {
    let token = Token::new();
    let probe = Probe::default();
    let fenced = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("budget")
        .token(&token)
        .code("shutdown")
        .future(pending::<()>())
        .code("never")
        .run(probe.body());

    assert!(!fenced.is_cancelled());
    assert!(fenced.reasons().is_empty());
    for code in ["budget", "shutdown", "never"] {
        assert!(!fenced.cancelled_by(code), "{code}");
    }
    assert!(!fenced.is_interrupted());

    time::advance(Duration::from_secs(4)).await;
    assert!(!fenced.is_cancelled(), "the deadline has not passed yet");

    assert!(!Fencing::new().run(async {}).is_cancelled());
    assert_eq!(probe.polls(), 0);
}

// ---------------------------------------------------------------------------
// Rule 6: pre-fired bodies never start
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn pre_fired_never_starts_cancelled_token() {
    let token = Token::new();
    token.cancel_with("stop");
    let probe = Probe::default();
    probe.open(); // it would be ready at once if it were polled

    let mut task = hand(
        Fencing::new()
            .token(&token)
            .code("shutdown")
            .run(probe.body()),
    );
    let err = assert_ready_err!(task.poll());

    assert_eq!(probe.polls(), 0, "the body was never polled");
    assert!(probe.dropped(), "and it was dropped within that poll");
    assert!(err.is_token());
    assert!(err.cancelled_by("shutdown"));
    assert_eq!(err.reason().message(), "stop");
    assert!(fence(&task).is_interrupted());
    assert!(fence(&task).get_ref().is_none());
    assert_eq!(token.__waiter_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn pre_fired_never_starts_past_deadline() {
    time::advance(Duration::from_secs(60)).await;
    let past = Instant::now() - Duration::from_secs(30);
    let probe = Probe::default();
    probe.open();

    let mut task = hand(Fencing::new().deadline(past).code("slo").run(probe.body()));
    let err = assert_ready_err!(task.poll());

    assert_eq!(probe.polls(), 0);
    assert!(probe.dropped());
    assert!(err.is_deadline());
    assert!(err.cancelled_by("slo"));
    assert_eq!(err.reason().message(), "deadline exceeded");
}

#[tokio::test(start_paused = true)]
async fn pre_fired_never_starts_zero_timeout() {
    let probe = Probe::default();
    probe.open();

    let mut task = hand(
        Fencing::new()
            .timeout(Duration::ZERO)
            .code("budget")
            .run(probe.body()),
    );
    let err = assert_ready_err!(task.poll());

    assert_eq!(probe.polls(), 0);
    assert!(err.is_timeout());
    assert!(err.cancelled_by("budget"));
}

#[tokio::test(start_paused = true)]
async fn pre_fired_never_starts_deadline_passed_between_run_and_first_poll() {
    let probe = Probe::default();
    probe.open();
    let mut task = hand(
        Fencing::new()
            .timeout(Duration::from_secs(5))
            .code("budget")
            .run(probe.body()),
    );

    time::advance(Duration::from_secs(5)).await;
    let err = assert_ready_err!(task.poll());

    assert_eq!(probe.polls(), 0, "time is read at the first poll");
    assert!(err.cancelled_by("budget"));
}

#[tokio::test(start_paused = true)]
async fn pre_fired_never_starts_completed_future_trigger() {
    let fencing = Fencing::new().future(async {}).code("gone");

    // A first fence drives the trigger future to completion before its
    // body's first poll, so that body never starts either.
    let first = Probe::default();
    let err = fencing.clone().run(first.body()).await.unwrap_err();
    assert!(err.is_future() && err.cancelled_by("gone"));
    assert_eq!(first.polls(), 0, "the trigger was driven before the body");

    // The trigger has completed: a fence from a clone never starts its body.
    assert!(fencing.is_cancelled());
    let probe = Probe::default();
    probe.open();
    let mut task = hand(fencing.run(probe.body()));
    assert!(fence(&task).is_cancelled(), "known before the first poll");
    let err = assert_ready_err!(task.poll());

    assert_eq!(probe.polls(), 0);
    assert!(err.is_future());
    assert!(err.cancelled_by("gone"));
}

/// A future trigger whose event already happened (the client went away
/// before the fence was armed) is given one poll before the body's first, so
/// the body never starts.
#[tokio::test(start_paused = true)]
async fn pre_fired_never_starts_future_trigger_ready_before_first_poll() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    drop(tx); // the client went away before the fence was armed
    let fencing = Fencing::new().future(rx).code("client");
    let probe = Probe::default();
    probe.open();

    let mut task = hand(fencing.run(probe.body()));
    let result = task.poll();

    assert_eq!(probe.polls(), 0, "the body should not start");
    assert!(matches!(result, Poll::Ready(Err(_))), "{result:?}");
}

// ---------------------------------------------------------------------------
// Rule 7: completion wins ties
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn completion_wins_ties_token_fired_before_the_completing_poll() {
    let token = Token::new();
    let probe = Probe::default();
    let mut task = hand(Fencing::new().token(&token).code("stop").run(probe.body()));
    assert_pending!(task.poll());

    token.cancel_with("stop now");
    assert!(task.is_woken());
    probe.open(); // the body is ready in the very poll that sees the token
    assert_eq!(assert_ready_ok!(task.poll()), "done");

    assert_eq!(probe.polls(), 2);
    assert!(!probe.dropped(), "the fence did not drop the body");
    let fenced = fence(&task);
    assert!(fenced.is_cancelled(), "the trigger is reported as fired");
    assert!(!fenced.is_interrupted(), "but the body was not interrupted");
    assert!(fenced.cancelled_by("stop"));
    assert_eq!(fenced.reasons().len(), 1);
    assert_eq!(fenced.reasons()[0].message(), "stop now");
    assert_eq!(token.__waiter_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn completion_wins_ties_only_for_triggers_fired_before_completion() {
    let (stop, late) = (Token::new(), Token::new());
    let probe = Probe::default();
    let mut task = hand(
        Fencing::new()
            .token(&stop)
            .code("stop")
            .token(&late)
            .code("late")
            .run(probe.body()),
    );
    assert_pending!(task.poll());
    stop.cancel();
    probe.open();
    assert_eq!(assert_ready_ok!(task.poll()), "done");

    // What fires after the fence finished does not concern it.
    late.cancel();
    assert_eq!(fence(&task).reasons().len(), 1);
    assert!(fence(&task).cancelled_by("stop"));
    assert!(!fence(&task).cancelled_by("late"));
}

#[tokio::test(start_paused = true)]
async fn completion_wins_ties_deadline_elapsed_before_the_completing_poll() {
    let probe = Probe::default();
    let mut task = hand(
        Fencing::new()
            .timeout(Duration::from_secs(1))
            .code("budget")
            .run(probe.body()),
    );
    assert_pending!(task.poll());

    time::advance(Duration::from_secs(1)).await;
    assert!(task.is_woken(), "the timer fired");
    probe.open();
    assert_eq!(assert_ready_ok!(task.poll()), "done");

    let fenced = fence(&task);
    assert!(fenced.is_cancelled());
    assert!(!fenced.is_interrupted());
    assert!(fenced.cancelled_by("budget"));
    assert!(fenced.reasons()[0].is_timeout());
    assert_eq!(fenced.reasons()[0].message(), "timed out after 1s");
}

#[tokio::test(start_paused = true)]
async fn completion_wins_ties_body_timer_and_deadline_in_the_same_tick() {
    let mut task = hand(
        Fencing::new()
            .timeout(Duration::from_secs(30))
            .code("budget")
            .run(async {
                time::sleep(Duration::from_secs(30)).await;
                "slept"
            }),
    );
    assert_pending!(task.poll());

    time::advance(Duration::from_secs(30)).await;
    assert!(task.is_woken());
    assert_eq!(assert_ready_ok!(task.poll()), "slept");

    assert!(fence(&task).is_cancelled());
    assert!(!fence(&task).is_interrupted());
    assert!(fence(&task).cancelled_by("budget"));
}

/// Once the body is running, the fence sees its deadline through tokio's
/// timer, which has millisecond granularity and rounds up; `is_cancelled`
/// and `reasons` use the same view, so what the fence says before its body
/// completes is what it says after. For a deadline off a millisecond boundary
/// (the normal case on a real clock) the timeout counts from the next
/// millisecond.
#[tokio::test(start_paused = true)]
async fn completion_wins_ties_deadline_seen_before_the_poll_stays_reported() {
    // Not yet passed for the timer: not reported, before or after.
    let probe = Probe::default();
    let mut task = hand(
        Fencing::new()
            .timeout(Duration::from_micros(5_000_500))
            .code("budget")
            .run(probe.body()),
    );
    assert_pending!(task.poll());
    time::advance(Duration::from_micros(5_000_600)).await;
    assert!(
        !fence(&task).is_cancelled(),
        "the timer rounds up to 5.001 s"
    );
    probe.open();
    assert_eq!(assert_ready_ok!(task.poll()), "done");
    assert!(!fence(&task).is_cancelled(), "and the answer does not flip");

    // Passed for the timer: reported before, and still after completion.
    let probe = Probe::default();
    let mut task = hand(
        Fencing::new()
            .timeout(Duration::from_micros(5_000_500))
            .code("budget")
            .run(probe.body()),
    );
    assert_pending!(task.poll());
    // tokio's timer fires in the tick after the rounded-up deadline.
    time::advance(Duration::from_millis(5_002)).await;
    assert!(task.is_woken());
    assert!(fence(&task).is_cancelled());
    assert!(fence(&task).cancelled_by("budget"));
    probe.open();
    assert_eq!(assert_ready_ok!(task.poll()), "done");
    assert!(
        fence(&task).is_cancelled(),
        "a trigger reported as fired before the body completed stays reported"
    );
    assert!(fence(&task).cancelled_by("budget"));
}

#[tokio::test(start_paused = true)]
async fn completion_wins_ties_trigger_fired_inside_the_completing_poll() {
    let token = Token::new();
    let inner = token.clone();
    let mut task = hand(Fencing::new().token(&token).code("stop").run(async move {
        inner.cancel_with("fired by the body");
        "finished"
    }));

    assert_eq!(assert_ready_ok!(task.poll()), "finished");

    let fenced = fence(&task);
    assert!(fenced.is_cancelled());
    assert!(!fenced.is_interrupted());
    assert!(fenced.cancelled_by("stop"));
    assert_eq!(fenced.reasons()[0].message(), "fired by the body");
}

#[tokio::test(start_paused = true)]
async fn completion_wins_ties_except_when_fired_before_the_first_poll() {
    // Rule 6 comes first: a ready body does not win against a trigger that
    // fired before the fence was first polled.
    let token = Token::new();
    token.cancel();
    let probe = Probe::default();
    probe.open();
    let mut task = hand(Fencing::new().token(&token).code("stop").run(probe.body()));

    let err = assert_ready_err!(task.poll());
    assert!(err.cancelled_by("stop"));
    assert_eq!(probe.polls(), 0);
    assert!(fence(&task).is_interrupted());

    let mut task = hand(Fencing::new().timeout(Duration::ZERO).run(async { 1 }));
    assert!(assert_ready_err!(task.poll()).is_timeout());
}

// ---------------------------------------------------------------------------
// Rule 8: hard cancel is drop
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn hard_cancel_is_drop_on_token() {
    let token = Token::new();
    let (guard, dropped, rx) = on_drop();
    let body = async move {
        let _guard = guard;
        pending::<()>().await;
    };
    let mut task = hand(Fencing::new().token(&token).code("shutdown").run(body));
    assert_pending!(task.poll());

    token.cancel_with("SIGTERM");
    assert!(task.is_woken());
    assert!(!dropped.load(SeqCst), "cancelling alone drops nothing");

    let err = assert_ready_err!(task.poll());
    // Checked right after the poll that returned `Err`.
    assert!(dropped.load(SeqCst), "the body was dropped within the poll");
    assert_eq!(rx.try_recv(), Ok("dropped"));

    assert_eq!(err.reasons().len(), 1);
    assert!(err.cancelled_by("shutdown"));
    assert_eq!(err.reason().message(), "SIGTERM");
    assert!(fence(&task).is_interrupted());
    assert!(fence(&task).get_ref().is_none(), "the body is gone");
}

#[tokio::test(start_paused = true)]
async fn hard_cancel_is_drop_on_deadline() {
    let (guard, dropped, rx) = on_drop();
    let body = async move {
        let _guard = guard;
        time::sleep(Duration::from_secs(60)).await;
    };
    let mut task = hand(
        Fencing::new()
            .timeout(Duration::from_secs(5))
            .code("budget")
            .run(body),
    );
    assert_pending!(task.poll());

    time::advance(Duration::from_secs(5)).await;
    assert!(task.is_woken());
    assert!(!dropped.load(SeqCst));

    let err = assert_ready_err!(task.poll());
    assert!(dropped.load(SeqCst));
    assert_eq!(rx.try_recv(), Ok("dropped"));
    assert!(err.is_timeout());
    assert!(err.cancelled_by("budget"));
    assert!(fence(&task).is_interrupted());
}

#[tokio::test(start_paused = true)]
async fn hard_cancel_is_drop_with_every_reason() {
    let (a, b) = (Token::new(), Token::new());
    let (guard, dropped, _rx) = on_drop();
    let body = async move {
        let _guard = guard;
        pending::<()>().await;
    };
    let mut task = hand(
        Fencing::new()
            .token(&a)
            .code("a")
            .timeout(Duration::from_secs(10))
            .code("budget")
            .token(&b)
            .code("b")
            .run(body),
    );
    assert_pending!(task.poll());

    // All three fire before the fence looks again.
    b.cancel_with("b went");
    a.cancel_with("a went");
    time::advance(Duration::from_secs(10)).await;

    let err = assert_ready_err!(task.poll());
    assert!(dropped.load(SeqCst));
    let codes: Vec<_> = err
        .reasons()
        .iter()
        .map(|r| r.code().unwrap().as_str())
        .collect();
    assert_eq!(
        codes,
        ["budget", "a", "b"],
        "deadline, then declaration order"
    );
    assert_eq!(err.reasons(), fence(&task).reasons().as_slice());
    assert_eq!(err.reasons()[1].message(), "a went");
    assert_eq!(err.reasons()[2].message(), "b went");
}

#[tokio::test(start_paused = true)]
async fn hard_cancel_is_drop_when_fired_during_a_pending_poll() {
    let token = Token::new();
    let inner = token.clone();
    let (guard, dropped, _rx) = on_drop();
    let body = async move {
        let _guard = guard;
        inner.cancel_with("from inside");
        pending::<()>().await;
    };
    let mut task = hand(Fencing::new().token(&token).code("self").run(body));

    let err = assert_ready_err!(task.poll());
    assert!(dropped.load(SeqCst), "dropped within the same first poll");
    assert!(err.cancelled_by("self"));
    assert_eq!(token.__waiter_count(), 0);
}

// ---------------------------------------------------------------------------
// Rule 20: panics pass through
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn panics_pass_through_hand_polled() {
    let token = Token::new();
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(10))
        .code("budget")
        .token(&token)
        .code("shutdown");
    let probe = Probe::default();
    let mut task = hand(fencing.clone().run(probe.body()));
    assert_pending!(task.poll());
    assert_eq!(token.__waiter_count(), 1);

    probe.explode();
    let payload = panic::catch_unwind(AssertUnwindSafe(|| task.poll())).unwrap_err();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"body exploded"),
        "the original payload"
    );

    drop(task);
    assert!(probe.dropped());
    assert_eq!(token.__waiter_count(), 0, "nothing stays armed");
    assert!(!token.is_cancelled(), "a panic is not a cancel");

    // Nothing is poisoned: the same Fencing and token keep working.
    assert_eq!(fencing.clone().run(async { 7 }).await.unwrap(), 7);
    let next = Probe::default();
    let mut task = hand(fencing.run(next.body()));
    assert_pending!(task.poll());
    assert_eq!(token.__waiter_count(), 1);
    assert!(token.cancel_with("after the panic"));
    assert!(task.is_woken());
    let err = assert_ready_err!(task.poll());
    assert!(err.cancelled_by("shutdown"));
    assert_eq!(err.reason().message(), "after the panic");
    assert_eq!(token.__waiter_count(), 0);
}

#[test]
fn panics_pass_through_on_first_poll() {
    let token = Token::new();
    let probe = Probe::default();
    probe.explode();
    let mut task = hand(
        Fencing::new()
            .token(&token)
            .code("shutdown")
            .run(probe.body()),
    );

    let payload = panic::catch_unwind(AssertUnwindSafe(|| task.poll())).unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"body exploded"));
    assert_eq!(probe.polls(), 1);
    assert_eq!(
        token.__waiter_count(),
        0,
        "nothing was armed before the panic"
    );

    drop(task);
    assert!(token.cancel());
    assert!(Fencing::new().token(&token).code("shutdown").is_cancelled());
}

#[derive(Debug, PartialEq)]
struct Payload(u32);

#[tokio::test(start_paused = true)]
async fn panics_pass_through_spawned_task() {
    let token = Token::new();
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(60))
        .code("budget")
        .token(&token)
        .code("shutdown");

    let handle = tokio::spawn(fencing.clone().run(async {
        time::sleep(Duration::from_secs(1)).await;
        panic::panic_any(Payload(42));
    }));
    let join_err = handle.await.unwrap_err();

    assert!(join_err.is_panic());
    let payload = join_err.into_panic();
    assert_eq!(payload.downcast_ref::<Payload>(), Some(&Payload(42)));
    assert_eq!(token.__waiter_count(), 0, "the task dropped the fence");

    // A fresh fence on the same token works, and so does cancelling it.
    let fresh = tokio::spawn(fencing.run(pending::<()>()));
    tokio::task::yield_now().await;
    assert_eq!(token.__waiter_count(), 1);
    assert!(token.cancel_with("later"));
    let err = fresh.await.unwrap().unwrap_err();
    assert!(err.cancelled_by("shutdown"));
    assert_eq!(token.__waiter_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn panics_pass_through_from_a_trigger_future() {
    let token = Token::new();
    let fencing = Fencing::new()
        .future(async {
            // Pending when driven before the body and when armed; panics
            // when driven again after waking the fence.
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            panic!("trigger exploded");
        })
        .code("bad")
        .token(&token)
        .code("shutdown");

    let mut task = hand(fencing.clone().run(Probe::default().body()));
    assert_pending!(task.poll());
    let payload = panic::catch_unwind(AssertUnwindSafe(|| task.poll())).unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"trigger exploded"));
    drop(task);
    assert_eq!(token.__waiter_count(), 0);

    // Not poisoned: bodies still run, the token still fires, and the trigger
    // that panicked never fires (as documented on `Fencing::future`).
    let next = Probe::default();
    let mut task = hand(fencing.clone().run(next.body()));
    assert_pending!(task.poll());
    assert!(!fencing.is_cancelled());
    next.open();
    assert_eq!(assert_ready_ok!(task.poll()), "done");
    assert!(!fence(&task).is_cancelled());

    let mut task = hand(fencing.run(Probe::default().body()));
    assert_pending!(task.poll());
    token.cancel();
    let err = assert_ready_err!(task.poll());
    assert!(err.cancelled_by("shutdown"));
    assert!(!err.cancelled_by("bad"));
}

// ---------------------------------------------------------------------------
// Rule 21: nothing leaks
//
// tokio 1.54 has no stable runtime metric counting timers (the stable
// `RuntimeMetrics` are `num_workers`, `num_alive_tasks` and
// `global_queue_depth`), so timers are checked through the wakers they hold:
// a registered `Sleep` keeps a clone of the task's waker and wakes it when it
// fires. Once every registration is released, no clone is held anywhere and
// advancing past the deadline wakes nobody.
// ---------------------------------------------------------------------------

/// Every kind of trigger, each registering one waker clone while pending: the
/// timer, `a`, `b` twice (two codes), and the future trigger's node.
fn every_trigger(a: &Token, b: &Token) -> Fencing {
    Fencing::new()
        .timeout(Duration::from_secs(10))
        .code("budget")
        .token(a)
        .code("a")
        .token(b)
        .code("b1")
        .token(b)
        .code("b2")
        .future(pending::<()>())
        .code("never")
}

const REGISTRATIONS: usize = 5;

#[tokio::test(start_paused = true)]
async fn nothing_leaks_when_the_fence_completes() {
    let (a, b) = (Token::new(), Token::new());
    let probe = Probe::default();
    let mut task = hand(every_trigger(&a, &b).run(probe.body()));
    assert_eq!(
        task.waker_ref_count(),
        1,
        "only the mock task holds its waker"
    );

    assert_pending!(task.poll());
    assert_eq!(a.__waiter_count(), 1);
    assert_eq!(b.__waiter_count(), 2, "one registration per declaration");
    assert_eq!(task.waker_ref_count(), 1 + REGISTRATIONS);

    probe.open();
    assert_eq!(assert_ready_ok!(task.poll()), "done");

    // The fence is still alive (pinned in the task) and holds nothing.
    assert_eq!(a.__waiter_count(), 0);
    assert_eq!(b.__waiter_count(), 0);
    assert_eq!(task.waker_ref_count(), 1, "timer and waiters released");
    time::advance(Duration::from_secs(20)).await;
    assert!(!task.is_woken(), "the released timer does not fire");
}

#[tokio::test(start_paused = true)]
async fn nothing_leaks_when_the_fence_cancels() {
    let (a, b) = (Token::new(), Token::new());
    let mut task = hand(every_trigger(&a, &b).run(Probe::default().body()));
    assert_pending!(task.poll());
    assert_eq!(task.waker_ref_count(), 1 + REGISTRATIONS);

    a.cancel();
    assert!(assert_ready_err!(task.poll()).cancelled_by("a"));

    assert_eq!(a.__waiter_count(), 0);
    assert_eq!(b.__waiter_count(), 0, "the triggers that did not fire too");
    assert_eq!(task.waker_ref_count(), 1);
    time::advance(Duration::from_secs(20)).await;
    assert!(!task.is_woken());
    assert!(!b.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn nothing_leaks_when_a_pending_fence_is_dropped() {
    let (a, b) = (Token::new(), Token::new());
    let (counter, waker) = counting_waker();
    let mut fenced = Box::pin(every_trigger(&a, &b).run(Probe::default().body()));

    assert!(fenced
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    assert_eq!(clones_held_elsewhere(&counter), REGISTRATIONS);

    drop(fenced);

    assert_eq!(a.__waiter_count(), 0);
    assert_eq!(b.__waiter_count(), 0);
    assert_eq!(clones_held_elsewhere(&counter), 0, "timer included");
    time::advance(Duration::from_secs(20)).await;
    assert_eq!(counter.wakes(), 0, "nothing wakes a dropped fence");
}

#[tokio::test(start_paused = true)]
async fn nothing_leaks_when_repolled_with_another_waker() {
    let (a, b) = (Token::new(), Token::new());
    let (old, old_waker) = counting_waker();
    let (new, new_waker) = counting_waker();
    let mut fenced = Box::pin(every_trigger(&a, &b).run(Probe::default().body()));

    let poll = fenced.as_mut().poll(&mut Context::from_waker(&old_waker));
    assert!(poll.is_pending());
    assert_eq!(clones_held_elsewhere(&old), REGISTRATIONS);

    // The task moved: every registration now holds the new waker only.
    let poll = fenced.as_mut().poll(&mut Context::from_waker(&new_waker));
    assert!(poll.is_pending());
    assert_eq!(clones_held_elsewhere(&old), 0, "the old waker is released");
    assert_eq!(clones_held_elsewhere(&new), REGISTRATIONS);
    assert_eq!(a.__waiter_count(), 1);
    assert_eq!(b.__waiter_count(), 2);

    time::advance(Duration::from_secs(10)).await;
    assert_eq!(old.wakes(), 0);
    assert_eq!(new.wakes(), 1, "the timer wakes the new waker");
}

/// No runtime here: a fence that created its timer would panic, so a fence
/// whose body is ready at once provably registers no timer.
#[test]
fn nothing_leaks_fast_path_registers_nothing() {
    let token = Token::new();
    let driven = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&driven);
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("budget")
        .token(&token)
        .code("shutdown")
        .future(async move {
            flag.store(true, SeqCst);
            pending::<()>().await;
        });

    let mut task = hand(fencing.clone().run(async { 42 }));
    assert_eq!(assert_ready_ok!(task.poll()), 42);
    assert!(
        driven.load(SeqCst),
        "the trigger future is given one poll before the body (rule 6)"
    );
    assert_eq!(token.__waiter_count(), 0);
    assert_eq!(task.waker_ref_count(), 1, "no waker clone was kept");
    assert!(!fence(&task).is_cancelled());

    // The contrast: a pending body arms everything, the timer included, and
    // the timer needs a runtime (documented under `# Panics`).
    let mut task = hand(fencing.run(pending::<()>()));
    let armed = panic::catch_unwind(AssertUnwindSafe(|| task.poll()));
    assert!(armed.is_err(), "arming a timer outside a runtime panics");
    drop(task);
    assert_eq!(
        token.__waiter_count(),
        0,
        "and a panicking arm leaks nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn nothing_leaks_across_many_fences() {
    let token = Token::new();
    let fencing = Fencing::new()
        .token(&token)
        .code("shutdown")
        .timeout(Duration::from_secs(3600));

    let mut dropped: Vec<_> = (0..100)
        .map(|_| hand(fencing.clone().run(pending::<()>())))
        .collect();
    let mut cancelled: Vec<_> = (0..100)
        .map(|_| hand(fencing.clone().run(pending::<()>())))
        .collect();
    for task in dropped.iter_mut().chain(cancelled.iter_mut()) {
        assert_pending!(task.poll());
    }
    assert_eq!(token.__waiter_count(), 200);

    drop(dropped);
    assert_eq!(token.__waiter_count(), 100);

    token.cancel();
    for task in &mut cancelled {
        assert!(task.is_woken());
        assert!(assert_ready_err!(task.poll()).cancelled_by("shutdown"));
        assert_eq!(task.waker_ref_count(), 1);
    }
    assert_eq!(token.__waiter_count(), 0);
}
