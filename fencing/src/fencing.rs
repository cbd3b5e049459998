//! The [`Fencing`] builder: an immutable declaration of triggers.

use crate::fence::Fenced;
use crate::handle::FenceHandle;
use crate::reason::{Code, Message, Reason};
use crate::registry::Registry;
use crate::time::{deadline_after, TimeTrigger};
use crate::token::Token;
use crate::trigger::{FutureSource, Source, Trigger, Triggers};
use std::borrow::Cow;
use std::fmt;
use std::future::IntoFuture;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A declaration of every reason some work may be stopped for: a timeout, a
/// deadline, tokens, futures, each with an optional [`Code`].
///
/// A `Fencing` does nothing by itself. [`run`](Self::run) arms it around a
/// future, the *fence*, which drops that future as soon as a trigger fires
/// and reports every [`Reason`](crate::Reason) that fired.
///
/// Building is by value: each step returns a new `Fencing` with one more
/// trigger, and [`code`](Self::code) labels the trigger declared just before
/// it. Deriving adds triggers, never removes them. Cloning is cheap (a few
/// reference counts) and clones are independent.
///
/// # Time triggers merge
///
/// All time triggers collapse into one deadline: a strictly earlier one
/// replaces the current one together with its code; an equal or later one is
/// ignored, and so is a `code` that follows it. A relative
/// [`timeout`](Self::timeout) is anchored when it is declared, not when the
/// fence runs, so a budget declared in middleware counts from there. A
/// duration too large to add to the clock means "no deadline"; a deadline
/// that has already passed means "already fired".
///
/// # Other triggers never merge
///
/// Each token or future trigger arms on its own. The same token declared
/// under two codes is reported under both when it is cancelled.
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
/// let fencing = Fencing::new()
///     .timeout(Duration::from_secs(30))
///     .code("budget")
///     .token(&shutdown)
///     .code("shutdown");
///
/// let slow = tokio::time::sleep(Duration::from_secs(60));
/// match fencing.run(slow).await {
///     Ok(()) => unreachable!(),
///     Err(cancelled) if cancelled.cancelled_by("shutdown") => unreachable!(),
///     Err(cancelled) => {
///         assert!(cancelled.cancelled_by("budget"));
///         assert_eq!(cancelled.reason().message(), "timed out after 30s");
///     }
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Fencing {
    deadline: Option<TimeTrigger>,
    triggers: Triggers,
    last: Last,
    /// What few fences use, behind one pointer so that the common
    /// `Fencing` stays small to move, clone and bind.
    extra: Option<Arc<Extra>>,
}

#[derive(Clone, Default)]
struct Extra {
    grace: Option<Duration>,
    /// Grace periods by code, overriding `grace` for reasons with that
    /// code; one entry per code, the shortest declared.
    grace_by_code: Vec<(Code, Duration)>,
    policy: Option<Policy>,
    registration: Option<(Registry, Code)>,
}

/// Decides, once per fired reason, whether it cancels.
///
/// Asserted unwind safe so that `Fencing` stays `UnwindSafe` whatever the
/// closure captures: a policy is only ever called, and a panic in it leaves
/// no state of ours half-updated (the reason stays unrecorded).
#[derive(Clone)]
struct Policy(Arc<dyn Fn(&Reason) -> bool + Send + Sync>);

impl UnwindSafe for Policy {}
impl RefUnwindSafe for Policy {}

impl Default for Fencing {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`Fencing::code`] labels: the trigger declared just before it.
#[derive(Clone, Copy, Debug)]
enum Last {
    /// Nothing, or a time trigger that lost the merge or overflowed.
    Nothing,
    /// The time trigger that is now the deadline.
    Time,
    /// The last entry of `triggers`.
    Trigger,
}

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
        Self {
            deadline: None,
            triggers: Triggers::Empty,
            last: Last::Nothing,
            extra: None,
        }
    }

    /// A clone to derive from: a `code` right after it labels nothing,
    /// instead of relabelling the last trigger of the original.
    pub(crate) fn derived(&self) -> Self {
        self.clone().into_derived()
    }

    pub(crate) fn into_derived(mut self) -> Self {
        self.last = Last::Nothing;
        self
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
        let at = deadline_after(Instant::now(), after);
        self.merge_time(at, Some(after))
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
        self.merge_time(Some(at), None)
    }

    #[inline]
    fn merge_time(mut self, at: Option<Instant>, after: Option<Duration>) -> Self {
        self.last = Last::Nothing;
        let Some(at) = at else { return self };
        if self
            .deadline
            .as_ref()
            .map_or(true, |current| at < current.at)
        {
            self.deadline = Some(TimeTrigger {
                at,
                after,
                code: None,
            });
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
        self.push(Source::Token(token.node().clone()))
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
        let future = future.into_future();
        self.trigger(Box::pin(async move {
            future.await;
            Reason::future(None)
        }))
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
        let future = future.into_future();
        let message = message.into();
        self.trigger(Box::pin(async move {
            future.await;
            Reason::future_with(message)
        }))
    }

    /// Adds a trigger that fires with the reason `future` resolves to.
    pub(crate) fn trigger(self, future: crate::trigger::BoxFuture) -> Self {
        self.push(Source::Future(FutureSource::new(future)))
    }

    /// Arms a [`FenceHandle`]: it can cancel the fences run from this
    /// `Fencing` with a reason, and move their deadline, from anywhere. Its
    /// code labels both its cancellations and the deadlines it sets.
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
    pub fn handle(self, handle: &FenceHandle) -> Self {
        self.push(Source::Handle(handle.inner().clone()))
    }

    #[inline]
    fn push(mut self, source: Source) -> Self {
        self.triggers.push(Trigger { source, code: None });
        self.last = Last::Trigger;
        self
    }

    /// Labels the trigger declared just before this call with `code`,
    /// replacing any code it had.
    ///
    /// If that trigger was a time trigger that did not become the deadline
    /// (it was looser, or it overflowed), the code goes with it and has no
    /// effect; so does a `code` before any trigger.
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
        match self.last {
            Last::Nothing => {}
            Last::Time => {
                if let Some(deadline) = &mut self.deadline {
                    deadline.code = Some(code.into());
                }
            }
            Last::Trigger => self.triggers.set_last_code(code.into()),
        }
        self
    }

    /// Adds a policy (aiofence's `guard` / `unless`): consulted once for each
    /// reason that fires, it returns `true` to let the reason cancel, `false`
    /// to decline it. A declined reason does not cancel; the fence records it
    /// ([`Fenced::declined`], [`Fenced::declined_by`]) and keeps every other
    /// trigger armed. Declared twice, a reason cancels only if both policies
    /// accept it (the second is not consulted once the first declines).
    ///
    /// The policy is never called when nothing fires. It runs inside the
    /// fence's poll: keep it quick, and do not block. A policy that panics
    /// propagates its panic out of that poll, like a panicking body, and the
    /// reason stays unrecorded. With a policy, [`Fenced::is_cancelled`] and
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
        let extra = self.extra_mut();
        extra.policy = Some(Policy(match extra.policy.take() {
            None => Arc::new(policy),
            Some(Policy(first)) => Arc::new(move |reason: &Reason| first(reason) && policy(reason)),
        }));
        self
    }

    fn extra(&self) -> Option<&Extra> {
        self.extra.as_deref()
    }

    fn extra_mut(&mut self) -> &mut Extra {
        Arc::make_mut(self.extra.get_or_insert_with(Arc::default))
    }

    pub(crate) fn with_registration(mut self, registry: Registry, name: Code) -> Self {
        self.last = Last::Nothing;
        self.extra_mut().registration = Some((registry, name));
        self
    }

    pub(crate) fn registration(&self) -> Option<&(Registry, Code)> {
        self.extra()?.registration.as_ref()
    }

    pub(crate) fn has_policy(&self) -> bool {
        self.extra().is_some_and(|extra| extra.policy.is_some())
    }

    /// Whether `reason` may cancel: the policy's verdict, or `true`.
    pub(crate) fn accepts(&self, reason: &Reason) -> bool {
        self.extra()
            .and_then(|extra| extra.policy.as_ref())
            .map_or(true, |policy| (policy.0)(reason))
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

    /// The grace period a reason with `code` (or none) gets, as declared.
    fn grace_of(&self, code: Option<&Code>) -> Option<Duration> {
        let extra = self.extra()?;
        code.and_then(|code| {
            extra
                .grace_by_code
                .iter()
                .find(|(c, _)| c == code)
                .map(|(_, grace)| *grace)
        })
        .or(extra.grace)
    }

    /// Whether any grace period is declared, fence-wide or for a code.
    pub(crate) fn has_grace(&self) -> bool {
        self.extra()
            .is_some_and(|extra| extra.grace.is_some() || !extra.grace_by_code.is_empty())
    }

    /// The grace period a fence waits out for `reason`; a zero one is none
    /// at all, so the body is dropped in the poll that sees the trigger.
    pub(crate) fn grace_for_reason(&self, reason: &Reason) -> Option<Duration> {
        self.grace_of(reason.code())
            .filter(|grace| !grace.is_zero())
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
    pub fn cancelled(mut self) -> crate::fence::WaitForFencing {
        if self.has_grace() {
            let extra = self.extra_mut();
            extra.grace = None;
            extra.grace_by_code.clear();
        }
        crate::fence::WaitForFencing::new(self)
    }

    /// Runs `stream` inside a fence: items flow until a trigger fires, then
    /// the stream ends; see [`FencedStream`](crate::FencedStream).
    ///
    /// # Examples
    ///
    /// See [`FencedStream`](crate::FencedStream).
    #[cfg(feature = "stream")]
    #[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
    pub fn stream<S: futures_core::Stream>(self, stream: S) -> crate::FencedStream<S> {
        crate::FencedStream::new(self, stream)
    }

    /// The deadline in effect: the tightest of the declared time triggers,
    /// or `None` if there is none.
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
        self.time().map(|time| time.at)
    }

    /// The deadline in effect and the trigger that set it: the one a
    /// [`FenceHandle`] moved it to, if any handle was rescheduled (the
    /// earliest of them), else the tightest declared time trigger.
    pub(crate) fn time(&self) -> Option<Cow<'_, TimeTrigger>> {
        let mut rescheduled = None;
        for trigger in self.triggers() {
            if let Source::Handle(handle) = &trigger.source {
                if let Some(time) = handle.time_trigger(trigger.code.as_ref()) {
                    let current: &mut Option<TimeTrigger> = rescheduled.get_or_insert(None);
                    if let Some(time) = time {
                        if current.as_ref().map_or(true, |c| time.at < c.at) {
                            *current = Some(time);
                        }
                    }
                }
            }
        }
        match rescheduled {
            Some(time) => time.map(Cow::Owned),
            None => self.deadline.as_ref().map(Cow::Borrowed),
        }
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
            || self.time().is_some_and(|d| d.has_passed(Instant::now()))
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
    /// [`Cancelled`](crate::Cancelled) with every reason that has fired.
    pub fn check(&self) -> Result<(), crate::Cancelled> {
        let deadline = self
            .time()
            .filter(|time| time.has_passed(Instant::now()))
            .map(|time| time.reason());
        let reasons: Vec<Reason> = deadline
            .into_iter()
            .chain(self.triggers().iter().filter_map(Trigger::fired))
            .collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(crate::Cancelled::new(reasons))
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

    #[inline]
    pub(crate) fn triggers(&self) -> &[Trigger] {
        self.triggers.as_slice()
    }
}

impl fmt::Debug for Fencing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<_> = self
            .triggers()
            .iter()
            .map(|t| {
                let kind = match t.source {
                    Source::Token(_) => "token",
                    Source::Future(_) => "future",
                    Source::Handle(_) => "handle",
                };
                (kind, t.code.clone())
            })
            .collect();
        f.debug_struct("Fencing")
            .field("deadline", &self.deadline)
            .field("triggers", &codes)
            .finish()
    }
}
