//! [`FenceHandle`]: manual control of the fences armed with it.

use crate::reason::{Message, Reason};
use crate::sync::lock;
use crate::time::deadline_after;
use crate::token::tree::Node;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Controls the fences armed with it, from any task or thread: cancels them
/// with a reason, and moves their deadline earlier or later (quattro's
/// `CancelScope`, asyncio's `Timeout.reschedule`).
///
/// Declare it with [`Fencing::handle`](crate::Fencing::handle), with a code;
/// keep a clone to steer. Cancelling works before the fence starts, too (its
/// body then never starts).
///
/// # Which deadline a handle moves
///
/// Declared on a `Fencing` built from `Fencing::new()`, at a boundary, a
/// handle takes over the deadline declared before it: in
/// `Fencing::new().timeout(d).handle(&h)`, a [`reschedule`](Self::reschedule)
/// replaces `d`, earlier or later (quattro's deadline setter), and removes
/// it with an overflowing duration. Declared on a `Fencing` derived from the
/// context (`current().handle(&h)`), whose deadlines may come from outside,
/// it takes nothing over: its deadline is one more in effect, so it can
/// tighten the deadline and never extend it, as a Go context derived with
/// `WithDeadline` can only tighten its parent's.
///
/// Every other deadline in effect still applies: those the context brought
/// in, those declared after the handle, and those derived inside its fence.
/// So the effective deadline is always the tightest of them all (rules 3
/// and 16), a moved handle included, and the tightest one's code fires: an
/// idle timeout moved later never outlasts the request's budget, and a
/// tighter budget derived inside still fires first, under its own code. At
/// the same instant as another deadline, a reschedule counts as declared
/// last, so the other one's code fires.
///
/// A reschedule is seen at once by
/// [`Fencing::effective_deadline`](crate::Fencing::effective_deadline) and
/// by running fences, which re-arm their timer.
///
/// # Examples
///
/// An idle timeout: cancel if no progress is made for 5 s.
///
/// ```
/// use fencing::{FenceHandle, Fencing};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let idle = FenceHandle::new();
/// idle.reschedule_after(Duration::from_secs(5));
///
/// let received = Fencing::new()
///     .handle(&idle)
///     .code("idle")
///     .run(async {
///         for chunk in 1.. {
///             tokio::time::sleep(Duration::from_secs(chunk)).await; // slower and slower
///             idle.reschedule_after(Duration::from_secs(5)); // progress: 5 s more
///         }
///     })
///     .await;
/// let cancelled = received.unwrap_err();
/// assert!(cancelled.cancelled_by("idle"));
/// assert!(cancelled.is_timeout());
/// # }
/// ```
#[derive(Clone)]
pub struct FenceHandle {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Cancellation, and the waiter list through which a reschedule wakes
    /// the fences armed with this handle.
    node: Arc<Node>,
    /// `None` until rescheduled; then `Some(None)` for "no deadline".
    schedule: Mutex<Option<Option<Schedule>>>,
}

#[derive(Clone, Copy, Debug)]
struct Schedule {
    at: Instant,
    /// `Some` when set as a relative timeout.
    after: Option<Duration>,
}

impl FenceHandle {
    /// Creates a handle that controls nothing until declared in a `Fencing`.
    ///
    /// # Examples
    ///
    /// ```
    /// let handle = fencing::FenceHandle::new();
    /// assert!(!handle.is_cancelled());
    /// assert_eq!(handle.deadline(), None);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                node: Node::new(),
                schedule: Mutex::new(None),
            }),
        }
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Cancels every fence armed with this handle, with the message `"fence
    /// cancelled"`. Returns `false`, changing nothing, if it was cancelled
    /// already.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let handle = fencing::FenceHandle::new();
    /// let fenced = fencing::Fencing::new().handle(&handle).code("admin");
    /// assert!(handle.cancel());
    /// let err = fenced.run(async {}).await.unwrap_err();
    /// assert!(err.cancelled_by("admin"));
    /// # }
    /// ```
    pub fn cancel(&self) -> bool {
        self.cancel_with("fence cancelled")
    }

    /// Cancels every fence armed with this handle with `message`. Returns
    /// `false`, changing nothing, if it was cancelled already.
    ///
    /// # Examples
    ///
    /// ```
    /// let handle = fencing::FenceHandle::new();
    /// assert!(handle.cancel_with("operator request"));
    /// assert!(!handle.cancel_with("again"));
    /// ```
    pub fn cancel_with(&self, message: impl Into<Message>) -> bool {
        self.inner.node.cancel(Reason::token(message))
    }

    /// Returns `true` if the handle was cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// let handle = fencing::FenceHandle::new();
    /// handle.cancel();
    /// assert!(handle.is_cancelled());
    /// ```
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.inner.node.is_cancelled()
    }

    /// Moves the deadline of every fence armed with this handle to `at`,
    /// earlier or later, replacing the deadline the handle took over, if any (see
    /// [which deadline a handle moves](Self#which-deadline-a-handle-moves));
    /// the tightest deadline in effect still wins. A deadline in the past
    /// fires at the fence's next poll. The reason is a
    /// [`Deadline`](crate::ReasonKind::Deadline) under the handle's code.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{FenceHandle, Fencing};
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let handle = FenceHandle::new();
    /// let fencing = Fencing::new().timeout(Duration::from_secs(1)).handle(&handle);
    /// let later = Instant::now() + Duration::from_secs(60);
    /// handle.reschedule(later);
    /// assert_eq!(fencing.effective_deadline(), Some(later), "moved later");
    /// # }
    /// ```
    pub fn reschedule(&self, at: Instant) {
        self.set(Some(Schedule { at, after: None }));
    }

    /// Moves the deadline of every fence armed with this handle to `after`
    /// from now, as [`reschedule`](Self::reschedule) does. A duration that
    /// overflows the clock removes the handle's deadline, and the one it
    /// took over.
    /// The reason is a [`Timeout`](crate::ReasonKind::Timeout) under the
    /// handle's code.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::FenceHandle;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let handle = FenceHandle::new();
    /// handle.reschedule_after(Duration::from_secs(5));
    /// assert!(handle.deadline().is_some());
    /// handle.reschedule_after(Duration::MAX);
    /// assert_eq!(handle.deadline(), None, "an overflowing duration: no deadline");
    /// # }
    /// ```
    pub fn reschedule_after(&self, after: Duration) {
        let schedule = deadline_after(Instant::now(), after).map(|at| Schedule {
            at,
            after: Some(after),
        });
        self.set(schedule);
    }

    fn set(&self, schedule: Option<Schedule>) {
        *lock(&self.inner.schedule) = Some(schedule);
        // Running fences re-read the schedule and re-arm their timer.
        self.inner.node.wake_all();
    }

    /// The deadline set by the last reschedule, or `None` if there is none
    /// (never rescheduled, or rescheduled with an overflowing duration).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use tokio::time::Instant;
    ///
    /// let handle = fencing::FenceHandle::new();
    /// let at = Instant::now();
    /// handle.reschedule(at);
    /// assert_eq!(handle.deadline(), Some(at));
    /// # }
    /// ```
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.schedule().flatten().map(|(at, _)| at)
    }
}

impl Inner {
    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// `None` if never rescheduled; else the deadline the last reschedule
    /// set and, for a relative one, its length (itself `None` for "no
    /// deadline").
    #[allow(clippy::type_complexity)] // read once, by `trigger`
    pub(crate) fn schedule(&self) -> Option<Option<(Instant, Option<Duration>)>> {
        lock(&self.schedule).map(|schedule| schedule.map(|s| (s.at, s.after)))
    }
}

impl Default for FenceHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FenceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FenceHandle")
            .field("reason", &self.inner.node.reason())
            .field("deadline", &self.deadline())
            .finish()
    }
}
