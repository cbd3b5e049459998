//! The chain A (HTTP) → B (tonic) → C (tonic) of the `chain` example, on
//! loopback and a paused clock: the budget shrinks at every hop, expiry is
//! reported as expiry at every hop, a spent budget never goes on the wire,
//! a client that goes away cancels every hop behind it, and a hop that
//! shuts down is `503` at the front.
//!
//! The clock is frozen while requests travel, so the budgets are exact;
//! where the budget must run out, it moves again once C has the call.

mod support;

#[path = "../examples/chain/hops.rs"]
mod hops;

use fencing_tonic::codes::{CLIENT_DISCONNECTED, DEADLINE};
use hops::{answer, ask, Chain, Event};
use std::time::Duration;
use support::{freeze_clock, next, within, LIMIT};
use tokio::sync::mpsc;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// Receives events until one matches `last`; returns them all, in order.
async fn until(
    events: &mut mpsc::UnboundedReceiver<Event>,
    last: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let event = next(events).await;
        let done = last(&event);
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// The budget each hop received and had left, A, B and C, in that order.
fn budgets(events: &[Event]) -> Vec<(&'static str, Option<Duration>, Option<Duration>)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Received {
                hop,
                sent,
                remaining,
            } => Some((*hop, *sent, *remaining)),
            _ => None,
        })
        .collect()
}

fn answered(events: &[Event], at: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Answered { hop, answer } if *hop == at => Some(answer.clone()),
            Event::Stopped {
                hop,
                answer: Some(answer),
                ..
            } if *hop == at => Some(answer.clone()),
            _ => None,
        })
        .collect()
}

fn stopped<'a>(events: &'a [Event], at: &str) -> Option<(&'a [String], &'a Option<String>)> {
    events.iter().find_map(|event| match event {
        Event::Stopped { hop, codes, answer } if *hop == at => Some((&codes[..], answer)),
        _ => None,
    })
}

fn is(hop: &'static str) -> impl Fn(&Event) -> bool {
    move |event| match event {
        Event::Received { hop: h, .. }
        | Event::Answered { hop: h, .. }
        | Event::Stopped { hop: h, .. } => *h == hop,
        Event::Audited { .. } => hop == "A",
    }
}

#[tokio::test(start_paused = true)]
async fn budget_propagates_a_b_c() {
    let (tx, mut events) = mpsc::unbounded_channel();
    let chain = Chain::start(tx).await;
    let _frozen = freeze_clock();

    let mut a = within(LIMIT, ask(chain.a, "fast", Some(MS(800)))).await;
    assert_eq!(within(LIMIT, answer(&mut a)).await, "HTTP/1.1 200 OK");
    let seen = until(&mut events, |e| matches!(e, Event::Audited { .. })).await;

    // Each hop is sent what its caller had left, rounded up, and has that
    // less its server's margin (5 ms); time stands still in between.
    assert_eq!(
        budgets(&seen),
        [
            ("A", Some(MS(800)), Some(MS(800))),
            ("B", Some(MS(800)), Some(MS(795))),
            ("C", Some(MS(795)), Some(MS(790))),
        ]
    );
    let left: Vec<_> = budgets(&seen)
        .iter()
        .map(|(_, _, left)| left.unwrap())
        .collect();
    assert!(Duration::ZERO < left[2] && left[2] <= left[1] && left[1] <= left[0]);
    assert_eq!(answered(&seen, "C"), ["OK"]);
    assert_eq!(answered(&seen, "B"), ["OK"]);
}

#[tokio::test(start_paused = true)]
async fn expiry_at_c_is_deadline_exceeded_at_every_hop() {
    let (tx, mut events) = mpsc::unbounded_channel();
    let chain = Chain::start(tx).await;

    let frozen = freeze_clock();
    let mut a = within(LIMIT, ask(chain.a, "slow", Some(MS(800)))).await;
    let mut seen = until(&mut events, |e| {
        matches!(e, Event::Received { hop: "C", .. })
    })
    .await;
    drop(frozen);

    // C's deadline comes first (two margins before A's): C answers
    // DEADLINE_EXCEEDED, B passes it on (or its own deadline, 5 ms later,
    // says the same), and A answers 504.
    assert_eq!(
        within(LIMIT, answer(&mut a)).await,
        "HTTP/1.1 504 Gateway Timeout"
    );
    seen.extend(
        until(&mut events, |e| {
            is("B")(e) && !matches!(e, Event::Received { .. })
        })
        .await,
    );
    let (codes, answer) = stopped(&seen, "C").expect("C's layer stopped the call");
    assert_eq!(codes, [DEADLINE]);
    assert_eq!(answer.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(answered(&seen, "B"), ["DeadlineExceeded"]);
}

#[tokio::test(start_paused = true)]
async fn spent_budget_at_b_never_reaches_c() {
    let (tx, mut events) = mpsc::unbounded_channel();
    let chain = Chain::start(tx).await;

    let frozen = freeze_clock();
    let mut a = within(LIMIT, ask(chain.a, "late", Some(MS(800)))).await;
    let mut seen = until(&mut events, |e| {
        matches!(e, Event::Received { hop: "B", .. })
    })
    .await;
    drop(frozen);

    // B's commit overruns its budget; its call to C is refused before
    // anything is sent.
    assert_eq!(
        within(LIMIT, answer(&mut a)).await,
        "HTTP/1.1 504 Gateway Timeout"
    );
    seen.extend(
        until(&mut events, |e| {
            matches!(e, Event::Answered { hop: "B", .. })
        })
        .await,
    );
    assert_eq!(answered(&seen, "B"), ["DeadlineExceeded"]);
    // A round trip through the whole chain: had C been called the first
    // time, it would have said so before it says so the second time.
    let _frozen = freeze_clock();
    let mut a = within(LIMIT, ask(chain.a, "fast", Some(MS(800)))).await;
    assert_eq!(within(LIMIT, answer(&mut a)).await, "HTTP/1.1 200 OK");
    seen.extend(
        until(&mut events, |e| {
            matches!(e, Event::Answered { hop: "C", .. })
        })
        .await,
    );
    let at_c: Vec<_> = seen.iter().filter(|e| is("C")(e)).collect();
    assert_eq!(at_c.len(), 2, "only the second request reached C: {at_c:?}");
}

#[tokio::test(start_paused = true)]
async fn disconnect_at_a_cancels_b_and_c() {
    let (tx, mut events) = mpsc::unbounded_channel();
    let chain = Chain::start(tx).await;
    let _frozen = freeze_clock();

    let a = within(LIMIT, ask(chain.a, "slow", Some(Duration::from_secs(60)))).await;
    let mut seen = until(&mut events, |e| {
        matches!(e, Event::Received { hop: "C", .. })
    })
    .await;
    drop(a); // the client goes away

    // A's handler sees why its call to B ended, and writes its audit all
    // the same; B and C see their calls cancelled by the client going away.
    seen.extend(until(&mut events, |e| matches!(e, Event::Audited { .. })).await);
    let audited = seen.iter().find_map(|e| match e {
        Event::Audited {
            answer,
            client_gone,
        } => Some((answer.clone(), *client_gone)),
        _ => None,
    });
    assert_eq!(audited, Some(("499".into(), true)));
    for hop in ["B", "C"] {
        if stopped(&seen, hop).is_none() {
            seen.extend(
                until(&mut events, |e| {
                    is(hop)(e) && matches!(e, Event::Stopped { .. })
                })
                .await,
            );
        }
        let (codes, answer) = stopped(&seen, hop).unwrap();
        assert_eq!(codes, [CLIENT_DISCONNECTED], "{hop}");
        assert_eq!(*answer, None, "{hop}: nobody to answer");
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_of_b_is_503_at_a() {
    let (tx, mut events) = mpsc::unbounded_channel();
    let chain = Chain::start(tx).await;
    let _frozen = freeze_clock();

    let mut a = within(LIMIT, ask(chain.a, "slow", Some(Duration::from_secs(60)))).await;
    let mut seen = until(&mut events, |e| {
        matches!(e, Event::Received { hop: "C", .. })
    })
    .await;
    let drained = within(LIMIT, chain.b_drain.shutdown()).await;
    assert_eq!((drained.finished(), drained.dropped()), (1, 0));

    // B's call to C stops with B's shutdown: B answers UNAVAILABLE, which
    // A maps to 503; C sees its call cancelled.
    assert_eq!(
        within(LIMIT, answer(&mut a)).await,
        "HTTP/1.1 503 Service Unavailable"
    );
    seen.extend(until(&mut events, |e| matches!(e, Event::Audited { .. })).await);
    assert_eq!(answered(&seen, "B"), ["Unavailable"]);
    if stopped(&seen, "C").is_none() {
        seen.extend(
            until(&mut events, |e| {
                is("C")(e) && matches!(e, Event::Stopped { .. })
            })
            .await,
        );
    }
    assert_eq!(stopped(&seen, "C").unwrap().0, [CLIENT_DISCONNECTED]);
}
