//! The operation registry: running fences listed, cancelled by id or name,
//! and gone when they end.

use fencing::{protect, Fencing, Registry, Token};
use std::future::pending;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready, task};

#[tokio::test(start_paused = true)]
async fn registry_lists_running_operations_with_their_details() {
    let registry = Registry::new();
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(30))
        .register(&registry, "export");
    let deadline = fencing.effective_deadline();
    let fenced = fencing.run(pending::<()>());
    assert!(registry.is_empty(), "not before the fence starts");

    let mut fenced = task::spawn(fenced);
    let started = Instant::now();
    assert_pending!(fenced.poll());
    let list = registry.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name(), "export");
    assert_eq!(list[0].started(), started);
    assert_eq!(list[0].deadline(), deadline);
    assert!(list[0].reasons().is_empty());
}

#[tokio::test(start_paused = true)]
async fn registry_cancels_one_by_id_with_a_reason() {
    let registry = Registry::new();
    let fencing = Fencing::new().register(&registry, "job");
    let mut first = task::spawn(fencing.clone().run(pending::<()>()));
    let mut second = task::spawn(fencing.run(pending::<()>()));
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    let ids: Vec<_> = registry.list().iter().map(|op| op.id()).collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1], "each run is its own operation");

    assert!(registry.cancel(ids[0], "stuck"));
    assert!(!registry.cancel(ids[0], "again"), "the first cancel wins");
    assert!(first.is_woken());
    let err = assert_ready!(first.poll()).unwrap_err();
    assert!(err.cancelled_by("registry"));
    assert!(err.is_token());
    assert_eq!(err.reason().message(), "stuck");
    assert_pending!(second.poll(), "the other one runs on");

    assert_eq!(registry.len(), 1);
    assert!(
        !registry.cancel(ids[0], "gone"),
        "an ended operation is not found"
    );
}

#[tokio::test(start_paused = true)]
async fn registry_cancels_all_whose_name_matches() {
    let registry = Registry::new();
    let mut tasks: Vec<_> = ["export:a", "export:b", "import"]
        .into_iter()
        .map(|name| {
            task::spawn(
                Fencing::new()
                    .register(&registry, name)
                    .run(pending::<()>()),
            )
        })
        .collect();
    for t in &mut tasks {
        assert_pending!(t.poll());
    }
    assert_eq!(
        registry.cancel_matching(|name| name.starts_with("export:"), "maintenance"),
        2
    );
    assert!(assert_ready!(tasks[0].poll()).is_err());
    assert!(assert_ready!(tasks[1].poll()).is_err());
    assert_pending!(tasks[2].poll());
    let left: Vec<_> = registry
        .list()
        .iter()
        .map(|op| op.name().to_owned())
        .collect();
    assert_eq!(left, ["import"]);
}

#[tokio::test(start_paused = true)]
async fn registry_shows_reasons_so_far_of_a_protected_body() {
    let registry = Registry::new();
    let shutdown = Token::new();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let mut fenced = task::spawn(
        Fencing::new()
            .token(&shutdown)
            .code("shutdown")
            .register(&registry, "commit")
            .run(async move {
                let _commit = protect();
                released.await.unwrap();
            }),
    );
    assert_pending!(fenced.poll());
    shutdown.cancel_with("SIGTERM");
    assert_pending!(fenced.poll());
    let list = registry.list();
    assert_eq!(list[0].reasons().len(), 1);
    assert!(list[0].reasons()[0].has_code("shutdown"));
    release.send(()).unwrap();
    assert!(assert_ready!(fenced.poll()).is_ok());
    assert!(registry.is_empty());
}

#[tokio::test(start_paused = true)]
async fn registry_entries_leave_whatever_the_outcome() {
    let registry = Registry::new();
    let token = Token::new();
    let fencing = Fencing::new().token(&token).register(&registry, "op");

    // Completes at once.
    assert_eq!(fencing.clone().run(async { 1 }).await.unwrap(), 1);
    assert!(registry.is_empty());

    // Dropped while pending.
    let mut dropped = task::spawn(fencing.clone().run(pending::<()>()));
    assert_pending!(dropped.poll());
    assert_eq!(registry.len(), 1);
    drop(dropped);
    assert!(registry.is_empty());

    // Panics.
    let mut panicking = task::spawn(fencing.clone().run(async {
        tokio::task::yield_now().await;
        panic!("boom");
    }));
    assert_pending!(panicking.poll());
    assert!(panic::catch_unwind(AssertUnwindSafe(|| panicking.poll())).is_err());
    drop(panicking);
    assert!(registry.is_empty());

    // Cancelled by another trigger.
    let mut cancelled = task::spawn(fencing.run(pending::<()>()));
    assert_pending!(cancelled.poll());
    token.cancel();
    assert!(assert_ready!(cancelled.poll()).is_err());
    assert!(registry.is_empty());
}

#[tokio::test(start_paused = true)]
async fn registry_unregistered_fences_do_not_appear() {
    let registry = Registry::new();
    let mut fenced = task::spawn(Fencing::new().run(pending::<()>()));
    assert_pending!(fenced.poll());
    assert!(registry.is_empty());
    assert!(format!("{registry:?}").contains("running: 0"));
}

/// Issue 11, item 4: the predicate of `cancel_matching` runs outside the
/// registry's lock, so it may use the registry (`len`, `list`, `cancel`) and
/// drop a registered fence. Run on a thread of its own and bounded: on a
/// deadlock the test fails after 10 s instead of hanging.
#[test]
fn registry_predicate_may_reenter() {
    use std::sync::mpsc;
    let registry = Registry::new();
    let fencing = |name| Fencing::new().register(&registry, name);
    let mut a = task::spawn(fencing("a").run(pending::<()>()));
    let mut b = task::spawn(fencing("b").run(pending::<()>()));
    let mut gone = task::spawn(fencing("gone").run(pending::<()>()));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    assert_pending!(gone.poll());
    let b_id = registry.list()[1].id();
    assert_eq!(registry.list()[1].name(), "b");

    let (done, finished) = mpsc::channel();
    let inner = registry.clone();
    std::thread::spawn(move || {
        let mut gone = Some(gone);
        let mut seen = Vec::new();
        let cancelled = inner.cancel_matching(
            |name| {
                seen.push((name.to_owned(), inner.len(), inner.list().len()));
                if name == "a" {
                    assert!(inner.cancel(b_id, "from the predicate"));
                    // A registered fence dropped here leaves the registry.
                    drop(gone.take());
                }
                name == "a"
            },
            "maintenance",
        );
        done.send((cancelled, seen)).unwrap();
    });
    let Ok((cancelled, seen)) = finished.recv_timeout(Duration::from_secs(10)) else {
        // The thread is stuck holding the registry's lock: the fences would
        // block on it when dropped, so leak them.
        std::mem::forget((a, b));
        panic!("cancel_matching did not return: its predicate cannot use the registry");
    };
    assert_eq!(cancelled, 1, "a, by the predicate's verdict");
    assert_eq!(seen[0], ("a".to_owned(), 3, 3));
    assert_eq!(registry.len(), 2, "gone left when it was dropped");
    let err = assert_ready!(a.poll()).unwrap_err();
    assert_eq!(err.reason().message(), "maintenance");
    let err = assert_ready!(b.poll()).unwrap_err();
    assert_eq!(err.reason().message(), "from the predicate");
    assert!(registry.is_empty());
}
