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
