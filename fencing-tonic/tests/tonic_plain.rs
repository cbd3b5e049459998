//! What tonic does without these layers, pinned so that the difference
//! these layers make is visible (and so that a tonic release that changes
//! it is noticed): its timers report a deadline as `CANCELLED`.

mod support;

use std::time::Duration;
use support::{
    channel, freeze_clock, hanging, next, plain_client, serve_hyper, serve_tonic, with_timeout,
    within, LIMIT,
};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test(start_paused = true)]
async fn grpc_plain_tonic_is_cancelled() {
    // tonic's `Server`: its timer drops the handler at the caller's
    // deadline and answers CANCELLED.
    let (probe, mut started) = hanging();
    let server = serve_tonic(None, probe.clone()).await;
    let mut client = plain_client(&server);
    let frozen = freeze_clock();
    let call = tokio::spawn(async move { client.check(with_timeout("200m")).await });
    let handler = next(&mut started).await;
    assert_eq!(
        handler.remaining, None,
        "the handler cannot know its deadline"
    );
    drop(frozen);
    let status = within(LIMIT, call).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Cancelled);
    assert_eq!(status.message(), "Timeout expired");
    within(LIMIT, handler.dropped).await.unwrap();

    // tonic's `Channel`: `Request::set_timeout` is held by a timer of its
    // own, reported CANCELLED too (the server here has no timer at all).
    let routes = tonic::service::Routes::new(HealthServer::new(probe));
    let server = serve_hyper(routes).await;
    let mut client = HealthClient::new(channel(&server).await);
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request.set_timeout(Duration::from_millis(200));
    let frozen = freeze_clock();
    let call = tokio::spawn(async move { client.check(request).await });
    let handler = next(&mut started).await;
    assert_eq!(handler.header.as_deref(), Some("200000u"));
    drop(frozen);
    let status = within(LIMIT, call).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Cancelled);
    assert_eq!(status.message(), "Timeout expired");
}

#[test]
fn tonic_encodes_grpc_timeout_truncated() {
    // 1,234,567,891 ns: tonic sends 1,234,567 µs, a budget shorter than
    // the caller's, which the next hop believes is the caller's.
    let mut request = tonic::Request::new(());
    request.set_timeout(Duration::from_nanos(1_234_567_891));
    assert_eq!(request.metadata().get("grpc-timeout").unwrap(), "1234567u");
}
