//! Progress: `report_progress` from any depth of a fenced body, shown in the
//! registry's listing of the nearest registered operation, in each registry;
//! nothing done when nobody listens.

use fencing::{current, detach, report_progress, Fencing, Message, Registry};
use std::future::pending;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{advance, Instant};
use tokio_test::{assert_pending, assert_ready, task};

/// Progress of the only operation in `registry`: message and count.
fn progress_of(registry: &Registry, name: &str) -> Option<(String, u64)> {
    let list = registry.list();
    let op = list.iter().find(|op| op.name() == name).expect("listed");
    op.progress()
        .map(|progress| (progress.message().to_owned(), progress.count()))
}

/// Somewhere deep in the body: no parameter, no handle.
async fn step(message: impl Into<Message>) {
    report_progress(message);
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn progress_reported_to_registry() {
    let registry = Registry::new();
    let started = Instant::now();
    let mut export = task::spawn(Fencing::new().register(&registry, "export").run(async {
        step("users").await;
        step(format!("{} rows", 42)).await;
        report_progress(String::from("done"));
    }));
    assert_pending!(export.poll());
    let list = registry.list();
    let progress = list[0].progress().expect("reported");
    assert_eq!(progress.message(), "users");
    assert_eq!(progress.count(), 1);
    assert_eq!(progress.reported_at(), started);

    advance(Duration::from_secs(1)).await;
    assert_pending!(export.poll());
    let list = registry.list();
    let progress = list[0].progress().expect("reported");
    assert_eq!(progress.message(), "42 rows");
    assert_eq!(progress.count(), 2);
    assert_eq!(progress.reported_at(), started + Duration::from_secs(1));

    advance(Duration::from_secs(1)).await;
    assert!(assert_ready!(export.poll()).is_ok());
    assert!(registry.is_empty(), "gone with its progress");
}

#[tokio::test(start_paused = true)]
async fn progress_none_until_reported() {
    let registry = Registry::new();
    let mut fenced = task::spawn(
        Fencing::new()
            .register(&registry, "quiet")
            .run(pending::<()>()),
    );
    assert_pending!(fenced.poll());
    assert!(registry.list()[0].progress().is_none());
}

#[tokio::test(start_paused = true)]
async fn progress_from_a_nested_fence_goes_to_the_nearest_operation_of_each_registry() {
    let admin = Registry::new();
    let jobs = Registry::new();
    let mut request = task::spawn(Fencing::new().register(&admin, "request").run(async {
        report_progress("accepted");
        // A library fence, listed in its own registry only.
        let query = current().register(&jobs, "query").run(async {
            report_progress("querying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        query.await.unwrap();
        pending::<()>().await
    }));
    assert_pending!(request.poll());
    assert_eq!(progress_of(&jobs, "query"), Some(("querying".into(), 1)));
    assert_eq!(
        progress_of(&admin, "request"),
        Some(("querying".into(), 2)),
        "the admin registry lists no nearer operation: it hears it too"
    );
}

#[tokio::test(start_paused = true)]
async fn progress_from_a_nested_fence_in_the_same_registry_stays_with_it() {
    let registry = Registry::new();
    let mut export = task::spawn(Fencing::new().register(&registry, "export").run(async {
        report_progress("starting");
        let table = current().register(&registry, "table").run(async {
            report_progress("copying users");
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        table.await.unwrap();
        report_progress("table done");
        pending::<()>().await
    }));
    assert_pending!(export.poll());
    assert_eq!(registry.len(), 2);
    assert_eq!(
        progress_of(&registry, "table"),
        Some(("copying users".into(), 1))
    );
    assert_eq!(
        progress_of(&registry, "export"),
        Some(("starting".into(), 1)),
        "the nearer operation took it"
    );

    advance(Duration::from_secs(1)).await;
    assert_pending!(export.poll());
    assert_eq!(registry.len(), 1);
    assert_eq!(
        progress_of(&registry, "export"),
        Some(("table done".into(), 2))
    );
}

#[cfg(feature = "rt")]
#[tokio::test(start_paused = true)]
async fn progress_from_a_task_spawned_with_the_context() {
    let registry = Registry::new();
    let (go, gate) = tokio::sync::oneshot::channel::<()>();
    let op = tokio::spawn(Fencing::new().register(&registry, "fan-out").run(async {
        let worker = fencing::spawn(async { report_progress("from a worker") });
        worker.await.unwrap();
        gate.await.unwrap();
    }));
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    assert_eq!(
        progress_of(&registry, "fan-out"),
        Some(("from a worker".into(), 1))
    );
    go.send(()).unwrap();
    op.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn progress_not_reported_by_detached_or_outer_code() {
    let registry = Registry::new();
    report_progress("outside any fence: nothing, and no panic");
    let mut fenced = task::spawn(Fencing::new().register(&registry, "op").run(async {
        detach(async { report_progress("detached") }).await;
        Fencing::new()
            .run(async { report_progress("a new root context") })
            .await
            .unwrap();
        pending::<()>().await
    }));
    assert_pending!(fenced.poll());
    assert!(registry.list()[0].progress().is_none());
}

#[tokio::test(start_paused = true)]
async fn progress_of_an_or_reaches_both_sides_registries() {
    let admin = Registry::new();
    let pool = Registry::new();
    let both = Fencing::new()
        .register(&admin, "request")
        .or(&Fencing::new().register(&pool, "query"));
    let mut fenced = task::spawn(both.run(async {
        report_progress("halfway");
        pending::<()>().await
    }));
    assert_pending!(fenced.poll());
    assert_eq!(progress_of(&admin, "request"), Some(("halfway".into(), 1)));
    assert_eq!(progress_of(&pool, "query"), Some(("halfway".into(), 1)));
}

#[tokio::test(start_paused = true)]
async fn progress_after_the_operation_ended_is_dropped() {
    let registry = Registry::new();
    let mut long = task::spawn(
        Fencing::new()
            .register(&registry, "long")
            .run(pending::<()>()),
    );
    assert_pending!(long.poll());
    let mut kept = None;
    Fencing::new()
        .register(&registry, "short")
        .run(async { kept = Some(current()) })
        .await
        .unwrap();
    assert_eq!(registry.len(), 1);
    // A context kept past its operation reports to nothing visible.
    kept.unwrap().in_scope(|| report_progress("late"));
    assert_eq!(registry.len(), 1);
    assert_eq!(progress_of(&registry, "long"), None, "not to another one");
}

/// A message that counts its conversions: the only work `report_progress`
/// does with a message it was given is converting it, so a conversion not
/// made is a `String` not copied and an entry not written.
struct Spy(Arc<AtomicUsize>);

impl From<Spy> for Message {
    fn from(spy: Spy) -> Self {
        spy.0.fetch_add(1, SeqCst);
        Self::from("spied")
    }
}

#[tokio::test(start_paused = true)]
async fn progress_not_converted_when_nobody_listens() {
    let conversions = Arc::new(AtomicUsize::new(0));
    let spy = || Spy(Arc::clone(&conversions));

    report_progress(spy());
    Fencing::new()
        .timeout(Duration::from_secs(1))
        .run(async { report_progress(spy()) })
        .await
        .unwrap();
    assert_eq!(
        conversions.load(SeqCst),
        0,
        "no registry, no subscriber: the message is not even converted"
    );

    let registry = Registry::new();
    let progress = Fencing::new()
        .register(&registry, "op")
        .run(async {
            report_progress(spy());
            registry.list()[0].progress().cloned()
        })
        .await
        .unwrap();
    assert_eq!(
        conversions.load(SeqCst),
        1,
        "converted once it is listened to"
    );
    assert_eq!(progress.unwrap().message(), "spied");
}
