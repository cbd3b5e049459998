//! Loom models of the shared future trigger (`trigger/future.rs`): fences on
//! several threads drive one future while its event fires, and each model
//! checks, in every interleaving loom explores, that every fence waiting on
//! the trigger is woken and sees it fire, whoever polled it (the "Lost
//! wakeups" argument at the top of `future.rs`). A fence left parked is a
//! loom "deadlock".

use crate::loom::model;
use crate::reason::Reason;
use crate::trigger::{FutureSource, Source, Trigger};
use loom::future::block_on;
use loom::sync::atomic::{AtomicBool, Ordering::SeqCst};
use loom::sync::Mutex;
use loom::thread;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// An event, like a oneshot's send: `fire` sets it and wakes the waker the
/// watching future was last polled with.
#[derive(Default)]
struct Event {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Event {
    fn fire(&self) {
        self.fired.store(true, SeqCst);
        let waker = self.waker.lock().unwrap().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The trigger future: completes once the event has fired.
struct OnEvent(Arc<Event>);

impl Future for OnEvent {
    type Output = Reason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reason> {
        *self.0.waker.lock().unwrap() = Some(cx.waker().clone());
        if self.0.fired.load(SeqCst) {
            Poll::Ready(Reason::future(None))
        } else {
            Poll::Pending
        }
    }
}

fn shared_trigger() -> (Arc<Event>, Trigger) {
    let event = Arc::new(Event::default());
    let source = FutureSource::new(Box::pin(OnEvent(event.clone())));
    let trigger = Trigger::new(Source::Future(source), None);
    (event, trigger)
}

/// A fence waiting on the trigger, as a pending fence does: registers its
/// waker and drives the future on every poll, until the trigger fired.
fn wait(trigger: &Trigger) {
    let mut key = None;
    block_on(poll_fn(|cx| trigger.poll_fired(&mut key, cx.waker())));
    trigger.deregister(&mut key);
    assert!(trigger.fired().is_some());
}

/// Issue 11, item 1: a long fence waits on the trigger; a short fence polls
/// it once, as it does before its body, whose completion then ends it; the
/// event fires meanwhile. However the three interleave, the long fence is
/// woken and sees the trigger fire.
#[test]
fn short_fence_polling_the_shared_future_never_strands_the_waiting_one() {
    model(|| {
        let (event, trigger) = shared_trigger();
        let long = {
            let trigger = trigger.clone();
            thread::spawn(move || wait(&trigger))
        };
        let short = {
            let trigger = trigger.clone();
            thread::spawn(move || {
                let _ = trigger.drive();
            })
        };
        event.fire();
        long.join().unwrap();
        short.join().unwrap();
    });
}

/// Two fences wait on the trigger, each driving it when woken, while the
/// event fires: both are woken and both see it fire.
#[test]
fn two_waiting_fences_both_see_the_shared_future_fire() {
    model(|| {
        let (event, trigger) = shared_trigger();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let trigger = trigger.clone();
                thread::spawn(move || wait(&trigger))
            })
            .collect();
        event.fire();
        for waiter in waiters {
            waiter.join().unwrap();
        }
    });
}
