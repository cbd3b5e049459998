//! The client layer over real loopback sockets, with a tonic `Channel`:
//! what goes on the wire, what never does, and what the caller sees.
//!
//! The servers are tonic `Routes` served by hyper, with no timer of their
//! own: what the client sees is the client side's doing. Every test runs
//! on a paused clock, frozen while budgets are measured.

mod support;

use fencing::{Fencing, Token};
use fencing_tonic::client::{PropagateDeadline, PropagateDeadlineLayer};
use fencing_tonic::codes::{DEADLINE, SHUTDOWN};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use support::{
    answering, channel, fed, freeze_clock, hanging, next, serve_hyper, source_codes, within, Probe,
    Started, TestServer, LIMIT,
};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::pb::HealthCheckRequest;
use tower::ServiceBuilder;

type Client = HealthClient<PropagateDeadline<Channel>>;

/// `probe`, served by hyper with no timer of its own.
async fn server(probe: Probe) -> TestServer {
    serve_hyper(tonic::service::Routes::new(HealthServer::new(probe))).await
}

async fn client(server: &TestServer, layer: PropagateDeadlineLayer) -> Client {
    let channel = channel(server).await;
    HealthClient::new(ServiceBuilder::new().layer(layer).service(channel))
}

fn request(timeout: Option<Duration>) -> tonic::Request<HealthCheckRequest> {
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}

#[tokio::test(start_paused = true)]
async fn grpc_client_stamps_rounded_up() {
    let (probe, mut started) = answering();
    let server = server(probe).await;
    let mut client = client(&server, PropagateDeadlineLayer::new()).await;
    let _frozen = freeze_clock();

    let ms = Duration::from_millis;
    let ns = Duration::from_nanos;
    for (budget, own, sent) in [
        // tonic's own encoding of 1,234,567,891 ns would be `1234567u`.
        (Some(ns(1_234_567_891)), None, Some("1234568u")),
        (Some(ns(1)), None, Some("1n")),
        (Some(ns(99_999_999)), None, Some("99999999n")),
        (Some(ns(100_000_001)), None, Some("100001u")),
        (
            Some(Duration::from_secs(400 * 86_400)),
            None,
            Some("34560000S"),
        ),
        // The request's own timeout, when it is the tighter.
        (Some(ms(1_500)), Some(ms(500)), Some("500000u")),
        (Some(ms(500)), Some(ms(2_000)), Some("500000u")),
        (None, Some(ms(2_000)), Some("2000000u")),
        // No deadline: none sent.
        (None, None, None),
        (Some(Duration::MAX), None, None),
    ] {
        let context = match budget {
            Some(budget) => Fencing::new().timeout(budget),
            None => Fencing::new(),
        };
        within(LIMIT, context.bind(client.check(request(own))))
            .await
            .unwrap();
        let handler: Started = next(&mut started).await;
        assert_eq!(handler.header.as_deref(), sent, "{budget:?} {own:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn grpc_expired_budget_never_sent() {
    let (probe, mut started) = answering();
    let server = server(probe).await;
    // Counts what reaches the transport.
    let sent = Arc::new(AtomicUsize::new(0));
    let count = sent.clone();
    let channel = ServiceBuilder::new()
        .layer(PropagateDeadlineLayer::new())
        .map_request(move |request: http::Request<tonic::body::Body>| {
            count.fetch_add(1, SeqCst);
            request
        })
        .service(channel(&server).await);
    let mut client = HealthClient::new(channel);
    let _frozen = freeze_clock();

    let spent = Fencing::new().timeout(Duration::ZERO).code(DEADLINE);
    let status = spent.bind(client.check(request(None))).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "cancelled: deadline: timed out after 0ns");
    assert_eq!(source_codes(&status), [DEADLINE]);

    // A budget that ran out while the caller worked.
    let budget = Fencing::new()
        .timeout(Duration::from_secs(1))
        .code("budget");
    tokio::time::advance(Duration::from_secs(2)).await;
    let status = budget.bind(client.check(request(None))).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(source_codes(&status), ["budget"]);

    // The request's own timeout, spent.
    let status = client
        .check(request(Some(Duration::ZERO)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);

    // Other triggers that fired: by the status table.
    let shutdown = Token::new();
    shutdown.cancel_with("server shutting down");
    let draining = Fencing::new().token(&shutdown).code(SHUTDOWN);
    let status = draining
        .bind(client.check(request(None)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let gone = Token::new();
    gone.cancel();
    let status = Fencing::new()
        .token(&gone)
        .code("user")
        .bind(client.check(request(None)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Cancelled);

    assert_eq!(sent.load(SeqCst), 0, "nothing reached the transport");
    assert!(started.try_recv().is_err(), "nor the server");
    within(LIMIT, client.check(request(None))).await.unwrap();
    assert_eq!(sent.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn grpc_cancelled_after_deadline_remapped() {
    let (probe, mut started) = hanging();
    let server = server(probe).await;
    let mut client = client(&server, PropagateDeadlineLayer::new()).await;

    // The `Channel` holds the call to the `grpc-timeout` it carries with a
    // timer of its own, which fires with the context's, and reports
    // CANCELLED "Timeout expired": the caller sees DEADLINE_EXCEEDED.
    let frozen = freeze_clock();
    let context = Fencing::new()
        .timeout(Duration::from_millis(100))
        .code(DEADLINE);
    let call = tokio::spawn(context.bind(async move { client.check(request(None)).await }));
    let handler = next(&mut started).await;
    assert_eq!(handler.header.as_deref(), Some("100000u"));
    drop(frozen);
    let status = within(LIMIT, call).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(source_codes(&status), [DEADLINE]);
    within(LIMIT, handler.dropped).await.unwrap();

    // A CANCELLED before the caller's deadline is tonic's own doing (here
    // `Endpoint::timeout`), and is left as it is.
    let channel = within(
        LIMIT,
        tonic::transport::Endpoint::from_shared(server.uri().to_string())
            .unwrap()
            .timeout(Duration::from_millis(50))
            .connect(),
    )
    .await
    .unwrap();
    let mut client = HealthClient::new(PropagateDeadline::new(channel));
    let frozen = freeze_clock();
    let context = Fencing::new().timeout(Duration::from_millis(100));
    let call = tokio::spawn(context.bind(async move { client.check(request(None)).await }));
    next(&mut started).await;
    drop(frozen);
    let status = within(LIMIT, call).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Cancelled);
    assert_eq!(status.message(), "Timeout expired");
}

/// What a client reading a response stream saw: a message, or its end.
type Read = Result<(), Option<tonic::Status>>;

/// Reads a `watch` of `client` inside `context`, telling each message and
/// the end to the receiver it returns.
fn read_watch(client: &Client, context: Fencing) -> mpsc::UnboundedReceiver<Read> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut client = client.clone();
    tokio::spawn(context.bind(async move {
        let mut stream = match client.watch(request(None)).await {
            Ok(response) => response.into_inner(),
            Err(status) => return drop(tx.send(Err(Some(status)))),
        };
        loop {
            let read = match stream.message().await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(None),
                Err(status) => Err(Some(status)),
            };
            let end = read.is_err();
            let _ = tx.send(read);
            if end {
                return;
            }
        }
    }));
    rx
}

#[tokio::test(start_paused = true)]
async fn grpc_client_bounds_response_stream() {
    let (probe, mut started) = fed();
    let server = server(probe).await;
    let client = client(&server, PropagateDeadlineLayer::new()).await;
    // Time moves only when the test moves it, once each message was read.
    let _frozen = freeze_clock();

    // Nothing bounds the stream on the server: the client ends it at its
    // deadline, 350 ms, after messages at 0, 100, 200 and 300 ms.
    let context = Fencing::new()
        .timeout(Duration::from_millis(350))
        .code(DEADLINE);
    let mut read = read_watch(&client, context);
    let watch = next(&mut started).await;
    assert_eq!(watch.started.header.as_deref(), Some("350000u"));
    for step in [100, 100, 100, 50] {
        watch.feed.send(()).unwrap();
        assert!(next(&mut read).await.is_ok());
        tokio::time::advance(Duration::from_millis(step)).await;
    }
    let status = next(&mut read)
        .await
        .unwrap_err()
        .expect("ended by the deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        status.message(),
        "cancelled: deadline: timed out after 350ms"
    );
    within(LIMIT, watch.started.dropped).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn grpc_client_skips_methods() {
    let (probe, mut started) = fed();
    let server = server(probe).await;
    let layer = PropagateDeadlineLayer::new().skip(|method| method.method() == "Watch");
    let mut client = client(&server, layer).await;
    let _frozen = freeze_clock();

    // A `Watch` in a context of 350 ms goes out without a deadline, and
    // outlives it.
    let context = Fencing::new().timeout(Duration::from_millis(350));
    let mut read = read_watch(&client, context.clone());
    let watch = next(&mut started).await;
    assert_eq!(watch.started.header, None);
    for _ in 0..6 {
        watch.feed.send(()).unwrap();
        assert!(next(&mut read).await.is_ok());
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    drop(watch.feed);
    assert!(
        matches!(next(&mut read).await, Err(None)),
        "ended by the server"
    );

    // Other methods keep theirs.
    let context = Fencing::new().timeout(Duration::from_millis(350));
    within(LIMIT, context.bind(client.check(request(None))))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn grpc_detached_call_keeps_only_its_own_timeout() {
    let (probe, mut started) = answering();
    let server = server(probe).await;
    let mut client = client(&server, PropagateDeadlineLayer::new()).await;
    let _frozen = freeze_clock();

    // The caller's budget is spent; a detached call goes out all the same.
    let spent = Fencing::new().timeout(Duration::ZERO);
    let audit = spent
        .clone()
        .bind(fencing::detach(client.check(request(None))));
    within(LIMIT, audit).await.unwrap();
    assert_eq!(next(&mut started).await.header, None);

    let own = request(Some(Duration::from_secs(2)));
    let audit = spent.bind(fencing::detach(client.check(own)));
    within(LIMIT, audit).await.unwrap();
    assert_eq!(next(&mut started).await.header.as_deref(), Some("2000000u"));
}
