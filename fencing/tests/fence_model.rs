//! A property test of the builder and the fence against a small reference
//! model: DESIGN.md rules 1 (reasons), 2 (first cancel wins), 3 (tightest
//! time wins), 4 (other triggers never merge), 5 (inspect before await),
//! 6 (pre-fired bodies never start), 7 (completion wins ties), 8 (hard cancel
//! is drop), 10 (fences bind), 11 (derivation), 13 (children follow parents),
//! 16 (effective deadline), 17 (protected sections), 18 (two-phase cancel),
//! 21 (nothing leaks: no token keeps a waiter once the fence is done or
//! dropped) and 22 (time is tokio's), with handles, policies and a registry.
//!
//! A generated *program* declares triggers step by step (timeouts, deadlines
//! that may lie in the past, tokens from a small tree, future triggers,
//! handles and their reschedules, codes, policies, a registration,
//! derivations through the context, by a binding or a fence's body, grace
//! periods, and time advancing between declarations), runs a body that
//! completes after some virtual time (or never) and may take a protection
//! guard, then plays a schedule of events (advance the clock, cancel a token
//! or a handle, reschedule a handle, cancel through the registry, open a
//! future trigger's gate, release the guard, poll the fence). Handles
//! declared before and after derivations make reschedules happen inside
//! nested scopes (issue 10: a moved deadline composes with every other). The model predicts
//! after every step and event: the effective deadline, the fence's outcome
//! on each poll, every reason in order (kind, code, message), the reasons a
//! policy declined, `is_cancelled`, `is_interrupted`, how often the body was
//! polled, whether it was dropped, the context the body saw, the registry's
//! listing, and which events must wake the fence.
//!
//! Everything runs on a paused clock, one fresh runtime per case, polled by
//! hand; nothing sleeps in real time. `PROPTEST_CASES` overrides the default
//! case count.

use fencing::{
    current, protect, FenceHandle, Fenced, Fencing, ProtectGuard, Reason, ReasonKind, Registry,
    Token,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;
use tokio_test::task::{spawn, Spawn};

// ---------------------------------------------------------------------------
// Programs
// ---------------------------------------------------------------------------

/// The codes a program may use: few, so that codes collide.
const CODES: [&str; 3] = ["a", "b", "c"];
/// Future triggers watch one of this many gates.
const GATES: usize = 2;
/// Handles a program may declare and steer.
const HANDLES: usize = 2;
/// The code of reasons given through the registry.
const REGISTRY: &str = "registry";
/// `Duration::from_secs(1 << 32)`: representable, beyond the fence's
/// thirty-year timer horizon, never reached by a program.
const HUGE_MS: i64 = (1 << 32) * 1000;

/// The length of a relative timeout.
#[derive(Clone, Copy, Debug)]
enum Len {
    Ms(u64),
    /// Representable, but far beyond anything a program reaches.
    Huge,
    /// `Duration::MAX`: overflows the clock, so no deadline.
    Max,
}

impl Len {
    fn duration(self) -> Duration {
        match self {
            Self::Ms(ms) => Duration::from_millis(ms),
            Self::Huge => Duration::from_secs(1 << 32),
            Self::Max => Duration::MAX,
        }
    }

    /// Milliseconds, or `None` when adding it to the clock overflows.
    fn ms(self) -> Option<i64> {
        match self {
            Self::Ms(ms) => Some(ms as i64),
            Self::Huge => Some(HUGE_MS),
            Self::Max => None,
        }
    }
}

/// One builder step. Codes are indices into [`CODES`]; a step's own code is
/// applied with `.code()` right after it.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// `.timeout(len)`, anchored at the current virtual time.
    Timeout(Len, Option<usize>),
    /// `.deadline(t0 + ms)`; `ms` may be negative (in the past).
    Deadline(i64, Option<usize>),
    /// `.token(&tokens[i % tokens.len()])`.
    Token(usize, Option<usize>),
    /// `.future(gate k)`: fires once a fence sees the gate open.
    Future(usize, Option<usize>),
    /// `.handle(&handles[h])`.
    Handle(usize, Option<usize>),
    /// Reschedule handle `h` while declaring.
    Reschedule(usize, Resched),
    /// `.policy(..)` declining the reasons with code `c`.
    Policy(usize),
    /// `.register(&registry, "op")`.
    Register,
    /// A bare `.code()`: labels the trigger declared just before, if any.
    Code(usize),
    /// Continue from `current()` inside the partial `Fencing`: bound to a
    /// future (`false`) or as the body of a fence of it (`true`, when nothing
    /// has fired and it has no future trigger, so that the body runs).
    Derive(bool),
    /// Advance the virtual clock between declarations (see [`Event::Advance`]).
    Advance(u64, bool),
    /// `.grace(ms)`, or `.grace(Duration::MAX)` for `None`.
    Grace(Option<u64>),
    /// `.grace_for(code, ms)`, or `Duration::MAX` for `None`.
    GraceFor(usize, Option<u64>),
}

/// A reschedule of a handle.
#[derive(Clone, Copy, Debug)]
enum Resched {
    /// `reschedule_after(len)`: `Len::Max` removes the deadline.
    After(Len),
    /// `reschedule(t0 + ms)`; `ms` may be negative (in the past).
    At(i64),
}

#[derive(Clone, Copy, Debug)]
enum Event {
    /// Advance the clock. If `true`, tokio's timer then catches up (the
    /// runtime turns its driver, as `tokio::time::advance` does); if `false`,
    /// only the clock moves, the timer sees it at the next full advance: what
    /// a real clock does between two turns of the driver.
    Advance(u64, bool),
    /// Cancel token `i % tokens.len()`, with a message of its own if `true`.
    Cancel(usize, bool),
    /// Open gate `k`: the future triggers watching it complete.
    Open(usize),
    /// Cancel handle `h`, with a message of its own if `true`.
    CancelHandle(usize, bool),
    /// Reschedule handle `h`.
    Reschedule(usize, Resched),
    /// `registry.cancel_matching(|_| true, ..)`.
    RegistryCancel,
    /// Drop the body's protection guard, if it took one (from outside the
    /// fence's poll).
    Release,
    /// Poll the fence (unless it is done).
    Poll,
}

#[derive(Clone, Debug)]
struct Program {
    /// One entry per token: its parent, an earlier token, if any.
    parents: Vec<Option<usize>>,
    steps: Vec<Step>,
    /// The body completes this long after the fence is created, or never.
    body: Option<u64>,
    /// At its `k`-th poll the body cancels token `i % tokens.len()` itself,
    /// with the message `"body"`, before it answers.
    body_cancels: Option<(usize, usize)>,
    /// At its `k`-th poll the body takes a protection guard, kept until
    /// `Event::Release`.
    protect_at: Option<usize>,
    events: Vec<Event>,
}

fn code() -> impl Strategy<Value = Option<usize>> {
    prop::option::of(0..CODES.len())
}

/// Milliseconds below `max`, mostly on a 5 ms grid so that instants
/// coincide: equal deadlines, a body completing as the deadline passes.
fn ms(max: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => (0..max.div_ceil(5)).prop_map(|n| n * 5),
        1 => 0..max,
    ]
}

fn len() -> impl Strategy<Value = Len> {
    prop_oneof![
        10 => ms(40).prop_map(Len::Ms),
        1 => Just(Len::Huge),
        1 => Just(Len::Max),
    ]
}

/// Mostly full advances, sometimes the clock alone.
fn advance_kind() -> impl Strategy<Value = bool> {
    prop::bool::weighted(0.75)
}

fn resched() -> impl Strategy<Value = Resched> {
    prop_oneof![
        3 => len().prop_map(Resched::After),
        2 => ms(70).prop_map(|ms| Resched::At(ms as i64 - 10)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..HANDLES, code()).prop_map(|(h, c)| Step::Handle(h, c)),
        1 => (0..HANDLES, resched()).prop_map(|(h, r)| Step::Reschedule(h, r)),
        1 => (0..CODES.len()).prop_map(Step::Policy),
        1 => Just(Step::Register),
        4 => (len(), code()).prop_map(|(l, c)| Step::Timeout(l, c)),
        3 => (ms(70), code()).prop_map(|(ms, c)| Step::Deadline(ms as i64 - 10, c)),
        4 => (0usize..3, code()).prop_map(|(i, c)| Step::Token(i, c)),
        1 => (0..GATES, code()).prop_map(|(k, c)| Step::Future(k, c)),
        1 => (0..CODES.len()).prop_map(Step::Code),
        2 => any::<bool>().prop_map(Step::Derive),
        2 => (ms(20), advance_kind()).prop_map(|(ms, full)| Step::Advance(ms, full)),
        2 => prop::option::weighted(0.8, ms(30)).prop_map(Step::Grace),
        2 => (0..CODES.len(), prop::option::weighted(0.8, ms(30)))
            .prop_map(|(c, ms)| Step::GraceFor(c, ms)),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => (ms(25), advance_kind()).prop_map(|(ms, full)| Event::Advance(ms, full)),
        3 => (0usize..3, any::<bool>()).prop_map(|(i, m)| Event::Cancel(i, m)),
        1 => (0..GATES).prop_map(Event::Open),
        1 => (0..HANDLES, any::<bool>()).prop_map(|(h, m)| Event::CancelHandle(h, m)),
        2 => (0..HANDLES, resched()).prop_map(|(h, r)| Event::Reschedule(h, r)),
        1 => Just(Event::RegistryCancel),
        1 => Just(Event::Release),
        4 => Just(Event::Poll),
    ]
}

/// Most schedules poll the fence first: a fence polled before anything
/// fired gets past "pre-fired" into the interesting part.
fn events() -> impl Strategy<Value = Vec<Event>> {
    (
        prop::bool::weighted(0.6),
        prop::collection::vec(event(), 0..16),
    )
        .prop_map(|(poll_first, mut events)| {
            if poll_first {
                events.insert(0, Event::Poll);
            }
            events
        })
}

fn parents() -> impl Strategy<Value = Vec<Option<usize>>> {
    prop::collection::vec(prop::option::of(0usize..3), 1..=3).prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, p)| p.filter(|_| i > 0).map(|p| p % i.max(1)))
            .collect()
    })
}

fn program() -> impl Strategy<Value = Program> {
    (
        parents(),
        prop::collection::vec(step(), 0..10),
        prop::option::weighted(0.7, ms(80)),
        prop::option::weighted(0.15, (1usize..4, 0usize..3)),
        prop::option::weighted(0.2, 1usize..4),
        events(),
    )
        .prop_map(
            |(parents, steps, body, body_cancels, protect_at, events)| Program {
                parents,
                steps,
                body,
                body_cancels,
                protect_at,
                events,
            },
        )
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

/// A reason as the model sees it: kind, code, message.
#[derive(Clone, Debug, PartialEq, Eq)]
struct R {
    kind: ReasonKind,
    code: Option<String>,
    message: String,
}

fn observed(reasons: &[Reason]) -> Vec<R> {
    reasons
        .iter()
        .map(|r| R {
            kind: r.kind(),
            code: r.code().map(|c| c.as_str().to_owned()),
            message: r.message().to_owned(),
        })
        .collect()
}

/// The world outside the fence: the clock, the tokens, the gates, the
/// handles.
struct World {
    /// Virtual milliseconds since `t0`, on the clock.
    now: i64,
    /// How far tokio's timer has caught up with the clock: a timer for an
    /// instant up to here has fired.
    timer_now: i64,
    parents: Vec<Option<usize>>,
    /// Each token's reason message, once cancelled.
    cancelled: Vec<Option<String>>,
    open: [bool; GATES],
    /// Each handle's reason message, once cancelled.
    handle_cancelled: [Option<String>; HANDLES],
    /// Each handle's schedule: `None` until rescheduled, then the deadline
    /// it set (`None` for "no deadline") and, for a relative one, its length.
    schedule: [Option<Option<Scheduled>>; HANDLES],
}

/// A handle's deadline: the instant and, for a relative one, its length.
type Scheduled = (i64, Option<Len>);

impl World {
    /// Cancels token `i` and its descendants not cancelled yet. Returns
    /// whether `i` itself was cancelled by this call, and every token it
    /// cancelled.
    fn cancel(&mut self, i: usize, message: &str) -> (bool, Vec<usize>) {
        if self.cancelled[i].is_some() {
            return (false, Vec::new());
        }
        let mut newly = Vec::new();
        // Tokens are created parents first, so one pass in index order sees
        // every parent before its children.
        for t in i..self.cancelled.len() {
            let under = t == i || self.parents[t].is_some_and(|p| newly.contains(&p));
            if under && self.cancelled[t].is_none() {
                self.cancelled[t] = Some(message.to_owned());
                newly.push(t);
            }
        }
        (true, newly)
    }

    /// What a reschedule sets, as `FenceHandle` documents it.
    fn reschedule(&mut self, h: usize, r: Resched) {
        self.schedule[h] = Some(match r {
            Resched::After(len) => len.ms().map(|ms| (self.now + ms, Some(len))),
            Resched::At(at) => Some((at, None)),
        });
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Token(usize),
    Gate(usize),
    /// Handle `h`, with the deadline it took over, if any.
    Handle(usize, Option<Time>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Time {
    /// Virtual milliseconds since `t0`.
    at: i64,
    /// `Some` for a relative timeout: its declared length.
    after: Option<Len>,
    code: Option<usize>,
}

impl PartialEq for Len {
    fn eq(&self, other: &Self) -> bool {
        self.duration() == other.duration()
    }
}

impl Eq for Len {}

impl Time {
    fn reason(&self) -> R {
        match self.after {
            Some(len) => R {
                kind: ReasonKind::Timeout,
                code: self.code.map(|c| CODES[c].to_owned()),
                message: format!("timed out after {:?}", len.duration()),
            },
            None => R {
                kind: ReasonKind::Deadline,
                code: self.code.map(|c| CODES[c].to_owned()),
                message: "deadline exceeded".to_owned(),
            },
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Last {
    Nothing,
    Time,
    Trigger,
}

/// The model of a `Fencing`, as documented on `Fencing` and `FenceHandle`.
#[derive(Clone, Debug)]
struct MFencing {
    deadline: Option<Time>,
    /// Every declaration of a non-time trigger, with its code, in order.
    decls: Vec<(Source, Option<usize>)>,
    /// The triggers in effect: `decls` without a declaration equal to an
    /// earlier one (the same token, or handle that took nothing over, under
    /// the same code or none), which counts once, where first declared.
    triggers: Vec<(Source, Option<usize>)>,
    last: Last,
    /// Derived from the context: a handle declared now takes nothing over.
    derived: bool,
    grace: Option<Duration>,
    /// Per code, the shortest grace period declared for it.
    grace_for: [Option<Duration>; CODES.len()],
    /// The codes the declared policies decline.
    declines: Vec<usize>,
    registered: bool,
}

impl MFencing {
    fn new() -> Self {
        Self {
            deadline: None,
            decls: Vec::new(),
            triggers: Vec::new(),
            last: Last::Nothing,
            derived: false,
            grace: None,
            grace_for: [None; CODES.len()],
            declines: Vec::new(),
            registered: false,
        }
    }

    /// The grace period a reason with `code` gets, as declared: its code's,
    /// else the fence-wide one.
    fn grace_period_for(&self, code: Option<&str>) -> Option<Duration> {
        code.and_then(|code| CODES.iter().position(|c| *c == code))
            .and_then(|c| self.grace_for[c])
            .or(self.grace)
    }

    /// Whether every policy lets `r` cancel.
    fn accepts(&self, r: &R) -> bool {
        !self
            .declines
            .iter()
            .any(|&c| r.code.as_deref() == Some(CODES[c]))
    }

    /// Tightest time wins: strictly earlier replaces (with no code yet); an
    /// equal or later one, or an overflowing one, is ignored with its code.
    fn merge(&mut self, at: Option<i64>, after: Option<Len>) {
        self.last = Last::Nothing;
        if let Some(at) = at {
            if self.deadline.as_ref().map_or(true, |d| at < d.at) {
                self.deadline = Some(Time {
                    at,
                    after,
                    code: None,
                });
                self.last = Last::Time;
            }
        }
    }

    fn push(&mut self, source: Source) {
        self.decls.push((source, None));
        self.last = Last::Trigger;
        self.settle();
    }

    fn settle(&mut self) {
        let same = |a: &(Source, Option<usize>), b: &(Source, Option<usize>)| {
            a == b && matches!(a.0, Source::Token(_) | Source::Handle(_, None))
        };
        self.triggers.clear();
        for decl in &self.decls {
            if !self.triggers.iter().any(|t| same(t, decl)) {
                self.triggers.push(*decl);
            }
        }
    }

    /// A handle: on a root `Fencing` it takes over the deadline declared
    /// before it; derived from the context, nothing.
    fn handle(&mut self, h: usize) {
        let took = if self.derived {
            None
        } else {
            self.deadline.take()
        };
        self.push(Source::Handle(h, took));
    }

    fn derive(&mut self) {
        self.last = Last::Nothing;
        self.derived = true;
    }

    fn code(&mut self, code: Option<usize>) {
        let Some(code) = code else { return };
        match self.last {
            Last::Nothing => {}
            Last::Time => {
                if let Some(d) = &mut self.deadline {
                    d.code = Some(code);
                }
            }
            Last::Trigger => {
                if let Some(t) = self.decls.last_mut() {
                    t.1 = Some(code);
                }
                self.settle();
            }
        }
    }

    /// The deadline in effect: the tightest of the declared one and every
    /// handle's (the one it took over until rescheduled, then its own, under
    /// its code); at equal instants a taken-over deadline, then the
    /// declared one, then a reschedule, then by slot.
    fn effective(&self, w: &World) -> Option<Time> {
        let mut best = self.deadline.map(|d| (d, 1, 0));
        for (j, &(source, code)) in self.triggers.iter().enumerate() {
            let Source::Handle(h, took) = source else {
                continue;
            };
            let candidate = match w.schedule[h] {
                None => took.map(|t| (t, 0)),
                Some(None) => None,
                Some(Some((at, after))) => Some((Time { at, after, code }, 2)),
            };
            if let Some((time, rank)) = candidate {
                let tighter = best
                    .as_ref()
                    .map_or(true, |(b, br, bj)| (time.at, rank, j) < (b.at, *br, *bj));
                if tighter {
                    best = Some((time, rank, j));
                }
            }
        }
        best.map(|(time, ..)| time)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Fresh,
    Running,
    Done,
}

/// When the pending body is dropped: the earliest end of a grace period
/// among the reasons recorded, each counted from when it was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DropAt {
    NotYet,
    Now,
    At(i64),
    Never,
}

impl DropAt {
    fn earlier(self, other: Self) -> Self {
        match (self, other) {
            (Self::NotYet, x) | (x, Self::NotYet) => x,
            (Self::Now, _) | (_, Self::Now) => Self::Now,
            (Self::At(a), Self::At(b)) => Self::At(a.min(b)),
            (Self::At(a), Self::Never) | (Self::Never, Self::At(a)) => Self::At(a),
            (Self::Never, Self::Never) => Self::Never,
        }
    }

    fn grace_end(self) -> Option<i64> {
        match self {
            Self::At(at) => Some(at),
            _ => None,
        }
    }
}

/// Thirty years, the fence's horizon: a longer grace period means "never".
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Pending,
    Ok,
    Err(Vec<R>),
}

/// The model of one fence, as documented on `Fenced`.
struct MFence {
    f: MFencing,
    state: State,
    /// Accepted reasons, in firing order.
    recorded: Vec<R>,
    /// Reasons a policy declined, in firing order.
    declined: Vec<R>,
    deadline_fired: bool,
    /// Per trigger: recorded (accepted or declined).
    trig_recorded: Vec<bool>,
    /// Per future trigger: a fence has seen its gate open.
    seen: Vec<bool>,
    /// The fence is in the registry (from its first poll until it is done).
    entered: bool,
    /// Its deadline when it entered.
    entered_deadline: Option<i64>,
    /// The registry cancelled the fence's entry, with this message.
    reg_cancelled: Option<String>,
    reg_recorded: bool,
    drop_at: DropAt,
    /// How many of `recorded` are counted in `drop_at`.
    graced: usize,
    /// A reason was recorded while a grace period ran.
    recorded_in_grace: bool,
    /// What the fence's one timer watches, as set at its last pending poll.
    timer_at: Option<i64>,
    ready_at: Option<i64>,
    /// At its `k`-th poll the body cancels token `t`.
    body_cancels: Option<(usize, usize)>,
    /// At its `k`-th poll the body takes a protection guard.
    protect_at: Option<usize>,
    /// The body's guard is alive.
    protected: bool,
    /// The last poll found the drop due but the body protected: releasing
    /// the guard wakes the fence.
    protect_waiting: bool,
    /// A drop was deferred by the guard at some poll.
    deferred_by_guard: bool,
    /// The effective deadline the body's context had at its last poll.
    context_seen: Option<Option<i64>>,
    polls: usize,
    /// How many polls recorded a reason.
    recording_polls: usize,
    /// A poll saw the deadline passed on the clock but not yet through the
    /// timer.
    timer_behind: bool,
    /// The deadline that fired was a handle's (taken over or rescheduled).
    handle_deadline_fired: bool,
    dropped: bool,
    interrupted: bool,
    /// Something the pending fence waits on fired since its last poll.
    wake_expected: bool,
}

impl MFence {
    fn new(f: MFencing, ready_at: Option<i64>) -> Self {
        let n = f.triggers.len();
        Self {
            f,
            state: State::Fresh,
            recorded: Vec::new(),
            declined: Vec::new(),
            deadline_fired: false,
            trig_recorded: vec![false; n],
            seen: vec![false; n],
            entered: false,
            entered_deadline: None,
            reg_cancelled: None,
            reg_recorded: false,
            drop_at: DropAt::NotYet,
            graced: 0,
            recorded_in_grace: false,
            timer_at: None,
            ready_at,
            body_cancels: None,
            protect_at: None,
            protected: false,
            protect_waiting: false,
            deferred_by_guard: false,
            context_seen: None,
            polls: 0,
            recording_polls: 0,
            timer_behind: false,
            handle_deadline_fired: false,
            dropped: false,
            interrupted: false,
            wake_expected: false,
        }
    }

    fn effective(&self, w: &World) -> Option<Time> {
        self.f.effective(w)
    }

    /// The reason trigger `j` fired with, under its own code.
    fn fired(&self, w: &World, j: usize) -> Option<R> {
        let (source, code) = self.f.triggers[j];
        let code = code.map(|c| CODES[c].to_owned());
        match source {
            Source::Token(t) => w.cancelled[t].as_ref().map(|m| R {
                kind: ReasonKind::Token,
                code,
                message: m.clone(),
            }),
            Source::Gate(_) => self.seen[j].then(|| R {
                kind: ReasonKind::Future,
                code,
                message: "trigger future completed".to_owned(),
            }),
            Source::Handle(h, _) => w.handle_cancelled[h].as_ref().map(|m| R {
                kind: ReasonKind::Token,
                code,
                message: m.clone(),
            }),
        }
    }

    /// The registry's reason, if it cancelled the fence's entry.
    fn registry_fired(&self) -> Option<R> {
        self.reg_cancelled.as_ref().map(|m| R {
            kind: ReasonKind::Token,
            code: Some(REGISTRY.to_owned()),
            message: m.clone(),
        })
    }

    /// Gives future trigger `j` a poll.
    fn drive(&mut self, w: &World, j: usize) {
        if let Source::Gate(k) = self.f.triggers[j].0 {
            if w.open[k] {
                self.seen[j] = true;
            }
        }
    }

    /// The deadline has passed on the clock: how `Fencing::is_cancelled`
    /// and a fence's first poll see it.
    fn clock_passed(&self, w: &World) -> bool {
        self.effective(w).is_some_and(|d| d.at <= w.now)
    }

    /// What the fence's one timer is to be set for: the earlier of the
    /// effective deadline, until it fired, and the end of the grace period.
    fn target(&self, w: &World) -> Option<i64> {
        let deadline = self
            .effective(w)
            .filter(|_| !self.deadline_fired)
            .map(|d| d.at);
        match (deadline, self.drop_at.grace_end()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The deadline has passed as a polling fence sees it: its timer, reset
    /// for the target, has fired, and it watches the deadline (no grace
    /// period ends before it).
    fn timer_passed(&self, w: &World) -> bool {
        self.effective(w).is_some_and(|d| {
            d.at <= w.timer_now && self.drop_at.grace_end().map_or(true, |end| d.at <= end)
        })
    }

    /// The deadline has passed as the fence sees it between polls, through
    /// the timer as its last poll set it: only if that timer watches the
    /// effective deadline as it is now (a handle may have moved it since)
    /// and has fired.
    fn timer_sees(&self, w: &World) -> bool {
        !self.deadline_fired
            && self.timer_at.is_some_and(|at| {
                self.effective(w).is_some_and(|d| d.at == at) && at <= w.timer_now
            })
    }

    /// Counts the reasons recorded since the last call in `drop_at`, each
    /// with its own grace period (`Duration::ZERO` is none) from now.
    fn start_grace(&mut self, w: &World) {
        for r in &self.recorded[self.graced..] {
            let grace = self
                .f
                .grace_period_for(r.code.as_deref())
                .filter(|g| !g.is_zero());
            let due = match grace {
                None => DropAt::Now,
                Some(g) if g < FAR_FUTURE => DropAt::At(w.now + g.as_millis() as i64),
                Some(_) => DropAt::Never,
            };
            self.drop_at = self.drop_at.earlier(due);
        }
        self.graced = self.recorded.len();
    }

    /// Files `r`: with the accepted reasons, or with the declined.
    fn file(&mut self, r: R) {
        if self.f.accepts(&r) {
            self.recorded.push(r);
        } else {
            self.declined.push(r);
        }
    }

    /// Records what fired and is not recorded: the deadline first, then the
    /// other triggers in declaration order, the registry last. Returns
    /// whether it recorded any accepted reason.
    fn record(&mut self, w: &World, deadline_passed: bool) -> bool {
        let before = self.recorded.len();
        let in_grace = self.drop_at != DropAt::NotYet;
        if let (Some(d), false, true) = (self.effective(w), self.deadline_fired, deadline_passed) {
            self.deadline_fired = true;
            self.handle_deadline_fired |= self.f.deadline != Some(d);
            self.file(d.reason());
        }
        for j in 0..self.f.triggers.len() {
            if self.trig_recorded[j] {
                continue;
            }
            if let Some(r) = self.fired(w, j) {
                self.trig_recorded[j] = true;
                self.file(r);
            }
        }
        if self.entered && !self.reg_recorded {
            if let Some(r) = self.registry_fired() {
                self.reg_recorded = true;
                self.file(r);
            }
        }
        self.recorded_in_grace |= in_grace && self.recorded.len() > before;
        self.recorded.len() > before
    }

    /// Records as a polling fence does, through its timer: a deadline that
    /// fires leaves the timer spent at that instant.
    fn record_through_timer(&mut self, w: &World, deadline_passed: bool) -> bool {
        let deadline = self.effective(w);
        let fired_before = self.deadline_fired;
        let any = self.record(w, deadline_passed);
        if !fired_before && self.deadline_fired {
            self.timer_at = deadline.map(|d| d.at);
        }
        any
    }

    fn done(&mut self) {
        self.state = State::Done;
        self.entered = false;
    }

    fn interrupt(&mut self) -> Outcome {
        self.done();
        self.dropped = true;
        self.interrupted = true;
        Outcome::Err(self.recorded.clone())
    }

    /// Pending: the timer is now set for the target (a spent one stays
    /// once the deadline fired).
    fn pending(&mut self, w: &World) -> Outcome {
        self.timer_at = match self.target(w) {
            Some(at) => Some(at),
            None if self.deadline_fired => self.timer_at,
            None => None,
        };
        Outcome::Pending
    }

    /// The drop is due: done, unless the body's guard defers it.
    fn drop_due(&mut self, w: &World) -> Outcome {
        if self.protected {
            self.protect_waiting = true;
            self.deferred_by_guard = true;
            return self.pending(w);
        }
        self.interrupt()
    }

    fn poll(&mut self, w: &mut World) -> Outcome {
        assert_ne!(
            self.state,
            State::Done,
            "the harness polls live fences only"
        );
        self.wake_expected = false;
        self.protect_waiting = false;
        let before = self.recorded.len() + self.declined.len();
        let outcome = self.poll_inner(w);
        if self.recorded.len() + self.declined.len() > before {
            self.recording_polls += 1;
        }
        outcome
    }

    fn poll_inner(&mut self, w: &mut World) -> Outcome {
        let first = self.state == State::Fresh;
        if first {
            // Inspect before await, pre-fired bodies never start.
            self.state = State::Running;
            if self.f.registered {
                self.entered = true;
                self.entered_deadline = self.effective(w).map(|d| d.at);
            }
            for j in 0..self.f.triggers.len() {
                self.drive(w, j);
            }
            if self.record(w, self.clock_passed(w)) {
                return self.interrupt();
            }
        }
        // Completion wins ties: the body first. Within its first poll the
        // deadline was read from the clock just before.
        self.polls += 1;
        if let Some((k, t)) = self.body_cancels {
            if self.polls == k {
                w.cancel(t, "body");
            }
        }
        if self.protect_at == Some(self.polls) {
            self.protected = true;
        }
        self.context_seen = Some(self.effective(w).map(|d| d.at));
        if !first && self.drop_at == DropAt::NotYet && !self.deadline_fired {
            self.timer_behind |= self.clock_passed(w) && !self.timer_passed(w);
        }
        if self.ready_at.is_some_and(|r| w.now >= r) {
            self.record(w, self.timer_sees(w));
            self.done();
            return Outcome::Ok;
        }
        for j in 0..self.f.triggers.len() {
            if !self.trig_recorded[j] {
                self.drive(w, j);
            }
        }
        self.record_through_timer(w, self.timer_passed(w));
        if self.recorded.is_empty() {
            return self.pending(w);
        }
        loop {
            // Each grace period starts on the clock; the drop comes at the
            // earliest end, through the fence's one timer, which serves the
            // deadline too.
            self.start_grace(w);
            if self.drop_at == DropAt::Now {
                return self.drop_due(w);
            }
            match self.target(w) {
                Some(at) if at <= w.timer_now => {}
                _ => return self.pending(w),
            }
            if self.timer_passed(w) && !self.deadline_fired {
                // The deadline fired during the grace period.
                self.record_through_timer(w, true);
                continue;
            }
            return self.drop_due(w);
        }
    }

    /// What `Fenced::reasons` answers: the recorded reasons, then, while the
    /// fence is live and no policy is declared, those that fired since it
    /// last looked.
    fn view(&self, w: &World) -> Vec<R> {
        let mut reasons = self.recorded.clone();
        if self.state != State::Done && self.f.declines.is_empty() {
            // Seen as the fence would see it at its next poll.
            let passed = match self.state {
                State::Fresh => self.clock_passed(w),
                _ => self.timer_sees(w),
            };
            if let (Some(d), false, true) = (self.effective(w), self.deadline_fired, passed) {
                reasons.push(d.reason());
            }
            for j in 0..self.f.triggers.len() {
                if !self.trig_recorded[j] {
                    reasons.extend(self.fired(w, j));
                }
            }
            if self.entered && !self.reg_recorded {
                reasons.extend(self.registry_fired());
            }
        }
        reasons
    }

    /// What `Fencing::is_cancelled` answers for the declaration: a token or
    /// a handle is cancelled, a future trigger was seen to complete, or the
    /// deadline has passed on the clock.
    fn fencing_is_cancelled(&self, w: &World) -> bool {
        self.clock_passed(w) || (0..self.f.triggers.len()).any(|j| self.fired(w, j).is_some())
    }

    /// A pending fence that has been polled waits on every unrecorded
    /// trigger and on its one timer.
    fn waiting(&self) -> bool {
        self.state == State::Running
    }

    fn on_cancel(&mut self, newly: &[usize]) {
        if self.waiting() {
            let hit = self.f.triggers.iter().enumerate().any(|(j, (s, _))| {
                !self.trig_recorded[j] && matches!(s, Source::Token(t) if newly.contains(t))
            });
            self.wake_expected |= hit;
        }
    }

    fn on_open(&mut self, k: usize, was_open: bool) {
        if self.waiting() && !was_open {
            let hit = self
                .f
                .triggers
                .iter()
                .enumerate()
                .any(|(j, (s, _))| !self.trig_recorded[j] && *s == Source::Gate(k));
            self.wake_expected |= hit;
        }
    }

    /// A handle was cancelled or rescheduled: it wakes every fence waiting
    /// on it.
    fn on_handle(&mut self, h: usize) {
        if self.waiting() {
            let hit = self.f.triggers.iter().enumerate().any(|(j, (s, _))| {
                !self.trig_recorded[j] && matches!(s, Source::Handle(g, _) if *g == h)
            });
            self.wake_expected |= hit;
        }
    }

    /// The registry cancels the fence's entry, if it is there: returns how
    /// many operations `cancel_matching` reports.
    fn on_registry_cancel(&mut self, message: &str) -> usize {
        if !self.entered || self.reg_cancelled.is_some() {
            return 0;
        }
        self.reg_cancelled = Some(message.to_owned());
        self.wake_expected |= self.waiting() && !self.reg_recorded;
        1
    }

    fn on_release(&mut self) {
        if self.protected {
            self.protected = false;
            self.wake_expected |= self.waiting() && self.protect_waiting;
        }
    }

    /// The clock advanced, the timer from `before` to now: a timer armed
    /// for an instant in between fires and wakes the fence.
    fn on_advance(&mut self, w: &World, before: i64) {
        if self.waiting() {
            self.wake_expected |= self
                .timer_at
                .is_some_and(|at| before < at && at <= w.timer_now);
        }
    }
}

// ---------------------------------------------------------------------------
// The real side
// ---------------------------------------------------------------------------

/// A future trigger's event: opened by the test, waking every poller.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, SeqCst);
        for waker in self.wakers.lock().unwrap().drain(..) {
            waker.wake();
        }
    }
}

struct GateFuture(Arc<Gate>);

impl Future for GateFuture {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.open.load(SeqCst) {
            return Poll::Ready(());
        }
        self.0.wakers.lock().unwrap().push(cx.waker().clone());
        Poll::Pending
    }
}

/// What the body reports.
#[derive(Default)]
struct Probe {
    polls: AtomicUsize,
    dropped: AtomicBool,
    /// `current().effective_deadline()` at the body's last poll.
    context: Mutex<Option<Option<Instant>>>,
    /// The protection guard the body took, until `Event::Release`.
    guard: Mutex<Option<ProtectGuard>>,
}

/// Ready once the clock reaches `ready_at`; registers no waker, so every
/// wake-up the test sees comes from the fence.
struct Body {
    ready_at: Option<Instant>,
    /// At its `k`-th poll, the body cancels this token.
    cancels: Option<(usize, Token)>,
    /// At its `k`-th poll, the body takes a protection guard.
    protect_at: Option<usize>,
    probe: Arc<Probe>,
}

impl Future for Body {
    type Output = u32;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<u32> {
        let n = self.probe.polls.fetch_add(1, SeqCst) + 1;
        if let Some((k, token)) = &self.cancels {
            if n == *k {
                token.cancel_with("body");
            }
        }
        if self.protect_at == Some(n) {
            *self.probe.guard.lock().unwrap() = Some(protect());
        }
        *self.probe.context.lock().unwrap() = Some(current().effective_deadline());
        if self.ready_at.is_some_and(|at| Instant::now() >= at) {
            Poll::Ready(7)
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        self.probe.dropped.store(true, SeqCst);
    }
}

type Task = Spawn<Pin<Box<Fenced<Body>>>>;

fn instant(t0: Instant, ms: i64) -> Instant {
    if ms >= 0 {
        t0 + Duration::from_millis(ms as u64)
    } else {
        t0 - Duration::from_millis(ms.unsigned_abs())
    }
}

fn expected_deadline(t0: Instant, f: &MFencing, w: &World) -> Option<Instant> {
    f.effective(w).map(|d| instant(t0, d.at))
}

struct Case {
    t0: Instant,
    tokens: Vec<Token>,
    gates: Vec<Arc<Gate>>,
    handles: Vec<FenceHandle>,
    registry: Registry,
    world: World,
}

impl Case {
    fn new(parents: &[Option<usize>]) -> Self {
        let mut tokens: Vec<Token> = Vec::new();
        for p in parents {
            let token = p.map_or_else(Token::new, |p| tokens[p].child());
            tokens.push(token);
        }
        Self {
            t0: Instant::now(),
            tokens,
            gates: (0..GATES).map(|_| Arc::default()).collect(),
            handles: (0..HANDLES).map(|_| FenceHandle::new()).collect(),
            registry: Registry::new(),
            world: World {
                now: 0,
                timer_now: 0,
                parents: parents.to_vec(),
                cancelled: vec![None; parents.len()],
                open: [false; GATES],
                handle_cancelled: [None, None],
                schedule: [None; HANDLES],
            },
        }
    }

    /// Advances the clock; with `full`, lets tokio's timer catch up.
    async fn advance(&mut self, ms: u64, full: bool) {
        let advance = tokio::time::advance(Duration::from_millis(ms));
        if full {
            // The runtime turns its driver while `advance` yields: every timer
            // up to the new time fires.
            advance.await;
            self.world.timer_now = self.world.now + ms as i64;
        } else {
            // `advance` moves the clock on its first poll, then yields; the
            // timer catches up only when the runtime next turns its driver,
            // at the next full advance.
            let mut advance = std::pin::pin!(advance);
            let waker = futures_test::task::noop_waker();
            let _ = advance.as_mut().poll(&mut Context::from_waker(&waker));
        }
        self.world.now += ms as i64;
        assert_eq!(Instant::now(), instant(self.t0, self.world.now));
    }

    /// Reschedules handle `h` on both sides.
    fn reschedule(&mut self, h: usize, r: Resched) {
        self.world.reschedule(h, r);
        match r {
            Resched::After(len) => self.handles[h].reschedule_after(len.duration()),
            Resched::At(at) => self.handles[h].reschedule(instant(self.t0, at)),
        }
    }

    /// Applies one builder step to both sides.
    async fn declare(
        &mut self,
        fencing: Fencing,
        model: &mut MFencing,
        step: Step,
    ) -> Result<Fencing, TestCaseError> {
        let (fencing, code) = match step {
            Step::Timeout(len, code) => {
                model.merge(len.ms().map(|ms| self.world.now + ms), Some(len));
                (fencing.timeout(len.duration()), code)
            }
            Step::Deadline(ms, code) => {
                model.merge(Some(ms), None);
                (fencing.deadline(instant(self.t0, ms)), code)
            }
            Step::Token(i, code) => {
                let i = i % self.tokens.len();
                model.push(Source::Token(i));
                (fencing.token(&self.tokens[i]), code)
            }
            Step::Future(k, code) => {
                model.push(Source::Gate(k));
                (fencing.future(GateFuture(self.gates[k].clone())), code)
            }
            Step::Handle(h, code) => {
                model.handle(h);
                (fencing.handle(&self.handles[h]), code)
            }
            Step::Reschedule(h, r) => {
                self.reschedule(h, r);
                (fencing, None)
            }
            Step::Policy(c) => {
                model.last = Last::Nothing;
                model.declines.push(c);
                (fencing.policy(move |r| !r.has_code(CODES[c])), None)
            }
            Step::Register => {
                model.last = Last::Nothing;
                model.registered = true;
                (fencing.register(&self.registry, "op"), None)
            }
            Step::Code(c) => (fencing, Some(c)),
            Step::Derive(in_fence) => {
                let expected = expected_deadline(self.t0, model, &self.world);
                let probe = MFence::new(model.clone(), None);
                let has_future = model
                    .triggers
                    .iter()
                    .any(|(s, _)| matches!(s, Source::Gate(_)));
                model.derive();
                let inside = async move {
                    assert_eq!(current().effective_deadline(), expected);
                    current()
                };
                let inner = if in_fence && !has_future && !probe.fencing_is_cancelled(&self.world) {
                    // Nothing has fired: the body runs, at once.
                    fencing.run(inside).await.expect("nothing had fired")
                } else {
                    fencing.bind(inside).await
                };
                (inner, None)
            }
            Step::Advance(ms, full) => {
                self.advance(ms, full).await;
                (fencing, None)
            }
            Step::Grace(ms) => {
                let grace = ms.map_or(Duration::MAX, Duration::from_millis);
                model.last = Last::Nothing;
                model.grace = Some(model.grace.map_or(grace, |g| g.min(grace)));
                (fencing.grace(grace), None)
            }
            Step::GraceFor(c, ms) => {
                let grace = ms.map_or(Duration::MAX, Duration::from_millis);
                model.last = Last::Nothing;
                let slot = &mut model.grace_for[c];
                *slot = Some(slot.map_or(grace, |g| g.min(grace)));
                (fencing.grace_for(CODES[c], grace), None)
            }
        };
        model.code(code);
        let fencing = match code {
            Some(c) => fencing.code(CODES[c]),
            None => fencing,
        };
        prop_assert_eq!(
            fencing.effective_deadline(),
            expected_deadline(self.t0, model, &self.world),
            "effective deadline after {:?}",
            step
        );
        prop_assert_eq!(fencing.grace_period(), model.grace);
        for code in CODES {
            prop_assert_eq!(
                fencing.grace_period_for(code),
                model.grace_period_for(Some(code))
            );
        }
        Ok(fencing)
    }
}

/// Compares everything observable about the fence with the model.
fn check(
    case: &Case,
    task: &Task,
    keep: &Fencing,
    probe: &Probe,
    model: &MFence,
    when: &str,
) -> Result<(), TestCaseError> {
    let w = &case.world;
    let fence: &Fenced<Body> = task;
    let view = model.view(w);
    prop_assert_eq!(&observed(&fence.reasons()), &view, "reasons() {}", when);
    prop_assert_eq!(
        fence.is_cancelled(),
        !view.is_empty(),
        "is_cancelled() {}",
        when
    );
    for code in CODES {
        let expected = view.iter().any(|r| r.code.as_deref() == Some(code));
        prop_assert_eq!(
            fence.cancelled_by(code),
            expected,
            "cancelled_by({}) {}",
            code,
            when
        );
    }
    prop_assert_eq!(
        fence.is_interrupted(),
        model.interrupted,
        "is_interrupted() {}",
        when
    );
    prop_assert_eq!(probe.polls.load(SeqCst), model.polls, "body polls {}", when);
    prop_assert_eq!(
        probe.dropped.load(SeqCst),
        model.dropped,
        "body dropped {}",
        when
    );
    prop_assert_eq!(
        keep.is_cancelled(),
        model.fencing_is_cancelled(w),
        "Fencing::is_cancelled() {}",
        when
    );
    let deadline = expected_deadline(case.t0, &model.f, w);
    prop_assert_eq!(fence.fencing().effective_deadline(), deadline);
    if let Some(seen) = model.context_seen {
        prop_assert_eq!(
            *probe.context.lock().unwrap(),
            Some(seen.map(|ms| instant(case.t0, ms))),
            "the body's context {}",
            when
        );
    }
    prop_assert_eq!(
        &observed(fence.declined()),
        &model.declined,
        "declined() {}",
        when
    );
    let listed = case.registry.list();
    prop_assert_eq!(
        listed.len(),
        usize::from(model.entered),
        "registry {}",
        when
    );
    if let Some(info) = listed.first() {
        prop_assert_eq!(info.name(), "op");
        prop_assert_eq!(
            info.deadline(),
            model.entered_deadline.map(|ms| instant(case.t0, ms))
        );
        prop_assert_eq!(
            &observed(info.reasons()),
            &model.recorded,
            "registry reasons {}",
            when
        );
    }
    if model.wake_expected {
        prop_assert!(task.is_woken(), "the fence was not woken {}", when);
    }
    if model.state == State::Done {
        for (i, token) in case.tokens.iter().enumerate() {
            prop_assert_eq!(token.__waiter_count(), 0, "waiters on token {} {}", i, when);
        }
    }
    Ok(())
}

/// Polls the fence and compares the outcome with the model's.
fn poll(
    case: &mut Case,
    task: &mut Task,
    probe: &Probe,
    model: &mut MFence,
    when: &str,
) -> Result<(), TestCaseError> {
    let real = match task.poll() {
        Poll::Pending => Outcome::Pending,
        Poll::Ready(Ok(value)) => {
            prop_assert_eq!(value, 7);
            Outcome::Ok
        }
        Poll::Ready(Err(cancelled)) => {
            // Hard cancel is drop: the body is gone before the error is seen.
            prop_assert!(probe.dropped.load(SeqCst), "body not dropped {}", when);
            prop_assert_eq!(
                observed(std::slice::from_ref(cancelled.reason())),
                observed(&cancelled.reasons()[..1])
            );
            Outcome::Err(observed(cancelled.reasons()))
        }
    };
    let expected = model.poll(&mut case.world);
    prop_assert_eq!(real, expected, "poll {}", when);
    Ok(())
}

/// What a case went through, to check that the generator reaches every
/// situation the model tells apart.
#[derive(Debug, Default)]
struct Coverage {
    pre_fired: usize,
    interrupted: usize,
    interrupted_by_several: usize,
    interrupted_by_time_and_other: usize,
    completed: usize,
    completed_although_fired: usize,
    still_pending: usize,
    recorded_over_several_polls: usize,
    completed_in_grace: usize,
    recorded_in_grace: usize,
    timer_behind_clock: usize,
    woken: usize,
    declined: usize,
    cancelled_through_the_registry: usize,
    drop_deferred_by_a_guard: usize,
    fired_at_a_handles_deadline: usize,
    /// A handle declared on a derived `Fencing` was rescheduled while the
    /// fence ran.
    rescheduled_while_running: usize,
}

impl Coverage {
    fn add(&mut self, model: &MFence) {
        let time = |r: &R| r.kind.is_time();
        match (model.state, model.interrupted) {
            (State::Done, true) => {
                self.interrupted += 1;
                self.pre_fired += usize::from(model.polls == 0);
                self.interrupted_by_several += usize::from(model.recorded.len() > 1);
                self.interrupted_by_time_and_other += usize::from(
                    model.recorded.iter().any(time) && !model.recorded.iter().all(time),
                );
            }
            (State::Done, false) => {
                self.completed += 1;
                self.completed_although_fired += usize::from(!model.recorded.is_empty());
                self.completed_in_grace += usize::from(model.drop_at != DropAt::NotYet);
            }
            _ => self.still_pending += 1,
        }
        self.recorded_over_several_polls += usize::from(model.recording_polls > 1);
        self.timer_behind_clock += usize::from(model.timer_behind);
        self.recorded_in_grace += usize::from(model.recorded_in_grace);
        self.declined += usize::from(!model.declined.is_empty());
        self.cancelled_through_the_registry += usize::from(model.reg_recorded);
        self.drop_deferred_by_a_guard += usize::from(model.deferred_by_guard);
        self.fired_at_a_handles_deadline += usize::from(model.handle_deadline_fired);
    }
}

async fn run(p: &Program, coverage: &mut Coverage) -> Result<(), TestCaseError> {
    let mut case = Case::new(&p.parents);
    let mut fencing = Fencing::new();
    let mut declared = MFencing::new();
    for &step in &p.steps {
        fencing = case.declare(fencing, &mut declared, step).await?;
    }

    let keep = fencing.clone();
    let probe = Arc::new(Probe::default());
    let ready_at = p.body.map(|ms| case.world.now + ms as i64);
    let body_cancels = p.body_cancels.map(|(k, i)| (k, i % case.tokens.len()));
    let body = Body {
        ready_at: ready_at.map(|ms| instant(case.t0, ms)),
        cancels: body_cancels.map(|(k, i)| (k, case.tokens[i].clone())),
        protect_at: p.protect_at,
        probe: probe.clone(),
    };
    let mut task: Task = spawn(Box::pin(fencing.run(body)));
    let mut model = MFence::new(declared, ready_at);
    model.body_cancels = body_cancels;
    model.protect_at = p.protect_at;
    check(&case, &task, &keep, &probe, &model, "before the first poll")?;

    let events = p.events.iter().copied().chain([
        // Run out: a last poll, then time enough for every trigger and body.
        Event::Poll,
        Event::Advance(1_000, true),
        Event::Poll,
    ]);
    for (n, event) in events.enumerate() {
        let when = format!("after event {n} ({event:?})");
        match event {
            Event::Advance(ms, full) => {
                let before = case.world.timer_now;
                case.advance(ms, full).await;
                model.on_advance(&case.world, before);
            }
            Event::Cancel(i, with_message) => {
                let i = i % case.tokens.len();
                let message = if with_message {
                    format!("m{n}")
                } else {
                    "token cancelled".to_owned()
                };
                let (first, newly) = case.world.cancel(i, &message);
                let real = if with_message {
                    case.tokens[i].cancel_with(message)
                } else {
                    case.tokens[i].cancel()
                };
                prop_assert_eq!(real, first, "first cancel wins {}", when);
                model.on_cancel(&newly);
            }
            Event::Open(k) => {
                let was_open = case.world.open[k];
                case.world.open[k] = true;
                case.gates[k].open();
                model.on_open(k, was_open);
            }
            Event::CancelHandle(h, with_message) => {
                let message = if with_message {
                    format!("h{n}")
                } else {
                    "fence cancelled".to_owned()
                };
                let first = case.world.handle_cancelled[h].is_none();
                if first {
                    case.world.handle_cancelled[h] = Some(message.clone());
                }
                let real = if with_message {
                    case.handles[h].cancel_with(message)
                } else {
                    case.handles[h].cancel()
                };
                prop_assert_eq!(real, first, "first cancel wins {}", when);
                if first {
                    model.on_handle(h);
                }
            }
            Event::Reschedule(h, r) => {
                case.reschedule(h, r);
                coverage.rescheduled_while_running += usize::from(
                    model.waiting()
                        && model.f.derived
                        && model
                            .f
                            .triggers
                            .iter()
                            .any(|(s, _)| matches!(s, Source::Handle(g, _) if *g == h)),
                );
                model.on_handle(h);
            }
            Event::RegistryCancel => {
                let message = format!("r{n}");
                let expected = model.on_registry_cancel(&message);
                let real = case.registry.cancel_matching(|_| true, message);
                prop_assert_eq!(real, expected, "registry cancels {}", when);
            }
            Event::Release => {
                drop(probe.guard.lock().unwrap().take());
                model.on_release();
            }
            Event::Poll => {
                if model.state != State::Done {
                    poll(&mut case, &mut task, &probe, &mut model, &when)?;
                }
            }
        }
        coverage.woken += usize::from(model.wake_expected);
        check(&case, &task, &keep, &probe, &model, &when)?;
    }
    coverage.add(&model);
    drop(task);
    for (i, token) in case.tokens.iter().enumerate() {
        prop_assert_eq!(
            token.__waiter_count(),
            0,
            "waiters on token {} after the fence was dropped",
            i
        );
    }
    Ok(())
}

fn run_case(p: &Program, coverage: &mut Coverage) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(run(p, coverage))
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // This file is the only artefact: no regression files beside it.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The builder and the fence agree with the model on every program.
    #[test]
    fn fence_matches_model(p in program()) {
        run_case(&p, &mut Coverage::default())?;
    }
}

/// The generator reaches every situation the model tells apart: a property
/// that passes on trivial programs only would prove little.
#[test]
fn fence_model_generator_reaches_every_situation() {
    let mut runner = TestRunner::deterministic();
    let strategy = program();
    let mut coverage = Coverage::default();
    for _ in 0..500 {
        let p = strategy.new_tree(&mut runner).expect("a program").current();
        run_case(&p, &mut coverage).expect("the model agrees");
    }
    eprintln!("{coverage:#?}");
    let Coverage {
        pre_fired,
        interrupted,
        interrupted_by_several,
        interrupted_by_time_and_other,
        completed,
        completed_although_fired,
        still_pending,
        recorded_over_several_polls,
        completed_in_grace,
        recorded_in_grace,
        timer_behind_clock,
        woken,
        declined,
        cancelled_through_the_registry,
        drop_deferred_by_a_guard,
        fired_at_a_handles_deadline,
        rescheduled_while_running,
    } = coverage;
    for (what, n) in [
        ("pre-fired", pre_fired),
        ("interrupted", interrupted),
        ("interrupted by several", interrupted_by_several),
        (
            "interrupted by time and other",
            interrupted_by_time_and_other,
        ),
        ("completed", completed),
        ("completed although fired", completed_although_fired),
        ("still pending", still_pending),
        ("recorded over several polls", recorded_over_several_polls),
        ("completed in grace", completed_in_grace),
        ("recorded in grace", recorded_in_grace),
        ("timer behind clock", timer_behind_clock),
        ("woken", woken),
        ("declined", declined),
        (
            "cancelled through the registry",
            cancelled_through_the_registry,
        ),
        ("drop deferred by a guard", drop_deferred_by_a_guard),
        ("fired at a handle's deadline", fired_at_a_handles_deadline),
        ("rescheduled while running", rescheduled_while_running),
    ] {
        assert!(n > 0, "no case was {what}: {coverage:?}");
    }
}

/// `grace(Duration::ZERO)` is the same as no grace period: when a trigger
/// fires while the body is pending, the body is dropped in that very poll,
/// even when the clock is ahead of tokio's timer (here by 1 ms; on a real
/// clock between any two turns of the driver). Before it was fixed, the
/// fence waited for its timer to reach the end of a zero-length grace
/// period. The input is the one `fence_matches_model` shrank to.
#[test]
fn fence_model_regression_zero_grace_is_no_grace_period() {
    let p = Program {
        parents: vec![None],
        steps: vec![Step::Token(0, None), Step::Grace(Some(0))],
        body: None,
        body_cancels: None,
        protect_at: None,
        events: vec![
            Event::Poll,
            Event::Advance(1, false),
            Event::Cancel(0, false),
        ],
    };
    let mut coverage = Coverage::default();
    if let Err(e) = run_case(&p, &mut coverage) {
        panic!("{e}");
    }
}
