//! Helpers shared by the test files (`mod support;`): tonic servers on
//! loopback, clients with and without tonic's own timers, a health service
//! whose handlers the tests script, real-time bounds for every wait, and a
//! paused clock that stays still while sockets work.
// Each test binary uses only part of it.
#![allow(dead_code)]

use fencing_tonic::server::{CancelledCall, GrpcFenceLayer};
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::{Service, ServiceExt};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

// Shared with fencing-tower's tests; each binary uses only part of it.
#[allow(unused_imports)]
pub(crate) use fencing_test_support::{freeze_clock, next, on_drop, within, OnDrop, LIMIT};

/// What [`GrpcFenceLayer::on_cancel`] reported of one call.
#[derive(Debug)]
pub(crate) struct Seen {
    pub(crate) codes: Vec<String>,
    pub(crate) stage: fencing_tower::status::Stage,
    pub(crate) code: Option<tonic::Code>,
}

/// A hook for `GrpcFenceLayer::on_cancel` and the receiver of what it saw.
pub(crate) fn seen() -> (
    impl Fn(&CancelledCall<'_>) + Send + Sync + 'static,
    mpsc::UnboundedReceiver<Seen>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let hook = move |call: &CancelledCall<'_>| {
        let _ = tx.send(Seen {
            codes: codes_of(call.cancelled()),
            stage: call.stage(),
            code: call.code(),
        });
    };
    (hook, rx)
}

/// The codes of every reason of `cancelled`, in firing order.
pub(crate) fn codes_of(cancelled: &fencing::Cancelled) -> Vec<String> {
    cancelled
        .reasons()
        .iter()
        .filter_map(|reason| reason.code().map(|code| code.as_str().to_owned()))
        .collect()
}

/// The codes of the `Cancelled` a status holds as its source, if any.
pub(crate) fn source_codes(status: &Status) -> Vec<String> {
    use std::error::Error;
    status
        .source()
        .and_then(|source| source.downcast_ref::<fencing::Cancelled>())
        .map(codes_of)
        .unwrap_or_default()
}

type CheckFn = dyn Fn(
        Request<HealthCheckRequest>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<HealthCheckResponse>, Status>> + Send>>
    + Send
    + Sync;

/// The response stream of [`Probe::watch`].
pub(crate) type WatchStream =
    Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

type WatchFn = dyn Fn(Request<HealthCheckRequest>) -> WatchStream + Send + Sync;

/// A health service whose `check` and `watch` the test writes.
#[derive(Clone)]
pub(crate) struct Probe {
    check: Arc<CheckFn>,
    watch: Arc<WatchFn>,
}

impl Probe {
    pub(crate) fn check<F, Fut>(check: F) -> Self
    where
        F: Fn(Request<HealthCheckRequest>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<HealthCheckResponse>, Status>> + Send + 'static,
    {
        Self {
            check: Arc::new(move |request| Box::pin(check(request))),
            watch: Arc::new(|_| Box::pin(tokio_stream::pending())),
        }
    }

    pub(crate) fn watch<F>(watch: F) -> Self
    where
        F: Fn(Request<HealthCheckRequest>) -> WatchStream + Send + Sync + 'static,
    {
        Self {
            check: Arc::new(|_| Box::pin(async { Ok(serving()) })),
            watch: Arc::new(watch),
        }
    }
}

pub(crate) fn serving() -> Response<HealthCheckResponse> {
    Response::new(HealthCheckResponse { status: 1 })
}

#[tonic::async_trait]
impl Health for Probe {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        (self.check)(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        Ok(Response::new((self.watch)(request)))
    }
}

/// What a handler saw when it started: its remaining budget and the
/// `grpc-timeout` it received, and a receiver that fires when it is dropped.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) remaining: Option<Duration>,
    pub(crate) header: Option<String>,
    pub(crate) dropped: oneshot::Receiver<()>,
}

/// A `check` that reports its start and then hangs until dropped.
pub(crate) fn hanging() -> (Probe, mpsc::UnboundedReceiver<Started>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let probe = Probe::check(move |request| {
        let tx = tx.clone();
        async move {
            let (guard, dropped) = on_drop();
            let _ = tx.send(started(&request, dropped));
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok(serving())
        }
    });
    (probe, rx)
}

/// A `check` that reports its start and answers at once.
pub(crate) fn answering() -> (Probe, mpsc::UnboundedReceiver<Started>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let probe = Probe::check(move |request| {
        let (_guard, dropped) = on_drop();
        let _ = tx.send(started(&request, dropped));
        async { Ok(serving()) }
    });
    (probe, rx)
}

/// A `watch` that sends a message every 100 ms, for ever, from 0 ms on,
/// and reports its start once it waits for its second message: from then
/// on, its next tick is a timer the clock can move to.
pub(crate) fn ticking() -> (Probe, mpsc::UnboundedReceiver<Started>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let probe = Probe::watch(move |request| -> WatchStream {
        let (guard, dropped) = on_drop();
        Box::pin(Ticks {
            interval: tokio::time::interval(Duration::from_millis(100)),
            start: Some((tx.clone(), started(&request, dropped))),
            _guard: guard,
        })
    });
    (probe, rx)
}

/// The stream of [`ticking`]; dropped, it fires the `dropped` of its start.
struct Ticks {
    interval: tokio::time::Interval,
    start: Option<(mpsc::UnboundedSender<Started>, Started)>,
    _guard: OnDrop,
}

impl Stream for Ticks {
    type Item = Result<HealthCheckResponse, Status>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        match self.interval.poll_tick(cx) {
            std::task::Poll::Ready(_) => {
                std::task::Poll::Ready(Some(Ok(HealthCheckResponse { status: 1 })))
            }
            std::task::Poll::Pending => {
                if let Some((tx, started)) = self.start.take() {
                    let _ = tx.send(started);
                }
                std::task::Poll::Pending
            }
        }
    }
}

/// A started `watch` of [`fed`]: each `()` sent on `feed` is one message;
/// dropping `feed` ends the stream.
pub(crate) struct Fed {
    pub(crate) started: Started,
    pub(crate) feed: mpsc::UnboundedSender<()>,
}

/// A `watch` that sends a message each time the test says so, and no timer
/// of its own: on a frozen clock, the test moves time between messages.
pub(crate) fn fed() -> (Probe, mpsc::UnboundedReceiver<Fed>) {
    use tokio_stream::StreamExt;
    let (tx, rx) = mpsc::unbounded_channel();
    let probe = Probe::watch(move |request| -> WatchStream {
        let (guard, dropped) = on_drop();
        let (feed, messages) = mpsc::unbounded_channel::<()>();
        let _ = tx.send(Fed {
            started: started(&request, dropped),
            feed,
        });
        let messages = tokio_stream::wrappers::UnboundedReceiverStream::new(messages);
        Box::pin(messages.map(move |()| {
            let _guard = &guard;
            Ok(HealthCheckResponse { status: 1 })
        }))
    });
    (probe, rx)
}

/// Reads a response stream to its end: how many messages, and the status
/// it ended with, if not OK.
pub(crate) async fn read_all(
    mut stream: tonic::Streaming<HealthCheckResponse>,
) -> (usize, Option<Status>) {
    let mut messages = 0;
    loop {
        match within(LIMIT, stream.message()).await {
            Ok(Some(_)) => messages += 1,
            Ok(None) => return (messages, None),
            Err(status) => return (messages, Some(status)),
        }
    }
}

/// What a handler reports of itself when it starts.
pub(crate) fn started<T>(request: &Request<T>, dropped: oneshot::Receiver<()>) -> Started {
    Started {
        remaining: fencing::current().remaining(),
        header: request
            .metadata()
            .get("grpc-timeout")
            .map(|value| value.to_str().unwrap().to_owned()),
        dropped,
    }
}

/// A tonic server on `127.0.0.1` and an ephemeral port, serving `probe`
/// with `Server::builder().layer(..)`. Stops when dropped.
pub(crate) struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn uri(&self) -> Uri {
        format!("http://{}", self.addr).parse().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// Serves `probe` with tonic's `Server`, behind `layer` if any: tonic's own
/// `grpc-timeout` timer is there.
pub(crate) async fn serve_tonic(layer: Option<GrpcFenceLayer>, probe: Probe) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let (stop, stopped) = oneshot::channel::<()>();
    let signal = async move {
        let _ = stopped.await;
    };
    let service = HealthServer::new(probe);
    let task = match layer {
        Some(layer) => tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .layer(layer)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, signal)
                .await;
        }),
        None => tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, signal)
                .await;
        }),
    };
    TestServer {
        addr,
        stop: Some(stop),
        task,
    }
}

/// Serves any HTTP service (tonic `Routes` behind a layer, say) with
/// hyper-util's server, HTTP/1 and HTTP/2: tonic's own timer is absent.
pub(crate) async fn serve_hyper<S, B>(service: S) -> TestServer
where
    S: Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let service = service.clone();
                    let hyper_service = hyper::service::service_fn(move |request| {
                        service.clone().oneshot(request)
                    });
                    connections.spawn(async move {
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), hyper_service)
                            .await;
                    });
                }
            }
        }
    });
    TestServer {
        addr,
        stop: Some(stop),
        task,
    }
}

/// An HTTP/2 client with no timer of its own: what the server answers is
/// what the test sees.
pub(crate) type Plain = hyper_util::client::legacy::Client<HttpConnector, tonic::body::Body>;

/// A health client over [`Plain`], to `server`.
pub(crate) fn plain_client(server: &TestServer) -> HealthClient<Plain> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    HealthClient::with_origin(client, server.uri())
}

/// A request whose `grpc-timeout` header is `value`, as written.
pub(crate) fn with_timeout(value: &str) -> Request<HealthCheckRequest> {
    let mut request = Request::new(HealthCheckRequest::default());
    request
        .metadata_mut()
        .insert("grpc-timeout", value.parse().unwrap());
    request
}

/// A tonic `Channel` to `server`, connected.
pub(crate) async fn channel(server: &TestServer) -> tonic::transport::Channel {
    within(
        LIMIT,
        tonic::transport::Endpoint::from_shared(server.uri().to_string())
            .unwrap()
            .connect(),
    )
    .await
    .unwrap()
}
