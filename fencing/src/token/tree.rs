//! The token tree engine. [`Token`](crate::Token) is a thin handle over an
//! `Arc<Node>`; everything that locks lives here.
//!
//! A node holds its reason (set once), the wakers of tasks waiting for it,
//! and, once it has had a child, its children, spread over a few shards.
//!
//! # Invariants
//!
//! 1. `reason` is set at most once; `is_cancelled` is exactly
//!    `reason.get().is_some()`, one acquire load. The first `cancel` to set
//!    it wins and is the only one that wakes waiters and visits children.
//! 2. A parent refers to its children only weakly (`Weak<Node>` in a shard
//!    slab); a child holds its parent strongly. So a parent never keeps a
//!    child alive, and a dropped child's node leaves its parent's slab in
//!    `Node::drop`. A handle-less node stays alive, and registered, only while
//!    it still has children of its own: cancelling the grandparent then still
//!    reaches them through it.
//! 3. A child is either registered in its parent's slab (`key != UNREGISTERED`)
//!    or was born cancelled with its parent's reason; never neither.
//! 4. After the reason is set, no waker is added to `waiters`: registration
//!    checks the reason under the `waiters` lock, and `cancel` drains the slab
//!    under that same lock after setting the reason.
//! 5. A node's shards are allocated only under its `waiters` lock, and only
//!    while its reason is not set (checked under that lock).
//!
//! # Deadlock safety
//!
//! At most one lock is held at any time: a node's `waiters` lock, or one
//! shard lock of one node. No lock is held while a waker is woken or
//! dropped (a waker's drop may drop a future that deregisters from the same
//! node; wakers are only cloned under the lock), while a child is cancelled, or while a
//! node is dropped (a removed `Weak` is dropped under the shard lock, but
//! dropping a dead `Weak` runs no destructor). `cancel` walks the subtree
//! with an explicit stack and `Drop` unwinds a chain of ancestors in a loop,
//! so deep trees do not recurse.
//!
//! # Lost wakeups
//!
//! Child creation checks the parent's reason under the shard lock it inserts
//! under; `cancel` sets the reason before it takes any shard lock. Either the
//! creation's lock comes first, and the cancel finds the child in the slab,
//! or the cancel's comes first, and the creation sees the reason (the lock
//! orders the reason's store before the check). The same argument, with the
//! `waiters` lock, covers waiter registration (invariant 4).
//!
//! That argument needs the cancel to see the shards at all, and the shards'
//! `OnceLock` does not give that: "store the reason, then load the shards"
//! against "store the shards, then load the reason" is the store-buffering
//! pattern, where with acquire/release alone both loads may read the old
//! value (the memory model allows it; so do CPUs with RCpc acquire loads,
//! such as `ldapr` on AArch64). The cancel would see no shards and the first
//! child no reason: a registered child never cancelled. The loom model
//! `cancel_racing_first_child_creation_never_misses_the_child` found this.
//! Hence invariant 5: `cancel` takes the `waiters` lock (to drain it) after
//! setting the reason and before looking for shards, so either the
//! allocating section comes first, and the cancel sees the shards, or the
//! cancel's does, and the creation sees the reason and allocates nothing.
//! Every shard allocation is in such a section, so a cancel misses none.
//! This costs the first child of a node one extra lock; later children and
//! the cancel's fast path are unchanged.
//!
//! The models in `token/tests/loom_tree.rs` check these arguments, the
//! invariants and the lock discipline under loom (`.ci/loom`).

// `std`'s types in every build but the loom models (see `crate::loom`).
use crate::loom::sync::atomic::{self, AtomicUsize, Ordering};
use crate::loom::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use crate::reason::Reason;
use crate::slab::Slab;
use std::task::{Poll, Waker};

const UNREGISTERED: usize = usize::MAX;

/// A parent's children, by shard; each shard holds weak references.
type Shards = Box<[Padded<Mutex<Slab<Weak<Node>>>>]>;

/// Keeps each shard on cache lines of its own: shards used by different
/// threads must not share a line (two lines, for adjacent-line prefetch).
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Something waiting for a node to be cancelled.
pub(crate) enum Waiter {
    /// A task, woken on cancel (or by `wake_all`).
    Task(Waker),
    /// An on-cancel hook, called once with the reason.
    Hook(Box<dyn FnOnce(&Reason) + Send>),
}

pub(crate) struct Node {
    reason: OnceLock<Reason>,
    waiters: Mutex<Slab<Waiter>>,
    /// Allocated with the first child, so leaves pay nothing for it.
    children: OnceLock<Shards>,
    parent: Option<Arc<Self>>,
    /// The shard of the parent this node is registered in.
    shard: usize,
    /// The key in that shard, or `UNREGISTERED`. Written once, under the
    /// shard lock, before the child is handed out; read in `drop`.
    key: AtomicUsize,
}

/// Our critical sections never leave data half-updated, so a poisoned lock
/// (a waker that panicked while dropped) is still consistent: ignore poison.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How many shards a parent spreads its children over: enough that threads
/// creating children of one parent rarely meet on a lock.
#[cfg(not(all(test, loom)))]
fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores * 2).next_power_of_two().min(64)
    })
}

/// Each thread keeps one shard index, handed out round-robin, so that two
/// threads working on one parent use different shards.
#[cfg(not(all(test, loom)))]
fn this_thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|s| *s) & (shard_count() - 1)
}

/// Under loom: two shards, so that the models see children spread over
/// more than one shard lock, and no `static` that would outlive one explored
/// execution (loom needs each to be deterministic).
#[cfg(all(test, loom))]
fn shard_count() -> usize {
    2
}

/// Under loom every model thread runs on the same OS thread, so a
/// `thread_local!` would put them all in one shard: use the loom thread's
/// index instead (main is 0, spawned threads 1, 2, ...), read from its
/// `Debug` form, the only place loom shows it. Deterministic, and no loom
/// operation, so it adds no interleavings.
#[cfg(all(test, loom))]
fn this_thread_shard() -> usize {
    let id = format!("{:?}", loom::thread::current().id());
    let index: usize = id
        .trim_start_matches("ThreadId(")
        .trim_end_matches(')')
        .parse()
        .expect("loom's ThreadId is `ThreadId(n)`");
    index & (shard_count() - 1)
}

impl Node {
    pub(crate) fn new() -> Arc<Self> {
        crate::debug::node_created();
        Arc::new(Self {
            reason: OnceLock::new(),
            waiters: Mutex::new(Slab::new()),
            children: OnceLock::new(),
            parent: None,
            shard: 0,
            key: AtomicUsize::new(UNREGISTERED),
        })
    }

    pub(crate) fn child(self: &Arc<Self>) -> Arc<Self> {
        let shard = this_thread_shard();
        crate::debug::node_created();
        let child = Arc::new(Self {
            reason: OnceLock::new(),
            waiters: Mutex::new(Slab::new()),
            children: OnceLock::new(),
            parent: Some(Arc::clone(self)),
            shard,
            key: AtomicUsize::new(UNREGISTERED),
        });
        if let Some(reason) = self.reason.get() {
            // Born cancelled, without making the parent allocate its shards.
            let _ = child.reason.set(reason.clone());
            return child;
        }
        let shards = match self.shards_for_children() {
            Ok(shards) => shards,
            Err(reason) => {
                // Born cancelled: cancelled before the shards were there.
                let _ = child.reason.set(reason.clone());
                return child;
            }
        };
        let mut slab = lock(&shards[shard]);
        if let Some(reason) = self.reason.get() {
            drop(slab);
            // Born cancelled; nobody else can see the child yet.
            let _ = child.reason.set(reason.clone());
        } else {
            let key = slab.insert(Arc::downgrade(&child));
            child.key.store(key, Ordering::Relaxed);
        }
        child
    }

    /// The shards to register a child in; allocated with the first child,
    /// under the `waiters` lock and only while the node is not cancelled, or
    /// the reason if it is (invariant 5, and "# Lost wakeups").
    fn shards_for_children(&self) -> Result<&Shards, &Reason> {
        if let Some(shards) = self.children.get() {
            return Ok(shards);
        }
        let waiters = lock(&self.waiters);
        if let Some(reason) = self.reason.get() {
            return Err(reason);
        }
        let shards = self.children.get_or_init(|| {
            (0..shard_count())
                .map(|_| Padded(Mutex::new(Slab::new())))
                .collect()
        });
        drop(waiters);
        Ok(shards)
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.reason.get().is_some()
    }

    pub(crate) fn reason(&self) -> Option<&Reason> {
        self.reason.get()
    }

    /// Cancels this node and its subtree. Returns `false`, changing nothing,
    /// if the node was already cancelled.
    pub(crate) fn cancel(self: &Arc<Self>, reason: Reason) -> bool {
        if self.reason.set(reason).is_err() {
            return false;
        }
        let mut panic = None;
        let mut stack = vec![Arc::clone(self)];
        while let Some(node) = stack.pop() {
            // `node` is cancelled: wake its waiters and run its hooks (no
            // lock held), then queue its children. The `waiters` lock must
            // be taken before the shards are looked for (invariant 5).
            let waiters: Vec<Waiter> = lock(&node.waiters).drain().collect();
            crate::debug::waiters_drained(waiters.len());
            let reason = node.reason.get().expect("set above or by the parent");
            for waiter in waiters {
                // A panicking hook or waker must not leave the rest of the
                // tree unwoken or uncancelled: finish, then resume the panic.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match waiter {
                    Waiter::Task(waker) => waker.wake(),
                    Waiter::Hook(hook) => hook(reason),
                }));
                if let Err(payload) = ran {
                    panic.get_or_insert(payload);
                }
            }
            let Some(shards) = node.children.get() else {
                continue;
            };
            for shard in shards.iter() {
                let children: Vec<Arc<Self>> =
                    lock(shard).iter().filter_map(Weak::upgrade).collect();
                for child in children {
                    // A child that was already cancelled on its own keeps
                    // its reason and its subtree was handled then.
                    if child.reason.set(reason.clone()).is_ok() {
                        stack.push(child);
                    }
                }
            }
        }
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
        true
    }

    /// Polls for cancellation, keeping at most one waker registered under
    /// `key`. Returns the reason once the node is cancelled.
    pub(crate) fn poll_cancelled(&self, key: &mut Option<usize>, waker: &Waker) -> Poll<Reason> {
        if let Some(reason) = self.reason.get() {
            return Poll::Ready(reason.clone());
        }
        let mut waiters = lock(&self.waiters);
        // Checked again under the lock: see invariant 4.
        if let Some(reason) = self.reason.get() {
            return Poll::Ready(reason.clone());
        }
        let replaced = match key.and_then(|k| waiters.get_mut(k)) {
            Some(Waiter::Task(registered)) if registered.will_wake(waker) => None,
            Some(registered) => Some(std::mem::replace(registered, Waiter::Task(waker.clone()))),
            None => {
                *key = Some(waiters.insert(Waiter::Task(waker.clone())));
                crate::debug::waiter_added();
                None
            }
        };
        // The old waker is dropped only after the lock is released: dropping
        // it may drop a future that deregisters from this very node.
        drop(waiters);
        drop(replaced);
        Poll::Pending
    }

    /// Registers `hook` to run once with the reason when the node is
    /// cancelled; returns its key, or runs it at once (no lock held) and
    /// returns `None` if the node is cancelled already.
    pub(crate) fn add_hook(&self, hook: Box<dyn FnOnce(&Reason) + Send>) -> Option<usize> {
        let mut waiters = lock(&self.waiters);
        if let Some(reason) = self.reason.get() {
            drop(waiters);
            hook(reason);
            return None;
        }
        let key = waiters.insert(Waiter::Hook(hook));
        crate::debug::waiter_added();
        Some(key)
    }

    /// Removes the hook under `key`. Returns `true` if it was still
    /// registered, so it will never run; `false` if cancellation took it.
    pub(crate) fn remove_hook(&self, key: usize) -> bool {
        if self.is_cancelled() {
            return false;
        }
        let removed = lock(&self.waiters).remove(key);
        let found = removed.is_some();
        if found {
            crate::debug::waiter_removed();
        }
        // Dropped outside the lock: a hook's captures may run any code.
        drop(removed);
        found
    }

    /// Forgets the waker registered under `key`, if any.
    pub(crate) fn deregister(&self, key: &mut Option<usize>) {
        if let Some(k) = key.take() {
            // Once cancelled the slab was drained, and keys may be reused by
            // nobody: there is nothing to remove.
            if !self.is_cancelled() {
                let removed = lock(&self.waiters).remove(k);
                if removed.is_some() {
                    crate::debug::waiter_removed();
                }
                drop(removed);
            }
        }
    }

    /// Wakes every waiter without cancelling, leaving them registered. Used
    /// by future triggers to get whichever fence is still alive to drive the
    /// shared future again.
    pub(crate) fn wake_all(&self) {
        let wakers: Vec<Waker> = lock(&self.waiters)
            .iter()
            .filter_map(|waiter| match waiter {
                Waiter::Task(waker) => Some(waker.clone()),
                Waiter::Hook(_) => None,
            })
            .collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// The number of children currently registered with this node.
    pub(crate) fn child_count(&self) -> usize {
        self.children
            .get()
            .map_or(0, |shards| shards.iter().map(|s| lock(s).len()).sum())
    }

    /// The number of wakers currently registered with this node.
    pub(crate) fn waiter_count(&self) -> usize {
        lock(&self.waiters).len()
    }
}

impl Node {
    /// Removes this node from its parent's slab and hands back the parent.
    fn leave_parent(&mut self) -> Option<Arc<Self>> {
        let parent = self.parent.take()?;
        let key = atomic::read_mut(&mut self.key);
        if key != UNREGISTERED {
            let shards = parent
                .children
                .get()
                .expect("registered children have shards");
            // The removed entry is our own `Weak`, already dead: dropping it
            // runs no destructor, so it may go under the lock.
            let removed = lock(&shards[self.shard]).remove(key);
            drop(removed);
        }
        Some(parent)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        crate::debug::node_dropped();
        // Dropping the last reference to the parent would drop the parent
        // from inside this drop, and so on up a chain of handle-less
        // ancestors: unwind such a chain in a loop instead of recursing.
        let mut next = self.leave_parent();
        while let Some(parent) = next {
            next = Arc::into_inner(parent).and_then(|mut node| node.leave_parent());
        }
    }
}
