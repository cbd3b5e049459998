//! Response streams under the server layer: they end at the deadline with
//! trailers carrying the status, not with a reset stream.

mod support;

use fencing_tonic::codes::DEADLINE;
use fencing_tonic::server::GrpcFenceLayer;
use fencing_tower::server::FenceLayer;
use fencing_tower::status::Stage;
use support::{
    freeze_clock, next, plain_client, read_all, seen, serve_hyper, serve_tonic, ticking,
    with_timeout, within, LIMIT,
};
use tokio::sync::mpsc;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::pb::HealthCheckResponse;
use tower::ServiceBuilder;

/// Opens the stream on a frozen clock, which moves again once the handler
/// has started: the deadline and the ticks count from the same instant.
async fn open(
    client: &mut HealthClient<support::Plain>,
    started: &mut mpsc::UnboundedReceiver<support::Started>,
) -> tonic::Streaming<HealthCheckResponse> {
    let frozen = freeze_clock();
    let mut client = client.clone();
    let call = tokio::spawn(async move { client.watch(with_timeout("350m")).await });
    next(started).await;
    drop(frozen);
    within(LIMIT, call).await.unwrap().unwrap().into_inner()
}

#[tokio::test(start_paused = true)]
async fn grpc_streaming_bounded_by_deadline() {
    let (hook, mut reported) = seen();
    let (probe, mut started) = ticking();
    let server = serve_tonic(Some(GrpcFenceLayer::new().on_cancel(hook)), probe).await;
    let mut client = plain_client(&server);

    // 350 ms, less the margin: messages at 0, 100, 200 and 300 ms, then the
    // status at 345 ms.
    let stream = open(&mut client, &mut started).await;
    let (messages, status) = read_all(stream).await;
    assert_eq!(messages, 4);
    let status = status.expect("the stream ends with a status");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        status.message(),
        "cancelled: deadline: timed out after 345ms",
        "the server's trailers, not a reset stream"
    );
    let seen = next(&mut reported).await;
    assert_eq!(seen.codes, [DEADLINE]);
    assert_eq!(seen.stage, Stage::ResponseBody);
    assert_eq!(seen.code, Some(Code::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn plain_http_layer_resets_the_stream() {
    // The same stream behind `fencing-tower`'s plain HTTP layer: it ends
    // with an error, which hyper turns into a reset stream
    // (`RST_STREAM(INTERNAL_ERROR)`): the client sees no DEADLINE_EXCEEDED.
    let (probe, mut started) = ticking();
    let routes = tonic::service::Routes::new(HealthServer::new(probe));
    let server = serve_hyper(
        ServiceBuilder::new()
            .layer(FenceLayer::new())
            .service(routes),
    )
    .await;
    let mut client = plain_client(&server);
    let stream = open(&mut client, &mut started).await;
    let (messages, status) = read_all(stream).await;
    assert_eq!(messages, 4);
    let status = status.expect("the stream ends with an error");
    // hyper resets the stream with INTERNAL_ERROR, which tonic's client
    // reports as INTERNAL "h2 protocol error".
    assert_eq!(status.code(), Code::Internal, "{status:?}");
}
