//! Property tests of every budget codec (`GrpcTimeout`, `ConnectTimeout`,
//! `EnvoyTimeout`, and `HeaderBudget` in each `Unit`), against the rules in
//! the `codec` module docs:
//!
//! - encoding rounds up: `decode(encode(d)) >= d`, by less than one unit of
//!   the encoding chosen, for every `d` up to the header's largest value;
//! - beyond it, encoding saturates at the largest value;
//! - the encoded value fits the header's digit limit;
//! - encoding is monotone;
//! - decoding accepts exactly the documented grammar, compared with a
//!   reference parser written from the table, and never panics, whatever
//!   the bytes.

use fencing_tower::codec::{
    BudgetCodec, ConnectTimeout, EnvoyTimeout, GrpcTimeout, HeaderBudget, Unit,
};
use http::{HeaderName, HeaderValue};
use proptest::prelude::*;
use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// What the module docs say of one codec.
struct Spec {
    codec: Box<dyn BudgetCodec>,
    grammar: Grammar,
}

enum Grammar {
    /// At most 8 digits and one of `H M S m u n`.
    Grpc,
    /// At most `max_digits` digits, in `unit_nanos`.
    Digits { max_digits: u32, unit_nanos: u128 },
}

const GRPC_UNITS: [(u8, u128); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', NANOS_PER_SEC),
    (b'M', 60 * NANOS_PER_SEC),
    (b'H', 3_600 * NANOS_PER_SEC),
];

fn specs() -> Vec<Spec> {
    let header = |name: &'static str, unit: Unit| -> Box<dyn BudgetCodec> {
        Box::new(HeaderBudget::new(HeaderName::from_static(name), unit))
    };
    let digits = |max_digits, unit_nanos| Grammar::Digits {
        max_digits,
        unit_nanos,
    };
    vec![
        Spec {
            codec: Box::new(GrpcTimeout),
            grammar: Grammar::Grpc,
        },
        Spec {
            codec: Box::new(ConnectTimeout),
            grammar: digits(10, 1_000_000),
        },
        Spec {
            codec: Box::new(EnvoyTimeout),
            grammar: digits(10, 1_000_000),
        },
        Spec {
            codec: header("x-budget-s", Unit::Seconds),
            grammar: digits(19, NANOS_PER_SEC),
        },
        Spec {
            codec: header("x-budget-ms", Unit::Millis),
            grammar: digits(19, 1_000_000),
        },
        Spec {
            codec: header("x-budget-us", Unit::Micros),
            grammar: digits(19, 1_000),
        },
        Spec {
            codec: header("x-budget-ns", Unit::Nanos),
            grammar: digits(19, 1),
        },
    ]
}

fn max_value(digits: u32) -> u64 {
    10u64.pow(digits) - 1
}

fn duration(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).expect("within the test's range");
    Duration::new(secs, (nanos % NANOS_PER_SEC) as u32)
}

impl Spec {
    fn name(&self) -> String {
        format!("{:?}", self.codec)
    }

    /// The units `encode` may choose, in nanoseconds.
    fn units(&self) -> Vec<u128> {
        match self.grammar {
            Grammar::Grpc => GRPC_UNITS.iter().map(|(_, nanos)| *nanos).collect(),
            Grammar::Digits { unit_nanos, .. } => vec![unit_nanos],
        }
    }

    fn largest_nanos(&self) -> u128 {
        match self.grammar {
            Grammar::Grpc => u128::from(max_value(8)) * 3_600 * NANOS_PER_SEC,
            Grammar::Digits {
                max_digits,
                unit_nanos,
            } => u128::from(max_value(max_digits)) * unit_nanos,
        }
    }

    /// The reference parser: `(value, unit in nanoseconds)` if `bytes` is of
    /// the header's form, else `None`. Written from the table, not the code.
    fn parse(&self, bytes: &[u8]) -> Option<(u64, u128)> {
        let (digits, unit_nanos, max_digits) = match self.grammar {
            Grammar::Grpc => {
                let (unit, digits) = bytes.split_last()?;
                let (_, nanos) = GRPC_UNITS.iter().find(|(letter, _)| letter == unit)?;
                (digits, *nanos, 8)
            }
            Grammar::Digits {
                max_digits,
                unit_nanos,
            } => (bytes, unit_nanos, max_digits),
        };
        let well_formed = !digits.is_empty()
            && digits.len() <= max_digits as usize
            && digits.iter().all(u8::is_ascii_digit);
        well_formed.then(|| {
            let value = std::str::from_utf8(digits).unwrap().parse().unwrap();
            (value, unit_nanos)
        })
    }

    fn read(&self, bytes: &[u8]) -> Option<Duration> {
        self.parse(bytes)
            .map(|(value, unit)| duration(u128::from(value) * unit))
    }
}

/// A codec's index, and a duration from 0 to `largest`: log-uniform in
/// magnitude, uniform over the whole range, or next to a multiple of one of
/// the codec's units.
fn up_to_largest() -> impl Strategy<Value = (usize, Duration)> {
    (0..specs().len()).prop_flat_map(|i| {
        let spec = &specs()[i];
        let largest = spec.largest_nanos();
        let units = spec.units();
        let magnitude = (1u32..=127, any::<u128>())
            .prop_map(move |(bits, r)| r % (1u128 << bits) % (largest + 1));
        let uniform = 0..=largest;
        let boundary = (proptest::sample::select(units), any::<u64>(), -1i8..=1).prop_map(
            move |(unit, k, delta)| {
                (u128::from(k) % (largest / unit + 1) * unit)
                    .saturating_add_signed(i128::from(delta))
                    .min(largest)
            },
        );
        let nanos = prop_oneof![magnitude, uniform, boundary];
        (Just(i), nanos.prop_map(duration))
    })
}

/// A codec's index, and a duration beyond its largest value.
fn beyond_largest() -> impl Strategy<Value = (usize, Duration)> {
    (0..specs().len()).prop_flat_map(|i| {
        let largest = specs()[i].largest_nanos();
        let max = Duration::MAX.as_nanos();
        let above = prop_oneof![
            (largest + 1)..=max,
            (1u128..=1_000_000).prop_map(move |extra| largest + extra),
            Just(max),
        ];
        (
            Just(i),
            above.prop_map(|nanos| {
                let secs = (nanos / NANOS_PER_SEC) as u64;
                Duration::new(secs, (nanos % NANOS_PER_SEC) as u32)
            }),
        )
    })
}

/// Bytes that are mostly almost of some codec's form, and any bytes.
fn near_grammar() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[0-9]{0,21}".prop_map(String::into_bytes),
        "[0-9]{0,10}[HMSmun]".prop_map(String::into_bytes),
        "[-+ .0-9]{0,12}[HMSmunhsx0-9 ]?".prop_map(String::into_bytes),
        "0{0,25}[0-9]{0,3}[HMSmun]?".prop_map(String::into_bytes),
        any::<Vec<u8>>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn encode_rounds_up_by_less_than_one_unit((i, budget) in up_to_largest()) {
        let spec = &specs()[i];
        let encoded = spec.codec.encode(budget);
        let (_, unit) = spec.parse(encoded.as_bytes())
            .unwrap_or_else(|| panic!("{}: {encoded:?} is not of the form", spec.name()));
        let read = spec.codec.decode(&encoded).unwrap();
        prop_assert!(read >= budget, "{}: {budget:?} sent as {encoded:?}", spec.name());
        prop_assert!(
            read.as_nanos() - budget.as_nanos() < unit,
            "{}: {budget:?} sent as {encoded:?}, more than one unit up", spec.name()
        );
        prop_assert_eq!(spec.read(encoded.as_bytes()), Some(read), "{}", spec.name());
    }

    #[test]
    fn encode_saturates_at_the_largest_value((i, budget) in beyond_largest()) {
        let spec = &specs()[i];
        let encoded = spec.codec.encode(budget);
        let expected = match spec.grammar {
            Grammar::Grpc => "99999999H".to_owned(),
            Grammar::Digits { max_digits, .. } => max_value(max_digits).to_string(),
        };
        prop_assert_eq!(encoded.to_str().unwrap(), expected, "{}: {:?}", spec.name(), budget);
        prop_assert_eq!(
            spec.codec.decode(&encoded).unwrap().as_nanos(),
            spec.largest_nanos()
        );
    }

    #[test]
    fn encoded_value_fits_the_digit_limit(
        (i, budget) in prop_oneof![up_to_largest(), beyond_largest()],
    ) {
        let spec = &specs()[i];
        let encoded = spec.codec.encode(budget);
        let bytes = encoded.as_bytes();
        let (digits, limit) = match spec.grammar {
            Grammar::Grpc => {
                let (unit, digits) = bytes.split_last().unwrap();
                prop_assert!(b"HMSmun".contains(unit), "{encoded:?}");
                (digits, 8)
            }
            Grammar::Digits { max_digits, .. } => (bytes, max_digits as usize),
        };
        prop_assert!(!digits.is_empty() && digits.len() <= limit, "{}: {encoded:?}", spec.name());
        prop_assert!(digits.iter().all(u8::is_ascii_digit), "{}: {encoded:?}", spec.name());
        prop_assert!(
            digits.len() == 1 || digits[0] != b'0',
            "{}: {encoded:?} has a leading zero", spec.name()
        );
    }

    #[test]
    fn encode_is_monotone(
        (i, a) in prop_oneof![up_to_largest(), beyond_largest()],
        b in any::<u128>(),
        up in any::<bool>(),
    ) {
        let spec = &specs()[i];
        // A second duration on either side of the first, at any distance.
        let max = Duration::MAX.as_nanos();
        let b = if up {
            a.as_nanos().saturating_add(b % (max - a.as_nanos() + 1))
        } else {
            a.as_nanos() - b % (a.as_nanos() + 1)
        };
        let b = Duration::new((b / NANOS_PER_SEC) as u64, (b % NANOS_PER_SEC) as u32);
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let read = |d| spec.codec.decode(&spec.codec.encode(d)).unwrap();
        prop_assert!(read(low) <= read(high), "{}: {low:?} vs {high:?}", spec.name());
    }

    #[test]
    fn decode_accepts_exactly_the_grammar(bytes in near_grammar()) {
        // Bytes that are no header value never reach a codec.
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            for spec in specs() {
                let decoded = spec.codec.decode(&value);
                prop_assert_eq!(
                    decoded.as_ref().ok().copied(),
                    spec.read(&bytes),
                    "{}: {:?}", spec.name(), value
                );
                if let Err(err) = decoded {
                    prop_assert_eq!(err.header(), spec.codec.header_name());
                    prop_assert!(!err.to_string().is_empty());
                }
            }
        }
    }

    #[test]
    fn decode_never_panics_on_strings(text in ".*") {
        if let Ok(value) = HeaderValue::from_str(&text) {
            for spec in specs() {
                let _ = spec.codec.decode(&value);
            }
        }
    }

    #[test]
    fn canonical_values_survive_a_round_trip((i, value) in (0..specs().len(), any::<u64>())) {
        let spec = &specs()[i];
        // Numbers without leading zeros, in the unit the codec would choose.
        let text = match spec.grammar {
            Grammar::Grpc => return Ok(()),
            Grammar::Digits { max_digits, .. } => {
                (value % (max_value(max_digits) + 1)).to_string()
            }
        };
        let decoded = spec.codec.decode(&HeaderValue::from_str(&text).unwrap()).unwrap();
        let encoded = spec.codec.encode(decoded);
        prop_assert_eq!(encoded.to_str().unwrap(), text, "{}", spec.name());
    }
}

#[test]
fn largest_values_are_those_of_the_table() {
    let texts: Vec<_> = specs()
        .iter()
        .map(|spec| spec.codec.encode(Duration::MAX))
        .collect();
    assert_eq!(
        texts,
        [
            "99999999H",
            "9999999999",
            "9999999999",
            "9999999999999999999",
            "9999999999999999999",
            "9999999999999999999",
            "9999999999999999999",
        ]
    );
}
