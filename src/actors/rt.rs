//! The one place that knows which executor runs the actors: tokio natively,
//! wstd's reactor on wasm32-wasip2.
//!
//! Everything else calls `spawn`, `sleep`, `timeout` and `now` from here.
//! A native build without `tokio-transport` has no executor of its own: the
//! caller drives the actor future it gets from
//! [`Connection::connect_with_transport`](crate::Connection::connect_with_transport)
//! on whatever executor it uses, and timeouts are not applied.

use std::future::Future;
use std::time::Duration;

use crate::PgError;

pub(crate) use std::time::Instant;

/// Whether this build can spawn tasks and run timers by itself.
pub(crate) const HAS_RUNTIME: bool = cfg!(any(target_arch = "wasm32", feature = "tokio-transport"));

/// Runs `fut` in the background until it finishes.
#[cfg(target_arch = "wasm32")]
pub(crate) fn spawn<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    wstd::runtime::spawn(fut).detach();
}

/// Runs `fut` in the background until it finishes.
#[cfg(all(not(target_arch = "wasm32"), feature = "tokio-transport"))]
pub(crate) fn spawn<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(fut);
}

/// Runs `fut` in the background until it finishes.
#[cfg(all(not(target_arch = "wasm32"), not(feature = "tokio-transport")))]
pub(crate) fn spawn<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    // Unreachable in practice: `connect` refuses to run without a runtime.
    drop(fut);
}

/// Runs `fut` in the background if this thread is inside the runtime;
/// returns false (dropping `fut`) when it is not, where `spawn` would panic
/// (a `Drop` running after the tokio runtime was shut down, say).
#[cfg_attr(not(feature = "pool"), allow(dead_code))]
pub(crate) fn try_spawn<F>(fut: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    #[cfg(all(not(target_arch = "wasm32"), feature = "tokio-transport"))]
    {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(fut);
                true
            }
            Err(_) => false,
        }
    }
    #[cfg(target_arch = "wasm32")]
    {
        // wstd's reactor is the only executor a component has.
        spawn(fut);
        true
    }
    #[cfg(all(not(target_arch = "wasm32"), not(feature = "tokio-transport")))]
    {
        drop(fut);
        false
    }
}

/// A random number, from the OS's seed (WASI's `random_get` on wasm):
/// enough to spread retries and connection lifetimes apart, not for secrets.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Sleeps for `d`.
pub(crate) async fn sleep(d: Duration) {
    #[cfg(target_arch = "wasm32")]
    {
        wstd::task::sleep(d.into()).await;
    }
    #[cfg(all(not(target_arch = "wasm32"), feature = "tokio-transport"))]
    {
        tokio::time::sleep(d).await;
    }
    #[cfg(all(not(target_arch = "wasm32"), not(feature = "tokio-transport")))]
    {
        let _ = d;
        std::future::pending::<()>().await;
    }
}

/// Runs `fut` with a deadline; `what` names the operation in the error.
/// Without a runtime (native, no `tokio-transport`) the deadline is ignored.
pub(crate) async fn timeout<F: Future>(
    d: Option<Duration>,
    what: &str,
    fut: F,
) -> Result<F::Output, PgError> {
    let Some(d) = d else {
        return Ok(fut.await);
    };
    if !HAS_RUNTIME {
        return Ok(fut.await);
    }
    let fut = std::pin::pin!(fut);
    let timer = std::pin::pin!(sleep(d));
    match futures_util::future::select(fut, timer).await {
        futures_util::future::Either::Left((out, _)) => Ok(out),
        futures_util::future::Either::Right(_) => Err(PgError::Timeout(format!(
            "{what} did not finish within {} ms",
            d.as_millis()
        ))),
    }
}

/// The current monotonic time.
#[cfg_attr(not(feature = "pool"), allow(dead_code))]
pub(crate) fn now() -> Instant {
    Instant::now()
}
