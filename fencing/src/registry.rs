//! [`Registry`]: the running operations of a service, listed and cancelled by
//! id or name: the admin endpoint.

use crate::reason::{Code, Message, Reason};
use crate::sync::lock;
use crate::token::tree::Node;
use crate::trigger::{Source, Trigger};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// The operations currently running under fences that registered with it
/// (hother's `OperationRegistry`): list them, cancel one by id, or all whose
/// name matches, with a reason.
///
/// A fence whose `Fencing` was declared with
/// [`register`](crate::Fencing::register) enters the registry when it starts (its
/// first poll) and leaves when it ends, whatever the outcome, and when it is
/// dropped. Its body, at any depth, can tell the registry how far it got
/// with [`report_progress`](crate::report_progress); see
/// [`OperationInfo::progress`]. Fences that do not register pay nothing. A cancellation through
/// the registry is a [`Token`](crate::ReasonKind::Token) reason with the code
/// `"registry"` and the message given.
///
/// # Examples
///
/// ```
/// use fencing::{Fencing, Registry};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let registry = Registry::new();
/// let export = tokio::spawn(
///     Fencing::new()
///         .register(&registry, "export")
///         .run(std::future::pending::<()>()),
/// );
/// tokio::task::yield_now().await;
///
/// let running = registry.list();
/// assert_eq!(running.len(), 1);
/// assert_eq!(running[0].name(), "export");
///
/// assert!(registry.cancel(running[0].id(), "stopped by an operator"));
/// let err = export.await.unwrap().unwrap_err();
/// assert!(err.cancelled_by("registry"));
/// assert!(registry.list().is_empty(), "it left when it ended");
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: AtomicU64,
    operations: Mutex<BTreeMap<u64, Entry>>,
}

struct Entry {
    name: Code,
    started: Instant,
    deadline: Option<Instant>,
    /// Cancels the operation's fence.
    node: Arc<Node>,
    shared: Arc<Shared>,
}

/// What a running fence tells the registry about itself after it started:
/// the reasons it recorded, and the progress its body reported.
#[derive(Default)]
pub(crate) struct Shared {
    reasons: Mutex<Vec<Reason>>,
    progress: Mutex<Option<Progress>>,
}

/// The code of reasons given through the registry: the code of the slot a
/// fence arms for its entry (the node is cancelled with an uncoded reason).
const CODE: &str = "registry";

impl Registry {
    /// Creates an empty registry.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(fencing::Registry::new().list().is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The operations running now, oldest first.
    ///
    /// # Examples
    ///
    /// See [`Registry`].
    #[must_use]
    pub fn list(&self) -> Vec<OperationInfo> {
        lock(&self.inner.operations)
            .iter()
            .map(|(id, entry)| OperationInfo {
                id: OperationId(*id),
                name: entry.name.clone(),
                started: entry.started,
                deadline: entry.deadline,
                reasons: lock(&entry.shared.reasons).clone(),
                progress: lock(&entry.shared.progress).clone(),
            })
            .collect()
    }

    /// Cancels the operation `id` with `message`. Returns `false` if no such
    /// operation is running, or it was cancelled already.
    ///
    /// # Examples
    ///
    /// See [`Registry`].
    pub fn cancel(&self, id: OperationId, message: impl Into<Message>) -> bool {
        let node = lock(&self.inner.operations)
            .get(&id.0)
            .map(|e| Arc::clone(&e.node));
        // Cancelled outside the lock: cancelling wakes tasks.
        node.is_some_and(|node| node.cancel(Reason::token(message)))
    }

    /// Cancels every running operation whose name satisfies `matches`, with
    /// `message`. Returns how many it cancelled.
    ///
    /// The operations are those running when the call starts. `matches` runs
    /// with no lock of the crate held, so it may use this registry (`len`,
    /// `list`, `cancel`), cancel tokens or drop fences.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Registry};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let registry = Registry::new();
    /// for name in ["export:a", "export:b", "import"] {
    ///     tokio::spawn(Fencing::new().register(&registry, name).run(std::future::pending::<()>()));
    /// }
    /// tokio::task::yield_now().await;
    /// let n = registry.cancel_matching(|name| name.starts_with("export:"), "maintenance");
    /// assert_eq!(n, 2);
    /// tokio::task::yield_now().await;
    /// assert_eq!(registry.list().len(), 1);
    /// # }
    /// ```
    pub fn cancel_matching(
        &self,
        mut matches: impl FnMut(&str) -> bool,
        message: impl Into<Message>,
    ) -> usize {
        // A snapshot, so that the predicate runs with no lock held: it may
        // use the registry, and drop registered fences.
        let running: Vec<(Code, Arc<Node>)> = lock(&self.inner.operations)
            .values()
            .map(|entry| (entry.name.clone(), Arc::clone(&entry.node)))
            .collect();
        let nodes: Vec<Arc<Node>> = running
            .into_iter()
            .filter(|(name, _)| matches(name.as_str()))
            .map(|(_, node)| node)
            .collect();
        let reason = Reason::token(message);
        nodes
            .into_iter()
            .filter(|node| node.cancel(reason.clone()))
            .count()
    }

    /// The number of operations running now.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fencing::Registry::new().len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.inner.operations).len()
    }

    /// Returns `true` if no operation is running.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(fencing::Registry::new().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lists an operation whose fence `node` cancels; it leaves when the
    /// [`Operation`] holding the returned id is dropped.
    fn enter(&self, name: &Code, deadline: Option<Instant>, node: &Arc<Node>) -> Listing {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::<Shared>::default();
        lock(&self.inner.operations).insert(
            id,
            Entry {
                name: name.clone(),
                started: Instant::now(),
                deadline,
                node: Arc::clone(node),
                shared: Arc::clone(&shared),
            },
        );
        Listing {
            registry: self.clone(),
            id,
            shared,
        }
    }

    /// Whether `self` and `other` are the same registry.
    pub(crate) fn is(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("running", &self.len())
            .finish()
    }
}

/// The id of a registered operation, unique within its registry.
///
/// # Examples
///
/// ```
/// use fencing::{Fencing, Registry};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let registry = Registry::new();
/// let job = tokio::spawn(Fencing::new().register(&registry, "job").run(std::future::pending::<()>()));
/// tokio::task::yield_now().await;
/// let id = registry.list()[0].id();
/// println!("cancelling operation {id}");
/// assert!(registry.cancel(id, "stop"));
/// assert!(!registry.cancel(id, "again"), "once");
/// # let _ = job.await;
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperationId(u64);

impl fmt::Display for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A snapshot of one running operation, from [`Registry::list`].
///
/// # Examples
///
/// ```
/// use fencing::{protect, Fencing, Registry, Token};
/// use std::time::Duration;
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let registry = Registry::new();
/// let shutdown = Token::new();
/// let started = Instant::now();
/// let export = tokio::spawn(
///     Fencing::new()
///         .timeout(Duration::from_secs(60))
///         .token(&shutdown)
///         .code("shutdown")
///         .register(&registry, "export")
///         .run(async {
///             let _commit = protect(); // keeps running after the shutdown
///             std::future::pending::<()>().await
///         }),
/// );
/// tokio::task::yield_now().await;
/// shutdown.cancel();
/// tokio::task::yield_now().await;
///
/// let info = &registry.list()[0];
/// assert_eq!(info.name(), "export");
/// assert_eq!(info.started(), started);
/// assert_eq!(info.deadline(), Some(started + Duration::from_secs(60)));
/// assert!(info.reasons()[0].has_code("shutdown"), "fired, body still protected");
/// # export.abort();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct OperationInfo {
    id: OperationId,
    name: Code,
    started: Instant,
    deadline: Option<Instant>,
    reasons: Vec<Reason>,
    progress: Option<Progress>,
}

impl OperationInfo {
    /// Its id, for [`Registry::cancel`].
    ///
    /// # Examples
    ///
    /// See [`OperationInfo`].
    #[must_use]
    pub fn id(&self) -> OperationId {
        self.id
    }

    /// The name it registered under.
    ///
    /// # Examples
    ///
    /// See [`OperationInfo`].
    #[must_use]
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// When its fence started.
    ///
    /// # Examples
    ///
    /// See [`OperationInfo`].
    #[must_use]
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Its deadline when it started, if it had one.
    ///
    /// # Examples
    ///
    /// See [`OperationInfo`].
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The reasons its fence had recorded when the snapshot was taken: a
    /// body still running after a trigger fired (protected, in a grace
    /// period) shows them here.
    ///
    /// # Examples
    ///
    /// See [`OperationInfo`].
    #[must_use]
    pub fn reasons(&self) -> &[Reason] {
        &self.reasons
    }

    /// The last progress its body reported with
    /// [`report_progress`](crate::report_progress), if it reported any.
    ///
    /// # Examples
    ///
    /// See [`Progress`].
    #[must_use]
    pub fn progress(&self) -> Option<&Progress> {
        self.progress.as_ref()
    }
}

/// A running fence's entry in its registries: a trigger the fence arms like
/// any of its own (a node that every registry listing it cancels, under the
/// code `"registry"`), and one listing per registration.
pub(crate) struct Operation {
    trigger: Trigger,
    listings: Vec<Listing>,
}

/// The operation in one registry.
struct Listing {
    registry: Registry,
    id: u64,
    shared: Arc<Shared>,
}

impl Operation {
    /// Lists a fence in every registry of `registrations` (one node cancels
    /// it from any of them), with its `deadline` when it starts.
    pub(crate) fn enter(registrations: &[(Registry, Code)], deadline: Option<Instant>) -> Self {
        let node = Node::new();
        let listings = registrations
            .iter()
            .map(|(registry, name)| registry.enter(name, deadline, &node))
            .collect();
        Self {
            trigger: Trigger::new(Source::Token(node), Some(Code::from(CODE))),
            listings,
        }
    }

    /// The slot the fence arms for it.
    pub(crate) fn trigger(&self) -> &Trigger {
        &self.trigger
    }

    /// Shows `reason`, recorded by the fence, in every listing.
    pub(crate) fn recorded(&self, reason: &Reason) {
        for listing in &self.listings {
            lock(&listing.shared.reasons).push(reason.clone());
        }
    }

    /// Where progress reported in this fence's body goes: to this
    /// operation, in each registry it is listed in, and to the nearest
    /// enclosing operation (`outer`) in every other registry.
    pub(crate) fn progress_sinks(&self, outer: Option<&[ProgressSink]>) -> Arc<[ProgressSink]> {
        let own = self.listings.iter().map(|listing| ProgressSink {
            registry: listing.registry.clone(),
            shared: Arc::clone(&listing.shared),
        });
        let others = outer.unwrap_or(&[]).iter().filter(|sink| {
            !self
                .listings
                .iter()
                .any(|listing| listing.registry.is(&sink.registry))
        });
        own.chain(others.cloned()).collect()
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        // The fence released its registration on the node before.
        for listing in &self.listings {
            let entry = lock(&listing.registry.inner.operations).remove(&listing.id);
            drop(entry);
        }
    }
}

/// One operation that progress reported in a context goes to.
#[derive(Clone)]
pub(crate) struct ProgressSink {
    registry: Registry,
    shared: Arc<Shared>,
}

impl ProgressSink {
    /// Whether `self` and `other` are the same operation in the same registry.
    pub(crate) fn is(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Shows `message`, reported at `at`, as the operation's progress.
    pub(crate) fn report(&self, message: &Message, at: Instant) {
        let mut progress = lock(&self.shared.progress);
        let count = progress.as_ref().map_or(0, |p| p.count) + 1;
        let old = progress.replace(Progress {
            message: message.clone(),
            reported_at: at,
            count,
        });
        drop(progress);
        // Dropped unlocked: it may free the previous message.
        drop(old);
    }
}

/// The last progress a running operation reported, with
/// [`report_progress`](crate::report_progress), as seen in
/// [`OperationInfo::progress`]: the message, when it was reported, and how
/// many reports the operation made so far.
///
/// # Examples
///
/// ```
/// use fencing::{report_progress, Fencing, Registry};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let registry = Registry::new();
/// let export = tokio::spawn(Fencing::new().register(&registry, "export").run(async {
///     for table in ["users", "orders"] {
///         report_progress(format!("exporting {table}"));
///         tokio::time::sleep(Duration::from_secs(1)).await;
///     }
/// }));
/// tokio::time::sleep(Duration::from_millis(1500)).await;
///
/// let progress = registry.list()[0].progress().cloned().unwrap();
/// assert_eq!(progress.message(), "exporting orders");
/// assert_eq!(progress.count(), 2);
/// assert_eq!(progress.reported_at().elapsed(), Duration::from_millis(500));
/// # export.await.unwrap().unwrap();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Progress {
    message: Message,
    reported_at: Instant,
    count: u64,
}

impl Progress {
    /// The message of the last report.
    ///
    /// # Examples
    ///
    /// See [`Progress`].
    #[must_use]
    pub fn message(&self) -> &str {
        self.message.as_str()
    }

    /// When the last report was made, on tokio's clock.
    ///
    /// # Examples
    ///
    /// See [`Progress`].
    #[must_use]
    pub fn reported_at(&self) -> Instant {
        self.reported_at
    }

    /// How many reports the operation has made, the last one included.
    ///
    /// # Examples
    ///
    /// See [`Progress`].
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }
}
