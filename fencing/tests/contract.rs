//! Contract tests (STYLE rule 20): auto traits of every public type, in one
//! list checked against the crate's exports, the size of `Cancelled`, its
//! error-trait and `io::Error` contract, its `Display`, and the ways to make
//! a `Code`.

#[cfg(feature = "test-util")]
use fencing::LiveCounts;
#[cfg(feature = "rt")]
use fencing::Shielded;
use fencing::{
    BoundFuture, Cancelled, Code, DropGuard, DropGuardRef, FenceExt, FenceHandle, Fenced, Fencing,
    Message, OnCancel, OperationId, OperationInfo, Progress, ProtectGuard, Reason, ReasonKind,
    Registry, Token, Verdict, WaitForCancellationFuture, WaitForCancellationFutureOwned,
    WaitForFencingFuture,
};
#[cfg(feature = "signal")]
use fencing::{OsSignal, Shutdown};
use std::collections::HashSet;
use std::error::Error;
use std::future::{pending, Future, Ready};
use std::io;
use std::marker::PhantomData;
use std::mem::size_of;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

const fn send_sync<T: Send + Sync>() {}
const fn unpin<T: Unpin>() {}
const fn unwind_safe<T: UnwindSafe + RefUnwindSafe>() {}
const fn clone<T: Clone>() {}
const fn debug<T: std::fmt::Debug>() {}
const fn error<E: Error + Send + Sync + 'static>() {}
const fn verdict<V: Verdict>() {}
const fn fence_ext<F: FenceExt>() {}
const fn assert_send_sync<T: Send + Sync>() {}
const fn assert_send<T: Send>() {}

/// A stream to instantiate `FencedStream` with.
#[cfg(feature = "stream")]
struct Items;

#[cfg(feature = "stream")]
impl futures_core::Stream for Items {
    type Item = ();

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<()>> {
        std::task::Poll::Ready(None)
    }
}

/// Every public type and trait of the crate, once, with what it promises
/// (an item behind a feature, under its `cfg`). Checked when the test crate
/// compiles; `every_public_type_is_listed` checks that the list and the
/// crate's `pub use` lines name the same items, so a new export cannot go
/// unlisted.
macro_rules! contract {
    ($($(#[$cfg:meta])* $name:literal => $ty:ty: $($check:ident)+;)*) => {
        const _: () = { $( $(#[$cfg])* { $( $check::<$ty>(); )+ } )* };

        // Read only with every feature on; pushed one by one for the `cfg`s.
        #[allow(dead_code, clippy::vec_init_then_push)]
        fn listed() -> Vec<&'static str> {
            let mut listed = Vec::new();
            $( $(#[$cfg])* listed.push($name); )*
            listed
        }
    };
}

contract! {
    "BoundFuture" => BoundFuture<Ready<()>>: send_sync unpin unwind_safe debug;
    "Cancelled" => Cancelled: send_sync unpin unwind_safe clone debug error;
    "Code" => Code: send_sync unpin unwind_safe clone debug;
    "DropGuard" => DropGuard: send_sync unpin unwind_safe debug;
    "DropGuardRef" => DropGuardRef<'static>: send_sync unpin unwind_safe debug;
    "FenceExt" => Ready<()>: fence_ext;
    "FenceHandle" => FenceHandle: send_sync unpin unwind_safe clone debug;
    // Like `tokio::time::Timeout`, not `Unpin`: see below.
    "Fenced" => Fenced<Ready<()>>: send_sync debug;
    #[cfg(feature = "stream")]
    "FencedStream" => fencing::FencedStream<Items>: send_sync debug;
    "Fencing" => Fencing: send_sync unpin unwind_safe clone debug;
    #[cfg(feature = "test-util")]
    "LiveCounts" => LiveCounts: send_sync unpin unwind_safe clone debug;
    "Message" => Message: send_sync unpin unwind_safe clone debug;
    "OnCancel" => OnCancel: send_sync unpin unwind_safe debug;
    "OperationId" => OperationId: send_sync unpin unwind_safe clone debug;
    "OperationInfo" => OperationInfo: send_sync unpin unwind_safe clone debug;
    #[cfg(feature = "signal")]
    "OsSignal" => OsSignal: send_sync unpin unwind_safe clone debug;
    "Progress" => Progress: send_sync unpin unwind_safe clone debug;
    "ProtectGuard" => ProtectGuard: send_sync unpin unwind_safe debug;
    "Reason" => Reason: send_sync unpin unwind_safe clone debug;
    "ReasonKind" => ReasonKind: send_sync unpin unwind_safe clone debug;
    "Registry" => Registry: send_sync unpin unwind_safe clone debug;
    #[cfg(feature = "rt")]
    "Shielded" => Shielded<()>: send_sync unpin unwind_safe debug;
    #[cfg(feature = "signal")]
    "Shutdown" => Shutdown: send_sync unpin unwind_safe clone debug;
    "Token" => Token: send_sync unpin unwind_safe clone debug;
    "Verdict" => bool: verdict;
    "WaitForCancellationFuture" => WaitForCancellationFuture<'static>: send_sync unpin unwind_safe debug;
    "WaitForCancellationFutureOwned" => WaitForCancellationFutureOwned: send_sync unpin unwind_safe debug;
    "WaitForFencingFuture" => WaitForFencingFuture: send_sync debug;
}

const _: () = {
    verdict::<Result<bool, io::Error>>();
    assert!(size_of::<Cancelled>() == size_of::<*const ()>());
    assert!(size_of::<Result<(), Cancelled>>() == size_of::<*const ()>());
};

/// The crate's exported types and traits, as `src/lib.rs` names them in its
/// `pub use` lines (functions and modules start lower case), whatever their
/// feature.
#[cfg(all(
    feature = "rt",
    feature = "signal",
    feature = "stream",
    feature = "test-util"
))]
fn exported() -> Vec<String> {
    let lib = include_str!("../src/lib.rs");
    let mut names = Vec::new();
    let mut rest = lib;
    while let Some(at) = rest.find("pub use crate::") {
        let tail = &rest[at..];
        let end = tail.find(';').expect("a `pub use` ends");
        let path = &tail[..end];
        let items = match path.find('{') {
            Some(open) => &path[open + 1..path.rfind('}').expect("a group closes")],
            None => &path[path.rfind("::").expect("a path") + 2..],
        };
        names.extend(
            items
                .split(',')
                .map(str::trim)
                .filter(|name| name.starts_with(|c: char| c.is_ascii_uppercase()))
                .map(str::to_owned),
        );
        rest = &tail[end..];
    }
    names
}

#[test]
#[cfg(all(
    feature = "rt",
    feature = "signal",
    feature = "stream",
    feature = "test-util"
))]
fn every_public_type_is_listed() {
    let exported = exported();
    assert!(
        exported.len() > 20,
        "the parser found the exports: {exported:?}"
    );
    let listed = listed();
    for name in &exported {
        assert!(
            listed.contains(&name.as_str()),
            "{name} is exported but not in the contract list"
        );
    }
    for name in &listed {
        assert!(
            exported.iter().any(|e| e == name),
            "{name} is listed but not exported"
        );
    }
}

/// Answers "does `T` implement `Unpin`?" at run time, so that a missing impl
/// fails one named test instead of the whole file's build. The inherent
/// method wins over the trait's when its bound holds.
struct Probe<T>(PhantomData<T>);

trait NotUnpin {
    fn is_unpin(&self) -> bool {
        false
    }
}

impl<T> NotUnpin for Probe<T> {}

impl<T: Unpin> Probe<T> {
    fn is_unpin(&self) -> bool {
        true
    }
}

fn probe<T>() -> Probe<T> {
    Probe(PhantomData)
}

#[test]
fn public_types_are_send_sync_unpin() {
    // What each type promises is in the list above, checked at compile
    // time; here, the probe the `Unpin` tests below rely on.
    // The probe agrees with the compiler on a type known to be `Unpin`...
    assert!(probe::<Token>().is_unpin());
    // ...and on one known not to be.
    assert!(!probe::<std::marker::PhantomPinned>().is_unpin());
}

#[test]
fn fenced_is_send_sync_for_a_send_sync_body() {
    assert_send_sync::<Fenced<Ready<()>>>();
    assert_send_sync::<Fenced<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>>();
    // A `Send` but not `Sync` body still makes a `Send` fence.
    assert_send::<Fenced<Pin<Box<dyn Future<Output = ()> + Send>>>>();
}

/// `Fenced` stores its `tokio::time::Sleep` inline and pinned, so the
/// pending path registers its timer without allocating; like
/// `tokio::time::Timeout` it is therefore `!Unpin` whatever its body. Pin it
/// (`std::pin::pin!`, `Box::pin`) to poll it by reference.
#[test]
fn fenced_is_not_unpin_like_tokio_timeout() {
    assert!(probe::<Ready<()>>().is_unpin());
    assert!(!probe::<Fenced<Ready<()>>>().is_unpin());
    assert!(!probe::<tokio::time::Timeout<Ready<()>>>().is_unpin());
}

#[test]
fn core_types_are_unwind_safe() {
    // `Token`, `Fencing`, `Cancelled` and `Reason` are `unwind_safe` in the
    // list above.
    // So they cross `catch_unwind` without `AssertUnwindSafe`.
    let token = Token::new();
    let inside = token.clone();
    let caught = std::panic::catch_unwind(move || {
        inside.cancel_with("unwound");
        panic!("boom");
    });
    assert!(caught.is_err());
    assert_eq!(token.reason().unwrap().message(), "unwound");
}

#[tokio::test(start_paused = true)]
async fn cancelled_clones_keep_every_reason() {
    let token = Token::new();
    token.cancel_with("SIGTERM");
    let cancelled = Fencing::new()
        .token(&token)
        .code("shutdown")
        .timeout(std::time::Duration::ZERO)
        .code("budget")
        .run(async {})
        .await
        .unwrap_err();
    let copy = cancelled.clone();
    assert_eq!(copy.reasons(), cancelled.reasons());
    assert_eq!(copy.to_string(), cancelled.to_string());
}

#[test]
fn cancelled_is_one_pointer_wide() {
    assert_eq!(size_of::<Cancelled>(), size_of::<*const ()>());
}

#[test]
fn result_of_unit_and_cancelled_is_one_pointer_wide() {
    assert_eq!(size_of::<Result<(), Cancelled>>(), size_of::<*const ()>());
    assert_eq!(size_of::<Option<Cancelled>>(), size_of::<*const ()>());
}

/// A cancelled token, fenced: the fence fails on its first poll.
async fn token_error(message: &'static str, code: &'static str) -> Cancelled {
    let token = Token::new();
    token.cancel_with(message);
    Fencing::new()
        .token(&token)
        .code(code)
        .run(pending::<()>())
        .await
        .unwrap_err()
}

#[tokio::test(start_paused = true)]
async fn cancelled_is_a_send_sync_static_error() {
    error::<Cancelled>();

    let cancelled = token_error("stop", "shutdown").await;
    assert!(cancelled.source().is_none());
    let boxed: Box<dyn Error + Send + Sync + 'static> = Box::new(cancelled);
    let back = boxed.downcast::<Cancelled>().expect("downcasts back");
    assert!(back.cancelled_by("shutdown"));
}

#[tokio::test(start_paused = true)]
async fn cancelled_into_io_error_is_timed_out_for_a_timeout() {
    let cancelled = Fencing::new()
        .timeout(Duration::ZERO)
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert!(cancelled.is_timeout());
    let io: io::Error = cancelled.into();
    assert_eq!(io.kind(), io::ErrorKind::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn cancelled_into_io_error_is_timed_out_for_a_deadline() {
    let cancelled = Fencing::new()
        .deadline(Instant::now())
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert!(cancelled.is_deadline());
    let io: io::Error = cancelled.into();
    assert_eq!(io.kind(), io::ErrorKind::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn cancelled_into_io_error_is_timed_out_when_the_first_reason_is_time() {
    let token = Token::new();
    token.cancel();
    let cancelled = Fencing::new()
        .token(&token)
        .deadline(Instant::now())
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert!(
        cancelled.reason().kind().is_time(),
        "the deadline is recorded first"
    );
    assert!(cancelled.is_token());
    assert_eq!(io::Error::from(cancelled).kind(), io::ErrorKind::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn cancelled_into_io_error_is_other_for_a_token() {
    let cancelled = token_error("client went away", "client").await;
    let io: io::Error = cancelled.into();
    assert_eq!(io.kind(), io::ErrorKind::Other);
    assert_ne!(io.kind(), io::ErrorKind::Interrupted);
}

#[tokio::test(start_paused = true)]
async fn cancelled_into_io_error_is_other_for_a_future() {
    let cancelled = Fencing::new()
        .future(async {})
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert!(cancelled.is_future());
    assert_eq!(io::Error::from(cancelled).kind(), io::ErrorKind::Other);
}

#[tokio::test(start_paused = true)]
async fn cancelled_into_io_error_keeps_the_cancelled_downcastable() {
    let cancelled = token_error("SIGTERM", "shutdown").await;
    let display = cancelled.to_string();
    let io: io::Error = cancelled.into();

    assert_eq!(io.to_string(), display, "io::Error displays the Cancelled");
    let by_ref = io
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Cancelled>())
        .expect("the Cancelled is reachable by reference");
    assert!(by_ref.cancelled_by("shutdown"));
    assert_eq!(by_ref.reason().message(), "SIGTERM");

    let owned = io
        .into_inner()
        .expect("an io::Error built from a Cancelled has an inner error")
        .downcast::<Cancelled>()
        .expect("the Cancelled downcasts by value");
    assert!(owned.is_token());
    assert_eq!(owned.reasons().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn cancelled_display_names_every_reason() {
    let (a, b) = (Token::new(), Token::new());
    a.cancel_with("SIGTERM");
    b.cancel_with(String::from("client went away"));
    let cancelled = Fencing::new()
        .deadline(Instant::now())
        .code("slo")
        .token(&a)
        .code("shutdown")
        .token(&b) // no code
        .run(pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(cancelled.reasons().len(), 3);

    let display = cancelled.to_string();
    let mut last = 0;
    for reason in cancelled.reasons() {
        let shown = reason.to_string();
        assert!(shown.contains(reason.message()));
        let at = display[last..]
            .find(&shown)
            .unwrap_or_else(|| panic!("{display:?} lacks {shown:?} in firing order"));
        last += at + shown.len();
    }
    for part in [
        "slo",
        "deadline exceeded",
        "shutdown",
        "SIGTERM",
        "client went away",
    ] {
        assert!(display.contains(part), "{display:?} lacks {part:?}");
    }

    let timed_out = Fencing::new()
        .timeout(Duration::ZERO)
        .code("budget")
        .run(pending::<()>())
        .await
        .unwrap_err()
        .to_string();
    assert!(timed_out.contains("budget"), "{timed_out:?}");
    assert!(timed_out.contains("timed out"), "{timed_out:?}");

    let future = Fencing::new()
        .future(async {})
        .code("disconnect")
        .run(pending::<()>())
        .await
        .unwrap_err()
        .to_string();
    assert!(future.contains("disconnect"), "{future:?}");
}

#[test]
fn code_from_static_str() {
    let code = Code::from("budget");
    assert_eq!(code.as_str(), "budget");
    assert_eq!(code, "budget");
    assert_eq!(code.to_string(), "budget");
    assert_eq!(format!("{code:?}"), "\"budget\"");
}

#[test]
fn code_from_string() {
    let owned = Code::from(String::from("db"));
    assert_eq!(owned.as_str(), "db");
    assert_eq!(owned, Code::from("db"), "codes compare by text, not origin");
    assert_eq!(owned.clone(), owned);

    let mut set = HashSet::new();
    set.insert(Code::from("db"));
    assert!(set.contains(&owned), "hash agrees with equality");
    assert!(set.contains("db"), "and a code can be looked up by str");
}

#[derive(Clone, Copy, Debug)]
enum Stop {
    Budget,
    Shutdown,
}

impl From<Stop> for Code {
    fn from(stop: Stop) -> Self {
        Self::from(match stop {
            Stop::Budget => "budget",
            Stop::Shutdown => "shutdown",
        })
    }
}

#[tokio::test(start_paused = true)]
async fn code_from_an_application_enum() {
    assert_eq!(Code::from(Stop::Budget), "budget");
    assert_eq!(Code::from(Stop::Shutdown), Code::from("shutdown"));

    let shutdown = Token::new();
    let fencing = Fencing::new()
        .timeout(Duration::from_secs(30))
        .code(Stop::Budget)
        .token(&shutdown)
        .code(Stop::Shutdown);
    shutdown.cancel();
    let cancelled = fencing.run(pending::<()>()).await.unwrap_err();

    assert!(cancelled.cancelled_by(Stop::Shutdown));
    assert!(!cancelled.cancelled_by(Stop::Budget));
    assert!(cancelled.reason().has_code(Stop::Shutdown));
    assert_eq!(cancelled.reason().code().unwrap(), "shutdown");
}

/// Where a panic inside `f` is reported, with its message.
fn panic_location(f: impl FnOnce() + UnwindSafe) -> (String, u32) {
    use std::sync::{Arc, Mutex};
    // The hook is process-wide: one such test at a time.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let seen = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(location) = info.location() {
            *record.lock().unwrap() = Some((location.file().to_owned(), location.line()));
        }
    }));
    let caught = std::panic::catch_unwind(f);
    std::panic::set_hook(previous);
    assert!(caught.is_err(), "it panics");
    let seen = seen.lock().unwrap().clone();
    seen.expect("the hook saw the panic")
}

/// The `#[track_caller]` entry points report a panic at the caller's line,
/// not inside the crate (STYLE rule 20).
#[test]
fn panic_locations_are_the_callers() {
    let line = line!() + 1;
    let (file, at) = panic_location(|| drop(Fencing::new().condition(Duration::ZERO, || true)));
    assert_eq!((file.as_str(), at), (file!(), line), "condition");

    let line = line!() + 2;
    let (file, at) =
        panic_location(|| drop(Fencing::new().condition_async(Duration::ZERO, || async { true })));
    assert_eq!((file.as_str(), at), (file!(), line), "condition_async");

    let line = line!() + 2;
    let (file, at) =
        panic_location(|| drop(Fencing::new().condition_fail_fast(Duration::ZERO, || true)));
    assert_eq!((file.as_str(), at), (file!(), line), "condition_fail_fast");

    let line = line!() + 2;
    let (file, at) = panic_location(|| {
        drop(Fencing::new().condition_async_fail_fast(Duration::ZERO, || async { true }))
    });
    assert_eq!(
        (file.as_str(), at),
        (file!(), line),
        "condition_async_fail_fast"
    );

    #[cfg(feature = "rt")]
    {
        let line = line!() + 1;
        let (file, at) = panic_location(|| drop(fencing::spawn(async {})));
        assert_eq!(
            (file.as_str(), at),
            (file!(), line),
            "spawn outside a runtime"
        );
        let line = line!() + 1;
        let (file, at) = panic_location(|| drop(fencing::shield(async {})));
        assert_eq!(
            (file.as_str(), at),
            (file!(), line),
            "shield outside a runtime"
        );
    }
}
