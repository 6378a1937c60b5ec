//! A request to an idle connection leaves from the caller's own poll: it
//! does not wait for the connection's task to be scheduled (the task is
//! not even woken for it). Played over the in-memory fake, where the test
//! decides exactly when the connection's task runs.

mod common;

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use common::fake::{self, empty_extended_answer};
use common::{run, TestResult};
use futures_util::future::join;
use wasi_pg_client::{Config, Connection};

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_request_to_an_idle_connection_is_sent_without_its_task() -> TestResult {
    run(async {
        let (client, mut server) = fake::pair(64 * 1024);
        let config = Config::new()
            .user("alice")
            .ssl_mode(wasi_pg_client::SslMode::Disable);
        let (accepted, connected) = join(
            server.accept_trust(),
            Connection::connect_with_transport(&config, client),
        )
        .await;
        accepted?;
        let (conn, task) = connected?;
        let mut task = pin!(task);
        let wakes = Arc::new(Counting::default());
        let task_waker = Waker::from(wakes.clone());
        // Its first run: the connection settles, idle, and waits for work.
        check!(task
            .as_mut()
            .poll(&mut Context::from_waker(&task_waker))
            .is_pending());
        let woken_before = wakes.0.load(Ordering::SeqCst);

        let mut query = pin!(conn.query("SELECT 1"));
        check!(query
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending());
        // Without another run of the task, the request is already there.
        let received = pin!(server.read_until_sync()).poll(&mut Context::from_waker(Waker::noop()));
        match received {
            Poll::Ready(tags) => check_eq!(tags?.last().copied(), Some(b'S')),
            Poll::Pending => return Err("the request did not reach the server".into()),
        }
        check_eq!(wakes.0.load(Ordering::SeqCst), woken_before);

        // The answer comes back through the task, as always.
        server.send(&empty_extended_answer()).await?;
        let result = poll_fn(|cx| {
            let _ = task.as_mut().poll(cx);
            query.as_mut().poll(cx)
        })
        .await?;
        check_eq!(result.len(), 0);
        Ok(())
    })
}
