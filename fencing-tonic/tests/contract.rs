//! What the public types promise: they can cross threads, be cloned and
//! printed, and the layers fit tonic's `Server::builder().layer(..)` and a
//! generated client.

use fencing_tonic::client::body::ResponseBody;
use fencing_tonic::client::future::ResponseFuture;
use fencing_tonic::client::{PropagateDeadline, PropagateDeadlineLayer};
use fencing_tonic::server::{CancelledCall, GrpcFenceLayer, GrpcProtocol};
use std::fmt::Debug;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

fn send_sync<T: Send + Sync>() {}
fn clone_debug<T: Clone + Debug>() {}

#[test]
fn public_types_are_send_sync_clone_debug() {
    send_sync::<GrpcFenceLayer>();
    send_sync::<GrpcProtocol>();
    send_sync::<PropagateDeadlineLayer>();
    send_sync::<PropagateDeadline<Channel>>();
    send_sync::<ResponseBody<http_body_util::Empty<bytes::Bytes>>>();
    send_sync::<CancelledCall<'static>>();
    clone_debug::<GrpcFenceLayer>();
    clone_debug::<GrpcProtocol>();
    clone_debug::<PropagateDeadlineLayer>();
    clone_debug::<PropagateDeadline<Channel>>();
}

#[test]
fn futures_and_bodies_are_send_when_theirs_are() {
    // Not `Unpin`: they hold a timer.
    fn send<T: Send>() {}
    send::<ResponseFuture<std::future::Ready<()>>>();
    send::<ResponseBody<tonic::body::Body>>();
}

#[tokio::test]
async fn layers_fit_tonic() {
    // Compiles: the server layer on tonic's `Server`, the client layer
    // under a generated client.
    let server = tonic::transport::Server::builder()
        .layer(GrpcFenceLayer::new())
        .add_service(tonic_health::server::health_reporter().1);
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
    let client = HealthClient::new(PropagateDeadline::new(channel));
    let _ = (server, client);
}
