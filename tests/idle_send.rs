//! A request to an idle connection leaves from the caller's own poll, and
//! its answer is read on the caller's own poll: neither waits for the
//! connection's task to be scheduled (the task is not even woken). A
//! caller that stops polling meanwhile delays nothing but its own answer.
//! Played over the in-memory fake, where the test decides exactly when the
//! connection's task runs.

mod common;

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use common::fake::{self, command_complete, empty_extended_answer, message, ready};
use common::{run, TestResult};
use futures_util::future::join;
use wasi_pg_client::{Config, Connection, ConnectionTask};

/// A connection over the fake, its task polled once (settled, idle,
/// waiting for work) with a waker that counts its wake-ups.
async fn idle_connection() -> Result<
    (
        Connection,
        ConnectionTask,
        fake::FakeServer,
        Arc<Counting>,
        Waker,
    ),
    Box<dyn std::error::Error>,
> {
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
    let (conn, mut task) = connected?;
    let wakes = Arc::new(Counting::default());
    let task_waker = Waker::from(wakes.clone());
    if task
        .as_mut()
        .poll(&mut Context::from_waker(&task_waker))
        .is_ready()
    {
        return Err("the connection's task ended at once".into());
    }
    Ok((conn, task, server, wakes, task_waker))
}

/// The tags of the request the server has already received (up to its
/// Sync or Query), without waiting: an error if it has not arrived.
fn already_sent(server: &mut fake::FakeServer) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    match pin!(server.read_until_sync()).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(tags) => Ok(tags?),
        Poll::Pending => Err("the request has not reached the server".into()),
    }
}

/// The text of the simple Query the server has already received next,
/// without waiting: an error if none has arrived.
fn query_already_sent(server: &mut fake::FakeServer) -> Result<String, Box<dyn std::error::Error>> {
    match pin!(server.read_message()).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(message) => match message? {
            (b'Q', body) => {
                Ok(String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(&body)).into_owned())
            }
            (tag, _) => Err(format!("message {:?} arrived, not a Query", char::from(tag)).into()),
        },
        Poll::Pending => Err("the request has not reached the server".into()),
    }
}

/// Polls `query` once, which sends its request in place and leaves it
/// waiting for the answer; an error unless the server already has it.
fn sent_in_place<F: Future>(
    query: std::pin::Pin<&mut F>,
    server: &mut fake::FakeServer,
) -> Result<(), Box<dyn std::error::Error>> {
    if poll_once(query) {
        return Err("the request finished without an answer".into());
    }
    match already_sent(server)?.last() {
        Some(b'S') => Ok(()),
        other => Err(format!("the request ended with {other:?}, not Sync").into()),
    }
}

/// Runs the connection's task once with its own waker, as its runtime
/// would: whether it is still running.
fn run_task(task: &mut ConnectionTask, task_waker: &Waker) -> bool {
    task.as_mut()
        .poll(&mut Context::from_waker(task_waker))
        .is_pending()
}

/// Polls `future` once with a waker that does nothing: whether it finished.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> bool {
    future
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_ready()
}

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
        check!(run_task(&mut task, &task_waker));
        let woken_before = wakes.0.load(Ordering::SeqCst);

        let mut query = pin!(conn.query("SELECT 1"));
        check!(query
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending());
        // Without another run of the task, the request is already there.
        check_eq!(already_sent(&mut server)?.last().copied(), Some(b'S'));
        check_eq!(wakes.0.load(Ordering::SeqCst), woken_before);

        // The answer comes back; whoever runs the actor first reads it.
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

#[test]
fn a_caller_reads_its_own_answer_without_the_task() -> TestResult {
    run(async {
        let (conn, _task, mut server, wakes, _) = idle_connection().await?;
        let woken_before = wakes.0.load(Ordering::SeqCst);
        let mut query = pin!(conn.query("SELECT 1"));
        sent_in_place(query.as_mut(), &mut server)?;
        server.send(&empty_extended_answer()).await?;
        // The task is neither polled nor woken: the caller's next poll
        // reads the answer off the socket itself.
        let answered = match query.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => result?,
            Poll::Pending => return Err("the answer waited for the connection's task".into()),
        };
        check_eq!(answered.len(), 0);
        check_eq!(wakes.0.load(Ordering::SeqCst), woken_before);
        Ok(())
    })
}

#[test]
fn a_caller_that_stops_polling_delays_only_its_own_answer() -> TestResult {
    run(async {
        let (conn, mut task, mut server, wakes, task_waker) = idle_connection().await?;
        // The first caller is polled once (its request goes out, it waits
        // for the answer) and then never again until the end.
        let mut stalled = pin!(conn.query("SELECT 1"));
        sent_in_place(stalled.as_mut(), &mut server)?;

        // A second caller queues behind it: that wakes the task, which
        // writes the request and takes over the reading.
        let mut second = pin!(conn.query("SELECT 2"));
        check!(!poll_once(second.as_mut()));
        let woken = wakes.0.load(Ordering::SeqCst);
        check!(woken > 0);
        server.send(&empty_extended_answer()).await?;
        check!(run_task(&mut task, &task_waker));
        check_eq!(already_sent(&mut server)?.last().copied(), Some(b'S'));

        // The second answer wakes the task, not the stalled caller.
        let woken = wakes.0.load(Ordering::SeqCst);
        server.send(&empty_extended_answer()).await?;
        check!(wakes.0.load(Ordering::SeqCst) > woken);
        check!(run_task(&mut task, &task_waker));
        check!(poll_once(second.as_mut()));
        // The stalled caller's answer waited for it.
        check!(poll_once(stalled.as_mut()));
        Ok(())
    })
}

#[test]
fn on_a_listening_connection_the_task_reads() -> TestResult {
    run(async {
        let (conn, mut task, mut server, wakes, task_waker) = idle_connection().await?;
        let mut subscription = {
            let mut subscribe = pin!(conn.subscribe("jobs"));
            check!(!poll_once(subscribe.as_mut()));
            check!(run_task(&mut task, &task_waker));
            check_eq!(already_sent(&mut server)?, vec![b'Q']);
            let mut answer = command_complete("LISTEN");
            answer.extend(ready());
            server.send(&answer).await?;
            check!(run_task(&mut task, &task_waker));
            match subscribe
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
            {
                Poll::Ready(subscription) => subscription?,
                Poll::Pending => return Err("LISTEN was not answered".into()),
            }
        };
        // A caller polled once and then left alone...
        let mut stalled = pin!(conn.query("SELECT 1"));
        sent_in_place(stalled.as_mut(), &mut server)?;
        // ...does not hold up a notification: the socket wakes the task.
        let woken = wakes.0.load(Ordering::SeqCst);
        let mut notification = 7_i32.to_be_bytes().to_vec();
        notification.extend(b"jobs\0job 1\0");
        let mut bytes = empty_extended_answer();
        bytes.extend(message(b'A', &notification));
        server.send(&bytes).await?;
        check!(wakes.0.load(Ordering::SeqCst) > woken);
        let received = poll_fn(|cx| {
            let _ = task.as_mut().poll(cx);
            Box::pin(subscription.next()).as_mut().poll(cx)
        })
        .await?;
        check_eq!(received.map(|n| n.payload), Some("job 1".to_string()));
        check!(poll_once(stalled.as_mut()));
        Ok(())
    })
}

#[test]
fn a_caller_that_gives_up_waiting_hands_the_reading_back() -> TestResult {
    run(async {
        let (conn, mut task, mut server, wakes, task_waker) = idle_connection().await?;
        {
            let mut abandoned = pin!(conn.query("SELECT 1"));
            sent_in_place(abandoned.as_mut(), &mut server)?;
        }
        // Its answer still has to be read, and now wakes the task.
        let woken = wakes.0.load(Ordering::SeqCst);
        server.send(&empty_extended_answer()).await?;
        check!(wakes.0.load(Ordering::SeqCst) > woken);
        check!(run_task(&mut task, &task_waker));
        // The connection goes on: the next caller reads its own answer.
        let mut next = pin!(conn.query("SELECT 2"));
        sent_in_place(next.as_mut(), &mut server)?;
        server.send(&empty_extended_answer()).await?;
        check!(poll_once(next.as_mut()));
        Ok(())
    })
}

#[test]
fn a_transaction_runs_from_begin_to_commit_without_the_task() -> TestResult {
    run(async {
        let (conn, _task, mut server, wakes, _) = idle_connection().await?;
        let woken_before = wakes.0.load(Ordering::SeqCst);
        let in_transaction = |tag: &str| {
            let mut answer = command_complete(tag);
            answer.extend(message(b'Z', b"T"));
            answer
        };

        // The lease is granted and BEGIN written on the caller's poll...
        let mut begin = pin!(conn.transaction());
        check!(!poll_once(begin.as_mut()));
        check_eq!(already_sent(&mut server)?, vec![b'Q']);
        server.send(&in_transaction("BEGIN")).await?;
        // ...and its answer read on the next.
        let txn = match begin.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(txn) => txn?,
            Poll::Pending => return Err("BEGIN's answer waited for the task".into()),
        };

        // A statement under the open lease goes the same way.
        {
            let mut query = pin!(txn.query("SELECT 1"));
            sent_in_place(query.as_mut(), &mut server)?;
            let mut answer = empty_extended_answer();
            answer.truncate(answer.len() - ready().len());
            answer.extend(message(b'Z', b"T"));
            server.send(&answer).await?;
            check!(poll_once(query.as_mut()));
        }

        // COMMIT too; the lease ends with it, not by a message of its own
        // that would wake the task.
        let mut commit = pin!(txn.commit());
        check!(!poll_once(commit.as_mut()));
        check_eq!(already_sent(&mut server)?, vec![b'Q']);
        let mut answer = command_complete("COMMIT");
        answer.extend(ready());
        server.send(&answer).await?;
        match commit
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(committed) => committed?,
            Poll::Pending => return Err("COMMIT's answer waited for the task".into()),
        }
        check_eq!(wakes.0.load(Ordering::SeqCst), woken_before);

        // The connection is free again: a request from outside the
        // transaction goes straight out.
        let mut after = pin!(conn.query("SELECT 2"));
        sent_in_place(after.as_mut(), &mut server)?;
        Ok(())
    })
}

#[test]
fn a_transaction_given_up_once_its_lease_is_granted_is_rolled_back() -> TestResult {
    run(async {
        let (conn, mut task, mut server, _, task_waker) = idle_connection().await?;
        let mut first = pin!(conn.transaction());
        check!(!poll_once(first.as_mut()));
        check_eq!(query_already_sent(&mut server)?, "BEGIN");
        let mut began = command_complete("BEGIN");
        began.extend(message(b'Z', b"T"));
        server.send(&began).await?;
        let first = match first.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(txn) => txn?,
            Poll::Pending => return Err("BEGIN was not answered".into()),
        };

        // A second transaction waits for the first one's lease...
        let mut second = Box::pin(conn.transaction());
        check!(!poll_once(second.as_mut()));
        // ...which COMMIT hands over: its BEGIN goes out right behind.
        let mut commit = pin!(first.commit());
        check!(!poll_once(commit.as_mut()));
        check!(run_task(&mut task, &task_waker));
        check_eq!(query_already_sent(&mut server)?, "COMMIT");
        check_eq!(query_already_sent(&mut server)?, "BEGIN");

        // Its caller gives up before seeing the grant: the transaction it
        // opened is rolled back, not left open to whoever comes next.
        drop(second);
        check!(run_task(&mut task, &task_waker));
        check_eq!(query_already_sent(&mut server)?, "ROLLBACK");
        Ok(())
    })
}
