//! OS signals, raised for real at this test process with `kill(1)`. A test
//! binary of its own: registering a listener changes the process's signal
//! dispositions. Each test uses signals no other test raises.
#![cfg(all(unix, feature = "signal"))]

use fencing::{Fencing, OsSignal, ReasonKind, Shutdown};
use std::future::pending;
use std::process::Command;
use std::time::Duration;

fn raise(signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &std::process::id().to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success());
}

#[tokio::test(flavor = "current_thread")]
async fn signal_trigger_fires_with_the_signal_name() {
    let fenced = tokio::spawn(
        Fencing::new()
            .signal(OsSignal::Hangup)
            .code("reload")
            .run(pending::<()>()),
    );
    // On this single thread the fence runs, and registers its listener, at
    // the first yield.
    tokio::task::yield_now().await;
    raise("HUP");
    let err = fenced.await.unwrap().unwrap_err();
    assert!(err.cancelled_by("reload"));
    assert!(err.is_signal());
    assert_eq!(err.reason().kind(), ReasonKind::Signal);
    assert_eq!(err.reason().message(), "received SIGHUP");
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_escalation_by_a_second_signal() {
    let shutdown = Shutdown::listen(
        [OsSignal::Terminate, OsSignal::Quit],
        Some(Duration::from_secs(3600)),
    )
    .expect("signals register");
    let work = tokio::spawn(
        Fencing::new()
            .token(&shutdown.token())
            .code("shutdown")
            .run(pending::<()>()),
    );
    tokio::task::yield_now().await;
    assert!(!shutdown.token().is_cancelled());

    raise("TERM");
    let graceful = shutdown.token().cancelled_owned().await;
    assert_eq!(graceful.message(), "received SIGTERM");
    let err = work.await.unwrap().unwrap_err();
    assert!(err.cancelled_by("shutdown"));
    assert!(
        !shutdown.hard_token().is_cancelled(),
        "one signal is graceful"
    );

    raise("QUIT");
    let hard = shutdown.hard_token().cancelled_owned().await;
    assert_eq!(hard.message(), "received SIGQUIT again");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shutdown_escalation_by_time_after_the_first_signal() {
    let shutdown = Shutdown::listen([OsSignal::Interrupt], Some(Duration::from_secs(30)))
        .expect("signals register");
    raise("INT");
    shutdown.token().cancelled_owned().await;
    let first = tokio::time::Instant::now();
    let hard = shutdown.hard_token().cancelled_owned().await;
    assert_eq!(hard.message(), "shutdown escalated after 30s");
    assert_eq!(first.elapsed(), Duration::from_secs(30));
}
