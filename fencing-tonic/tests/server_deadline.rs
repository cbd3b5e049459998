//! The server layer over real loopback sockets: the caller's deadline, the
//! server's cap, a spent or malformed `grpc-timeout`, and the race with
//! tonic's own timer, which tonic's `Server` runs outside every layer.
//!
//! The clients are hyper's HTTP/2 client with no timer of its own, so the
//! status a test sees is the one the server sent. Every test runs on a
//! paused clock whose only timers are the server's; the clock is frozen
//! until the handler has started, so budgets are exact.

mod support;

use fencing::{current, Fencing};
use fencing_tonic::codes::{BUDGET, DEADLINE};
use fencing_tonic::server::{Disposition, GrpcFenceLayer, OnMalformed};
use fencing_tower::status::Stage;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use support::{
    freeze_clock, hanging, next, plain_client, seen, serve_hyper, serve_tonic, serving,
    with_timeout, within, Probe, LIMIT,
};
use tokio::time::Instant;
use tonic::Code;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::pb::HealthCheckRequest;
use tower::ServiceBuilder;

#[tokio::test(start_paused = true)]
async fn grpc_deadline_is_deadline_exceeded() {
    for disposition in [
        Disposition::CancelOnDisconnect,
        Disposition::Detach {
            grace: Duration::from_secs(1),
        },
    ] {
        let (hook, mut reported) = seen();
        let (probe, mut started) = hanging();
        let layer = GrpcFenceLayer::new()
            .disposition(disposition)
            .on_cancel(hook);
        let server = serve_tonic(Some(layer), probe).await;
        let mut client = plain_client(&server);

        let frozen = freeze_clock();
        let call = tokio::spawn(async move { client.check(with_timeout("200m")).await });
        let handler = next(&mut started).await;
        assert_eq!(handler.header.as_deref(), Some("200m"));
        assert_eq!(
            handler.remaining,
            Some(Duration::from_millis(195)),
            "the header's, less the default margin"
        );
        drop(frozen);

        // tonic's own timer (at 200 ms) would answer CANCELLED; the layer
        // answers first.
        let status = within(LIMIT, call).await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{disposition:?}");
        assert_eq!(
            status.message(),
            "cancelled: deadline: timed out after 195ms"
        );
        within(LIMIT, handler.dropped).await.unwrap();
        let seen = next(&mut reported).await;
        assert_eq!(seen.codes, [DEADLINE]);
        assert_eq!(seen.stage, Stage::Handler);
        assert_eq!(seen.code, Some(Code::DeadlineExceeded));
    }
}

#[tokio::test(start_paused = true)]
async fn grpc_deadline_grace_comes_out_of_the_budget() {
    // A handler that is told of its deadline, and keeps going for longer
    // than its grace period: dropped at the header's deadline less the
    // margin, before tonic's own timer.
    let (told_tx, mut told) = tokio::sync::mpsc::unbounded_channel();
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let probe = Probe::check(move |_| {
        let (told_tx, started_tx) = (told_tx.clone(), started_tx.clone());
        async move {
            let start = Instant::now();
            let _ = started_tx.send(current().remaining());
            let reason = current().cancelled().await;
            let _ = told_tx.send((start.elapsed(), support::codes_of(&reason)));
            std::future::pending::<()>().await;
            Ok(serving())
        }
    });
    let grace = Fencing::new().grace_for(DEADLINE, Duration::from_millis(50));
    let server = serve_tonic(Some(GrpcFenceLayer::new().fencing(grace)), probe).await;
    let mut client = plain_client(&server);

    let frozen = freeze_clock();
    let call = tokio::spawn(async move { client.check(with_timeout("200m")).await });
    assert_eq!(next(&mut started).await, Some(Duration::from_millis(145)));
    drop(frozen);

    let status = within(LIMIT, call).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    let (after, codes) = next(&mut told).await;
    assert_eq!(
        after,
        Duration::from_millis(145),
        "told a grace period early"
    );
    assert_eq!(codes, [DEADLINE]);
}

#[tokio::test(start_paused = true)]
async fn grpc_spent_budget_not_called() {
    let (hook, mut reported) = seen();
    let calls = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    let probe = Probe::check(move |_| {
        count.fetch_add(1, SeqCst);
        async { Ok(serving()) }
    });
    let server = serve_tonic(Some(GrpcFenceLayer::new().on_cancel(hook)), probe).await;
    let mut client = plain_client(&server);
    // Time stands still: the call that is served has all of its budget.
    let _frozen = freeze_clock();

    // `0n` is spent; so is a budget no longer than the margin.
    for header in ["0n", "0S", "5m", "4999u"] {
        let status = within(LIMIT, client.check(with_timeout(header)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{header}");
        let seen = next(&mut reported).await;
        assert_eq!(seen.codes, [DEADLINE]);
        assert_eq!(seen.code, Some(Code::DeadlineExceeded));
    }
    assert_eq!(calls.load(SeqCst), 0, "the handler was never called");

    within(LIMIT, client.check(with_timeout("5001u")))
        .await
        .unwrap();
    assert_eq!(calls.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn grpc_malformed_timeout() {
    let calls = Arc::new(AtomicUsize::new(0));
    let budgets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let probe = {
        let (calls, budgets) = (calls.clone(), budgets.clone());
        Probe::check(move |_| {
            calls.fetch_add(1, SeqCst);
            budgets.lock().unwrap().push(current().remaining());
            async { Ok(serving()) }
        })
    };
    // Time stands still: the calls that are served have all of their budget.
    let _frozen = freeze_clock();
    let malformed = [
        "-1S",
        "+1S",
        "1.5S",
        "1s",
        "12",
        "S",
        "123456789S",
        " 1S",
        "1S ",
    ];

    // The default: INTERNAL, as grpc-go answers, without calling the handler.
    let server = serve_tonic(Some(GrpcFenceLayer::new()), probe.clone()).await;
    let mut client = plain_client(&server);
    for header in malformed {
        let status = within(LIMIT, client.check(with_timeout(header)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{header:?}");
        assert!(
            status
                .message()
                .starts_with("malformed `grpc-timeout` header: "),
            "{header:?}: {}",
            status.message()
        );
    }
    assert_eq!(calls.load(SeqCst), 0);

    // Ignored: served as if there were no header, as tonic does.
    let ignore = GrpcFenceLayer::new()
        .on_malformed(OnMalformed::Ignore)
        .budget(Duration::from_secs(7));
    let server = serve_tonic(Some(ignore), probe.clone()).await;
    let mut client = plain_client(&server);
    for header in malformed {
        within(LIMIT, client.check(with_timeout(header)))
            .await
            .unwrap();
    }
    assert_eq!(calls.load(SeqCst), malformed.len());
    let budgets = std::mem::take(&mut *budgets.lock().unwrap());
    assert!(
        budgets.iter().all(|b| *b == Some(Duration::from_secs(7))),
        "only the server's budget: {budgets:?}"
    );

    // Plain tonic ignores them too.
    let server = serve_tonic(None, probe).await;
    let mut client = plain_client(&server);
    within(LIMIT, client.check(with_timeout("-1S")))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn grpc_server_cap_wins() {
    let (hook, mut reported) = seen();
    let (probe, mut started) = hanging();
    let layer = GrpcFenceLayer::new()
        .budget(Duration::from_secs(1))
        .on_cancel(hook);
    let server = serve_tonic(Some(layer), probe).await;

    for (header, remaining, code) in [
        (Some("10S"), 1_000, BUDGET),
        (None, 1_000, BUDGET),
        (Some("500m"), 495, DEADLINE),
    ] {
        let mut client = plain_client(&server);
        let request = match header {
            Some(header) => with_timeout(header),
            None => tonic::Request::new(HealthCheckRequest::default()),
        };
        let frozen = freeze_clock();
        let call = tokio::spawn(async move { client.check(request).await });
        let handler = next(&mut started).await;
        assert_eq!(
            handler.remaining,
            Some(Duration::from_millis(remaining)),
            "{header:?}: a header only ever shortens the server's budget"
        );
        drop(frozen);

        let status = within(LIMIT, call).await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{header:?}");
        let seen = next(&mut reported).await;
        assert_eq!(seen.codes, [code], "{header:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn grpc_routes_behind_hyper() {
    // tonic `Routes` served by hyper-util, where tonic's own timer is
    // absent: the layer alone holds the call to its deadline.
    let (hook, mut reported) = seen();
    let (probe, mut started) = hanging();
    let routes = tonic::service::Routes::new(HealthServer::new(probe));
    let layer = GrpcFenceLayer::new().margin(Duration::ZERO).on_cancel(hook);
    let server = serve_hyper(ServiceBuilder::new().layer(layer).service(routes)).await;
    let mut client = plain_client(&server);

    let frozen = freeze_clock();
    let call = tokio::spawn(async move { client.check(with_timeout("300m")).await });
    let handler = next(&mut started).await;
    assert_eq!(handler.remaining, Some(Duration::from_millis(300)));
    drop(frozen);

    let status = within(LIMIT, call).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(next(&mut reported).await.codes, [DEADLINE]);
}

#[tokio::test(start_paused = true)]
async fn grpc_routes_behind_axum() {
    let (probe, mut started) = hanging();
    let app = tonic::service::Routes::new(HealthServer::new(probe))
        .into_axum_router()
        .layer(GrpcFenceLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri: http::Uri = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut client = tonic_health::pb::health_client::HealthClient::with_origin(h2, uri);

    let frozen = freeze_clock();
    let call = tokio::spawn(async move { client.check(with_timeout("1S")).await });
    let handler = next(&mut started).await;
    assert_eq!(handler.remaining, Some(Duration::from_millis(995)));
    drop(frozen);

    let status = within(LIMIT, call).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    server.abort();
}
