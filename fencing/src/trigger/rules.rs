//! What governs a trigger: the policies that decide whether a reason
//! cancels, and, for a trigger that came from a side of an `or`, that side's
//! policy and grace periods ([`Rules`], carried in the trigger's `Label`).

use crate::reason::{Code, Reason};
use std::fmt;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::Arc;
use std::time::Duration;

/// Decides, once per fired reason, whether it cancels: every policy
/// declared, in order, until one declines.
///
/// Asserted unwind safe so that `Fencing` stays `UnwindSafe` whatever the
/// closures capture: a policy is only ever called, and a panic in it is
/// caught where it is called, leaving no state of ours half-updated.
#[derive(Clone)]
pub(crate) struct Policy(pub(crate) Vec<PolicyFn>);

pub(crate) type PolicyFn = Arc<dyn Fn(&Reason) -> bool + Send + Sync>;

impl UnwindSafe for Policy {}
impl RefUnwindSafe for Policy {}

/// The policy and grace period that one side of an `or`
/// declared, carried by each trigger that came from that side, so that the
/// side's rules govern its own triggers only. Fence-wide rules declared on
/// the result apply on top: both policies must accept, and the shorter grace
/// period wins.
#[derive(Clone, Default)]
pub(crate) struct Rules {
    pub(crate) policy: Option<Policy>,
    /// The grace periods of each side the trigger came through (an `or` of
    /// an `or` has two), the shortest for a reason's code applying. Kept by
    /// code, not resolved for the trigger's: the reason a handle's slot
    /// fires with may carry the code of the deadline it took over.
    graces: Vec<Graces>,
}

/// One side's grace periods, fence-wide and by code.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Graces {
    grace: Option<Duration>,
    by_code: Vec<(Code, Duration)>,
}

impl Graces {
    /// A side's grace periods, if it declares any.
    pub(crate) fn new(grace: Option<Duration>, by_code: &[(Code, Duration)]) -> Option<Self> {
        (grace.is_some() || !by_code.is_empty()).then(|| Self {
            grace,
            by_code: by_code.to_vec(),
        })
    }

    fn grace_of(&self, code: Option<&Code>) -> Option<Duration> {
        code.and_then(|code| {
            self.by_code
                .iter()
                .find(|(c, _)| c == code)
                .map(|(_, grace)| *grace)
        })
        .or(self.grace)
    }
}

impl Rules {
    /// The rules of a trigger with rules `own`, taken from a side whose
    /// fence-wide rules are `side_policy` and `side_graces`: its own rules,
    /// then the side's. `None` when there are none (the common case:
    /// nothing is allocated).
    pub(crate) fn scoped(
        own: Option<&Arc<Self>>,
        side_policy: Option<&Policy>,
        side_graces: Option<Graces>,
    ) -> Option<Arc<Self>> {
        if side_policy.is_none() && side_graces.is_none() {
            return own.cloned();
        }
        let own = own.map(|own| &**own);
        let policy = match (own.and_then(|own| own.policy.as_ref()), side_policy) {
            (Some(Policy(first)), Some(Policy(second))) => {
                Some(Policy(first.iter().chain(second).cloned().collect()))
            }
            (one, other) => one.or(other).cloned(),
        };
        let mut graces = own.map_or_else(Vec::new, |own| own.graces.clone());
        graces.extend(side_graces);
        Some(Arc::new(Self { policy, graces }))
    }

    /// The grace period the sides give a reason with `code`: the shortest.
    pub(crate) fn grace_of(&self, code: Option<&Code>) -> Option<Duration> {
        self.graces.iter().fold(None, |shortest, graces| {
            shorter(shortest, graces.grace_of(code))
        })
    }

    /// Whether two triggers governed by `a` and `b` are governed alike.
    pub(crate) fn same(a: Option<&Arc<Self>>, b: Option<&Arc<Self>>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                fn policies(rules: &Rules) -> &[PolicyFn] {
                    rules.policy.as_ref().map_or(&[], |Policy(p)| p.as_slice())
                }
                let (pa, pb) = (policies(a), policies(b));
                pa.len() == pb.len()
                    && pa.iter().zip(pb).all(|(x, y)| Arc::ptr_eq(x, y))
                    && a.graces == b.graces
            }
            _ => false,
        }
    }
}

impl fmt::Debug for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rules")
            .field("policy", &self.policy.is_some())
            .field("graces", &self.graces)
            .finish()
    }
}

/// The shorter of two declared grace periods, `None` being undeclared.
pub(crate) fn shorter(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
