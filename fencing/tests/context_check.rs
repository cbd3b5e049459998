//! Reading the context from synchronous code: `Fencing::check` (Go's
//! `ctx.Err()`) and `Fencing::in_scope` (a binding for a closure).

use fencing::{current, Fencing, ReasonKind, Token};
use std::time::Duration;
use tokio::time::{advance, Instant};

#[tokio::test(start_paused = true)]
async fn check_is_ok_until_a_trigger_fires() {
    let shutdown = Token::new();
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("budget")
        .token(&shutdown)
        .code("shutdown");
    assert!(fencing.check().is_ok());
    assert!(
        Fencing::new().check().is_ok(),
        "an empty fencing never fires"
    );

    shutdown.cancel_with("SIGTERM");
    let err = fencing.check().unwrap_err();
    assert_eq!(err.reasons().len(), 1);
    assert!(err.cancelled_by("shutdown"));
    assert_eq!(err.reason().message(), "SIGTERM");
}

#[tokio::test(start_paused = true)]
async fn check_lists_the_deadline_first_then_declaration_order() {
    let (first, second) = (Token::new(), Token::new());
    let fencing = Fencing::new()
        .token(&first)
        .code("first")
        .token(&second)
        .code("second")
        .timeout(Duration::from_secs(1))
        .code("budget");
    second.cancel();
    first.cancel();
    advance(Duration::from_secs(1)).await;

    let err = fencing.check().unwrap_err();
    let codes: Vec<_> = err
        .reasons()
        .iter()
        .map(|r| r.code().unwrap().as_str().to_owned())
        .collect();
    assert_eq!(codes, ["budget", "first", "second"]);
    assert_eq!(err.reason().kind(), ReasonKind::Timeout);
}

#[tokio::test(start_paused = true)]
async fn check_sees_a_deadline_in_the_past_and_one_under_two_codes() {
    let token = Token::new();
    let fencing = Fencing::new()
        .deadline(Instant::now())
        .code("late")
        .token(&token)
        .code("a")
        .token(&token)
        .code("b");
    let err = fencing.check().unwrap_err();
    assert!(err.cancelled_by("late") && err.is_deadline());
    assert_eq!(err.reasons().len(), 1);

    token.cancel();
    let err = fencing.check().unwrap_err();
    assert!(
        err.cancelled_by("a") && err.cancelled_by("b"),
        "rule 4: both codes"
    );
    assert_eq!(err.reasons().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn check_ignores_a_policy() {
    let token = Token::new();
    token.cancel();
    let fencing = Fencing::new()
        .token(&token)
        .code("shutdown")
        .policy(|_| false);
    assert!(fencing.check().unwrap_err().cancelled_by("shutdown"));
}

#[tokio::test(start_paused = true)]
async fn in_scope_binds_for_the_closure_only_and_never_cancels() {
    let token = Token::new();
    token.cancel();
    let request = Fencing::new()
        .timeout(Duration::from_secs(3))
        .token(&token)
        .code("shutdown");

    let (remaining, cancelled, ran) =
        request.in_scope(|| (current().remaining(), current().is_cancelled(), true));
    assert_eq!(remaining, Some(Duration::from_secs(3)));
    assert!(cancelled, "the closure sees the trigger...");
    assert!(ran, "...and runs all the same (a binding never cancels)");
    assert_eq!(current().remaining(), None, "nothing bound afterwards");
}

#[tokio::test(start_paused = true)]
async fn in_scope_nests_and_restores_after_a_panic() {
    let outer = Fencing::new().timeout(Duration::from_secs(10));
    let inner = Fencing::new().timeout(Duration::from_secs(1));
    outer.in_scope(|| {
        let caught = std::panic::catch_unwind(|| {
            inner.in_scope(|| {
                assert_eq!(current().remaining(), Some(Duration::from_secs(1)));
                panic!("in the inner scope");
            })
        });
        assert!(caught.is_err());
        assert_eq!(current().remaining(), Some(Duration::from_secs(10)));
    });
    assert_eq!(current().remaining(), None);
}

#[tokio::test(start_paused = true)]
async fn in_scope_futures_built_inside_do_not_keep_the_context() {
    // A future built in the closure but polled outside it runs with the
    // context of its poll, as with a task-local: bind it to keep one.
    let request = Fencing::new().timeout(Duration::from_secs(3));
    let unbound = request.in_scope(|| async { current().remaining() });
    assert_eq!(unbound.await, None);
    let bound = request.in_scope(|| current().bind(async { current().remaining() }));
    assert_eq!(bound.await, Some(Duration::from_secs(3)));
}
