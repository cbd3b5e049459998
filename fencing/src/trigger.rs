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
mod rules;
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
pub(crate) use condition::{condition, condition_async, OnError};
pub(crate) use future::{future, future_with, BoxFuture, FutureSource};
pub(crate) use rules::{shorter, Graces, Policy, Rules};
#[cfg(feature = "signal")]
pub(crate) use signal::signal;
pub(crate) use time::TimeTrigger;
#[cfg(feature = "tokio-util")]
pub(crate) use token::cancellation_token;
pub(crate) use token::token;

use crate::fault;
use crate::handle::{self, FenceHandle};
use crate::reason::{Code, Reason};
use crate::token::tree::Node;
use std::borrow::Cow;
use std::collections::HashMap;
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

    /// What makes two declarations the same trigger, if they can be: the
    /// address of a token's node, or of a handle that took no deadline
    /// over. A future is moved into its trigger and a handle's takeover is
    /// built at each declaration, so neither can be declared twice.
    fn identity(&self) -> Option<usize> {
        match self {
            Self::Token(node) => Some(Arc::as_ptr(node) as usize),
            Self::Handle(handle) => Some(Arc::as_ptr(handle) as usize),
            Self::Future(_) | Self::Steer(_) => None,
        }
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

/// A trigger's code and, for one from a side of an `or`, the policy and
/// grace period of that side. Both in one field no larger than a code, so
/// that a trigger and a `Fencing` stay as small as before `or` existed: the
/// rules, which only a joined `Fencing` has, sit behind a pointer.
#[derive(Clone, Debug, Default)]
pub(crate) enum Label {
    #[default]
    None,
    Code(Code),
    Scoped(Arc<Scoped>),
}

/// See [`Label::Scoped`].
#[derive(Clone, Debug)]
pub(crate) struct Scoped {
    code: Option<Code>,
    rules: Arc<Rules>,
}

impl Label {
    pub(crate) fn new(code: Option<Code>, rules: Option<Arc<Rules>>) -> Self {
        match (code, rules) {
            (code, Some(rules)) => Self::Scoped(Arc::new(Scoped { code, rules })),
            (Some(code), None) => Self::Code(code),
            (None, None) => Self::None,
        }
    }

    #[inline]
    pub(crate) fn code(&self) -> Option<&Code> {
        match self {
            Self::None => None,
            Self::Code(code) => Some(code),
            Self::Scoped(scoped) => scoped.code.as_ref(),
        }
    }

    /// The rules of the side of an `or` it came from; `None` for a trigger
    /// declared on this `Fencing` or its ancestors.
    #[inline]
    pub(crate) fn rules(&self) -> Option<&Arc<Rules>> {
        match self {
            Self::None | Self::Code(_) => None,
            Self::Scoped(scoped) => Some(&scoped.rules),
        }
    }

    #[inline]
    pub(crate) fn set_code(&mut self, code: Code) {
        match self {
            Self::None | Self::Code(_) => *self = Self::Code(code),
            Self::Scoped(scoped) => Arc::make_mut(scoped).code = Some(code),
        }
    }
}

/// One declared trigger with its code.
#[derive(Clone)]
pub(crate) struct Trigger {
    pub(crate) source: Source,
    /// Its code, and the rules of the side of an `or` it came from.
    pub(crate) label: Label,
}

impl Trigger {
    pub(crate) fn new(source: Source, code: Option<Code>) -> Self {
        Self {
            source,
            label: Label::new(code, None),
        }
    }

    #[inline]
    pub(crate) fn code(&self) -> Option<&Code> {
        self.label.code()
    }

    /// Whether `other` is this very trigger: the same token, future or
    /// handle, under the same code and governed alike (one slot is then
    /// enough for both).
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        let same_source = match (&self.source, &other.source) {
            (Source::Token(a), Source::Token(b)) => Arc::ptr_eq(a, b),
            (Source::Future(a), Source::Future(b)) => Arc::ptr_eq(a, b),
            (Source::Handle(a), Source::Handle(b)) => Arc::ptr_eq(a, b),
            (Source::Steer(a), Source::Steer(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_source
            && self.code() == other.code()
            && Rules::same(self.label.rules(), other.label.rules())
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
            .map(|reason| reason.with_code(self.code()))
    }

    /// Registers `waker` (keeping one registration under `key`) and, for a
    /// future trigger, drives the future. Ready once the trigger has fired.
    pub(crate) fn poll_fired(&self, key: &mut Option<usize>, waker: &Waker) -> Poll<()> {
        if self.node().poll_cancelled(key, waker).is_ready() {
            return Poll::Ready(());
        }
        if let Source::Future(source) = &self.source {
            if fault::in_trigger(self.code(), || source.drive()) {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }

    /// Gives a future trigger one poll (a token needs none).
    pub(crate) fn drive(&self) {
        if let Source::Future(source) = &self.source {
            fault::in_trigger(self.code(), || source.drive());
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
            // The deadline taken over came from the same side as the handle.
            None => took_over.map(|time| {
                let time = match self.label.rules() {
                    None => Cow::Borrowed(time),
                    Some(rules) => Cow::Owned(TimeTrigger {
                        label: Label::new(time.label.code().cloned(), Some(Arc::clone(rules))),
                        ..time.clone()
                    }),
                };
                (time, Rank::TakenOver)
            }),
            Some(schedule) => schedule.map(|(at, after)| {
                let time = TimeTrigger {
                    at,
                    after,
                    label: self.label.clone(),
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
    Many(Arc<Many>),
}

/// Two or more triggers.
#[derive(Clone)]
pub(crate) struct Many {
    list: Vec<Trigger>,
    /// From `INDEX_FROM` triggers on, how many triggers of `list` have each
    /// identity (see [`Source::identity`]), so that a declaration finds in
    /// O(1) that it declares a trigger for the first time, the common case.
    index: Option<HashMap<usize, usize>>,
    /// The trigger the last builder step declared again (`Last::Duplicate`),
    /// kept here rather than in `Last`, so that `Fencing` stays small.
    duplicate: usize,
}

/// Up to this many triggers a declaration scans the list for an earlier
/// declaration of the same trigger: a few pointer comparisons, cheaper than
/// hashing. Past it a `Fencing` keeps an index, so that building one with
/// many triggers stays linear (a test declares 20,000).
const INDEX_FROM: usize = 16;

impl Many {
    /// How many triggers have identity `id`, if the list is indexed.
    fn count(&self, id: usize) -> Option<usize> {
        let index = self.index.as_ref()?;
        Some(index.get(&id).copied().unwrap_or(0))
    }
}

impl Triggers {
    #[inline]
    pub(crate) fn as_slice(&self) -> &[Trigger] {
        match self {
            Self::Empty => &[],
            Self::One(trigger) => std::slice::from_ref(trigger),
            Self::Many(many) => &many.list,
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
                let list = vec![first, trigger];
                *self = Self::Many(Arc::new(Many {
                    list,
                    index: None,
                    duplicate: 0,
                }));
            }
            Self::Many(many) => {
                let Many { list, index, .. } = Arc::make_mut(many);
                list.push(trigger);
                match index {
                    Some(index) => {
                        if let Some(id) = list.last().and_then(|t| t.source.identity()) {
                            *index.entry(id).or_default() += 1;
                        }
                    }
                    None if list.len() >= INDEX_FROM => {
                        let mut counts = HashMap::new();
                        for id in list.iter().filter_map(|t| t.source.identity()) {
                            *counts.entry(id).or_default() += 1;
                        }
                        *index = Some(counts);
                    }
                    None => {}
                }
            }
        }
    }

    /// The index of the trigger declared as `source` under `code`, if any.
    ///
    /// O(1) for a trigger that cannot be declared twice, and, in an indexed
    /// list, for one declared for the first time. Otherwise a scan, of a
    /// short list or of a long one that does declare this trigger already
    /// (a token under many codes), which is rare.
    #[inline]
    pub(crate) fn find(&self, source: &Source, code: Option<&Code>) -> Option<usize> {
        match self {
            // The first trigger, the common case.
            Self::Empty => None,
            Self::One(_) => Self::position(self.as_slice(), source.identity()?, code),
            Self::Many(many) => {
                let id = source.identity()?;
                if many.count(id) == Some(0) {
                    return None;
                }
                Self::position(&many.list, id, code)
            }
        }
    }

    /// The index of an earlier declaration of the last trigger under
    /// `code`, if any; as cheap as [`find`](Self::find).
    #[inline]
    pub(crate) fn find_before_last(&self, code: &Code) -> Option<usize> {
        // With one trigger or none, there is no earlier one.
        let Self::Many(many) = self else {
            return None;
        };
        let (last, earlier) = many.list.split_last()?;
        let id = last.source.identity()?;
        if many.count(id).is_some_and(|n| n < 2) {
            return None;
        }
        Self::position(earlier, id, Some(code))
    }

    /// Whether `trigger` is declared already, the very same (see
    /// [`Trigger::same_as`]): O(1) for a token or handle an indexed list
    /// does not hold yet, a scan otherwise.
    pub(crate) fn contains_same(&self, trigger: &Trigger) -> bool {
        if let (Self::Many(many), Some(id)) = (self, trigger.source.identity()) {
            if many.count(id) == Some(0) {
                return false;
            }
        }
        self.as_slice().iter().any(|t| t.same_as(trigger))
    }

    /// A declaration made here carries no rules of its own, so it is the
    /// same as an earlier one only if that carries none either: one that
    /// came from a side of an `or` keeps that side's policy and grace.
    fn position(triggers: &[Trigger], id: usize, code: Option<&Code>) -> Option<usize> {
        triggers.iter().position(|t| {
            t.source.identity() == Some(id) && t.code() == code && t.label.rules().is_none()
        })
    }

    /// Notes that the last builder step declared trigger `i` again.
    pub(crate) fn set_duplicate(&mut self, i: usize) {
        match self {
            // The one trigger there is.
            Self::Empty | Self::One(_) => debug_assert_eq!(i, 0),
            Self::Many(many) => Arc::make_mut(many).duplicate = i,
        }
    }

    /// The trigger the last builder step declared again.
    pub(crate) fn duplicate(&self) -> usize {
        match self {
            Self::Empty | Self::One(_) => 0,
            Self::Many(many) => many.duplicate,
        }
    }

    /// Removes the last trigger.
    pub(crate) fn pop(&mut self) {
        match self {
            Self::Empty => {}
            Self::One(_) => *self = Self::Empty,
            Self::Many(many) => {
                let Many { list, index, .. } = Arc::make_mut(many);
                let id = list.pop().and_then(|t| t.source.identity());
                if let (Some(index), Some(id)) = (index, id) {
                    if let Some(n) = index.get_mut(&id) {
                        *n -= 1;
                    }
                }
            }
        }
    }

    /// Sets the code of the last trigger.
    #[inline]
    pub(crate) fn set_last_code(&mut self, code: Code) {
        match self {
            Self::Empty => {}
            Self::One(trigger) => trigger.label.set_code(code),
            Self::Many(many) => {
                if let Some(last) = Arc::make_mut(many).list.last_mut() {
                    last.label.set_code(code);
                }
            }
        }
    }
}
