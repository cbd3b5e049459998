//! Two HTTP services on loopback, a shop in front of an inventory, both
//! behind `fencing-tower`'s server layer; the shop calls the inventory
//! through the client layer, which sends what is left of its budget. Each
//! scenario prints what budget each hop received and which trigger stopped
//! it, by its code.
//!
//! Run with `cargo run --example two_hops`. It takes about a second of real
//! time.

use axum::extract::{Extension, RawQuery};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use fencing::{current, protect};
use fencing_tower::client::PropagateBudgetLayer;
use fencing_tower::server::{CancelledRequest, Disposition, FenceLayer, RequestContext};
use fencing_tower::status::{status_for, Stage};
use fencing_tower::{BoxError, Drain};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::{sleep, Instant};
use tower::{Service, ServiceBuilder, ServiceExt};

/// What the hops tell the demo, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn say(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }

    /// A hook for `FenceLayer::on_cancel` that says which reasons stopped a
    /// request at `hop`.
    fn hook(&self, hop: &'static str) -> impl Fn(&CancelledRequest<'_>) + Send + Sync + 'static {
        let log = self.clone();
        move |request| {
            let codes: Vec<_> = request
                .cancelled()
                .reasons()
                .iter()
                .map(|r| r.code().map_or("-", |c| c.as_str()).to_owned())
                .collect();
            let status = request
                .status()
                .map_or("nothing sent".to_owned(), |s| s.to_string());
            let what = if request.is_interrupted() {
                "stopped by"
            } else {
                "finished after"
            };
            log.say(format!(
                "{hop}: {what} {} while {:?} ({status})",
                codes.join(" + "),
                request.stage()
            ));
        }
    }
}

fn ms(duration: Option<Duration>) -> String {
    duration.map_or("none".to_owned(), |d| format!("{} ms", d.as_millis()))
}

/// The `work=` of a query: how long the inventory works, in ms.
fn work_of(query: Option<&str>) -> u64 {
    query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("work="))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// The inventory: works for `work` ms, inside its context.
fn inventory(log: Log, drain: &Drain) -> Router {
    let handler = {
        let log = log.clone();
        move |Extension(context): Extension<RequestContext>, RawQuery(query): RawQuery| async move {
            let work = work_of(query.as_deref());
            log.say(format!(
                "inventory: received a budget of {}, has {} left",
                ms(context.inbound_budget()),
                ms(current().remaining())
            ));
            sleep(Duration::from_millis(work)).await;
            "12 in stock"
        }
    };
    Router::new().route("/stock", get(handler)).layer(
        FenceLayer::new()
            .budget(Duration::from_secs(1))
            .drain(drain)
            .on_cancel(log.hook("inventory")),
    )
}

type Outgoing = tower::util::BoxCloneSyncService<
    Request<Empty<Bytes>>,
    http::Response<hyper::body::Incoming>,
    BoxError,
>;

/// The shop: asks the inventory, sending its remaining budget along, and
/// writes an audit line that a client hanging up cannot cut short.
fn shop(log: Log, inventory: SocketAddr) -> Router {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let client: Outgoing = tower::util::BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(PropagateBudgetLayer::new())
            .service(client),
    );
    let handler = {
        let log = log.clone();
        move |Extension(context): Extension<RequestContext>, RawQuery(query): RawQuery| {
            let mut client = client.clone();
            let log = log.clone();
            async move {
                log.say(format!(
                    "shop:      received a budget of {}, has {} left",
                    ms(context.inbound_budget()),
                    ms(current().remaining())
                ));
                let uri = format!(
                    "http://{inventory}/stock?work={}",
                    work_of(query.as_deref())
                );
                let request = Request::get(uri).body(Empty::new()).unwrap();
                let answer = client.ready().await?.call(request).await;
                if let Err(told) = current().check() {
                    // The audit line is written whatever happened: the
                    // fence waits for it, even past its grace period.
                    let _audit = protect();
                    sleep(Duration::from_millis(5)).await;
                    log.say(format!("shop:      audit line written after {told}"));
                }
                let response = match answer {
                    Ok(response) => response,
                    Err(err) => {
                        return match err.downcast::<fencing::Cancelled>() {
                            Ok(cancelled) => Err(Failure::Cancelled(*cancelled)),
                            Err(err) => Err(Failure::Other(err.to_string())),
                        }
                    }
                };
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| Failure::Other(e.to_string()))?;
                let body = String::from_utf8_lossy(&body.to_bytes()).into_owned();
                Ok((status, format!("inventory says {status}: {body}")))
            }
        }
    };
    Router::new().route("/order", get(handler)).layer(
        FenceLayer::new()
            .budget(Duration::from_millis(300))
            .disposition(Disposition::Detach {
                grace: Duration::from_millis(50),
            })
            .on_cancel(log.hook("shop")),
    )
}

enum Failure {
    Cancelled(fencing::Cancelled),
    Other(String),
}

impl From<BoxError> for Failure {
    fn from(err: BoxError) -> Self {
        Self::Other(err.to_string())
    }
}

impl axum::response::IntoResponse for Failure {
    fn into_response(self) -> axum::response::Response {
        match self {
            // The status table the layers use (`504` for time, `503` for
            // shutdown); with the `axum` feature, `CancelledResponse` does
            // this.
            Self::Cancelled(cancelled) => status_for(&cancelled, Stage::Handler).into_response(),
            Self::Other(message) => (StatusCode::BAD_GATEWAY, message).into_response(),
        }
    }
}

async fn listen(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

struct Scenario {
    name: &'static str,
    /// How long the inventory works.
    work: u64,
    /// The budget header the client sends, if any.
    header: Option<&'static str>,
    /// The client hangs up after this long.
    hang_up: Option<u64>,
    /// The inventory begins to drain after this long.
    drain: Option<u64>,
}

#[tokio::main]
async fn main() {
    let log = Log::default();
    let scenarios = [
        Scenario {
            name: "fast order",
            work: 10,
            header: None,
            hang_up: None,
            drain: None,
        },
        Scenario {
            name: "client's tighter budget",
            work: 10,
            header: Some("120"),
            hang_up: None,
            drain: None,
        },
        Scenario {
            name: "slow inventory",
            work: 2_000,
            header: None,
            hang_up: None,
            drain: None,
        },
        Scenario {
            name: "client hangs up",
            work: 200,
            header: None,
            hang_up: Some(30),
            drain: None,
        },
        Scenario {
            name: "budget spent on arrival",
            work: 10,
            header: Some("0"),
            hang_up: None,
            drain: None,
        },
        Scenario {
            name: "inventory shuts down",
            work: 500,
            header: None,
            hang_up: None,
            drain: Some(30),
        },
    ];
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();

    for scenario in &scenarios {
        // Fresh services each time, so that a drain ends only its own run.
        let drain = Drain::new(Duration::from_millis(20));
        let inventory = listen(inventory(log.clone(), &drain)).await;
        let shop = listen(shop(log.clone(), inventory)).await;

        let mut request = Request::get(format!("http://{shop}/order?work={}", scenario.work));
        if let Some(header) = scenario.header {
            request = request.header("connect-timeout-ms", header);
        }
        let request = request.body(Empty::new()).unwrap();
        let started = Instant::now();
        let call = client.request(request);
        if let Some(after) = scenario.drain {
            let drain = drain.clone();
            tokio::spawn(async move {
                sleep(Duration::from_millis(after)).await;
                drain.shutdown().await;
            });
        }
        let outcome = match scenario.hang_up {
            Some(after) => match tokio::time::timeout(Duration::from_millis(after), call).await {
                Ok(_) => "answered before hanging up".to_owned(),
                Err(_) => "hung up".to_owned(),
            },
            None => match call.await {
                Ok(response) => {
                    let status = response.status();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    format!("{status} {}", String::from_utf8_lossy(&body))
                }
                Err(err) => format!("error: {err}"),
            },
        };
        let took = started.elapsed().as_millis();
        // Let the hops finish what they do after the client is answered
        // (a detached handler's grace period, a drop in flight).
        sleep(Duration::from_millis(120)).await;

        println!("{} ({took} ms): {outcome}", scenario.name);
        for line in log.take() {
            println!("    {line}");
        }
    }
}
