//! Streamed response bodies: polled inside the request's context, ended by
//! its deadline with an error the client sees, and a body dropped before
//! its end is the client going away.

mod support;

use bytes::Bytes;
use fencing::current;
use fencing_tower::codes::{BUDGET, CLIENT_DISCONNECTED, DEADLINE};
use fencing_tower::server::FenceLayer;
use fencing_tower::status::Stage;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::channel::{Channel, Sender};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use support::{next, seen, serve, within, LIMIT};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};

/// A server whose handler answers with a streaming body fed by the test
/// (the sender comes over `senders`), under a budget of 2 s of its own.
async fn streaming_server() -> (
    support::TestServer,
    mpsc::UnboundedReceiver<support::Seen>,
    mpsc::UnboundedReceiver<Sender<Bytes>>,
) {
    let (hook, reported) = seen();
    let (senders_tx, senders) = mpsc::unbounded_channel();
    let handler = service_fn(move |_: Request<Incoming>| {
        let (sender, body) = Channel::<Bytes>::new(1);
        let _ = senders_tx.send(sender);
        async move { Ok::<_, Infallible>(Response::new(body)) }
    });
    let layer = FenceLayer::new()
        .budget(Duration::from_secs(2))
        .on_cancel(hook);
    let server = serve(ServiceBuilder::new().layer(layer).service(handler)).await;
    (server, reported, senders)
}

async fn http1_client(
    server: &support::TestServer,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = within(LIMIT, tokio::net::TcpStream::connect(server.addr()))
        .await
        .unwrap();
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

async fn http2_client(
    server: &support::TestServer,
) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let stream = within(LIMIT, tokio::net::TcpStream::connect(server.addr()))
        .await
        .unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    sender
}

fn get() -> Request<Empty<Bytes>> {
    Request::builder()
        .uri("http://test/stream")
        .body(Empty::new())
        .unwrap()
}

/// Reads one chunk the test sent, then waits for the body to end: the
/// budget is the only timer, so the paused clock moves to it.
async fn one_chunk_then_the_deadline(
    mut body: Incoming,
    senders: &mut mpsc::UnboundedReceiver<Sender<Bytes>>,
    reported: &mut mpsc::UnboundedReceiver<support::Seen>,
) {
    let start = Instant::now();
    let mut sender = next(senders).await;
    within(LIMIT, sender.send_data(Bytes::from_static(b"first")))
        .await
        .unwrap();
    let first = within(LIMIT, body.frame()).await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first");

    let end = within(LIMIT, body.frame()).await;
    assert!(
        matches!(end, Some(Err(_))),
        "the client sees the response cut short, not ended: {end:?}"
    );
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "at the budget, not before"
    );
    let seen = next(reported).await;
    assert_eq!(seen.codes, [BUDGET]);
    assert_eq!(seen.stage, Stage::ResponseBody);
    assert_eq!(seen.status, None, "the head was sent already");
    drop(sender);
}

#[tokio::test(start_paused = true)]
async fn response_body_deadline_ends_stream() {
    let (server, mut reported, mut senders) = streaming_server().await;

    let mut client = http1_client(&server).await;
    let response = within(LIMIT, client.send_request(get())).await.unwrap();
    assert_eq!(response.status(), 200);
    one_chunk_then_the_deadline(response.into_body(), &mut senders, &mut reported).await;

    // HTTP/2 resets the stream instead of closing the connection.
    let mut client = http2_client(&server).await;
    let response = within(LIMIT, client.send_request(get())).await.unwrap();
    one_chunk_then_the_deadline(response.into_body(), &mut senders, &mut reported).await;
}

#[tokio::test]
async fn response_body_dropped_fires_disconnect() {
    let (hook, mut reported) = seen();
    let (told_tx, mut told) = mpsc::unbounded_channel();
    let (senders_tx, mut senders) = mpsc::unbounded_channel();
    let handler = service_fn(move |_: Request<Incoming>| {
        let (sender, body) = Channel::<Bytes>::new(1);
        let _ = senders_tx.send(sender);
        // Work the handler leaves running, in the request's context.
        let told_tx = told_tx.clone();
        fencing::spawn(async move {
            let cancelled = current().cancelled().await;
            let _ = told_tx.send(cancelled.reason().code().map(|c| c.as_str().to_owned()));
        });
        async move { Ok::<_, Infallible>(Response::new(body)) }
    });
    let layer = FenceLayer::new().on_cancel(hook);
    let server = serve(ServiceBuilder::new().layer(layer).service(handler)).await;

    let mut client = http1_client(&server).await;
    let response = within(LIMIT, client.send_request(get())).await.unwrap();
    let mut sender = next(&mut senders).await;
    within(LIMIT, sender.send_data(Bytes::from_static(b"first")))
        .await
        .unwrap();
    let mut body = response.into_body();
    within(LIMIT, body.frame()).await.unwrap().unwrap();
    // The client goes away mid-stream.
    drop((body, client));

    assert_eq!(next(&mut told).await.as_deref(), Some(CLIENT_DISCONNECTED));
    let seen = next(&mut reported).await;
    assert_eq!(seen.codes, [CLIENT_DISCONNECTED]);
    assert_eq!(seen.stage, Stage::ResponseBody);
}

/// A body that reports, on each poll, the budget its context has left,
/// and ends after `frames` frames.
struct Remaining {
    frames: usize,
}

impl Body for Remaining {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.frames == 0 {
            return Poll::Ready(None);
        }
        self.frames -= 1;
        let left = current().remaining().map_or(0, |left| left.as_millis());
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(format!("{left};"))))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames == 0
    }
}

#[tokio::test(start_paused = true)]
async fn response_body_polled_in_the_request_context() {
    let service = ServiceBuilder::new()
        .layer(FenceLayer::new().budget(Duration::from_secs(10)))
        .service(service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(Remaining { frames: 2 }))
        }));
    let request = Request::builder()
        .header("connect-timeout-ms", "1500")
        .body(String::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    tokio::time::advance(Duration::from_millis(500)).await;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body, "1000;1000;",
        "the request's deadline, read in the body's polls"
    );
}

#[tokio::test(start_paused = true)]
async fn response_body_keeps_its_size_and_end() {
    let service = ServiceBuilder::new()
        .layer(FenceLayer::new().budget(Duration::from_secs(10)))
        .service(service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                Bytes::from_static(b"hello"),
            )))
        }));
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    let body = response.into_body();
    assert_eq!(
        body.size_hint().exact(),
        Some(5),
        "hyper can still send content-length"
    );
    assert!(!body.is_end_stream());
    let bytes = body.collect().await.unwrap().to_bytes();
    assert_eq!(bytes, "hello");

    let (hook, mut reported) = seen();
    let empty = ServiceBuilder::new()
        .layer(FenceLayer::new().on_cancel(hook))
        .service(service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }));
    let response = empty.oneshot(Request::new(String::new())).await.unwrap();
    assert!(response.body().is_end_stream());
    drop(response); // complete already: dropping it is no disconnect
    assert!(reported.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn deadline_code_travels_into_the_body() {
    // The header's budget is tighter than the server's: the body ends
    // with the `deadline` code.
    let (sender, body) = Channel::<Bytes>::new(1);
    let body = std::sync::Mutex::new(Some(body));
    let service = ServiceBuilder::new()
        .layer(FenceLayer::new().budget(Duration::from_secs(10)))
        .service(service_fn(move |_: Request<String>| {
            let body = body.lock().unwrap().take().unwrap();
            async move { Ok::<_, Infallible>(Response::new(body)) }
        }));
    let request = Request::builder()
        .header("connect-timeout-ms", "300")
        .body(String::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let err = response.into_body().collect().await.unwrap_err();
    let cancelled = err.downcast_ref::<fencing::Cancelled>().unwrap();
    assert!(cancelled.cancelled_by(DEADLINE), "{cancelled}");
    drop(sender);
}

/// Answers with the first reason's code in a header, and ends cut streams
/// with it in a trailer, as a protocol like gRPC does.
#[derive(Debug)]
struct Why;

impl fencing_tower::server::Protocol for Why {
    fn stopped(&self, cancelled: &fencing::Cancelled, _: Stage) -> Response<()> {
        let code = cancelled.reason().code().unwrap().as_str().to_owned();
        Response::builder().header("x-why", code).body(()).unwrap()
    }

    fn malformed(&self, _: &fencing_tower::codec::MalformedBudget) -> Response<()> {
        Response::builder()
            .header("x-why", "malformed")
            .body(())
            .unwrap()
    }

    fn cut(&self, cancelled: &fencing::Cancelled) -> Option<http::HeaderMap> {
        let mut trailers = http::HeaderMap::new();
        let code = cancelled.reason().code().unwrap().as_str().to_owned();
        trailers.insert("x-why", code.parse().unwrap());
        Some(trailers)
    }
}

#[tokio::test(start_paused = true)]
async fn a_protocol_answers_and_ends_cut_streams_with_trailers() {
    let (sender, body) = Channel::<Bytes>::new(1);
    let body = std::sync::Mutex::new(Some(body));
    let layer = FenceLayer::new()
        .budget(Duration::from_secs(1))
        .protocol(Why);
    let streaming = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(move |_: Request<String>| {
            let body = body.lock().unwrap().take().unwrap();
            async move { Ok::<_, Infallible>(Response::new(body)) }
        }));
    let response = streaming
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(
        collected.trailers().unwrap()["x-why"],
        BUDGET,
        "ended cleanly, with trailers"
    );
    drop(sender);

    let slow = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: Request<String>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }));
    let response = slow
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(response.headers()["x-why"], BUDGET);
    let malformed = Request::builder()
        .header("connect-timeout-ms", "x")
        .body(String::new())
        .unwrap();
    let response = slow.oneshot(malformed).await.unwrap();
    assert_eq!(response.headers()["x-why"], "malformed");
}

#[tokio::test(start_paused = true)]
async fn response_of_a_commit_past_the_deadline_is_delivered() {
    // The handler's protected commit outlasts the budget: the fence waits
    // for it, the handler answers, and its answer is delivered whole.
    let service = ServiceBuilder::new()
        .layer(FenceLayer::new().budget(Duration::from_secs(1)))
        .service(service_fn(|_: Request<String>| async {
            let _commit = fencing::protect();
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                Bytes::from_static(b"committed"),
            )))
        }));
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "committed");
}
