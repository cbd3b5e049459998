//! What a fence reports and when time fires: rules 1 (reasons), 3 (tightest
//! time wins), 4 (other triggers never merge) and 22 (time is tokio's) of
//! DESIGN.md, and future triggers.
//!
//! Every test runs on a paused clock and moves it with `time::advance`;
//! where order matters the fence is polled by hand.

mod support;

use fencing::{Fencing, ReasonKind, Token};
use std::future::{pending, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use support::{codes, fence, hand, latest_instant, Probe};
use tokio::sync::oneshot;
use tokio::time::{self, Instant};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

// ---------------------------------------------------------------------------
// Rule 1: reasons
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn reasons_timeout() {
    let start = Instant::now();
    let err = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("budget")
        .run(pending::<()>())
        .await
        .unwrap_err();

    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(err.reasons().len(), 1);
    let reason = err.reason();
    assert_eq!(reason.kind(), ReasonKind::Timeout);
    assert!(reason.kind().is_time());
    assert_eq!(reason.code().unwrap(), "budget");
    assert!(reason.has_code("budget"));
    assert_eq!(reason.message(), "timed out after 5s");
    assert!(reason.is_timeout() && !reason.is_deadline() && !reason.is_token());
    assert!(err.is_timeout() && !err.is_deadline() && !err.is_token() && !err.is_future());
    assert_eq!(reason.to_string(), "budget: timed out after 5s");
    assert_eq!(err.to_string(), "cancelled: budget: timed out after 5s");

    // Without a code, and with a sub-second duration.
    let err = Fencing::new()
        .timeout(Duration::from_millis(250))
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(err.reason().code(), None);
    assert_eq!(err.reason().message(), "timed out after 250ms");
    assert_eq!(err.to_string(), "cancelled: timed out after 250ms");
}

#[tokio::test(start_paused = true)]
async fn reasons_deadline() {
    let at = Instant::now() + Duration::from_secs(2);
    let err = Fencing::new()
        .deadline(at)
        .code("slo")
        .run(pending::<()>())
        .await
        .unwrap_err();

    assert_eq!(Instant::now(), at);
    let reason = err.reason();
    assert_eq!(reason.kind(), ReasonKind::Deadline);
    assert!(reason.kind().is_time());
    assert_eq!(reason.code().unwrap(), "slo");
    assert_eq!(reason.message(), "deadline exceeded");
    assert!(err.is_deadline() && !err.is_timeout());
    assert_eq!(err.to_string(), "cancelled: slo: deadline exceeded");
}

#[tokio::test(start_paused = true)]
async fn reasons_token_message() {
    let token = Token::new();
    let fencing = Fencing::new().token(&token).code("shutdown");
    let run = tokio::spawn(fencing.run(pending::<()>()));
    tokio::task::yield_now().await;
    token.cancel_with("SIGTERM");

    let err = run.await.unwrap().unwrap_err();
    let reason = err.reason();
    assert_eq!(reason.kind(), ReasonKind::Token);
    assert!(!reason.kind().is_time());
    assert_eq!(reason.code().unwrap(), "shutdown");
    assert_eq!(reason.message(), "SIGTERM");
    assert!(err.is_token() && !err.is_timeout());
    assert_eq!(err.to_string(), "cancelled: shutdown: SIGTERM");

    // An owned message, the default message, and no code.
    let owned = Token::new();
    owned.cancel_with(format!("user {} logged out", 7));
    let err = Fencing::new()
        .token(&owned)
        .run(async {})
        .await
        .unwrap_err();
    assert_eq!(err.reason().message(), "user 7 logged out");
    assert_eq!(err.reason().code(), None);
    assert_eq!(err.to_string(), "cancelled: user 7 logged out");

    let plain = Token::new();
    plain.cancel();
    let err = Fencing::new()
        .token(&plain)
        .run(async {})
        .await
        .unwrap_err();
    assert_eq!(err.reason().message(), "token cancelled");
}

#[tokio::test(start_paused = true)]
async fn reasons_child_token_carries_parent_message_under_its_own_code() {
    let parent = Token::new();
    let child = parent.child();
    let fencing = Fencing::new().token(&child).code("request");

    parent.cancel_with("server draining");
    let err = fencing.run(async {}).await.unwrap_err();
    assert!(err.cancelled_by("request"));
    assert_eq!(err.reason().message(), "server draining");
}

#[tokio::test(start_paused = true)]
async fn reasons_future_trigger() {
    let err = Fencing::new()
        .future(time::sleep(Duration::from_secs(1)))
        .code("tick")
        .run(pending::<()>())
        .await
        .unwrap_err();

    let reason = err.reason();
    assert_eq!(reason.kind(), ReasonKind::Future);
    assert_eq!(reason.code().unwrap(), "tick");
    assert_eq!(reason.message(), "trigger future completed");
    assert!(reason.is_future() && err.is_future() && !err.is_token());
    assert_eq!(err.to_string(), "cancelled: tick: trigger future completed");
}

#[tokio::test(start_paused = true)]
async fn reasons_display_of_several() {
    let token = Token::new();
    let mut task = hand(
        Fencing::new()
            .timeout(Duration::from_secs(5))
            .code("budget")
            .token(&token)
            .code("shutdown")
            .run(pending::<()>()),
    );
    assert_pending!(task.poll());
    token.cancel_with("SIGTERM");
    time::advance(Duration::from_secs(5)).await;

    let err = assert_ready_err!(task.poll());
    assert_eq!(
        err.to_string(),
        "cancelled: budget: timed out after 5s; shutdown: SIGTERM"
    );
    assert_eq!(format!("{}", err.reasons()[1]), "shutdown: SIGTERM");
}

// ---------------------------------------------------------------------------
// Rule 3: tightest time wins
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn tightest_time_wins_strictly_earlier_replaces_with_its_code() {
    let start = Instant::now();
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("loose")
        .timeout(Duration::from_secs(2))
        .code("tight");
    assert_eq!(
        fencing.effective_deadline(),
        Some(start + Duration::from_secs(2))
    );

    let err = fencing.run(pending::<()>()).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(codes(err.reasons()), ["tight"], "one deadline, one reason");
    assert_eq!(err.reason().message(), "timed out after 2s");

    // An earlier absolute deadline replaces a timeout, kind included.
    let at = Instant::now() + Duration::from_secs(1);
    let err = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("budget")
        .deadline(at)
        .code("slo")
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(Instant::now(), at);
    assert_eq!(codes(err.reasons()), ["slo"]);
    assert!(err.is_deadline() && !err.is_timeout());
}

#[tokio::test(start_paused = true)]
async fn tightest_time_wins_equal_keeps_the_existing_and_its_code() {
    let at = Instant::now() + Duration::from_secs(3);
    let err = Fencing::new()
        .deadline(at)
        .code("first")
        .deadline(at)
        .code("second")
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(codes(err.reasons()), ["first"]);

    // A timeout and a deadline at the same instant: the first declared stays,
    // with its kind and its message.
    let at = Instant::now() + Duration::from_secs(3);
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(3))
        .code("budget")
        .deadline(at)
        .code("slo");
    assert_eq!(fencing.effective_deadline(), Some(at));
    let err = fencing.run(pending::<()>()).await.unwrap_err();
    assert_eq!(codes(err.reasons()), ["budget"]);
    assert!(err.is_timeout() && !err.is_deadline());
    assert_eq!(err.reason().message(), "timed out after 3s");

    let at = Instant::now() + Duration::from_secs(3);
    let err = Fencing::new()
        .deadline(at)
        .code("slo")
        .timeout(Duration::from_secs(3))
        .code("budget")
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(codes(err.reasons()), ["slo"]);
    assert!(err.is_deadline());
}

#[tokio::test(start_paused = true)]
async fn tightest_time_wins_looser_code_is_ignored() {
    let token = Token::new();
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(1))
        .code("tight")
        .token(&token)
        .code("shutdown")
        .timeout(Duration::from_secs(9))
        .code("loose");

    // The looser timeout's code labels nothing: not the deadline, and not the
    // token declared just before it.
    token.cancel();
    let err = fencing.clone().run(async {}).await.unwrap_err();
    assert_eq!(codes(err.reasons()), ["shutdown"]);
    assert!(!err.cancelled_by("loose"));

    let err = Fencing::new()
        .timeout(Duration::from_secs(1))
        .code("tight")
        .timeout(Duration::from_secs(9))
        .code("loose")
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(codes(err.reasons()), ["tight"]);
    assert_eq!(err.reason().message(), "timed out after 1s");
}

#[tokio::test(start_paused = true)]
async fn tightest_time_wins_timeout_is_anchored_at_declaration() {
    let declared = Instant::now();
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("budget");
    time::advance(Duration::from_secs(3)).await;

    let started = Instant::now();
    let mut task = hand(fencing.run(pending::<()>()));
    assert_pending!(task.poll());
    time::advance(Duration::from_millis(1_999)).await;
    assert!(!task.is_woken());
    assert_pending!(task.poll());
    time::advance(Duration::from_millis(1)).await;
    assert!(task.is_woken());
    let err = assert_ready_err!(task.poll());

    assert_eq!(started.elapsed(), Duration::from_secs(2), "2s after run");
    assert_eq!(
        declared.elapsed(),
        Duration::from_secs(5),
        "5s after declaring"
    );
    assert_eq!(
        err.reason().message(),
        "timed out after 5s",
        "the declared budget"
    );
}

#[tokio::test(start_paused = true)]
async fn tightest_time_wins_duration_max_means_no_deadline() {
    assert_eq!(
        Fencing::new().timeout(Duration::MAX).effective_deadline(),
        None
    );
    assert_eq!(
        Fencing::new()
            .timeout(Duration::from_secs(u64::MAX))
            .effective_deadline(),
        None
    );
    // It never replaces a real deadline, and never takes its code.
    let at = Instant::now() + Duration::from_secs(1);
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(1))
        .code("real")
        .timeout(Duration::MAX)
        .code("never");
    assert_eq!(fencing.effective_deadline(), Some(at));

    let gate = Probe::default();
    let fencing = Fencing::new().timeout(Duration::MAX).code("never");
    let mut task = hand(fencing.run(gate.body()));
    assert!(!fence(&task).is_cancelled());
    assert_pending!(task.poll());
    for _ in 0..100 {
        time::advance(YEAR).await;
    }
    assert!(!task.is_woken(), "nothing fires on time");
    assert!(!fence(&task).is_cancelled());
    assert_pending!(task.poll());

    gate.open();
    assert_eq!(assert_ready_ok!(task.poll()), "done");
    assert!(!fence(&task).is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn tightest_time_wins_zero_fires_before_start() {
    let gate = Probe::default();
    gate.open();
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(30))
        .code("budget")
        .timeout(Duration::ZERO)
        .code("zero");
    assert_eq!(fencing.effective_deadline(), Some(Instant::now()));
    assert!(fencing.is_cancelled(), "already fired when declared");

    let mut task = hand(fencing.run(gate.body()));
    let err = assert_ready_err!(task.poll());
    assert_eq!(gate.polls(), 0, "the body never starts");
    assert_eq!(codes(err.reasons()), ["zero"]);
    assert_eq!(err.reason().message(), "timed out after 0ns");
}

#[tokio::test(start_paused = true)]
async fn tightest_time_wins_deadline_far_in_the_past() {
    time::advance(Duration::from_secs(48 * 3600)).await;
    let long_ago = Instant::now() - Duration::from_secs(47 * 3600);

    let fencing = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("budget")
        .deadline(long_ago)
        .code("old");
    assert_eq!(fencing.effective_deadline(), Some(long_ago));
    assert!(fencing.is_cancelled());

    let gate = Probe::default();
    gate.open();
    let mut task = hand(fencing.run(gate.body()));
    let err = assert_ready_err!(task.poll());
    assert_eq!(gate.polls(), 0);
    assert_eq!(codes(err.reasons()), ["old"]);
    assert!(err.is_deadline());
}

#[tokio::test(start_paused = true)]
async fn tightest_time_wins_deadline_far_in_the_future_does_not_panic() {
    let far = Instant::now() + 100 * YEAR;
    let fencing = Fencing::new().deadline(far).code("far");
    assert_eq!(fencing.effective_deadline(), Some(far));
    assert!(!fencing.is_cancelled());

    let gate = Probe::default();
    let mut task = hand(fencing.run(gate.body()));
    assert_pending!(task.poll());
    // Beyond the reach of tokio's lowest wheel levels, and not reported early.
    time::advance(3 * YEAR).await;
    assert!(!task.is_woken());
    assert!(!fence(&task).is_cancelled(), "97 years are left");
    assert_pending!(task.poll());

    gate.open();
    assert_eq!(assert_ready_ok!(task.poll()), "done");
    assert!(!fence(&task).is_cancelled());
}

/// A duration that just fits on the clock is not "overflowing", so it
/// becomes a deadline; the fence sets its timer no further than tokio's far
/// future, so tokio's millisecond rounding cannot overflow.
#[tokio::test(start_paused = true)]
async fn tightest_time_wins_latest_representable_deadline_does_not_panic() {
    let latest = latest_instant();
    let fencing = Fencing::new().timeout(latest - Instant::now()).code("edge");
    assert_eq!(fencing.effective_deadline(), Some(latest));

    let mut task = hand(fencing.run(pending::<()>()));
    let poll = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.poll()));
    assert!(matches!(poll, Ok(Poll::Pending)), "panicked while arming");
}

// ---------------------------------------------------------------------------
// Rule 4: other triggers never merge
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn triggers_never_merge_two_tokens_both_reported() {
    let (a, b) = (Token::new(), Token::new());
    let mut task = hand(
        Fencing::new()
            .token(&a)
            .code("a")
            .token(&b)
            .code("b")
            .run(pending::<()>()),
    );
    assert_pending!(task.poll());
    assert_eq!((a.__waiter_count(), b.__waiter_count()), (1, 1));

    b.cancel_with("b stops");
    a.cancel_with("a stops");
    let err = assert_ready_err!(task.poll());

    assert_eq!(codes(err.reasons()), ["a", "b"], "declaration order");
    assert_eq!(err.reasons()[0].message(), "a stops");
    assert_eq!(err.reasons()[1].message(), "b stops");
    assert!(err.cancelled_by("a") && err.cancelled_by("b"));
}

#[tokio::test(start_paused = true)]
async fn triggers_never_merge_same_token_under_two_codes() {
    let token = Token::new();
    let fencing = Fencing::new()
        .token(&token)
        .code("user")
        .token(&token)
        .code("admin");
    let mut task = hand(fencing.run(pending::<()>()));
    assert_pending!(task.poll());
    assert_eq!(
        token.__waiter_count(),
        2,
        "each declaration arms on its own"
    );

    token.cancel_with("stop");
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["user", "admin"]);
    assert!(err.reasons().iter().all(|r| r.message() == "stop"));
    assert_eq!(token.__waiter_count(), 0);
}

/// Declared twice under the same code, a token is one trigger: one waiter,
/// one reason. Only a different code makes it a second one (rule 4), and
/// "no code" counts as a code of its own.
#[tokio::test(start_paused = true)]
async fn same_token_same_code_once() {
    let token = Token::new();
    let other = Token::new();
    let fencing = Fencing::new()
        .token(&token)
        .code("shutdown")
        .token(&other)
        .token(&token)
        .code("shutdown");
    let mut task = hand(fencing.clone().run(pending::<()>()));
    assert_pending!(task.poll());
    assert_eq!(token.__waiter_count(), 1, "one waiter");

    token.cancel_with("SIGTERM");
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["shutdown"], "one reason");
    assert_eq!(token.__waiter_count(), 0);
    assert_eq!(fencing.check().unwrap_err().reasons().len(), 1);

    // Uncoded twice: once. Uncoded and coded: both, as two codes would be.
    let plain = Token::new();
    plain.cancel();
    let twice = Fencing::new().token(&plain).token(&plain);
    assert_eq!(codes(twice.check().unwrap_err().reasons()), ["-"]);
    let both = Fencing::new().token(&plain).token(&plain).code("x");
    assert_eq!(codes(both.check().unwrap_err().reasons()), ["-", "x"]);

    // A code that makes the last declaration equal to an earlier one drops
    // it; one more relabels that declaration again, as if it had stayed.
    let relabelled = Fencing::new()
        .token(&plain)
        .code("a")
        .token(&plain)
        .code("a")
        .code("b");
    assert_eq!(codes(relabelled.check().unwrap_err().reasons()), ["a", "b"]);

    // Derived from a context that already has the token under that code:
    // the inner fence waits on it once.
    let shutdown = Token::new();
    let outer = Fencing::new().token(&shutdown).code("shutdown");
    let inner = outer.in_scope(|| fencing::current().token(&shutdown).code("shutdown"));
    let mut task = hand(inner.run(pending::<()>()));
    assert_pending!(task.poll());
    assert_eq!(shutdown.__waiter_count(), 1);

    // The same in a long list, where an index finds earlier declarations.
    let many: Vec<Token> = (0..40).map(|_| Token::new()).collect();
    let mut long = Fencing::new();
    for (i, token) in many.iter().enumerate() {
        long = long.token(token).code(format!("t{i}"));
    }
    let long = long
        .token(&many[3])
        .code("t3")
        .token(&many[3])
        .code("again")
        .token(&many[3])
        .code("t3");
    let mut task = hand(long.clone().run(pending::<()>()));
    assert_pending!(task.poll());
    assert_eq!(many[3].__waiter_count(), 2, "under t3 and again");
    many[3].cancel();
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["t3", "again"]);
    assert_eq!(codes(long.check().unwrap_err().reasons()), ["t3", "again"]);
}

#[tokio::test(start_paused = true)]
async fn triggers_never_merge_parent_and_child_both_reported() {
    let parent = Token::new();
    let child = parent.child();
    let mut task = hand(
        Fencing::new()
            .token(&child)
            .code("request")
            .token(&parent)
            .code("server")
            .run(pending::<()>()),
    );
    assert_pending!(task.poll());

    parent.cancel_with("draining");
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["request", "server"]);
    assert!(err.reasons().iter().all(|r| r.message() == "draining"));
}

#[tokio::test(start_paused = true)]
async fn triggers_never_merge_same_tick_deadline_first_then_declaration_order() {
    let (early, late) = (Token::new(), Token::new());
    let fencing = Fencing::new()
        .token(&early)
        .code("early")
        .timeout(Duration::from_secs(5))
        .code("budget")
        .token(&late)
        .code("late");
    let deadline = fencing.effective_deadline().unwrap();

    // A task cancels both tokens, in reverse declaration order, at the very
    // instant the fence's timer fires.
    let canceller = {
        let (early, late) = (early.clone(), late.clone());
        tokio::spawn(async move {
            time::sleep_until(deadline).await;
            late.cancel_with("late");
            early.cancel_with("early");
        })
    };
    let mut task = hand(fencing.run(pending::<()>()));
    assert_pending!(task.poll());

    time::advance(Duration::from_secs(5)).await;
    canceller.await.unwrap();
    assert_eq!(Instant::now(), deadline, "all in the same tick");
    assert!(task.is_woken());

    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["budget", "early", "late"]);
    assert!(err.reasons()[0].is_timeout());
}

// ---------------------------------------------------------------------------
// Rule 22: time is tokio's
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn paused_time_budget_fires_exactly_at_30s() {
    let start = Instant::now();
    let mut task = hand(
        Fencing::new()
            .timeout(Duration::from_secs(30))
            .code("budget")
            .run(pending::<()>()),
    );
    assert_pending!(task.poll());

    time::advance(Duration::from_millis(29_999)).await;
    assert!(!task.is_woken(), "not a millisecond early");
    assert!(!fence(&task).is_cancelled());
    assert_pending!(task.poll());

    time::advance(Duration::from_millis(1)).await;
    assert!(task.is_woken());
    assert!(fence(&task).is_cancelled(), "seen before the poll");
    let err = assert_ready_err!(task.poll());
    assert!(err.cancelled_by("budget"));
    assert_eq!(err.reason().message(), "timed out after 30s");
    assert_eq!(start.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn paused_time_auto_advances_to_the_budget() {
    let start = Instant::now();
    let err = Fencing::new()
        .timeout(Duration::from_secs(30))
        .code("budget")
        .run(time::sleep(Duration::from_secs(3600)))
        .await
        .unwrap_err();
    assert!(err.cancelled_by("budget"));
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(30),
        "virtual time only"
    );

    let start = Instant::now();
    let value = Fencing::new()
        .timeout(Duration::from_secs(30))
        .run(async {
            time::sleep(Duration::from_millis(29_999)).await;
            7
        })
        .await
        .unwrap();
    assert_eq!(value, 7);
    assert_eq!(start.elapsed(), Duration::from_millis(29_999));
}

// ---------------------------------------------------------------------------
// Future triggers
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn future_trigger_fires_when_a_oneshot_closes() {
    // The server holds the sender and notices when the client drops its end.
    let (mut tx, rx) = oneshot::channel::<()>();
    let fencing = Fencing::new()
        .future(async move { tx.closed().await })
        .code("client");
    let mut task = hand(fencing.clone().run(pending::<()>()));
    assert_pending!(task.poll());
    assert!(!fence(&task).is_cancelled());

    drop(rx);
    assert!(task.is_woken());
    let err = assert_ready_err!(task.poll());
    assert!(err.is_future());
    assert!(err.cancelled_by("client"));
    assert!(fencing.is_cancelled(), "the trigger stays fired");

    // A receiver as the trigger: fires when its sender goes away.
    let (tx, rx) = oneshot::channel::<u8>();
    let mut task = hand(
        Fencing::new()
            .future(rx)
            .code("sender")
            .run(pending::<()>()),
    );
    assert_pending!(task.poll());
    drop(tx);
    assert!(task.is_woken());
    assert!(assert_ready_err!(task.poll()).cancelled_by("sender"));
}

#[tokio::test(start_paused = true)]
async fn future_trigger_custom_message() {
    // A future trigger with a message of its own.
    let (mut tx, rx) = oneshot::channel::<()>();
    let fencing = Fencing::new()
        .future_with(async move { tx.closed().await }, "client disconnected")
        .code("client");
    let mut task = hand(fencing.clone().run(pending::<()>()));
    assert_pending!(task.poll());
    drop(rx);
    assert!(task.is_woken());
    let err = assert_ready_err!(task.poll());
    assert_eq!(err.reason().kind(), ReasonKind::Future);
    assert_eq!(err.reason().message(), "client disconnected");
    assert_eq!(err.to_string(), "cancelled: client: client disconnected");
    assert!(err.cancelled_by("client"));
    assert_eq!(
        fencing.clone().cancelled().await.reason().message(),
        "client disconnected",
        "every fence of the Fencing sees the same message"
    );

    // An owned message, built at run time.
    let peer = "10.0.0.7";
    let err = Fencing::new()
        .future_with(async {}, format!("{peer} hung up"))
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(err.reason().message(), "10.0.0.7 hung up");

    // Drop guards, owned and borrowed, with messages of their own.
    let token = Token::new();
    let mut task = hand(
        Fencing::new()
            .token(&token)
            .code("conn")
            .run(pending::<()>()),
    );
    assert_pending!(task.poll());
    drop(token.drop_guard_with("client disconnected"));
    let err = assert_ready_err!(task.poll());
    assert_eq!(err.reason().message(), "client disconnected");
    assert!(err.is_token());

    let token = Token::new();
    drop(token.drop_guard_ref_with("handler returned early"));
    assert_eq!(token.reason().unwrap().message(), "handler returned early");
    // Disarmed, a guard with a message cancels nothing.
    let token = Token::new();
    let _ = token.clone().drop_guard_with("never").disarm();
    let _ = token.drop_guard_ref_with("never").disarm();
    assert!(!token.is_cancelled());
    // The defaults stay.
    let token = Token::new();
    drop(token.drop_guard_ref());
    assert_eq!(token.reason().unwrap().message(), "drop guard dropped");
}

#[tokio::test(start_paused = true)]
async fn future_trigger_shared_by_two_fences_from_clones() {
    let (tx, rx) = oneshot::channel::<()>();
    let fencing = Fencing::new().future(rx).code("gone");
    let mut first = hand(fencing.clone().run(pending::<()>()));
    let mut second = hand(fencing.clone().run(pending::<()>()));
    assert_pending!(first.poll());
    assert_pending!(second.poll());

    drop(tx);
    assert!(first.is_woken() && second.is_woken());

    // The second one drives the shared future to completion...
    assert!(assert_ready_err!(second.poll()).cancelled_by("gone"));
    // ...and the first sees it fire too.
    assert!(assert_ready_err!(first.poll()).cancelled_by("gone"));
    assert!(fencing.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn future_trigger_keeps_firing_after_the_fence_that_drove_it_is_gone() {
    let (tx, rx) = oneshot::channel::<()>();
    let fencing = Fencing::new().future(rx).code("gone");
    let mut driver = hand(fencing.clone().run(pending::<()>()));
    assert_pending!(driver.poll()); // polls the shared future first
    let mut other = hand(fencing.run(pending::<()>()));
    assert_pending!(other.poll());
    drop(driver);

    drop(tx);
    assert!(other.is_woken());
    assert!(assert_ready_err!(other.poll()).cancelled_by("gone"));
}

#[tokio::test(start_paused = true)]
async fn future_trigger_shared_by_two_spawned_fences() {
    let (mut tx, rx) = oneshot::channel::<()>();
    let fencing = Fencing::new()
        .future(async move { tx.closed().await })
        .code("client");
    let a = tokio::spawn(fencing.clone().run(pending::<()>()));
    let b = tokio::spawn(fencing.run(pending::<()>()));
    tokio::task::yield_now().await;

    drop(rx);
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert!(a.unwrap_err().cancelled_by("client"));
    assert!(b.unwrap_err().cancelled_by("client"));
}

/// A trigger future whose event happens *during* a poll, after the future
/// looked: the sender fires (waking the waker the future was polled with),
/// then another fence is polled while this poll is still running, as on a
/// second worker thread, before the poll returns pending.
struct Staged(Arc<Stage>);

#[derive(Default)]
struct Stage {
    ready: AtomicBool,
    during: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Future for Staged {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.ready.load(SeqCst) {
            return Poll::Ready(());
        }
        let during = self.0.during.lock().unwrap().take();
        if let Some(during) = during {
            self.0.ready.store(true, SeqCst);
            cx.waker().wake_by_ref();
            during();
        }
        Poll::Pending
    }
}

/// Issue 11, item 1. Two fences share one future trigger: a long one waits
/// on it; a short one polls it before its body (which is ready at once).
/// The trigger fires while the short fence is polling it, and the long
/// fence, woken meanwhile, polls too and finds the trigger busy. The long
/// fence must be woken again once the short one lets go: nobody else will
/// poll the trigger.
#[tokio::test(start_paused = true)]
async fn shared_trigger_never_loses_a_wake() {
    let stage = Arc::new(Stage::default());
    let fencing = Fencing::new().future(Staged(stage.clone())).code("gone");
    let long = Arc::new(Mutex::new(hand(fencing.clone().run(pending::<()>()))));
    assert_pending!(long.lock().unwrap().poll());

    let during = long.clone();
    *stage.during.lock().unwrap() = Some(Box::new(move || {
        let mut long = during.lock().unwrap();
        assert!(long.is_woken(), "the event wakes every waiting fence");
        assert_pending!(long.poll(), "the trigger is being polled elsewhere");
    }));
    let mut short = hand(fencing.run(async { 1 }));
    assert_eq!(assert_ready_ok!(short.poll()), 1, "completion wins");
    assert!(stage.during.lock().unwrap().is_none(), "the event happened");
    drop(short);

    let mut long = long.lock().unwrap();
    assert!(
        long.is_woken(),
        "the long fence must be woken again after the short one let go"
    );
    let err = assert_ready_err!(long.poll());
    assert!(err.cancelled_by("gone"));
}

/// Issue 11, item 5: building is linear in the number of steps (each step
/// pushes in place; 4,000 triggers used to take 1.6 s in a debug build), and
/// a clone is never changed by what is derived from it afterwards.
#[tokio::test(start_paused = true)]
async fn builder_many_steps_keep_order_and_clones_independent() {
    const N: usize = 20_000;
    let tokens: Vec<Token> = (0..N).map(|_| Token::new()).collect();
    let mut fencing = Fencing::new();
    let mut half = None;
    for (i, token) in tokens.iter().enumerate() {
        if i == N / 2 {
            half = Some(fencing.clone());
        }
        fencing = fencing.token(token).code(format!("t{i}"));
    }
    let half = half.unwrap();
    // Derived from the clone: it gets a copy, the full one is untouched.
    let extra = Token::new();
    let derived = half.clone().token(&extra).code("extra");

    tokens[N - 1].cancel();
    extra.cancel();
    let err = fencing.run(pending::<()>()).await.unwrap_err();
    assert_eq!(codes(err.reasons()), [format!("t{}", N - 1).as_str()]);
    assert!(!err.cancelled_by("extra"), "derived later from a clone");
    assert!(!half.is_cancelled(), "the clone kept its own list");
    let err = derived.run(pending::<()>()).await.unwrap_err();
    assert_eq!(codes(err.reasons()), ["extra"]);

    tokens[0].cancel();
    let err = half.run(pending::<()>()).await.unwrap_err();
    assert_eq!(codes(err.reasons()), ["t0"]);
}

/// Issue 12: which reason to map on when several fired. `reason()` is the
/// first to fire; `reason_by_priority` the first listed code that fired,
/// whatever the firing order, falling back to `reason()`.
#[tokio::test(start_paused = true)]
async fn reasons_by_priority_rank_codes_over_firing_order() {
    let shutdown = Token::new();
    let request = Fencing::new()
        .timeout(Duration::from_secs(3))
        .code("budget")
        .token(&shutdown)
        .code("shutdown")
        .grace_for("shutdown", Duration::from_secs(5));
    // Told of the shutdown at 1 s, too slow to finish by the budget at 3 s.
    let handler = tokio::spawn(request.run(async {
        time::sleep(Duration::from_secs(10)).await;
    }));
    time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel_with("SIGTERM");
    let err = handler.await.unwrap().unwrap_err();
    assert_eq!(
        codes(err.reasons()),
        ["shutdown", "budget"],
        "in firing order"
    );

    assert!(err.reason().has_code("shutdown"), "the first to fire");
    let budget_first = err.reason_by_priority(["budget", "shutdown"]);
    assert!(budget_first.has_code("budget"));
    assert_eq!(budget_first.message(), "timed out after 3s");
    assert!(err
        .reason_by_priority(["db", "shutdown", "budget"])
        .has_code("shutdown"));
    // An owned code, a `&Code` and an application's enum rank the same way.
    assert!(err
        .reason_by_priority([String::from("budget")])
        .has_code("budget"));
    let code = fencing::Code::from("budget");
    assert!(err.reason_by_priority([&code]).has_code("budget"));
}

#[tokio::test(start_paused = true)]
async fn reasons_by_priority_fall_back_to_the_first_that_fired() {
    let (stop, other) = (Token::new(), Token::new());
    stop.cancel_with("stop");
    other.cancel_with("other");
    // Declared without a code: found only by the fallback.
    let err = Fencing::new()
        .token(&stop)
        .token(&other)
        .code("other")
        .run(async {})
        .await
        .unwrap_err();
    assert_eq!(err.reasons().len(), 2);
    assert_eq!(err.reason_by_priority(["db"]).message(), "stop");
    assert_eq!(
        err.reason_by_priority(Vec::<&'static str>::new()).message(),
        "stop",
        "no priority: the first to fire"
    );
    assert_eq!(err.reason_by_priority(["db", "other"]).message(), "other");
}
