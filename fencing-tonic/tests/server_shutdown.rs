//! Shutdown with the server layer: live calls are told, dropped at the end
//! of the drain's grace period and answered UNAVAILABLE; new calls are
//! answered UNAVAILABLE at once.

mod support;

use fencing::current;
use fencing_tonic::codes::SHUTDOWN;
use fencing_tonic::server::GrpcFenceLayer;
use fencing_tonic::Drain;
use std::time::Duration;
use support::{freeze_clock, next, plain_client, seen, serve_tonic, serving, within, Probe, LIMIT};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test(start_paused = true)]
async fn grpc_shutdown_is_unavailable() {
    let (hook, mut reported) = seen();
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let (told_tx, mut told) = tokio::sync::mpsc::unbounded_channel();
    let probe = Probe::check(move |request| {
        let (started_tx, told_tx) = (started_tx.clone(), told_tx.clone());
        async move {
            let _ = started_tx.send(());
            if request.get_ref().service == "cooperative" {
                // Stops at the next safe point once told.
                let reason = current().cancelled().await;
                let _ = told_tx.send(reason.cancelled_by(SHUTDOWN));
                return Ok(serving());
            }
            std::future::pending::<()>().await;
            Ok(serving())
        }
    });
    let drain = Drain::new(Duration::from_millis(100));
    let layer = GrpcFenceLayer::new().drain(&drain).on_cancel(hook);
    let server = serve_tonic(Some(layer), probe).await;

    let frozen = freeze_clock();
    let mut calls = Vec::new();
    for service in ["stubborn", "cooperative"] {
        let mut client = plain_client(&server);
        let request = HealthCheckRequest {
            service: service.into(),
        };
        calls.push(tokio::spawn(async move { client.check(request).await }));
        next(&mut started).await;
    }
    drop(frozen);

    let report = within(LIMIT, drain.shutdown()).await;
    assert_eq!((report.finished(), report.dropped()), (1, 1));
    assert!(next(&mut told).await, "told by the shutdown");
    let cooperative = within(LIMIT, calls.pop().unwrap()).await.unwrap();
    assert!(cooperative.is_ok(), "finished within the grace period");
    let stubborn = within(LIMIT, calls.pop().unwrap()).await.unwrap();
    let status = stubborn.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.message(),
        "cancelled: shutdown: server shutting down"
    );
    let seen = next(&mut reported).await;
    assert_eq!(seen.codes, [SHUTDOWN]);
    assert_eq!(seen.code, Some(Code::Unavailable));

    // Once the drain began, calls are answered without calling the handler.
    let mut client = plain_client(&server);
    let _frozen = freeze_clock();
    let status = within(LIMIT, client.check(HealthCheckRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(started.try_recv().is_err(), "not called");
}
