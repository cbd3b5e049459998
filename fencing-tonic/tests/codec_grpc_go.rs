//! `grpc-timeout` against grpc-go's rules, beyond what `fencing-tower`'s
//! `codec_props` checks of every codec (rounding up by less than a unit,
//! the digit limit, monotonicity, saturation, the grammar, no panics):
//!
//! - the client layer sends exactly what grpc-go's `EncodeDuration` would,
//!   for every budget grpc-go can hold (a Go `time.Duration`, up to
//!   `i64::MAX` ns), compared with a reference written from grpc-go's
//!   algorithm: `0n` for nothing left, else the first of `n u m S M H`
//!   whose value, rounded up, fits 8 digits;
//! - the server layer reads what grpc-go's `decodeTimeout` reads, less its
//!   margin, and rejects what grpc-go rejects; where grpc-go is laxer (a
//!   sign, which its `strconv.ParseInt` accepts), it rejects too;
//! - whatever the header holds, the server layer never panics, and a
//!   longer header never gives a shorter budget.

use fencing::Fencing;
use fencing_tonic::client::PropagateDeadline;
use fencing_tower::codec::{BudgetCodec, GrpcTimeout};
use http::HeaderValue;
use proptest::prelude::*;
use std::time::Duration;
use tower::{service_fn, ServiceExt};

const GO_MAX_NANOS: u128 = i64::MAX as u128;
const MAX_VALUE: u128 = 99_999_999;

/// grpc-go's `EncodeDuration` (internal/grpcutil/encode_duration.go), for
/// a duration in nanoseconds up to `i64::MAX`.
fn grpc_go_encode(nanos: u128) -> String {
    if nanos == 0 {
        return "0n".into();
    }
    // `div` rounds up.
    let div = |unit: u128| nanos.div_ceil(unit);
    for (unit, letter) in [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
    ] {
        let value = div(unit);
        if value <= MAX_VALUE {
            return format!("{value}{letter}");
        }
    }
    format!("{}H", div(3_600_000_000_000))
}

/// grpc-go's `decodeTimeout` (internal/transport/http_util.go): the
/// duration in nanoseconds (negative allowed, hours clamped to
/// `i64::MAX`), or `None` if rejected.
fn grpc_go_decode(s: &[u8]) -> Option<i128> {
    let size = s.len();
    if !(2..=9).contains(&size) {
        return None;
    }
    let unit: i128 = match s[size - 1] {
        b'H' => 3_600_000_000_000,
        b'M' => 60_000_000_000,
        b'S' => 1_000_000_000,
        b'm' => 1_000_000,
        b'u' => 1_000,
        b'n' => 1,
        _ => return None,
    };
    // strconv.ParseInt(s, 10, 64): an optional sign, then ASCII digits.
    let digits = &s[..size - 1];
    let (negative, digits) = match digits.first() {
        Some(b'-') => (true, &digits[1..]),
        Some(b'+') => (false, &digits[1..]),
        _ => (false, digits),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value: i128 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let value = if negative { -value } else { value };
    let nanos = value * unit;
    Some(nanos.min(i64::MAX as i128))
}

fn duration(nanos: u128) -> Duration {
    Duration::new(
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    )
}

/// A budget in grpc-go's range: log-uniform in magnitude, or next to a
/// unit's boundary, where rounding and the choice of unit change.
fn go_budget() -> impl Strategy<Value = u128> {
    let magnitude = (0u32..=63, any::<u64>())
        .prop_map(|(bits, r)| u128::from(r) % (1u128 << bits).max(1) % (GO_MAX_NANOS + 1));
    let boundary = (
        proptest::sample::select(vec![
            1u128,
            1_000,
            1_000_000,
            1_000_000_000,
            60_000_000_000,
            3_600_000_000_000,
        ]),
        prop_oneof![Just(MAX_VALUE), Just(MAX_VALUE + 1), 0..=MAX_VALUE + 1],
        -1i8..=1,
    )
        .prop_map(|(unit, k, delta)| {
            (unit * k)
                .saturating_add_signed(i128::from(delta))
                .min(GO_MAX_NANOS)
        });
    prop_oneof![magnitude, boundary, Just(0), Just(GO_MAX_NANOS)]
}

/// What `PropagateDeadline` stamps for a context with `nanos` left.
fn stamped(nanos: u128) -> Option<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let transport = service_fn(|request: http::Request<()>| async move {
            let sent = request.headers().get("grpc-timeout").cloned();
            Ok::<_, std::convert::Infallible>(http::Response::new(sent))
        });
        let request = http::Request::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let context = Fencing::new().timeout(duration(nanos));
        match context
            .bind(PropagateDeadline::new(transport).oneshot(request))
            .await
        {
            Ok(response) => response
                .into_body()
                .into_inner()
                .map(|value| value.to_str().unwrap().to_owned()),
            Err(_) => None, // refused: a spent budget is not sent
        }
    })
}

/// Bytes that are mostly almost a `grpc-timeout`, and any bytes.
fn near_grammar() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[-+]?[0-9]{0,10}[HMSmun]".prop_map(String::into_bytes),
        "[-+ .0-9]{0,10}[HMSmunhsx0-9 ]?".prop_map(String::into_bytes),
        "0{0,10}[0-9]{0,3}[HMSmun]?".prop_map(String::into_bytes),
        any::<Vec<u8>>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn encode_is_grpc_gos(nanos in go_budget()) {
        let encoded = GrpcTimeout.encode(duration(nanos));
        prop_assert_eq!(encoded.to_str().unwrap(), grpc_go_encode(nanos), "{} ns", nanos);
    }

    #[test]
    fn client_stamps_what_grpc_go_sends(nanos in go_budget()) {
        // Nothing is sent for a spent budget; grpc-go would send `0n`, but
        // refuses the call too.
        let expected = (nanos > 0).then(|| grpc_go_encode(nanos));
        prop_assert_eq!(stamped(nanos), expected, "{} ns", nanos);
    }

    #[test]
    fn decode_is_grpc_gos_without_signs(bytes in near_grammar()) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
        let ours = GrpcTimeout.decode(&value).ok();
        let go = grpc_go_decode(&bytes);
        let signed = bytes.len() > 1 && matches!(bytes[0], b'-' | b'+');
        match (ours, go) {
            (Some(ours), Some(go)) => {
                // Beyond Go's range grpc-go clamps; here it is exact.
                let ours = ours.as_nanos() as i128;
                prop_assert!(ours == go || (go == i64::MAX as i128 && ours >= go), "{:?}", value);
            }
            (None, Some(_)) => prop_assert!(signed, "only a sign is stricter: {:?}", value),
            (Some(_), None) => prop_assert!(false, "grpc-go rejects {:?}", value),
            (None, None) => {}
        }
    }

    #[test]
    fn server_reads_what_grpc_go_sends_less_its_margin(
        nanos in go_budget(),
        margin in 0u64..=50_000_000,
    ) {
        let header = grpc_go_encode(nanos);
        let margin = Duration::from_nanos(margin);
        let read = GrpcTimeout.decode(&HeaderValue::from_str(&header).unwrap()).unwrap();
        match served(header.as_bytes(), margin) {
            Served::Handler(budget) => {
                prop_assert_eq!(budget, Some(read - margin), "{}", header);
            }
            Served::Status(code) => {
                prop_assert!(read <= margin, "{}", header);
                prop_assert_eq!(code, Some(4), "{}: DEADLINE_EXCEEDED", header);
            }
        }
    }

    #[test]
    fn server_answers_every_header(bytes in near_grammar(), margin in 0u64..=10_000_000) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
        let margin = Duration::from_nanos(margin);
        match (served(&bytes, margin), GrpcTimeout.decode(&value)) {
            (Served::Handler(budget), Ok(read)) => {
                prop_assert_eq!(budget, Some(read - margin), "{:?}", value);
            }
            (Served::Status(code), Ok(read)) => {
                prop_assert!(read <= margin && code == Some(4), "{:?}", value);
            }
            (Served::Status(code), Err(_)) => {
                prop_assert_eq!(code, Some(13), "{:?}: INTERNAL", value);
            }
            (Served::Handler(_), Err(_)) => prop_assert!(false, "{:?} was served", value),
        }
    }
}

/// What the server layer did with a call: called the handler, which saw
/// this budget, or answered with this `grpc-status`.
enum Served {
    Handler(Option<Duration>),
    Status(Option<u32>),
}

/// A call with `grpc-timeout: header` through `GrpcFenceLayer` with
/// `margin`, in process, on a paused clock that nothing moves.
fn served(header: &[u8], margin: Duration) -> Served {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        // Tells the budget it saw in a header.
        let handler = service_fn(|_: http::Request<()>| async {
            let budget = fencing::current()
                .remaining()
                .map_or("none".to_owned(), |budget| budget.as_nanos().to_string());
            let response = http::Response::builder()
                .header("x-budget", budget)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        });
        let layer = fencing_tonic::server::GrpcFenceLayer::new().margin(margin);
        let request = http::Request::builder()
            .header("content-type", "application/grpc")
            .header("grpc-timeout", HeaderValue::from_bytes(header).unwrap())
            .body(())
            .unwrap();
        let response = tower::ServiceBuilder::new()
            .layer(layer)
            .service(handler)
            .oneshot(request)
            .await
            .unwrap();
        let code = response
            .headers()
            .get("grpc-status")
            .map(|code| code.to_str().unwrap().parse().unwrap());
        match response.headers().get("x-budget") {
            Some(budget) => Served::Handler(
                budget
                    .to_str()
                    .unwrap()
                    .parse()
                    .ok()
                    .map(|nanos: u128| duration(nanos)),
            ),
            None => Served::Status(code),
        }
    })
}
