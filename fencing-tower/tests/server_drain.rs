//! Shutting a server down with a [`Drain`]: the reason reaches every live
//! request, handlers get the grace period, what is left is dropped, and the
//! report says which was which; composed with axum's graceful shutdown.

mod support;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use fencing::current;
use fencing_tower::codes::SHUTDOWN;
use fencing_tower::server::{Disposition, FenceLayer};
use fencing_tower::{Drain, DrainReport};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use std::convert::Infallible;
use std::future::{pending, IntoFuture};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use support::{next, on_drop, within, LIMIT};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};

const GRACE: Duration = Duration::from_secs(5);

/// What the test hears from the handlers.
enum Heard {
    Started(&'static str),
    Told(&'static str, Vec<String>),
    Dropped(&'static str),
}

fn codes(cancelled: &fencing::Cancelled) -> Vec<String> {
    cancelled
        .reasons()
        .iter()
        .filter_map(|r| r.code().map(|c| c.as_str().to_owned()))
        .collect()
}

/// `/cooperative` stops when told and answers; `/stubborn` is told and
/// ignores it, and is dropped at the end of the grace period.
fn app(drain: &Drain, heard: mpsc::UnboundedSender<Heard>) -> Router {
    let cooperative = {
        let heard = heard.clone();
        move || async move {
            let _ = heard.send(Heard::Started("cooperative"));
            let told = current().cancelled().await;
            let _ = heard.send(Heard::Told("cooperative", codes(&told)));
            "flushed"
        }
    };
    let stubborn = move || async move {
        let (guard, dropped) = on_drop();
        let _guard = guard;
        let heard_drop = heard.clone();
        tokio::spawn(async move {
            let _ = dropped.await;
            let _ = heard_drop.send(Heard::Dropped("stubborn"));
        });
        let _ = heard.send(Heard::Started("stubborn"));
        let told = current().cancelled().await;
        let _ = heard.send(Heard::Told("stubborn", codes(&told)));
        pending::<&str>().await
    };
    Router::new()
        .route("/cooperative", get(cooperative))
        .route("/stubborn", get(stubborn))
        .layer(FenceLayer::new().drain(drain))
}

async fn send(
    addr: std::net::SocketAddr,
    path: &str,
) -> tokio::task::JoinHandle<(StatusCode, Bytes)> {
    let stream = within(LIMIT, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .uri(format!("http://test{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let path = path.to_owned();
    tokio::spawn(async move {
        let response = sender.send_request(request).await.expect(&path);
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    })
}

#[tokio::test(start_paused = true)]
async fn shutdown_fires_reason_and_waits() {
    let drain = Drain::new(GRACE);
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        axum::serve(listener, app(&drain, heard_tx))
            .with_graceful_shutdown(drain.draining())
            .into_future(),
    );

    let cooperative = send(addr, "/cooperative").await;
    let stubborn = send(addr, "/stubborn").await;
    for _ in 0..2 {
        assert!(matches!(next(&mut heard).await, Heard::Started(_)));
    }

    let began = Instant::now();
    let report = within(LIMIT, drain.shutdown()).await;
    let took = began.elapsed();

    // Both were told at once, with the reason's code.
    let mut told = Vec::new();
    let mut dropped = Vec::new();
    while let Ok(heard) = heard.try_recv() {
        match heard {
            Heard::Told(who, codes) => told.push((who, codes)),
            Heard::Dropped(who) => dropped.push(who),
            Heard::Started(who) => panic!("{who} started late"),
        }
    }
    told.sort();
    assert_eq!(
        told,
        [
            ("cooperative", vec![SHUTDOWN.to_owned()]),
            ("stubborn", vec![SHUTDOWN.to_owned()])
        ]
    );
    assert_eq!(
        dropped,
        ["stubborn"],
        "dropped at the end of the grace period"
    );
    assert_eq!(counts(report), (1, 1), "finished, dropped");
    assert!(
        took >= GRACE && took <= GRACE + Duration::from_millis(1),
        "the drain waited for the grace period, no longer: {took:?}"
    );

    let (status, body) = within(LIMIT, cooperative).await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"flushed"[..]));
    let (status, _) = within(LIMIT, stubborn).await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // axum's own graceful shutdown, unbounded by itself, ends with ours.
    within(LIMIT, server).await.unwrap().unwrap();
}

fn counts(report: DrainReport) -> (usize, usize) {
    (report.finished(), report.dropped())
}

#[tokio::test(start_paused = true)]
async fn drain_refuses_new_requests_without_calling() {
    let drain = Drain::new(GRACE);
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let service = ServiceBuilder::new()
        .layer(FenceLayer::new().drain(&drain))
        .service(service_fn(move |_: Request<String>| {
            counted.fetch_add(1, SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        }));
    assert_eq!(counts(drain.shutdown().await), (0, 0));
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let cancelled = response.extensions().get::<fencing::Cancelled>().unwrap();
    assert!(cancelled.cancelled_by(SHUTDOWN));
    assert_eq!(calls.load(SeqCst), 0);
    assert_eq!(
        counts(drain.shutdown().await),
        (0, 0),
        "refused: in neither count"
    );
}

#[tokio::test(start_paused = true)]
async fn drain_waits_for_detached_handlers_and_protected_commits() {
    let drain = Drain::new(GRACE);
    let (committed_tx, committed) = oneshot::channel::<Instant>();
    let committed_tx = std::sync::Mutex::new(Some(committed_tx));
    let service = ServiceBuilder::new()
        .layer(
            FenceLayer::new()
                .drain(&drain)
                .disposition(Disposition::Detach {
                    grace: Duration::MAX,
                }),
        )
        .service(service_fn(move |_: Request<String>| {
            let committed_tx = committed_tx.lock().unwrap().take();
            async move {
                let _commit = fencing::protect();
                // A commit that outlasts the grace period.
                tokio::time::sleep(GRACE * 2).await;
                if let Some(tx) = committed_tx {
                    let _ = tx.send(Instant::now());
                }
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        }));
    let request = tokio::spawn(service.oneshot(Request::new(String::new())));
    tokio::task::yield_now().await;
    request.abort(); // its client went away: the handler goes on, detached
    let _ = request.await;

    let began = Instant::now();
    let report = drain.shutdown().await;
    let at = committed.await.unwrap();
    assert_eq!(at - began, GRACE * 2, "the protected commit was not cut");
    assert!(began.elapsed() >= GRACE * 2, "the drain waited for it");
    assert_eq!(counts(report), (1, 0), "it ran to its end");
}

#[tokio::test(start_paused = true)]
async fn drain_ends_streams_at_the_grace_end() {
    let drain = Drain::new(GRACE);
    let (sender, body) = http_body_util::channel::Channel::<Bytes>::new(1);
    let body = std::sync::Mutex::new(Some(body));
    let service = ServiceBuilder::new()
        .layer(FenceLayer::new().drain(&drain))
        .service(service_fn(move |_: Request<String>| {
            let body = body.lock().unwrap().take().unwrap();
            async move { Ok::<_, Infallible>(Response::new(body)) }
        }));
    // An endless stream, such as server-sent events.
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    let mut body = std::pin::pin!(response.into_body());

    let began = Instant::now();
    let report = drain.shutdown().await;
    assert_eq!(
        counts(report),
        (0, 0),
        "its handler returned before the drain began"
    );
    let end = body.as_mut().frame().await.unwrap();
    let cancelled = end.unwrap_err();
    let cancelled = cancelled.downcast_ref::<fencing::Cancelled>().unwrap();
    assert!(cancelled.cancelled_by(SHUTDOWN));
    assert_eq!(began.elapsed(), GRACE, "cut at the end of the grace period");
    drop(sender);
}

#[tokio::test(start_paused = true)]
async fn drain_bounds_hyper_util_graceful_shutdown() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::server::graceful::GracefulShutdown;

    let drain = Drain::new(GRACE);
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    // A handler that would never end by itself.
    let service = ServiceBuilder::new()
        .layer(FenceLayer::new().drain(&drain))
        .service(service_fn(move |_: Request<hyper::body::Incoming>| {
            let _ = heard_tx.send(());
            async { pending::<Result<Response<Empty<Bytes>>, Infallible>>().await }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let draining = drain.draining();
    let server = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let mut draining = std::pin::pin!(draining);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = accepted.unwrap();
                    let service = hyper_util::service::TowerToHyperService::new(service.clone());
                    let connection = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    tokio::spawn(graceful.watch(connection));
                }
                () = &mut draining => break,
            }
        }
        // hyper-util's wait has no bound of its own.
        graceful.shutdown().await;
    });

    let request = send(addr, "/forever").await;
    next(&mut heard).await;
    let began = Instant::now();
    let report = within(LIMIT, drain.shutdown()).await;
    assert_eq!(counts(report), (0, 1));
    let (status, _) = within(LIMIT, request).await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    within(LIMIT, server).await.unwrap();
    assert_eq!(
        began.elapsed(),
        GRACE,
        "both waits ended at the grace period's end"
    );
}

/// What a handler of [`auditing_server`] tells the test.
struct Audit {
    /// Fires when the handler is dropped.
    handler_dropped: oneshot::Receiver<()>,
    /// Fires when the audit write is dropped or ends.
    audit_ended: oneshot::Receiver<()>,
}

/// A server whose handler shields an audit write of `took`, tracked by
/// `drain`, then hangs (a stuck downstream call); the write reports
/// `Instant::now()` when done.
async fn auditing_server(
    drain: &Drain,
    took: Duration,
) -> (
    support::TestServer,
    mpsc::UnboundedReceiver<Audit>,
    mpsc::UnboundedReceiver<Instant>,
) {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (written_tx, written) = mpsc::unbounded_channel();
    let tracker = drain.clone();
    let handler = service_fn(move |_: Request<hyper::body::Incoming>| {
        let (started_tx, written_tx) = (started_tx.clone(), written_tx.clone());
        let tracker = tracker.clone();
        async move {
            let (handler_guard, handler_dropped) = on_drop();
            let (audit_guard, audit_ended) = on_drop();
            let audit = fencing::shield(tracker.track_future(async move {
                let _audit_guard = audit_guard;
                tokio::time::sleep(took).await; // the write
                let _ = written_tx.send(Instant::now());
            }));
            let _ = started_tx.send(Audit {
                handler_dropped,
                audit_ended,
            });
            let _handler_guard = handler_guard;
            pending::<()>().await;
            let _ = audit.await;
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    let service = ServiceBuilder::new()
        .layer(FenceLayer::new().drain(drain))
        .service(handler);
    (support::serve(service).await, started, written)
}

/// The client hangs up while its handler's audit write, shielded and
/// tracked by the drain, runs; the server shuts down at once. The drain
/// waits for the write, which ends before the grace period does, and
/// `shutdown` resolves when it ends, with the write done and counted.
#[tokio::test(start_paused = true)]
async fn drain_waits_for_shielded_work_within_its_grace() {
    let drain = Drain::new(GRACE);
    let took = Duration::from_secs(2);
    let frozen = support::freeze_clock();
    let (server, mut started, mut written) = auditing_server(&drain, took).await;

    let client = support::raw_request(server.addr(), &support::get("/order", "")).await;
    let audit = next(&mut started).await;
    let began = Instant::now();
    drop(client); // the client hangs up...
    within(LIMIT, audit.handler_dropped)
        .await
        .expect("the handler is dropped with its request");
    assert!(written.try_recv().is_err(), "the write is still running");
    drop(frozen);

    let report = within(LIMIT, drain.shutdown()).await; // ...then SIGTERM
    let at = written
        .try_recv()
        .expect("the write was done when the drain ended");
    assert_eq!(at - began, took, "it ran its whole course");
    let waited = began.elapsed();
    assert!(
        waited >= took && waited <= took + Duration::from_millis(1),
        "the drain waited for the write, not for its grace period: {waited:?}"
    );
    assert_eq!(
        counts(report),
        (1, 0),
        "the write finished; the request ended before the drain began"
    );
    within(LIMIT, audit.audit_ended).await.unwrap();
    server.shutdown().await;
}

/// The same with a write that outlasts the grace period: the drain drops it
/// at the grace end, counts it as dropped, and ends then.
#[tokio::test(start_paused = true)]
async fn drain_drops_shielded_work_past_its_grace() {
    let drain = Drain::new(GRACE);
    let frozen = support::freeze_clock();
    let (server, mut started, mut written) = auditing_server(&drain, GRACE * 2).await;

    let client = support::raw_request(server.addr(), &support::get("/order", "")).await;
    let mut audit = next(&mut started).await;
    drop(client);
    within(LIMIT, audit.handler_dropped)
        .await
        .expect("the handler is dropped with its request");
    drop(frozen);

    let began = Instant::now();
    let report = within(LIMIT, drain.shutdown()).await;
    let waited = began.elapsed();
    assert!(
        waited >= GRACE && waited <= GRACE + Duration::from_millis(1),
        "the drain ended with its grace period: {waited:?}"
    );
    assert_eq!(counts(report), (0, 1), "the write was dropped, and counted");
    assert!(
        audit.audit_ended.try_recv().is_ok(),
        "dropped before the drain ended"
    );
    assert!(written.try_recv().is_err(), "and never done");
    server.shutdown().await;
}
