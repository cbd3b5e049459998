//! A request's budget across three hops: A (HTTP, axum and
//! `fencing-tower`) calls B (tonic), which calls C (tonic). No hop passes
//! a deadline by hand: each reads its own from the request, and its
//! client layer sends what is left to the next.
//!
//! ```text
//! cargo run -p fencing-tonic --example chain
//! ```
//!
//! For each request it prints, per hop, the budget the hop received, what
//! it had left (less its margin), and what it answered: a budget that
//! shrinks at every hop, expiry reported as expiry at every hop, a budget
//! spent before a call that never goes on the wire, a client that goes
//! away, and a hop that shuts down.

mod hops;

use hops::{answer, ask, Chain, Event};
use std::time::Duration;
use tokio::sync::mpsc;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (events, mut seen) = mpsc::unbounded_channel();
    let chain = Chain::start(events).await;
    let budget = Some(Duration::from_millis(800));

    section("a budget of 800 ms; C answers at once");
    let mut a = ask(chain.a, "fast", budget).await;
    let status = answer(&mut a).await;
    report(&mut seen, &status).await;

    section("a budget of 800 ms; C is too slow");
    let mut a = ask(chain.a, "slow", budget).await;
    let status = answer(&mut a).await;
    report(&mut seen, &status).await;

    section("a budget of 800 ms; B spends it all before calling C");
    let mut a = ask(chain.a, "late", budget).await;
    let status = answer(&mut a).await;
    report(&mut seen, &status).await;

    section("the client goes away while C works");
    let a = ask(chain.a, "slow", Some(Duration::from_secs(60))).await;
    wait_for_c(&mut seen).await;
    drop(a);
    report(&mut seen, "(gone)").await;

    section("B shuts down while C works");
    let mut a = ask(chain.a, "slow", Some(Duration::from_secs(60))).await;
    wait_for_c(&mut seen).await;
    let drained = chain.b_drain.shutdown().await;
    let status = answer(&mut a).await;
    report(&mut seen, &status).await;
    println!(
        "   B's drain: {} finished, {} dropped",
        drained.finished(),
        drained.dropped()
    );
}

fn section(title: &str) {
    println!("\n== {title}");
}

async fn wait_for_c(seen: &mut mpsc::UnboundedReceiver<Event>) {
    let mut held = Vec::new();
    loop {
        let event = seen.recv().await.unwrap();
        let at_c = matches!(event, Event::Received { hop: "C", .. });
        held.push(event);
        if at_c {
            break;
        }
    }
    PENDING.with(|pending| pending.borrow_mut().extend(held));
}

thread_local! {
    static PENDING: std::cell::RefCell<Vec<Event>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Prints what each hop saw and did, once every hop has had its say.
async fn report(seen: &mut mpsc::UnboundedReceiver<Event>, status: &str) {
    // The last events (a hop's report of a call cut short) follow the
    // answer closely; a moment is plenty on loopback.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut events = PENDING.with(|pending| std::mem::take(&mut *pending.borrow_mut()));
    while let Ok(event) = seen.try_recv() {
        events.push(event);
    }
    for hop in ["A", "B", "C"] {
        let kind = if hop == "A" { "HTTP" } else { "tonic" };
        let mut line = format!("   {hop} {:<7}", format!("({kind})"));
        let mut seen_any = false;
        for event in &events {
            match event {
                Event::Received {
                    hop: h,
                    sent,
                    remaining,
                } if *h == hop => {
                    seen_any = true;
                    line += &format!(
                        "  received {:>10}  left {:>10}",
                        show(*sent),
                        show(*remaining)
                    );
                }
                Event::Answered { hop: h, answer } if *h == hop => {
                    line += &format!("  answered {answer}");
                }
                Event::Stopped {
                    hop: h,
                    codes,
                    answer,
                } if *h == hop => {
                    let answer = answer.as_deref().unwrap_or("nothing (caller gone)");
                    line += &format!("  stopped by {}: answered {answer}", codes.join(", "));
                }
                Event::Audited {
                    answer,
                    client_gone,
                } if hop == "A" => {
                    let gone = if *client_gone { ", to nobody" } else { "" };
                    line += &format!("  answered {answer}{gone}; audit written");
                }
                _ => {}
            }
        }
        if !seen_any {
            line += "  nothing reached it";
        }
        println!("{line}");
    }
    println!("   client: {status}");
}

fn show(budget: Option<Duration>) -> String {
    budget.map_or("-".into(), |budget| {
        format!("{:.1}ms", budget.as_secs_f64() * 1_000.0)
    })
}
