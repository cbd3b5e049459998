//! The ambient context: binding, reading, deriving, inheritance by spawned
//! tasks, and the effective deadline (DESIGN.md rules 9–12, 15, 16, 19).

use fencing::{current, detach, Fencing, Token};
use std::future::pending;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{advance, Instant};
use tokio_test::{assert_pending, assert_ready, task};

#[tokio::test(start_paused = true)]
async fn binding_never_cancels_even_when_a_trigger_has_fired() {
    let shutdown = Token::new();
    shutdown.cancel_with("SIGTERM");
    let wrote = Arc::new(AtomicBool::new(false));

    let w = wrote.clone();
    let out = Fencing::new()
        .token(&shutdown)
        .code("shutdown")
        .timeout(Duration::ZERO)
        .bind(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            w.store(true, Ordering::SeqCst);
            current().is_cancelled()
        })
        .await;

    assert!(
        wrote.load(Ordering::SeqCst),
        "the bound future ran to the end"
    );
    assert!(out, "and it could see that its context had fired");
}

#[tokio::test(start_paused = true)]
async fn binding_never_cancels_nested_bindings_override_and_restore() {
    let outer = Fencing::new().timeout(Duration::from_secs(10));
    let inner = Fencing::new().timeout(Duration::from_secs(1));
    let (outer_at, inner_at) = (outer.effective_deadline(), inner.effective_deadline());

    let seen = outer
        .bind(async move {
            let before = current().effective_deadline();
            let during = inner.bind(async { current().effective_deadline() }).await;
            let after = current().effective_deadline();
            (before, during, after)
        })
        .await;

    assert_eq!(seen, (outer_at, inner_at, outer_at));
    assert_eq!(current().effective_deadline(), None, "restored outside");
}

#[test]
fn binding_never_cancels_current_is_empty_without_a_binding() {
    // No runtime, nothing bound: never panics, never fires.
    let fencing = current();
    assert!(!fencing.is_cancelled());
    assert_eq!(fencing.effective_deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn fences_bind_their_fencing_as_the_context_of_the_body() {
    let shutdown = Token::new();
    let fencing = Fencing::new()
        .token(&shutdown)
        .timeout(Duration::from_secs(3));
    let at = fencing.effective_deadline();

    let seen = fencing
        .run(async {
            shutdown.cancel();
            (current().effective_deadline(), current().is_cancelled())
        })
        .await
        .unwrap();

    assert_eq!(seen, (at, true));
}

#[tokio::test(start_paused = true)]
async fn fences_bind_and_restore_after_a_panicking_body() {
    let outer = Fencing::new().timeout(Duration::from_secs(9));
    let at = outer.effective_deadline();
    let after = outer
        .bind(async {
            let inner = Fencing::new().timeout(Duration::from_secs(1)).run(async {
                panic!("boom");
            });
            let panicked = std::panic::AssertUnwindSafe(inner);
            let result = futures_test_catch(panicked).await;
            assert!(result.is_err());
            current().effective_deadline()
        })
        .await;
    assert_eq!(after, at, "the outer context is back after the unwind");
}

/// Polls a future, catching a panic from its poll.
async fn futures_test_catch<F: std::future::Future>(
    future: std::panic::AssertUnwindSafe<F>,
) -> std::thread::Result<F::Output> {
    let mut future = std::pin::pin!(future.0);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => std::task::Poll::Ready(Err(payload)),
        }
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn derivation_keeps_outer_triggers_and_adds_the_new_one() {
    let shutdown = Token::new();
    let request = Fencing::new()
        .timeout(Duration::from_secs(30))
        .code("budget")
        .token(&shutdown)
        .code("shutdown");

    let err = request
        .clone()
        .bind(async {
            let db = current().timeout(Duration::from_secs(5)).code("db");
            assert!(
                db.effective_deadline()
                    < Fencing::new()
                        .timeout(Duration::from_secs(30))
                        .effective_deadline(),
                "the tighter inner timeout is the deadline"
            );
            db.run(pending::<()>()).await
        })
        .await
        .unwrap_err();
    assert!(err.cancelled_by("db"));
    assert!(!err.cancelled_by("budget"));

    // The outer token is still one of the derived triggers.
    shutdown.cancel();
    let err = request
        .bind(async {
            current()
                .timeout(Duration::from_secs(5))
                .code("db")
                .run(async {})
                .await
        })
        .await
        .unwrap_err();
    assert!(err.cancelled_by("shutdown"));
}

#[tokio::test(start_paused = true)]
async fn derivation_a_looser_inner_timeout_does_not_raise_the_deadline() {
    let outer = Fencing::new()
        .timeout(Duration::from_secs(2))
        .code("budget");
    let at = outer.effective_deadline();
    let (deadline, err) = outer
        .bind(async {
            let inner = current().timeout(Duration::from_secs(60)).code("db");
            (
                inner.effective_deadline(),
                inner.run(pending::<()>()).await.unwrap_err(),
            )
        })
        .await;
    assert_eq!(deadline, at);
    assert!(
        err.cancelled_by("budget"),
        "the outer budget's code is kept"
    );
    assert!(!err.cancelled_by("db"));
}

#[tokio::test(start_paused = true)]
async fn derivation_code_right_after_current_labels_nothing() {
    let token = Token::new();
    let outer = Fencing::new().token(&token).code("outer");
    let err = outer
        .clone()
        .bind(async { current().code("relabelled").run(async {}).await })
        .await;
    assert!(err.is_ok());
    token.cancel();
    let err = outer
        .bind(async { current().code("relabelled").run(async {}).await })
        .await
        .unwrap_err();
    assert!(err.cancelled_by("outer"));
    assert!(!err.cancelled_by("relabelled"));
}

/// aiofence's pattern: middleware binds budget + shutdown; a handler fences a
/// DB call with `current().timeout(5 s).code("db")`; when shutdown fires, the
/// handler sees `cancelled_by("shutdown")` and returns its graceful answer,
/// which the outer fence lets through.
#[tokio::test(start_paused = true)]
async fn inner_first_handler_sees_shutdown_and_answers_gracefully() {
    async fn handler() -> &'static str {
        match current()
            .timeout(Duration::from_secs(5))
            .code("db")
            .run(pending::<()>())
            .await
        {
            Ok(()) => "200",
            Err(cancelled) if cancelled.cancelled_by("shutdown") => "503 graceful",
            Err(_) => "504",
        }
    }

    let shutdown = Token::new();
    let middleware = Fencing::new()
        .timeout(Duration::from_secs(30))
        .code("budget")
        .token(&shutdown)
        .code("shutdown");

    let mut request = task::spawn(middleware.run(handler()));
    assert_pending!(request.poll());
    advance(Duration::from_secs(1)).await;
    assert_pending!(request.poll());

    shutdown.cancel_with("SIGTERM");
    assert!(request.is_woken());
    let answer = assert_ready!(request.poll());
    assert_eq!(
        answer.unwrap(),
        "503 graceful",
        "the outer fence let the answer through"
    );
}

#[tokio::test(start_paused = true)]
async fn inner_first_outer_drops_a_body_still_pending_afterwards() {
    let shutdown = Token::new();
    let inner_saw = Arc::new(AtomicBool::new(false));
    let saw = inner_saw.clone();
    let outer = Fencing::new().token(&shutdown).code("shutdown");

    let mut request = task::spawn(outer.run(async move {
        let inner = current().run(pending::<()>()).await;
        saw.store(
            inner.unwrap_err().cancelled_by("shutdown"),
            Ordering::SeqCst,
        );
        // Ignores the cancellation and keeps waiting: the outer fence drops it.
        pending::<()>().await;
    }));
    assert_pending!(request.poll());
    shutdown.cancel();
    let err = assert_ready!(request.poll()).unwrap_err();
    assert!(
        inner_saw.load(Ordering::SeqCst),
        "the inner fence saw it first"
    );
    assert!(err.cancelled_by("shutdown"));
}

#[tokio::test(start_paused = true)]
async fn spawned_tasks_inherit_through_spawn_and_bind_but_not_tokio_spawn() {
    let token = Token::new();
    let request = Fencing::new().token(&token).timeout(Duration::from_secs(3));
    let at = request.effective_deadline();

    let (helper, wrapped, plain) = request
        .bind(async {
            let helper = fencing::spawn(async { current().effective_deadline() });
            let mut set = tokio::task::JoinSet::new();
            set.spawn(current().bind(async { current().effective_deadline() }));
            let plain = tokio::spawn(async { current().effective_deadline() });
            (
                helper.await.unwrap(),
                set.join_next().await.unwrap().unwrap(),
                plain.await.unwrap(),
            )
        })
        .await;

    assert_eq!(helper, at);
    assert_eq!(wrapped, at);
    assert_eq!(plain, None, "tokio::spawn does not carry the context");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_tasks_inherit_into_spawn_blocking_and_see_cancellation() {
    let stop = Token::new();
    let started = Token::new();
    let fencing = Fencing::new().token(&stop).code("stop");

    let spins = fencing
        .bind(async {
            let running = started.clone();
            let handle = fencing::spawn_blocking(move || {
                let mut spins: u64 = 0;
                running.cancel();
                while !current().is_cancelled() {
                    spins += 1;
                    std::hint::spin_loop();
                }
                spins
            });
            started.cancelled().await;
            stop.cancel();
            // The closure only ends because it sees the inherited token fire.
            handle.await
        })
        .await;
    assert!(spins.is_ok());
}

#[tokio::test(start_paused = true)]
async fn effective_deadline_and_remaining_budget() {
    // Nothing bound: no deadline.
    assert_eq!(current().effective_deadline(), None);
    assert_eq!(current().remaining(), None);

    let parent = Fencing::new().timeout(Duration::from_secs(10));
    let at = parent.effective_deadline().unwrap();
    parent
        .bind(async move {
            // A child task sees the parent's deadline.
            let child = fencing::spawn(async { current().effective_deadline() });
            assert_eq!(child.await.unwrap(), Some(at));
            // An inner looser deadline does not raise it.
            let looser = current().deadline(at + Duration::from_secs(5));
            assert_eq!(looser.effective_deadline(), Some(at));
            // An inner tighter one lowers it.
            let tighter = current().timeout(Duration::from_secs(1));
            assert_eq!(tighter.remaining(), Some(Duration::from_secs(1)));

            advance(Duration::from_secs(4)).await;
            assert_eq!(current().remaining(), Some(Duration::from_secs(6)));
            advance(Duration::from_secs(60)).await;
            assert_eq!(
                current().remaining(),
                Some(Duration::ZERO),
                "saturates at zero"
            );
            assert!(current().is_cancelled());
        })
        .await;
    assert!(Instant::now() > at);
}

#[tokio::test(start_paused = true)]
async fn shield_and_detach_detached_context_keeps_no_outer_trigger() {
    let shutdown = Token::new();
    shutdown.cancel();
    let outer = Fencing::new()
        .token(&shutdown)
        .timeout(Duration::from_secs(1));

    let audit = outer
        .bind(detach(async {
            assert!(!current().is_cancelled());
            assert_eq!(current().effective_deadline(), None);
            // A fence derived in the detached context is not cancelled by the
            // outer shutdown.
            current()
                .timeout(Duration::from_secs(5))
                .run(async { "audited" })
                .await
        }))
        .await;
    assert_eq!(audit.unwrap(), "audited");
}

#[tokio::test(start_paused = true)]
async fn shield_and_detach_shielded_work_completes_when_the_caller_is_dropped() {
    let shutdown = Token::new();
    let committed = Arc::new(AtomicBool::new(false));
    let c = committed.clone();
    let mut request = task::spawn(Fencing::new().token(&shutdown).run(async move {
        fencing::shield(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            c.store(true, Ordering::SeqCst);
        })
        .await;
        "answered"
    }));
    assert_pending!(request.poll());
    shutdown.cancel();
    assert!(
        assert_ready!(request.poll()).is_err(),
        "the caller was dropped"
    );
    assert!(!committed.load(Ordering::SeqCst));

    // The shielded task starts its 2 s when first polled, after this point.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        committed.load(Ordering::SeqCst),
        "the shielded work ran to the end"
    );
}

#[tokio::test(start_paused = true)]
async fn shield_and_detach_output_reaches_a_caller_still_there() {
    let budget = Fencing::new().timeout(Duration::from_secs(10));
    let at = budget.effective_deadline();
    let (value, seen) = budget
        .run(async { fencing::shield(async { (41 + 1, current().effective_deadline()) }).await })
        .await
        .unwrap();
    assert_eq!(value, 42);
    assert_eq!(seen, at, "the shielded task runs with the current context");
}

#[tokio::test(start_paused = true)]
async fn shield_and_detach_a_panic_in_shielded_work_reaches_the_caller() {
    let caller = tokio::spawn(async {
        fencing::shield(async {
            std::panic::panic_any(7_u32);
        })
        .await;
    });
    let err = caller.await.unwrap_err();
    assert_eq!(err.into_panic().downcast_ref::<u32>(), Some(&7));
}

#[tokio::test(start_paused = true)]
async fn effective_deadline_moving_a_deadline_is_reflected_at_once() {
    let handle = fencing::FenceHandle::new();
    let request = Fencing::new()
        .timeout(Duration::from_secs(30))
        .handle(&handle);
    let seen = request
        .run(async {
            let before = current().remaining();
            handle.reschedule_after(Duration::from_secs(2));
            let after = current().remaining();
            (before, after)
        })
        .await
        .unwrap();
    assert_eq!(
        seen,
        (Some(Duration::from_secs(30)), Some(Duration::from_secs(2)))
    );
}

/// Issue 13: the short forms derive from the context, so inner code that
/// uses them still sees the caller's triggers, innermost first (rule 12).
#[tokio::test(start_paused = true)]
async fn short_forms_keep_context() {
    use fencing::FenceExt;

    let shutdown = Token::new();
    let request = Fencing::new()
        .timeout(Duration::from_secs(30))
        .code("budget")
        .token(&shutdown)
        .code("shutdown");
    let answer = request
        .run(async {
            let query = async {
                tokio::task::yield_now().await;
                shutdown.cancel_with("SIGTERM");
                pending::<&str>().await
            };
            let fenced = query.fenced_timeout(Duration::from_secs(5), "db");
            assert_eq!(
                fenced.fencing().remaining(),
                Some(Duration::from_secs(5)),
                "the tighter of the budget and the short form's timeout"
            );
            match fenced.await {
                // The inner fence sees the shutdown first, with its code,
                // and the handler can still answer.
                Err(cancelled) if cancelled.cancelled_by("shutdown") => "503: shutting down",
                Err(cancelled) => panic!("the wrong trigger fired: {cancelled}"),
                Ok(never) => never,
            }
        })
        .await;
    assert_eq!(answer.unwrap(), "503: shutting down");
}
