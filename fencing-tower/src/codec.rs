//! How a budget travels in request headers: [`BudgetCodec`] and the codecs
//! of the protocols that carry one.
//!
//! | codec | header | value | largest value | applies to |
//! |---|---|---|---|---|
//! | [`GrpcTimeout`] | `grpc-timeout` | ≤ 8 digits and a unit, `H M S m u n` | `99999999H` | `content-type: application/grpc*` |
//! | [`ConnectTimeout`] | `connect-timeout-ms` | ≤ 10 digits, milliseconds | `9999999999` | every request |
//! | [`EnvoyTimeout`] | `x-envoy-expected-rq-timeout-ms` | ≤ 10 digits, milliseconds | `9999999999` | every request |
//! | [`HeaderBudget`] | any | ≤ 19 digits, in its [`Unit`] | `9999999999999999999` | every request |
//!
//! Every codec follows the same rules, which are those of grpc-go for
//! `grpc-timeout`:
//!
//! - **Encoding rounds up**, to the header's resolution: a budget of 1.2 ms
//!   goes out as `2` milliseconds, never `1`, so the next service never
//!   believes it has more time than this one can wait for. `grpc-timeout`
//!   takes the finest unit whose value fits its 8 digits. A budget beyond
//!   the largest value saturates to it; nothing panics.
//! - **Decoding is strict**: ASCII digits only (no sign, no spaces, no
//!   fraction), at most the header's digits, a known unit. Anything else is
//!   a [`MalformedBudget`], which the server layer answers as configured.
//!   `0` (or `0n`) is a budget already spent.
//! - `decode(encode(d)) >= d` for every `d` up to the largest value.

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::HeaderMap;
use std::fmt;
use std::time::Duration;

/// Reads and writes a request's budget in one header.
///
/// Implement it for a header of your own; the provided codecs are
/// [`GrpcTimeout`], [`ConnectTimeout`], [`EnvoyTimeout`] and
/// [`HeaderBudget`]. The server layer reads every codec it is given and
/// keeps the tightest budget; the client layer writes one.
///
/// # Examples
///
/// ```
/// use fencing_tower::codec::{BudgetCodec, ConnectTimeout};
/// use std::time::Duration;
///
/// let value = ConnectTimeout.encode(Duration::from_micros(1_200));
/// assert_eq!(value, "2", "rounded up to whole milliseconds");
/// assert_eq!(ConnectTimeout.decode(&value).unwrap(), Duration::from_millis(2));
/// assert!(ConnectTimeout.decode(&"-5".parse().unwrap()).is_err());
/// ```
pub trait BudgetCodec: fmt::Debug + Send + Sync + 'static {
    /// The header this codec reads and writes.
    fn header_name(&self) -> &HeaderName;

    /// Whether the header means a budget on a request with these headers.
    /// `grpc-timeout` does only on gRPC requests; by default every request.
    fn applies_to(&self, headers: &HeaderMap) -> bool {
        let _ = headers;
        true
    }

    /// Parses one value of the header.
    ///
    /// # Errors
    ///
    /// [`MalformedBudget`] if the value is not of the header's form.
    fn decode(&self, value: &HeaderValue) -> Result<Duration, MalformedBudget>;

    /// Formats `budget`, rounded up to the header's resolution and
    /// saturated at its largest value.
    fn encode(&self, budget: Duration) -> HeaderValue;
}

/// Reads the tightest budget that `codecs` find in `headers`: `Ok(None)` if
/// no codec that applies finds its header. Every value of every header
/// counts; one malformed value makes the whole an error.
#[inline]
pub(crate) fn decode_budget<'a, I>(
    codecs: I,
    headers: &HeaderMap,
) -> Result<Option<Duration>, MalformedBudget>
where
    I: IntoIterator<Item = &'a dyn BudgetCodec>,
{
    let mut tightest: Option<Duration> = None;
    for codec in codecs {
        if !codec.applies_to(headers) {
            continue;
        }
        for value in headers.get_all(codec.header_name()) {
            let budget = codec.decode(value)?;
            tightest = Some(tightest.map_or(budget, |t| t.min(budget)));
        }
    }
    Ok(tightest)
}

/// A budget header that could not be read. Created by
/// [`BudgetCodec::decode`].
///
/// # Examples
///
/// ```
/// use fencing_tower::codec::{BudgetCodec, GrpcTimeout};
///
/// let err = GrpcTimeout.decode(&"123456789S".parse().unwrap()).unwrap_err();
/// assert_eq!(err.header(), "grpc-timeout");
/// assert_eq!(err.to_string(), "malformed `grpc-timeout` header: more than 8 digits");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedBudget {
    header: HeaderName,
    problem: Problem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Problem {
    Empty,
    NotDigits,
    TooManyDigits(usize),
    Unit,
}

impl MalformedBudget {
    fn new(header: &HeaderName, problem: Problem) -> Self {
        Self {
            header: header.clone(),
            problem,
        }
    }

    /// The header that was malformed.
    ///
    /// # Examples
    ///
    /// See [`MalformedBudget`].
    #[must_use]
    pub fn header(&self) -> &HeaderName {
        &self.header
    }
}

impl fmt::Display for MalformedBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed `{}` header: ", self.header)?;
        match self.problem {
            Problem::Empty => f.write_str("no value"),
            Problem::NotDigits => f.write_str("not an unsigned decimal number"),
            Problem::TooManyDigits(max) => write!(f, "more than {max} digits"),
            Problem::Unit => f.write_str("unknown unit (expected one of H M S m u n)"),
        }
    }
}

impl std::error::Error for MalformedBudget {}

/// Parses at most `max_digits` ASCII digits. `max_digits` is at most 19, so
/// the value always fits a `u64`.
fn parse_digits(
    header: &HeaderName,
    digits: &[u8],
    max_digits: usize,
) -> Result<u64, MalformedBudget> {
    debug_assert!(max_digits <= 19);
    if digits.is_empty() {
        return Err(MalformedBudget::new(header, Problem::Empty));
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(MalformedBudget::new(header, Problem::NotDigits));
    }
    if digits.len() > max_digits {
        return Err(MalformedBudget::new(
            header,
            Problem::TooManyDigits(max_digits),
        ));
    }
    Ok(digits
        .iter()
        .fold(0, |value, digit| value * 10 + u64::from(digit - b'0')))
}

/// `budget` in whole `unit_nanos`, rounded up, saturating at `max`.
fn ceil_units(budget: Duration, unit_nanos: u128, max: u64) -> u64 {
    let units = budget.as_nanos().div_ceil(unit_nanos);
    u64::try_from(units).map_or(max, |units| units.min(max))
}

/// `value` units of `unit_nanos` as a duration, saturating.
fn duration_of(value: u64, unit_nanos: u128) -> Duration {
    let nanos = u128::from(value) * unit_nanos;
    let secs = nanos / 1_000_000_000;
    match u64::try_from(secs) {
        // `nanos % 1e9` is below 1e9, so it fits a `u32`.
        Ok(secs) => Duration::new(secs, (nanos % 1_000_000_000) as u32),
        Err(_) => Duration::MAX,
    }
}

/// `value` in decimal, followed by `unit` (an ASCII letter) if any.
fn header_value(value: u64, unit: Option<u8>) -> HeaderValue {
    let mut text = value.to_string();
    text.extend(unit.map(char::from));
    HeaderValue::try_from(text).expect("digits and an ASCII letter are a valid header value")
}

const NANOS_PER_MILLI: u128 = 1_000_000;

/// gRPC's `grpc-timeout` header: at most 8 digits and a unit (`H`ours,
/// `M`inutes, `S`econds, `m`illiseconds, `u`microseconds, `n`anoseconds),
/// on requests whose `content-type` starts with `application/grpc`.
///
/// Encoded as grpc-go does: rounded up, in the finest unit whose value fits
/// 8 digits; a budget beyond `99999999H` (over 11,000 years) is sent as
/// that. tonic's own encoder truncates instead, which lets the next hop
/// believe it has more time than it does.
///
/// # Examples
///
/// ```
/// use fencing_tower::codec::{BudgetCodec, GrpcTimeout};
/// use std::time::Duration;
///
/// assert_eq!(GrpcTimeout.encode(Duration::from_millis(1500)), "1500000u");
/// assert_eq!(GrpcTimeout.encode(Duration::from_secs(100_000_000)), "1666667M");
/// assert_eq!(GrpcTimeout.decode(&"3S".parse().unwrap()).unwrap(), Duration::from_secs(3));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcTimeout;

impl GrpcTimeout {
    const MAX_VALUE: u64 = 99_999_999;
    /// From the finest unit to the coarsest.
    const UNITS: [(u8, u128); 6] = [
        (b'n', 1),
        (b'u', 1_000),
        (b'm', NANOS_PER_MILLI),
        (b'S', 1_000_000_000),
        (b'M', 60_000_000_000),
        (b'H', 3_600_000_000_000),
    ];
}

static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
static CONNECT_TIMEOUT: HeaderName = HeaderName::from_static("connect-timeout-ms");
static ENVOY_TIMEOUT: HeaderName = HeaderName::from_static("x-envoy-expected-rq-timeout-ms");

impl BudgetCodec for GrpcTimeout {
    fn header_name(&self) -> &HeaderName {
        &GRPC_TIMEOUT
    }

    fn applies_to(&self, headers: &HeaderMap) -> bool {
        headers
            .get(CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
    }

    fn decode(&self, value: &HeaderValue) -> Result<Duration, MalformedBudget> {
        let bytes = value.as_bytes();
        let Some((&unit, digits)) = bytes.split_last() else {
            return Err(MalformedBudget::new(&GRPC_TIMEOUT, Problem::Empty));
        };
        // A unit is checked after the digits: "12" is a missing unit, "1x"
        // an unknown one, "x" or "-1S" not a number.
        let value = parse_digits(&GRPC_TIMEOUT, digits, 8).map_err(|err| match err.problem {
            Problem::Empty if unit.is_ascii_digit() => {
                MalformedBudget::new(&GRPC_TIMEOUT, Problem::Unit)
            }
            _ => err,
        })?;
        let (_, unit_nanos) = Self::UNITS
            .iter()
            .find(|(letter, _)| *letter == unit)
            .ok_or_else(|| MalformedBudget::new(&GRPC_TIMEOUT, Problem::Unit))?;
        Ok(duration_of(value, *unit_nanos))
    }

    fn encode(&self, budget: Duration) -> HeaderValue {
        let nanos = budget.as_nanos();
        for (letter, unit_nanos) in Self::UNITS {
            let units = nanos.div_ceil(unit_nanos);
            if units <= u128::from(Self::MAX_VALUE) {
                // Fits 8 digits, so it fits a `u64`.
                return header_value(units as u64, Some(letter));
            }
        }
        header_value(Self::MAX_VALUE, Some(b'H'))
    }
}

/// The Connect protocol's `connect-timeout-ms` header: at most 10 digits of
/// milliseconds. Encoded rounded up to the next millisecond; a budget beyond
/// `9999999999` ms (about 115 days) is sent as that.
///
/// # Examples
///
/// ```
/// use fencing_tower::codec::{BudgetCodec, ConnectTimeout};
/// use std::time::Duration;
///
/// assert_eq!(ConnectTimeout.encode(Duration::from_nanos(1)), "1");
/// assert_eq!(ConnectTimeout.decode(&"250".parse().unwrap()).unwrap(), Duration::from_millis(250));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectTimeout;

const MAX_TEN_DIGITS: u64 = 9_999_999_999;

impl BudgetCodec for ConnectTimeout {
    fn header_name(&self) -> &HeaderName {
        &CONNECT_TIMEOUT
    }

    fn decode(&self, value: &HeaderValue) -> Result<Duration, MalformedBudget> {
        let millis = parse_digits(&CONNECT_TIMEOUT, value.as_bytes(), 10)?;
        Ok(Duration::from_millis(millis))
    }

    fn encode(&self, budget: Duration) -> HeaderValue {
        header_value(ceil_units(budget, NANOS_PER_MILLI, MAX_TEN_DIGITS), None)
    }
}

/// Envoy's `x-envoy-expected-rq-timeout-ms` header, the time the router
/// expects the request to take, in milliseconds: read with the rules of
/// [`ConnectTimeout`] (at most 10 digits). Opt-in: add it to the server
/// layer when Envoy fronts the service.
///
/// # Examples
///
/// ```
/// use fencing_tower::codec::{BudgetCodec, EnvoyTimeout};
/// use std::time::Duration;
///
/// assert_eq!(EnvoyTimeout.decode(&"15000".parse().unwrap()).unwrap(), Duration::from_secs(15));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvoyTimeout;

impl BudgetCodec for EnvoyTimeout {
    fn header_name(&self) -> &HeaderName {
        &ENVOY_TIMEOUT
    }

    fn decode(&self, value: &HeaderValue) -> Result<Duration, MalformedBudget> {
        let millis = parse_digits(&ENVOY_TIMEOUT, value.as_bytes(), 10)?;
        Ok(Duration::from_millis(millis))
    }

    fn encode(&self, budget: Duration) -> HeaderValue {
        header_value(ceil_units(budget, NANOS_PER_MILLI, MAX_TEN_DIGITS), None)
    }
}

/// The unit of a [`HeaderBudget`].
///
/// # Examples
///
/// See [`HeaderBudget`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Whole seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Nanoseconds.
    Nanos,
}

impl Unit {
    fn nanos(self) -> u128 {
        match self {
            Self::Seconds => 1_000_000_000,
            Self::Millis => NANOS_PER_MILLI,
            Self::Micros => 1_000,
            Self::Nanos => 1,
        }
    }
}

/// A budget in a header of your own: an unsigned decimal number of at most
/// 19 digits in a [`Unit`], rounded up when encoded and saturating at
/// `9999999999999999999`.
///
/// # Examples
///
/// ```
/// use fencing_tower::codec::{BudgetCodec, HeaderBudget, Unit};
/// use http::HeaderName;
/// use std::time::Duration;
///
/// let codec = HeaderBudget::new(HeaderName::from_static("x-request-budget-s"), Unit::Seconds);
/// assert_eq!(codec.encode(Duration::from_millis(2_001)), "3");
/// assert_eq!(codec.decode(&"30".parse().unwrap()).unwrap(), Duration::from_secs(30));
/// ```
#[derive(Clone, Debug)]
pub struct HeaderBudget {
    name: HeaderName,
    unit: Unit,
}

impl HeaderBudget {
    const MAX_VALUE: u64 = 9_999_999_999_999_999_999;

    /// A codec for `name`, counting in `unit`.
    ///
    /// # Examples
    ///
    /// See [`HeaderBudget`].
    #[must_use]
    pub const fn new(name: HeaderName, unit: Unit) -> Self {
        Self { name, unit }
    }

    /// The unit the header counts in.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::codec::{HeaderBudget, Unit};
    ///
    /// let codec = HeaderBudget::new(http::HeaderName::from_static("x-budget-ms"), Unit::Millis);
    /// assert_eq!(codec.unit(), Unit::Millis);
    /// ```
    #[must_use]
    pub fn unit(&self) -> Unit {
        self.unit
    }
}

impl BudgetCodec for HeaderBudget {
    fn header_name(&self) -> &HeaderName {
        &self.name
    }

    fn decode(&self, value: &HeaderValue) -> Result<Duration, MalformedBudget> {
        let value = parse_digits(&self.name, value.as_bytes(), 19)?;
        Ok(duration_of(value, self.unit.nanos()))
    }

    fn encode(&self, budget: Duration) -> HeaderValue {
        header_value(ceil_units(budget, self.unit.nanos(), Self::MAX_VALUE), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn grpc_timeout_units() {
        for (text, expected) in [
            ("1H", Duration::from_secs(3_600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("4m", Duration::from_millis(4)),
            ("5u", Duration::from_micros(5)),
            ("6n", Duration::from_nanos(6)),
            ("0n", Duration::ZERO),
            ("99999999H", Duration::from_secs(99_999_999 * 3_600)),
            ("00000001S", Duration::from_secs(1)),
        ] {
            assert_eq!(GrpcTimeout.decode(&value(text)), Ok(expected), "{text}");
        }
    }

    #[test]
    fn grpc_timeout_malformed() {
        for (text, problem) in [
            ("", Problem::Empty),
            ("S", Problem::Empty),
            ("12", Problem::Unit),
            ("1x", Problem::Unit),
            ("1s", Problem::Unit),
            ("-1S", Problem::NotDigits),
            ("+1S", Problem::NotDigits),
            (" 1S", Problem::NotDigits),
            ("1.5S", Problem::NotDigits),
            ("123456789S", Problem::TooManyDigits(8)),
        ] {
            let err = GrpcTimeout.decode(&value(text)).unwrap_err();
            assert_eq!(err.problem, problem, "{text:?}");
        }
    }

    #[test]
    fn grpc_timeout_encodes_like_grpc_go() {
        for (budget, text) in [
            (Duration::ZERO, "0n"),
            (Duration::from_nanos(99_999_999), "99999999n"),
            (Duration::from_nanos(100_000_000), "100000u"),
            (Duration::from_nanos(100_000_001), "100001u"),
            (Duration::from_secs(1), "1000000u"),
            (Duration::from_millis(99_999_999), "99999999m"),
            (Duration::from_secs(100_000), "100000S"),
            (Duration::from_secs(99_999_999 * 60), "99999999M"),
            (Duration::from_secs(99_999_999 * 60 + 1), "1666667H"),
            (Duration::from_secs(99_999_999 * 3_600), "99999999H"),
            (Duration::MAX, "99999999H"),
        ] {
            assert_eq!(GrpcTimeout.encode(budget), text, "{budget:?}");
        }
    }

    #[test]
    fn millisecond_headers_round_up_and_saturate() {
        assert_eq!(ConnectTimeout.encode(Duration::ZERO), "0");
        assert_eq!(ConnectTimeout.encode(Duration::from_nanos(1_000_001)), "2");
        assert_eq!(ConnectTimeout.encode(Duration::MAX), "9999999999");
        assert_eq!(EnvoyTimeout.encode(Duration::from_millis(7)), "7");
        assert!(ConnectTimeout.decode(&value("12345678901")).is_err());
        assert!(EnvoyTimeout.decode(&value("1e3")).is_err());
    }

    #[test]
    fn only_grpc_requests_read_grpc_timeout() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", value("1S"));
        assert!(!GrpcTimeout.applies_to(&headers));
        headers.insert(CONTENT_TYPE, value("application/grpc+proto"));
        assert!(GrpcTimeout.applies_to(&headers));
    }

    #[test]
    fn tightest_of_every_value_wins() {
        let codecs: [&dyn BudgetCodec; 2] = [&GrpcTimeout, &ConnectTimeout];
        let mut headers = HeaderMap::new();
        assert_eq!(decode_budget(codecs, &headers), Ok(None));
        headers.append("connect-timeout-ms", value("900"));
        headers.append("connect-timeout-ms", value("300"));
        headers.insert(CONTENT_TYPE, value("application/grpc"));
        headers.insert("grpc-timeout", value("500m"));
        assert_eq!(
            decode_budget(codecs, &headers),
            Ok(Some(Duration::from_millis(300)))
        );
        headers.append("connect-timeout-ms", value("soon"));
        assert!(decode_budget(codecs, &headers).is_err());
    }
}
