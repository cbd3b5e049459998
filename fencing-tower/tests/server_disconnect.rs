//! A client that goes away, over real loopback sockets: what hyper sees,
//! what the handler sees under each disposition, and where a concurrency
//! limit must sit.
//!
//! Every wait is bounded in real time by [`within`] (through `next`), and
//! each step waits for a handshake from the other side (a channel, a drop
//! guard), never for time to pass. Only `grace_then_drop` runs on a paused
//! clock, where the grace period is the only timer.

mod support;

use bytes::Bytes;
use fencing::{current, protect};
use fencing_tower::codes::CLIENT_DISCONNECTED;
use fencing_tower::server::{Disposition, FenceLayer};
use fencing_tower::status::Stage;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::pending;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{
    get, next, on_drop, raw_request, read_to_end, round_trip, seen, serve, within, OnDrop,
    TestServer, LIMIT,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

type Answer = Result<Response<Empty<Bytes>>, Infallible>;

fn ok() -> Answer {
    Ok(Response::new(Empty::new()))
}

/// A handler that answers `/ping` at once and hangs on any other path,
/// after sending the test a receiver that fires when the handler is
/// dropped.
fn hanging() -> (Handler, mpsc::UnboundedReceiver<oneshot::Receiver<()>>) {
    let (started, on_start) = mpsc::unbounded_channel();
    let handler = service_fn(move |request: Request<Incoming>| {
        let started = started.clone();
        async move {
            if request.uri().path() == "/ping" {
                return ok();
            }
            let (guard, dropped) = on_drop();
            let _ = started.send(dropped);
            let _guard = guard;
            pending::<()>().await;
            ok()
        }
    });
    (Handler::new(handler), on_start)
}

type Handler =
    tower::util::BoxCloneSyncService<Request<Incoming>, Response<Empty<Bytes>>, Infallible>;

/// Serves [`hanging`] behind `FenceLayer::new()` (hyper's own behaviour),
/// and returns the server, what the layer reports, and the handlers' start
/// signals.
async fn hanging_server() -> (
    TestServer,
    mpsc::UnboundedReceiver<support::Seen>,
    mpsc::UnboundedReceiver<oneshot::Receiver<()>>,
) {
    let (hook, reported) = seen();
    let (handler, started) = hanging();
    let layer = FenceLayer::new().on_cancel(hook);
    let server = serve(ServiceBuilder::new().layer(layer).service(handler)).await;
    (server, reported, started)
}

/// The handler was dropped, and the layer reported one disconnect while
/// handling, with nothing sent.
async fn assert_dropped_as_disconnect(
    dropped: oneshot::Receiver<()>,
    reported: &mut mpsc::UnboundedReceiver<support::Seen>,
) {
    within(LIMIT, dropped)
        .await
        .expect("the handler is dropped");
    let seen = next(reported).await;
    assert_eq!(seen.codes, [CLIENT_DISCONNECTED]);
    assert_eq!(seen.stage, Stage::Handler);
    assert_eq!(
        seen.status, None,
        "nothing can be sent to a client that left"
    );
}

#[tokio::test]
async fn disconnect_http1_fin() {
    let (server, mut reported, mut started) = hanging_server().await;
    let client = raw_request(server.addr(), &get("/work", "")).await;
    let dropped = next(&mut started).await;

    drop(client); // close: a FIN
    assert_dropped_as_disconnect(dropped, &mut reported).await;
}

#[tokio::test]
async fn disconnect_http1_rst() {
    let (server, mut reported, mut started) = hanging_server().await;
    let client = raw_request(server.addr(), &get("/work", "")).await;
    let dropped = next(&mut started).await;

    client.set_zero_linger().unwrap();
    drop(client); // an RST
    assert_dropped_as_disconnect(dropped, &mut reported).await;
}

#[tokio::test]
async fn half_close_counts_as_disconnect() {
    let (server, mut reported, mut started) = hanging_server().await;
    let mut client = raw_request(server.addr(), &get("/work", "")).await;
    let dropped = next(&mut started).await;

    // The client stops writing but still reads: hyper's default
    // (`half_close(false)`) takes it as gone.
    within(LIMIT, client.shutdown()).await.unwrap();
    assert_dropped_as_disconnect(dropped, &mut reported).await;
    assert_eq!(read_to_end(&mut client).await, "", "no response is written");
}

#[tokio::test]
async fn disconnect_http2_rst() {
    let (server, mut reported, mut started) = hanging_server().await;
    let stream = within(LIMIT, tokio::net::TcpStream::connect(server.addr()))
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);

    let request = |path: &str| {
        Request::builder()
            .uri(format!("http://test{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let response = sender.send_request(request("/work"));
    let mut response = tokio::spawn(response);
    let dropped = next(&mut started).await;
    response.abort(); // dropping the response future resets the stream
    let _ = (&mut response).await;

    assert_dropped_as_disconnect(dropped, &mut reported).await;
    // Only the stream was reset: the connection still serves.
    within(LIMIT, sender.ready()).await.unwrap();
    let pong = within(LIMIT, sender.send_request(request("/ping")))
        .await
        .unwrap();
    assert_eq!(pong.status(), 200);
}

/// What the upload handler saw: before reading the body, and after the
/// read failed.
#[derive(Debug, PartialEq)]
struct Upload {
    cancelled_before_read: bool,
    cancelled_after_read: Vec<String>,
}

/// A server whose `/upload` handler waits for the test's word before it
/// reads the request body, then reports what its context said, then hangs.
async fn upload_server(
    watch: bool,
) -> (
    TestServer,
    mpsc::UnboundedReceiver<support::Seen>,
    mpsc::UnboundedReceiver<Started>,
) {
    let (hook, reported) = seen();
    let (started_tx, started) = mpsc::unbounded_channel();
    let layer = FenceLayer::new().on_cancel(hook);
    let server = if watch {
        let handler = service_fn(move |request| upload(started_tx.clone(), request));
        serve(
            ServiceBuilder::new()
                .layer(layer.watch_request_body())
                .service(handler),
        )
        .await
    } else {
        let handler = service_fn(move |request| upload(started_tx.clone(), request));
        serve(ServiceBuilder::new().layer(layer).service(handler)).await
    };
    (server, reported, started)
}

type Started = (
    oneshot::Sender<()>,
    oneshot::Receiver<Upload>,
    oneshot::Receiver<()>,
);

async fn upload<B: http_body::Body>(
    started: mpsc::UnboundedSender<Started>,
    request: Request<B>,
) -> Answer {
    if request.uri().path() == "/ping" {
        return ok();
    }
    let (go, on_go) = oneshot::channel::<()>();
    let (saw, on_saw) = oneshot::channel();
    let (guard, dropped) = on_drop();
    let _ = started.send((go, on_saw, dropped));
    let _guard = guard;
    // The body is left unread until the test says so.
    let _ = on_go.await;
    let cancelled_before_read = current().is_cancelled();
    // Half of it came: the read fails.
    let read = request.into_body().collect().await;
    assert!(read.is_err(), "the body was cut short");
    let cancelled_after_read = current()
        .check()
        .err()
        .map(|c| codes_of(&c))
        .unwrap_or_default();
    let _ = saw.send(Upload {
        cancelled_before_read,
        cancelled_after_read,
    });
    pending::<()>().await;
    ok()
}

/// Sends half of an upload's body and goes away.
async fn half_an_upload(server: &TestServer) {
    // hyper waits for the rest, and reads the socket only when the handler
    // asks for it.
    let post = "POST /upload HTTP/1.1\r\nhost: test\r\ncontent-length: 10\r\n\r\nhello";
    drop(raw_request(server.addr(), post).await);
    // Another request, start to end, on a connection of its own: the
    // server's runtime has since been through the readiness of the closed
    // socket.
    assert!(round_trip(server, "/ping")
        .await
        .starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn disconnect_http1_unread_body_not_seen() {
    let (server, mut reported, mut started) = upload_server(false).await;
    half_an_upload(&server).await;
    let (go, saw, dropped) = next(&mut started).await;

    go.send(()).unwrap();
    let upload = within(LIMIT, saw).await.unwrap();
    assert_eq!(
        upload,
        Upload {
            cancelled_before_read: false,
            cancelled_after_read: Vec::new(),
        },
        "HTTP/1 does not see the client go while the body is unread; the failed \
         read is the handler's only news of it"
    );
    assert!(
        reported.try_recv().is_err(),
        "nothing was reported: nothing was seen"
    );
    drop(dropped);
}

#[tokio::test]
async fn failed_request_body_is_a_disconnect() {
    let (server, mut reported, mut started) = upload_server(true).await;
    half_an_upload(&server).await;
    let (go, saw, dropped) = next(&mut started).await;

    go.send(()).unwrap();
    let upload = within(LIMIT, saw).await.unwrap();
    assert!(
        !upload.cancelled_before_read,
        "not seen while the body is unread"
    );
    assert_eq!(
        upload.cancelled_after_read,
        [CLIENT_DISCONNECTED],
        "the failed read fires it"
    );
    // The fence drops the handler, which hangs: reported while reading.
    within(LIMIT, dropped).await.unwrap();
    let seen = next(&mut reported).await;
    assert_eq!(seen.codes, [CLIENT_DISCONNECTED]);
    assert_eq!(seen.stage, Stage::RequestBody);
    assert_eq!(seen.status, None);
}

/// What a detached handler saw: its reasons' codes when told, and when.
struct Told {
    codes: Vec<String>,
    at: Instant,
}

fn codes_of(cancelled: &fencing::Cancelled) -> Vec<String> {
    cancelled
        .reasons()
        .iter()
        .filter_map(|reason| reason.code().map(|code| code.as_str().to_owned()))
        .collect()
}

#[tokio::test]
async fn detach_commit_completes() {
    let (hook, mut reported) = seen();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let handler = service_fn(move |_: Request<Incoming>| {
        let started = started_tx.clone();
        async move {
            let (committed, on_commit) = oneshot::channel::<Told>();
            let (guard, dropped) = on_drop();
            let _guard = guard;
            let commit = protect();
            let _ = started.send((on_commit, dropped));
            // Told, not dropped: the section is protected.
            let told = current().cancelled().await;
            tokio::task::yield_now().await; // the commit's last write
            let _ = committed.send(Told {
                codes: codes_of(&told),
                at: Instant::now(),
            });
            drop(commit);
            pending::<()>().await;
            ok()
        }
    });
    // No grace at all: only the protected section keeps the handler.
    let layer = FenceLayer::new()
        .disposition(Disposition::Detach {
            grace: Duration::ZERO,
        })
        .on_cancel(hook);
    let server = serve(ServiceBuilder::new().layer(layer).service(handler)).await;

    let client = raw_request(server.addr(), &get("/work", "")).await;
    let (committed, dropped) = next(&mut started).await;
    drop(client);

    let told = within(LIMIT, committed)
        .await
        .expect("the commit completes");
    assert_eq!(told.codes, [CLIENT_DISCONNECTED]);
    within(LIMIT, dropped)
        .await
        .expect("dropped once the guard is released");
    let seen = next(&mut reported).await;
    assert_eq!(seen.codes, [CLIENT_DISCONNECTED]);
    assert_eq!(seen.status, None);
    assert!(seen.interrupted, "dropped once its commit was done");
}

#[tokio::test]
async fn detached_handler_that_finishes_is_not_interrupted() {
    let (hook, mut reported) = seen();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let handler = service_fn(move |_: Request<Incoming>| {
        let started = started_tx.clone();
        async move {
            let _ = started.send(());
            let _ = current().cancelled().await;
            ok() // finishes, told, well within its grace period
        }
    });
    let layer = FenceLayer::new()
        .disposition(Disposition::Detach {
            grace: Duration::from_secs(60),
        })
        .on_cancel(hook);
    let server = serve(ServiceBuilder::new().layer(layer).service(handler)).await;

    let client = raw_request(server.addr(), &get("/work", "")).await;
    next(&mut started).await;
    drop(client);
    let seen = next(&mut reported).await;
    assert_eq!(seen.codes, [CLIENT_DISCONNECTED]);
    assert!(!seen.interrupted, "it ran to its end");
    assert_eq!(seen.status, None);
}

#[tokio::test(start_paused = true)]
async fn grace_then_drop() {
    const GRACE: Duration = Duration::from_secs(30);
    let (hook, mut reported) = seen();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let handler = service_fn(move |_: Request<Incoming>| {
        let started = started_tx.clone();
        async move {
            let (told_tx, told) = oneshot::channel::<Told>();
            let (guard, dropped) = on_drop();
            let _guard = guard;
            let _ = started.send((told, dropped));
            let cancelled = current().cancelled().await;
            let _ = told_tx.send(Told {
                codes: codes_of(&cancelled),
                at: Instant::now(),
            });
            // Ignores it, and goes on for ever.
            pending::<()>().await;
            ok()
        }
    });
    let layer = FenceLayer::new()
        .disposition(Disposition::Detach { grace: GRACE })
        .on_cancel(hook);
    let server = serve(ServiceBuilder::new().layer(layer).service(handler)).await;

    let client = raw_request(server.addr(), &get("/work", "")).await;
    let (told, dropped) = next(&mut started).await;
    drop(client);

    // The grace period is the only timer: the paused clock moves to it.
    let told = within(LIMIT, told).await.unwrap();
    assert_eq!(
        told.codes,
        [CLIENT_DISCONNECTED],
        "told at once, cooperatively"
    );
    within(LIMIT, dropped)
        .await
        .expect("dropped after the grace period");
    let waited = told.at.elapsed();
    assert!(
        waited >= GRACE && waited <= GRACE + Duration::from_millis(1),
        "dropped {waited:?} after the disconnect, not at the grace period's end"
    );
    let seen = next(&mut reported).await;
    assert_eq!(seen.codes, [CLIENT_DISCONNECTED]);
}

/// Two handlers behind a concurrency limit of one, with a detached
/// handler that is told of its client's departure but never dropped:
/// `/a` runs until the test releases it (and says when it is told), `/b`
/// records whether `/a` had finished when it started.
struct Limited {
    server: TestServer,
    a_told: mpsc::UnboundedReceiver<Vec<String>>,
    arrived: mpsc::UnboundedReceiver<String>,
    a_started: mpsc::UnboundedReceiver<()>,
    b_started: mpsc::UnboundedReceiver<bool>,
    release_a: Option<oneshot::Sender<()>>,
}

async fn limited(limit_inside: bool) -> Limited {
    let (told_tx, a_told) = mpsc::unbounded_channel();
    let (a_tx, a_started) = mpsc::unbounded_channel();
    let (b_tx, b_started) = mpsc::unbounded_channel();
    let (release_a, on_release) = oneshot::channel::<()>();
    let on_release = Arc::new(Mutex::new(Some(on_release)));
    let a_finished = Arc::new(AtomicBool::new(false));
    let handler = service_fn(move |request: Request<Incoming>| {
        let (a_tx, b_tx, told_tx) = (a_tx.clone(), b_tx.clone(), told_tx.clone());
        let is_a = request.uri().path() == "/a";
        let on_release = is_a.then(|| on_release.lock().unwrap().take()).flatten();
        let a_finished = a_finished.clone();
        async move {
            if is_a {
                let _ = a_tx.send(());
                let release = async {
                    if let Some(release) = on_release {
                        let _ = release.await;
                    }
                };
                let mut release = std::pin::pin!(release);
                tokio::select! {
                    _ = &mut release => {}
                    told = current().cancelled() => {
                        let _ = told_tx.send(codes_of(&told));
                        release.await;
                    }
                }
                a_finished.store(true, SeqCst);
            } else {
                let _ = b_tx.send(a_finished.load(SeqCst));
            }
            ok()
        }
    });
    let fence = FenceLayer::new().disposition(Disposition::Detach {
        grace: Duration::MAX,
    });
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    let probe = move |stack: tower::util::BoxCloneSyncService<_, _, _>| {
        service_fn(move |request: Request<Incoming>| {
            // Told before the stack's readiness is polled.
            let _ = arrived_tx.send(request.uri().path().to_owned());
            stack.clone().oneshot(request)
        })
    };
    let server = if limit_inside {
        let stack = ServiceBuilder::new()
            .layer(fence)
            .concurrency_limit(1)
            .service(handler);
        serve(probe(tower::util::BoxCloneSyncService::new(stack))).await
    } else {
        let stack = ServiceBuilder::new()
            .concurrency_limit(1)
            .layer(fence)
            .service(handler);
        serve(probe(tower::util::BoxCloneSyncService::new(stack))).await
    };
    Limited {
        server,
        a_told,
        arrived,
        a_started,
        b_started,
        release_a: Some(release_a),
    }
}

/// `/a` starts, its client goes away, and its handler is told.
async fn a_started_then_its_client_left(limited: &mut Limited) {
    let client = raw_request(limited.server.addr(), &get("/a", "")).await;
    next(&mut limited.a_started).await;
    drop(client);
    assert_eq!(next(&mut limited.a_told).await, [CLIENT_DISCONNECTED]);
}

#[tokio::test]
async fn limit_inside_spawn_holds_permit() {
    let mut limited = limited(true).await;
    a_started_then_its_client_left(&mut limited).await;

    let mut b = raw_request(limited.server.addr(), &get("/b", "connection: close\r\n")).await;
    assert_eq!(next(&mut limited.arrived).await, "/a");
    assert_eq!(next(&mut limited.arrived).await, "/b");
    // Had `/b` got a permit, its handler would run in these turns.
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    limited.release_a.take().unwrap().send(()).unwrap();
    let a_finished_first = next(&mut limited.b_started).await;
    assert!(
        a_finished_first,
        "`/b` waited for the permit `/a`'s handler held"
    );
    assert!(read_to_end(&mut b).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn limit_outside_spawn_is_bypassed() {
    let mut limited = limited(false).await;
    a_started_then_its_client_left(&mut limited).await;

    // The permit went with `/a`'s future: `/b` runs while `/a`'s handler
    // still does, two handlers under a limit of one.
    let mut b = raw_request(limited.server.addr(), &get("/b", "connection: close\r\n")).await;
    let a_finished_first = next(&mut limited.b_started).await;
    assert!(!a_finished_first, "`/b` ran beside `/a`'s detached handler");
    assert!(read_to_end(&mut b).await.starts_with("HTTP/1.1 200"));
    limited.release_a.take().unwrap().send(()).unwrap();
}

#[tokio::test]
async fn handler_panic_reraised() {
    let handler = service_fn(|_: Request<String>| async {
        tokio::task::yield_now().await;
        panic!("the handler's own panic");
        #[allow(unreachable_code)]
        ok()
    });
    for disposition in [
        Disposition::CancelOnDisconnect,
        Disposition::Detach {
            grace: Duration::from_secs(1),
        },
    ] {
        let mut service = ServiceBuilder::new()
            .layer(FenceLayer::new().disposition(disposition))
            .service(handler);
        let future = service
            .ready()
            .await
            .unwrap()
            .call(Request::new(String::new()));
        let err = tokio::spawn(future).await.unwrap_err();
        let panic = err.into_panic();
        assert_eq!(
            panic.downcast_ref::<&str>(),
            Some(&"the handler's own panic"),
            "{disposition:?}: the same payload, raised in the request's future"
        );
    }
}

#[tokio::test]
async fn handler_panic_after_disconnect_is_logged() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let handler = service_fn(move |_: Request<Incoming>| {
        let started = started_tx.clone();
        async move {
            let (guard, dropped) = on_drop();
            let _guard: OnDrop = guard;
            let _ = started.send(dropped);
            let _ = current().cancelled().await;
            panic!("after the client left");
            #[allow(unreachable_code)]
            ok()
        }
    });
    let (events, _capturing) = errors::capture();
    let layer = FenceLayer::new().disposition(Disposition::Detach {
        grace: Duration::from_secs(60),
    });
    let server = serve(ServiceBuilder::new().layer(layer).service(handler)).await;

    let client = raw_request(server.addr(), &get("/work", "")).await;
    let dropped = next(&mut started).await;
    drop(client);
    within(LIMIT, dropped).await.expect("the handler unwound");
    // The task caught the panic and logged it.
    let logged = events.lock().unwrap().clone();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].contains("after the client left"), "{logged:?}");
}

/// A `tracing` subscriber that keeps the fields of `ERROR` events, for the
/// current thread (the tests' runtimes run every task on it).
mod errors {
    use std::fmt::Debug;
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    pub(crate) type Events = Arc<Mutex<Vec<String>>>;

    struct Errors(Events);

    struct Text<'a>(&'a mut String);

    impl Visit for Text<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            self.0.push_str(&format!("{}={value:?} ", field.name()));
        }
    }

    impl Subscriber for Errors {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            *metadata.level() == Level::ERROR
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut text = String::new();
            event.record(&mut Text(&mut text));
            self.0.lock().unwrap().push(text);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// Captures `ERROR` events on this thread while the guard lives.
    pub(crate) fn capture() -> (Events, tracing::subscriber::DefaultGuard) {
        let events = Events::default();
        let guard = tracing::subscriber::set_default(Errors(events.clone()));
        (events, guard)
    }
}
