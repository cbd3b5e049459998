//! The triggers a [`Fencing`](crate::Fencing) declares besides its time
//! triggers: each one a *slot* that a fence arms.
//!
//! Every slot is a node of the token engine with the code it was declared
//! under. A token trigger is the token's own node; a future trigger owns a
//! parentless node that it cancels when its future completes; a
//! [`FenceHandle`](crate::FenceHandle) has a node for its cancellation and,
//! once rescheduled, a deadline of its own; a fence's registry entry (not
//! declared here, but armed the same way) has a node the registry cancels.
//! A fence therefore waits on every slot the same way and reads every reason
//! from a node. The files below hold each kind's constructor.

mod all_of;
mod condition;
mod future;
#[cfg(feature = "signal")]
mod signal;
#[cfg(all(test, loom))]
mod tests;
mod time;
mod token;

pub use condition::Verdict;
#[cfg(feature = "signal")]
pub use signal::{OsSignal, Shutdown};

pub(crate) use all_of::all_of;
pub(crate) use condition::{condition, condition_async};
pub(crate) use future::{future, future_with, BoxFuture, FutureSource};
#[cfg(feature = "signal")]
pub(crate) use signal::signal;
pub(crate) use time::TimeTrigger;
#[cfg(feature = "tokio-util")]
pub(crate) use token::cancellation_token;
pub(crate) use token::token;

use crate::handle::{self, FenceHandle};
use crate::reason::{Code, Reason};
use crate::token::tree::Node;
use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Poll, Waker};

#[derive(Clone)]
pub(crate) enum Source {
    Token(Arc<Node>),
    Future(Arc<FutureSource>),
    /// A handle declared with no deadline before it in its scope.
    Handle(Arc<handle::Inner>),
    /// A handle that took over the deadline declared before it on a root
    /// `Fencing`: that deadline is in effect until the handle is
    /// rescheduled, and then the handle's own.
    Steer(Arc<Steer>),
}

pub(crate) struct Steer {
    handle: Arc<handle::Inner>,
    took_over: TimeTrigger,
}

impl Source {
    /// The slot of a shared future trigger.
    pub(crate) fn future(future: BoxFuture) -> Self {
        Self::Future(FutureSource::new(future))
    }

    /// The slot of a handle, which takes `took_over` over, if any: the
    /// deadline declared before it on a root `Fencing`.
    pub(crate) fn handle(handle: &FenceHandle, took_over: Option<TimeTrigger>) -> Self {
        let handle = Arc::clone(handle.inner());
        match took_over {
            None => Self::Handle(handle),
            Some(took_over) => Self::Steer(Arc::new(Steer { handle, took_over })),
        }
    }
}

/// How a deadline candidate ranks among those at the same instant (rule 3:
/// an equal one keeps the existing). A deadline a handle took over was
/// declared before every deadline still declared (the handle took over all
/// that were declared before it); a reschedule counts as declared last.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Rank {
    TakenOver,
    Declared,
    Rescheduled,
}

/// The deadline in effect for a `Fencing`: the tightest of every candidate,
/// the declared deadline (`declared`) and each handle's, by instant, then
/// [`Rank`], then slot order.
pub(crate) fn effective<'a>(
    declared: Option<&'a TimeTrigger>,
    triggers: &'a [Trigger],
) -> Option<Cow<'a, TimeTrigger>> {
    let mut best = declared.map(|time| (Cow::Borrowed(time), Rank::Declared, 0));
    for (i, trigger) in triggers.iter().enumerate() {
        let Some((time, rank)) = trigger.deadline() else {
            continue;
        };
        let tighter = best.as_ref().map_or(true, |(current, current_rank, j)| {
            (time.at, rank, i) < (current.at, *current_rank, *j)
        });
        if tighter {
            best = Some((time, rank, i));
        }
    }
    best.map(|(time, ..)| time)
}

/// One declared trigger with its code.
#[derive(Clone)]
pub(crate) struct Trigger {
    pub(crate) source: Source,
    pub(crate) code: Option<Code>,
}

impl Trigger {
    pub(crate) fn new(source: Source, code: Option<Code>) -> Self {
        Self { source, code }
    }

    fn node(&self) -> &Node {
        match &self.source {
            Source::Token(node) => node,
            Source::Future(source) => source.node(),
            Source::Handle(handle) => handle.node(),
            Source::Steer(steer) => steer.handle.node(),
        }
    }

    /// What kind of trigger it is, for `Debug`.
    pub(crate) fn kind(&self) -> &'static str {
        match self.source {
            Source::Token(_) => "token",
            Source::Future(_) => "future",
            Source::Handle(_) | Source::Steer(_) => "handle",
        }
    }

    /// Whether this trigger has fired: one atomic load.
    pub(crate) fn has_fired(&self) -> bool {
        self.node().is_cancelled()
    }

    /// The reason this trigger fired with, under its declared code, or
    /// `None` if it has not fired.
    pub(crate) fn fired(&self) -> Option<Reason> {
        self.node()
            .reason()
            .map(|reason| reason.with_code(self.code.as_ref()))
    }

    /// Registers `waker` (keeping one registration under `key`) and, for a
    /// future trigger, drives the future. Ready once the trigger has fired.
    pub(crate) fn poll_fired(&self, key: &mut Option<usize>, waker: &Waker) -> Poll<()> {
        if self.node().poll_cancelled(key, waker).is_ready() {
            return Poll::Ready(());
        }
        if let Source::Future(source) = &self.source {
            if source.drive() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }

    /// Gives a future trigger one poll (a token needs none).
    pub(crate) fn drive(&self) {
        if let Source::Future(source) = &self.source {
            source.drive();
        }
    }

    pub(crate) fn deregister(&self, key: &mut Option<usize>) {
        self.node().deregister(key);
    }

    /// The deadline this slot puts in effect, if any, with its rank: a
    /// handle's, under the handle's code, once it was rescheduled (none if
    /// rescheduled to "no deadline"); before that, the deadline it took
    /// over, under that deadline's own code.
    fn deadline(&self) -> Option<(Cow<'_, TimeTrigger>, Rank)> {
        let (handle, took_over) = match &self.source {
            Source::Handle(handle) => (handle, None),
            Source::Steer(steer) => (&steer.handle, Some(&steer.took_over)),
            Source::Token(_) | Source::Future(_) => return None,
        };
        match handle.schedule() {
            None => took_over.map(|time| (Cow::Borrowed(time), Rank::TakenOver)),
            Some(schedule) => schedule.map(|(at, after)| {
                let time = TimeTrigger {
                    at,
                    after,
                    code: self.code.clone(),
                };
                (Cow::Owned(time), Rank::Rescheduled)
            }),
        }
    }
}

/// The non-time triggers of a `Fencing`, in declaration order. One trigger,
/// the common case, is stored inline so declaring it allocates nothing.
///
/// More are shared behind one `Arc` between clones. A builder step on a
/// `Fencing` that shares its list with no clone pushes in place (amortised
/// O(1)); the first step after a clone copies the list once, so a clone is
/// never changed by what is derived from it.
#[derive(Clone)]
pub(crate) enum Triggers {
    Empty,
    One(Trigger),
    Many(Arc<Vec<Trigger>>),
}

impl Triggers {
    #[inline]
    pub(crate) fn as_slice(&self) -> &[Trigger] {
        match self {
            Self::Empty => &[],
            Self::One(trigger) => std::slice::from_ref(trigger),
            Self::Many(triggers) => triggers,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, trigger: Trigger) {
        match self {
            Self::Empty => *self = Self::One(trigger),
            Self::One(_) => {
                let Self::One(first) = std::mem::replace(self, Self::Empty) else {
                    unreachable!("matched above");
                };
                *self = Self::Many(Arc::new(vec![first, trigger]));
            }
            Self::Many(triggers) => Arc::make_mut(triggers).push(trigger),
        }
    }

    /// Sets the code of the last trigger.
    #[inline]
    pub(crate) fn set_last_code(&mut self, code: Code) {
        match self {
            Self::Empty => {}
            Self::One(trigger) => trigger.code = Some(code),
            Self::Many(triggers) => {
                if let Some(last) = Arc::make_mut(triggers).last_mut() {
                    last.code = Some(code);
                }
            }
        }
    }
}
