//! The [`Fencing`] builder: every public method of `Fencing`, each a short
//! delegation to the constructor of its trigger (`trigger/`), to the fence
//! (`fence/`) or to the context. The data it builds is in `declaration.rs`.

use crate::context::{self, BoundFuture};
use crate::declaration::{Extra, Fencing, Last};
use crate::error::Cancelled;
#[cfg(feature = "stream")]
use crate::fence::FencedStream;
use crate::fence::{Fenced, WaitForFencingFuture};
use crate::handle::FenceHandle;
use crate::reason::{Code, Message, Reason};
use crate::registry::Registry;
use crate::token::Token;
#[cfg(feature = "signal")]
use crate::trigger::OsSignal;
use crate::trigger::{
    self, BoxFuture, Label, OnError, Policy, Rules, Source, TimeTrigger, Trigger, Triggers, Verdict,
};
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

impl Fencing {
    /// An empty `Fencing`: no triggers, never fires.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let value = fencing::Fencing::new().run(async { 42 }).await.unwrap();
    /// assert_eq!(value, 42);
    /// # }
    /// ```
    #[must_use]
    #[inline]
    pub const fn new() -> Self {
        Self::empty()
    }

    /// Adds a relative timeout, anchored now: it fires `after` from the
    /// moment of this call, whenever the fence starts.
    ///
    /// `Duration::ZERO` has fired already. A duration that overflows the
    /// clock adds no deadline. Its reason is a
    /// [`Timeout`](crate::ReasonKind::Timeout) with the message
    /// `"timed out after {after:?}"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let fencing = Fencing::new().timeout(Duration::from_secs(5)).code("db");
    /// assert!(fencing.effective_deadline().is_some());
    ///
    /// let never = Fencing::new().timeout(Duration::MAX);
    /// assert_eq!(never.effective_deadline(), None, "an overflowing timeout is no deadline");
    /// # }
    /// ```
    #[must_use]
    #[inline]
    pub fn timeout(self, after: Duration) -> Self {
        self.merge_time(TimeTrigger::timeout(after))
    }

    /// Adds an absolute deadline on tokio's clock.
    ///
    /// A deadline in the past has fired already. Its reason is a
    /// [`Deadline`](crate::ReasonKind::Deadline) with the message
    /// `"deadline exceeded"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let at = Instant::now() + Duration::from_secs(2);
    /// let fencing = Fencing::new()
    ///     .timeout(Duration::from_secs(5))
    ///     .code("budget")
    ///     .deadline(at)
    ///     .code("slo");
    /// assert_eq!(fencing.effective_deadline(), Some(at), "the tightest time wins");
    /// # }
    /// ```
    #[must_use]
    #[inline]
    pub fn deadline(self, at: Instant) -> Self {
        self.merge_time(Some(TimeTrigger::deadline(at)))
    }

    /// Tightest time wins: `time` replaces the deadline if it is strictly
    /// earlier; an equal or later one, or none (an overflow), is dropped
    /// with the `code` that may follow it.
    #[inline]
    fn merge_time(mut self, time: Option<TimeTrigger>) -> Self {
        self.last = Last::Nothing;
        let Some(time) = time else { return self };
        if self
            .deadline
            .as_ref()
            .map_or(true, |current| time.at < current.at)
        {
            self.deadline = Some(time);
            self.last = Last::Time;
        }
        self
    }

    /// Adds a token: the fence fires when the token (or an ancestor of it)
    /// is cancelled, with the token's message.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let token = Token::new();
    /// let fencing = Fencing::new().token(&token).code("user").token(&token).code("admin");
    /// token.cancel_with("stop");
    ///
    /// let err = fencing.run(std::future::pending::<()>()).await.unwrap_err();
    /// assert!(err.cancelled_by("user") && err.cancelled_by("admin"));
    /// # }
    /// ```
    #[must_use]
    #[inline]
    pub fn token(self, token: &Token) -> Self {
        self.push(trigger::token(token))
    }

    /// Adds any future as a trigger: the fence fires when it completes, for
    /// example when a channel closes or a client goes away. Its output is
    /// discarded; the reason's message is `"trigger future completed"`
    /// ([`future_with`](Self::future_with) gives one of your own).
    ///
    /// The future is shared by every fence run from this `Fencing` and its
    /// clones: it is polled once before each fence's body starts (so an
    /// event that already happened stops the body from starting), then
    /// while some fence is waiting, by one fence at a time, on whatever
    /// thread; every fence waiting on it is woken when it fires, whichever
    /// fence polled it. Once it has completed the trigger stays fired. It is
    /// polled with no lock of the crate held. `is_cancelled` does not poll it:
    /// it counts as fired once a fence has seen it complete. If it
    /// panics, the panic propagates out of the fence that polled it and the
    /// trigger never fires afterwards.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use tokio::sync::oneshot;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (mut tx, mut rx) = oneshot::channel::<()>();
    /// let client = tokio::spawn(async move { tx.closed().await });
    /// let fencing = Fencing::new().future(client).code("disconnect");
    ///
    /// let served = tokio::spawn(fencing.run(std::future::pending::<()>()));
    /// rx.close(); // the client goes away
    /// let err = served.await.unwrap().unwrap_err();
    /// assert!(err.cancelled_by("disconnect"));
    /// # }
    /// ```
    #[must_use]
    pub fn future<F>(self, future: F) -> Self
    where
        F: IntoFuture,
        F::IntoFuture: Send + 'static,
    {
        self.push_future(trigger::future(future.into_future()))
    }

    /// Like [`future`](Self::future), with `message` as the reason's
    /// message instead of `"trigger future completed"`, so that logs and
    /// errors say what happened: `"client disconnected"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use tokio::sync::oneshot;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (hang_up, hung_up) = oneshot::channel::<()>();
    /// let fencing = Fencing::new()
    ///     .future_with(hung_up, "client disconnected")
    ///     .code("client");
    ///
    /// drop(hang_up);
    /// let err = fencing.run(std::future::pending::<()>()).await.unwrap_err();
    /// assert_eq!(err.to_string(), "cancelled: client: client disconnected");
    /// assert!(err.is_future());
    /// # }
    /// ```
    #[must_use]
    pub fn future_with<F>(self, future: F, message: impl Into<Message>) -> Self
    where
        F: IntoFuture,
        F::IntoFuture: Send + 'static,
    {
        self.push_future(trigger::future_with(future.into_future(), message.into()))
    }

    /// Adds a trigger that fires with the reason `future` resolves to,
    /// shared by every fence run from this `Fencing` and its clones.
    fn push_future(self, future: BoxFuture) -> Self {
        self.push(Source::future(future))
    }

    /// Arms a [`FenceHandle`]: it can cancel the fences run from this
    /// `Fencing` with a reason, and move their deadline, from anywhere. Its
    /// code labels both its cancellations and the deadlines it sets.
    ///
    /// On a `Fencing` built from [`Fencing::new`], the handle takes over the
    /// deadline declared before it: a reschedule replaces that one, earlier
    /// or later. On one derived from the context ([`current`](crate::current)),
    /// it takes nothing over: its deadline is one more in effect. Either
    /// way the deadline in effect is the tightest of all; see [which
    /// deadline a handle moves](FenceHandle#which-deadline-a-handle-moves).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{FenceHandle, Fencing};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let handle = FenceHandle::new();
    /// let job = tokio::spawn(
    ///     Fencing::new()
    ///         .handle(&handle)
    ///         .code("admin")
    ///         .run(std::future::pending::<()>()),
    /// );
    /// handle.cancel_with("cancelled from the admin endpoint");
    /// let err = job.await.unwrap().unwrap_err();
    /// assert!(err.cancelled_by("admin"));
    /// # }
    /// ```
    #[must_use]
    pub fn handle(mut self, handle: &FenceHandle) -> Self {
        // Only a boundary may extend its own deadline; derived from the
        // context, a handle only ever adds one (as Go's `WithDeadline`).
        let took_over = if self.derived {
            None
        } else {
            self.deadline.take()
        };
        self.push(Source::handle(handle, took_over))
    }

    /// Declares `source`, uncoded so far. A trigger is declared once per
    /// code (two codes stay two triggers, rule 4): declared uncoded
    /// already, it is not added again, and a `code` that follows declares
    /// it under that code instead.
    #[inline]
    fn push(mut self, source: Source) -> Self {
        match self.triggers.find(&source, None) {
            Some(i) => self.duplicate(i),
            None => {
                self.triggers.push(Trigger::new(source, None));
                self.last = Last::Trigger;
            }
        }
        self
    }

    /// Notes that the step being built declared trigger `i` again.
    fn duplicate(&mut self, i: usize) {
        self.triggers.set_duplicate(i);
        self.last = Last::Duplicate;
    }

    /// Labels the trigger declared just before this call with `code`,
    /// replacing any code it had.
    ///
    /// If that trigger was a time trigger that did not become the deadline
    /// (it was looser, or it overflowed), the code goes with it and has no
    /// effect; so does a `code` before any trigger. A token labelled with a
    /// code it was declared under before is that earlier declaration: one
    /// trigger, reported once (and a further `code` labels this declaration
    /// again, leaving the earlier one as it was).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let err = Fencing::new()
    ///     .timeout(Duration::from_secs(1))
    ///     .code("tight")
    ///     .timeout(Duration::from_secs(9))
    ///     .code("loose")
    ///     .run(std::future::pending::<()>())
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.cancelled_by("tight"));
    /// assert!(!err.cancelled_by("loose"));
    /// # }
    /// ```
    #[must_use]
    #[inline]
    pub fn code(mut self, code: impl Into<Code>) -> Self {
        let code = code.into();
        // The common steps, inline: a code for the deadline, or for the
        // first trigger (which cannot repeat an earlier one).
        match (self.last, &mut self.deadline, &mut self.triggers) {
            (Last::Time, Some(deadline), _) => deadline.label.set_code(code),
            (Last::Trigger, _, Triggers::One(trigger)) => trigger.label.set_code(code),
            _ => return self.code_slow(code),
        }
        self
    }

    /// The rest of [`code`](Self::code).
    #[inline(never)]
    fn code_slow(mut self, code: Code) -> Self {
        match self.last {
            Last::Nothing => {}
            Last::Time => {
                if let Some(deadline) = &mut self.deadline {
                    deadline.label.set_code(code);
                }
            }
            Last::Trigger => {
                match self.triggers.find_before_last(&code) {
                    // Now the same declaration as an earlier one, which
                    // stands for both.
                    Some(i) => {
                        self.triggers.pop();
                        self.duplicate(i);
                    }
                    None => self.triggers.set_last_code(code),
                }
            }
            // The earlier declaration keeps its code; this one is declared
            // under the new code, unless that is declared already too.
            Last::Duplicate => {
                let source = &self.triggers.as_slice()[self.triggers.duplicate()].source;
                match self.triggers.find(source, Some(&code)) {
                    Some(j) => self.duplicate(j),
                    None => {
                        let trigger = Trigger::new(source.clone(), Some(code));
                        self.triggers.push(trigger);
                        self.last = Last::Trigger;
                    }
                }
            }
        }
        self
    }

    /// Adds a policy (aiofence's `guard` / `unless`; [`unless`](Self::unless)
    /// is the short form for one code): consulted once for each reason that
    /// fires, it returns `true` to let the reason cancel, `false`
    /// to decline it. A declined reason does not cancel; the fence records it
    /// ([`Fenced::declined`], [`Fenced::declined_by`]) and keeps every other
    /// trigger armed. Declared twice, a reason cancels only if both policies
    /// accept it (the second is not consulted once the first declines).
    ///
    /// The policy is never called when nothing fires. It runs inside the
    /// fence's poll: keep it quick, and do not block.
    ///
    /// A policy that panics accepts the reason, as if it had returned
    /// `true`: the panic is caught (the panic hook still runs, as for any
    /// panic), reported as a `WARN` event with the panic message (feature
    /// `tracing`), and counted in [`Fenced::faults`]; a second policy is
    /// still consulted. The request goes on as if the policy were not
    /// there, rather than its task ending in a panic; nothing stays armed
    /// and nothing is poisoned. With a policy, [`Fenced::is_cancelled`] and
    /// [`Fenced::reasons`] report only what the fence has recorded (peeking
    /// at triggers would consult the policy more than once).
    ///
    /// # Examples
    ///
    /// A shutdown that was already under way when the request came in is
    /// declined at entry; the request's own timeout still applies.
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    /// use std::pin::pin;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Token::new();
    /// shutdown.cancel();
    /// let fencing = Fencing::new()
    ///     .token(&shutdown)
    ///     .code("shutdown")
    ///     .timeout(Duration::from_secs(5))
    ///     .code("budget")
    ///     .policy(|reason| !reason.has_code("shutdown"));
    ///
    /// let mut fenced = pin!(fencing.run(tokio::time::sleep(Duration::from_secs(60))));
    /// let err = (&mut fenced).await.unwrap_err();
    /// assert!(err.cancelled_by("budget"), "the live timeout still fired");
    /// assert!(fenced.declined_by("shutdown"));
    /// # }
    /// ```
    #[must_use]
    pub fn policy<P>(mut self, policy: P) -> Self
    where
        P: Fn(&Reason) -> bool + Send + Sync + 'static,
    {
        self.last = Last::Nothing;
        let policies = &mut self.extra_mut().policy.get_or_insert(Policy(Vec::new())).0;
        policies.push(Arc::new(policy));
        self
    }

    /// Declines reasons with `code` while `predicate` returns `true`: the
    /// common [policy](Self::policy) "not this trigger, not now".
    ///
    /// The predicate is read when a reason with `code` fires, once per
    /// reason, and only for that code: reasons with other codes never call
    /// it. A declined reason stays declined for that fence
    /// ([`Fenced::declined_by`]); the next fence reads the predicate again.
    /// It is a policy like any other: it combines with other policies (a
    /// reason cancels only if every one accepts it), and a predicate that
    /// panics accepts the reason.
    ///
    /// # Examples
    ///
    /// A job declines the shutdown while it is in its critical section, and
    /// takes it once it is out.
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Token::new();
    /// shutdown.cancel_with("SIGTERM");
    /// let critical = Arc::new(AtomicBool::new(true));
    /// let flag = critical.clone();
    /// let fencing = Fencing::new()
    ///     .token(&shutdown)
    ///     .code("shutdown")
    ///     .unless("shutdown", move || flag.load(Ordering::SeqCst));
    ///
    /// let done = fencing.clone().run(async { "committed" }).await;
    /// assert_eq!(done.unwrap(), "committed", "declined while critical");
    ///
    /// critical.store(false, Ordering::SeqCst);
    /// let err = fencing.run(async { "committed" }).await.unwrap_err();
    /// assert!(err.cancelled_by("shutdown"));
    /// # }
    /// ```
    #[must_use]
    pub fn unless<P>(self, code: impl Into<Code>, predicate: P) -> Self
    where
        P: Fn() -> bool + Send + Sync + 'static,
    {
        let code = code.into();
        self.policy(move |reason| reason.code() != Some(&code) || !predicate())
    }

    /// Makes the cancel two-phase: when a trigger fires, the body is not
    /// dropped at once but first sees the cancellation, through
    /// `current().is_cancelled()` and `current().cancelled().await`, and has
    /// `grace` to finish; only if it is still pending when the grace period
    /// ends is it dropped. A body that finishes within the grace period
    /// returns its value, and the fence still reports the triggers as fired
    /// ([`Fenced::is_interrupted`] tells the two outcomes apart).
    ///
    /// Each reason that fires gives the body its own grace period, counted
    /// from when the fence records it: this one, or the one declared for its
    /// code with [`grace_for`](Self::grace_for), which overrides it. The body
    /// is dropped at the earliest end among the reasons that fired, so a
    /// trigger without a grace period firing during another's drops the body
    /// at once. Triggers keep firing during a grace period, the deadline
    /// included, and each is recorded as a further reason, in firing order.
    /// Declared twice, the shorter grace period wins. `Duration::ZERO` is the
    /// same as no grace period; a duration that overflows the clock means the
    /// body is never dropped for that reason, only told.
    ///
    /// Derived `Fencing`s, such as `current().timeout(d)` inside the body,
    /// keep the grace period, so a fence nested in the body gives its own
    /// body the same chance; [`cancelled`](Self::cancelled) leaves it out.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{current, Fencing, Token};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Token::new();
    /// let fencing = Fencing::new()
    ///     .token(&shutdown)
    ///     .code("shutdown")
    ///     .grace(Duration::from_secs(5));
    ///
    /// let worker = tokio::spawn(fencing.run(async {
    ///     let reason = current().cancelled().await;
    ///     // Phase one: flush what we have, within the grace period.
    ///     tokio::time::sleep(Duration::from_secs(1)).await;
    ///     format!("flushed after {}", reason.reason())
    /// }));
    /// tokio::task::yield_now().await; // let the worker start
    /// shutdown.cancel_with("SIGTERM");
    /// assert_eq!(worker.await.unwrap().unwrap(), "flushed after shutdown: SIGTERM");
    /// # }
    /// ```
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.last = Last::Nothing;
        let extra = self.extra_mut();
        extra.grace = Some(extra.grace.map_or(grace, |current| current.min(grace)));
        self
    }

    /// The grace period of a two-phase cancel, if one was declared (see
    /// [`grace`](Self::grace)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let fencing = fencing::Fencing::new().grace(Duration::from_secs(2));
    /// assert_eq!(fencing.grace_period(), Some(Duration::from_secs(2)));
    /// ```
    #[must_use]
    pub fn grace_period(&self) -> Option<Duration> {
        self.extra()?.grace
    }

    /// Gives reasons with `code` a grace period of their own: when a trigger
    /// declared with `code` fires, the body is told and has `grace` to
    /// finish before the fence drops it, whatever the fence-wide
    /// [`grace`](Self::grace) says, if anything. Reasons with no grace
    /// period for their code use the fence-wide one, or none: then the body
    /// is dropped at once, as without any grace period.
    ///
    /// Every reason counts from when the fence records it, and the body is
    /// dropped at the earliest end among the reasons that fired (and that a
    /// [policy](Self::policy) accepted): so with a 5 s grace period for
    /// `"shutdown"` and none for `"budget"`, a budget running out during the
    /// shutdown's grace period drops the body at once, and both reasons are
    /// reported, in firing order. The deadline keeps firing during a grace
    /// period like any other trigger; the fence still registers only one
    /// timer, set for whichever comes first, the deadline or the end of the
    /// grace period. A [protection guard](crate::protect) alive when the
    /// grace period ends defers the drop until it is released.
    ///
    /// Declared twice for the same code, the shorter grace period wins.
    /// `Duration::ZERO` means no grace period for that code: its reasons
    /// drop the body at once even if a fence-wide grace period is declared.
    /// A duration that overflows the clock means the body is never dropped
    /// for that reason, only told. Like `grace`, it is kept by derived
    /// `Fencing`s (`current().timeout(d)` inside the body) and left out by
    /// [`cancelled`](Self::cancelled).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{current, Fencing, Token};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Token::new();
    /// let fencing = Fencing::new()
    ///     .timeout(Duration::from_secs(30))
    ///     .code("budget") // cuts hard
    ///     .token(&shutdown)
    ///     .code("shutdown")
    ///     .grace_for("shutdown", Duration::from_secs(5)); // lets the body finish
    ///
    /// let request = tokio::spawn(fencing.run(async {
    ///     current().cancelled().await;
    ///     tokio::time::sleep(Duration::from_secs(1)).await; // finish the response
    ///     "answered"
    /// }));
    /// tokio::task::yield_now().await; // let the request start
    /// shutdown.cancel_with("SIGTERM");
    /// assert_eq!(request.await.unwrap().unwrap(), "answered");
    /// # }
    /// ```
    #[must_use]
    pub fn grace_for(mut self, code: impl Into<Code>, grace: Duration) -> Self {
        self.last = Last::Nothing;
        let code = code.into();
        let by_code = &mut self.extra_mut().grace_by_code;
        match by_code.iter_mut().find(|(c, _)| *c == code) {
            Some((_, current)) => *current = (*current).min(grace),
            None => by_code.push((code, grace)),
        }
        self
    }

    /// The grace period a reason with `code` gets: the one declared for that
    /// code with [`grace_for`](Self::grace_for), else the fence-wide
    /// [`grace_period`](Self::grace_period), if any. `Some(Duration::ZERO)`
    /// means none.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let fencing = fencing::Fencing::new()
    ///     .grace(Duration::from_secs(2))
    ///     .grace_for("budget", Duration::ZERO);
    /// assert_eq!(fencing.grace_period_for("budget"), Some(Duration::ZERO));
    /// assert_eq!(fencing.grace_period_for("shutdown"), Some(Duration::from_secs(2)));
    /// ```
    #[must_use]
    pub fn grace_period_for(&self, code: impl Into<Code>) -> Option<Duration> {
        let code = code.into();
        self.grace_of(Some(&code))
    }

    /// Waits until any trigger fires, and returns what fired. Resolves at
    /// once if one has fired already; never resolves for a `Fencing` without
    /// triggers. For a body in the grace period of a two-phase cancel:
    /// `current().cancelled().await`.
    ///
    /// Equivalent to:
    ///
    /// ```ignore
    /// async fn cancelled(self) -> Cancelled;
    /// ```
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let fired = Fencing::new()
    ///     .timeout(Duration::from_secs(3))
    ///     .code("budget")
    ///     .cancelled()
    ///     .await;
    /// assert!(fired.cancelled_by("budget"));
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: dropping the future releases its
    /// registrations and loses nothing.
    pub fn cancelled(mut self) -> WaitForFencingFuture {
        if self.has_grace() {
            let extra = self.extra_mut();
            extra.grace = None;
            extra.grace_by_code.clear();
            extra.scoped_grace = false;
        }
        WaitForFencingFuture::new(self)
    }

    /// Runs `stream` inside a fence: items flow until a trigger fires, then
    /// the stream ends; see [`FencedStream`](crate::FencedStream).
    ///
    /// # Examples
    ///
    /// See [`FencedStream`](crate::FencedStream).
    #[cfg(feature = "stream")]
    #[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
    pub fn stream<S: futures_core::Stream>(self, stream: S) -> FencedStream<S> {
        FencedStream::new(self, stream)
    }

    /// The deadline in effect: the tightest of the declared time triggers and
    /// of the deadlines its [handles](FenceHandle) set, or `None` if there is
    /// none.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// assert_eq!(Fencing::new().effective_deadline(), None);
    /// let fencing = Fencing::new().timeout(Duration::from_secs(3));
    /// assert_eq!(
    ///     fencing.effective_deadline(),
    ///     Some(Instant::now() + Duration::from_secs(3))
    /// );
    /// # }
    /// ```
    #[must_use]
    pub fn effective_deadline(&self) -> Option<Instant> {
        self.effective().map(|time| time.at)
    }

    /// The budget left before the deadline in effect, saturating at zero, or
    /// `None` if there is no deadline. Send it to the next service (as
    /// `grpc-timeout`, say) so that it stops when this one would.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{current, Fencing};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let request = Fencing::new().timeout(Duration::from_secs(10));
    /// request
    ///     .bind(async {
    ///         tokio::time::sleep(Duration::from_secs(4)).await;
    ///         assert_eq!(current().remaining(), Some(Duration::from_secs(6)));
    ///     })
    ///     .await;
    ///
    /// tokio::time::sleep(Duration::from_secs(20)).await;
    /// assert_eq!(Fencing::new().remaining(), None);
    /// # }
    /// ```
    #[must_use]
    pub fn remaining(&self) -> Option<Duration> {
        self.effective_deadline()
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Returns `true` if a trigger has fired already: a token is cancelled,
    /// a future trigger completed, or the deadline has passed. A fence run
    /// from this `Fencing` now would not start its body.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    ///
    /// let token = Token::new();
    /// let fencing = Fencing::new().token(&token);
    /// assert!(!fencing.is_cancelled());
    /// token.cancel();
    /// assert!(fencing.is_cancelled());
    /// ```
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.triggers().iter().any(|t| t.fired().is_some())
            || self
                .effective()
                .is_some_and(|d| d.has_passed(Instant::now()))
    }

    /// Returns the triggers that have fired already as an error, or `Ok(())`
    /// if none has: Go's `ctx.Err()`, for code that stops cooperatively at
    /// a step of its own choosing, `current().check()?`.
    ///
    /// The reasons are those [`is_cancelled`](Self::is_cancelled) looks at,
    /// in the order a fence records triggers found in one poll: the
    /// deadline first, then the other triggers in declaration order. A
    /// [`policy`](Self::policy) is not consulted (a fence consults it once
    /// per reason, when it records it).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{current, Cancelled, Fencing, Token};
    ///
    /// fn import(rows: &[u32], shutdown: &Token) -> Result<usize, Cancelled> {
    ///     for (done, _row) in rows.iter().enumerate() {
    ///         current().check()?; // stop between rows, never inside one
    ///         if done == 1 {
    ///             shutdown.cancel_with("SIGTERM"); // a signal arrives mid-import
    ///         }
    ///     }
    ///     Ok(rows.len())
    /// }
    ///
    /// let shutdown = Token::new();
    /// let request = Fencing::new().token(&shutdown).code("shutdown");
    /// let err = request.in_scope(|| import(&[1, 2, 3, 4, 5], &shutdown)).unwrap_err();
    /// assert!(err.cancelled_by("shutdown"));
    /// assert_eq!(err.to_string(), "cancelled: shutdown: SIGTERM");
    /// ```
    ///
    /// # Errors
    ///
    /// [`Cancelled`] with every reason that has fired.
    pub fn check(&self) -> Result<(), Cancelled> {
        let deadline = self
            .effective()
            .filter(|time| time.has_passed(Instant::now()))
            .map(|time| time.reason());
        let reasons: Vec<Reason> = deadline
            .into_iter()
            .chain(self.triggers().iter().filter_map(Trigger::fired))
            .collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Cancelled::new(reasons))
        }
    }

    /// Runs `body` inside a fence: the body is polled until it completes or
    /// a trigger fires, whichever comes first, and is dropped as soon as a
    /// trigger fires while it is pending.
    ///
    /// Equivalent to:
    ///
    /// ```ignore
    /// async fn run<F: IntoFuture>(self, body: F) -> Result<F::Output, Cancelled>;
    /// ```
    ///
    /// See [`Fenced`] for the rules the fence follows, and for reading the
    /// reasons that fired after a body completed anyway.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Token::new();
    /// let fencing = Fencing::new().timeout(Duration::from_secs(5)).token(&shutdown);
    ///
    /// let fast = fencing.clone().run(async { "done" }).await;
    /// assert_eq!(fast.unwrap(), "done");
    ///
    /// let slow = fencing.run(tokio::time::sleep(Duration::from_secs(10))).await;
    /// assert!(slow.unwrap_err().is_timeout());
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Polling the fence panics if its body is still pending, a deadline is
    /// declared, and there is no tokio runtime with the time driver enabled
    /// (as [`tokio::time::sleep`] does).
    #[inline]
    pub fn run<F: IntoFuture>(self, body: F) -> Fenced<F::IntoFuture> {
        Fenced::new(self, body.into_future())
    }

    /// Registers every fence run from this `Fencing` in `registry` under
    /// `name`, while it runs; see [`Registry`]. It replaces any registration
    /// declared before, the two sides' of an [`or`](Self::or) included.
    ///
    /// # Examples
    ///
    /// See [`Registry`].
    #[must_use]
    pub fn register(mut self, registry: &Registry, name: impl Into<Code>) -> Self {
        self.last = Last::Nothing;
        self.extra_mut().registrations = vec![(registry.clone(), name.into())];
        self
    }

    /// Binds this `Fencing` to `future` as its context: while `future` is
    /// polled, [`current`](crate::current) returns this `Fencing`. Binding never cancels
    /// anything; only a fence ([`run`](Self::run)) does. Nested bindings
    /// override the outer one and restore it afterwards.
    ///
    /// Equivalent to:
    ///
    /// ```ignore
    /// async fn bind<F: IntoFuture>(self, future: F) -> F::Output;
    /// ```
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{current, Fencing, Token};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Token::new();
    /// shutdown.cancel();
    ///
    /// // The token has fired, but a binding does not cancel: the write runs.
    /// let written = Fencing::new()
    ///     .token(&shutdown)
    ///     .bind(async { current().is_cancelled() })
    ///     .await;
    /// assert!(written, "the inner code can see the cancellation");
    /// # }
    /// ```
    pub fn bind<F: std::future::IntoFuture>(self, future: F) -> BoundFuture<F::IntoFuture> {
        BoundFuture::new(self.into_derived(), future.into_future())
    }

    /// Runs the closure `f` with this `Fencing` as its context, and returns
    /// what it returns: [`bind`](Self::bind) for synchronous code, such as
    /// a tower `Service::call` that builds the future it returns. Like a
    /// binding, it never cancels anything.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{current, Fencing};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let request = Fencing::new().timeout(Duration::from_secs(2));
    /// let seen = request.in_scope(|| current().remaining());
    /// assert_eq!(seen, Some(Duration::from_secs(2)));
    /// assert_eq!(current().remaining(), None, "restored afterwards");
    /// # }
    /// ```
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        context::enter(&mut self.derived(), None, f)
    }

    /// Adds a polled condition: `predicate` is evaluated every `every` on
    /// the runtime (no thread per check), and the trigger fires when it
    /// returns `true`. It is a [`Condition`](crate::ReasonKind::Condition) reason
    /// with the message `"condition met"`.
    ///
    /// The first check is one interval after a fence first waits on it;
    /// like every shared trigger, it is evaluated only while some fence run
    /// from this `Fencing` (or a clone) is waiting. A late check is delayed,
    /// never bunched up.
    ///
    /// # Failed checks
    ///
    /// A check that returns `Err` (see [`Verdict`]) or panics does not fire
    /// the condition: it keeps polling, so a flaky probe does not stop the
    /// work (as hother's cancelable does). Each failed check is a fault:
    /// counted in [`Fenced::faults`] of the fence whose poll ran it and of
    /// every fence around that poll, and,
    /// with the feature `tracing`, a `WARN` event (message `"condition check
    /// failed"` or `"condition check panicked"`, fields `code` and `error`).
    /// A condition that must stop the work once it can no longer be
    /// evaluated is declared with
    /// [`condition_fail_fast`](Self::condition_fail_fast).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let queue_depth = Arc::new(AtomicU32::new(0));
    /// let depth = queue_depth.clone();
    /// let fencing = Fencing::new()
    ///     .condition(Duration::from_millis(100), move || depth.load(Ordering::Relaxed) > 1_000)
    ///     .code("overload");
    ///
    /// queue_depth.store(5_000, Ordering::Relaxed);
    /// let err = fencing.run(std::future::pending::<()>()).await.unwrap_err();
    /// assert!(err.cancelled_by("overload"));
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Panics if `every` is zero, which would evaluate the predicate in a
    /// busy loop, as [`tokio::time::interval`] does.
    #[must_use]
    #[track_caller]
    pub fn condition<P, V>(self, every: Duration, predicate: P) -> Self
    where
        P: FnMut() -> V + Send + 'static,
        V: Verdict,
    {
        self.push_future(trigger::condition(every, OnError::KeepPolling, predicate))
    }

    /// Like [`condition`](Self::condition), but a failed check fires the
    /// condition: a guard that can no longer be evaluated no longer guards
    /// the work, so the fence stops it and says why. The reason's message
    /// is `"condition failed: …"` with the `Err`'s `Display`, or
    /// `"condition panicked: …"` with the panic message.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use std::time::Duration;
    ///
    /// fn lease_held() -> Result<bool, String> {
    ///     Err("lease store unreachable".to_owned())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let err = Fencing::new()
    ///     .condition_fail_fast(Duration::from_secs(1), || lease_held().map(|held| !held))
    ///     .code("lease")
    ///     .run(std::future::pending::<()>())
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.cancelled_by("lease"));
    /// assert_eq!(err.reason().message(), "condition failed: lease store unreachable");
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Panics if `every` is zero, as [`condition`](Self::condition) does.
    #[must_use]
    #[track_caller]
    pub fn condition_fail_fast<P, V>(self, every: Duration, predicate: P) -> Self
    where
        P: FnMut() -> V + Send + 'static,
        V: Verdict,
    {
        self.push_future(trigger::condition(every, OnError::Fire, predicate))
    }

    /// Adds a polled condition with an async predicate: like
    /// [`condition`](Self::condition), awaiting `predicate()` every `every`.
    /// A check whose future resolves to `Err` or panics is a fault, and the
    /// condition keeps polling, as for a synchronous predicate.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use std::pin::pin;
    /// use std::time::Duration;
    ///
    /// async fn upstream_healthy() -> Result<bool, std::io::Error> {
    ///     Err(std::io::Error::other("connection refused"))
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let fencing = Fencing::new()
    ///     .condition_async(Duration::from_secs(1), || async {
    ///         upstream_healthy().await.map(|healthy| !healthy)
    ///     })
    ///     .code("upstream")
    ///     .timeout(Duration::from_millis(4_500))
    ///     .code("budget");
    ///
    /// let mut fenced = pin!(fencing.run(std::future::pending::<()>()));
    /// let err = (&mut fenced).await.unwrap_err();
    /// assert!(err.cancelled_by("budget"), "the failing probe did not stop the work");
    /// assert_eq!(fenced.faults(), 4, "checked at 1, 2, 3 and 4 s");
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Panics if `every` is zero, as [`condition`](Self::condition) does.
    #[must_use]
    #[track_caller]
    pub fn condition_async<P, F>(self, every: Duration, predicate: P) -> Self
    where
        P: FnMut() -> F + Send + 'static,
        F: Future + Send + 'static,
        F::Output: Verdict,
    {
        self.push_future(trigger::condition_async(
            every,
            OnError::KeepPolling,
            predicate,
        ))
    }

    /// Like [`condition_async`](Self::condition_async), but a failed check
    /// fires the condition, as for
    /// [`condition_fail_fast`](Self::condition_fail_fast).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use std::time::Duration;
    ///
    /// async fn upstream_healthy() -> Result<bool, std::io::Error> {
    ///     Err(std::io::Error::other("connection refused"))
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let err = Fencing::new()
    ///     .condition_async_fail_fast(Duration::from_secs(1), || async {
    ///         upstream_healthy().await.map(|healthy| !healthy)
    ///     })
    ///     .code("upstream")
    ///     .run(std::future::pending::<()>())
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.reason().message(), "condition failed: connection refused");
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Panics if `every` is zero, as [`condition`](Self::condition) does.
    #[must_use]
    #[track_caller]
    pub fn condition_async_fail_fast<P, F>(self, every: Duration, predicate: P) -> Self
    where
        P: FnMut() -> F + Send + 'static,
        F: Future + Send + 'static,
        F::Output: Verdict,
    {
        self.push_future(trigger::condition_async(every, OnError::Fire, predicate))
    }

    /// Adds an OS signal as a trigger. Its reason is a
    /// [`OsSignal`](crate::ReasonKind::Signal) with the message `"received SIGTERM"`
    /// (and so on).
    ///
    /// The listener is registered with tokio's signal driver when a fence
    /// first waits on it; a signal that arrives before then is not seen by
    /// this trigger. If registering fails (no signal driver), the trigger
    /// never fires.
    ///
    /// # Caveats
    ///
    /// As with [`tokio::signal`], once a listener for a signal is registered,
    /// that signal no longer has its default effect (such as terminating the
    /// process) for the whole process, for as long as the process runs, even
    /// after the fence is gone. Only declare signals the application means
    /// to handle.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use fencing::{Fencing, OsSignal};
    ///
    /// # async fn serve() {}
    /// # #[tokio::main]
    /// # async fn main() {
    /// let fencing = Fencing::new().signal(OsSignal::Interrupt).code("ctrl-c");
    /// if let Err(cancelled) = fencing.run(serve()).await {
    ///     eprintln!("stopped: {cancelled}"); // "stopped: cancelled: ctrl-c: received SIGINT"
    /// }
    /// # }
    /// ```
    #[cfg(feature = "signal")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
    #[must_use]
    pub fn signal(self, signal: OsSignal) -> Self {
        self.push_future(trigger::signal(signal))
    }

    /// Adds a trigger that fires once every part has fired, each part being
    /// a `Fencing` that fires when any of its own triggers does (so "a
    /// minimum time has elapsed AND the data is ready" is two parts). Time
    /// triggers inside the parts work as anywhere else. Any of several is
    /// what a `Fencing` already is; to join two built ones, see
    /// [`or`](Self::or).
    ///
    /// The reason is an [`AllOf`](crate::ReasonKind::AllOf) whose message names
    /// every part's reasons, in the order of the parts: `"all of: min: timed
    /// out after 1s; data: trigger future completed"`. With no parts it fires
    /// at once (all of nothing has happened).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let data_ready = Token::new();
    /// let fencing = Fencing::new()
    ///     .all_of([
    ///         Fencing::new().timeout(Duration::from_secs(1)).code("min"),
    ///         Fencing::new().token(&data_ready).code("data"),
    ///     ])
    ///     .code("done");
    ///
    /// data_ready.cancel_with("ready");
    /// let started = tokio::time::Instant::now();
    /// let err = fencing.run(std::future::pending::<()>()).await.unwrap_err();
    /// assert_eq!(started.elapsed(), Duration::from_secs(1), "waited for both");
    /// assert!(err.cancelled_by("done"));
    /// assert_eq!(err.reason().message(), "all of: min: timed out after 1s; data: ready");
    /// # }
    /// ```
    #[must_use]
    pub fn all_of(self, parts: impl IntoIterator<Item = Self>) -> Self {
        let waits = parts
            .into_iter()
            .map(|part| Box::pin(part.cancelled()))
            .collect();
        self.push_future(trigger::all_of(waits))
    }

    /// Joins two `Fencing`s built apart, such as the one middleware hands
    /// over and the one a library declares: a fence run from the result
    /// stops when either would have, and reports each reason under the code
    /// its side declared it with.
    ///
    /// - **Triggers.** Every trigger of `self`, then every trigger of
    ///   `other`, in their declaration order; each keeps its code, so
    ///   `cancelled_by("shutdown")` holds for a token that came from
    ///   `other`. A trigger in both (the same token, future or handle under
    ///   the same code, as when both were derived from one context) is armed
    ///   once; under two codes it is armed under both (rule 4).
    /// - **Time.** The two deadlines merge as any two time triggers do
    ///   (rule 3): the effective deadline is the earlier, and its code is
    ///   the one that fires; at the same instant, `self`'s is kept (unless
    ///   `other`'s is one a handle took over, which ranks ahead of a declared
    ///   one, as in a single `Fencing`). The
    ///   deadlines of [handles](FenceHandle) on either side stay in effect,
    ///   and each handle still moves the deadline it moved before.
    /// - **Policies and grace periods stay with their side.** A
    ///   [`policy`](Self::policy), a [`grace`](Self::grace) period and a
    ///   [`grace_for`](Self::grace_for) declared on one side govern the
    ///   triggers of that side only: a policy of `self` that declines
    ///   `"shutdown"` does not decline a `"shutdown"` trigger of `other`, and
    ///   `other`'s triggers get `other`'s grace periods, not `self`'s. So a
    ///   reason cancels if the side it came from accepts it, and the body
    ///   gets the grace period that side would have given it. A policy or
    ///   grace period declared on the result, after the `or`, governs every
    ///   reason, on top of the sides' own: both policies must accept, and
    ///   the shorter grace period wins.
    /// - **Registrations.** A fence run from the result is listed in the
    ///   registries of both sides, under each side's name (once, if both
    ///   name the same registry and name), and any of them can cancel it.
    ///   Such a cancel is governed by the rules declared on the result only:
    ///   the listings share one trigger, which is no side's.
    /// - **Context.** Both sides keep what they derived from their context,
    ///   so the result is a derived `Fencing`: a [`FenceHandle`] declared on
    ///   it takes no deadline over, it only adds one; and a
    ///   [`code`](Self::code) right after the `or` labels nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// // Handed over by the middleware: a budget, shutdown declined at entry.
    /// let shutdown = Token::new();
    /// let request = Fencing::new()
    ///     .timeout(Duration::from_secs(30))
    ///     .code("budget")
    ///     .token(&shutdown)
    ///     .code("shutdown")
    ///     .policy(|reason| !reason.has_code("shutdown"));
    /// // Declared by a client library: its own, tighter deadline and its pool.
    /// let pool_closed = Token::new();
    /// let client = Fencing::new()
    ///     .timeout(Duration::from_secs(2))
    ///     .code("pool_timeout")
    ///     .token(&pool_closed)
    ///     .code("pool");
    ///
    /// let both = request.or(&client);
    /// assert_eq!(both.remaining(), Some(Duration::from_secs(2)), "the tighter wins");
    ///
    /// pool_closed.cancel_with("pool closed");
    /// let err = both.run(std::future::pending::<()>()).await.unwrap_err();
    /// assert!(err.cancelled_by("pool"), "the middleware's policy is not the library's");
    /// # }
    /// ```
    #[must_use]
    pub fn or(self, other: &Self) -> Self {
        let sides = [self.extra.clone(), other.extra.clone()];
        let mut joined = Self::empty().into_derived();
        for (fencing, side) in [&self, other].into_iter().zip(&sides) {
            let side = side.as_deref();
            let scope = |label: &Label| {
                let code = label.code();
                let rules = Rules::scoped(
                    label.rules(),
                    side.and_then(|side| side.policy.as_ref()),
                    side.and_then(Extra::graces),
                );
                Label::new(code.cloned(), rules)
            };
            for trigger in fencing.triggers() {
                let trigger = Trigger {
                    label: scope(&trigger.label),
                    ..trigger.clone()
                };
                if !joined.triggers.contains_same(&trigger) {
                    joined.triggers.push(trigger);
                }
            }
            if let Some(time) = &fencing.deadline {
                let time = TimeTrigger {
                    label: scope(&time.label),
                    ..time.clone()
                };
                joined = joined.merge_time(Some(time));
            }
        }
        joined.last = Last::Nothing;
        if sides.iter().any(Option::is_some) {
            joined.extra = Some(Arc::new(Extra::joined(&sides)));
        }
        joined
    }

    /// Adds a tokio-util [`CancellationToken`](tokio_util::sync::CancellationToken) as a trigger, so code already
    /// written against tokio-util joins in. Its reason is a
    /// [`Token`](crate::ReasonKind::Token) with the message `"cancellation
    /// token cancelled"` (a `CancellationToken` carries no reason of its own).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let legacy = CancellationToken::new();
    /// legacy.cancel();
    /// let err = Fencing::new()
    ///     .cancellation_token(&legacy)
    ///     .code("legacy")
    ///     .run(std::future::pending::<()>())
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.cancelled_by("legacy") && err.is_token());
    /// # }
    /// ```
    #[cfg(feature = "tokio-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
    #[must_use]
    pub fn cancellation_token(self, token: &tokio_util::sync::CancellationToken) -> Self {
        self.push_future(trigger::cancellation_token(token))
    }
}
