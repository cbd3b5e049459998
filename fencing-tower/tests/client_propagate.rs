//! The client layer against `tower_test` mocks, polled by hand on a paused
//! clock: what it stamps, when it refuses to send, how it stops a call, and
//! how errors come out.

mod support;

use fencing::{Cancelled, Fencing, ReasonKind, Token};
use fencing_tower::client::{future::ResponseFuture, PropagateBudget, PropagateBudgetLayer};
use fencing_tower::codec::{EnvoyTimeout, GrpcTimeout, HeaderBudget, Unit};
use fencing_tower::BoxError;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::Request;
use std::convert::Infallible;
use std::fmt;
use std::future::pending;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{self, Instant};
use tokio_test::{assert_pending, assert_ready, assert_ready_err, assert_ready_ok, task};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_test::mock;

const BUDGET: &str = "connect-timeout-ms";

type Mock = (
    mock::Spawn<PropagateBudget<mock::Mock<Request<()>, &'static str>>>,
    mock::Handle<Request<()>, &'static str>,
);

fn client(layer: PropagateBudgetLayer) -> Mock {
    mock::spawn_layer(layer)
}

fn request_with(name: &str, value: &str) -> Request<()> {
    Request::builder().header(name, value).body(()).unwrap()
}

fn cancelled(err: &BoxError) -> &Cancelled {
    err.downcast_ref::<Cancelled>()
        .unwrap_or_else(|| panic!("not a `Cancelled`: {err:?}"))
}

/// The values of `name` on the request the mock received.
fn values(request: &Request<()>, name: &str) -> Vec<String> {
    request
        .headers()
        .get_all(name)
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn stamps_remaining_rounded_up() {
    let (mut service, mut handle) = client(PropagateBudgetLayer::new());
    let context = Fencing::new().timeout(Duration::from_micros(1_234_500));

    assert_ready_ok!(service.poll_ready());
    let mut response = task::spawn(context.in_scope(|| service.call(Request::new(()))));
    assert_pending!(response.poll());

    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(values(&request, BUDGET), ["1235"]);
    send.send_response("ok");
    assert_eq!(assert_ready_ok!(response.poll()), "ok");
}

#[tokio::test(start_paused = true)]
async fn stamps_what_is_left_when_called() {
    let (mut service, mut handle) = client(PropagateBudgetLayer::new());
    let context = Fencing::new().timeout(Duration::from_secs(10));
    time::advance(Duration::from_micros(3_000_001)).await;

    assert_ready_ok!(service.poll_ready());
    let _response = context.in_scope(|| service.call(Request::new(())));
    let (request, _send) = handle.next_request().await.unwrap();
    // 6,999.999 ms left: sent as 7,000.
    assert_eq!(values(&request, BUDGET), ["7000"]);
}

#[tokio::test(start_paused = true)]
async fn stamps_with_the_configured_codec() {
    let budget = || Fencing::new().timeout(Duration::from_nanos(1_234_500_500));
    let grpc = || {
        Request::builder()
            .header(CONTENT_TYPE, "application/grpc+proto")
            .body(())
            .unwrap()
    };
    let cases: [(PropagateBudgetLayer, &str, Request<()>, &str); 4] = [
        (
            PropagateBudgetLayer::new().codec(GrpcTimeout),
            "grpc-timeout",
            grpc(),
            "1234501u",
        ),
        (
            PropagateBudgetLayer::new().codec(EnvoyTimeout),
            "x-envoy-expected-rq-timeout-ms",
            Request::new(()),
            "1235",
        ),
        (
            PropagateBudgetLayer::new().codec(HeaderBudget::new(
                HeaderName::from_static("x-budget-s"),
                Unit::Seconds,
            )),
            "x-budget-s",
            Request::new(()),
            "2",
        ),
        (
            PropagateBudgetLayer::new().codec(HeaderBudget::new(
                HeaderName::from_static("x-budget-us"),
                Unit::Micros,
            )),
            "x-budget-us",
            Request::new(()),
            "1234501",
        ),
    ];
    for (layer, name, request, expected) in cases {
        let (mut service, mut handle) = client(layer);
        assert_ready_ok!(service.poll_ready());
        let _response = budget().in_scope(|| service.call(request));
        let (request, _send) = handle.next_request().await.unwrap();
        assert_eq!(values(&request, name), [expected], "{name}");
        assert!(
            request.headers().get(BUDGET).is_none(),
            "{name}: one header only"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn far_deadline_saturates_or_coarsens_the_header() {
    // 200 days: beyond `connect-timeout-ms`'s ten digits of milliseconds.
    let context = Fencing::new().timeout(Duration::from_secs(86_400 * 200));
    let grpc = || {
        Request::builder()
            .header(CONTENT_TYPE, "application/grpc")
            .body(())
            .unwrap()
    };
    let cases = [
        (
            PropagateBudgetLayer::new(),
            BUDGET,
            Request::new(()),
            "9999999999",
        ),
        (
            PropagateBudgetLayer::new().codec(GrpcTimeout),
            "grpc-timeout",
            grpc(),
            "17280000S",
        ),
    ];
    for (layer, name, request, expected) in cases {
        let (mut service, mut handle) = client(layer);
        assert_ready_ok!(service.poll_ready());
        let _response = context.in_scope(|| service.call(request));
        let (request, _send) = handle.next_request().await.unwrap();
        assert_eq!(values(&request, name), [expected], "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_only_on_grpc_requests() {
    let (mut service, mut handle) = client(PropagateBudgetLayer::new().codec(GrpcTimeout));
    let context = Fencing::new().timeout(Duration::from_secs(1));

    assert_ready_ok!(service.poll_ready());
    let _response = context.in_scope(|| service.call(Request::new(())));
    let (request, _send) = handle.next_request().await.unwrap();
    assert!(request.headers().is_empty(), "{:?}", request.headers());
}

#[tokio::test(start_paused = true)]
async fn no_deadline_no_header() {
    let (mut service, mut handle) = client(PropagateBudgetLayer::new());
    let shutdown = Token::new();
    let without_deadline = [
        Fencing::new(),
        Fencing::new().token(&shutdown).code("shutdown"),
        // An overflowing timeout is no deadline.
        Fencing::new().timeout(Duration::MAX),
    ];
    for context in without_deadline {
        assert_ready_ok!(service.poll_ready());
        let _response = context.in_scope(|| service.call(Request::new(())));
        let (request, _send) = handle.next_request().await.unwrap();
        assert!(request.headers().is_empty(), "{context:?}");
    }

    // Outside any context: nothing bound, nothing stamped, nothing fenced.
    assert_ready_ok!(service.poll_ready());
    let mut response = task::spawn(service.call(request_with(BUDGET, "250")));
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(values(&request, BUDGET), ["250"], "left as it was");
    send.send_response("ok");
    assert_eq!(assert_ready_ok!(response.poll()), "ok");
}

#[tokio::test(start_paused = true)]
async fn tighter_existing_header_kept() {
    let (mut service, mut handle) = client(PropagateBudgetLayer::new());
    let context = Fencing::new().timeout(Duration::from_secs(1));
    let cases: [(&[&str], &str); 6] = [
        (&["300"], "300"),
        (&["1000"], "1000"),
        (&["5000"], "1000"),
        (&["soon"], "1000"),
        (&["-5"], "1000"),
        (&["9000", "bad", "400", "700"], "400"),
    ];
    for (existing, expected) in cases {
        let mut request = Request::new(());
        for value in existing {
            let value = HeaderValue::from_str(value).unwrap();
            request.headers_mut().append(BUDGET, value);
        }
        assert_ready_ok!(service.poll_ready());
        let _response = context.in_scope(|| service.call(request));
        let (request, _send) = handle.next_request().await.unwrap();
        assert_eq!(values(&request, BUDGET), [expected], "{existing:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn expired_budget_never_reaches_the_inner_service() {
    let shutdown = Token::new();
    shutdown.cancel_with("draining");
    let spent = [
        (
            Fencing::new().timeout(Duration::ZERO).code("budget"),
            "budget",
            ReasonKind::Timeout,
        ),
        (
            Fencing::new()
                .deadline(Instant::now() - Duration::from_secs(1))
                .code("deadline"),
            "deadline",
            ReasonKind::Deadline,
        ),
        (
            Fencing::new()
                .timeout(Duration::from_secs(30))
                .token(&shutdown)
                .code("shutdown"),
            "shutdown",
            ReasonKind::Token,
        ),
    ];
    for (context, code, kind) in spent {
        let (mut service, mut handle) = client(PropagateBudgetLayer::new());
        assert_ready_ok!(service.poll_ready());
        let mut response = task::spawn(context.in_scope(|| service.call(Request::new(()))));

        let err = assert_ready_err!(response.poll(), "resolves in its first poll");
        let cancelled = cancelled(&err);
        assert!(cancelled.cancelled_by(code), "{cancelled:?}");
        assert_eq!(cancelled.reasons().len(), 1, "{cancelled:?}");
        assert_eq!(cancelled.reason().kind(), kind);
        assert_pending!(handle.poll_request(), "the inner service never saw it");
    }
}

#[tokio::test(start_paused = true)]
async fn budget_spent_while_waiting_to_call_is_refused() {
    let (mut service, mut handle) = client(PropagateBudgetLayer::new());
    let context = Fencing::new()
        .timeout(Duration::from_secs(1))
        .code("budget");
    assert_ready_ok!(service.poll_ready());
    time::advance(Duration::from_secs(1)).await;
    assert_eq!(context.remaining(), Some(Duration::ZERO));

    let mut response = task::spawn(context.in_scope(|| service.call(Request::new(()))));
    let err = assert_ready_err!(response.poll());
    assert!(cancelled(&err).cancelled_by("budget"));
    assert!(cancelled(&err).is_timeout());
    assert_pending!(handle.poll_request());
}

#[tokio::test(start_paused = true)]
async fn call_stopped_at_the_deadline_with_the_context_code() {
    let (mut service, mut handle) = client(PropagateBudgetLayer::new());
    let context = Fencing::new()
        .timeout(Duration::from_secs(2))
        .code("budget");

    assert_ready_ok!(service.poll_ready());
    let mut response = task::spawn(context.in_scope(|| service.call(Request::new(()))));
    assert_pending!(response.poll());
    let (_request, _send) = handle.next_request().await.unwrap();

    time::advance(Duration::from_millis(1_999)).await;
    assert_pending!(response.poll());
    time::advance(Duration::from_millis(1)).await;
    assert!(response.is_woken(), "the fence's timer woke the caller");
    let err = assert_ready_err!(response.poll());
    let cancelled = cancelled(&err);
    assert!(cancelled.cancelled_by("budget"));
    assert!(cancelled.is_timeout());
    assert_eq!(cancelled.reason().message(), "timed out after 2s");
}

#[tokio::test(start_paused = true)]
async fn deadline_reason_kept_through_the_call() {
    let (mut service, mut handle) = client(PropagateBudgetLayer::new());
    let at = Instant::now() + Duration::from_millis(1_500);
    let context = Fencing::new().deadline(at).code("deadline");

    assert_ready_ok!(service.poll_ready());
    let mut response = task::spawn(context.in_scope(|| service.call(Request::new(()))));
    assert_pending!(response.poll());
    let (request, _send) = handle.next_request().await.unwrap();
    assert_eq!(values(&request, BUDGET), ["1500"]);

    time::advance(Duration::from_millis(1_500)).await;
    let err = assert_ready_err!(response.poll());
    let cancelled = cancelled(&err);
    assert!(cancelled.is_deadline(), "{cancelled:?}");
    assert!(cancelled.cancelled_by("deadline"));
    assert!(!cancelled.is_timeout());
}

#[tokio::test(start_paused = true)]
async fn other_triggers_of_the_context_stop_the_call() {
    let (mut service, mut handle) = client(PropagateBudgetLayer::new());
    let shutdown = Token::new();
    let context = Fencing::new()
        .timeout(Duration::from_secs(30))
        .code("budget")
        .token(&shutdown)
        .code("shutdown");

    assert_ready_ok!(service.poll_ready());
    let mut response = task::spawn(context.in_scope(|| service.call(Request::new(()))));
    assert_pending!(response.poll());
    let (_request, _send) = handle.next_request().await.unwrap();

    shutdown.cancel_with("SIGTERM");
    assert!(response.is_woken());
    let err = assert_ready_err!(response.poll());
    let cancelled = cancelled(&err);
    assert!(cancelled.cancelled_by("shutdown"));
    assert!(!cancelled.cancelled_by("budget"));
    assert_eq!(cancelled.to_string(), "cancelled: shutdown: SIGTERM");
}

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn interrupted_call_is_dropped_before_the_error() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let slow = service_fn(move |_: Request<()>| {
        let guard = DropFlag(flag.clone());
        async move {
            let _guard = guard;
            pending::<Result<(), Infallible>>().await
        }
    });
    let mut service = PropagateBudget::new(slow);
    let context = Fencing::new().timeout(Duration::from_secs(1));

    let mut response = task::spawn(context.in_scope(|| service.call(Request::new(()))));
    assert_pending!(response.poll());
    time::advance(Duration::from_secs(1)).await;
    assert!(!dropped.load(SeqCst));
    let err = assert_ready_err!(response.poll());
    assert!(
        dropped.load(SeqCst),
        "dropped within the poll that returned the error"
    );
    assert!(cancelled(&err).is_timeout());
}

#[tokio::test(start_paused = true)]
async fn response_ready_with_the_deadline_wins() {
    let (mut service, mut handle) = client(PropagateBudgetLayer::new());
    let context = Fencing::new().timeout(Duration::from_secs(1));

    assert_ready_ok!(service.poll_ready());
    let mut response = task::spawn(context.in_scope(|| service.call(Request::new(()))));
    assert_pending!(response.poll());
    let (_request, send) = handle.next_request().await.unwrap();
    time::advance(Duration::from_secs(1)).await;
    send.send_response("just in time");
    assert_eq!(assert_ready_ok!(response.poll()), "just in time");
}

#[derive(Debug)]
struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refused by the peer")
    }
}

impl std::error::Error for Refused {}

#[tokio::test(start_paused = true)]
async fn inner_error_passed_through() {
    let (mut service, mut handle) = client(PropagateBudgetLayer::new());
    let context = Fencing::new().timeout(Duration::from_secs(1));

    assert_ready_ok!(service.poll_ready());
    let mut response = task::spawn(context.in_scope(|| service.call(Request::new(()))));
    let (_request, send) = handle.next_request().await.unwrap();
    send.send_error(Refused);
    let err = assert_ready_err!(response.poll());
    assert!(err.downcast_ref::<Refused>().is_some(), "{err:?}");
    assert!(err.downcast_ref::<Cancelled>().is_none());

    handle.send_error(Refused);
    let err = assert_ready_err!(service.poll_ready());
    assert!(
        err.downcast_ref::<Refused>().is_some(),
        "poll_ready's too: {err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn inner_not_ready_is_not_ready() {
    let (mut service, mut handle) = client(PropagateBudgetLayer::new());
    handle.allow(0);
    assert_pending!(service.poll_ready());
    handle.allow(1);
    assert!(service.is_woken());
    assert_ready_ok!(service.poll_ready());
}

#[tokio::test(start_paused = true)]
async fn declined_reason_still_sends() {
    let (mut service, mut handle) = client(PropagateBudgetLayer::new());
    let shutdown = Token::new();
    shutdown.cancel();
    let context = Fencing::new()
        .token(&shutdown)
        .code("shutdown")
        .timeout(Duration::from_secs(5))
        .code("budget")
        .policy(|reason| !reason.has_code("shutdown"));
    assert!(context.is_cancelled());

    assert_ready_ok!(service.poll_ready());
    let mut response = task::spawn(context.in_scope(|| service.call(Request::new(()))));
    assert_pending!(response.poll());
    let (request, _send) = handle.next_request().await.unwrap();
    assert_eq!(values(&request, BUDGET), ["5000"]);

    // The budget is not declined.
    time::advance(Duration::from_secs(5)).await;
    let err = assert_ready_err!(response.poll());
    assert!(cancelled(&err).cancelled_by("budget"));
    assert!(!cancelled(&err).cancelled_by("shutdown"));
}

#[tokio::test(start_paused = true)]
async fn inner_future_runs_in_the_context() {
    let inner =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(fencing::current().remaining()) });
    let context = Fencing::new().timeout(Duration::from_secs(3));
    let mut service = PropagateBudget::new(inner);
    let future = context.in_scope(|| service.call(Request::new(())));
    // Awaited outside the context: the fence carries it.
    assert_eq!(future.await.unwrap(), Some(Duration::from_secs(3)));
}

#[tokio::test(start_paused = true)]
async fn layer_outside_buffer_sees_the_caller_context() {
    let echo = service_fn(|request: Request<()>| async move {
        Ok::<_, Infallible>(request.headers().get(BUDGET).cloned())
    });
    let context = Fencing::new().timeout(Duration::from_secs(4));

    let outside = ServiceBuilder::new()
        .layer(PropagateBudgetLayer::new())
        .buffer(4)
        .service(echo);
    let stamped = context
        .clone()
        .bind(outside.oneshot(Request::new(())))
        .await;
    assert_eq!(stamped.unwrap().unwrap(), "4000");

    // Inside the buffer, `call` runs on the buffer's worker task, which has
    // no context: nothing is stamped.
    let inside = ServiceBuilder::new()
        .buffer(4)
        .layer(PropagateBudgetLayer::new())
        .service(echo);
    let stamped = context.bind(inside.oneshot(Request::new(()))).await;
    assert_eq!(stamped.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn cancelled_error_maps_to_a_status() {
    use tower::util::MapErrLayer;

    let service = ServiceBuilder::new()
        .layer(MapErrLayer::new(|err: BoxError| {
            match err.downcast::<Cancelled>() {
                Ok(cancelled) if cancelled.is_timeout() => 504,
                Ok(_) => 503,
                Err(_) => 500,
            }
        }))
        .layer(PropagateBudgetLayer::new())
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(())
        }));
    let spent = Fencing::new().timeout(Duration::ZERO);
    let status = spent.bind(service.oneshot(Request::new(()))).await;
    assert_eq!(status, Err(504));
}

#[test]
fn contract() {
    fn assert_traits<T: Send + Sync + Unpin + UnwindSafe + RefUnwindSafe + fmt::Debug>() {}
    assert_traits::<PropagateBudgetLayer>();
    assert_traits::<PropagateBudget<()>>();
    // Like `Fenced`, it keeps tokio's `Sleep` inline and pinned, so it is
    // neither `Unpin` nor `RefUnwindSafe`.
    fn assert_send_sync_debug<T: Send + Sync + fmt::Debug>() {}
    assert_send_sync_debug::<ResponseFuture<std::future::Ready<Result<(), Infallible>>>>();

    fn assert_clone<T: Clone>() {}
    assert_clone::<PropagateBudgetLayer>();
    assert_clone::<PropagateBudget<()>>();

    const LAYER: PropagateBudgetLayer = PropagateBudgetLayer::new();
    const SERVICE: PropagateBudget<u8> = PropagateBudget::new(1);
    assert_eq!(*SERVICE.get_ref(), 1);
    let debug = format!("{LAYER:?}");
    assert!(debug.contains("ConnectTimeout"), "{debug}");
    let debug = format!("{:?}", PropagateBudget::new(()).codec(GrpcTimeout));
    assert!(debug.contains("GrpcTimeout"), "{debug}");
}

#[tokio::test(start_paused = true)]
async fn response_future_debug() {
    let mut service = PropagateBudget::new(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(())
    }));
    let spent = Fencing::new().timeout(Duration::ZERO).code("budget");
    let refused = spent.in_scope(|| service.call(Request::new(())));
    let debug = format!("{refused:?}");
    assert!(
        debug.contains("refused") && debug.contains("budget"),
        "{debug}"
    );
    let mut refused = task::spawn(refused);
    assert_ready!(refused.poll()).unwrap_err();

    let live = Fencing::new().timeout(Duration::from_secs(1));
    let sending = live.in_scope(|| service.call(Request::new(())));
    assert!(format!("{sending:?}").contains("fence"));
}
