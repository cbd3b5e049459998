//! What a [`Fencing`] is, as data: its time triggers, its other triggers
//! (each a slot a fence arms), and what few fences use (grace periods, a
//! policy, a registration). The builder (`fencing.rs`) adds to it; the
//! context holds one; the fence engine reads it. Every public method of
//! `Fencing` is in `fencing.rs`; here are only the reads that the context
//! and the fence need, so that neither depends on the builder.

use crate::fault;
#[cfg(doc)]
use crate::handle::FenceHandle;
use crate::reason::{Code, Reason};
use crate::registry::{ProgressSink, Registry};
use crate::trigger::{self, shorter, Graces, Policy, Rules, TimeTrigger, Trigger, Triggers};
use std::borrow::Cow;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

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
/// ignored, and so is a `code` that follows it. A [`FenceHandle`] can move
/// the deadline declared before it; whatever it is moved to, the deadline in
/// effect is the tightest of all. A relative
/// [`timeout`](Self::timeout) is anchored when it is declared, not when the
/// fence runs, so a budget declared in middleware counts from there. A
/// duration too large to add to the clock means "no deadline"; a deadline
/// that has already passed means "already fired".
///
/// # Other triggers never merge
///
/// Each token or future trigger arms on its own. The same token declared
/// under two codes is reported under both when it is cancelled. Declared
/// again under the same code, or again without one, it is the same
/// declaration: the fence waits on it once and reports it once, where it
/// was first declared. (So a boundary and the inner code below it may both
/// declare the shutdown token under `"shutdown"`.)
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
    /// The tightest declared deadline (rule 3); a handle declared on a root
    /// `Fencing` takes it over.
    pub(crate) deadline: Option<TimeTrigger>,
    pub(crate) triggers: Triggers,
    /// What [`code`](Fencing::code) labels.
    pub(crate) last: Last,
    /// `false` for a `Fencing` built from `Fencing::new()`, `true` once
    /// derived from the context (`current()`, a binding): its deadline may
    /// come from outside, so a handle declared on it takes nothing over.
    pub(crate) derived: bool,
    /// What few fences use, behind one pointer so that the common
    /// `Fencing` stays small to move, clone and bind.
    pub(crate) extra: Option<Arc<Extra>>,
}

#[derive(Clone, Default)]
pub(crate) struct Extra {
    pub(crate) grace: Option<Duration>,
    /// Grace periods by code, overriding `grace` for reasons with that
    /// code; one entry per code, the shortest declared.
    pub(crate) grace_by_code: Vec<(Code, Duration)>,
    pub(crate) policy: Option<Policy>,
    /// Where each fence run from it registers: one entry per registry and
    /// name ([`Fencing::or`] joins those of both sides).
    pub(crate) registrations: Vec<(Registry, Code)>,
    /// Whether some trigger carries [`Rules`] of its own (from a side of an
    /// [`or`](Fencing::or)) with a policy, and with a grace period.
    pub(crate) scoped_policy: bool,
    pub(crate) scoped_grace: bool,
    /// The operations that progress reported in this context goes to; set
    /// by a registered fence on the `Fencing` it binds to its body.
    pub(crate) progress: Option<Arc<[ProgressSink]>>,
}

impl Extra {
    /// The grace periods declared here, as a side of an `or` hands them to
    /// its triggers.
    pub(crate) fn graces(&self) -> Option<Graces> {
        Graces::new(self.grace, &self.grace_by_code)
    }

    /// Whether a policy governs some reason: fence-wide, or a side's.
    fn has_policy(&self) -> bool {
        self.policy.is_some() || self.scoped_policy
    }

    /// Whether a grace period is declared: fence-wide, for a code, or by a
    /// side for its triggers.
    fn has_grace(&self) -> bool {
        self.grace.is_some() || !self.grace_by_code.is_empty() || self.scoped_grace
    }

    /// What the result of [`Fencing::or`] keeps of its two sides' `Extra`:
    /// both sides' registrations and progress sinks, each once, and whether
    /// their triggers carry rules of their own. No rule is fence-wide: each
    /// side's went to its own triggers.
    pub(crate) fn joined(sides: &[Option<Arc<Self>>]) -> Self {
        let mut joined = Self::default();
        let mut sinks: Vec<ProgressSink> = Vec::new();
        for side in sides.iter().flatten() {
            joined.scoped_policy |= side.has_policy();
            joined.scoped_grace |= side.has_grace();
            for (registry, name) in &side.registrations {
                let listed = joined
                    .registrations
                    .iter()
                    .any(|(r, n)| r.is(registry) && n == name);
                if !listed {
                    joined.registrations.push((registry.clone(), name.clone()));
                }
            }
            for sink in side.progress.as_deref().unwrap_or(&[]) {
                if !sinks.iter().any(|s| s.is(sink)) {
                    sinks.push(sink.clone());
                }
            }
        }
        if !sinks.is_empty() {
            joined.progress = Some(sinks.into());
        }
        joined
    }

    /// The grace period a reason with `code` (or none) gets, as declared
    /// fence-wide: the one for its code, else the fence-wide one.
    pub(crate) fn grace_of(&self, code: Option<&Code>) -> Option<Duration> {
        code.and_then(|code| {
            self.grace_by_code
                .iter()
                .find(|(c, _)| c == code)
                .map(|(_, grace)| *grace)
        })
        .or(self.grace)
    }
}

/// What [`Fencing::code`] labels: the trigger declared just before it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Last {
    /// Nothing, or a time trigger that lost the merge or overflowed.
    Nothing,
    /// The time trigger that is now the deadline.
    Time,
    /// The last entry of `triggers`.
    Trigger,
    /// A trigger declared again with the code of an earlier declaration,
    /// the entry [`Triggers::duplicate`]: it was not added (one trigger,
    /// one waiter, one reason), and a `code` that follows declares it under
    /// that code.
    Duplicate,
}

impl Fencing {
    /// The empty `Fencing`: no triggers, never fires.
    pub(crate) const fn empty() -> Self {
        Self {
            deadline: None,
            triggers: Triggers::Empty,
            last: Last::Nothing,
            derived: false,
            extra: None,
        }
    }

    /// A clone to derive from (`current()`, a binding): a `code` right after
    /// it labels nothing instead of relabelling the last trigger of the
    /// original, and a handle declared on it takes over none of the
    /// deadlines it inherits (it can tighten them, never extend them).
    pub(crate) fn derived(&self) -> Self {
        self.clone().into_derived()
    }

    pub(crate) fn into_derived(mut self) -> Self {
        self.last = Last::Nothing;
        self.derived = true;
        self
    }

    #[inline]
    pub(crate) fn triggers(&self) -> &[Trigger] {
        self.triggers.as_slice()
    }

    /// The deadline in effect and the trigger that set it: the tightest of
    /// every deadline in effect, declared or a handle's (rules 3 and 16).
    pub(crate) fn effective(&self) -> Option<Cow<'_, TimeTrigger>> {
        trigger::effective(self.deadline.as_ref(), self.triggers())
    }

    pub(crate) fn extra(&self) -> Option<&Extra> {
        self.extra.as_deref()
    }

    pub(crate) fn extra_mut(&mut self) -> &mut Extra {
        Arc::make_mut(self.extra.get_or_insert_with(Arc::default))
    }

    pub(crate) fn registrations(&self) -> &[(Registry, Code)] {
        self.extra()
            .map_or(&[], |extra| extra.registrations.as_slice())
    }

    /// The operations progress reported in this context goes to, if any.
    pub(crate) fn progress(&self) -> Option<Arc<[ProgressSink]>> {
        self.extra()?.progress.clone()
    }

    pub(crate) fn has_policy(&self) -> bool {
        self.extra().is_some_and(Extra::has_policy)
    }

    /// Whether `reason`, from a trigger governed by `rules`, may cancel:
    /// `true` unless the trigger's own policy (from a side of an `or`) or
    /// the fence-wide one declines it. A policy that panics accepts it: the
    /// panic is caught and reported as a fault, and the next policy is
    /// consulted.
    pub(crate) fn accepts(&self, rules: Option<&Rules>, reason: &Reason) -> bool {
        let Some(extra) = self.extra() else {
            return true;
        };
        let own = rules.and_then(|rules| rules.policy.as_ref());
        own.into_iter()
            .chain(extra.policy.as_ref())
            .flat_map(|policy| &policy.0)
            .all(|policy| {
                catch_unwind(AssertUnwindSafe(|| policy(reason))).unwrap_or_else(|payload| {
                    let error = fault::panic_message(&*payload);
                    fault::report(reason.code(), "policy panicked", &error);
                    true
                })
            })
    }

    /// The grace period a reason with `code` (or none) gets, as declared.
    pub(crate) fn grace_of(&self, code: Option<&Code>) -> Option<Duration> {
        self.extra()?.grace_of(code)
    }

    /// Whether any grace period is declared, fence-wide, for a code, or
    /// for a trigger that came from a side of an `or`.
    pub(crate) fn has_grace(&self) -> bool {
        self.extra().is_some_and(Extra::has_grace)
    }

    /// The grace period a fence waits out for `reason`, from a trigger
    /// governed by `rules`: the shorter of the trigger's own and the one
    /// declared fence-wide for the reason's code. A zero one is none at all,
    /// so the body is dropped in the poll that sees the trigger.
    pub(crate) fn grace_for_reason(
        &self,
        rules: Option<&Rules>,
        reason: &Reason,
    ) -> Option<Duration> {
        let extra = self.extra()?;
        let own = rules
            .filter(|_| extra.scoped_grace)
            .and_then(|rules| rules.grace_of(reason.code()));
        shorter(own, self.grace_of(reason.code())).filter(|grace| !grace.is_zero())
    }
}

impl Default for Fencing {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Fencing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<_> = self
            .triggers()
            .iter()
            .map(|t| (t.kind(), t.code().cloned()))
            .collect();
        f.debug_struct("Fencing")
            .field("deadline", &self.deadline)
            .field("triggers", &codes)
            .finish()
    }
}
