//! The fence engine: one armed use of a [`Fencing`], what it has recorded,
//! and on each poll whether its body must be dropped. [`Fenced`],
//! [`FencedStream`] and [`WaitForFencingFuture`] are thin handles over it: each
//! owns its body, polls it inside [`Engine::enter`], and leaves everything
//! else to the engine, which is generic-free.
//!
//! # Slots
//!
//! Every trigger the fence waits on is a *slot*: one per trigger of the
//! `Fencing`, in declaration order (tokens, future triggers, handles), then
//! the fence's registry entry if the `Fencing` registers (entered at the
//! first poll; one slot, in however many registries it is listed). A slot
//! holds the fence's waiter registration on the trigger's node and whether
//! the fence has recorded it. The deadline is one
//! more slot: the *effective deadline*, the tightest of every deadline in
//! effect (declared time triggers, and handles'), computed once per poll;
//! the fence's one timer watches it.
//!
//! # Phases
//!
//! ```text
//! Fresh ──first poll──▶ Running(NotYet) ──a reason is accepted──▶ Running(Now | At | Never)
//!   │                       │                                          │
//!   │ fired before          │ body ready                                │ body ready: Completed
//!   ▼ the first poll        ▼                                          ▼ drop due, unprotected
//! Interrupted           Completed                                  Interrupted
//! ```
//!
//! `Fresh`: armed, not polled. What has fired is read from the triggers and
//! the clock; nothing is registered. `Running(drop_at)`: the body has been
//! polled; `drop_at` is when it is to be dropped, over the reasons recorded
//! so far (each with its grace period, counted from when it was recorded).
//! `Completed` and `Interrupted` are final.
//!
//! # Invariants
//!
//! 1. A slot is recorded at most once, and the policy consulted once for
//!    it; a policy that panics accepts (the panic is caught, and counted in
//!    `faults`). An accepted reason goes to `reasons`, a declined one to
//!    `declined`, both in recording order.
//! 2. What has fired and is not recorded is found by one scan (`scan`),
//!    serving both recording (`record`) and the accessors that peek
//!    (`unrecorded`): the deadline first, then the slots in order.
//! 3. `drop_at` accounts for every reason in `reasons`: it is folded in as
//!    each reason is recorded.
//! 4. At most one timer is armed, and only in `Running`, after the body
//!    returned pending, for the earlier of the effective deadline (until it
//!    fired) and the end of the grace period. The body ready at its first
//!    poll registers nothing.
//! 5. Leaving `Running` releases every registration: waiters, the timer,
//!    the registry entry. Dropping the engine does the same.
//! 6. No lock of the crate is held while user code runs (a policy, a future
//!    trigger's poll, a waker): slots are polled one at a time, each
//!    through the token engine, which wakes and drops wakers unlocked.
//! 7. `faults` counts what `fault.rs` reported on this thread while the
//!    fence ran user code: its policy, the polls of its triggers, and the
//!    polls of its body (where the fences and waits inside it run theirs).
//!
//! [`Fenced`]: super::Fenced
//! [`FencedStream`]: super::FencedStream
//! [`WaitForFencingFuture`]: super::WaitForFencingFuture

use crate::context;
use crate::context::Scope;
use crate::declaration::Fencing;
use crate::error::Cancelled;
use crate::fault;
use crate::reason::{Code, Reason};
use crate::registry::Operation;
use crate::time::{deadline_after, timer_deadline};
use crate::trigger::{TimeTrigger, Trigger};
use pin_project_lite::pin_project;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use tokio::time::{Instant, Sleep};

pin_project! {
    /// The engine of one fence; see the module docs.
    pub(crate) struct Engine {
        #[pin]
        timer: Timer,
        core: Core,
    }
}

pin_project! {
    /// The fence's one timer, with what it watches.
    #[project = TimerProj]
    enum Timer {
        Idle,
        Armed {
            #[pin]
            sleep: Sleep,
            // Whether the sleep is set short of the instant watched: at most
            // thirty years ahead (`timer_deadline`), to be set again when it
            // gets there. Otherwise it is set for the instant watched itself.
            short: bool,
            count: TimerCount,
        },
    }
}

/// The generic- and pin-free state of the engine.
struct Core {
    fencing: Fencing,
    run: Run,
}

/// What the fence has armed and recorded, apart from the `Fencing` it reads,
/// so that a deadline borrowed from the one can be recorded into the other.
///
/// Every byte here is a byte of every task that runs a fence: tokio
/// allocates a task in 128-byte steps, and a million fenced tasks cost as
/// much memory as a million `select!`s only while the task's future stays
/// within the same step (`benches/million.sh`). So what a common fence
/// does not use is behind `cold`.
struct Run {
    phase: Phase,
    /// Whether the fence has recorded the deadline (its slot).
    deadline: bool,
    /// Whether the fence has registered on its triggers: not if the body
    /// completed in its first poll, so there is nothing to release.
    registered: bool,
    slots: Slots,
    /// Created by the first protection guard taken in the body.
    scope: Option<Arc<Scope>>,
    /// What only a fence that registers, records a reason, meets a fault or
    /// is given a grace period needs, behind one pointer.
    cold: Option<Box<Cold>>,
}

/// See [`Run::cold`]; created by the registration, the first reason or
/// the first fault.
#[derive(Default)]
struct Cold {
    /// The fence's entry in its registries, while it runs: the slot after the
    /// `Fencing`'s triggers.
    entry: Option<Operation>,
    /// Accepted reasons, in firing order.
    reasons: Vec<Reason>,
    /// Reasons the policy declined, in firing order.
    declined: Vec<Reason>,
    /// Faults in user code the fence ran (`fault.rs`): policies that
    /// panicked, condition checks that failed.
    faults: u32,
    /// The end of the earliest grace period, while `DropAt::At`.
    grace_end: Option<Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Fresh,
    /// When the body is to be dropped, the instant of `DropAt::At` being
    /// kept in [`Cold::grace_end`].
    Running(DropKind),
    Completed,
    Interrupted,
}

/// [`DropAt`] without its instant.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DropKind {
    NotYet,
    Now,
    At,
    Never,
}

/// When a pending body is to be dropped: the earliest end of a grace
/// period among the reasons recorded (each counted from when it was
/// recorded), or at once for a reason without one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DropAt {
    /// Nothing that cancels has fired.
    NotYet,
    /// A reason without a grace period fired.
    Now,
    /// The end of the earliest grace period.
    At(Instant),
    /// Every grace period overflowed the clock: the body is never dropped.
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

    fn grace_end(self) -> Option<Instant> {
        match self {
            Self::At(at) => Some(at),
            _ => None,
        }
    }

    fn kind(self) -> DropKind {
        match self {
            Self::NotYet => DropKind::NotYet,
            Self::Now => DropKind::Now,
            Self::At(_) => DropKind::At,
            Self::Never => DropKind::Never,
        }
    }
}

/// One trigger's slot, in one word: the fence's registration on the
/// trigger's node (its key in the node's waiters, plus one; zero for none)
/// and, in the top bit, whether the fence has recorded the trigger.
#[derive(Clone, Copy, Default)]
struct Slot(usize);

impl Slot {
    const RECORDED: usize = 1 << (usize::BITS - 1);

    fn recorded(self) -> bool {
        self.0 & Self::RECORDED != 0
    }

    fn record(&mut self) {
        self.0 |= Self::RECORDED;
    }

    fn is_registered(self) -> bool {
        self.0 & !Self::RECORDED != 0
    }

    /// Runs `f` on the registration, as a trigger takes it.
    fn with_key<R>(&mut self, f: impl FnOnce(&mut Option<usize>) -> R) -> R {
        /// Stores the key back even if `f` panics: a future trigger's poll
        /// may, after its waker was registered, and the registration must
        /// still be released with the fence (rule 21).
        struct Store<'a> {
            slot: &'a mut Slot,
            key: Option<usize>,
        }

        impl Drop for Store<'_> {
            fn drop(&mut self) {
                // A key is an index into a node's waiters, far below the top
                // bit.
                let stored = self.key.map_or(0, |key| key + 1);
                debug_assert_eq!(stored & Slot::RECORDED, 0);
                self.slot.0 = (self.slot.0 & Slot::RECORDED) | stored;
            }
        }

        let key = (self.0 & !Self::RECORDED).checked_sub(1);
        let mut store = Store { slot: self, key };
        f(&mut store.key)
    }
}

/// The slot of each trigger, the first inline so that a fence with one
/// token or future allocates nothing, even on the pending path; the others
/// are made at once, at the first need. (The deadline's is
/// [`Run::deadline`].)
#[derive(Default)]
struct Slots {
    first: Slot,
    rest: Option<Box<[Slot]>>,
}

/// A slot, by what it stands for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Which {
    Deadline,
    Trigger(usize),
}

impl Run {
    fn cold_mut(&mut self) -> &mut Cold {
        self.cold.get_or_insert_with(Box::default)
    }

    fn entry(&self) -> Option<&Operation> {
        self.cold.as_deref()?.entry.as_ref()
    }

    fn reasons(&self) -> &[Reason] {
        self.cold.as_deref().map_or(&[], |cold| &cold.reasons)
    }

    fn declined(&self) -> &[Reason] {
        self.cold.as_deref().map_or(&[], |cold| &cold.declined)
    }
}

impl Slots {
    fn get(&self, i: usize) -> Option<Slot> {
        match i {
            0 => Some(self.first),
            _ => self.rest.as_deref()?.get(i - 1).copied(),
        }
    }

    /// Makes room for `count` slots.
    #[inline]
    fn make_room(&mut self, count: usize) {
        let len = self.rest.as_deref().map_or(0, <[Slot]>::len);
        if len + 1 < count {
            self.grow(count);
        }
    }

    #[cold]
    fn grow(&mut self, count: usize) {
        let old = self.rest.as_deref().unwrap_or_default();
        let mut rest = vec![Slot::default(); count - 1];
        rest[..old.len()].copy_from_slice(old);
        self.rest = Some(rest.into_boxed_slice());
    }

    /// Every slot there is room for, in order.
    #[inline]
    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        let rest = self.rest.iter_mut().flat_map(|rest| rest.iter_mut());
        std::iter::once(&mut self.first).chain(rest)
    }

    /// The slot of trigger `i` of `count`, making room for all of them.
    fn get_mut(&mut self, i: usize, count: usize) -> &mut Slot {
        self.make_room(count.max(i + 1));
        match (i, self.rest.as_deref_mut()) {
            (0, _) => &mut self.first,
            (_, Some(rest)) => &mut rest[i - 1],
            (_, None) => unreachable!("room was made above"),
        }
    }
}

/// What the timer found passed: the deadline, the end of the grace period,
/// both or neither.
#[derive(Clone, Copy, Default)]
struct Passed {
    deadline: bool,
    grace: bool,
}

/// Present while the fence's timer is armed: counts it in the live counts
/// (`test-util`).
struct TimerCount(());

impl TimerCount {
    fn new() -> Self {
        crate::debug::timer_armed();
        Self(())
    }
}

impl Drop for TimerCount {
    fn drop(&mut self) {
        crate::debug::timer_released();
    }
}

impl Engine {
    pub(crate) fn new(fencing: Fencing) -> Self {
        Self {
            timer: Timer::Idle,
            core: Core {
                fencing,
                run: Run {
                    phase: Phase::Fresh,
                    deadline: false,
                    registered: false,
                    slots: Slots::default(),
                    scope: None,
                    cold: None,
                },
            },
        }
    }

    /// Moves a fresh fence to running: enters the registry, gives each
    /// future trigger one poll (it has fired only once it has been seen to
    /// complete) and records what has fired, the deadline read from the
    /// clock. Returns `true` if anything that cancels had fired: the body
    /// must not start. A running fence returns `false`.
    ///
    /// # Panics
    ///
    /// If the fence is done.
    pub(crate) fn start(self: Pin<&mut Self>) -> bool {
        let Core { fencing, run } = self.project().core;
        match run.phase {
            Phase::Running(_) => false,
            Phase::Fresh => {
                run.phase = Phase::Running(DropKind::NotYet);
                let deadline = fencing.effective();
                if !fencing.registrations().is_empty() {
                    let at = deadline.as_ref().map(|time| time.at);
                    run.cold_mut().entry = Some(Operation::enter(fencing.registrations(), at));
                }
                let mark = fault::mark();
                for trigger in fencing.triggers() {
                    trigger.drive();
                }
                run.count_faults(mark);
                let passed = deadline
                    .as_ref()
                    .is_some_and(|time| time.has_passed(Instant::now()));
                let fired = run.record(fencing, deadline.as_deref(), passed);
                if let Some(entry) = run.entry() {
                    // Progress reported in the body goes to this operation.
                    let sinks = entry.progress_sinks(fencing.progress().as_deref());
                    fencing.extra_mut().progress = Some(sinks);
                }
                fired
            }
            Phase::Completed | Phase::Interrupted => panic!("`Fenced` polled after completion"),
        }
    }

    /// Runs `f`, a poll of the body, with the fence's `Fencing` as the
    /// context and its protection scope on the stack.
    /// What the body's poll reported as faults counts in this fence too: a
    /// shared condition is often checked by the body's own wait on the
    /// context (`current().cancelled()`, a fence derived inside it).
    #[inline]
    pub(crate) fn enter<R>(self: Pin<&mut Self>, f: impl FnOnce() -> R) -> R {
        let Core { fencing, run } = self.project().core;
        let mark = fault::mark();
        let result = context::enter(fencing, Some(&mut run.scope), f);
        run.count_faults(mark);
        result
    }

    /// The body returned pending: arms every slot not recorded yet and the
    /// timer, records what fired, and returns whether the body must be
    /// dropped now (the fence is woken when that may change).
    pub(crate) fn poll_pending(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        let Core { fencing, run } = this.core;
        let mut timer = this.timer;
        let deadline = fencing.effective();
        run.register(fencing, cx);
        let passed = run.poll_timer(timer.as_mut(), cx, deadline.as_deref(), None);
        run.record(fencing, deadline.as_deref(), passed.deadline);
        run.must_drop(fencing, timer, cx, deadline.as_deref(), None)
    }

    /// Between two items of a fenced stream: records what fired and returns
    /// whether the stream must be dropped now, as `poll_pending` does for a
    /// pending body, protection guards and grace periods included, without
    /// arming the timer for the deadline. Time is read from the clock: a
    /// stream that is always ready never lets the runtime turn its timer
    /// driver, so the timer may lag behind.
    #[cfg(feature = "stream")]
    pub(crate) fn between_items(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        let Core { fencing, run } = this.core;
        let deadline = fencing.effective();
        let now = Instant::now();
        let passed = deadline.as_ref().is_some_and(|time| time.has_passed(now));
        run.record(fencing, deadline.as_deref(), passed);
        run.must_drop(fencing, this.timer, cx, deadline.as_deref(), Some(now))
    }

    /// The body completed: records what fired meanwhile, as far as the fence
    /// can tell without reading the clock (see [`Run::timer_sees_deadline`]),
    /// and releases everything.
    pub(crate) fn complete(self: Pin<&mut Self>) {
        let this = self.project();
        let Core { fencing, run } = this.core;
        let mut timer = this.timer;
        let deadline = run.deadline_seen(fencing, &timer);
        run.record(fencing, deadline.as_deref(), deadline.is_some());
        run.finish(fencing, timer.as_mut(), Phase::Completed);
    }

    /// A trigger fired while the body was pending, or before it started; the
    /// handle has dropped the body. Releases everything and builds the error.
    pub(crate) fn interrupt(self: Pin<&mut Self>) -> Cancelled {
        let this = self.project();
        let Core { fencing, run } = this.core;
        #[cfg(feature = "tracing")]
        for reason in run.reasons() {
            tracing::debug!(
                // The documented target, whichever module emits it.
                target: "fencing::fence",
                kind = ?reason.kind(),
                code = reason.code().map(Code::as_str),
                message = reason.message(),
                "fence cancelled"
            );
        }
        run.finish(fencing, this.timer, Phase::Interrupted);
        Cancelled::new(run.reasons().to_vec())
    }

    // --- The outcome, as every handle reports it. ---

    pub(crate) fn fencing(&self) -> &Fencing {
        &self.core.fencing
    }

    /// Whether a trigger that cancels has fired: recorded, or seen now.
    pub(crate) fn is_cancelled(&self) -> bool {
        !self.core.run.reasons().is_empty() || !self.unrecorded().is_empty()
    }

    /// Whether the fence dropped its body because a trigger fired.
    pub(crate) fn is_interrupted(&self) -> bool {
        self.core.run.phase == Phase::Interrupted
    }

    /// Whether the fence has finished, either way.
    #[cfg(feature = "stream")]
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.core.run.phase, Phase::Completed | Phase::Interrupted)
    }

    /// Whether the body has been polled and the fence is not done.
    #[cfg(feature = "stream")]
    pub(crate) fn is_running(&self) -> bool {
        matches!(self.core.run.phase, Phase::Running(_))
    }

    /// The reasons recorded, in firing order.
    #[cfg(feature = "stream")]
    pub(crate) fn recorded(&self) -> &[Reason] {
        self.core.run.reasons()
    }

    /// Every reason that has fired, in firing order: those recorded, then
    /// any that fired since the fence last looked.
    pub(crate) fn reasons(&self) -> Vec<Reason> {
        let mut reasons = self.core.run.reasons().to_vec();
        reasons.extend(self.unrecorded());
        reasons
    }

    /// Whether a trigger declared with `code` has fired.
    pub(crate) fn cancelled_by(&self, code: &Code) -> bool {
        let has = |reason: &Reason| reason.code() == Some(code);
        self.core.run.reasons().iter().any(has) || self.unrecorded().iter().any(has)
    }

    /// The reasons the policy declined, in firing order.
    pub(crate) fn declined(&self) -> &[Reason] {
        self.core.run.declined()
    }

    /// Whether the policy declined a reason with `code`.
    pub(crate) fn declined_by(&self, code: &Code) -> bool {
        self.declined().iter().any(|r| r.code() == Some(code))
    }

    /// How many faults the user code this fence ran has had.
    pub(crate) fn faults(&self) -> usize {
        self.core
            .run
            .cold
            .as_deref()
            .map_or(0, |cold| cold.faults as usize)
    }

    /// Reasons that have fired but are not recorded yet, in recording order,
    /// as the fence itself would see them at its next poll: the deadline
    /// from the clock before the first poll, through the timer after. None
    /// once the fence is done (what fires after it finished does not concern
    /// it), and none with a policy (peeking would consult it more than once
    /// per reason).
    fn unrecorded(&self) -> Vec<Reason> {
        let Core { fencing, run } = &self.core;
        if fencing.has_policy() {
            return Vec::new();
        }
        let (deadline, passed) = match run.phase {
            Phase::Fresh => {
                let deadline = fencing.effective();
                let passed = deadline
                    .as_ref()
                    .is_some_and(|time| time.has_passed(Instant::now()));
                (deadline, passed)
            }
            Phase::Running(_) => {
                let deadline = run.deadline_seen(fencing, &self.timer);
                let passed = deadline.is_some();
                (deadline, passed)
            }
            Phase::Completed | Phase::Interrupted => return Vec::new(),
        };
        run.scan(fencing, deadline.as_deref(), passed)
            .into_iter()
            .map(|(_, reason)| reason)
            .collect()
    }
}

impl Run {
    fn drop_at(&self) -> DropAt {
        match self.phase {
            Phase::Running(DropKind::NotYet)
            | Phase::Fresh
            | Phase::Completed
            | Phase::Interrupted => DropAt::NotYet,
            Phase::Running(DropKind::Now) => DropAt::Now,
            Phase::Running(DropKind::Never) => DropAt::Never,
            Phase::Running(DropKind::At) => {
                match self.cold.as_deref().and_then(|cold| cold.grace_end) {
                    Some(at) => DropAt::At(at),
                    None => unreachable!("`DropKind::At` keeps its instant in `Cold`"),
                }
            }
        }
    }

    fn set_drop_at(&mut self, drop_at: DropAt) {
        if let Some(at) = drop_at.grace_end() {
            self.cold_mut().grace_end = Some(at);
        }
        self.phase = Phase::Running(drop_at.kind());
    }

    /// How many slots the fence has: one per trigger, and the registry
    /// entry's.
    fn slot_count(&self, fencing: &Fencing) -> usize {
        fencing.triggers().len() + usize::from(self.entry().is_some())
    }

    fn is_recorded(&self, which: Which) -> bool {
        match which {
            Which::Deadline => self.deadline,
            Which::Trigger(i) => self.slots.get(i).is_some_and(Slot::recorded),
        }
    }

    fn mark(&mut self, which: Which, count: usize) {
        match which {
            Which::Deadline => self.deadline = true,
            Which::Trigger(i) => self.slots.get_mut(i, count).record(),
        }
    }

    fn scope(&self) -> Option<&Scope> {
        self.scope.as_deref()
    }

    /// Adds the faults reported on this thread since `mark`, while the
    /// fence ran user code.
    fn count_faults(&mut self, mark: u64) {
        let faults = fault::since(mark);
        if faults > 0 {
            let cold = self.cold_mut();
            cold.faults = cold.faults.saturating_add(faults);
        }
    }

    /// Registers on every slot not recorded yet (a future trigger is polled
    /// too).
    fn register(&mut self, fencing: &Fencing, cx: &mut Context<'_>) {
        let mark = fault::mark();
        let count = self.slot_count(fencing);
        self.registered = true;
        let Self { slots, cold, .. } = self;
        let entry = cold.as_deref().and_then(|cold| cold.entry.as_ref());
        let triggers = fencing
            .triggers()
            .iter()
            .chain(entry.map(Operation::trigger));
        slots.make_room(count);
        for (trigger, slot) in triggers.zip(slots.iter_mut()) {
            if !slot.recorded() {
                let _ = slot.with_key(|key| trigger.poll_fired(key, cx.waker()));
            }
        }
        self.count_faults(mark);
    }

    /// What has fired and is not recorded yet, in recording order: the
    /// deadline, if `deadline_passed`, then the other slots in order.
    ///
    /// A token may be cancelled between two reads of one pass: declared
    /// twice, it would be found under its second code only. So once a pass
    /// finds anything, it looks again until a pass finds nothing new, and
    /// then orders the finds by slot.
    fn scan(
        &self,
        fencing: &Fencing,
        deadline: Option<&TimeTrigger>,
        deadline_passed: bool,
    ) -> Vec<(Which, Reason)> {
        let mut found = Vec::new();
        if !self.any_fired(fencing, deadline, deadline_passed) {
            return found;
        }
        let entry = self.entry().map(Operation::trigger);
        if let Some(time) = deadline.filter(|_| deadline_passed && !self.deadline) {
            found.push((Which::Deadline, time.reason()));
        }
        let others = found.len();
        loop {
            let seen = found.len();
            for (i, trigger) in fencing.triggers().iter().chain(entry).enumerate() {
                let which = Which::Trigger(i);
                if self.slots.get(i).is_some_and(Slot::recorded)
                    || found[others..].iter().any(|(w, _)| *w == which)
                {
                    continue;
                }
                if let Some(reason) = trigger.fired() {
                    found.push((which, reason));
                }
            }
            if found.len() == seen {
                break;
            }
        }
        if found.len() > others + 1 {
            found[others..].sort_by_key(|(which, _)| match which {
                Which::Trigger(i) => *i,
                Which::Deadline => 0,
            });
        }
        found
    }

    /// Whether `scan` would find anything: the common case, nothing fired,
    /// in one pass of atomic loads and no allocation.
    fn any_fired(
        &self,
        fencing: &Fencing,
        deadline: Option<&TimeTrigger>,
        deadline_passed: bool,
    ) -> bool {
        if deadline.is_some() && deadline_passed && !self.deadline {
            return true;
        }
        let fired = |i: usize, trigger: &Trigger| {
            trigger.has_fired() && !self.slots.get(i).is_some_and(Slot::recorded)
        };
        let triggers = fencing.triggers();
        for (i, trigger) in triggers.iter().enumerate() {
            if fired(i, trigger) {
                return true;
            }
        }
        self.entry()
            .is_some_and(|entry| fired(triggers.len(), entry.trigger()))
    }

    /// Records what `scan` finds, each reason accepted or declined by the
    /// policy (invariant 1), the accepted ones with their grace periods
    /// (invariant 3) and shown in the registry. Returns `true` if it
    /// recorded any accepted reason.
    fn record(
        &mut self,
        fencing: &Fencing,
        deadline: Option<&TimeTrigger>,
        deadline_passed: bool,
    ) -> bool {
        if !self.any_fired(fencing, deadline, deadline_passed) {
            return false;
        }
        let found = self.scan(fencing, deadline, deadline_passed);
        let before = self.reasons().len();
        let mut now = None;
        let mark = fault::mark();
        for (which, reason) in found {
            // A trigger from a side of an `or` keeps that side's rules.
            let rules = match which {
                Which::Deadline => deadline.and_then(|time| time.label.rules().map(|r| &**r)),
                Which::Trigger(i) => fencing
                    .triggers()
                    .get(i)
                    .and_then(|trigger| trigger.label.rules().map(|r| &**r)),
            };
            // A policy that panics accepts the reason (a fault).
            let accepted = fencing.accepts(rules, &reason);
            let count = self.slot_count(fencing);
            self.mark(which, count);
            if !accepted {
                self.cold_mut().declined.push(reason);
                continue;
            }
            if let Phase::Running(_) = self.phase {
                let due = match fencing.grace_for_reason(rules, &reason) {
                    None => DropAt::Now,
                    // A grace period that overflows the clock means "never".
                    Some(grace) => deadline_after(*now.get_or_insert_with(Instant::now), grace)
                        .map_or(DropAt::Never, DropAt::At),
                };
                self.set_drop_at(self.drop_at().earlier(due));
            }
            let cold = self.cold_mut();
            if let Some(entry) = &cold.entry {
                entry.recorded(&reason);
            }
            cold.reasons.push(reason);
        }
        self.count_faults(mark);
        self.reasons().len() > before
    }

    /// Sets the one timer for the earlier of the deadline (until it fired)
    /// and the end of the grace period, and polls it: what has passed. With
    /// `clock`, the time read from tokio's clock, an instant up to it counts
    /// as passed even if the timer has not seen it yet.
    fn poll_timer(
        &mut self,
        mut timer: Pin<&mut Timer>,
        cx: &mut Context<'_>,
        deadline: Option<&TimeTrigger>,
        clock: Option<Instant>,
    ) -> Passed {
        let watched = deadline.filter(|_| !self.is_recorded(Which::Deadline));
        // What to set the timer for: a relative timeout of up to thirty
        // years ends within thirty years of now, with no need to read the
        // clock to keep the timer that close (`timer_deadline`).
        let set_for = |at: Instant| match watched {
            Some(time) if time.at == at && time.is_near() => at,
            _ => timer_deadline(at, Instant::now()),
        };
        let deadline = watched.map(|time| time.at);
        let grace_end = self.drop_at().grace_end();
        let target = match (deadline, grace_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (target, timer.as_mut().project()) {
            (None, TimerProj::Idle) => {}
            // A handle removed the deadline. (Once it fired, the spent timer
            // stays until the fence finishes.)
            (None, TimerProj::Armed { .. }) => {
                if !self.is_recorded(Which::Deadline) {
                    timer.set(Timer::Idle);
                }
            }
            (Some(at), TimerProj::Idle) => {
                let set = set_for(at);
                timer.set(Timer::Armed {
                    sleep: tokio::time::sleep_until(set),
                    short: set < at,
                    count: TimerCount::new(),
                });
            }
            // A handle moved the deadline, the deadline fired, or a grace
            // period started or shortened: the timer no longer watches `at`
            // (a short one watches whatever lies beyond it).
            (
                Some(at),
                TimerProj::Armed {
                    mut sleep, short, ..
                },
            ) if if *short {
                at <= sleep.deadline()
            } else {
                at != sleep.deadline()
            } =>
            {
                let set = set_for(at);
                sleep.as_mut().reset(set);
                *short = set < at;
            }
            (Some(_), TimerProj::Armed { .. }) => {}
        }
        let (Some(target), TimerProj::Armed { sleep, short, .. }) = (target, timer.project())
        else {
            return Passed::default();
        };
        if !poll_until(sleep, short, target, cx) && !clock.is_some_and(|now| target <= now) {
            return Passed::default();
        }
        Passed {
            deadline: deadline.is_some_and(|at| at <= target),
            grace: grace_end.is_some_and(|at| at <= target),
        }
    }

    /// Whether the pending body must be dropped now: a reason was accepted,
    /// the earliest grace period among the reasons (if any) is over, and no
    /// protection guard is alive in the body. Otherwise the fence is woken
    /// when that changes. `clock` as for `poll_timer`.
    fn must_drop(
        &mut self,
        fencing: &Fencing,
        mut timer: Pin<&mut Timer>,
        cx: &mut Context<'_>,
        deadline: Option<&TimeTrigger>,
        clock: Option<Instant>,
    ) -> bool {
        loop {
            match self.drop_at() {
                DropAt::NotYet => return false,
                DropAt::Now => break,
                DropAt::At(_) | DropAt::Never => {
                    let passed = self.poll_timer(timer.as_mut(), cx, deadline, clock);
                    if passed.deadline {
                        // The deadline fired during the grace period: a
                        // reason of its own, with its own grace period.
                        self.record(fencing, deadline, true);
                        continue;
                    }
                    if !passed.grace {
                        return false;
                    }
                    break;
                }
            }
        }
        !self
            .scope()
            .is_some_and(|scope| scope.is_protected(cx.waker()))
    }

    /// The effective deadline, if it has passed as the fence's timer sees
    /// it. With no timer armed, the body completed within its first poll,
    /// before the deadline as read then; with the timer set for the end of a
    /// grace period before the deadline, or for a deadline a handle has moved
    /// since, it does not watch the deadline. Either way: not passed. (The
    /// deadline is only computed when the timer has fired.)
    fn deadline_seen<'a>(
        &self,
        fencing: &'a Fencing,
        timer: &Timer,
    ) -> Option<Cow<'a, TimeTrigger>> {
        let Timer::Armed { sleep, short, .. } = timer else {
            return None;
        };
        if self.is_recorded(Which::Deadline) || !sleep.is_elapsed() || *short {
            return None;
        }
        fencing
            .effective()
            .filter(|time| time.at == sleep.deadline())
    }

    /// Leaves `Running` for `phase`, releasing everything (invariant 5).
    fn finish(&mut self, fencing: &Fencing, mut timer: Pin<&mut Timer>, phase: Phase) {
        self.phase = phase;
        self.release(fencing);
        // Leaves the registry, whatever the outcome.
        if let Some(cold) = &mut self.cold {
            cold.entry = None;
        }
        if let TimerProj::Armed { .. } = timer.as_mut().project() {
            timer.set(Timer::Idle);
        }
    }

    /// Releases every waiter registration.
    fn release(&mut self, fencing: &Fencing) {
        if !std::mem::take(&mut self.registered) {
            return;
        }
        let Self { slots, cold, .. } = self;
        let entry = cold.as_deref().and_then(|cold| cold.entry.as_ref());
        let triggers = fencing
            .triggers()
            .iter()
            .chain(entry.map(Operation::trigger));
        // A slot there is no room for was never registered.
        for (trigger, slot) in triggers.zip(slots.iter_mut()) {
            if slot.is_registered() {
                slot.with_key(|key| trigger.deregister(key));
            }
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // Only a running fence holds registrations (`finish` released those
        // of a done one).
        if let Phase::Running(_) = self.run.phase {
            self.run.release(&self.fencing);
        }
    }
}

/// Polls the fence's timer, which watches `at`; `true` once `at` has
/// passed. The timer is set at most thirty years ahead (see
/// `timer_deadline`): when it expires `short` of `at`, it is set again, so a
/// far deadline fires when the clock reaches it, never early.
fn poll_until(
    mut sleep: Pin<&mut Sleep>,
    short: &mut bool,
    at: Instant,
    cx: &mut Context<'_>,
) -> bool {
    loop {
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        // Set for `at` itself: tokio fires it at `at` or just after.
        if !*short {
            return true;
        }
        let now = Instant::now();
        if at <= now {
            return true;
        }
        let set = timer_deadline(at, now);
        sleep.as_mut().reset(set);
        *short = set < at;
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let run = &self.core.run;
        f.debug_struct("Engine")
            .field("fencing", &self.core.fencing)
            .field("phase", &run.phase)
            .field("reasons", &run.reasons())
            .finish_non_exhaustive()
    }
}
