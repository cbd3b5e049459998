//! Issue 12: shielded and spawned work at the process's exit. Such tasks are
//! tokio tasks like any other, dropped wherever they are when the runtime
//! shuts down (when `main` returns); tracked with tokio-util's
//! `TaskTracker`, they are waited for, with a bound, and what outlasts the
//! bound is counted before the runtime drops it.
#![cfg(feature = "rt")]

use fencing::{current, shield, Fencing, Token};
use std::future::pending;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, timeout, Instant};
use tokio_util::task::TaskTracker;

/// How long the exit waits for tracked work.
const BOUND: Duration = Duration::from_secs(5);

/// Sets its flag when dropped: the task holding it was dropped or ended.
struct OnDrop(Arc<AtomicBool>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// A handler stopped by the shutdown shields an audit write and spawns a
/// flush, both tracked; the exit closes the tracker and waits for it,
/// bounded, and both records are there when the wait ends, at the time the
/// slower one took, not at the bound.
#[tokio::test(start_paused = true)]
async fn shielded_work_drained_at_shutdown() {
    let tracker = TaskTracker::new();
    let shutdown = Token::new();
    let (records, mut recorded) = mpsc::unbounded_channel();
    let (started_tx, started) = oneshot::channel();
    let request = Fencing::new()
        .timeout(Duration::from_secs(30))
        .code("budget")
        .token(&shutdown)
        .code("shutdown");
    let began = Instant::now();

    let handler = tokio::spawn(request.run({
        let tracker = tracker.clone();
        async move {
            let audit = records.clone();
            let audited = shield(tracker.track_future(async move {
                sleep(Duration::from_secs(1)).await; // the audit write
                audit.send(("audit", Instant::now())).unwrap();
            }));
            let flushed = fencing::spawn(tracker.track_future(async move {
                // Spawned work keeps the context, and can see the shutdown.
                current().cancelled().await;
                sleep(Duration::from_secs(2)).await; // the flush
                records.send(("flush", Instant::now())).unwrap();
            }));
            started_tx.send(()).unwrap();
            audited.await;
            let _ = flushed.await;
            pending::<()>().await
        }
    }));
    started.await.unwrap();
    assert_eq!(tracker.len(), 2, "both tasks are tracked");

    shutdown.cancel_with("SIGTERM");
    let cancelled = handler.await.unwrap().unwrap_err();
    assert!(cancelled.cancelled_by("shutdown"), "{cancelled}");
    assert!(recorded.try_recv().is_err(), "nothing recorded yet");

    // The exit: no more tracked work, then wait for what is left, bounded.
    tracker.close();
    timeout(BOUND, tracker.wait())
        .await
        .expect("the tracked work ends within the bound");
    assert_eq!(
        began.elapsed(),
        Duration::from_secs(2),
        "no longer than it took"
    );
    assert!(tracker.is_empty());
    let mut seen = Vec::new();
    while let Ok(record) = recorded.try_recv() {
        seen.push(record);
    }
    assert_eq!(
        seen,
        [
            ("audit", began + Duration::from_secs(1)),
            ("flush", began + Duration::from_secs(2)),
        ],
        "both records were written before the wait ended"
    );
}

/// Tracked work that outlasts the bound is counted (`len()`) when the wait
/// gives up, and dropped, not finished, when the runtime shuts down, as it
/// would be when `main` returns; untracked, it would be dropped the same
/// way with nobody knowing.
#[test]
fn shielded_work_past_the_bound_is_counted_and_dropped_at_exit() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let tracker = TaskTracker::new();

    let left = runtime.block_on({
        let (dropped, finished, tracker) = (dropped.clone(), finished.clone(), tracker.clone());
        async move {
            let shutdown = Token::new();
            let (started_tx, started) = oneshot::channel();
            let tracked = tracker.clone();
            let handler = tokio::spawn(Fencing::new().token(&shutdown).run(async move {
                let audit = shield(tracked.track_future(async move {
                    let _guard = OnDrop(dropped);
                    started_tx.send(()).unwrap();
                    sleep(BOUND * 2).await; // too slow for the bound
                    finished.store(true, SeqCst);
                }));
                audit.await;
            }));
            started.await.unwrap();
            shutdown.cancel();
            assert!(handler.await.unwrap().is_err());

            let began = Instant::now();
            tracker.close();
            assert!(
                timeout(BOUND, tracker.wait()).await.is_err(),
                "the wait gives up at the bound"
            );
            assert_eq!(began.elapsed(), BOUND);
            tracker.len()
        }
    });
    assert_eq!(left, 1, "one piece of work outlasted the bound");
    assert!(!dropped.load(SeqCst), "still running when the wait gave up");

    drop(runtime); // `main` returns
    assert!(dropped.load(SeqCst), "dropped by the runtime's shutdown");
    assert!(!finished.load(SeqCst), "and never finished");
    assert!(tracker.is_empty(), "its tracking ended with it");
}
