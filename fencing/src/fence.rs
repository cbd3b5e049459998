//! The fence: one armed use of a [`Fencing`] around one future.

use crate::context;
use crate::declaration::Fencing;
use crate::error::Cancelled;
use crate::protect::{self, Scope};
use crate::reason::{Code, Reason};
use crate::registry::Operation;
use crate::time::{deadline_after, timer_deadline};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};

#[cfg(feature = "stream")]
mod stream;
#[cfg(feature = "stream")]
pub use stream::FencedStream;

pin_project! {
    /// A future running a body inside a fence. Created by
    /// [`Fencing::run`].
    ///
    /// Resolves to `Ok(output)` if the body completes, or to
    /// `Err(`[`Cancelled`]`)` with every reason that fired if a trigger
    /// fires first. The fence follows these rules:
    ///
    /// - **Inspect before await.** An unpolled fence already answers
    ///   [`is_cancelled`](Self::is_cancelled): `true` if a token is
    ///   cancelled or the deadline has passed.
    /// - **Pre-fired bodies never start.** If a trigger has fired before the
    ///   first poll, the body is dropped without being polled.
    /// - **Completion wins ties.** On every later poll the body is polled
    ///   first; a body that is ready returns its value even if a trigger
    ///   fired, and the fence still records that trigger (see
    ///   [`reasons`](Self::reasons)).
    /// - **Hard cancel is drop.** When a trigger has fired and the body is
    ///   pending, the body is dropped within that poll (its destructors run
    ///   before `poll` returns) and every reason that fired is returned.
    /// - **Nothing leaks.** Whether the fence completes, cancels, or is
    ///   dropped, every timer and waiter registration is released. At most one
    ///   timer is registered, and only once the body has returned pending.
    /// - **Panics pass through.** A panicking body propagates its panic
    ///   unchanged; nothing stays registered and nothing is poisoned.
    ///
    /// # Reading the outcome
    ///
    /// `.await` consumes the fence. To read what fired after a body
    /// completed anyway, pin the fence and await it by reference:
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let token = Token::new();
    /// let fenced = Fencing::new().token(&token).code("stop").run(async {
    ///     tokio::task::yield_now().await;
    ///     token.cancel(); // fires while the body is running...
    ///     "finished"      // ...but the body is ready first
    /// });
    /// let mut fenced = std::pin::pin!(fenced);
    ///
    /// assert_eq!((&mut fenced).await.unwrap(), "finished");
    /// assert!(fenced.is_cancelled(), "a trigger fired");
    /// assert!(!fenced.is_interrupted(), "but the body was not dropped");
    /// assert!(fenced.cancelled_by("stop"));
    /// # }
    /// ```
    ///
    /// # Fairness
    ///
    /// The body is polled before the triggers, as in
    /// [`tokio::time::timeout`]. Time is read from tokio's clock once, when
    /// the fence is first polled; after that the deadline is seen through
    /// the timer registered for it, so a body that completes within its first
    /// poll is never reported late. Triggers that are found fired in the
    /// same poll are recorded in a fixed order: the deadline first, then the
    /// other triggers in the order they were declared.
    ///
    /// # Cancel safety
    ///
    /// Dropping a `Fenced` drops its body and releases every registration;
    /// it is exactly as cancel safe as the body.
    ///
    /// # Panics
    ///
    /// Polling panics if the fence has a deadline, the body returns pending,
    /// and no tokio runtime with the time driver is running (as
    /// [`tokio::time::sleep`] does); and if polled again after it completed.
    /// The timer is set on the runtime of the poll that first needs it: a
    /// fence polled on another runtime after that one was shut down panics
    /// too (tokio: "… it is being shutdown"), as a moved `Sleep` would.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Fenced<F> {
        #[pin]
        body: Body<F>,
        #[pin]
        timer: Timer,
        armed: Armed,
    }
}

pin_project! {
    #[project = BodyProj]
    enum Body<F> {
        Live { #[pin] future: F },
        Gone,
    }
}

pin_project! {
    #[project = TimerProj]
    enum Timer {
        Idle,
        Armed { #[pin] sleep: Sleep },
    }
}

/// The non-generic part of a fence: what it armed and what it recorded.
struct Armed {
    fencing: Fencing,
    state: State,
    /// One per trigger of `fencing`; the first is inline, so a fence with one
    /// token or future allocates nothing, even on the pending path.
    slots: Slots,
    deadline_fired: bool,
    interrupted: bool,
    /// Created by the first protection guard taken in the body.
    scope: Option<Arc<Scope>>,
    /// When the body is to be dropped, over the reasons recorded so far.
    drop_at: DropAt,
    /// How many of `reasons` are counted in `drop_at`.
    graced: usize,
    /// What the timer is armed for: the earlier of the deadline (until it
    /// fired) and the end of the grace period.
    timer_at: Option<Instant>,
    /// Counts the armed timer in the live counts (`test-util`).
    timer_count: Option<TimerCount>,
    /// The fence's entry in a registry, while it runs.
    op: Option<Box<Operation>>,
    /// In firing order.
    reasons: Vec<Reason>,
    /// Reasons the policy declined, in firing order; boxed, as only fences
    /// with a policy need it (a small fence makes a small task).
    #[allow(clippy::box_collection)]
    declined: Option<Box<Vec<Reason>>>,
}

/// Present while the fence's timer is armed: counts it in the live counts.
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
}

/// What the fence's timer found passed: the deadline, the end of the grace
/// period, both or neither.
#[derive(Clone, Copy, Default)]
struct Passed {
    deadline: bool,
    grace: bool,
}

#[derive(Default)]
struct Slot {
    key: Option<usize>,
    fired: bool,
}

/// Per-trigger state: the first slot inline, the others on the heap.
#[derive(Default)]
struct Slots {
    first: Slot,
    rest: Vec<Slot>,
}

impl Slots {
    fn get(&self, i: usize) -> Option<&Slot> {
        match i {
            0 => Some(&self.first),
            _ => self.rest.get(i - 1),
        }
    }

    /// The slot of trigger `i`, making room for it (and those before it).
    fn get_mut(&mut self, i: usize) -> &mut Slot {
        if i == 0 {
            return &mut self.first;
        }
        if self.rest.len() < i {
            self.rest.resize_with(i, Slot::default);
        }
        &mut self.rest[i - 1]
    }

    fn is_fired(&self, i: usize) -> bool {
        self.get(i).is_some_and(|slot| slot.fired)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Fresh,
    Running,
    Done,
}

impl<F: Future> Fenced<F> {
    pub(crate) fn new(fencing: Fencing, body: F) -> Self {
        Self {
            body: Body::Live { future: body },
            timer: Timer::Idle,
            armed: Armed::new(fencing),
        }
    }
}

impl<F> Fenced<F> {
    /// Returns `true` if a trigger has fired: before the fence is polled,
    /// whether one has fired already (the body would not start); after it
    /// finished, whether one fired before it did, even if the body completed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let token = Token::new();
    /// token.cancel();
    /// let fenced = Fencing::new().token(&token).run(async { 1 });
    /// assert!(fenced.is_cancelled(), "known before the first poll");
    /// assert!(fenced.await.is_err(), "and the body never starts");
    /// # }
    /// ```
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.armed.is_cancelled(&self.timer)
    }

    /// Returns `true` if the fence dropped its body because a trigger fired,
    /// that is, if it resolved to `Err`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let mut fenced = std::pin::pin!(Fencing::new()
    ///     .timeout(Duration::from_secs(1))
    ///     .run(tokio::time::sleep(Duration::from_secs(2))));
    /// assert!(!fenced.is_interrupted());
    /// assert!((&mut fenced).await.is_err());
    /// assert!(fenced.is_interrupted());
    /// # }
    /// ```
    #[must_use]
    pub fn is_interrupted(&self) -> bool {
        self.armed.interrupted
    }

    /// Every reason that has fired, in firing order: those the fence has
    /// recorded, then any that fired since it last looked.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    ///
    /// let token = Token::new();
    /// let fenced = Fencing::new().token(&token).code("shutdown").run(async {});
    /// assert!(fenced.reasons().is_empty());
    /// token.cancel_with("SIGTERM");
    /// assert_eq!(fenced.reasons()[0].message(), "SIGTERM");
    /// ```
    #[must_use]
    pub fn reasons(&self) -> Vec<Reason> {
        self.armed.all_reasons(&self.timer)
    }

    /// Returns `true` if a trigger declared with `code` has fired.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    ///
    /// let token = Token::new();
    /// let fenced = Fencing::new().token(&token).code("shutdown").run(async {});
    /// token.cancel();
    /// assert!(fenced.cancelled_by("shutdown"));
    /// ```
    #[must_use]
    pub fn cancelled_by(&self, code: impl Into<Code>) -> bool {
        let code = code.into();
        self.armed
            .all_reasons(&self.timer)
            .iter()
            .any(|r| r.code() == Some(&code))
    }

    /// The reasons the `Fencing`'s [policy](Fencing::policy) declined, in
    /// firing order: they fired, but did not cancel.
    ///
    /// # Examples
    ///
    /// See [`Fencing::policy`].
    #[must_use]
    pub fn declined(&self) -> &[Reason] {
        self.armed.declined.as_deref().map_or(&[], Vec::as_slice)
    }

    /// Returns `true` if the policy declined a reason with `code`.
    ///
    /// # Examples
    ///
    /// See [`Fencing::policy`].
    #[must_use]
    pub fn declined_by(&self, code: impl Into<Code>) -> bool {
        let code = code.into();
        self.declined().iter().any(|r| r.code() == Some(&code))
    }

    /// The `Fencing` this fence armed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    ///
    /// let fenced = Fencing::new().run(async {});
    /// assert_eq!(fenced.fencing().effective_deadline(), None);
    /// ```
    #[must_use]
    pub fn fencing(&self) -> &Fencing {
        &self.armed.fencing
    }

    /// The body, unless the fence dropped it.
    ///
    /// # Examples
    ///
    /// ```
    /// let fenced = fencing::Fencing::new().run(std::future::ready(7));
    /// assert!(fenced.get_ref().is_some());
    /// ```
    #[must_use]
    pub fn get_ref(&self) -> Option<&F> {
        match &self.body {
            Body::Live { future } => Some(future),
            Body::Gone => None,
        }
    }

    /// The body, mutably, unless the fence dropped it.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut fenced = fencing::Fencing::new().run(std::future::ready(7));
    /// assert!(fenced.get_mut().is_some());
    /// ```
    pub fn get_mut(&mut self) -> Option<&mut F> {
        match &mut self.body {
            Body::Live { future } => Some(future),
            Body::Gone => None,
        }
    }

    /// Disarms the fence and returns the body, unless the fence dropped it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let fenced = fencing::Fencing::new().run(async { 7 });
    /// let body = fenced.into_inner().unwrap();
    /// assert_eq!(body.await, 7);
    /// # }
    /// ```
    pub fn into_inner(self) -> Option<F> {
        match self.body {
            Body::Live { future } => Some(future),
            Body::Gone => None,
        }
    }
}

impl<F: Future> Future for Fenced<F> {
    type Output = Result<F::Output, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if this.armed.start() {
            this.body.set(Body::Gone);
            return Poll::Ready(Err(this.armed.interrupt(this.timer)));
        }
        let BodyProj::Live { future } = this.body.as_mut().project() else {
            unreachable!("a fence whose body is gone is done");
        };
        // The body runs with the fence's `Fencing` as its context.
        let armed = &mut *this.armed;
        let polled = protect::enter(&mut armed.scope, || {
            context::enter(&mut armed.fencing, || future.poll(cx))
        });
        if let Poll::Ready(output) = polled {
            this.armed.complete(this.timer);
            return Poll::Ready(Ok(output));
        }
        this.armed.poll_triggers(cx, this.timer.as_mut(), None);
        if this.armed.must_drop(cx, this.timer.as_mut(), None) {
            // Dropped here, inside this poll, before any reason is returned.
            this.body.set(Body::Gone);
            return Poll::Ready(Err(this.armed.interrupt(this.timer)));
        }
        Poll::Pending
    }
}

impl Armed {
    fn new(fencing: Fencing) -> Self {
        Self {
            fencing,
            state: State::Fresh,
            slots: Slots::default(),
            deadline_fired: false,
            interrupted: false,
            scope: None,
            drop_at: DropAt::NotYet,
            graced: 0,
            timer_at: None,
            timer_count: None,
            op: None,
            reasons: Vec::new(),
            declined: None,
        }
    }

    /// Between two items of a fenced stream: records what fired and
    /// returns whether the stream must be dropped now, as `must_drop` does
    /// for a pending body, protection guards and grace periods included.
    /// Time is read from the clock: a stream that is always ready never lets
    /// the runtime turn its timer driver, so its timer may lag behind.
    #[cfg(feature = "stream")]
    fn between_items(&mut self, cx: &mut Context<'_>, timer: Pin<&mut Timer>) -> bool {
        let now = Instant::now();
        let passed =
            !self.deadline_fired && self.fencing.time().is_some_and(|time| time.has_passed(now));
        self.record(passed);
        self.must_drop(cx, timer, Some(now))
    }

    /// Moves a fresh fence to running. Returns `true` if a trigger had fired
    /// before the body was ever polled.
    fn start(&mut self) -> bool {
        match self.state {
            State::Running => false,
            State::Fresh => {
                self.state = State::Running;
                if let Some((registry, name)) = self.fencing.registration() {
                    let deadline = self.fencing.time().map(|time| time.at);
                    self.op = Some(Box::new(registry.enter(name, deadline)));
                }
                // A future trigger has fired only once it has been seen to
                // complete: give each one poll before the body's first.
                for trigger in self.fencing.triggers() {
                    trigger.drive();
                }
                let passed = self
                    .fencing
                    .time()
                    .is_some_and(|time| time.has_passed(Instant::now()));
                self.record(passed)
            }
            State::Done => panic!("`Fenced` polled after completion"),
        }
    }

    /// Arms every trigger not armed yet (the timer included) and records
    /// those that fired. With `clock`, the time read from tokio's clock, a
    /// deadline or grace end up to it counts as passed even if the timer has
    /// not seen it yet (a stream that is always ready never lets the driver
    /// run).
    fn poll_triggers(
        &mut self,
        cx: &mut Context<'_>,
        timer: Pin<&mut Timer>,
        clock: Option<Instant>,
    ) {
        if let Some(op) = &mut self.op {
            op.poll_fired(cx.waker());
        }
        for (i, trigger) in self.fencing.triggers().iter().enumerate() {
            let slot = self.slots.get_mut(i);
            if !slot.fired {
                let _ = trigger.poll_fired(&mut slot.key, cx.waker());
            }
        }
        let passed = self.poll_timer(cx, timer, clock);
        self.record(passed.deadline);
    }

    /// Sets the one timer for the earlier of the deadline (until it fired)
    /// and the end of the grace period, and polls it: what has passed.
    fn poll_timer(
        &mut self,
        cx: &mut Context<'_>,
        mut timer: Pin<&mut Timer>,
        clock: Option<Instant>,
    ) -> Passed {
        let deadline = if self.deadline_fired {
            None
        } else {
            self.fencing.time().map(|time| time.at)
        };
        let grace_end = self.drop_at.grace_end();
        let target = match (deadline, grace_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (target, timer.as_mut().project()) {
            (None, TimerProj::Idle) => {}
            // A handle removed the deadline. (Once it fired, the spent timer
            // stays until the fence finishes.)
            (None, TimerProj::Armed { .. }) => {
                if !self.deadline_fired {
                    timer.set(Timer::Idle);
                    self.timer_count = None;
                }
            }
            (Some(at), TimerProj::Idle) => {
                timer.set(Timer::Armed {
                    sleep: tokio::time::sleep_until(timer_deadline(at, Instant::now())),
                });
                self.timer_count = Some(TimerCount::new());
            }
            // A handle moved the deadline, the deadline fired, or a grace
            // period started or shortened.
            (Some(at), TimerProj::Armed { sleep }) if self.timer_at != Some(at) => {
                sleep.reset(timer_deadline(at, Instant::now()));
            }
            (Some(_), TimerProj::Armed { .. }) => {}
        }
        self.timer_at = target;
        let (Some(target), TimerProj::Armed { sleep }) = (target, timer.project()) else {
            return Passed::default();
        };
        if !poll_until(sleep, target, cx) && !clock.is_some_and(|now| target <= now) {
            return Passed::default();
        }
        Passed {
            deadline: deadline.is_some_and(|at| at <= target),
            grace: grace_end.is_some_and(|at| at <= target),
        }
    }

    /// Counts the reasons recorded since the last call in `drop_at`, each
    /// with its grace period from now.
    fn start_grace(&mut self) {
        if self.graced == self.reasons.len() {
            return;
        }
        let mut now = None;
        for reason in &self.reasons[self.graced..] {
            let due = match self.fencing.grace_for_reason(reason) {
                None => DropAt::Now,
                // A grace period that overflows the clock means "never".
                Some(grace) => deadline_after(*now.get_or_insert_with(Instant::now), grace)
                    .map_or(DropAt::Never, DropAt::At),
            };
            self.drop_at = self.drop_at.earlier(due);
        }
        self.graced = self.reasons.len();
    }

    /// Whether the pending body must be dropped now: a trigger has fired,
    /// the earliest grace period among the reasons (if any) is over, and no
    /// protection guard is alive in the body. Otherwise the fence is woken
    /// when that changes. `clock` as for `poll_triggers`.
    fn must_drop(
        &mut self,
        cx: &mut Context<'_>,
        mut timer: Pin<&mut Timer>,
        clock: Option<Instant>,
    ) -> bool {
        loop {
            self.start_grace();
            match self.drop_at {
                DropAt::NotYet => return false,
                DropAt::Now => break,
                DropAt::At(_) | DropAt::Never => {
                    let passed = self.poll_timer(cx, timer.as_mut(), clock);
                    if passed.deadline {
                        // The deadline fired during the grace period: a
                        // reason of its own, with its own grace period.
                        self.record(true);
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
            .scope
            .as_ref()
            .is_some_and(|scope| scope.is_protected(cx.waker()))
    }

    /// The body completed: record what fired meanwhile (as far as the fence
    /// can tell without reading the clock) and release everything.
    fn complete(&mut self, timer: Pin<&mut Timer>) {
        let elapsed = self.timer_elapsed(timer.as_ref().get_ref());
        self.record(elapsed);
        self.finish(timer);
    }

    /// A trigger fired while the body was pending, or before it started; the
    /// body has been dropped. Releases everything and builds the error.
    fn interrupt(&mut self, timer: Pin<&mut Timer>) -> Cancelled {
        self.interrupted = true;
        #[cfg(feature = "tracing")]
        for reason in &self.reasons {
            tracing::debug!(
                kind = ?reason.kind(),
                code = reason.code().map(Code::as_str),
                message = reason.message(),
                "fence cancelled"
            );
        }
        self.finish(timer);
        Cancelled::new(self.reasons.clone())
    }

    fn finish(&mut self, mut timer: Pin<&mut Timer>) {
        self.state = State::Done;
        self.release();
        // Leaves the registry, whatever the outcome.
        self.op = None;
        if let TimerProj::Armed { .. } = timer.as_mut().project() {
            timer.set(Timer::Idle);
            self.timer_count = None;
        }
    }

    fn release(&mut self) {
        for (i, trigger) in self.fencing.triggers().iter().enumerate() {
            if self.slots.get(i).is_some_and(|slot| slot.key.is_some()) {
                trigger.deregister(&mut self.slots.get_mut(i).key);
            }
        }
    }

    /// Whether the deadline has passed as the fence's timer sees it. With no
    /// timer armed, the body completed within its first poll, before the
    /// deadline as read then; with the timer set for the end of a grace
    /// period before the deadline, it does not watch the deadline. Either
    /// way: not passed.
    fn timer_elapsed(&self, timer: &Timer) -> bool {
        match timer {
            Timer::Armed { sleep } => {
                sleep.is_elapsed()
                    // Not if a handle moved the deadline since it was armed,
                    // nor if the timer was set short of a far deadline.
                    && self.timer_at.is_some_and(|at| {
                        sleep.deadline() >= at && self.fencing.time().map(|time| time.at) == Some(at)
                    })
            }
            Timer::Idle => false,
        }
    }

    /// Appends to `reasons`, in the documented order, every trigger that has
    /// fired and is not recorded yet; `deadline_passed` says whether the
    /// deadline counts as passed. Returns `true` if it recorded any.
    fn record(&mut self, deadline_passed: bool) -> bool {
        let before = self.reasons.len();
        if deadline_passed && !self.deadline_fired {
            if let Some(time) = self.fencing.time() {
                let reason = time.reason();
                let accepted = self.fencing.accepts(&reason);
                self.deadline_fired = true;
                keep(&mut self.reasons, &mut self.declined, reason, accepted);
            }
        }
        // A token may be cancelled between two reads of this pass: declared
        // twice, it would be found under its second code only. Once a pass
        // finds anything, look again until a pass finds nothing new, then
        // record in declaration order.
        let triggers = self.fencing.triggers();
        let mut found: Vec<(usize, Reason)> = Vec::new();
        loop {
            let seen = found.len();
            for (i, trigger) in triggers.iter().enumerate() {
                if self.slots.is_fired(i) || found.iter().any(|(j, _)| *j == i) {
                    continue;
                }
                if let Some(reason) = trigger.fired() {
                    found.push((i, reason));
                }
            }
            if found.len() == seen {
                break;
            }
        }
        found.sort_by_key(|(i, _)| *i);
        for (i, reason) in found {
            // Consulted before the trigger is marked: a policy that panics
            // leaves it unrecorded.
            let accepted = self.fencing.accepts(&reason);
            self.slots.get_mut(i).fired = true;
            keep(&mut self.reasons, &mut self.declined, reason, accepted);
        }
        if let Some(reason) = self.op.as_mut().and_then(|op| op.take_fired()) {
            let accepted = self.fencing.accepts(&reason);
            keep(&mut self.reasons, &mut self.declined, reason, accepted);
        }
        if let Some(op) = &self.op {
            for reason in &self.reasons[before..] {
                op.recorded(reason);
            }
        }
        self.reasons.len() > before
    }

    /// Whether a trigger has fired: recorded, or seen now (see `unrecorded`).
    fn is_cancelled(&self, timer: &Timer) -> bool {
        !self.reasons.is_empty() || self.unrecorded(timer).next().is_some()
    }

    /// Every reason that has fired, recorded or seen now, in firing order.
    fn all_reasons(&self, timer: &Timer) -> Vec<Reason> {
        let mut reasons = self.reasons.clone();
        reasons.extend(self.unrecorded(timer));
        reasons
    }

    /// Reasons that have fired but are not recorded yet, in recording order.
    /// The deadline is seen as the fence itself would see it at its next
    /// poll: from the clock before the first poll, through its timer after.
    /// Empty once the fence is done: what fired after it finished does not
    /// concern it.
    fn unrecorded<'a>(&'a self, timer: &'a Timer) -> impl Iterator<Item = Reason> + 'a {
        // With a policy, only what the fence recorded counts: peeking would
        // consult the policy more than once per reason.
        let live = self.state != State::Done && !self.fencing.has_policy();
        let passed = |time: &crate::trigger::TimeTrigger| match self.state {
            State::Fresh => time.has_passed(Instant::now()),
            State::Running => self.timer_elapsed(timer),
            State::Done => false,
        };
        let deadline = self
            .fencing
            .time()
            .filter(|time| live && !self.deadline_fired && passed(time))
            .map(|time| time.reason());
        let others = self
            .fencing
            .triggers()
            .iter()
            .enumerate()
            .filter(move |(i, _)| live && !self.slots.is_fired(*i))
            .filter_map(|(_, trigger)| trigger.fired());
        let registry = self
            .op
            .iter()
            .filter(move |_| live)
            .filter_map(|op| op.peek());
        deadline.into_iter().chain(others).chain(registry)
    }
}

/// Polls the fence's timer for `at`; `true` once `at` has passed. The timer
/// is set at most thirty years ahead (see `timer_deadline`): when it expires
/// short of `at`, it is set again, so a far deadline fires when the clock
/// reaches it, never early.
fn poll_until(mut sleep: Pin<&mut Sleep>, at: Instant, cx: &mut Context<'_>) -> bool {
    loop {
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        // Set for `at` itself: tokio fires it at `at` or just after.
        if sleep.deadline() >= at {
            return true;
        }
        let now = Instant::now();
        if at <= now {
            return true;
        }
        sleep.as_mut().reset(timer_deadline(at, now));
    }
}

/// Files a fired reason: with the cancellations, or with the declined.
#[allow(clippy::box_collection)] // see `Armed::declined`
fn keep(
    reasons: &mut Vec<Reason>,
    declined: &mut Option<Box<Vec<Reason>>>,
    reason: Reason,
    accepted: bool,
) {
    if accepted {
        reasons.push(reason);
    } else {
        declined.get_or_insert_with(Box::default).push(reason);
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.release();
    }
}

impl<F> fmt::Debug for Fenced<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fenced")
            .field("fencing", &self.armed.fencing)
            .field("state", &self.armed.state)
            .field("reasons", &self.armed.reasons)
            .field("interrupted", &self.armed.interrupted)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The future returned by [`Fencing::cancelled`]: resolves with what
    /// fired once any trigger of the `Fencing` fires.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct WaitForFencing {
        #[pin]
        fence: Fenced<std::future::Pending<std::convert::Infallible>>,
    }
}

impl WaitForFencing {
    pub(crate) fn new(fencing: Fencing) -> Self {
        Self {
            fence: Fenced::new(fencing, std::future::pending()),
        }
    }
}

impl Future for WaitForFencing {
    type Output = Cancelled;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Cancelled> {
        match self.project().fence.poll(cx) {
            Poll::Ready(Err(cancelled)) => Poll::Ready(cancelled),
            Poll::Ready(Ok(never)) => match never {},
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fmt::Debug for WaitForFencing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForFencing")
            .field("fencing", self.fence.fencing())
            .finish()
    }
}
