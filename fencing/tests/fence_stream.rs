//! Fenced streams: items flow until a trigger fires; afterwards the reasons
//! and the number of items delivered are known.
#![cfg(feature = "stream")]

use fencing::{current, Fencing, Token};
use futures_core::Stream;
use std::future::poll_fn;
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
