//! Bad input: one test per row of `docs/bad_input.md`, each named
//! `bad_input_<row>` and asserting the outcome that row documents (not just
//! "does not panic"). Rules 3 (overflow and past deadlines), 14 (any thread)
//! and 21 (nothing leaks) of DESIGN.md meet the edges of the API here.
//!
//! Time is tokio's paused clock, moved with `time::advance`; fences whose
//! order matters are polled by hand; nothing sleeps. The runtime-shutdown
//! rows use real threads ordered by channels: "during" is made deterministic
//! by a body whose destructor, run by the shutting-down runtime, hands
//! control to the cancelling thread and waits for it; "before" and "after"
//! are tested as separate rows.

mod support;

use fencing::{current, protect, Code, FenceHandle, Fencing, Token};
use futures_test::task::{new_count_waker, noop_context};
use std::any::Any;
use std::future::{pending, poll_fn, Future};
use std::panic::{self, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;
use support::{codes, hand, latest_instant, OnDrop, Probe, WakeCounter};
use tokio::runtime::{Builder, Runtime};
use tokio::time::{self, Instant};
use tokio_test::{assert_pending, assert_ready, assert_ready_err, assert_ready_ok};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn messages(reasons: &[fencing::Reason]) -> Vec<&str> {
    reasons.iter().map(|r| r.message()).collect()
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// The instant `100 * YEAR` before `now`, or as far back as the platform's
/// clock can represent (on Linux, a century back is representable).
fn far_past(now: Instant) -> Instant {
    let mut back = 100 * YEAR;
    loop {
        if let Some(at) = now.checked_sub(back) {
            return at;
        }
        back /= 2;
    }
}

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_time().build().unwrap()
}

// ---------------------------------------------------------------------------
// Duration::MAX
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn bad_input_duration_max_timeout() {
    let token = Token::new();
    let fencing = Fencing::new()
        .timeout(Duration::MAX)
        .code("never")
        .token(&token)
        .code("stop");
    assert_eq!(fencing.effective_deadline(), None, "no deadline");
    assert_eq!(fencing.remaining(), None);
    assert!(!fencing.is_cancelled());
    assert_eq!(
        Fencing::new().timeout(Duration::MAX).effective_deadline(),
        None,
        "declared alone too"
    );

    // It never replaces a real deadline.
    let real = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("real")
        .timeout(Duration::MAX)
        .code("never");
    assert_eq!(
        real.effective_deadline(),
        Some(Instant::now() + Duration::from_secs(5))
    );
    let mut tight = hand(real.run(pending::<()>()));
    assert_pending!(tight.poll());
    time::advance(Duration::from_secs(5)).await;
    let err = assert_ready_err!(tight.poll());
    assert_eq!(codes(err.reasons()), ["real"], "`never` took no code");

    let gate = Probe::default();
    let mut task = hand(fencing.run(gate.body()));
    assert_pending!(task.poll());
    time::advance(100 * YEAR).await;
    assert!(!task.is_woken(), "nothing fires on time");
    assert!(!task.is_cancelled());
    assert_pending!(task.poll());

    token.cancel_with("bye");
    let err = assert_ready_err!(task.poll());
    assert_eq!(
        codes(err.reasons()),
        ["stop"],
        "the code `never` labelled nothing"
    );
    assert_eq!(gate.drops(), 1);
}

#[tokio::test(start_paused = true)]
async fn bad_input_duration_max_grace() {
    let fencing = Fencing::new().grace(Duration::MAX);
    assert_eq!(fencing.grace_period(), Some(Duration::MAX));
    // Declared twice, the shorter wins.
    assert_eq!(
        fencing.clone().grace(Duration::from_secs(1)).grace_period(),
        Some(Duration::from_secs(1))
    );

    let token = Token::new();
    let gate = Probe::default();
    let mut task = hand(fencing.token(&token).code("stop").run(gate.body()));
    assert_pending!(task.poll());
    assert!(!gate.told());

    token.cancel();
    assert!(task.is_woken());
    assert_pending!(task.poll());
    assert!(gate.told(), "phase one: the body is told");
    time::advance(100 * YEAR).await;
    assert!(!task.is_woken(), "no grace timer");
    assert_pending!(task.poll());
    assert_eq!(gate.drops(), 0, "never dropped, only told");

    gate.open();
    assert_eq!(assert_ready_ok!(task.poll()), "done");
    assert!(task.is_cancelled(), "the trigger is still reported");
    assert!(!task.is_interrupted());
    assert!(task.cancelled_by("stop"));
}

#[tokio::test(start_paused = true)]
async fn bad_input_duration_max_grace_for() {
    let fencing = Fencing::new().grace_for("stop", Duration::MAX);
    assert_eq!(fencing.grace_period_for("stop"), Some(Duration::MAX));
    assert_eq!(fencing.grace_period_for("other"), None);
    assert_eq!(
        fencing
            .clone()
            .grace_for("stop", Duration::from_secs(1))
            .grace_period_for("stop"),
        Some(Duration::from_secs(1)),
        "a shorter one declared after it wins"
    );

    let (stop, other) = (Token::new(), Token::new());
    let gate = Probe::default();
    let mut task = hand(
        fencing
            .token(&stop)
            .code("stop")
            .token(&other)
            .code("other")
            .grace_for("other", Duration::from_secs(2))
            .run(gate.body()),
    );
    assert_pending!(task.poll());
    stop.cancel();
    assert_pending!(task.poll());
    assert!(gate.told(), "told");
    time::advance(100 * YEAR).await;
    assert!(!task.is_woken(), "no timer for it");
    assert_pending!(task.poll());
    assert_eq!(gate.drops(), 0, "never dropped for it");

    other.cancel();
    assert_pending!(task.poll());
    time::advance(Duration::from_secs(2)).await;
    assert!(task.is_woken(), "the other reason's grace period ends");
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["stop", "other"]);
    assert_eq!(gate.drops(), 1);
}

#[tokio::test(start_paused = true)]
async fn bad_input_duration_max_reschedule_after() {
    let handle = FenceHandle::new();
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(1))
        .code("budget")
        .handle(&handle)
        .code("idle");
    let gate = Probe::default();
    let mut task = hand(fencing.clone().run(gate.body()));
    assert_pending!(task.poll());

    handle.reschedule_after(Duration::MAX);
    assert_eq!(handle.deadline(), None, "no deadline");
    assert_eq!(
        fencing.effective_deadline(),
        None,
        "it replaces the declared timeout too"
    );
    assert!(task.is_woken(), "running fences re-read the schedule");
    assert_pending!(task.poll());

    time::advance(100 * YEAR).await;
    assert!(!task.is_woken());
    assert!(!task.is_cancelled());
    assert_pending!(task.poll());

    // The handle still cancels.
    handle.cancel_with("admin");
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["idle"]);
    assert!(err.is_token());
}

// ---------------------------------------------------------------------------
// Duration::ZERO
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn bad_input_duration_zero_timeout() {
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(30))
        .code("budget")
        .timeout(Duration::ZERO)
        .code("zero");
    assert_eq!(fencing.effective_deadline(), Some(Instant::now()));
    assert_eq!(fencing.remaining(), Some(Duration::ZERO));
    assert!(fencing.is_cancelled(), "fired already, when declared");

    let gate = Probe::default();
    gate.open();
    let mut task = hand(fencing.clone().run(gate.body()));
    assert!(task.is_cancelled(), "known before the first poll");
    let err = assert_ready_err!(task.poll());
    assert_eq!(gate.polls(), 0, "the body never starts, even a ready one");
    assert_eq!(gate.drops(), 1);
    assert_eq!(codes(err.reasons()), ["zero"]);
    assert!(err.is_timeout());
    assert_eq!(err.reason().message(), "timed out after 0ns");

    let mut waited = hand(fencing.cancelled());
    assert!(assert_ready!(waited.poll()).cancelled_by("zero"));

    // Through a handle: fires at the running fence's next poll.
    let handle = FenceHandle::new();
    let gate = Probe::default();
    let mut task = hand(Fencing::new().handle(&handle).code("h").run(gate.body()));
    assert_pending!(task.poll());
    handle.reschedule_after(Duration::ZERO);
    assert!(task.is_woken());
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["h"]);
    assert!(err.is_timeout());
}

#[tokio::test(start_paused = true)]
async fn bad_input_duration_zero_grace() {
    let fencing = Fencing::new().grace(Duration::ZERO);
    assert_eq!(fencing.grace_period(), Some(Duration::ZERO));
    // The shorter grace wins, so a zero after a real one removes it.
    let fencing = Fencing::new()
        .grace(Duration::from_secs(5))
        .grace(Duration::ZERO);
    assert_eq!(fencing.grace_period(), Some(Duration::ZERO));

    let token = Token::new();
    let gate = Probe::default();
    let mut task = hand(fencing.token(&token).code("stop").run(gate.body()));
    assert_pending!(task.poll());
    token.cancel();
    // Same as no grace period: dropped in the poll that sees the trigger.
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["stop"]);
    assert_eq!(gate.drops(), 1, "dropped within that poll");
    assert!(task.is_interrupted());
}

#[test]
fn bad_input_duration_zero_condition_interval() {
    for variant in 0..4 {
        let payload = std::panic::catch_unwind(|| {
            let fencing = Fencing::new();
            let _ = match variant {
                0 => fencing.condition(Duration::ZERO, || true),
                1 => fencing.condition_async(Duration::ZERO, || async { true }),
                2 => fencing.condition_fail_fast(Duration::ZERO, || true),
                _ => fencing.condition_async_fail_fast(Duration::ZERO, || async { true }),
            };
        });
        let payload = payload.expect_err("a zero interval panics");
        assert_eq!(
            panic_text(&*payload),
            "a condition's interval must be greater than zero"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn bad_input_duration_zero_grace_for() {
    let (stop, hard) = (Token::new(), Token::new());
    let fencing = Fencing::new()
        .token(&stop)
        .code("stop")
        .token(&hard)
        .code("hard")
        .grace(Duration::from_secs(5))
        .grace_for("hard", Duration::ZERO);
    assert_eq!(fencing.grace_period_for("hard"), Some(Duration::ZERO));
    assert_eq!(
        fencing.grace_period_for("stop"),
        Some(Duration::from_secs(5))
    );

    // Alone: dropped in the poll that sees it, despite the fence-wide grace.
    let gate = Probe::default();
    let mut task = hand(fencing.clone().run(gate.body()));
    assert_pending!(task.poll());
    hard.cancel();
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["hard"]);
    assert_eq!(gate.drops(), 1);

    // During the other reason's grace period: the same.
    let (stop, hard) = (Token::new(), Token::new());
    let fencing = Fencing::new()
        .token(&stop)
        .code("stop")
        .token(&hard)
        .code("hard")
        .grace(Duration::from_secs(5))
        .grace_for("hard", Duration::ZERO);
    let gate = Probe::default();
    let mut task = hand(fencing.run(gate.body()));
    assert_pending!(task.poll());
    stop.cancel();
    assert_pending!(task.poll(), "the fence-wide grace period for stop");
    time::advance(Duration::from_secs(1)).await;
    hard.cancel();
    assert!(task.is_woken());
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["stop", "hard"]);
    assert_eq!(gate.drops(), 1);
}

// ---------------------------------------------------------------------------
// Deadlines far in the past
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn bad_input_deadline_far_in_the_past() {
    let past = far_past(Instant::now());
    assert!(past < Instant::now());

    let fencing = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("budget")
        .deadline(past)
        .code("old");
    assert_eq!(
        fencing.effective_deadline(),
        Some(past),
        "the tightest wins"
    );
    assert_eq!(fencing.remaining(), Some(Duration::ZERO), "saturating");
    assert!(fencing.is_cancelled(), "already fired");
    assert!(Fencing::new().deadline(past).is_cancelled());

    let gate = Probe::default();
    gate.open();
    let mut task = hand(fencing.clone().run(gate.body()));
    assert!(task.is_cancelled());
    let err = assert_ready_err!(task.poll());
    assert_eq!(gate.polls(), 0, "the body never starts");
    assert_eq!(codes(err.reasons()), ["old"]);
    assert!(err.is_deadline());
    assert_eq!(err.reason().message(), "deadline exceeded");

    let mut waited = hand(fencing.cancelled());
    assert!(assert_ready!(waited.poll()).cancelled_by("old"));

    // Through a handle: a running fence fires at its next poll.
    let handle = FenceHandle::new();
    let gate = Probe::default();
    let mut task = hand(
        Fencing::new()
            .timeout(Duration::from_secs(60))
            .handle(&handle)
            .code("h")
            .run(gate.body()),
    );
    assert_pending!(task.poll());
    handle.reschedule(past);
    assert_eq!(handle.deadline(), Some(past));
    assert!(task.is_woken());
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["h"]);
    assert!(err.is_deadline());
    assert_eq!(gate.polls(), 2);
}

#[test]
fn bad_input_deadline_before_the_runtime_started() {
    // Outside a runtime tokio's `Instant::now()` is the system's clock.
    let before = Instant::now();
    let rt = Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        time::advance(Duration::from_secs(1)).await;
        assert!(before < Instant::now());

        let fencing = Fencing::new().deadline(before).code("stale");
        assert!(fencing.is_cancelled(), "already fired");
        assert_eq!(fencing.remaining(), Some(Duration::ZERO));
        let gate = Probe::default();
        gate.open();
        let err = fencing.run(gate.body()).await.unwrap_err();
        assert_eq!(gate.polls(), 0);
        assert_eq!(codes(err.reasons()), ["stale"]);

        // The fence's timer is moved to an instant before the time driver
        // started: it fires at the next poll.
        let handle = FenceHandle::new();
        let gate = Probe::default();
        let mut task = hand(
            Fencing::new()
                .timeout(Duration::from_secs(60))
                .handle(&handle)
                .code("h")
                .run(gate.body()),
        );
        assert_pending!(task.poll());
        handle.reschedule(before);
        assert!(task.is_woken());
        let err = assert_ready_err!(task.poll());
        assert_eq!(codes(err.reasons()), ["h"]);
        assert!(err.is_deadline());
    });
}

// ---------------------------------------------------------------------------
// Deadlines far in the future
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn bad_input_deadline_far_in_the_future() {
    let start = Instant::now();
    let far = start + 100 * YEAR;
    let fencing = Fencing::new().deadline(far).code("far");
    assert_eq!(fencing.effective_deadline(), Some(far));
    assert_eq!(fencing.remaining(), Some(100 * YEAR));
    assert!(!fencing.is_cancelled());
    assert_eq!(
        Fencing::new().timeout(100 * YEAR).effective_deadline(),
        Some(far),
        "representable: a deadline, not an overflow"
    );

    let gate = Probe::default();
    let mut task = hand(fencing.run(gate.body()));
    assert_pending!(task.poll());
    time::advance(31 * YEAR).await;
    assert!(
        !task.is_cancelled(),
        "69 years are left, but the fence reports {:?}",
        task.reasons()
    );
    assert_pending!(task.poll());
    assert_eq!(gate.drops(), 0);

    time::advance(69 * YEAR).await;
    assert_eq!(Instant::now(), far);
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["far"]);
    assert!(err.is_deadline());
}

#[tokio::test(start_paused = true)]
async fn bad_input_deadline_latest_representable() {
    let latest = latest_instant();
    let left = latest - Instant::now();
    assert_eq!(Instant::now().checked_add(left), Some(latest));

    let fencing = Fencing::new().deadline(latest).code("edge");
    assert_eq!(fencing.effective_deadline(), Some(latest));
    assert_eq!(fencing.remaining(), Some(left));
    assert!(!fencing.is_cancelled());
    assert_eq!(
        Fencing::new().timeout(left).effective_deadline(),
        Some(latest),
        "a timeout that just fits is a deadline"
    );
    assert_eq!(
        Fencing::new()
            .timeout(left + Duration::from_nanos(1))
            .effective_deadline(),
        None,
        "one nanosecond more overflows: no deadline"
    );

    // Arming the fence's timer for it neither panics nor fires.
    let gate = Probe::default();
    let mut task = hand(fencing.run(gate.body()));
    let poll = panic::catch_unwind(AssertUnwindSafe(|| task.poll()));
    assert!(matches!(poll, Ok(Poll::Pending)), "panicked while arming");
    time::advance(5 * YEAR).await;
    assert!(!task.is_woken());
    assert!(!task.is_cancelled());
    assert_pending!(task.poll());

    // Through a handle, too.
    let handle = FenceHandle::new();
    handle.reschedule(latest);
    assert_eq!(handle.deadline(), Some(latest));
    let mut task = hand(Fencing::new().handle(&handle).run(Probe::default().body()));
    assert_pending!(task.poll());
    time::advance(5 * YEAR).await;
    assert_pending!(task.poll());

    gate.open();
}

#[tokio::test(start_paused = true)]
async fn bad_input_grace_far_in_the_future() {
    let token = Token::new();
    let gate = Probe::default();
    let mut task = hand(
        Fencing::new()
            .token(&token)
            .code("stop")
            .grace(100 * YEAR)
            .run(gate.body()),
    );
    assert_pending!(task.poll());
    token.cancel();
    assert_pending!(task.poll());
    assert!(gate.told());

    time::advance(99 * YEAR).await;
    assert_pending!(task.poll());
    assert_eq!(gate.drops(), 0, "still within the grace period");
    time::advance(YEAR).await;
    assert!(task.is_woken(), "the grace period has ended");
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["stop"]);
    assert_eq!(gate.drops(), 1);
}

// ---------------------------------------------------------------------------
// Re-entrant cancels
// ---------------------------------------------------------------------------

/// A waker whose `wake` cancels token `a` (the one it is woken by) and token
/// `b`, logging what each cancel returned.
struct Reentrant {
    a: Token,
    b: Token,
    log: Mutex<Vec<(&'static str, bool)>>,
}

impl Wake for Reentrant {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let again = self.a.cancel_with("again");
        self.log.lock().unwrap().push(("a", again));
        let other = self.b.cancel_with("from a waker");
        self.log.lock().unwrap().push(("b", other));
    }
}

#[test]
fn bad_input_cancel_from_inside_a_waker() {
    let (a, b) = (Token::new(), Token::new());
    let reentrant = Arc::new(Reentrant {
        a: a.clone(),
        b: b.clone(),
        log: Mutex::new(Vec::new()),
    });
    let waker = Waker::from(reentrant.clone());
    let mut cx = Context::from_waker(&waker);

    let gate = Probe::default();
    let mut fenced = pin!(Fencing::new()
        .token(&a)
        .code("a")
        .token(&b)
        .code("b")
        .run(gate.body()));
    assert!(fenced.as_mut().poll(&mut cx).is_pending());
    assert_eq!((a.__waiter_count(), b.__waiter_count()), (1, 1));

    // Someone else waits on `b`.
    let count = Arc::new(WakeCounter::default());
    let other = Waker::from(count.clone());
    let mut on_b = pin!(b.cancelled());
    assert!(on_b
        .as_mut()
        .poll(&mut Context::from_waker(&other))
        .is_pending());

    assert!(a.cancel_with("outer"));
    // Woken by `a`: cancelling `a` again loses; cancelling `b` wins, and
    // wakes the same waker once more (re-entrantly), where both lose.
    assert_eq!(
        *reentrant.log.lock().unwrap(),
        [("a", false), ("a", false), ("b", false), ("b", true)]
    );
    assert_eq!(
        a.reason().unwrap().message(),
        "outer",
        "the first cancel wins"
    );
    assert_eq!(b.reason().unwrap().message(), "from a waker");
    assert_eq!(count.wakes(), 1, "b's other waiter is woken");
    let Poll::Ready(reason) = on_b.as_mut().poll(&mut Context::from_waker(&other)) else {
        panic!("b is cancelled");
    };
    assert_eq!(reason.message(), "from a waker");

    let Poll::Ready(Err(err)) = fenced.as_mut().poll(&mut cx) else {
        panic!("the fence is cancelled");
    };
    assert_eq!(codes(err.reasons()), ["a", "b"], "declaration order");
    assert_eq!(messages(err.reasons()), ["outer", "from a waker"]);
    assert_eq!((a.__waiter_count(), b.__waiter_count()), (0, 0));
    assert_eq!(gate.drops(), 1);
}

#[test]
fn bad_input_cancel_from_inside_an_on_cancel_hook() {
    let (a, b) = (Token::new(), Token::new());
    let child = a.child();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));

    // Registered first; disarmed from inside the other hook of `a`.
    let l = log.clone();
    let other = a.on_cancel(move |reason| {
        l.lock()
            .unwrap()
            .push(format!("other: {}", reason.message()))
    });

    // `b`'s hook cancels `a` back: a cycle.
    let (l, a2) = (log.clone(), a.clone());
    b.on_cancel(move |_| {
        let won = a2.cancel_with("cycle");
        l.lock().unwrap().push(format!("b hook: cancel a = {won}"));
    })
    .detach();

    let (l, a2, b2, c2) = (log.clone(), a.clone(), b.clone(), child.clone());
    a.on_cancel(move |reason| {
        let push = |s: String| l.lock().unwrap().push(s);
        push(format!("a hook: {}", reason.message()));
        push(format!("cancel a = {}", a2.cancel_with("again")));
        push(format!("cancel b = {}", b2.cancel_with("from a hook")));
        push(format!("cancel child = {}", c2.cancel_with("child first")));
        push(format!("disarm other = {}", other.remove()));
        // Registering on a cancelled token runs the hook at once.
        let l2 = l.clone();
        a2.on_cancel(move |r| l2.lock().unwrap().push(format!("late: {}", r.message())))
            .detach();
        let born = a2.child();
        push(format!("born: {}", born.reason().unwrap().message()));
    })
    .detach();

    assert!(a.cancel_with("outer"));
    let log = log.lock().unwrap().clone();
    let main: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|s| !s.starts_with("other"))
        .collect();
    assert_eq!(
        main,
        [
            "a hook: outer",
            "cancel a = false",
            "b hook: cancel a = false",
            "cancel b = true",
            "cancel child = true",
            "disarm other = false",
            "late: outer",
            "born: outer",
        ]
    );
    assert_eq!(
        log.iter().filter(|s| *s == "other: outer").count(),
        1,
        "the disarmed hook was taken by the cancel and runs once: {log:?}"
    );
    assert_eq!(a.reason().unwrap().message(), "outer");
    assert_eq!(b.reason().unwrap().message(), "from a hook");
    assert_eq!(
        child.reason().unwrap().message(),
        "child first",
        "first cancel wins, even during the parent's cancel"
    );
    assert_eq!((a.__waiter_count(), b.__waiter_count()), (0, 0));
}

// ---------------------------------------------------------------------------
// Cancelling after every waiter is gone
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn bad_input_cancel_after_every_waiter_is_gone() {
    let token = Token::new();
    let count = Arc::new(WakeCounter::default());
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    {
        let mut borrowed = pin!(token.cancelled());
        let mut owned = pin!(token.clone().cancelled_owned());
        let mut fencing = pin!(Fencing::new().token(&token).cancelled());
        assert!(borrowed.as_mut().poll(&mut cx).is_pending());
        assert!(owned.as_mut().poll(&mut cx).is_pending());
        assert!(fencing.as_mut().poll(&mut cx).is_pending());
        let hook = token.on_cancel(|_| panic!("a dropped hook never runs"));
        assert_eq!(token.__waiter_count(), 4);
        drop(hook);
    }
    assert_eq!(token.__waiter_count(), 0, "every registration left");

    assert!(token.cancel_with("nobody listens"), "the cancel still wins");
    assert_eq!(count.wakes(), 0, "no dropped waiter is woken");
    assert_eq!(token.reason().unwrap().message(), "nobody listens");
    assert!(!token.cancel());

    // A new waiter sees it at once.
    let mut late = pin!(token.cancelled());
    assert!(
        matches!(late.as_mut().poll(&mut cx), Poll::Ready(r) if r.message() == "nobody listens")
    );
    assert_eq!(token.__waiter_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn bad_input_cancel_after_every_fence_is_gone() {
    let token = Token::new();
    let handle = FenceHandle::new();
    let gate = Probe::default();
    {
        let fencing = Fencing::new()
            .timeout(Duration::from_secs(5))
            .token(&token)
            .code("stop")
            .handle(&handle)
            .code("admin");
        let mut first = hand(fencing.clone().run(gate.body()));
        let mut second = hand(fencing.run(gate.body()));
        assert_pending!(first.poll());
        assert_pending!(second.poll());
        assert_eq!(token.__waiter_count(), 2);
        // Dropped pending: the bodies are dropped and the fences release.
    }
    assert_eq!(gate.drops(), 2);
    assert_eq!(token.__waiter_count(), 0, "the fences released the token");

    assert!(token.cancel_with("late"));
    assert!(handle.cancel_with("late"));
    assert!(
        !token.cancel() && !handle.cancel(),
        "the first cancel still wins"
    );
    assert_eq!(gate.polls(), 2, "nothing polls a dropped body");

    // A fence declared afterwards never starts its body.
    let after = Probe::default();
    let err = Fencing::new()
        .token(&token)
        .code("stop")
        .handle(&handle)
        .code("admin")
        .run(after.body())
        .await
        .unwrap_err();
    assert_eq!(after.polls(), 0);
    assert_eq!(codes(err.reasons()), ["stop", "admin"]);
}

// ---------------------------------------------------------------------------
// Codes
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn bad_input_empty_code() {
    assert_eq!(Code::from(""), Code::from(String::new()));
    assert_eq!(Code::from("").as_str(), "");

    let (coded, plain) = (Token::new(), Token::new());
    let fencing = Fencing::new().token(&coded).code("").token(&plain);
    coded.cancel_with("stop");
    plain.cancel_with("plain");

    let mut task = hand(fencing.run(Probe::default().body()));
    assert!(task.cancelled_by(""));
    let err = assert_ready_err!(task.poll());
    assert_eq!(codes(err.reasons()), ["", "-"], "a code, then none");
    assert!(err.cancelled_by(""), "\"\" is a code like any other");
    assert!(err.cancelled_by(String::new()));
    assert!(err.reasons()[0].has_code(""));
    assert_eq!(err.reasons()[0].code().unwrap(), "");
    assert!(
        !err.reasons()[1].has_code(""),
        "no code is not the empty code"
    );
    // Display keeps the separator (wording not covered by semver).
    assert_eq!(err.reasons()[0].to_string(), ": stop");
    assert_eq!(err.to_string(), "cancelled: : stop; plain");

    // Not declared anywhere: asking for "" is simply false.
    let other = Token::new();
    other.cancel();
    let err = Fencing::new()
        .token(&other)
        .code("x")
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert!(!err.cancelled_by(""));
}

#[tokio::test(start_paused = true)]
async fn bad_input_code_with_nothing_before_it() {
    let token = Token::new();
    token.cancel();

    // Before any trigger.
    let err = Fencing::new()
        .code("orphan")
        .token(&token)
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(codes(err.reasons()), ["-"]);
    assert!(!err.cancelled_by("orphan"));

    // After `grace`, which is not a trigger: the token keeps its code.
    let fired = Fencing::new()
        .token(&token)
        .code("t")
        .grace(Duration::from_secs(5))
        .code("g")
        .cancelled()
        .await;
    assert_eq!(codes(fired.reasons()), ["t"]);

    // After a time trigger that lost the merge.
    let err = Fencing::new()
        .timeout(Duration::from_secs(1))
        .code("tight")
        .timeout(Duration::from_secs(9))
        .code("loose")
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(codes(err.reasons()), ["tight"]);

    // Twice in a row: the second replaces the first.
    let err = Fencing::new()
        .token(&token)
        .code("a")
        .code("b")
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(codes(err.reasons()), ["b"]);

    // On `current()`, derived: it labels nothing, outside or inside a binding.
    let top = current().code("x");
    assert!(!top.is_cancelled());
    assert_eq!(top.effective_deadline(), None);
    let inner = Fencing::new()
        .token(&token)
        .code("outer")
        .bind(async {
            current()
                .code("relabelled")
                .run(pending::<()>())
                .await
                .unwrap_err()
        })
        .await;
    assert_eq!(codes(inner.reasons()), ["outer"], "the outer code stays");
}

// ---------------------------------------------------------------------------
// Runtime shutdown while a task waits on the token
// ---------------------------------------------------------------------------

/// Spawns on `rt` a task running a fence on `token` (code `"stop"`) around a
/// pending body that holds `on_body_drop`. Returns a receiver that resolves
/// once the fence has registered with the token, and one that receives the
/// fence's result, or disconnects when the task is dropped unfinished.
fn spawn_fenced_waiter(
    rt: &Runtime,
    token: &Token,
    on_body_drop: OnDrop,
) -> (
    tokio::sync::oneshot::Receiver<()>,
    mpsc::Receiver<Result<(), fencing::Cancelled>>,
) {
    let (registered_tx, registered_rx) = tokio::sync::oneshot::channel();
    let (outcome_tx, outcome_rx) = mpsc::channel();
    let fenced = Fencing::new().token(token).code("stop").run(async move {
        let _on_drop = on_body_drop;
        pending::<()>().await;
    });
    rt.spawn(async move {
        let mut fenced = pin!(fenced);
        let mut registered_tx = Some(registered_tx);
        let outcome = poll_fn(|cx| {
            let poll = fenced.as_mut().poll(cx);
            if let Some(tx) = registered_tx.take() {
                let _ = tx.send(());
            }
            poll
        })
        .await;
        let _ = outcome_tx.send(outcome);
    });
    (registered_rx, outcome_rx)
}

#[test]
fn bad_input_cancel_while_runtime_shuts_down() {
    let rt = current_thread();
    let token = Token::new();
    let (dropping_tx, dropping_rx) = mpsc::channel::<()>();
    let (cancelled_tx, cancelled_rx) = mpsc::channel::<()>();
    let registered_while_dropping = Arc::new(AtomicUsize::new(usize::MAX));
    let cancelled_while_dropping = Arc::new(AtomicBool::new(false));

    let (t, r, c) = (
        token.clone(),
        registered_while_dropping.clone(),
        cancelled_while_dropping.clone(),
    );
    let on_drop = OnDrop::new(move || {
        // Run by the runtime's shutdown, which is dropping this task: the
        // fence is still registered with the token.
        r.store(t.__waiter_count(), SeqCst);
        dropping_tx.send(()).unwrap();
        cancelled_rx.recv().unwrap();
        c.store(t.is_cancelled(), SeqCst);
    });
    let (registered, outcome) = spawn_fenced_waiter(&rt, &token, on_drop);
    rt.block_on(registered).unwrap();
    assert_eq!(token.__waiter_count(), 1);

    let canceller = thread::spawn({
        let token = token.clone();
        move || {
            dropping_rx.recv().unwrap(); // the shutdown has begun
            let won = token.cancel_with("late");
            cancelled_tx.send(()).unwrap();
            won
        }
    });
    drop(rt); // shuts down; blocks in the body's drop until the cancel is done

    assert!(
        canceller.join().unwrap(),
        "the cancel wins, without a panic"
    );
    assert_eq!(
        registered_while_dropping.load(SeqCst),
        1,
        "the cancel met a live registration"
    );
    assert!(cancelled_while_dropping.load(SeqCst));
    assert!(
        matches!(outcome.try_recv(), Err(mpsc::TryRecvError::Disconnected)),
        "the task was dropped, the fence never returned"
    );
    assert_eq!(token.reason().unwrap().message(), "late");
    assert_eq!(token.__waiter_count(), 0);
}

#[test]
fn bad_input_cancel_while_runtime_shuts_down_in_background() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let token = Token::new();
    let (dropping_tx, dropping_rx) = mpsc::channel::<usize>();
    let (cancelled_tx, cancelled_rx) = mpsc::channel::<()>();
    let t = token.clone();
    let on_drop = OnDrop::new(move || {
        // On a worker thread, during the shutdown.
        dropping_tx.send(t.__waiter_count()).unwrap();
        cancelled_rx.recv().unwrap();
    });
    let (registered, outcome) = spawn_fenced_waiter(&rt, &token, on_drop);
    registered.blocking_recv().unwrap();

    rt.shutdown_background();
    assert_eq!(dropping_rx.recv().unwrap(), 1, "dropped while registered");
    assert!(token.cancel_with("late"), "cancelled during the shutdown");
    cancelled_tx.send(()).unwrap();

    // Disconnects once the task is dropped: the fence never returned.
    assert!(outcome.recv().is_err());
    assert_eq!(token.reason().unwrap().message(), "late");
    assert_eq!(token.__waiter_count(), 0);
}

#[test]
fn bad_input_cancel_before_runtime_shutdown() {
    let rt = current_thread();
    let token = Token::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let (registered, outcome) = spawn_fenced_waiter(
        &rt,
        &token,
        OnDrop::new(move || {
            d.fetch_add(1, SeqCst);
        }),
    );
    rt.block_on(registered).unwrap();

    // Woken from another thread; the runtime is not driven again.
    let remote = token.clone();
    assert!(thread::spawn(move || remote.cancel_with("early"))
        .join()
        .unwrap());
    assert_eq!(token.__waiter_count(), 0, "the cancel took the waiter");
    assert_eq!(drops.load(SeqCst), 0, "not polled since");

    drop(rt);
    assert_eq!(drops.load(SeqCst), 1, "the shutdown dropped the body");
    assert!(
        matches!(outcome.try_recv(), Err(mpsc::TryRecvError::Disconnected)),
        "the woken task was dropped, not polled"
    );
}

#[test]
fn bad_input_cancel_after_runtime_shutdown() {
    let rt = current_thread();
    let token = Token::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let (registered, outcome) = spawn_fenced_waiter(
        &rt,
        &token,
        OnDrop::new(move || {
            d.fetch_add(1, SeqCst);
        }),
    );
    rt.block_on(registered).unwrap();
    assert_eq!(token.__waiter_count(), 1);

    drop(rt);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(
        token.__waiter_count(),
        0,
        "the dropped fence released the token"
    );
    assert!(matches!(
        outcome.try_recv(),
        Err(mpsc::TryRecvError::Disconnected)
    ));

    let remote = token.clone();
    assert!(thread::spawn(move || remote.cancel_with("after"))
        .join()
        .unwrap());
    assert_eq!(token.reason().unwrap().message(), "after");
}

// ---------------------------------------------------------------------------
// Other bad input
// ---------------------------------------------------------------------------

#[test]
fn bad_input_fenced_polled_after_completion() {
    let again = |result: std::thread::Result<()>| panic_text(&*result.unwrap_err());

    // After `Ok`.
    let mut done = hand(Fencing::new().run(async { 1 }));
    assert_eq!(assert_ready_ok!(done.poll()), 1);
    let text = again(panic::catch_unwind(AssertUnwindSafe(|| {
        let _ = done.poll();
    })));
    assert_eq!(text, "`Fenced` polled after completion");

    // After `Err`.
    let token = Token::new();
    token.cancel();
    let mut cancelled = hand(Fencing::new().token(&token).run(async { 1 }));
    assert!(assert_ready!(cancelled.poll()).is_err());
    let text = again(panic::catch_unwind(AssertUnwindSafe(|| {
        let _ = cancelled.poll();
    })));
    assert_eq!(text, "`Fenced` polled after completion");

    // `Fencing::cancelled` is a fence too.
    let mut waited = hand(Fencing::new().token(&token).cancelled());
    let _ = assert_ready!(waited.poll());
    let text = again(panic::catch_unwind(AssertUnwindSafe(|| {
        let _ = waited.poll();
    })));
    assert_eq!(text, "`Fenced` polled after completion");

    // The state read afterwards is still there.
    assert!(cancelled.is_interrupted());
    assert!(done.reasons().is_empty());
}

#[test]
fn bad_input_future_trigger_panics() {
    let fencing = Fencing::new()
        .future(async {
            if true {
                panic!("trigger blew up");
            }
        })
        .code("boom");

    // It panics in the first fence that polls it, before the body starts.
    let gate = Probe::default();
    let mut first = hand(fencing.clone().run(gate.body()));
    let payload = panic::catch_unwind(AssertUnwindSafe(|| first.poll())).unwrap_err();
    assert_eq!(panic_text(&*payload), "trigger blew up", "unchanged");
    assert_eq!(gate.polls(), 0);
    drop(first);
    assert_eq!(gate.drops(), 1);

    // Afterwards the trigger never fires; nothing is poisoned.
    assert!(!fencing.is_cancelled());
    let mut second = hand(fencing.clone().run(async { 7 }));
    assert_eq!(assert_ready_ok!(second.poll()), 7);
    assert!(!second.is_cancelled());
    let mut third = hand(fencing.cancelled());
    assert_pending!(third.poll());
    assert!(!third.is_woken());
}

#[test]
fn bad_input_cancel_child_of_dropped_parent() {
    let parent = Token::new();
    let child = parent.child();
    let grandchild = child.child();
    drop(parent);
    assert!(!child.is_cancelled(), "a dropped parent cancels nothing");

    let late = child.child();
    let (waker, woken) = new_count_waker();
    let mut fenced = pin!(Fencing::new()
        .token(&grandchild)
        .code("g")
        .run(pending::<()>()));
    assert!(fenced
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());

    assert!(child.cancel_with("alone"));
    assert!(!child.cancel(), "first cancel wins");
    for token in [&child, &grandchild, &late] {
        assert_eq!(token.reason().unwrap().message(), "alone");
    }
    assert_eq!(woken, 1);
    let Poll::Ready(Err(err)) = fenced.as_mut().poll(&mut Context::from_waker(&waker)) else {
        panic!("the grandchild's fence fires");
    };
    assert_eq!(codes(err.reasons()), ["g"]);
    assert_eq!(err.reason().message(), "alone");
}

#[test]
fn bad_input_deadline_fence_polled_without_runtime() {
    let mut cx = noop_context();

    // No timer is needed: a ready body, a pre-fired deadline, a token.
    let mut ready = pin!(Fencing::new()
        .deadline(Instant::now() + Duration::from_secs(5))
        .run(async { 7 }));
    assert!(matches!(ready.as_mut().poll(&mut cx), Poll::Ready(Ok(7))));
    let mut fired = pin!(Fencing::new().timeout(Duration::ZERO).run(pending::<()>()));
    assert!(matches!(fired.as_mut().poll(&mut cx), Poll::Ready(Err(_))));
    let token = Token::new();
    let mut waiting = pin!(Fencing::new().token(&token).run(pending::<()>()));
    assert!(waiting.as_mut().poll(&mut cx).is_pending());
    token.cancel();
    assert!(matches!(
        waiting.as_mut().poll(&mut cx),
        Poll::Ready(Err(_))
    ));

    // A pending body with a deadline needs tokio's timer: it panics, as
    // `tokio::time::sleep` does.
    let mut timed = Box::pin(
        Fencing::new()
            .timeout(Duration::from_secs(5))
            .run(pending::<()>()),
    );
    let payload =
        panic::catch_unwind(AssertUnwindSafe(|| timed.as_mut().poll(&mut cx))).unwrap_err();
    assert!(
        panic_text(&*payload).contains("Tokio 1.x"),
        "{}",
        panic_text(&*payload)
    );
    drop(timed);

    // In a runtime without the time driver, too.
    let no_time = Builder::new_current_thread().build().unwrap();
    let payload = panic::catch_unwind(AssertUnwindSafe(|| {
        no_time.block_on(
            Fencing::new()
                .timeout(Duration::from_secs(5))
                .run(pending::<()>()),
        )
    }))
    .unwrap_err();
    assert!(
        panic_text(&*payload).contains("timers are disabled"),
        "{}",
        panic_text(&*payload)
    );
}

/// A fence armed on runtime A (its timer set on A's driver) and polled on
/// runtime B after A was dropped panics with tokio's message, as a
/// `tokio::time::Sleep` would: its timer went with A. A fence with no timer
/// moves freely.
#[test]
fn bad_input_fence_polled_on_another_runtime_after_its_own_shut_down() {
    let token = Token::new();
    let mut timed = Box::pin(
        Fencing::new()
            .timeout(Duration::from_secs(60))
            .token(&token)
            .run(pending::<()>()),
    );
    let mut untimed = Box::pin(Fencing::new().token(&token).run(pending::<()>()));
    let a = Builder::new_current_thread().enable_time().build().unwrap();
    a.block_on(poll_fn(|cx| {
        assert!(
            timed.as_mut().poll(cx).is_pending(),
            "its timer is set on A"
        );
        assert!(untimed.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    }));
    drop(a);

    let b = Builder::new_current_thread().enable_time().build().unwrap();
    let payload = panic::catch_unwind(AssertUnwindSafe(|| {
        b.block_on(poll_fn(|cx| timed.as_mut().poll(cx)))
    }))
    .unwrap_err();
    assert!(
        panic_text(&*payload).contains("being shutdown"),
        "{}",
        panic_text(&*payload)
    );
    drop(timed); // dropping it afterwards is harmless

    token.cancel_with("moved");
    let err = b.block_on(untimed).unwrap_err();
    assert_eq!(err.reason().message(), "moved");
}

#[cfg(feature = "rt")]
#[test]
fn bad_input_shielded_after_its_runtime_shut_down() {
    let first = current_thread();
    let shielded = {
        let _entered = first.enter();
        fencing::shield(pending::<u8>())
    };
    drop(first); // cancels the shielded task

    let second = current_thread();
    let payload = panic::catch_unwind(AssertUnwindSafe(|| second.block_on(shielded))).unwrap_err();
    assert!(
        panic_text(&*payload).starts_with("shielded work did not complete"),
        "{}",
        panic_text(&*payload)
    );
}

#[cfg(feature = "stream")]
#[test]
fn bad_input_fenced_stream_polled_after_end() {
    use futures_core::Stream;

    struct Items(Vec<u32>);

    impl Stream for Items {
        type Item = u32;

        fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<u32>> {
            Poll::Ready(self.0.pop())
        }
    }

    let mut cx = noop_context();
    let mut ended = pin!(Fencing::new().stream(Items(vec![1])));
    assert_eq!(ended.as_mut().poll_next(&mut cx), Poll::Ready(Some(1)));
    for _ in 0..3 {
        assert_eq!(ended.as_mut().poll_next(&mut cx), Poll::Ready(None));
    }
    assert_eq!(ended.delivered(), 1);
    assert!(!ended.is_interrupted());

    let token = Token::new();
    let mut stopped = pin!(Fencing::new().token(&token).stream(Items(vec![3, 2])));
    assert_eq!(stopped.as_mut().poll_next(&mut cx), Poll::Ready(Some(2)));
    token.cancel();
    for _ in 0..3 {
        assert_eq!(stopped.as_mut().poll_next(&mut cx), Poll::Ready(None));
    }
    assert_eq!(stopped.delivered(), 1);
    assert!(stopped.is_interrupted());
}

#[tokio::test(start_paused = true)]
async fn bad_input_protect_outside_a_fence() {
    let token = Token::new();
    token.cancel();

    // Nothing to protect: no fence here, a binding is not a fence, and a
    // task spawned from a fenced body is not dropped by the fence.
    assert!(!protect().is_protecting());
    let bound = Fencing::new()
        .token(&token)
        .bind(async { protect().is_protecting() })
        .await;
    assert!(!bound);
    let spawned = Fencing::new()
        .run(async {
            tokio::spawn(async { protect().is_protecting() })
                .await
                .unwrap()
        })
        .await
        .unwrap();
    assert!(!spawned);

    // A guard that outlives its fence protects a fence that is gone:
    // dropping it later is harmless.
    let escaped = Fencing::new().run(async { protect() }).await.unwrap();
    assert!(escaped.is_protecting());
    drop(escaped);
}

#[tokio::test(start_paused = true)]
async fn bad_input_cancelled_on_an_empty_fencing() {
    let mut waited = hand(Fencing::new().cancelled());
    let mut inherited = hand(current().cancelled());
    let gate = Probe::default();
    let mut fenced = hand(Fencing::new().run(gate.body()));
    assert_pending!(waited.poll());
    assert_pending!(inherited.poll());
    assert_pending!(fenced.poll());

    time::advance(100 * YEAR).await;
    for woken in [waited.is_woken(), inherited.is_woken(), fenced.is_woken()] {
        assert!(!woken, "nothing can fire");
    }
    assert_pending!(waited.poll());
    assert_pending!(fenced.poll());
    gate.open();
    assert_eq!(assert_ready_ok!(fenced.poll()), "done");
    assert!(!fenced.is_cancelled());
}

#[test]
fn bad_input_on_cancel_hook_panics() {
    let token = Token::new();
    let child = token.child();
    let ran = Arc::new(AtomicUsize::new(0));
    let _panics = token.on_cancel(|_| panic!("hook blew up"));
    let r = ran.clone();
    let _counts = token.on_cancel(move |_| {
        r.fetch_add(1, SeqCst);
    });

    let payload = panic::catch_unwind(|| token.cancel_with("stop")).unwrap_err();
    assert_eq!(panic_text(&*payload), "hook blew up", "resumed from cancel");
    assert!(token.is_cancelled());
    assert_eq!(ran.load(SeqCst), 1, "the other hook ran");
    assert_eq!(
        child.reason().unwrap().message(),
        "stop",
        "children cancelled"
    );
    assert!(!token.cancel(), "no second panic: the hooks ran once");

    // Registered after the cancel, it runs at once: the panic comes out of
    // `on_cancel`.
    let payload = panic::catch_unwind(AssertUnwindSafe(|| {
        token.on_cancel(|_| panic!("late hook blew up")).detach();
    }))
    .unwrap_err();
    assert_eq!(panic_text(&*payload), "late hook blew up");
}

#[tokio::test(start_paused = true)]
async fn bad_input_policy_panics() {
    let token = Token::new();
    let fencing = Fencing::new()
        .token(&token)
        .code("stop")
        .policy(|_| panic!("policy blew up"));

    let mut fenced = hand(fencing.clone().run(pending::<()>()));
    assert_pending!(fenced.poll());
    token.cancel_with("stop");
    let err = assert_ready_err!(fenced.poll());
    assert!(err.cancelled_by("stop"), "accepted, as if it said `true`");
    assert_eq!(fenced.faults(), 1);
    assert_eq!(token.__waiter_count(), 0, "nothing stays armed");

    // Nothing is poisoned: the next fence consults it again, and again
    // accepts.
    let mut next = hand(fencing.run(async { "never" }));
    assert!(assert_ready_err!(next.poll()).cancelled_by("stop"));
    assert_eq!(next.faults(), 1);
}

#[tokio::test(start_paused = true)]
async fn bad_input_condition_check_fails() {
    // Every check fails, by `Err` then by a panic, in turn.
    let checks = Arc::new(AtomicUsize::new(0));
    let c = checks.clone();
    let fencing = Fencing::new()
        .condition(Duration::from_secs(1), move || {
            if c.fetch_add(1, SeqCst) % 2 == 0 {
                Err("probe down")
            } else {
                panic!("probe blew up")
            }
        })
        .code("probe");
    let mut fenced = hand(fencing.clone().run(pending::<()>()));
    assert_pending!(fenced.poll());
    for _ in 0..10 {
        time::advance(Duration::from_secs(1)).await;
        assert_pending!(fenced.poll(), "never fires");
    }
    assert_eq!(checks.load(SeqCst), 10);
    assert_eq!(fenced.faults(), 10);
    assert!(!fenced.is_cancelled());
    drop(fenced);

    // Fail-fast: the first failure is the reason.
    let mut fenced = hand(
        Fencing::new()
            .condition_fail_fast(Duration::from_secs(1), || -> bool {
                panic!("probe blew up")
            })
            .code("probe")
            .run(pending::<()>()),
    );
    assert_pending!(fenced.poll());
    time::advance(Duration::from_secs(1)).await;
    let err = assert_ready_err!(fenced.poll());
    assert!(err.cancelled_by("probe"));
    assert_eq!(err.reason().message(), "condition panicked: probe blew up");
    assert_eq!(fenced.faults(), 0);
}

/// A waker whose `wake` panics.
struct Exploding;

impl Wake for Exploding {
    fn wake(self: Arc<Self>) {
        panic!("waker blew up");
    }
}

#[test]
fn bad_input_waker_panics() {
    let token = Token::new();
    let child = token.child();
    let exploding = Waker::from(Arc::new(Exploding));
    let count = Arc::new(WakeCounter::default());
    let counting = Waker::from(count.clone());

    let mut first = pin!(token.cancelled());
    let mut second = pin!(token.cancelled());
    assert!(first
        .as_mut()
        .poll(&mut Context::from_waker(&exploding))
        .is_pending());
    assert!(second
        .as_mut()
        .poll(&mut Context::from_waker(&counting))
        .is_pending());
    let mut on_child = pin!(child.cancelled());
    assert!(on_child
        .as_mut()
        .poll(&mut Context::from_waker(&counting))
        .is_pending());

    let payload = panic::catch_unwind(AssertUnwindSafe(|| token.cancel_with("stop"))).unwrap_err();
    assert_eq!(panic_text(&*payload), "waker blew up");
    assert!(token.is_cancelled());
    // As for a panicking hook: the rest of the tree is still cancelled.
    assert_eq!(count.wakes(), 2, "the other waiters are woken");
    assert_eq!(
        child.reason().map(|r| r.message().to_owned()),
        Some("stop".to_owned()),
        "children follow parents"
    );
}
