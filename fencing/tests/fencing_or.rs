//! `Fencing::or`: two `Fencing`s built apart, joined. Every trigger of both
//! with its code, the deadlines merged by rule 3, each side's policy and
//! grace periods governing that side's triggers only, registrations in
//! both registries, handles still steering, a shared trigger armed once.

mod support;

use fencing::{current, FenceHandle, Fencing, Registry, Token};
use std::future::pending;
use std::time::Duration;
use support::{codes, hand, Probe};
use tokio::time::{advance, Instant};
use tokio_test::{assert_pending, assert_ready, task};

#[tokio::test(start_paused = true)]
async fn or_keeps_codes() {
    let user = Token::new();
    let shutdown = Token::new();
    let middleware = Fencing::new()
        .timeout(Duration::from_secs(30))
        .code("budget")
        .token(&user)
        .code("user");
    let library = Fencing::new().token(&shutdown).code("shutdown");
    let both = middleware.or(&library);

    let mut fenced = task::spawn(both.clone().run(pending::<()>()));
    assert_pending!(fenced.poll());
    shutdown.cancel_with("SIGTERM");
    assert!(
        fenced.is_woken(),
        "a trigger from the other side wakes the fence"
    );
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(
        err.cancelled_by("shutdown"),
        "the code from `library` is kept"
    );
    assert!(!err.cancelled_by("user") && !err.cancelled_by("budget"));
    assert_eq!(err.reason().message(), "SIGTERM");

    // Both sides' triggers, each under its own code, in declaration order.
    user.cancel();
    let err = both.run(pending::<()>()).await.unwrap_err();
    assert_eq!(codes(err.reasons()), ["user", "shutdown"]);
}

#[tokio::test(start_paused = true)]
async fn or_keeps_codes_of_both_when_checked_without_a_fence() {
    let shutdown = Token::new();
    let both = Fencing::new()
        .timeout(Duration::from_secs(1))
        .code("budget")
        .or(&Fencing::new().token(&shutdown).code("shutdown"));
    assert!(!both.is_cancelled());
    shutdown.cancel();
    assert!(both.is_cancelled());
    assert!(both.check().unwrap_err().cancelled_by("shutdown"));
}

#[tokio::test(start_paused = true)]
async fn or_time_merge_the_tightest_wins_with_its_code() {
    for tight_first in [false, true] {
        let loose = Fencing::new().timeout(Duration::from_secs(5)).code("loose");
        let tight = Fencing::new().timeout(Duration::from_secs(2)).code("tight");
        let at = Instant::now() + Duration::from_secs(2);
        let both = if tight_first {
            tight.or(&loose)
        } else {
            loose.or(&tight)
        };
        assert_eq!(
            both.effective_deadline(),
            Some(at),
            "whichever side it is on"
        );
        let started = Instant::now();
        let err = both.run(pending::<()>()).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(err.cancelled_by("tight"));
        assert!(
            !err.cancelled_by("loose"),
            "the looser deadline merged away"
        );
        assert!(err.is_timeout());
        assert_eq!(err.reasons().len(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn or_time_merge_an_equal_deadline_keeps_the_first_sides() {
    let at = Instant::now() + Duration::from_secs(3);
    let first = Fencing::new().deadline(at).code("first");
    let second = Fencing::new().deadline(at).code("second");

    let err = first
        .clone()
        .or(&second)
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(codes(err.reasons()), ["first"]);
    assert!(err.is_deadline());

    let at = Instant::now() + Duration::from_secs(3);
    let first = Fencing::new().deadline(at).code("first");
    let second = Fencing::new().deadline(at).code("second");
    let err = second.or(&first).run(pending::<()>()).await.unwrap_err();
    assert_eq!(codes(err.reasons()), ["second"]);
}

#[tokio::test(start_paused = true)]
async fn or_time_merge_keeps_each_timeout_anchored_where_declared() {
    // Declared first, in the middleware: 3 s from now.
    let middleware = Fencing::new()
        .timeout(Duration::from_secs(3))
        .code("budget");
    advance(Duration::from_secs(2)).await;
    // Declared 2 s later, in the library: 2 s from then, so 1 s later.
    let library = Fencing::new().timeout(Duration::from_secs(2)).code("call");

    let both = library.or(&middleware);
    assert_eq!(both.remaining(), Some(Duration::from_secs(1)));
    let err = both.run(pending::<()>()).await.unwrap_err();
    assert!(err.cancelled_by("budget"));
    assert_eq!(err.reason().message(), "timed out after 3s");
}

#[tokio::test(start_paused = true)]
async fn or_time_merge_a_side_without_deadline_adds_none() {
    let token = Token::new();
    let timed = Fencing::new()
        .timeout(Duration::from_secs(4))
        .code("budget");
    let untimed = Fencing::new().token(&token);
    assert_eq!(
        untimed.clone().or(&timed).effective_deadline(),
        timed.effective_deadline()
    );
    assert_eq!(untimed.clone().or(&untimed).effective_deadline(), None);
    let never = Fencing::new().timeout(Duration::MAX).code("never");
    assert_eq!(
        never.or(&untimed).effective_deadline(),
        None,
        "overflow: none"
    );
}

#[tokio::test(start_paused = true)]
async fn or_policy_stays_with_its_side() {
    let early = Token::new();
    let late = Token::new();
    early.cancel_with("already shutting down");
    // The middleware declines a shutdown that was under way at entry...
    let middleware = Fencing::new()
        .token(&early)
        .code("shutdown")
        .policy(|reason| !reason.has_code("shutdown"));
    // ...which says nothing about the library's own "shutdown".
    let library = Fencing::new().token(&late).code("shutdown");
    let probe = Probe::default();
    let mut fenced = hand(middleware.or(&library).run(probe.body()));

    assert_pending!(fenced.poll());
    assert_eq!(
        probe.polls(),
        1,
        "the declined reason did not stop the body"
    );
    assert!(fenced.declined_by("shutdown"));
    assert!(!fenced.is_cancelled());

    late.cancel_with("library closing");
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(probe.dropped());
    assert_eq!(err.reasons().len(), 1);
    assert_eq!(err.reason().message(), "library closing");
    assert_eq!(codes(fenced.declined()), ["shutdown"]);
}

/// A trigger declared on the result, or inside its body, is the result's
/// own: the same token under the same code as one of a side's is not folded
/// into that side's declaration, whose policy would decline it.
#[tokio::test(start_paused = true)]
async fn or_a_declaration_on_the_result_keeps_no_sides_policy() {
    let shutdown = Token::new();
    let middleware = Fencing::new()
        .token(&shutdown)
        .code("shutdown")
        .policy(|reason| !reason.has_code("shutdown"));
    let library = Fencing::new().timeout(Duration::from_secs(60)).code("lib");
    let joined = middleware.or(&library);
    let mine = joined.clone().token(&shutdown).code("shutdown");
    shutdown.cancel_with("SIGTERM");

    let err = mine.run(pending::<()>()).await.unwrap_err();
    assert_eq!(codes(err.reasons()), ["shutdown"]);
    assert_eq!(err.reason().message(), "SIGTERM");

    // The same from inside the body: the inner fence's own declaration.
    let inner = joined
        .run(async {
            current()
                .token(&shutdown)
                .code("shutdown")
                .run(pending::<()>())
                .await
        })
        .await;
    let err = inner
        .expect("the outer fence declined its shutdown")
        .unwrap_err();
    assert_eq!(codes(err.reasons()), ["shutdown"]);
}

#[tokio::test(start_paused = true)]
async fn or_policy_of_the_other_side_governs_only_its_own_triggers() {
    let a = Token::new();
    let b = Token::new();
    let left = Fencing::new().token(&a).code("a");
    let right = Fencing::new()
        .token(&b)
        .code("b")
        .policy(|reason| !reason.has_code("a") && !reason.has_code("b"));
    a.cancel();
    b.cancel();
    let mut fenced = hand(left.or(&right).run(pending::<()>()));
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert_eq!(
        codes(err.reasons()),
        ["a"],
        "right's policy does not reach `a`"
    );
    assert_eq!(codes(fenced.declined()), ["b"]);
}

#[tokio::test(start_paused = true)]
async fn or_policy_declared_after_the_or_governs_both_sides() {
    let a = Token::new();
    let b = Token::new();
    let both = Fencing::new()
        .token(&a)
        .code("a")
        .policy(|reason| !reason.has_code("a"))
        .or(&Fencing::new().token(&b).code("b"))
        .policy(|reason| !reason.has_code("b"));
    a.cancel();
    b.cancel();
    let mut fenced = hand(both.run(pending::<()>()));
    assert_pending!(fenced.poll(), "`a` declined by its side, `b` by the result");
    assert_eq!(codes(fenced.declined()), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn or_policy_governs_its_sides_deadline() {
    let token = Token::new();
    let lenient = Fencing::new()
        .timeout(Duration::from_secs(1))
        .code("soft")
        .policy(|reason| !reason.is_timeout());
    let strict = Fencing::new()
        .token(&token)
        .timeout(Duration::from_secs(5))
        .code("hard");
    let probe = Probe::default();
    let mut fenced = hand(lenient.or(&strict).run(probe.body()));
    assert_pending!(fenced.poll());
    advance(Duration::from_secs(1)).await;
    assert_pending!(fenced.poll(), "its side declines the tight deadline");
    assert!(fenced.declined_by("soft"));
    assert!(!probe.dropped());
}

#[tokio::test(start_paused = true)]
async fn or_grace_stays_with_its_side() {
    let ours = Token::new();
    let theirs = Token::new();
    let graceful = Fencing::new()
        .token(&ours)
        .code("ours")
        .grace(Duration::from_secs(5));
    let hard = Fencing::new().token(&theirs).code("theirs");

    // Our trigger: the body is told, and dropped at the end of our grace.
    let probe = Probe::default();
    let mut fenced = hand(graceful.clone().or(&hard).run(probe.body()));
    assert_pending!(fenced.poll());
    ours.cancel();
    assert_pending!(fenced.poll());
    assert!(probe.told() && !probe.dropped(), "phase one: told");
    advance(Duration::from_secs(5)).await;
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(probe.dropped());
    assert!(err.cancelled_by("ours"));

    // Their trigger: no grace period on their side, dropped at once.
    let ours = Token::new();
    let graceful = Fencing::new()
        .token(&ours)
        .code("ours")
        .grace(Duration::from_secs(5));
    let probe = Probe::default();
    let mut fenced = hand(graceful.or(&hard).run(probe.body()));
    assert_pending!(fenced.poll());
    theirs.cancel();
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(probe.dropped(), "their side gave no grace period");
    assert!(err.cancelled_by("theirs"));
}

#[tokio::test(start_paused = true)]
async fn or_grace_for_a_code_stays_with_its_side() {
    let server = Token::new();
    let pool = Token::new();
    // Both call their trigger "shutdown"; only the server gives it 5 s.
    let boundary = Fencing::new()
        .token(&server)
        .code("shutdown")
        .grace_for("shutdown", Duration::from_secs(5));
    let library = Fencing::new().token(&pool).code("shutdown");
    let both = boundary.or(&library);
    assert_eq!(
        both.grace_period_for("shutdown"),
        None,
        "nothing fence-wide"
    );

    let probe = Probe::default();
    let mut fenced = hand(both.run(probe.body()));
    assert_pending!(fenced.poll());
    server.cancel();
    assert_pending!(fenced.poll());
    assert!(
        probe.told() && !probe.dropped(),
        "the boundary's shutdown: grace"
    );
    pool.cancel();
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(probe.dropped(), "the library's shutdown: none, so at once");
    assert_eq!(codes(err.reasons()), ["shutdown", "shutdown"]);
}

/// A side's grace period for a code follows the reason's code, also when a
/// handle's slot fires with the code of the deadline it took over.
#[tokio::test(start_paused = true)]
async fn or_grace_for_a_code_reaches_a_deadline_a_handle_took_over() {
    let handle = FenceHandle::new();
    let side = Fencing::new()
        .timeout(Duration::from_secs(1))
        .code("budget")
        .handle(&handle)
        .code("admin")
        .grace_for("budget", Duration::from_secs(10));
    let both = side.or(&Fencing::new());

    let probe = Probe::default();
    let mut fenced = hand(both.run(probe.body()));
    assert_pending!(fenced.poll());
    advance(Duration::from_secs(1)).await;
    assert_pending!(fenced.poll());
    assert!(
        probe.told() && !probe.dropped(),
        "the budget's 10 s grace, not the handle's code's"
    );
    advance(Duration::from_secs(10)).await;
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(probe.dropped());
    assert_eq!(codes(err.reasons()), ["budget"]);
}

#[tokio::test(start_paused = true)]
async fn or_grace_declared_after_the_or_the_shorter_wins() {
    let tokens = || (Token::new(), Token::new());
    let declare = |ours: &Token, theirs: &Token| {
        Fencing::new()
            .token(ours)
            .code("ours")
            .grace(Duration::from_secs(5))
            .or(&Fencing::new().token(theirs).code("theirs"))
            .grace(Duration::from_secs(2))
    };

    let (ours, theirs) = tokens();
    let both = declare(&ours, &theirs);
    let probe = Probe::default();
    let mut fenced = hand(both.run(probe.body()));
    assert_pending!(fenced.poll());
    ours.cancel();
    assert_pending!(fenced.poll());
    advance(Duration::from_secs(2)).await;
    assert!(
        assert_ready!(fenced.poll()).is_err(),
        "2 s, shorter than 5 s"
    );
    assert!(probe.dropped());

    let (ours, theirs) = tokens();
    let both = declare(&ours, &theirs);
    let probe = Probe::default();
    let mut fenced = hand(both.run(probe.body()));
    assert_pending!(fenced.poll());
    theirs.cancel();
    assert_pending!(fenced.poll());
    assert!(probe.told(), "their trigger gets the result's grace period");
    advance(Duration::from_secs(2)).await;
    assert!(assert_ready!(fenced.poll()).is_err());
}

#[tokio::test(start_paused = true)]
async fn or_grace_is_left_out_by_cancelled() {
    let token = Token::new();
    let both = Fencing::new()
        .token(&token)
        .code("t")
        .grace(Duration::from_secs(5))
        .or(&Fencing::new());
    token.cancel();
    let fired = both.cancelled().await;
    assert!(fired.cancelled_by("t"));
}

#[tokio::test(start_paused = true)]
async fn or_same_token_same_code_is_armed_once() {
    let shutdown = Token::new();
    let context = Fencing::new().token(&shutdown).code("shutdown");
    // Both derived from one context, as middleware and a library would be.
    let (middleware, library) = context.in_scope(|| {
        (
            current().timeout(Duration::from_secs(5)).code("budget"),
            current().timeout(Duration::from_secs(3)).code("call"),
        )
    });
    let both = middleware.or(&library);
    assert_eq!(both.remaining(), Some(Duration::from_secs(3)));

    shutdown.cancel();
    let err = both.run(pending::<()>()).await.unwrap_err();
    assert_eq!(
        codes(err.reasons()),
        ["shutdown"],
        "one trigger, one reason"
    );
}

#[tokio::test(start_paused = true)]
async fn or_same_token_under_two_codes_reports_both() {
    let token = Token::new();
    let both = Fencing::new()
        .token(&token)
        .code("mine")
        .or(&Fencing::new().token(&token).code("theirs"));
    token.cancel();
    let err = both.run(pending::<()>()).await.unwrap_err();
    assert_eq!(codes(err.reasons()), ["mine", "theirs"]);
}

#[tokio::test(start_paused = true)]
async fn or_same_token_governed_differently_is_armed_for_each_side() {
    let token = Token::new();
    let declining = Fencing::new().token(&token).code("t").policy(|_| false);
    let accepting = Fencing::new().token(&token).code("t");
    token.cancel();
    let mut fenced = hand(declining.or(&accepting).run(pending::<()>()));
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert_eq!(codes(err.reasons()), ["t"], "the accepting side cancels");
    assert_eq!(codes(fenced.declined()), ["t"]);
}

#[tokio::test(start_paused = true)]
async fn or_registers_in_both_registries() {
    let admin = Registry::new();
    let pool = Registry::new();
    let both = Fencing::new()
        .register(&admin, "request")
        .or(&Fencing::new().register(&pool, "query"));
    let mut fenced = task::spawn(both.run(pending::<()>()));
    assert_pending!(fenced.poll());
    assert_eq!(admin.list()[0].name(), "request");
    assert_eq!(pool.list()[0].name(), "query");

    assert!(pool.cancel(pool.list()[0].id(), "pool drained"));
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(err.cancelled_by("registry"));
    assert_eq!(err.reason().message(), "pool drained");
    assert!(admin.is_empty() && pool.is_empty(), "it left both");
}

#[tokio::test(start_paused = true)]
async fn or_registers_once_under_the_same_registry_and_name() {
    let registry = Registry::new();
    let op = Fencing::new().register(&registry, "op");
    let mut fenced = task::spawn(op.clone().or(&op).run(pending::<()>()));
    assert_pending!(fenced.poll());
    assert_eq!(registry.len(), 1);

    let mut renamed = task::spawn(
        op.or(&Fencing::new().register(&registry, "other"))
            .run(pending::<()>()),
    );
    assert_pending!(renamed.poll());
    assert_eq!(registry.len(), 3, "listed under both names");
    drop(renamed);
    assert_eq!(registry.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn or_handles_keep_steering_their_own_deadline() {
    let idle = FenceHandle::new();
    let left = Fencing::new()
        .timeout(Duration::from_secs(10))
        .handle(&idle)
        .code("idle");
    let right = Fencing::new()
        .timeout(Duration::from_secs(20))
        .code("budget");
    let both = left.or(&right);
    let start = Instant::now();
    assert_eq!(
        both.effective_deadline(),
        Some(start + Duration::from_secs(10))
    );

    // Moved later, the handle's deadline never outlasts the other side's.
    idle.reschedule_after(Duration::from_secs(60));
    assert_eq!(
        both.effective_deadline(),
        Some(start + Duration::from_secs(20))
    );
    idle.reschedule_after(Duration::from_secs(1));
    let mut fenced = task::spawn(both.run(pending::<()>()));
    assert_pending!(fenced.poll());
    advance(Duration::from_secs(1)).await;
    let err = assert_ready!(fenced.poll()).unwrap_err();
    assert!(err.cancelled_by("idle"));

    let stop = FenceHandle::new();
    let both = Fencing::new().or(&Fencing::new().handle(&stop).code("admin"));
    stop.cancel_with("from the admin endpoint");
    let err = both.run(pending::<()>()).await.unwrap_err();
    assert!(err.cancelled_by("admin"));
}

#[tokio::test(start_paused = true)]
async fn or_result_is_derived_a_handle_on_it_takes_nothing_over() {
    let handle = FenceHandle::new();
    let both = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("budget")
        .or(&Fencing::new())
        .handle(&handle)
        .code("moved");
    handle.reschedule_after(Duration::from_secs(60));
    assert_eq!(
        both.remaining(),
        Some(Duration::from_secs(5)),
        "the handle adds a deadline, never extends the sides'"
    );
}

#[tokio::test(start_paused = true)]
async fn or_code_right_after_labels_nothing() {
    let token = Token::new();
    let both = Fencing::new()
        .or(&Fencing::new().token(&token).code("kept"))
        .code("relabelled");
    token.cancel();
    let err = both.run(pending::<()>()).await.unwrap_err();
    assert_eq!(codes(err.reasons()), ["kept"]);
}

#[tokio::test(start_paused = true)]
async fn or_is_the_body_context() {
    let token = Token::new();
    let both = Fencing::new()
        .timeout(Duration::from_secs(4))
        .or(&Fencing::new().token(&token).code("theirs"));
    let seen = both
        .run(async {
            token.cancel();
            (current().remaining(), current().check().unwrap_err())
        })
        .await
        .unwrap();
    assert_eq!(seen.0, Some(Duration::from_secs(4)));
    assert!(seen.1.cancelled_by("theirs"));
}
