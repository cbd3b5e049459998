//! Helpers shared by several test files (`mod support;`): a loopback HTTP
//! server, a real-time bound for waits on sockets, a paused clock that stays
//! still while sockets work, and what the server layer reports.
// Each test binary uses only part of it.
#![allow(dead_code)]

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tower::{Service, ServiceExt};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

// Shared with fencing-tonic's tests; each binary uses only part of it.
#[allow(unused_imports)]
pub(crate) use fencing_test_support::{freeze_clock, next, on_drop, within, OnDrop, LIMIT};

/// A hyper server (HTTP/1 and HTTP/2) on `127.0.0.1` and an ephemeral port,
/// serving every connection with a clone of one tower service. Stops
/// accepting and drops its live connections on [`shutdown`](Self::shutdown)
/// or drop.
pub(crate) struct TestServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Starts a [`TestServer`] for `service`. The server's tasks are spawned
/// with `tokio::spawn`, so they never see the test's context.
pub(crate) async fn serve<S, B>(service: S) -> TestServer
where
    S: Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (stop, mut stopped) = oneshot::channel();
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        // Dropped when the loop ends, which aborts every live connection.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    count.fetch_add(1, SeqCst);
                    let service = service.clone();
                    let hyper_service = hyper::service::service_fn(move |request| {
                        service.clone().oneshot(request)
                    });
                    connections.spawn(async move {
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), hyper_service)
                            .await;
                    });
                }
            }
        }
    });
    TestServer {
        addr,
        accepted,
        stop: Some(stop),
        task,
    }
}

impl TestServer {
    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port` followed by `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many connections the server has accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(SeqCst)
    }

    /// Stops accepting, drops every live connection, and waits for the
    /// accept loop to end.
    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        within(LIMIT, &mut self.task).await.unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What [`FenceLayer::on_cancel`](fencing_tower::server::FenceLayer::on_cancel)
/// reported of one request.
#[derive(Debug)]
pub(crate) struct Seen {
    pub(crate) codes: Vec<String>,
    pub(crate) stage: fencing_tower::status::Stage,
    pub(crate) status: Option<http::StatusCode>,
    pub(crate) interrupted: bool,
}

/// A hook for `FenceLayer::on_cancel` and the receiver of what it saw.
pub(crate) fn seen() -> (
    impl Fn(&fencing_tower::server::CancelledRequest<'_>) + Send + Sync + 'static,
    tokio::sync::mpsc::UnboundedReceiver<Seen>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let hook = move |request: &fencing_tower::server::CancelledRequest<'_>| {
        let codes = request
            .cancelled()
            .reasons()
            .iter()
            .filter_map(|reason| reason.code().map(|code| code.as_str().to_owned()))
            .collect();
        let _ = tx.send(Seen {
            codes,
            stage: request.stage(),
            status: request.status(),
            interrupted: request.is_interrupted(),
        });
    };
    (hook, rx)
}

/// Opens a raw connection to `addr` and writes `request` (HTTP/1 bytes).
pub(crate) async fn raw_request(addr: SocketAddr, request: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = within(LIMIT, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    within(LIMIT, stream.write_all(request.as_bytes()))
        .await
        .unwrap();
    stream
}

/// Reads from `stream` until the server closes it, and returns the text.
pub(crate) async fn read_to_end(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let _ = within(LIMIT, stream.read_to_end(&mut bytes)).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A `GET` of `path` with an empty body, HTTP/1.1, and extra header lines
/// (each ending in `\r\n`).
pub(crate) fn get(path: &str, headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: test\r\n{headers}\r\n")
}

/// A full round trip to `path` on a connection of its own: once it is
/// done, the server's runtime has been through its I/O driver since
/// anything written before it.
pub(crate) async fn round_trip(server: &TestServer, path: &str) -> String {
    let mut stream = raw_request(server.addr(), &get(path, "connection: close\r\n")).await;
    read_to_end(&mut stream).await
}
