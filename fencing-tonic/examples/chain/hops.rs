//! The three services of the chain, on loopback: A speaks HTTP (axum and
//! `fencing-tower`), and calls B, which calls C, both tonic services of the
//! standard health protocol (`tonic-health`'s generated code, no protoc).
//!
//! The request's `service` field says how the work goes: `fast`, C
//! answers at once; `slow`, C takes an hour (so the budget runs out
//! there); `late`, B spends its whole budget before it calls C at all.
//! Every hop tells what it saw and did as [`Event`]s.
//!
//! Shared by the `chain` example, which prints them, and the `chain`
//! tests, which check them.
// The example and the tests each use only part of it.
#![allow(dead_code)]

use axum::extract::State;
use axum::routing::get;
use fencing::{current, protect};
use fencing_tonic::client::{PropagateDeadline, PropagateDeadlineLayer};
use fencing_tonic::codes::CLIENT_DISCONNECTED;
use fencing_tonic::server::{CancelledCall, Disposition, GrpcFenceLayer};
use fencing_tonic::status::http_status_for;
use fencing_tonic::Drain;
use fencing_tower::codec::{BudgetCodec, GrpcTimeout};
use fencing_tower::server::{CancelledRequest, FenceLayer};
use http::{HeaderMap, StatusCode, Uri};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// What a hop saw or did.
#[derive(Debug)]
pub(crate) enum Event {
    /// A hop's handler started: the budget its caller sent, and what it has
    /// left, after its server's margin.
    Received {
        hop: &'static str,
        sent: Option<Duration>,
        remaining: Option<Duration>,
    },
    /// A hop's handler answered.
    Answered { hop: &'static str, answer: String },
    /// A hop's layer stopped the call: the codes of the reasons, and what
    /// it answered (nothing if the caller was gone).
    Stopped {
        hop: &'static str,
        codes: Vec<String>,
        answer: Option<String>,
    },
    /// A's audit write completed.
    Audited { answer: String, client_gone: bool },
}

type Events = mpsc::UnboundedSender<Event>;

/// A gRPC client whose calls carry their caller's deadline.
type Client = HealthClient<PropagateDeadline<Channel>>;

fn codes(cancelled: &fencing::Cancelled) -> Vec<String> {
    cancelled
        .reasons()
        .iter()
        .filter_map(|reason| reason.code().map(|code| code.as_str().to_owned()))
        .collect()
}

/// Reports what a gRPC hop's layer stopped.
fn grpc_hook(hop: &'static str, events: &Events) -> impl Fn(&CancelledCall<'_>) + Send + Sync {
    let events = events.clone();
    move |call| {
        let _ = events.send(Event::Stopped {
            hop,
            codes: codes(call.cancelled()),
            answer: call.code().map(|code| format!("{code:?}")),
        });
    }
}

/// What a gRPC handler received.
fn received<T>(hop: &'static str, request: &Request<T>, events: &Events) {
    let sent = request
        .metadata()
        .get("grpc-timeout")
        .and_then(|value| GrpcTimeout.decode(&value.to_str().ok()?.parse().ok()?).ok());
    let _ = events.send(Event::Received {
        hop,
        sent,
        remaining: current().remaining(),
    });
}

/// C: does the work the request names.
struct C {
    events: Events,
}

#[tonic::async_trait]
impl Health for C {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        received("C", &request, &self.events);
        if request.get_ref().service == "slow" {
            // Slower than any budget: the call's deadline stops it.
            tokio::time::sleep(Duration::from_secs(3_600)).await;
        }
        let _ = self.events.send(Event::Answered {
            hop: "C",
            answer: "OK".into(),
        });
        Ok(Response::new(HealthCheckResponse { status: 1 }))
    }

    type WatchStream = tokio_stream::Pending<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not in this chain"))
    }
}

/// B: asks C, and answers what C answered.
struct B {
    c: Client,
    events: Events,
}

#[tonic::async_trait]
impl Health for B {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        received("B", &request, &self.events);
        if request.get_ref().service == "late" {
            // A commit of B's own that overruns the whole budget.
            let _commit = protect();
            let left = current().remaining().unwrap_or_default();
            tokio::time::sleep(left + Duration::from_millis(1)).await;
        }
        // No deadline passed by hand: the client layer reads this call's,
        // and refuses to send it once it is spent.
        let reply = self.c.clone().check(request.into_inner()).await;
        let answer = match &reply {
            Ok(_) => "OK".to_owned(),
            Err(status) => format!("{:?}", status.code()),
        };
        let _ = self.events.send(Event::Answered { hop: "B", answer });
        reply
    }

    type WatchStream = tokio_stream::Pending<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not in this chain"))
    }
}

/// A's state: its client of B.
#[derive(Clone)]
struct A {
    b: Client,
    events: Events,
}

/// A's one route, `GET /check?fast` (or `slow`, `late`).
async fn check(State(a): State<A>, uri: Uri, headers: HeaderMap) -> (StatusCode, String) {
    let sent = headers
        .get("connect-timeout-ms")
        .and_then(|ms| ms.to_str().ok()?.parse().ok())
        .map(Duration::from_millis);
    let _ = a.events.send(Event::Received {
        hop: "A",
        sent,
        remaining: current().remaining(),
    });
    let work = uri.query().unwrap_or("fast").to_owned();

    // The call to B stops the moment the client leaves: only the audit
    // below needs A's grace period.
    let call = current().grace_for(CLIENT_DISCONNECTED, Duration::ZERO);
    let request = HealthCheckRequest { service: work };
    let reply = call.bind(a.b.clone().check(request)).await;
    let (status, answer) = match &reply {
        Ok(_) => (StatusCode::OK, "SERVING".to_owned()),
        Err(status) => (
            http_status_for(status.code()),
            format!("{:?}: {}", status.code(), status.message()),
        ),
    };

    // The audit write completes, whoever left.
    let _commit = protect();
    let client_gone = current()
        .check()
        .is_err_and(|cancelled| cancelled.cancelled_by(CLIENT_DISCONNECTED));
    tokio::task::yield_now().await; // the write
    let _ = a.events.send(Event::Audited {
        answer: status.as_u16().to_string(),
        client_gone,
    });
    (status, answer)
}

/// Reports what A's layer stopped.
fn http_hook(events: &Events) -> impl Fn(&CancelledRequest<'_>) + Send + Sync {
    let events = events.clone();
    move |request| {
        let _ = events.send(Event::Stopped {
            hop: "A",
            codes: codes(request.cancelled()),
            answer: request.status().map(|status| status.to_string()),
        });
    }
}

/// The three hops, serving on loopback.
pub(crate) struct Chain {
    /// A's address, for HTTP requests.
    pub(crate) a: SocketAddr,
    /// B's shutdown.
    pub(crate) b_drain: Drain,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Chain {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn listen() -> (TcpListener, Uri) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    (listener, uri)
}

/// A client of `uri` whose calls carry their caller's deadline.
async fn client(uri: Uri) -> Client {
    let channel = tonic::transport::Endpoint::from(uri)
        .connect()
        .await
        .unwrap();
    HealthClient::new(
        tower::ServiceBuilder::new()
            .layer(PropagateDeadlineLayer::new())
            .service(channel),
    )
}

impl Chain {
    /// Starts C, B and A, each on an ephemeral port, each telling `events`.
    pub(crate) async fn start(events: Events) -> Self {
        let mut tasks = Vec::new();

        let (listener, c_uri) = listen().await;
        let c = tonic::transport::Server::builder()
            .layer(GrpcFenceLayer::new().on_cancel(grpc_hook("C", &events)))
            .add_service(HealthServer::new(C {
                events: events.clone(),
            }));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tasks.push(tokio::spawn(async move {
            let _ = c.serve_with_incoming(incoming).await;
        }));

        let (listener, b_uri) = listen().await;
        let b_drain = Drain::new(Duration::ZERO);
        let b = tonic::transport::Server::builder()
            .layer(
                GrpcFenceLayer::new()
                    .drain(&b_drain)
                    .on_cancel(grpc_hook("B", &events)),
            )
            .add_service(HealthServer::new(B {
                c: client(c_uri).await,
                events: events.clone(),
            }));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let stopped = b_drain.draining();
        tasks.push(tokio::spawn(async move {
            let _ = b.serve_with_incoming_shutdown(incoming, stopped).await;
        }));

        let (listener, _) = listen().await;
        let a_addr = listener.local_addr().unwrap();
        let a = A {
            b: client(b_uri).await,
            events: events.clone(),
        };
        let app = axum::Router::new()
            .route("/check", get(check))
            .with_state(a)
            .layer(
                FenceLayer::new()
                    .budget(Duration::from_secs(30))
                    .disposition(Disposition::Detach {
                        grace: Duration::from_secs(1),
                    })
                    .on_cancel(http_hook(&events)),
            );
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));

        Self {
            a: a_addr,
            b_drain,
            tasks,
        }
    }
}

/// Sends `GET /check?{work}` to A over HTTP/1.1, with `budget` in
/// `connect-timeout-ms` (none if `None`), and returns the connection.
pub(crate) async fn ask(
    a: SocketAddr,
    work: &str,
    budget: Option<Duration>,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let budget = budget.map_or(String::new(), |budget| {
        format!("connect-timeout-ms: {}\r\n", budget.as_millis())
    });
    let request =
        format!("GET /check?{work} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n{budget}\r\n");
    let mut stream = tokio::net::TcpStream::connect(a).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads A's answer to the end: its status line.
pub(crate) async fn answer(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes).await;
    let text = String::from_utf8_lossy(&bytes);
    text.lines().next().unwrap_or_default().to_owned()
}
