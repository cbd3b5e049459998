//! Soak run: N fences (default 1,000,000) with random triggers on a 2-worker
//! runtime, checking every outcome, the live counts and the resident set.
//!
//! ```text
//! cargo run --release --example soak --features test-util -- [N] [SEED]
//! SOAK_SEED=0x1234 cargo run --release --example soak --features test-util -- 20000
//! ```
//!
//! # What runs
//!
//! Fences run in batches of 10,000 concurrent tasks (each fence is
//! `tokio::spawn`ed) on a multi-thread runtime with 2 workers and the real
//! clock. Each batch has a pool of 32 tokens (16 roots, 16 children of
//! them); a dedicated OS thread cancels about 60% of them, and some
//! per-fence child tokens, at random moments: a few within 2 ms of the
//! batch start, while the main thread is still spawning (so the fences
//! spawned after are pre-fired), the others within 40 ms of the last spawn.
//! Per fence, at random:
//!
//! - a timeout (code `budget`): none, zero (fired at declaration), or 1–50 ms;
//! - 0–2 tokens from the pool (codes `a`, `b`; possibly the same token twice);
//! - a fresh child of a pool token (code `c`), possibly cancelled directly;
//! - a body that is ready at once, yields a few times, sleeps 0–30 ms, stays
//!   pending forever, panics at once, or panics after 0–30 ms. A pending
//!   body always has a trigger that will fire (else it gets a timeout).
//!
//! The seed of the PRNG (splitmix64, in this file) is printed; set it with
//! `SOAK_SEED` or a second argument to replay the same choices (the timing
//! of a real clock still varies).
//!
//! # What is checked
//!
//! Exactly, per fence, whatever timing did:
//!
//! - `Ok` only for a body that ran and did not stay pending, with its value;
//!   `Err` for a pending body; a body that panicked panics out of its task
//!   (`JoinError::is_panic`) with its payload unchanged.
//! - A body polled once is ready at once → `Ok`; a body that panics at once
//!   and was polled → the panic (the fence polls the body first).
//! - Pre-fired: if the unpolled fence said `is_cancelled()` at spawn, the
//!   result is `Err`, it contains every code the fence reported then, and
//!   the body was never polled. Every `Err` whose body was never polled is
//!   counted as pre-fired.
//! - Every reason, in `Err` and in an `Ok` that saw a trigger fire: has a
//!   code, the code was declared, each code at most once; `budget` is a
//!   `Timeout` with message `timed out after {d:?}` and the clock has
//!   reached its deadline; `a`/`b`/`c` are `Token` reasons whose token is
//!   cancelled with that very message. `Cancelled::reasons` equals
//!   `Fenced::reasons`, and `is_interrupted` matches `Err`.
//! - On `Err`, the body has been dropped when the fence returns (its drop
//!   probe has run); after a panic too.
//! - The canceller's first cancel of a root wins, a second returns `false`.
//! - After each batch (all tasks joined, all tokens dropped), and after the
//!   runtime is shut down: live nodes, waiters and timers are back to what
//!   they were before anything was created.
//!
//! One thing is counted but not failed: a token declared under two codes
//! (`a` and `b`) that appears in an `Err` under only one of them (the
//! fence read the first slot just before the token was cancelled).
//!
//! # Resident set
//!
//! A warm-up pass (10% of N, at least four batches) runs first on the same
//! runtime, which stays up until the end. `VmRSS` is sampled after every
//! batch, when the batch's fences are gone. The baseline is the median of
//! the samples of the warm-up's second half; after the N fences, the median
//! of the samples of the run's last batches (its second half, at least
//! three) must be within 5% of it. Medians measure growth, not where one
//! sample happened to fall in glibc's cycle of keeping and returning freed
//! memory (two single samples differed by 18% with no leak). Most of it is one
//! batch's worth of freed memory that glibc keeps; the slow growth seen
//! over millions of fences (+3% at 1M, +4% at 5M, flattening) is glibc
//! arena fragmentation, not a leak: with
//! `MALLOC_ARENA_MAX=1 GLIBC_TUNABLES=glibc.malloc.tcache_count=0` freed
//! memory is returned and the resident set drops back to the same floor
//! (about 4.4 MiB) after every batch, however many have run.
//!
//! Prints its figures, one summary line last; exits non-zero on any
//! violation, leak, or growth of the resident set over the limit.

use fencing::{Cancelled, Code, Fenced, Fencing, Reason, ReasonKind, Token};
use std::fmt::Write as _;
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant as StdInstant};
use tokio::time::Instant;

const DEFAULT_N: usize = 1_000_000;
/// Fences alive at once.
const BATCH: usize = 10_000;
/// Tokens shared by the fences of one batch: the first half roots, the
/// second half children of the first half.
const POOL: usize = 32;
const PANIC_MSG: &str = "soak: body panics on purpose";
const MAX_PRINTED: usize = 20;
/// Allowed growth of the resident set over the warmed-up baseline.
const RSS_TOLERANCE: f64 = 0.05;

const BUDGET: &str = "budget";
const TOKEN_CODES: [&str; 2] = ["a", "b"];
const CHILD: &str = "c";

/// splitmix64: small, fast, and good enough to pick cases.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Uniform in `lo..=hi` milliseconds, at microsecond resolution.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_micros(lo * 1000 + self.below((hi - lo) * 1000 + 1))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    Ready,
    Yield,
    Sleep(Duration),
    Pending,
    PanicNow,
    PanicAfter(Duration),
}

impl Body {
    const NAMES: [&'static str; 6] = ["ready", "yield", "sleep", "pending", "panic", "panic-late"];

    fn slot(self) -> usize {
        match self {
            Self::Ready => 0,
            Self::Yield => 1,
            Self::Sleep(_) => 2,
            Self::Pending => 3,
            Self::PanicNow => 4,
            Self::PanicAfter(_) => 5,
        }
    }

    fn panics(self) -> bool {
        matches!(self, Self::PanicNow | Self::PanicAfter(_))
    }
}

const STARTED: u8 = 1;
const DROPPED: u8 = 2;

/// What each body of a batch did: polled at least once, dropped.
#[derive(Debug)]
struct Probes(Vec<AtomicU8>);

impl Probes {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Self((0..n).map(|_| AtomicU8::new(0)).collect()))
    }

    fn get(&self, i: usize) -> u8 {
        self.0[i].load(Ordering::Acquire)
    }
}

/// Moved into a body: marks it started when polled, dropped when dropped
/// (whether it ran or not).
#[derive(Debug)]
struct Probe {
    probes: Arc<Probes>,
    i: usize,
}

impl Probe {
    fn start(&self) {
        self.probes.0[self.i].fetch_or(STARTED, Ordering::AcqRel);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.probes.0[self.i].fetch_or(DROPPED, Ordering::AcqRel);
    }
}

async fn body(probe: Probe, kind: Body, value: u64) -> u64 {
    probe.start();
    match kind {
        Body::Ready => {}
        Body::Yield => {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
        }
        Body::Sleep(d) => tokio::time::sleep(d).await,
        Body::Pending => std::future::pending::<()>().await,
        Body::PanicNow => std::panic::panic_any(PANIC_MSG),
        Body::PanicAfter(d) => {
            tokio::time::sleep(d).await;
            std::panic::panic_any(PANIC_MSG)
        }
    }
    value
}

/// One fence as generated, before its `Fencing` is built.
#[derive(Debug)]
struct Spec {
    timeout: Option<Duration>,
    /// Pool indices, declared under `a` and `b`.
    picks: Vec<usize>,
    child: Option<Token>,
    body: Body,
}

/// What a fence's task needs to check its outcome.
#[derive(Debug)]
struct Case {
    batch: usize,
    index: usize,
    body: Body,
    /// The declared timeout and its deadline.
    timeout: Option<(Duration, Instant)>,
    /// Declared tokens with their codes.
    tokens: Vec<(&'static str, Token)>,
    /// Whether the unpolled fence said `is_cancelled()` at spawn, and the
    /// codes it reported then.
    prefired: bool,
    prefired_codes: Vec<Code>,
    /// `a` and `b` are the same token.
    same_token: bool,
    probes: Arc<Probes>,
}

impl Case {
    fn describe(&self) -> String {
        let tokens: Vec<_> = self.tokens.iter().map(|(code, _)| *code).collect();
        format!(
            "batch {} fence {}: body={:?} timeout={:?} tokens={tokens:?} prefired={} probe={}",
            self.batch,
            self.index,
            self.body,
            self.timeout.map(|(d, _)| d),
            self.prefired,
            self.probes.get(self.index),
        )
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    ok: bool,
    /// `Ok` although a trigger fired (completion won).
    ok_fired: bool,
    /// `Err` and the body was never polled.
    not_started: bool,
    reasons: usize,
    timeout: bool,
    token: bool,
    /// The same token under `a` and `b`, reported under one code only.
    split: bool,
}

/// Checks every reason against what was declared. `now` is the clock right
/// after the fence returned.
fn check_reasons(case: &Case, reasons: &[Reason], now: Instant) -> Result<(), String> {
    let mut seen: Vec<&Code> = Vec::new();
    for reason in reasons {
        let Some(code) = reason.code() else {
            return Err(format!("reason without a code: {reason:?}"));
        };
        if seen.contains(&code) {
            return Err(format!("code {code} reported twice: {reasons:?}"));
        }
        seen.push(code);
        if code == BUDGET {
            let Some((after, at)) = case.timeout else {
                return Err(format!("timeout reason without a timeout: {reason:?}"));
            };
            if reason.kind() != ReasonKind::Timeout {
                return Err(format!("budget reason of kind {:?}", reason.kind()));
            }
            let expected = format!("timed out after {after:?}");
            if reason.message() != expected {
                return Err(format!("budget message {:?}", reason.message()));
            }
            if now < at {
                return Err(format!(
                    "timeout reported {:?} before its deadline",
                    at.duration_since(now)
                ));
            }
            continue;
        }
        let Some((_, token)) = case.tokens.iter().find(|(c, _)| code == *c) else {
            return Err(format!("undeclared code {code}: {reason:?}"));
        };
        if reason.kind() != ReasonKind::Token {
            return Err(format!("token code {code} with kind {:?}", reason.kind()));
        }
        match token.reason() {
            None => return Err(format!("{code} reported but its token is not cancelled")),
            Some(fired) if fired.message() != reason.message() => {
                return Err(format!(
                    "{code} reported with {:?}, token says {:?}",
                    reason.message(),
                    fired.message()
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Awaits one fence and checks its outcome. A panic of the body passes
/// through (checked by the caller from the `JoinError`).
async fn run_case<F>(fenced: Fenced<F>, case: Case, value: u64) -> Result<Outcome, String>
where
    F: Future<Output = u64>,
{
    let mut fenced = std::pin::pin!(fenced);
    let result = (&mut fenced).await;
    let now = Instant::now();
    let probe = case.probes.get(case.index);
    let started = probe & STARTED != 0;
    let dropped = probe & DROPPED != 0;
    let recorded = fenced.reasons();
    let fail = |what: String| Err(format!("{what} [{}]", case.describe()));
    if let Err(e) = check_reasons(&case, &recorded, now) {
        return fail(e);
    }
    match result {
        Ok(v) => {
            if v != value {
                return fail(format!("Ok({v}), expected Ok({value})"));
            }
            if !started || case.prefired {
                return fail("Ok from a body that was pre-fired or never polled".into());
            }
            if case.body == Body::Pending || case.body.panics() {
                return fail("Ok from a body that cannot complete".into());
            }
            if fenced.is_interrupted() {
                return fail("Ok but is_interrupted()".into());
            }
            Ok(Outcome {
                ok: true,
                ok_fired: !recorded.is_empty(),
                reasons: recorded.len(),
                ..Outcome::default()
            })
        }
        Err(cancelled) => check_err(&case, &cancelled, &recorded, started, dropped)
            .map_err(|e| format!("{e} [{}]: {cancelled}", case.describe()))
            .map(|()| Outcome {
                not_started: !started,
                reasons: recorded.len(),
                timeout: cancelled.is_timeout(),
                token: cancelled.is_token(),
                split: case.same_token
                    && cancelled.cancelled_by(TOKEN_CODES[0])
                        != cancelled.cancelled_by(TOKEN_CODES[1]),
                ..Outcome::default()
            }),
    }
}

fn check_err(
    case: &Case,
    cancelled: &Cancelled,
    recorded: &[Reason],
    started: bool,
    dropped: bool,
) -> Result<(), String> {
    if cancelled.reasons().is_empty() {
        return Err("Err without reasons".into());
    }
    if cancelled.reasons() != recorded {
        return Err(format!("Fenced::reasons() = {recorded:?} differs"));
    }
    if !dropped {
        return Err("Err returned before the body was dropped".into());
    }
    if started && matches!(case.body, Body::Ready | Body::PanicNow) {
        return Err("a body polled once, ready or panicking at once, ended in Err".into());
    }
    if case.prefired {
        if started {
            return Err("pre-fired body was polled".into());
        }
        for code in &case.prefired_codes {
            if !cancelled.cancelled_by(code) {
                return Err(format!("pre-fired code {code} missing"));
            }
        }
    }
    Ok(())
}

/// A batch's cancellations, for the canceller thread.
#[derive(Debug)]
struct Job {
    start: StdInstant,
    /// Delay from `start`, token, message, and whether the first cancel must
    /// win (a root of the pool, cancelled by nobody else).
    cancels: Vec<(Duration, Token, String, bool)>,
    done: mpsc::Sender<Vec<String>>,
}

/// The dedicated OS thread that cancels tokens at their moments. Reports
/// violations of "first cancel wins" with the batch's done signal, after
/// dropping every token of the job.
fn canceller(jobs: mpsc::Receiver<Job>) {
    for mut job in jobs {
        job.cancels.sort_by_key(|c| c.0);
        let mut problems = Vec::new();
        for (delay, token, message, must_win) in job.cancels.drain(..) {
            let due = job.start + delay;
            let now = StdInstant::now();
            if due > now {
                thread::sleep(due - now);
            }
            let won = token.cancel_with(message.clone());
            if must_win {
                if !won {
                    problems.push(format!("first cancel of root {message:?} lost"));
                }
                if token.cancel_with("again") {
                    problems.push(format!("second cancel of {message:?} won"));
                }
                if token.reason().map(|r| r.message().to_owned()) != Some(message) {
                    problems.push("reason changed by a later cancel".into());
                }
            }
        }
        let _ = job.done.send(problems);
    }
}

#[derive(Debug, Default)]
struct Stats {
    fences: u64,
    ok: u64,
    ok_fired: u64,
    interrupted: u64,
    panicked: u64,
    prefired_seen: u64,
    not_started: u64,
    multi_reason: u64,
    timeout_reasons: u64,
    token_reasons: u64,
    split: u64,
    cancels: u64,
    /// By body kind: ok, interrupted, panicked.
    by_body: [[u64; 3]; 6],
    violations: u64,
    printed: Vec<String>,
}

impl Stats {
    fn violation(&mut self, what: String) {
        self.violations += 1;
        if self.printed.len() < MAX_PRINTED {
            eprintln!("VIOLATION: {what}");
            self.printed.push(what);
        }
    }

    fn by_body(&self) -> String {
        let mut s = String::new();
        for (name, [ok, err, panicked]) in Body::NAMES.iter().zip(self.by_body) {
            let _ = write!(s, " {name}={ok}/{err}/{panicked}");
        }
        s
    }
}

/// A field of `/proc/self/status`, in KiB (`0` where there is none).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(field)?.strip_prefix(':')?;
                rest.trim().trim_end_matches("kB").trim().parse().ok()
            })
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Everything a pass needs besides its own counters.
#[derive(Debug)]
struct Env {
    seed: u64,
    jobs: mpsc::Sender<Job>,
    baseline: fencing::LiveCounts,
}

/// Runs batch `number` of `n` fences: its choices come from the seed and
/// `number`, so a batch can be replayed; then checks the live counts.
async fn batch(env: &Env, number: usize, n: usize, stats: &mut Stats) {
    let mut rng = Rng(env.seed ^ (number as u64).wrapping_mul(0xd134_2543_de82_ef95));
    // Cancellations: early ones from the batch start (they land while the
    // fences are being spawned, so many of those fences are pre-fired), late
    // ones from the moment the last fence is spawned.
    let mut early = Vec::new();
    let mut late = Vec::new();

    // The pool and when the canceller thread cancels each.
    let mut pool: Vec<Token> = Vec::with_capacity(POOL);
    let mut will_fire = [false; POOL];
    for k in 0..POOL {
        let token = if k < POOL / 2 {
            Token::new()
        } else {
            pool[k - POOL / 2].child()
        };
        if rng.chance(60) {
            let cancel = (
                rng.millis(0, 40),
                token.clone(),
                format!("pool {k}"),
                k < POOL / 2,
            );
            if rng.chance(15) {
                early.push((cancel.0 / 20, cancel.1, cancel.2, cancel.3));
            } else {
                late.push(cancel);
            }
            will_fire[k] = true;
        }
        pool.push(token);
    }
    for k in POOL / 2..POOL {
        will_fire[k] |= will_fire[k - POOL / 2];
    }

    let specs: Vec<Spec> = (0..n)
        .map(|i| {
            let mut timeout = match rng.below(100) {
                0..=24 => None,
                25..=27 => Some(Duration::ZERO),
                _ => Some(rng.millis(1, 50)),
            };
            let picks: Vec<usize> = (0..rng.below(3)).map(|_| rng.index(POOL)).collect();
            let mut fires = timeout.is_some() || picks.iter().any(|&k| will_fire[k]);
            let child = rng.chance(30).then(|| {
                let parent = rng.index(POOL);
                let child = pool[parent].child();
                fires |= will_fire[parent];
                if rng.chance(50) {
                    let delay = rng.millis(0, 40);
                    let cancel = (delay, child.clone(), format!("child {i}"), false);
                    if rng.chance(10) {
                        early.push(cancel);
                    } else {
                        late.push(cancel);
                    }
                    fires = true;
                }
                child
            });
            let body = match rng.below(100) {
                0..=19 => Body::Ready,
                20..=24 => Body::Yield,
                25..=44 => Body::Sleep(rng.millis(0, 30)),
                45..=79 => Body::Pending,
                80..=84 => Body::PanicNow,
                _ => Body::PanicAfter(rng.millis(0, 30)),
            };
            if body == Body::Pending && !fires {
                timeout = Some(rng.millis(1, 50));
            }
            Spec {
                timeout,
                picks,
                child,
                body,
            }
        })
        .collect();

    stats.cancels += (early.len() + late.len()) as u64;
    let (done_tx, done_rx) = mpsc::channel();
    let job = |cancels| Job {
        start: StdInstant::now(),
        cancels,
        done: done_tx.clone(),
    };
    env.jobs.send(job(early)).expect("canceller thread alive");

    let probes = Probes::new(n);
    let mut handles = Vec::with_capacity(n);
    for (i, spec) in specs.into_iter().enumerate() {
        let mut fencing = Fencing::new();
        let mut tokens = Vec::with_capacity(3);
        if let Some(d) = spec.timeout {
            fencing = fencing.timeout(d).code(BUDGET);
        }
        for (&k, code) in spec.picks.iter().zip(TOKEN_CODES) {
            fencing = fencing.token(&pool[k]).code(code);
            tokens.push((code, pool[k].clone()));
        }
        if let Some(child) = spec.child {
            fencing = fencing.token(&child).code(CHILD);
            tokens.push((CHILD, child));
        }
        let timeout = spec
            .timeout
            .map(|d| (d, fencing.effective_deadline().expect("a timeout")));
        let value = (number * BATCH + i) as u64;
        let probe = Probe {
            probes: Arc::clone(&probes),
            i,
        };
        let fenced = fencing.run(body(probe, spec.body, value));
        let prefired = fenced.is_cancelled();
        let prefired_codes = if prefired {
            fenced
                .reasons()
                .iter()
                .filter_map(|r| r.code().cloned())
                .collect()
        } else {
            Vec::new()
        };
        let case = Case {
            batch: number,
            index: i,
            body: spec.body,
            timeout,
            tokens,
            prefired,
            prefired_codes,
            same_token: spec.picks.len() == 2 && spec.picks[0] == spec.picks[1],
            probes: Arc::clone(&probes),
        };
        stats.prefired_seen += u64::from(prefired);
        handles.push((
            tokio::spawn(run_case(fenced, case, value)),
            spec.body,
            prefired,
        ));
    }

    env.jobs.send(job(late)).expect("canceller thread alive");
    for (i, (handle, body, prefired)) in handles.into_iter().enumerate() {
        stats.fences += 1;
        let slot = body.slot();
        match handle.await {
            Ok(Ok(outcome)) => {
                if outcome.ok {
                    stats.ok += 1;
                    stats.ok_fired += u64::from(outcome.ok_fired);
                    stats.by_body[slot][0] += 1;
                } else {
                    stats.interrupted += 1;
                    stats.not_started += u64::from(outcome.not_started);
                    stats.multi_reason += u64::from(outcome.reasons > 1);
                    stats.timeout_reasons += u64::from(outcome.timeout);
                    stats.token_reasons += u64::from(outcome.token);
                    stats.split += u64::from(outcome.split);
                    stats.by_body[slot][1] += 1;
                }
            }
            Ok(Err(violation)) => stats.violation(violation),
            Err(e) if e.is_panic() => {
                stats.panicked += 1;
                stats.by_body[slot][2] += 1;
                let probe = probes.get(i);
                let payload = e.into_panic();
                let what = if !body.panics() {
                    Some("a body that does not panic panicked")
                } else if prefired {
                    Some("a pre-fired body panicked")
                } else if payload.downcast_ref::<&str>() != Some(&PANIC_MSG) {
                    Some("the panic payload changed")
                } else if probe != STARTED | DROPPED {
                    Some("a panicked body was not polled, or not dropped")
                } else {
                    None
                };
                if let Some(what) = what {
                    stats.violation(format!("{what}: batch {number} fence {i} probe={probe}"));
                }
            }
            Err(e) => stats.violation(format!("batch {number} fence {i}: join error {e}")),
        }
    }

    // The canceller drops its clones before it answers, once per job.
    drop(done_tx);
    for problem in done_rx.iter().flatten() {
        stats.violation(format!("batch {number}: {problem}"));
    }
    drop(pool);
    let live = fencing::__live_counts();
    if live != env.baseline {
        stats.violation(format!(
            "batch {number}: live counts {live:?} after the batch, baseline {:?}",
            env.baseline
        ));
    }
}

/// Runs `n` fences in batches, numbering batches from `first_batch`.
/// Returns `VmRSS` after each batch, one sample per batch run.
async fn pass(env: &Env, first_batch: usize, n: usize, stats: &mut Stats, label: &str) -> Vec<u64> {
    let start = StdInstant::now();
    let batches = n.div_ceil(BATCH);
    let report_every = (batches / 10).max(1);
    let mut samples = Vec::with_capacity(batches);
    for b in 0..batches {
        let size = BATCH.min(n - b * BATCH);
        batch(env, first_batch + b, size, stats).await;
        samples.push(status_kib("VmRSS"));
        if (b + 1) % report_every == 0 && b + 1 < batches {
            println!(
                "  {label}: {:>9} fences, {:>6.1} s, rss {:.1} MiB, violations {}",
                stats.fences,
                start.elapsed().as_secs_f64(),
                mib(status_kib("VmRSS")),
                stats.violations,
            );
        }
    }
    samples
}

/// The median of the last `count` samples (of all, if there are fewer).
fn median_of_last(samples: &[u64], count: usize) -> u64 {
    let mut last = samples[samples.len().saturating_sub(count)..].to_vec();
    last.sort_unstable();
    last[last.len() / 2]
}

fn print_stats(label: &str, stats: &Stats, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!(
        "{label}: {} fences in {secs:.2} s ({:.0}/s): ok={} (after a trigger fired: {}) \
         interrupted={} panicked={} violations={}",
        stats.fences,
        stats.fences as f64 / secs,
        stats.ok,
        stats.ok_fired,
        stats.interrupted,
        stats.panicked,
        stats.violations,
    );
    println!(
        "{label}: pre-fired at spawn={} never polled={} multi-reason={} with timeout={} \
         with token={} split a/b={} cancels={}",
        stats.prefired_seen,
        stats.not_started,
        stats.multi_reason,
        stats.timeout_reasons,
        stats.token_reasons,
        stats.split,
        stats.cancels,
    );
    println!(
        "{label}: by body (ok/interrupted/panicked):{}",
        stats.by_body()
    );
}

fn usage() -> ! {
    eprintln!("usage: soak [N] [SEED]   (N defaults to 1000000; SEED also from SOAK_SEED)");
    std::process::exit(2);
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.replace('_', "");
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let n = match args.next() {
        None => DEFAULT_N,
        Some(n) => parse_u64(&n).unwrap_or_else(|| usage()) as usize,
    };
    let seed = match args.next().or_else(|| std::env::var("SOAK_SEED").ok()) {
        Some(seed) => parse_u64(&seed).unwrap_or_else(|| usage()),
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    if n == 0 || args.next().is_some() {
        usage();
    }
    let warmup = (n / 10).max(4 * BATCH.min(n));

    // Bodies panic on purpose; keep other panics loud.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&PANIC_MSG) {
            default_hook(info);
        }
    }));

    let baseline = fencing::__live_counts();
    println!(
        "soak: n={n} warmup={warmup} batch={BATCH} pool={POOL} seed={seed:#x} \
         (replay: SOAK_SEED={seed:#x})"
    );
    println!("soak: live counts before anything: {baseline:?}");

    let (jobs_tx, jobs_rx) = mpsc::channel();
    let cancel_thread = thread::Builder::new()
        .name("soak-canceller".into())
        .spawn(move || canceller(jobs_rx))
        .expect("spawn the canceller thread");
    let env = Env {
        seed,
        jobs: jobs_tx,
        baseline,
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");

    let mut warm = Stats::default();
    let start = StdInstant::now();
    let warm_samples = rt.block_on(pass(&env, 0, warmup, &mut warm, "warm-up"));
    print_stats("warm-up", &warm, start.elapsed());
    let warm_batches = warm_samples.len();
    let rss_baseline = median_of_last(&warm_samples, warm_batches / 2);
    println!(
        "warm-up: rss median of the last {} batches {:.1} MiB",
        warm_batches / 2,
        mib(rss_baseline)
    );

    let mut main = Stats::default();
    let start = StdInstant::now();
    let run_samples = rt.block_on(pass(&env, warm_batches, n, &mut main, "run"));
    let elapsed = start.elapsed();
    print_stats("run", &main, elapsed);
    let live_before_shutdown = fencing::__live_counts();
    let after_count = (run_samples.len() / 2).max(3);
    let rss_after = median_of_last(&run_samples, after_count);
    let hwm = status_kib("VmHWM");

    drop(rt);
    drop(env);
    cancel_thread.join().expect("canceller thread");
    let live = fencing::__live_counts();
    println!("soak: live counts after the run {live_before_shutdown:?}, after shutdown {live:?}");
    let leaked = (
        live.nodes - baseline.nodes,
        live.waiters - baseline.waiters,
        live.timers - baseline.timers,
    );

    let ratio = rss_after as f64 / rss_baseline as f64 - 1.0;
    println!(
        "soak: rss median baseline {:.1} MiB, after {:.1} MiB ({:+.2}%), high-water {:.1} MiB",
        mib(rss_baseline),
        mib(rss_after),
        ratio * 100.0,
        mib(hwm),
    );

    let mut failed = false;
    if warm.violations + main.violations > 0 {
        eprintln!(
            "soak: FAILED: {} violations (seed {seed:#x})",
            warm.violations + main.violations
        );
        failed = true;
    }
    if leaked != (0, 0, 0) || live_before_shutdown != baseline {
        eprintln!("soak: FAILED: leaked nodes/waiters/timers {leaked:?}");
        failed = true;
    }
    if ratio > RSS_TOLERANCE {
        eprintln!(
            "soak: FAILED: rss grew {:.2}% over the warmed-up baseline (limit {:.0}%)",
            ratio * 100.0,
            RSS_TOLERANCE * 100.0
        );
        failed = true;
    }
    println!(
        "soak: {n} fences, ok={}, interrupted={}, panicked={}, pre-fired={}; \
         live nodes={} waiters={} timers={}; rss baseline={:.1} MiB after={:.1} MiB ({:+.2}%); \
         {:.1} s; {}",
        main.ok,
        main.interrupted,
        main.panicked,
        main.not_started,
        leaked.0,
        leaked.1,
        leaked.2,
        mib(rss_baseline),
        mib(rss_after),
        ratio * 100.0,
        elapsed.as_secs_f64(),
        if failed { "FAILED" } else { "ok" },
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
