//! Retry policies: which failures are worth running the same work again,
//! how often, and how long to wait in between.
//!
//! Serialization failures (40001) and deadlocks (40P01) are the server
//! telling the client "this transaction lost a race; run it again". Retrying
//! is only safe when the failed attempt cannot have taken effect, so the
//! policy never retries a COMMIT whose outcome is unknown (see
//! [`Connection::with_transaction_retry`]).

use std::future::Future;
use std::time::Duration;

use crate::actors::rt;
use crate::protocol::sql::BeginOptions;
use crate::{classify_error, Connection, ErrorClass, PgError};

/// When and how to retry failed work.
///
/// The default: up to 5 attempts; a failure counts when its SQLSTATE is
/// 40001 (serialization_failure) or 40P01 (deadlock_detected); waits start
/// at 10 ms and double up to 1 s, each with random jitter (between half and
/// all of the step) so that transactions that collided do not collide
/// again.
///
/// ```no_run
/// # async fn demo(conn: &wasi_pg_client::Connection) -> Result<(), wasi_pg_client::PgError> {
/// use std::time::Duration;
/// use wasi_pg_client::RetryPolicy;
/// let policy = RetryPolicy::default()
///     .max_attempts(10)
///     .backoff(Duration::from_millis(5), Duration::from_millis(500));
/// let moved = conn
///     .with_transaction_retry(&policy, |txn| async move {
///         txn.execute("UPDATE stock SET n = n - 1 WHERE id = $1", &[&7i32]).await
///     })
///     .await?;
/// # let _ = moved; Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    jitter: bool,
    codes: Vec<String>,
    retry_broken: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            jitter: true,
            codes: vec!["40001".into(), "40P01".into()],
            retry_broken: false,
        }
    }
}

impl RetryPolicy {
    /// How many times the work runs at most, the first time included
    /// (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The wait before the first retry, and the most any wait grows to (it
    /// doubles after each attempt).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Whether each wait is randomized (between half and all of it).
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// The SQLSTATEs that count as worth retrying (replacing the default
    /// 40001 and 40P01).
    pub fn retry_on_codes<I, S>(mut self, codes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.codes = codes.into_iter().map(Into::into).collect();
        self
    }

    /// Whether errors that broke the connection ([`ErrorClass::Broken`])
    /// count too. Only for idempotent work, and only where each attempt
    /// gets a working connection: with [`RetryPolicy::run`], connect (or
    /// take one from a pool) inside the closure.
    pub fn retry_broken(mut self, retry: bool) -> Self {
        self.retry_broken = retry;
        self
    }

    /// Whether `error` is one this policy retries.
    pub fn is_retryable(&self, error: &PgError) -> bool {
        match error {
            PgError::Server(db) if self.codes.iter().any(|c| c == db.code()) => true,
            _ => self.retry_broken && classify_error(error) == ErrorClass::Broken,
        }
    }

    /// The wait after failed attempt number `attempt` (from 1).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let step = self
            .initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff);
        if !self.jitter {
            return step;
        }
        // Between half and all of the step.
        let half = step / 2;
        let fraction = (crate::actors::rt::random_u64() % 1024) as u32;
        half + half * fraction / 1023
    }

    /// Runs `work` until it succeeds, fails with an error this policy does
    /// not retry, or has run `max_attempts` times. `work` receives the
    /// attempt number (from 1). Use it for idempotent work that is not a
    /// single transaction on one connection (for that, see
    /// [`Connection::with_transaction_retry`]).
    ///
    /// When every attempt failed with a retryable error, the result is
    /// `PgError::RetriesExhausted`, which holds the attempt count and the
    /// last error; any other error is returned as it is.
    pub async fn run<F, Fut, R>(&self, mut work: F) -> Result<R, PgError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<R, PgError>>,
    {
        let mut attempt = 1;
        loop {
            match work(attempt).await {
                Ok(value) => return Ok(value),
                Err(e) => attempt = self.after_failure(attempt, e).await?,
            }
        }
    }

    /// Decides on a failed attempt: the next attempt's number (after the
    /// wait), or the error to give up with.
    pub(crate) async fn after_failure(&self, attempt: u32, error: PgError) -> Result<u32, PgError> {
        if !self.is_retryable(&error) {
            return Err(error);
        }
        if attempt >= self.max_attempts {
            return Err(PgError::RetriesExhausted {
                attempts: attempt,
                last: Box::new(error),
            });
        }
        #[cfg(feature = "tracing")]
        tracing::debug!(attempt, %error, "retrying after a transient error");
        let wait = self.delay(attempt);
        if !wait.is_zero() {
            rt::sleep(wait).await;
        }
        Ok(attempt + 1)
    }
}

impl Connection {
    /// Runs `work` in a transaction like
    /// [`with_transaction`](Connection::with_transaction), and runs it
    /// again, in a new transaction, when it fails with an error `policy`
    /// retries (by default a serialization failure or a deadlock). The
    /// closure therefore runs up to `max_attempts` times;
    /// [`Transaction::attempt`](crate::Transaction::attempt) tells which.
    /// For an isolation level, use
    /// [`TransactionBuilder::with_retry`](crate::TransactionBuilder::with_retry).
    ///
    /// Never retries what may have committed: a failure of the COMMIT itself
    /// is retried only when the server reported it (a serialization failure
    /// at commit: nothing was committed), never when the connection broke
    /// during it. When all attempts fail, the error is
    /// `PgError::RetriesExhausted { attempts, last }`.
    pub async fn with_transaction_retry<F, Fut, R>(
        &self,
        policy: &RetryPolicy,
        work: F,
    ) -> Result<R, PgError>
    where
        F: FnMut(crate::Transaction) -> Fut,
        Fut: Future<Output = Result<R, PgError>>,
    {
        retry_transaction(self, &BeginOptions::default(), policy, work).await
    }
}

/// The retry loop behind `with_transaction_retry`, for any BEGIN options.
pub(crate) async fn retry_transaction<F, Fut, R>(
    conn: &Connection,
    options: &BeginOptions,
    policy: &RetryPolicy,
    mut work: F,
) -> Result<R, PgError>
where
    F: FnMut(crate::Transaction) -> Fut,
    Fut: Future<Output = Result<R, PgError>>,
{
    let mut attempt = 1;
    loop {
        let txn = crate::Transaction::begin(conn, options, attempt).await?;
        let failure = match work(txn.clone()).await {
            Ok(value) => match txn.commit().await {
                Ok(()) => return Ok(value),
                // Only the server's own answer proves nothing was committed.
                Err(e @ PgError::Server(_)) => e,
                Err(e) => return Err(e),
            },
            Err(e) => {
                if let Err(_rollback) = txn.rollback().await {
                    #[cfg(feature = "tracing")]
                    tracing::debug!(error = %_rollback, "rolling back a failed attempt failed");
                }
                e
            }
        };
        attempt = policy.after_failure(attempt, failure).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DbError;

    fn server(code: &str) -> PgError {
        PgError::Server(Box::new(DbError {
            code: code.into(),
            ..DbError::default()
        }))
    }

    #[test]
    fn default_retries_serialization_failures_and_deadlocks_only() {
        let policy = RetryPolicy::default();
        assert!(policy.is_retryable(&server("40001")));
        assert!(policy.is_retryable(&server("40P01")));
        assert!(!policy.is_retryable(&server("23505")));
        assert!(!policy.is_retryable(&PgError::Closed("gone".into())));
        assert!(policy
            .retry_broken(true)
            .is_retryable(&PgError::Closed("gone".into())));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_within_half() {
        let policy = RetryPolicy::default()
            .backoff(Duration::from_millis(10), Duration::from_millis(35))
            .jitter(false);
        let waits: Vec<_> = (1..=4).map(|a| policy.delay(a).as_millis()).collect();
        assert_eq!(waits, [10, 20, 35, 35]);
        let jittered = policy.jitter(true);
        for attempt in 1..=4 {
            let step = jittered.clone().jitter(false).delay(attempt);
            let wait = jittered.delay(attempt);
            assert!(wait >= step / 2 && wait <= step, "{wait:?} vs {step:?}");
        }
    }

    #[test]
    fn gives_up_with_the_attempt_count() {
        let policy = RetryPolicy::default()
            .max_attempts(3)
            .backoff(Duration::ZERO, Duration::ZERO);
        let mut calls = 0;
        let result: Result<(), PgError> = futures_executor_lite(policy.run(|_| {
            calls += 1;
            async { Err(server("40001")) }
        }));
        assert_eq!(calls, 3);
        match result {
            Err(PgError::RetriesExhausted { attempts, last }) => {
                assert_eq!(attempts, 3);
                assert_eq!(last.code(), Some("40001"));
            }
            other => panic!("expected RetriesExhausted, got {other:?}"),
        }
        let permanent: Result<(), PgError> =
            futures_executor_lite(policy.run(|_| async { Err(server("23505")) }));
        assert_eq!(
            permanent
                .err()
                .and_then(|e| e.code().map(String::from))
                .as_deref(),
            Some("23505")
        );
    }

    /// Polls to completion; the futures here never wait on anything but a
    /// zero-length sleep.
    fn futures_executor_lite<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }
}
