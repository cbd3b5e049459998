//! The budget a request carries: read from its headers at receipt, capped
//! by the server's own, answered as the status table says when it runs out,
//! and refused when malformed.
//!
//! The loopback tests run on a paused clock kept still by a
//! [`FrozenClock`] while sockets work, so the budgets a handler reports are
//! exact; the in-process tests move the clock with `advance`.

mod support;

use bytes::Bytes;
use fencing::current;
use fencing_tower::codec::EnvoyTimeout;
use fencing_tower::codes::{BUDGET, DEADLINE};
use fencing_tower::server::{body::RequestBody, FenceLayer, OnMalformed, RequestContext};
use fencing_tower::status::Stage;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use support::{freeze_clock, get, next, raw_request, read_to_end, seen, serve, TestServer};
use tokio::sync::mpsc;
use tower::{service_fn, ServiceBuilder, ServiceExt};

/// What a handler saw of its budget.
#[derive(Debug, PartialEq)]
struct Budget {
    remaining: Option<Duration>,
    inbound: Option<Duration>,
}

/// A server with a budget of its own of 10 s whose handler reports the
/// budget it sees and counts its calls.
async fn reporting_server(
    layer: FenceLayer,
) -> (
    TestServer,
    mpsc::UnboundedReceiver<Budget>,
    Arc<AtomicUsize>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let handler = service_fn(move |request: Request<hyper::body::Incoming>| {
        counted.fetch_add(1, SeqCst);
        let inbound = request
            .extensions()
            .get::<RequestContext>()
            .and_then(RequestContext::inbound_budget);
        let _ = tx.send(Budget {
            remaining: current().remaining(),
            inbound,
        });
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
    });
    let layer = layer.budget(Duration::from_secs(10));
    let server = serve(ServiceBuilder::new().layer(layer).service(handler)).await;
    (server, rx, calls)
}

async fn status_of(server: &TestServer, headers: &str) -> String {
    let mut client = raw_request(
        server.addr(),
        &get("/", &format!("{headers}connection: close\r\n")),
    )
    .await;
    read_to_end(&mut client).await
}

#[tokio::test(start_paused = true)]
async fn budget_header_shortens_only() {
    let _still = freeze_clock();
    let (server, mut seen, _) = reporting_server(FenceLayer::new()).await;

    let cases = [
        // A tighter header shortens the server's 10 s...
        ("connect-timeout-ms: 3000\r\n", Some(3_000), Some(3_000)),
        // ...a looser one does not extend it...
        ("connect-timeout-ms: 60000\r\n", Some(10_000), Some(60_000)),
        // ...grpc-timeout counts on gRPC requests only...
        (
            "content-type: application/grpc\r\ngrpc-timeout: 1500m\r\n",
            Some(1_500),
            Some(1_500),
        ),
        ("grpc-timeout: 1500m\r\n", Some(10_000), None),
        // ...and the tightest header wins.
        (
            "content-type: application/grpc\r\ngrpc-timeout: 2S\r\nconnect-timeout-ms: 2500\r\n",
            Some(2_000),
            Some(2_000),
        ),
        ("", Some(10_000), None),
    ];
    for (headers, remaining, inbound) in cases {
        let response = status_of(&server, headers).await;
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{headers:?}: {response}"
        );
        let expected = Budget {
            remaining: remaining.map(Duration::from_millis),
            inbound: inbound.map(Duration::from_millis),
        };
        assert_eq!(next(&mut seen).await, expected, "{headers:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn budget_header_opt_in_codecs() {
    let _still = freeze_clock();
    let (server, mut seen, _) = reporting_server(FenceLayer::new().codec(EnvoyTimeout)).await;
    status_of(&server, "x-envoy-expected-rq-timeout-ms: 700\r\n").await;
    assert_eq!(
        next(&mut seen).await.remaining,
        Some(Duration::from_millis(700))
    );

    let (server, mut seen, _) = reporting_server(FenceLayer::new().clear_codecs()).await;
    status_of(&server, "connect-timeout-ms: 700\r\n").await;
    assert_eq!(
        next(&mut seen).await,
        Budget {
            remaining: Some(Duration::from_secs(10)),
            inbound: None,
        },
        "no codec, no header read"
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_budget_header() {
    let _still = freeze_clock();
    let (server, mut seen, calls) = reporting_server(FenceLayer::new()).await;
    let malformed = [
        "connect-timeout-ms: -5\r\n",
        "connect-timeout-ms: 12345678901\r\n",
        "connect-timeout-ms: 1.5\r\n",
        "connect-timeout-ms: 3\u{e9}\r\n", // not ASCII
        "content-type: application/grpc\r\ngrpc-timeout: 123456789S\r\n",
        "content-type: application/grpc\r\ngrpc-timeout: 10x\r\n",
        "connect-timeout-ms: 100\r\nconnect-timeout-ms: soon\r\n",
    ];
    for headers in malformed {
        let response = status_of(&server, headers).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{headers:?}: {response}"
        );
    }
    assert_eq!(calls.load(SeqCst), 0, "the handler was never called");

    let (server, mut ignoring, calls) =
        reporting_server(FenceLayer::new().on_malformed(OnMalformed::Ignore)).await;
    for headers in malformed {
        let response = status_of(&server, headers).await;
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{headers:?}: {response}"
        );
        assert_eq!(
            next(&mut ignoring).await,
            Budget {
                remaining: Some(Duration::from_secs(10)),
                inbound: None,
            },
            "{headers:?}: served as if the header were absent"
        );
    }
    assert_eq!(calls.load(SeqCst), malformed.len());
    assert!(seen.try_recv().is_err());
}

/// A handler that takes `secs` to answer.
fn slow(
    secs: u64,
) -> impl tower::Service<
    Request<RequestBody<String>>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<String>, Infallible>> + Send,
> + Clone {
    service_fn(move |_: Request<RequestBody<String>>| async move {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        Ok::<_, Infallible>(Response::new(String::from("done")))
    })
}

fn request(headers: &[(&str, &str)]) -> Request<String> {
    let mut builder = Request::builder();
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(String::new()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_tightest_budget_fires_with_its_code() {
    let layer = FenceLayer::new()
        .budget(Duration::from_secs(10))
        .watch_request_body();
    for (header, code, after) in [("3000", DEADLINE, 3), ("60000", BUDGET, 10)] {
        let service = ServiceBuilder::new().layer(layer.clone()).service(slow(60));
        let start = tokio::time::Instant::now();
        let response = service
            .oneshot(request(&[("connect-timeout-ms", header)]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(start.elapsed(), Duration::from_secs(after));
        let cancelled = response.extensions().get::<fencing::Cancelled>().unwrap();
        assert!(cancelled.cancelled_by(code), "{header}: {cancelled}");
        assert!(response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn spent_budget_not_called() {
    let (hook, mut reported) = seen();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let service = ServiceBuilder::new()
        .layer(FenceLayer::new().on_cancel(hook))
        .service(service_fn(move |_: Request<String>| {
            counted.fetch_add(1, SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        }));
    let spent = [
        ("connect-timeout-ms", "0"),
        ("content-type", "application/grpc"),
        ("grpc-timeout", "0n"),
    ];
    for headers in [&spent[..1], &spent[1..]] {
        let response = service.clone().oneshot(request(headers)).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::GATEWAY_TIMEOUT,
            "{headers:?}"
        );
        let seen = next(&mut reported).await;
        assert_eq!(seen.codes, [DEADLINE]);
        assert_eq!(seen.status, Some(StatusCode::GATEWAY_TIMEOUT));
    }
    assert_eq!(
        calls.load(SeqCst),
        0,
        "a spent budget never reaches the handler"
    );

    // The server's own budget of zero, too.
    let zero = ServiceBuilder::new()
        .layer(
            FenceLayer::new()
                .budget(Duration::ZERO)
                .watch_request_body(),
        )
        .service(slow(0));
    let response = zero.oneshot(request(&[])).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn deadline_while_reading_the_body_is_408() {
    let (hook, mut reported) = seen();
    let upload = |request: Request<RequestBody<http_body_util::channel::Channel<Bytes>>>| async {
        let body = request.into_body().collect().await.unwrap().to_bytes();
        tokio::time::sleep(Duration::from_secs(5)).await; // then too slow
        Ok::<_, Infallible>(Response::new(format!("{} bytes", body.len())))
    };
    let service = ServiceBuilder::new()
        .layer(
            FenceLayer::new()
                .budget(Duration::from_secs(2))
                .watch_request_body()
                .on_cancel(hook),
        )
        .service(service_fn(upload));

    // The body never ends: the budget fires while it is read.
    let (mut sender, body) = http_body_util::channel::Channel::<Bytes>::new(1);
    sender.send_data(Bytes::from_static(b"half")).await.unwrap();
    let response = service.clone().oneshot(Request::new(body)).await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    let seen = next(&mut reported).await;
    assert_eq!(seen.stage, Stage::RequestBody);
    assert_eq!(seen.codes, [BUDGET]);

    // Read whole, the handler is then too slow: a 504.
    let (mut sender, body) = http_body_util::channel::Channel::<Bytes>::new(1);
    let request = Request::new(body);
    let response = tokio::spawn(service.oneshot(request));
    sender
        .send_data(Bytes::from_static(b"whole"))
        .await
        .unwrap();
    drop(sender);
    let response = response.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(next(&mut reported).await.stage, Stage::Handler);
}

#[tokio::test(start_paused = true)]
async fn status_table_is_replaceable() {
    let service = ServiceBuilder::new()
        .layer(
            FenceLayer::new()
                .budget(Duration::from_secs(1))
                .watch_request_body()
                .status(|cancelled, _| {
                    assert!(cancelled.cancelled_by(BUDGET));
                    StatusCode::SERVICE_UNAVAILABLE
                }),
        )
        .service(slow(5));
    let response = service.oneshot(request(&[])).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn context_is_current_in_call_and_in_the_extensions() {
    #[derive(Clone)]
    struct Probe(mpsc::UnboundedSender<(Option<Duration>, Option<Duration>)>);

    impl tower::Service<Request<String>> for Probe {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<String>, Infallible>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<String>) -> Self::Future {
            // Inside `call` itself, not only in the future it returns.
            let in_call = current().remaining();
            let extension = request
                .extensions()
                .get::<RequestContext>()
                .and_then(|context| context.fencing().remaining());
            let _ = self.0.send((in_call, extension));
            std::future::ready(Ok(Response::new(String::new())))
        }
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let service = ServiceBuilder::new()
        .layer(FenceLayer::new().budget(Duration::from_secs(4)))
        .service(Probe(tx));
    service.oneshot(request(&[])).await.unwrap();
    let four = Some(Duration::from_secs(4));
    assert_eq!(next(&mut rx).await, (four, four));
}

#[test]
fn request_context_traits() {
    fn assert_traits<T>()
    where
        T: Clone + Send + Sync + Unpin + UnwindSafe + RefUnwindSafe + std::fmt::Debug + 'static,
    {
    }
    assert_traits::<RequestContext>();
}
