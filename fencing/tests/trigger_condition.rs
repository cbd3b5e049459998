//! Polled conditions and AND composition.

use fencing::{Fencing, ReasonKind, Token};
use std::future::pending;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{advance, Instant};
use tokio_test::{assert_pending, assert_ready, task};

fn counting(true_on: u32) -> (Arc<AtomicU32>, impl FnMut() -> bool + Send + 'static) {
    let checks = Arc::new(AtomicU32::new(0));
    let c = checks.clone();
    (checks, move || {
        c.fetch_add(1, Ordering::SeqCst) + 1 >= true_on
    })
}

#[tokio::test(start_paused = true)]
async fn condition_trigger_true_on_the_third_check_fires_at_the_third_interval() {
    let (checks, predicate) = counting(3);
    let fencing = Fencing::new()
        .condition(Duration::from_millis(100), predicate)
        .code("cond");
    let mut fenced = task::spawn(fencing.run(pending::<()>()));
    assert_pending!(fenced.poll());
    assert_eq!(
        checks.load(Ordering::SeqCst),
        0,
        "the first check is one interval in"
    );

    // Each tick wakes the fence, whose poll evaluates the predicate.
    for _ in 0..2 {
        advance(Duration::from_millis(100)).await;
        assert!(fenced.is_woken());
        assert_pending!(fenced.poll());
    }
    assert_eq!(checks.load(Ordering::SeqCst), 2);

    advance(Duration::from_millis(99)).await;
    assert_pending!(fenced.poll(), "between the 2nd and 3rd check");
    advance(Duration::from_millis(1)).await;
    assert!(fenced.is_woken());
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert_eq!(checks.load(Ordering::SeqCst), 3);
    assert!(err.cancelled_by("cond"));
    assert_eq!(err.reason().kind(), ReasonKind::Condition);
    assert_eq!(err.reason().message(), "condition met");
}

#[tokio::test(start_paused = true)]
async fn condition_trigger_a_timeout_beats_a_slower_condition() {
    let (checks, predicate) = counting(3);
    let started = Instant::now();
    let err = Fencing::new()
        .condition(Duration::from_millis(100), predicate)
        .code("cond")
        .timeout(Duration::from_millis(150))
        .code("budget")
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(150));
    assert!(err.cancelled_by("budget"));
    assert!(!err.cancelled_by("cond"));
    assert_eq!(checks.load(Ordering::SeqCst), 1);
}

#[test]
#[should_panic(expected = "a condition's interval must be greater than zero")]
fn condition_trigger_a_zero_interval_is_rejected() {
    let _ = Fencing::new().condition(Duration::ZERO, || true);
}

#[test]
#[should_panic(expected = "a condition's interval must be greater than zero")]
fn condition_trigger_a_zero_interval_is_rejected_async() {
    let _ = Fencing::new().condition_async(Duration::ZERO, || async { true });
}

#[tokio::test(start_paused = true)]
async fn condition_trigger_fail_fast_a_panicking_predicate_fires_with_its_message() {
    let err = Fencing::new()
        .condition_fail_fast(Duration::from_secs(1), || -> bool {
            panic!("sensor offline")
        })
        .code("sensor")
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert!(err.cancelled_by("sensor"));
    assert_eq!(err.reason().message(), "condition panicked: sensor offline");
}

#[tokio::test(start_paused = true)]
async fn condition_trigger_fail_fast_a_failing_predicate_fires_with_the_error() {
    let err = Fencing::new()
        .condition_fail_fast(Duration::from_secs(1), || Err::<bool, _>("no data"))
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(err.reason().message(), "condition failed: no data");
}

#[tokio::test(start_paused = true)]
async fn condition_trigger_async_predicate_and_its_panic() {
    let checks = Arc::new(AtomicU32::new(0));
    let c = checks.clone();
    let started = Instant::now();
    let err = Fencing::new()
        .condition_async(Duration::from_millis(10), move || {
            let c = c.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                c.fetch_add(1, Ordering::SeqCst) + 1 >= 4
            }
        })
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(checks.load(Ordering::SeqCst), 4);
    assert!(started.elapsed() >= Duration::from_millis(40));
    assert_eq!(err.reason().kind(), ReasonKind::Condition);

    let err = Fencing::new()
        .condition_async_fail_fast(Duration::from_millis(10), || async {
            tokio::task::yield_now().await;
            panic!("probe crashed");
            #[allow(unreachable_code)]
            false
        })
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(err.reason().message(), "condition panicked: probe crashed");
}

/// A check that fails, by `Err` or by a panic, does not fire the condition:
/// it is a fault of the fence that ran it, and the condition keeps polling
/// until it is met. Declared fail-fast, the first failure fires it.
/// The check of a shared condition may run in the body's own wait on the
/// context (the two-phase idiom: `current().cancelled()` during a grace
/// period); its failures still count in the fence around the body.
#[tokio::test(start_paused = true)]
async fn condition_faults_count_when_the_body_waits_on_the_context() {
    let fencing = Fencing::new()
        .condition(Duration::from_secs(1), || Err::<bool, _>("probe down"))
        .code("probe")
        .timeout(Duration::from_millis(4_500))
        .code("budget");
    let mut fenced = std::pin::pin!(fencing.run(async { fencing::current().cancelled().await }));
    let seen = (&mut fenced).await.expect("the body completes first");
    assert!(seen.cancelled_by("budget"), "the body saw the budget");
    assert_eq!(fenced.faults(), 4, "the checks at 1, 2, 3 and 4 s");
}

#[tokio::test(start_paused = true)]
async fn condition_error_keeps_polling() {
    let checks = Arc::new(AtomicU32::new(0));
    let c = checks.clone();
    let fencing = Fencing::new()
        .condition(Duration::from_secs(1), move || {
            match c.fetch_add(1, Ordering::SeqCst) + 1 {
                1 | 2 => Err("probe timed out"),
                3 => panic!("probe crashed"),
                4 => Ok(false),
                _ => Ok(true),
            }
        })
        .code("probe");
    let mut fenced = task::spawn(Box::pin(fencing.run(pending::<()>())));
    assert_pending!(fenced.poll());
    for (check, faults) in [(1, 1), (2, 2), (3, 3), (4, 3)] {
        advance(Duration::from_secs(1)).await;
        assert!(fenced.is_woken());
        assert_pending!(fenced.poll(), "check {check} does not fire it");
        assert_eq!(checks.load(Ordering::SeqCst), check);
        assert_eq!(fenced.faults(), faults, "after check {check}");
    }
    advance(Duration::from_secs(1)).await;
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(err.cancelled_by("probe"));
    assert_eq!(err.reason().message(), "condition met");
    assert_eq!(fenced.faults(), 3);

    // The async form keeps polling the same way; fail-fast, the first
    // failure fires.
    let checks = Arc::new(AtomicU32::new(0));
    let c = checks.clone();
    let mut fenced = Box::pin(
        Fencing::new()
            .condition_async(Duration::from_secs(1), move || {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n < 3 {
                        Err("down")
                    } else {
                        Ok(true)
                    }
                }
            })
            .run(pending::<()>()),
    );
    let started = Instant::now();
    let err = (&mut fenced).await.unwrap_err();
    assert_eq!(err.reason().message(), "condition met");
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(fenced.faults(), 2);

    let mut fenced = Box::pin(
        Fencing::new()
            .condition_fail_fast(Duration::from_secs(1), || Err::<bool, _>("down"))
            .run(pending::<()>()),
    );
    let started = Instant::now();
    let err = (&mut fenced).await.unwrap_err();
    assert_eq!(err.reason().message(), "condition failed: down");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(
        fenced.faults(),
        0,
        "a failure that fires is the reason, no fault"
    );
}

#[tokio::test(start_paused = true)]
async fn condition_trigger_is_not_evaluated_while_no_fence_waits() {
    let (checks, predicate) = counting(u32::MAX);
    let fencing = Fencing::new().condition(Duration::from_millis(10), predicate);
    advance(Duration::from_secs(1)).await;
    assert_eq!(checks.load(Ordering::SeqCst), 0);
    let done = fencing.run(async { 1 }).await;
    assert_eq!(done.unwrap(), 1);
    assert_eq!(checks.load(Ordering::SeqCst), 0, "a ready body never waits");
}

#[tokio::test(start_paused = true)]
async fn all_of_fires_only_when_every_part_has_fired() {
    let data = Token::new();
    let fencing = Fencing::new()
        .all_of([
            Fencing::new().timeout(Duration::from_secs(1)).code("min"),
            Fencing::new().token(&data).code("data"),
        ])
        .code("both");
    let mut fenced = task::spawn(fencing.run(pending::<()>()));
    assert_pending!(fenced.poll());
    advance(Duration::from_secs(2)).await;
    assert_pending!(fenced.poll(), "the time part alone is not enough");

    data.cancel_with("loaded");
    assert!(fenced.is_woken());
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(err.cancelled_by("both"));
    assert_eq!(err.reason().kind(), ReasonKind::AllOf);
    assert_eq!(
        err.reason().message(),
        "all of: min: timed out after 1s; data: loaded"
    );
}

#[tokio::test(start_paused = true)]
async fn all_of_time_triggers_inside_work() {
    let data = Token::new();
    data.cancel();
    let started = Instant::now();
    let err = Fencing::new()
        .all_of([
            Fencing::new().timeout(Duration::from_millis(500)),
            Fencing::new().token(&data),
            Fencing::new().condition(Duration::from_millis(300), || true),
        ])
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(500),
        "the last part to fire"
    );
    assert_eq!(err.reasons().len(), 1);
    assert!(err
        .reason()
        .message()
        .starts_with("all of: timed out after 500ms; "));
}

#[tokio::test(start_paused = true)]
async fn all_of_nothing_fires_at_once() {
    let started = std::sync::atomic::AtomicBool::new(false);
    let err = Fencing::new()
        .all_of([])
        .run(async { started.store(true, Ordering::SeqCst) })
        .await
        .unwrap_err();
    assert_eq!(err.reason().message(), "all of: ");
    assert!(!started.load(Ordering::SeqCst));
}
