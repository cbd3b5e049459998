//! A request handler fenced by four triggers at once: a budget, a shutdown
//! token, a client that may go away, and a per-call deadline. Each scenario
//! below makes a different trigger fire, and the fence reports which one, by
//! its code.
//!
//! Run with `cargo run --example demo`. It takes well under a second of real
//! time.

use fencing::{Cancelled, Fencing, Token};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::{sleep, Instant};

/// The expensive, interruptible part: it takes `work` to produce a value.
async fn fetch_and_transform(work: Duration) -> &'static str {
    sleep(work).await;
    "report.pdf"
}

/// What the handler does with the outcome: every branch knows why.
fn answer(outcome: Result<&'static str, Cancelled>) -> String {
    match outcome {
        Ok(value) => format!("200 OK: {value}"),
        Err(cancelled) if cancelled.cancelled_by("shutdown") => {
            format!("503 draining ({cancelled})")
        }
        Err(cancelled) if cancelled.cancelled_by("disconnect") => {
            format!("499 client gone, nothing sent ({cancelled})")
        }
        Err(cancelled) if cancelled.is_timeout() || cancelled.is_deadline() => {
            format!("504 out of time ({cancelled})")
        }
        Err(cancelled) => format!("500 ({cancelled})"),
    }
}

struct Scenario {
    name: &'static str,
    work: Duration,
    shutdown_after: Option<Duration>,
    disconnect_after: Option<Duration>,
    call_deadline: Duration,
}

async fn serve(scenario: &Scenario) -> String {
    let shutdown = Token::new();
    let (client_tx, client_rx) = oneshot::channel::<()>();

    // The boundary declares every trigger once, each with a code.
    let fencing = Fencing::new()
        .timeout(Duration::from_millis(120))
        .code("budget")
        .token(&shutdown)
        .code("shutdown")
        .future(client_rx)
        .code("disconnect")
        .deadline(Instant::now() + scenario.call_deadline)
        .code("call-deadline");

    // Somebody else, elsewhere, pulls the triggers.
    if let Some(after) = scenario.shutdown_after {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            sleep(after).await;
            shutdown.cancel_with("received SIGTERM");
        });
    }
    let _client = match scenario.disconnect_after {
        Some(after) => {
            tokio::spawn(async move {
                sleep(after).await;
                drop(client_tx);
            });
            None
        }
        None => Some(client_tx),
    };

    answer(fencing.run(fetch_and_transform(scenario.work)).await)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let ms = Duration::from_millis;
    let scenarios = [
        Scenario {
            name: "fast request",
            work: ms(10),
            shutdown_after: None,
            disconnect_after: None,
            call_deadline: ms(500),
        },
        Scenario {
            name: "slow request",
            work: ms(400),
            shutdown_after: None,
            disconnect_after: None,
            call_deadline: ms(500),
        },
        Scenario {
            name: "shutdown mid-request",
            work: ms(400),
            shutdown_after: Some(ms(30)),
            disconnect_after: None,
            call_deadline: ms(500),
        },
        Scenario {
            name: "client hangs up",
            work: ms(400),
            shutdown_after: None,
            disconnect_after: Some(ms(20)),
            call_deadline: ms(500),
        },
        Scenario {
            name: "tight upstream deadline",
            work: ms(400),
            shutdown_after: None,
            disconnect_after: None,
            call_deadline: ms(40),
        },
    ];

    for scenario in &scenarios {
        let started = Instant::now();
        let answer = serve(scenario).await;
        println!(
            "{:<24} after {:>4} ms -> {answer}",
            scenario.name,
            started.elapsed().as_millis()
        );
    }
}
