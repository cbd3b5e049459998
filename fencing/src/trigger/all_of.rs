//! AND composition: a trigger that fires once all of its parts have fired.

use crate::fencing::Fencing;
use crate::reason::{Reason, ReasonKind};
use std::future::{poll_fn, Future};
use std::task::Poll;

impl Fencing {
    /// Adds a trigger that fires once every part has fired, each part being
    /// a `Fencing` that fires when any of its own triggers does (so "a
    /// minimum time has elapsed AND the data is ready" is two parts). Time
    /// triggers inside the parts work as anywhere else. OR needs no
    /// combinator: it is what a `Fencing` already is.
    ///
    /// The reason is an [`AllOf`](ReasonKind::AllOf) whose message names
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
        // Every part is armed at once, so each part's time counts from the
        // first poll, not from when the parts before it fired.
        let mut waits: Vec<_> = parts
            .into_iter()
            .map(|part| Box::pin(part.cancelled()))
            .collect();
        let mut fired: Vec<Option<String>> = vec![None; waits.len()];
        self.trigger(Box::pin(async move {
            poll_fn(|cx| {
                let mut pending = false;
                for (wait, fired) in waits.iter_mut().zip(&mut fired) {
                    if fired.is_some() {
                        continue;
                    }
                    match wait.as_mut().poll(cx) {
                        Poll::Ready(cancelled) => {
                            let reasons: Vec<String> = cancelled
                                .reasons()
                                .iter()
                                .map(ToString::to_string)
                                .collect();
                            *fired = Some(reasons.join(", "));
                        }
                        Poll::Pending => pending = true,
                    }
                }
                if pending {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            let fired: Vec<String> = fired.into_iter().flatten().collect();
            Reason::with_kind(ReasonKind::AllOf, format!("all of: {}", fired.join("; ")))
        }))
    }
}
