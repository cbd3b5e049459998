//! The layer in an axum service (feature `axum`): `Router::layer`, the
//! extractor, its rejection, `CancelledResponse`, and a `408` for a body
//! that does not arrive in time.
#![cfg(feature = "axum")]

mod support;

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use fencing::current;
use fencing_tower::axum::CancelledResponse;
use fencing_tower::server::{FenceLayer, RequestContext};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use std::time::Duration;
use support::{raw_request, read_to_end};
use tower::ServiceExt;

async fn text(response: axum::response::Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn extractor_yields_the_request_context() {
    let app: Router = Router::new()
        .route(
            "/",
            get(|context: RequestContext| async move {
                let same = context.fencing().effective_deadline() == current().effective_deadline();
                format!("{:?} {same}", context.inbound_budget())
            }),
        )
        .layer(FenceLayer::new().budget(Duration::from_secs(10)));
    let request = Request::builder()
        .header("connect-timeout-ms", "1200")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "Some(1.2s) true");
}

#[tokio::test(start_paused = true)]
async fn extractor_without_the_layer_names_it() {
    let app: Router = Router::new().route("/", get(|_: RequestContext| async { "unreachable" }));
    let response = app.oneshot(Request::new(Body::empty())).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let message = text(response).await;
    assert!(message.contains("FenceLayer"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn cancelled_response_follows_the_table() {
    let app: Router = Router::new()
        .route(
            "/db",
            get(|| async {
                // The inner fence's own timeout stops the call.
                current()
                    .timeout(Duration::from_secs(1))
                    .code("db")
                    .run(tokio::time::sleep(Duration::from_secs(5)))
                    .await?;
                Ok::<_, CancelledResponse>("done")
            }),
        )
        .layer(FenceLayer::new().budget(Duration::from_secs(10)));
    let response = app
        .oneshot(Request::builder().uri("/db").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let cancelled = response.extensions().get::<fencing::Cancelled>().unwrap();
    assert!(cancelled.cancelled_by("db"));
}

#[tokio::test(start_paused = true)]
async fn slow_upload_is_408_through_router_layer() {
    let app: Router = Router::new()
        .route(
            "/upload",
            post(|body: String| async move { body.len().to_string() }),
        )
        .layer(
            FenceLayer::new()
                .budget(Duration::from_secs(2))
                .watch_axum_request_body(),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Half of the body, then nothing: the `String` extractor is still
    // reading when the budget runs out.
    let post = "POST /upload HTTP/1.1\r\nhost: test\r\ncontent-length: 10\r\n\r\nhello";
    let mut client = raw_request(addr, post).await;
    let response = read_to_end(&mut client).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
}
