//! Shared by the benches: criterion settings and the interleaved ratio table.
//!
//! Machines are noisy and a lone absolute time proves nothing, so every
//! bench prints, after criterion's own output, a table of ratios
//! fencing ÷ anchor measured in one run. For each row the fencing side and
//! its anchor are timed alternately, `ROUNDS` times, for a fixed number of
//! iterations each; the table shows the median of each side and two ratios:
//! the ratio of the medians and the median of the per-round ratios (the
//! paired one cancels slow drifts of the machine).

pub(crate) mod fence;

use criterion::Criterion;
use std::time::Duration;

/// How many times each side of a row is timed.
const ROUNDS: usize = 21;

/// A measured side: runs `iters` iterations and returns their total time.
pub(crate) type Measure<'a> = &'a mut dyn FnMut(u64) -> Duration;

/// Criterion with short runs, overridable from the command line.
pub(crate) fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args()
}

/// What the ratio table should cover: `None` to skip it (under `cargo test
/// --benches`, `--list`, `--profile-time`, or with `FENCING_BENCH_RATIOS=0`),
/// otherwise the name filter given on the command line, if any.
pub(crate) fn ratio_filter() -> Option<Option<String>> {
    if std::env::var_os("FENCING_BENCH_RATIOS").is_some_and(|v| v == "0") {
        return None;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benching = args.iter().any(|a| a == "--bench");
    let other_mode = args.iter().any(|a| {
        a == "--test" || a == "--list" || a == "--profile-time" || a.starts_with("--profile-time=")
    });
    if !benching || other_mode {
        return None;
    }
    // The positional filter criterion accepts, if any: the first argument
    // that is neither an option nor the value of one.
    let mut filter = None;
    let mut skip_value = false;
    for arg in &args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if arg.starts_with('-') {
            skip_value = !arg.contains('=') && TAKES_VALUE.contains(&arg.as_str());
        } else {
            filter = Some(arg.clone());
            break;
        }
    }
    Some(filter)
}

/// Criterion's options that take a separate value.
const TAKES_VALUE: &[&str] = &[
    "-s",
    "--save-baseline",
    "-b",
    "--baseline",
    "--baseline-lenient",
    "--load-baseline",
    "-c",
    "--color",
    "--format",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--plotting-backend",
    "--output-format",
];

/// One line of the table.
#[derive(Debug)]
struct Row {
    name: String,
    fencing_ns: f64,
    anchor_ns: f64,
    ratio: f64,
    paired_ratio: f64,
    target: Option<f64>,
}

/// Collects rows and prints them.
#[derive(Debug, Default)]
pub(crate) struct Table {
    filter: Option<String>,
    rows: Vec<Row>,
}

impl Table {
    pub(crate) fn new(filter: Option<String>) -> Self {
        Self {
            filter,
            rows: Vec::new(),
        }
    }

    /// Measures `fencing` against each anchor, interleaved, `iters`
    /// iterations per timing. `group` names the row group; each anchor is
    /// `(name, target ratio if any, measure)`.
    pub(crate) fn compare(
        &mut self,
        group: &str,
        iters: u64,
        fencing: Measure<'_>,
        anchors: &mut [(&str, Option<f64>, Measure<'_>)],
    ) {
        if self
            .filter
            .as_deref()
            .is_some_and(|f| !group.contains(f) && !f.contains(group))
        {
            return;
        }
        // Warm up every side once, untimed.
        fencing(iters);
        for (_, _, anchor) in anchors.iter_mut() {
            anchor(iters);
        }
        let mut ours = Vec::with_capacity(ROUNDS);
        let mut theirs = vec![Vec::with_capacity(ROUNDS); anchors.len()];
        for round in 0..ROUNDS {
            // Alternate who goes first, so neither side always runs on a
            // cache or frequency state the other one left behind.
            if round % 2 == 0 {
                ours.push(fencing(iters));
                for (i, (_, _, anchor)) in anchors.iter_mut().enumerate() {
                    theirs[i].push(anchor(iters));
                }
            } else {
                for (i, (_, _, anchor)) in anchors.iter_mut().enumerate().rev() {
                    theirs[i].push(anchor(iters));
                }
                ours.push(fencing(iters));
            }
        }
        let per_iter = |d: Duration| d.as_secs_f64() * 1e9 / iters as f64;
        let ours_ns: Vec<f64> = ours.iter().copied().map(per_iter).collect();
        let fencing_ns = median(ours_ns.clone());
        for ((name, target, _), times) in anchors.iter().zip(theirs) {
            let anchor_ns_all: Vec<f64> = times.into_iter().map(per_iter).collect();
            let paired = ours_ns
                .iter()
                .zip(&anchor_ns_all)
                .map(|(f, a)| f / a)
                .collect();
            let anchor_ns = median(anchor_ns_all);
            self.rows.push(Row {
                name: format!("{group} vs {name}"),
                fencing_ns,
                anchor_ns,
                ratio: fencing_ns / anchor_ns,
                paired_ratio: median(paired),
                target: *target,
            });
        }
    }

    /// Prints the table to stdout.
    pub(crate) fn print(&self, title: &str) {
        if self.rows.is_empty() {
            return;
        }
        let width = self
            .rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0)
            .max("benchmark".len());
        println!();
        println!("{title}: fencing ÷ anchor, medians of {ROUNDS} interleaved rounds");
        println!(
            "{:<width$} | fencing ns/iter | anchor ns/iter | ratio | paired | target",
            "benchmark"
        );
        println!(
            "{}-|-----------------|----------------|-------|--------|-------------",
            "-".repeat(width)
        );
        for row in &self.rows {
            let target = match row.target {
                Some(t) if row.ratio <= t => format!("<= {t:.2} met"),
                Some(t) => format!("<= {t:.2} MISSED"),
                None => "-".to_owned(),
            };
            println!(
                "{:<width$} | {:>15.2} | {:>14.2} | {:>5.2} | {:>6.2} | {target}",
                row.name, row.fencing_ns, row.anchor_ns, row.ratio, row.paired_ratio
            );
        }
        println!();
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
