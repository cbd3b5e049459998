//! Time triggers: relative timeouts and absolute deadlines. All time
//! triggers of a `Fencing` collapse into one deadline (rule 3): the tightest
//! wins, with its code.

use super::Label;
use crate::reason::Reason;
use crate::time::{deadline_after, FAR_FUTURE};
use std::time::Duration;
use tokio::time::Instant;

/// One deadline, with the code and kind of the trigger that set it.
#[derive(Clone, Debug)]
pub(crate) struct TimeTrigger {
    pub(crate) at: Instant,
    /// `Some` for a relative timeout (its declared length), `None` for an
    /// absolute deadline.
    pub(crate) after: Option<Duration>,
    /// Its code, and the rules of the side of an `or` it came from, as for
    /// a trigger.
    pub(crate) label: Label,
}

impl TimeTrigger {
    /// A relative timeout anchored now, or `None` if it overflows the clock
    /// (no deadline, never a panic).
    pub(crate) fn timeout(after: Duration) -> Option<Self> {
        deadline_after(Instant::now(), after).map(|at| Self {
            at,
            after: Some(after),
            label: Label::None,
        })
    }

    /// An absolute deadline.
    pub(crate) fn deadline(at: Instant) -> Self {
        Self {
            at,
            after: None,
            label: Label::None,
        }
    }

    /// Whether it is known, without reading the clock, to be at most thirty
    /// years ahead of now (`FAR_FUTURE`): a relative timeout that long or
    /// shorter, since it was anchored when declared, before now.
    pub(crate) fn is_near(&self) -> bool {
        self.after.is_some_and(|after| after <= FAR_FUTURE)
    }

    pub(crate) fn has_passed(&self, now: Instant) -> bool {
        self.at <= now
    }

    /// The reason it fires with: a timeout's or a deadline's, under its code.
    pub(crate) fn reason(&self) -> Reason {
        match self.after {
            Some(after) => Reason::timeout(after, self.label.code().cloned()),
            None => Reason::deadline(self.label.code().cloned()),
        }
    }
}
