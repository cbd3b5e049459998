//! With the `tracing` feature, a fence that cancels its body emits one event
//! per reason, with kind, code and message, in the current span.
#![cfg(feature = "tracing")]

use fencing::{Fencing, Token};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::pending;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

#[derive(Debug)]
struct Recorded {
    level: Level,
    target: String,
    fields: BTreeMap<String, String>,
    /// Names of the spans entered when the event was emitted.
    spans: Vec<String>,
}

#[derive(Default)]
struct State {
    next_id: AtomicU64,
    names: Mutex<BTreeMap<u64, String>>,
    entered: Mutex<Vec<u64>>,
    events: Mutex<Vec<Recorded>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// A subscriber that records events and the spans entered around them.
#[derive(Clone, Default)]
struct Recorder(Arc<State>);

impl std::ops::Deref for Recorder {
    type Target = State;

    fn deref(&self) -> &State {
        &self.0
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        self.names
            .lock()
            .unwrap()
            .insert(id, span.metadata().name().to_owned());
        Id::from_u64(id)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let names = self.names.lock().unwrap();
        let spans = self
            .entered
            .lock()
            .unwrap()
            .iter()
            .map(|id| names[id].clone())
            .collect();
        self.events.lock().unwrap().push(Recorded {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields,
            spans,
        });
    }

    fn enter(&self, span: &Id) {
        self.entered.lock().unwrap().push(span.into_u64());
    }

    fn exit(&self, _: &Id) {
        self.entered.lock().unwrap().pop();
    }
}

fn run_traced<F: std::future::Future>(future: F) -> (F::Output, Vec<Recorded>) {
    let recorder = Recorder::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let output = tracing::subscriber::with_default(recorder.clone(), || runtime.block_on(future));
    let events = std::mem::take(&mut *recorder.events.lock().unwrap());
    (output, events)
}

#[test]
fn tracing_events_one_per_reason_in_the_current_span() {
    let (result, events) = run_traced(async {
        let stop = Token::new();
        stop.cancel_with("SIGTERM");
        let fenced = Fencing::new()
            .timeout(Duration::ZERO)
            .code("budget")
            .token(&stop)
            .code("shutdown")
            .run(pending::<()>());
        let span = tracing::info_span!("request");
        let _entered = span.enter();
        fenced.await
    });
    assert_eq!(result.unwrap_err().reasons().len(), 2);
    assert_eq!(events.len(), 2, "{events:?}");

    let budget = &events[0];
    assert_eq!(budget.level, Level::DEBUG);
    assert_eq!(budget.target, "fencing::fence");
    assert_eq!(budget.fields["kind"], "Timeout");
    assert_eq!(budget.fields["code"], "budget");
    assert_eq!(budget.fields["message"], "timed out after 0ns");
    assert_eq!(budget.spans, ["request"]);

    let shutdown = &events[1];
    assert_eq!(shutdown.fields["kind"], "Token");
    assert_eq!(shutdown.fields["code"], "shutdown");
    assert_eq!(shutdown.fields["message"], "SIGTERM");
}

#[test]
fn tracing_events_none_when_the_body_completes() {
    let (result, events) = run_traced(async {
        let token = Token::new();
        let fenced = Fencing::new().token(&token).run(async {
            tokio::task::yield_now().await;
            token.cancel(); // fires, but completion wins the tie
            1
        });
        fenced.await
    });
    assert_eq!(result.unwrap(), 1);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn tracing_events_a_panicking_policy_is_a_warning() {
    let (faults, events) = run_traced(async {
        let stop = Token::new();
        stop.cancel_with("SIGTERM");
        let mut fenced = std::pin::pin!(Fencing::new()
            .token(&stop)
            .code("shutdown")
            .policy(|_| panic!("policy bug"))
            .run(pending::<()>()));
        assert!((&mut fenced).await.unwrap_err().cancelled_by("shutdown"));
        fenced.faults()
    });
    assert_eq!(faults, 1);
    let fault = &events[0];
    assert_eq!(fault.level, Level::WARN, "{events:?}");
    assert_eq!(fault.target, "fencing::fence");
    assert_eq!(fault.fields["message"], "policy panicked");
    assert_eq!(fault.fields["code"], "shutdown");
    assert_eq!(fault.fields["error"], "policy bug");
    assert_eq!(events.len(), 2, "then the cancellation: {events:?}");
    assert_eq!(events[1].level, Level::DEBUG);
}

#[test]
fn tracing_events_a_failed_condition_check_is_a_warning_under_its_code() {
    let (faults, events) = run_traced(async {
        let mut fenced = std::pin::pin!(Fencing::new()
            .condition(Duration::from_secs(1), || Err::<bool, _>("probe down"))
            .code("probe")
            .timeout(Duration::from_millis(2_500))
            .code("budget")
            .run(pending::<()>()));
        assert!((&mut fenced).await.unwrap_err().cancelled_by("budget"));
        fenced.faults()
    });
    assert_eq!(faults, 2);
    let warnings: Vec<_> = events.iter().filter(|e| e.level == Level::WARN).collect();
    assert_eq!(warnings.len(), 2, "{events:?}");
    for fault in warnings {
        assert_eq!(fault.target, "fencing::fence");
        assert_eq!(fault.fields["message"], "condition check failed");
        assert_eq!(fault.fields["code"], "probe");
        assert_eq!(fault.fields["error"], "probe down");
    }
}

#[test]
fn tracing_events_progress_is_a_debug_event() {
    let registry = fencing::Registry::new();
    let (_, events) = run_traced(async {
        fencing::report_progress("outside any fence");
        let span = tracing::info_span!("export");
        let _entered = span.enter();
        Fencing::new()
            .register(&registry, "export")
            .run(async { fencing::report_progress(format!("{} rows", 7)) })
            .await
            .unwrap();
    });
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].target, "fencing::progress");
    assert_eq!(events[0].level, Level::DEBUG);
    assert_eq!(events[0].fields["message"], "outside any fence");
    assert_eq!(events[1].fields["message"], "7 rows");
    assert_eq!(events[1].spans, ["export"]);
}
