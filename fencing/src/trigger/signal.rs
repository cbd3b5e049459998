//! OS signals as triggers, and a process-level shutdown helper.

use super::BoxFuture;
use crate::reason::{Reason, ReasonKind};
use crate::token::Token;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
#[cfg(not(unix))]
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// An OS signal a fence can be stopped by.
///
/// [`Interrupt`](Self::Interrupt) (ctrl-c) exists everywhere; the others on
/// unix only. More may be added.
///
/// # Examples
///
/// ```
/// use fencing::OsSignal;
///
/// assert_eq!(OsSignal::Interrupt.to_string(), if cfg!(unix) { "SIGINT" } else { "ctrl-c" });
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OsSignal {
    /// SIGINT on unix (ctrl-c), ctrl-c elsewhere.
    Interrupt,
    /// SIGTERM: the polite request to stop that service managers send.
    #[cfg(unix)]
    Terminate,
    /// SIGHUP.
    #[cfg(unix)]
    Hangup,
    /// SIGQUIT.
    #[cfg(unix)]
    Quit,
}

impl OsSignal {
    /// The signal's conventional name: `"SIGTERM"`, `"SIGINT"`, or
    /// `"ctrl-c"` off unix.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(unix)]
    /// assert_eq!(fencing::OsSignal::Terminate.name(), "SIGTERM");
    /// ```
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(unix)]
            Self::Interrupt => "SIGINT",
            #[cfg(not(unix))]
            Self::Interrupt => "ctrl-c",
            #[cfg(unix)]
            Self::Terminate => "SIGTERM",
            #[cfg(unix)]
            Self::Hangup => "SIGHUP",
            #[cfg(unix)]
            Self::Quit => "SIGQUIT",
        }
    }

    fn reason(self) -> Reason {
        Reason::with_kind(ReasonKind::Signal, format!("received {}", self.name()))
    }
}

impl fmt::Display for OsSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A registered listener for one signal.
enum Listener {
    #[cfg(unix)]
    Unix(tokio::signal::unix::Signal),
    #[cfg(not(unix))]
    CtrlC(Pin<Box<dyn Future<Output = io::Result<()>> + Send>>),
}

impl Listener {
    /// Registers with tokio's signal driver; from here on the signal no
    /// longer has its default effect on the process.
    fn new(signal: OsSignal) -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::SignalKind;
            let kind = match signal {
                OsSignal::Interrupt => SignalKind::interrupt(),
                OsSignal::Terminate => SignalKind::terminate(),
                OsSignal::Hangup => SignalKind::hangup(),
                OsSignal::Quit => SignalKind::quit(),
            };
            tokio::signal::unix::signal(kind).map(Self::Unix)
        }
        #[cfg(not(unix))]
        {
            let OsSignal::Interrupt = signal;
            Ok(Self::CtrlC(Box::pin(tokio::signal::ctrl_c())))
        }
    }

    /// Ready each time the signal arrives. If the signal driver is gone
    /// (its runtime is shutting down), never ready again.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            #[cfg(unix)]
            Self::Unix(signal) => match signal.poll_recv(cx) {
                Poll::Ready(Some(())) => Poll::Ready(()),
                Poll::Ready(None) | Poll::Pending => Poll::Pending,
            },
            #[cfg(not(unix))]
            Self::CtrlC(ctrl_c) => match ctrl_c.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => {
                    *ctrl_c = Box::pin(tokio::signal::ctrl_c());
                    Poll::Ready(())
                }
                Poll::Ready(Err(_)) | Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// Waits for the first of `listeners` to receive its signal.
async fn first(listeners: &mut [(OsSignal, Listener)]) -> OsSignal {
    poll_fn(|cx| {
        for (signal, listener) in listeners.iter_mut() {
            if listener.poll_recv(cx).is_ready() {
                return Poll::Ready(*signal);
            }
        }
        Poll::Pending
    })
    .await
}

/// An OS signal as a future trigger: it registers with tokio's signal
/// driver when first polled (never firing if that fails) and fires with
/// `"received SIGTERM"` (and so on). See [`Fencing::signal`](crate::Fencing::signal).
pub(crate) fn signal(signal: OsSignal) -> BoxFuture {
    Box::pin(async move {
        match Listener::new(signal) {
            Ok(listener) => {
                first(&mut [(signal, listener)]).await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
        signal.reason()
    })
}

/// Process-level shutdown in two steps. The first of the listened signals
/// cancels the [graceful token](Self::token): fences declared with it stop
/// their work and the application drains. A second signal, or the
/// escalation delay after the first, cancels the [hard token](Self::hard_token)
/// with a distinct reason, so the application can stop waiting and exit.
///
/// The signals are registered when the `Shutdown` is created, and stay
/// registered for the life of the process; see the caveats of
/// [`Fencing::signal`](crate::Fencing::signal).
///
/// # Examples
///
/// ```no_run
/// use fencing::{Fencing, Shutdown, OsSignal};
/// use std::time::Duration;
///
/// # async fn serve() {}
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let shutdown = Shutdown::listen([OsSignal::Interrupt], Some(Duration::from_secs(30)))?;
/// let requests = Fencing::new().token(&shutdown.token()).code("shutdown");
/// let hard = shutdown.hard_token();
///
/// tokio::select! {
///     _ = requests.run(serve()) => {} // drained: every fence saw "shutdown"
///     reason = hard.cancelled() => {
///         eprintln!("forced exit: {}", reason.message()); // second signal or 30 s
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
#[derive(Debug, Clone)]
pub struct Shutdown {
    graceful: Token,
    hard: Token,
}

impl Shutdown {
    /// Registers `signals` and starts listening in a task of its own.
    ///
    /// The first signal cancels [`token`](Self::token) with `"received
    /// SIGTERM"` (say). Then a second signal (any of them) cancels
    /// [`hard_token`](Self::hard_token) with `"received SIGINT again"`, or,
    /// with `escalate_after`, that long after the first signal with
    /// `"shutdown escalated after 30s"`, whichever comes first. An
    /// `escalate_after` that overflows the clock never escalates on time.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{OsSignal, Shutdown};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let shutdown = Shutdown::listen([OsSignal::Interrupt], Some(Duration::from_secs(30)))?;
    /// assert!(!shutdown.token().is_cancelled(), "no signal yet");
    /// assert!(!shutdown.hard_token().is_cancelled());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The error of registering a signal with tokio's signal driver.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime, as [`tokio::spawn`] does.
    #[track_caller]
    pub fn listen(
        signals: impl IntoIterator<Item = OsSignal>,
        escalate_after: Option<Duration>,
    ) -> io::Result<Self> {
        let mut listeners = signals
            .into_iter()
            .map(|signal| Listener::new(signal).map(|listener| (signal, listener)))
            .collect::<io::Result<Vec<_>>>()?;
        let graceful = Token::new();
        let hard = Token::new();
        let (g, h) = (graceful.clone(), hard.clone());
        tokio::spawn(async move {
            if listeners.is_empty() {
                return;
            }
            let signal = first(&mut listeners).await;
            g.cancel_with(format!("received {signal}"));
            let deadline = escalate_after
                .and_then(|after| crate::time::deadline_after(tokio::time::Instant::now(), after));
            let mut escalate = std::pin::pin!(async {
                match deadline {
                    Some(at) => {
                        tokio::time::sleep_until(crate::time::timer_deadline(
                            at,
                            tokio::time::Instant::now(),
                        ))
                        .await
                    }
                    None => std::future::pending().await,
                }
            });
            let mut again = std::pin::pin!(first(&mut listeners));
            let message = poll_fn(|cx| {
                if let Poll::Ready(signal) = again.as_mut().poll(cx) {
                    return Poll::Ready(format!("received {signal} again"));
                }
                let after = escalate_after.unwrap_or_default();
                escalate
                    .as_mut()
                    .poll(cx)
                    .map(|()| format!("shutdown escalated after {after:?}"))
            })
            .await;
            h.cancel_with(message);
        });
        Ok(Self { graceful, hard })
    }

    /// The graceful token: cancelled by the first signal. Declare it in the
    /// `Fencing` of every piece of work that should stop on shutdown.
    ///
    /// # Examples
    ///
    /// See [`Shutdown::listen`] and [`Shutdown`].
    #[must_use]
    pub fn token(&self) -> Token {
        self.graceful.clone()
    }

    /// The hard token: cancelled by a second signal or the escalation delay.
    ///
    /// # Examples
    ///
    /// See [`Shutdown::listen`] and [`Shutdown`].
    #[must_use]
    pub fn hard_token(&self) -> Token {
        self.hard.clone()
    }
}
