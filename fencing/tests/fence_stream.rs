//! Fenced streams: items flow until a trigger fires; afterwards the reasons
//! and the number of items delivered are known.
#![cfg(feature = "stream")]

use fencing::{current, Fencing, Token};
use futures_core::Stream;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// Yields `0, 1, 2, ...` at once, for ever, counting its polls.
struct Counter {
    next: usize,
    polls: Arc<AtomicUsize>,
}

impl Stream for Counter {
    type Item = usize;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<usize>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.next += 1;
        Poll::Ready(Some(self.next - 1))
    }
}

/// A stream fed by a channel; sets its flag when dropped.
struct Fed {
    rx: mpsc::UnboundedReceiver<u32>,
    dropped: Arc<AtomicBool>,
}

impl Stream for Fed {
    type Item = u32;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Fed {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

async fn next<S: Stream>(stream: &mut Pin<&mut S>) -> Option<S::Item> {
    poll_fn(|cx| stream.as_mut().poll_next(cx)).await
}

#[tokio::test(start_paused = true)]
async fn fenced_stream_items_flow_until_a_token_fires() {
    let stop = Token::new();
    let (tx, rx) = mpsc::unbounded_channel();
    let dropped = Arc::new(AtomicBool::new(false));
    let fed = Fed {
        rx,
        dropped: dropped.clone(),
    };
    let mut items = pin!(Fencing::new().token(&stop).code("stop").stream(fed));

    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert_eq!(next(&mut items).await, Some(1));
    assert_eq!(next(&mut items).await, Some(2));
    tokio::spawn({
        let stop = stop.clone();
        async move { stop.cancel_with("enough") }
    });
    assert_eq!(
        next(&mut items).await,
        None,
        "the stream ends when the token fires"
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "and the inner stream is dropped"
    );
    assert_eq!(items.delivered(), 2);
    assert!(items.is_interrupted());
    assert!(items.cancelled_by("stop"));
    assert_eq!(items.cancelled().unwrap().reason().message(), "enough");
    assert_eq!(next(&mut items).await, None, "it stays ended");
    assert_eq!(stop.__waiter_count(), 0, "nothing stays registered");
}

/// A fenced stream reports what its policy declined and the faults of the
/// user code it ran, as a fence does.
#[tokio::test(start_paused = true)]
async fn fenced_stream_reports_declined_reasons_and_faults() {
    let drain = Token::new();
    let stop = Token::new();
    let (tx, rx) = mpsc::unbounded_channel();
    let fed = Fed {
        rx,
        dropped: Arc::new(AtomicBool::new(false)),
    };
    let mut items = pin!(Fencing::new()
        .token(&drain)
        .code("drain")
        .token(&stop)
        .code("stop")
        .unless("drain", || true)
        .policy(|reason| {
            assert!(!reason.has_code("stop"), "a buggy policy");
            true
        })
        .stream(fed));

    tx.send(1).unwrap();
    assert_eq!(next(&mut items).await, Some(1));
    drain.cancel();
    tx.send(2).unwrap();
    assert_eq!(next(&mut items).await, Some(2), "the drain was declined");
    assert!(items.declined_by("drain"));
    assert_eq!(items.declined().len(), 1);
    assert_eq!(items.faults(), 0);

    tokio::spawn({
        let stop = stop.clone();
        async move { stop.cancel() }
    });
    assert_eq!(next(&mut items).await, None, "the panic accepted the stop");
    assert!(items.cancelled_by("stop"));
    assert_eq!(items.faults(), 1, "the policy's panic");
}

#[tokio::test(start_paused = true)]
async fn fenced_stream_an_always_ready_stream_stops_between_items() {
    let stop = Token::new();
    let polls = Arc::new(AtomicUsize::new(0));
    let counter = Counter {
        next: 0,
        polls: polls.clone(),
    };
    let mut items = pin!(Fencing::new().token(&stop).stream(counter));
    for expected in 0..5 {
        assert_eq!(next(&mut items).await, Some(expected));
    }
    stop.cancel();
    assert_eq!(next(&mut items).await, None);
    assert_eq!(items.delivered(), 5);
    assert_eq!(
        polls.load(Ordering::SeqCst),
        5,
        "not polled after the trigger"
    );
}

#[tokio::test(start_paused = true)]
async fn fenced_stream_a_timeout_gives_partial_results() {
    let (tx, rx) = mpsc::unbounded_channel();
    let fed = Fed {
        rx,
        dropped: Arc::new(AtomicBool::new(false)),
    };
    tokio::spawn(async move {
        for i in 0.. {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if tx.send(i).is_err() {
                break;
            }
        }
    });
    let mut items = pin!(Fencing::new()
        .timeout(Duration::from_millis(3_500))
        .code("budget")
        .stream(fed));
    let mut got = Vec::new();
    while let Some(item) = next(&mut items).await {
        got.push(item);
    }
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(items.delivered(), 3);
    let cancelled = items.cancelled().unwrap();
    assert!(cancelled.cancelled_by("budget") && cancelled.is_timeout());
}

#[tokio::test(start_paused = true)]
async fn fenced_stream_pre_fired_is_never_polled() {
    let stop = Token::new();
    stop.cancel();
    let polls = Arc::new(AtomicUsize::new(0));
    let counter = Counter {
        next: 0,
        polls: polls.clone(),
    };
    let mut items = pin!(Fencing::new().token(&stop).stream(counter));
    assert!(items.is_cancelled(), "inspect before polling");
    assert_eq!(next(&mut items).await, None);
    assert_eq!(polls.load(Ordering::SeqCst), 0);
    assert_eq!(items.delivered(), 0);
}

#[tokio::test(start_paused = true)]
async fn fenced_stream_that_ends_on_its_own_is_not_interrupted() {
    let (tx, rx) = mpsc::unbounded_channel();
    let fed = Fed {
        rx,
        dropped: Arc::new(AtomicBool::new(false)),
    };
    tx.send(7).unwrap();
    drop(tx);
    let mut items = pin!(Fencing::new().timeout(Duration::from_secs(5)).stream(fed));
    assert_eq!(next(&mut items).await, Some(7));
    assert_eq!(next(&mut items).await, None);
    assert!(!items.is_interrupted());
    assert!(items.cancelled().is_none());
    assert_eq!(items.delivered(), 1);
}

#[tokio::test(start_paused = true)]
async fn fenced_stream_polls_run_with_the_fencing_as_context() {
    struct Reads;
    impl Stream for Reads {
        type Item = Option<tokio::time::Instant>;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(Some(current().effective_deadline()))
        }
    }
    let fencing = Fencing::new().timeout(Duration::from_secs(9));
    let at = fencing.effective_deadline();
    let mut items = pin!(fencing.stream(Reads));
    assert_eq!(next(&mut items).await, Some(at));
}

/// Moves the paused clock by `d` without letting the runtime turn its
/// driver: `advance` moves the clock on its first poll, then yields. Timers
/// see the new time only when the driver next runs, as on a real clock
/// while a task never yields.
fn jump(d: Duration) {
    let mut advance = pin!(tokio::time::advance(d));
    let waker = futures_test::task::noop_waker();
    let _ = advance.as_mut().poll(&mut Context::from_waker(&waker));
}

/// A stream that runs a script: each poll takes the next step.
struct Script {
    steps: std::vec::IntoIter<Step>,
    guard: Option<fencing::ProtectGuard>,
    dropped: Arc<AtomicBool>,
}

enum Step {
    /// Takes a protection guard and yields the item.
    Protect(u32),
    /// Drops the guard and yields the item.
    Release(u32),
    Item(u32),
    Pending,
}

impl Stream for Script {
    type Item = u32;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<u32>> {
        match self.steps.next() {
            Some(Step::Protect(item)) => {
                self.guard = Some(fencing::protect());
                Poll::Ready(Some(item))
            }
            Some(Step::Release(item)) => {
                self.guard = None;
                Poll::Ready(Some(item))
            }
            Some(Step::Item(item)) => Poll::Ready(Some(item)),
            Some(Step::Pending) => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

fn script(steps: Vec<Step>) -> (Script, Arc<AtomicBool>) {
    let dropped = Arc::new(AtomicBool::new(false));
    let script = Script {
        steps: steps.into_iter(),
        guard: None,
        dropped: dropped.clone(),
    };
    (script, dropped)
}

/// Issue 11, item 2 (rule 17): a guard taken by the stream defers the drop,
/// between items and while pending alike; the stream is dropped at the
/// first poll after the guard goes.
#[tokio::test(start_paused = true)]
async fn stream_protect_defers_drop() {
    let stop = Token::new();
    let (inner, dropped) = script(vec![
        Step::Protect(1),
        Step::Item(2),
        Step::Pending,
        Step::Release(3),
        Step::Item(4),
    ]);
    let mut items = pin!(Fencing::new().token(&stop).code("stop").stream(inner));
    let waker = futures_test::task::noop_waker();
    let mut cx = Context::from_waker(&waker);

    assert_eq!(items.as_mut().poll_next(&mut cx), Poll::Ready(Some(1)));
    stop.cancel();
    assert_eq!(
        items.as_mut().poll_next(&mut cx),
        Poll::Ready(Some(2)),
        "a guard is alive: not dropped between items"
    );
    assert!(
        items.as_mut().poll_next(&mut cx).is_pending(),
        "nor while pending"
    );
    assert!(!dropped.load(Ordering::SeqCst));
    assert_eq!(
        items.as_mut().poll_next(&mut cx),
        Poll::Ready(Some(3)),
        "the item that releases the guard is delivered"
    );
    assert_eq!(items.as_mut().poll_next(&mut cx), Poll::Ready(None));
    assert!(
        dropped.load(Ordering::SeqCst),
        "dropped once the guard went"
    );
    assert_eq!(items.delivered(), 3);
    assert!(items.is_interrupted());
    assert!(items.cancelled_by("stop"));
}

/// Issue 11, item 2 (rule 18): with a grace period the stream is told
/// (`current().is_cancelled()` in its polls) and may end by itself; if it
/// runs on, it is dropped when the grace period ends.
#[tokio::test(start_paused = true)]
async fn stream_grace_is_cooperative() {
    /// Yields whether its context is cancelled; ends after the second time
    /// it sees it, unless `stubborn`.
    struct Told {
        seen: usize,
        stubborn: bool,
    }
    impl Stream for Told {
        type Item = bool;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<bool>> {
            let told = current().is_cancelled();
            self.seen += usize::from(told);
            if self.seen > 1 && !self.stubborn {
                return Poll::Ready(None);
            }
            Poll::Ready(Some(told))
        }
    }

    let stop = Token::new();
    let fencing = Fencing::new()
        .token(&stop)
        .code("stop")
        .grace(Duration::from_secs(10));
    let mut items = pin!(fencing.clone().stream(Told {
        seen: 0,
        stubborn: false
    }));
    assert_eq!(next(&mut items).await, Some(false));
    stop.cancel();
    assert_eq!(next(&mut items).await, Some(true), "told, not dropped");
    assert_eq!(next(&mut items).await, None, "and it ends by itself");
    assert!(!items.is_interrupted());
    assert!(items.is_cancelled() && items.cancelled_by("stop"));
    assert_eq!(items.delivered(), 2);

    // A stream that runs on is dropped when the grace period ends.
    let stop = Token::new();
    let mut items = pin!(Fencing::new()
        .token(&stop)
        .code("stop")
        .grace(Duration::from_secs(10))
        .stream(Told {
            seen: 0,
            stubborn: true
        }));
    assert_eq!(next(&mut items).await, Some(false));
    stop.cancel();
    for _ in 0..5 {
        assert_eq!(next(&mut items).await, Some(true));
        jump(Duration::from_millis(1_999));
    }
    assert_eq!(next(&mut items).await, Some(true), "at 9.995 s");
    jump(Duration::from_millis(5));
    assert_eq!(next(&mut items).await, None, "dropped at 10 s");
    assert!(items.is_interrupted());
    assert_eq!(items.delivered(), 7);
}

/// Issue 11, item 3: a stream that was pending once (so the fence armed its
/// timer) and is then always ready stops at its deadline, although the
/// runtime never turns its timer driver meanwhile.
#[tokio::test(start_paused = true)]
async fn stream_ready_after_pending_stops_at_deadline() {
    let mut steps = vec![Step::Pending];
    steps.extend((0..100).map(Step::Item));
    let (inner, dropped) = script(steps);
    let mut items = pin!(Fencing::new()
        .timeout(Duration::from_millis(20))
        .code("budget")
        .stream(inner));
    let waker = futures_test::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(
        items.as_mut().poll_next(&mut cx).is_pending(),
        "timer armed"
    );

    let mut delivered = 0;
    while let Poll::Ready(Some(_)) = items.as_mut().poll_next(&mut cx) {
        delivered += 1;
        // Each item takes 1 ms of the clock.
        jump(Duration::from_millis(1));
    }
    assert_eq!(
        delivered, 20,
        "a 20 ms budget at 1 ms an item: {delivered} items delivered"
    );
    assert!(dropped.load(Ordering::SeqCst));
    assert!(items.is_interrupted());
    assert!(items.cancelled_by("budget"));
}
