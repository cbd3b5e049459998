//! The client layer end to end: hyper-util's legacy client (and reqwest's,
//! with the `reqwest` feature) wrapped in it, against a hyper server on a
//! loopback socket.
//!
//! The clock is paused. While a budget must not fire, a [`FrozenClock`]
//! keeps it still even as the runtime waits on sockets; waits are bounded in
//! real time by [`within`], and the server reports what it received over a
//! channel, so no test depends on timing.

mod support;

use bytes::Bytes;
use fencing::{Cancelled, Fencing};
use fencing_tower::client::PropagateBudget;
use fencing_tower::codec::GrpcTimeout;
use fencing_tower::BoxError;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use std::future::pending;
use std::pin::pin;
use std::time::Duration;
use support::{freeze_clock, serve, within, TestServer, LIMIT};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::{service_fn, Service, ServiceExt};

type HyperClient = Client<HttpConnector, Empty<Bytes>>;

fn hyper_client() -> HyperClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A server handler that sends the headers of every request it receives,
/// then answers `200 OK`, or never answers if `answer` is false.
fn recorder(
    answer: bool,
) -> (
    impl Service<
            Request<Incoming>,
            Response = Response<Empty<Bytes>>,
            Error = Infallible,
            Future = impl Send,
        > + Clone
        + Send
        + 'static,
    mpsc::UnboundedReceiver<HeaderMap>,
) {
    let (seen, received) = mpsc::unbounded_channel();
    let handler = service_fn(move |request: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            let _ = seen.send(request.headers().clone());
            if !answer {
                pending::<()>().await;
            }
            Ok::<_, Infallible>(Response::new(Empty::new()))
        }
    });
    (handler, received)
}

fn get(server: &TestServer, probe: &str) -> Request<Empty<Bytes>> {
    Request::get(server.url("/"))
        .header("x-probe", probe)
        .body(Empty::new())
        .unwrap()
}

fn cancelled(err: &BoxError) -> &Cancelled {
    err.downcast_ref::<Cancelled>()
        .unwrap_or_else(|| panic!("not a `Cancelled`: {err:?}"))
}

#[tokio::test(start_paused = true)]
async fn client_stamps_remaining_rounded_up() {
    let (handler, mut seen) = recorder(true);
    let server = serve(handler).await;
    let _still = freeze_clock();

    let client = PropagateBudget::new(hyper_client());
    let context = Fencing::new().timeout(Duration::from_micros(1_234_500));
    let call = context.bind(client.oneshot(get(&server, "stamped")));
    let response = within(LIMIT, call).await.unwrap();
    assert_eq!(response.status(), 200);

    let headers = within(LIMIT, seen.recv()).await.unwrap();
    assert_eq!(headers["x-probe"], "stamped");
    assert_eq!(
        headers["connect-timeout-ms"], "1235",
        "1,234.5 ms, rounded up"
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn client_stamps_remaining_rounded_up_grpc_timeout() {
    let (handler, mut seen) = recorder(true);
    let server = serve(handler).await;
    let _still = freeze_clock();

    let client = PropagateBudget::new(hyper_client()).codec(GrpcTimeout);
    let mut request = get(&server, "grpc");
    let grpc = "application/grpc".parse().unwrap();
    request.headers_mut().insert(CONTENT_TYPE, grpc);
    let context = Fencing::new().timeout(Duration::from_nanos(1_234_500_500));
    let response = within(LIMIT, context.bind(client.oneshot(request)))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let headers = within(LIMIT, seen.recv()).await.unwrap();
    assert_eq!(
        headers["grpc-timeout"], "1234501u",
        "in whole µs, rounded up"
    );
    assert!(headers.get("connect-timeout-ms").is_none());
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn expired_budget_never_sent() {
    let (handler, mut seen) = recorder(true);
    let server = serve(handler).await;
    let _still = freeze_clock();
    let client = PropagateBudget::new(hyper_client());

    let spent = Fencing::new().timeout(Duration::ZERO).code("budget");
    let call = spent.bind(client.clone().oneshot(get(&server, "refused")));
    let err = within(LIMIT, call).await.unwrap_err();
    assert!(cancelled(&err).cancelled_by("budget"), "{err:?}");
    assert!(cancelled(&err).is_timeout());

    // A request with a budget left goes through the same client, and is the
    // only thing the server ever saw.
    let live = Fencing::new().timeout(Duration::from_secs(10));
    let call = live.bind(client.oneshot(get(&server, "probe")));
    within(LIMIT, call).await.unwrap();
    let headers = within(LIMIT, seen.recv()).await.unwrap();
    assert_eq!(headers["x-probe"], "probe");
    assert!(
        seen.try_recv().is_err(),
        "the refused request never arrived"
    );
    assert_eq!(server.accepted(), 1, "nor opened a connection");
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn slow_server_stopped_at_the_deadline() {
    let (handler, mut seen) = recorder(false);
    let server = serve(handler).await;
    let still = freeze_clock();

    let client = PropagateBudget::new(hyper_client());
    let start = Instant::now();
    let context = Fencing::new()
        .timeout(Duration::from_secs(5))
        .code("budget");
    let mut call = pin!(context.bind(client.oneshot(get(&server, "slow"))));

    // Handshake: the server has the request and will never answer.
    let headers = within(LIMIT, async {
        tokio::select! {
            headers = seen.recv() => headers.unwrap(),
            result = &mut call => panic!("ended before the server had it: {result:?}"),
        }
    })
    .await;
    assert_eq!(headers["connect-timeout-ms"], "5000");
    assert_eq!(start.elapsed(), Duration::ZERO);

    // Let the clock run: the only timer is the budget's.
    drop(still);
    let err = within(LIMIT, call).await.unwrap_err();
    assert!(cancelled(&err).cancelled_by("budget"), "{err:?}");
    assert!(cancelled(&err).is_timeout());
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(5),
        "at the deadline, not later"
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn connect_error_passed_through() {
    // A port that was just free: nothing listens on it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let _still = freeze_clock();

    let client = PropagateBudget::new(hyper_client());
    let request = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let context = Fencing::new().timeout(Duration::from_secs(10));
    let err = within(LIMIT, context.bind(client.oneshot(request)))
        .await
        .unwrap_err();
    let inner = err
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .unwrap_or_else(|| panic!("not the client's own error: {err:?}"));
    assert!(inner.is_connect(), "{inner:?}");
}

#[cfg(feature = "reqwest")]
mod reqwest_client {
    use super::*;

    fn reqwest_client() -> PropagateBudget<reqwest::Client> {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        PropagateBudget::new(client)
    }

    fn get(server: &TestServer, probe: &str) -> reqwest::Request {
        let mut request =
            reqwest::Request::new(reqwest::Method::GET, server.url("/").parse().unwrap());
        request
            .headers_mut()
            .insert("x-probe", probe.parse().unwrap());
        request
    }

    #[tokio::test(start_paused = true)]
    async fn client_stamps_remaining_rounded_up_reqwest() {
        let (handler, mut seen) = recorder(true);
        let server = serve(handler).await;
        let _still = freeze_clock();

        let client = reqwest_client();
        let context = Fencing::new().timeout(Duration::from_micros(1_234_500));
        let call = context.bind(client.oneshot(get(&server, "reqwest")));
        let response = within(LIMIT, call).await.unwrap();
        assert_eq!(response.status(), 200);

        let headers = within(LIMIT, seen.recv()).await.unwrap();
        assert_eq!(headers["x-probe"], "reqwest");
        assert_eq!(headers["connect-timeout-ms"], "1235");
        server.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn expired_budget_never_sent_reqwest() {
        let (handler, mut seen) = recorder(true);
        let server = serve(handler).await;
        let _still = freeze_clock();
        let client = reqwest_client();

        let spent = Fencing::new().timeout(Duration::ZERO).code("budget");
        let call = spent.bind(client.clone().oneshot(get(&server, "refused")));
        let err = within(LIMIT, call).await.unwrap_err();
        assert!(cancelled(&err).cancelled_by("budget"), "{err:?}");

        let live = Fencing::new().timeout(Duration::from_secs(10));
        within(LIMIT, live.bind(client.oneshot(get(&server, "probe"))))
            .await
            .unwrap();
        let headers = within(LIMIT, seen.recv()).await.unwrap();
        assert_eq!(headers["x-probe"], "probe");
        assert!(
            seen.try_recv().is_err(),
            "the refused request never arrived"
        );
        assert_eq!(server.accepted(), 1);
        server.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn slow_server_stopped_at_the_deadline_reqwest() {
        let (handler, mut seen) = recorder(false);
        let server = serve(handler).await;
        let still = freeze_clock();

        let start = Instant::now();
        let context = Fencing::new()
            .timeout(Duration::from_secs(5))
            .code("budget");
        let mut call = pin!(context.bind(reqwest_client().oneshot(get(&server, "slow"))));
        let headers = within(LIMIT, async {
            tokio::select! {
                headers = seen.recv() => headers.unwrap(),
                result = &mut call => panic!("ended before the server had it: {result:?}"),
            }
        })
        .await;
        assert_eq!(headers["connect-timeout-ms"], "5000");

        drop(still);
        let err = within(LIMIT, call).await.unwrap_err();
        assert!(cancelled(&err).cancelled_by("budget"), "{err:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        server.shutdown().await;
    }
}
