//! LISTEN/NOTIFY through the notification dispatcher.

mod common;

use std::time::{Duration, Instant};

use futures_channel::oneshot;
use futures_util::future::{join, join3, join_all};
use futures_util::StreamExt;
use wasi_pg_client::{Connection, Notification, PgError, Subscription};

use common::{connect, run, spawn, unique, within, TestResult};

#[test]
fn two_subscribers_on_one_connection_get_the_same_notifications() -> TestResult {
    run(async {
        let conn = connect().await?;
        let mut a = conn.subscribe("notify smoke").await?;
        let mut b = conn.subscribe("notify smoke").await?;
        let sender = connect().await?;
        for i in 0..3 {
            sender.notify("notify smoke", &format!("n{i}")).await?;
        }
        for sub in [&mut a, &mut b] {
            for i in 0..3 {
                let n = sub.next().await?.ok_or("stream ended")?;
                check_eq!(n.channel, "notify smoke");
                check_eq!(n.payload, format!("n{i}"));
                check_eq!(Some(n.process_id), sender.backend_pid());
            }
        }
        check_eq!(conn.listened_channels(), vec!["notify smoke".to_string()]);
        drop(a);
        drop(b);
        // UNLISTEN went out after the last subscriber left.
        let listening: i64 = conn
            .query_one("SELECT count(*) FROM pg_listening_channels()", &[])
            .await?
            .get(0)?;
        check_eq!(listening, 0);
        check!(conn.listened_channels().is_empty());
        Ok(())
    })
}

#[test]
fn wait_for_notification_times_out_or_returns_one() -> TestResult {
    run(async {
        let conn = connect().await?;
        conn.listen("events").await?;
        check!(conn
            .wait_for_notification_with_timeout(Duration::ZERO)
            .await?
            .is_none());
        check!(conn
            .wait_for_notification_with_timeout(Duration::from_millis(50))
            .await?
            .is_none());
        conn.notify("events", "hello").await?;
        let n = conn
            .wait_for_notification_with_timeout(Duration::from_secs(10))
            .await?
            .ok_or("no notification")?;
        check_eq!(n.payload, "hello");
        Ok(())
    })
}

/// Generous bound on anything that should finish: a deadlock guard, never a
/// synchronisation point.
const DEADLINE: Duration = Duration::from_secs(60);

/// The channels the server says this session listens to, sorted.
async fn server_channels(conn: &Connection) -> Result<Vec<String>, PgError> {
    let rows = conn
        .query_params("SELECT c FROM pg_listening_channels() AS c", &[])
        .await?;
    let mut channels = rows
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    channels.sort();
    Ok(channels)
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    names.sort();
    names
}

/// The next notification of `sub`, within the deadline.
async fn next_of(sub: &mut Subscription) -> Result<Notification, String> {
    within(DEADLINE, "waiting for a notification", sub.next())
        .await?
        .map_err(|e| format!("next(): {e}"))?
        .ok_or_else(|| "the subscription ended".to_string())
}

/// The next notification of `conn`'s own listener, within the deadline.
async fn waited(conn: &Connection) -> Result<Notification, String> {
    conn.wait_for_notification_with_timeout(DEADLINE)
        .await
        .map_err(|e| format!("wait_for_notification: {e}"))?
        .ok_or_else(|| format!("no notification within {DEADLINE:?}"))
}

/// Sends `count` notifications with payloads "1"..="count" on `channel`,
/// then the payload "marker" on `marker_channel`, all in one transaction (delivered
/// together, in this order, at commit).
async fn notify_series(
    sender: &Connection,
    channel: &str,
    count: i32,
    marker_channel: &str,
) -> TestResult {
    let txn = sender.transaction().await?;
    let rows = txn
        .query_params(
            "SELECT pg_notify($1, g::text) FROM generate_series(1, $2::int4) AS g",
            &[&channel, &count],
        )
        .await?;
    check_eq!(rows.len(), count as usize);
    txn.query_params("SELECT pg_notify($1, 'marker')", &[&marker_channel])
        .await?;
    txn.commit().await?;
    Ok(())
}

#[test]
fn odd_channel_names_are_quoted_not_injected() -> TestResult {
    run(async {
        let conn = connect().await?;
        let sender = connect().await?;
        // LISTEN goes out as a simple query on `conn`: a name that broke
        // out of the quoting would drop this table.
        conn.simple_query("CREATE TEMP TABLE canary (x int)")
            .await?;
        let suffix = unique("");
        let names: Vec<String> = [
            "we\"ird; chan",
            "ünïcödé 頻道",
            "it's 'single' quoted",
            "x\"; DROP TABLE canary; --",
            "x'); DROP TABLE canary; --",
            "Mixed CASE kept",
            "back\\slash $1 $$",
        ]
        .iter()
        .map(|n| format!("{n}{suffix}"))
        .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();

        let mut subs = Vec::new();
        for name in &names {
            let sub = conn.subscribe(name).await?;
            check_eq!(sub.channel(), name.as_str());
            subs.push(sub);
            // The connection's own listener on the same channel: no second
            // LISTEN, same name.
            conn.listen(name).await?;
        }
        check_eq!(conn.listened_channels(), sorted(&refs));
        check_eq!(server_channels(&conn).await?, sorted(&refs));

        for name in &names {
            sender.notify(name, &format!("payload for {name}")).await?;
        }
        for (name, sub) in names.iter().zip(subs.iter_mut()) {
            let n = next_of(sub).await?;
            check_eq!(n.channel, *name);
            check_eq!(n.payload, format!("payload for {name}"));
            check_eq!(Some(n.process_id), sender.backend_pid());
        }
        for name in &names {
            let n = waited(&conn).await?;
            check_eq!(n.channel, *name);
            check_eq!(n.payload, format!("payload for {name}"));
        }

        let canary: i64 = conn
            .query_one("SELECT count(*) FROM canary", &[])
            .await?
            .get(0)?;
        check_eq!(canary, 0);

        for name in &names {
            conn.unlisten(name).await?;
        }
        // The subscriptions still listen.
        check_eq!(server_channels(&conn).await?, sorted(&refs));
        drop(subs);
        check!(conn.listened_channels().is_empty());
        check!(server_channels(&conn).await?.is_empty());
        Ok(())
    })
}

#[test]
fn long_channel_names_are_cut_as_the_server_cuts_them() -> TestResult {
    run(async {
        let conn = connect().await?;
        let sender = connect().await?;
        let base = unique("notify_long");
        // 62 ASCII bytes then a 3-byte character: the server keeps 63 bytes
        // at most, cut at a character boundary, so 62.
        let ascii = format!("{base}{}", "x".repeat(62 - base.len()));
        let long = format!("{ascii}頻道 and more");
        let mut sub = conn.subscribe(&long).await?;
        check_eq!(sub.channel(), ascii.as_str());
        check_eq!(conn.listened_channels(), vec![ascii.clone()]);
        check_eq!(server_channels(&conn).await?, vec![ascii.clone()]);

        // pg_notify does not cut: the full name is the server's error.
        let err = match sender.notify(&long, "too long").await {
            Ok(()) => return Err("notify with a 70+ byte channel name succeeded".into()),
            Err(e) => e,
        };
        check_eq!(err.code(), Some("22023"));
        sender.notify(&ascii, "cut").await?;
        let n = next_of(&mut sub).await?;
        check_eq!(n.channel, ascii);
        check_eq!(n.payload, "cut");
        Ok(())
    })
}

/// A string of exactly `len` bytes mixing one-, two- and three-byte
/// characters and quoting characters.
fn payload_of(len: usize) -> String {
    let pattern = ['a', 'ü', '頻', '"', '\'', ';', ' ', '\\', '$', 'Z'];
    let mut s = String::with_capacity(len);
    for c in pattern.iter().cycle() {
        if s.len() + c.len_utf8() > len {
            break;
        }
        s.push(*c);
    }
    while s.len() < len {
        s.push('x');
    }
    s
}

#[test]
fn payloads_up_to_7999_bytes_arrive_intact_and_longer_ones_are_refused() -> TestResult {
    run(async {
        let conn = connect().await?;
        let sender = connect().await?;
        let channel = unique("notify_payload");
        let mut sub = conn.subscribe(&channel).await?;

        let biggest = payload_of(7999);
        check_eq!(biggest.len(), 7999);
        sender.notify(&channel, &biggest).await?;
        sender.notify(&channel, "").await?;
        let n = next_of(&mut sub).await?;
        check_eq!(n.payload.len(), 7999);
        check!(
            n.payload == biggest,
            "the 7999-byte payload changed on the way"
        );
        check_eq!(next_of(&mut sub).await?.payload, "");

        for len in [8000, 8001, 100_000] {
            match sender.notify(&channel, &payload_of(len)).await {
                Ok(()) => return Err(format!("a {len}-byte payload was accepted").into()),
                Err(e) => check_eq!(e.code(), Some("22023")),
            }
        }
        // Both connections carry on, and nothing of the refused ones came.
        sender.notify(&channel, "after").await?;
        let n = next_of(&mut sub).await?;
        check_eq!(n.payload, "after");
        let one: i32 = sender.query_one("SELECT 1", &[]).await?.get(0)?;
        check_eq!(one, 1);
        let one: i32 = conn.query_one("SELECT 1", &[]).await?.get(0)?;
        check_eq!(one, 1);
        Ok(())
    })
}

/// Reads `count` notifications with payloads "1"..="count", in order; the
/// number dropped as `Lagged`.
async fn read_series(mut sub: Subscription, count: u64, sender_pid: i32) -> Result<u64, String> {
    let mut expected = 1;
    let mut lagged = 0;
    while expected <= count {
        match sub.next().await {
            Ok(Some(n)) => {
                if n.payload != expected.to_string() || n.process_id != sender_pid {
                    return Err(format!(
                        "expected payload {expected} from {sender_pid}, got {n:?}"
                    ));
                }
                expected += 1;
            }
            Err(PgError::Lagged(missed)) => {
                lagged += missed;
                expected += missed;
            }
            Ok(None) => return Err(format!("the subscription ended before {expected}")),
            Err(e) => return Err(format!("next(): {e}")),
        }
    }
    Ok(lagged)
}

#[test]
fn a_subscriber_that_never_reads_lags_alone_with_a_bounded_queue() -> TestResult {
    const SUBSCRIBERS: usize = 100;
    const COUNT: u64 = 10_000;
    const QUEUE: u64 = 1024;
    run(async {
        let conn = connect().await?;
        let sender = connect().await?;
        let sender_pid = sender.backend_pid().ok_or("no backend pid")?;
        let channel = unique("notify_fanout");
        let marker = unique("notify_fanout_marker");
        conn.listen(&marker).await?;
        let mut slow = conn.subscribe(&channel).await?;
        let mut readers = Vec::new();
        for _ in 1..SUBSCRIBERS {
            let sub = conn.subscribe(&channel).await?;
            readers.push(spawn(read_series(sub, COUNT, sender_pid)));
        }
        check_eq!(server_channels(&conn).await?, sorted(&[&channel, &marker]));

        notify_series(&sender, &channel, COUNT as i32, &marker).await?;
        let results = within(DEADLINE, "the 99 readers", join_all(readers)).await?;
        // Each reader's count of dropped notifications: checked last, so a
        // failure there does not hide the slow subscriber's results.
        let mut lags = Vec::new();
        for result in results {
            lags.push(result??);
        }
        // The marker came after all 10,000 on the wire, so the dispatcher
        // has handed all of them to the slow subscriber by now.
        let n = waited(&conn).await?;
        check_eq!(
            (n.channel.as_str(), n.payload.as_str()),
            (marker.as_str(), "marker")
        );

        for expected in 1..=QUEUE {
            match within(DEADLINE, "the slow subscriber", slow.next()).await? {
                Ok(Some(n)) => check_eq!(n.payload, expected.to_string()),
                other => return Err(format!("slow subscriber, item {expected}: {other:?}").into()),
            }
        }
        match within(DEADLINE, "the slow subscriber", slow.next()).await? {
            Err(PgError::Lagged(missed)) => check_eq!(missed, COUNT - QUEUE),
            other => return Err(format!("expected Lagged after the queue: {other:?}").into()),
        }
        // Nothing else was queued: the next one is the one sent now.
        sender.notify(&channel, "after the gap").await?;
        let n = next_of(&mut slow).await?;
        check_eq!(n.payload, "after the gap");

        // The 99 were waiting in next() all along: none may have lagged.
        let lagged: Vec<u64> = lags.iter().copied().filter(|&l| l > 0).collect();
        check!(
            lagged.is_empty(),
            "{} of {} readers that kept reading lagged; they missed {:?} (min..=max) of {COUNT}",
            lagged.len(),
            lags.len(),
            lagged.iter().min().zip(lagged.iter().max())
        );
        Ok(())
    })
}

#[test]
fn timeouts_return_none_promptly_and_a_notification_sent_while_waiting_wakes_the_wait() -> TestResult
{
    run(async {
        let conn = connect().await?;
        let sender = connect().await?;
        let channel = unique("notify_timeout");
        conn.listen(&channel).await?;

        let start = Instant::now();
        let got = conn
            .wait_for_notification_with_timeout(Duration::ZERO)
            .await?;
        let took = start.elapsed();
        check!(got.is_none(), "zero timeout returned {got:?}");
        check!(took < Duration::from_secs(1), "zero timeout took {took:?}");

        let start = Instant::now();
        let got = conn
            .wait_for_notification_with_timeout(Duration::from_millis(50))
            .await?;
        let took = start.elapsed();
        check!(got.is_none(), "50 ms timeout returned {got:?}");
        check!(
            took >= Duration::from_millis(50) && took < Duration::from_secs(5),
            "50 ms timeout took {took:?}"
        );

        // The wait is polled first, so it is waiting before the sender's
        // query even goes out.
        let (got, sent) = join(
            conn.wait_for_notification_with_timeout(DEADLINE),
            sender.notify(&channel, "while waiting"),
        )
        .await;
        sent?;
        let n = got?.ok_or("no notification while waiting")?;
        check_eq!(n.payload, "while waiting");
        check_eq!(Some(n.process_id), sender.backend_pid());

        // The same with the sender on another task.
        let task_sender = sender.clone();
        let task_channel = channel.clone();
        let (got, sent) = join(
            conn.wait_for_notification_with_timeout(DEADLINE),
            spawn(async move { task_sender.notify(&task_channel, "from a task").await }),
        )
        .await;
        sent??;
        let n = got?.ok_or("no notification from the task")?;
        check_eq!(n.payload, "from a task");

        // One already received is returned even with a zero timeout. The
        // probe's notification follows it on the wire, so once the probe
        // has it, the listener's is queued.
        let probe_channel = unique("notify_timeout_probe");
        let mut probe = conn.subscribe(&probe_channel).await?;
        sender.notify(&channel, "already here").await?;
        sender.notify(&probe_channel, "probe").await?;
        check_eq!(next_of(&mut probe).await?.payload, "probe");
        let got = conn
            .wait_for_notification_with_timeout(Duration::ZERO)
            .await?;
        check_eq!(got.map(|n| n.payload), Some("already here".to_string()));
        Ok(())
    })
}

#[test]
fn listen_and_unlisten_follow_the_last_listener() -> TestResult {
    run(async {
        let conn = connect().await?;
        let sender = connect().await?;
        let a = unique("notify_ul_a");
        let x = unique("notify_ul_x");
        let b = unique("notify_ul_b");

        conn.listen(&a).await?;
        check_eq!(conn.listened_channels(), vec![a.clone()]);
        check_eq!(server_channels(&conn).await?, vec![a.clone()]);

        // listen + subscribe on x; dropping the subscription keeps LISTEN.
        conn.listen(&x).await?;
        let sub_x = conn.subscribe(&x).await?;
        conn.listen(&x).await?; // a second listen changes nothing
        check_eq!(conn.listened_channels(), sorted(&[&a, &x]));
        check_eq!(server_channels(&conn).await?, sorted(&[&a, &x]));
        drop(sub_x);
        check_eq!(conn.listened_channels(), sorted(&[&a, &x]));
        check_eq!(server_channels(&conn).await?, sorted(&[&a, &x]));
        sender.notify(&x, "still listening").await?;
        let n = waited(&conn).await?;
        check_eq!(
            (n.channel, n.payload),
            (x.clone(), "still listening".to_string())
        );

        // One unlisten undoes any number of listens.
        conn.unlisten(&x).await?;
        check_eq!(conn.listened_channels(), vec![a.clone()]);
        check_eq!(server_channels(&conn).await?, vec![a.clone()]);
        // Nothing on x comes any more: the marker on a, sent after it,
        // is the next one.
        sender.notify(&x, "not listened").await?;
        sender.notify(&a, "marker").await?;
        let n = waited(&conn).await?;
        check_eq!((n.channel, n.payload), (a.clone(), "marker".to_string()));

        // The other way round: unlisten while a subscription listens.
        let mut sub_b = conn.subscribe(&b).await?;
        conn.listen(&b).await?;
        check_eq!(server_channels(&conn).await?, sorted(&[&a, &b]));
        conn.unlisten(&b).await?;
        check_eq!(conn.listened_channels(), sorted(&[&a, &b]));
        check_eq!(server_channels(&conn).await?, sorted(&[&a, &b]));
        sender.notify(&b, "to the subscription").await?;
        check_eq!(next_of(&mut sub_b).await?.payload, "to the subscription");
        drop(sub_b);
        check_eq!(conn.listened_channels(), vec![a.clone()]);
        check_eq!(server_channels(&conn).await?, vec![a.clone()]);

        // Unlistening a channel nobody listens to is a no-op.
        conn.unlisten(&b).await?;
        conn.unlisten(&a).await?;
        conn.unlisten(&a).await?;
        check!(conn.listened_channels().is_empty());
        check!(server_channels(&conn).await?.is_empty());
        Ok(())
    })
}

#[test]
fn subscriptions_on_clones_in_spawned_tasks_all_receive() -> TestResult {
    const TASKS: usize = 8;
    run(async {
        let conn = connect().await?;
        let sender = connect().await?;
        let sender_pid = sender.backend_pid().ok_or("no backend pid")?;
        let shared = unique("notify_tasks");
        let mut ready = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..TASKS {
            let conn = conn.clone();
            let shared = shared.clone();
            let (tx, rx) = oneshot::channel::<()>();
            ready.push(rx);
            tasks.push(spawn(async move {
                let own = format!("{shared}_{i}");
                let mut on_shared = conn.subscribe(&shared).await.map_err(|e| e.to_string())?;
                let mut on_own = conn.subscribe(&own).await.map_err(|e| e.to_string())?;
                let _ = tx.send(());
                let mut got = Vec::new();
                for _ in 0..3 {
                    let n = next_of(&mut on_shared).await?;
                    if n.process_id != sender_pid || n.channel != shared {
                        return Err(format!("task {i}: unexpected {n:?}"));
                    }
                    got.push(n.payload);
                }
                let n = next_of(&mut on_own).await?;
                if n.channel != own {
                    return Err(format!("task {i}: unexpected {n:?}"));
                }
                got.push(n.payload);
                Ok::<Vec<String>, String>(got)
            }));
        }
        for (i, rx) in ready.into_iter().enumerate() {
            if within(DEADLINE, "a task subscribing", rx).await?.is_err() {
                // The task ended before subscribing: its error says why.
                let outcome = within(DEADLINE, "a failed task", tasks.swap_remove(i)).await?;
                return Err(format!("task {i} failed to subscribe: {outcome:?}").into());
            }
        }
        check_eq!(conn.listened_channels().len(), TASKS + 1);
        check_eq!(server_channels(&conn).await?, conn.listened_channels());

        for k in 0..3 {
            sender.notify(&shared, &format!("shared {k}")).await?;
        }
        for i in 0..TASKS {
            sender
                .notify(&format!("{shared}_{i}"), &format!("own {i}"))
                .await?;
        }
        let results = within(DEADLINE, "the tasks", join_all(tasks)).await?;
        for (i, result) in results.into_iter().enumerate() {
            check_eq!(
                result??,
                vec![
                    "shared 0".to_string(),
                    "shared 1".to_string(),
                    "shared 2".to_string(),
                    format!("own {i}"),
                ]
            );
        }
        // The tasks dropped their subscriptions: all UNLISTENed.
        check!(conn.listened_channels().is_empty());
        check!(server_channels(&conn).await?.is_empty());
        Ok(())
    })
}

#[test]
fn a_closed_connection_ends_subscriptions_and_fails_waits() -> TestResult {
    run(async {
        let conn = connect().await?;
        let sender = connect().await?;
        let channel = unique("notify_close");
        let mut a = conn.subscribe(&channel).await?;
        let mut b = conn.subscribe(&channel).await?;
        conn.listen(&unique("notify_close_own")).await?;
        sender.notify(&channel, "before close").await?;
        check_eq!(next_of(&mut a).await?.payload, "before close");

        // A next() and a wait that are pending when the connection closes.
        let (next_a, wait, closed) = within(
            DEADLINE,
            "close with pending waits",
            join3(a.next(), conn.wait_for_notification(), conn.close()),
        )
        .await?;
        closed?;
        check!(matches!(next_a, Ok(None)), "pending next(): {next_a:?}");
        check!(
            matches!(wait, Err(PgError::Closed(_))),
            "pending wait: {wait:?}"
        );
        // What was queued before the close is still read, then the end.
        check_eq!(next_of(&mut b).await?.payload, "before close");
        check!(matches!(b.next().await, Ok(None)));
        check!(matches!(b.next().await, Ok(None)), "the end is not sticky");
        check!(matches!(a.next().await, Ok(None)));
        let wait = conn.wait_for_notification().await;
        check!(
            matches!(wait, Err(PgError::Closed(_))),
            "later wait: {wait:?}"
        );
        let wait = conn
            .wait_for_notification_with_timeout(Duration::from_secs(1))
            .await;
        check!(wait.is_err(), "later wait with timeout: {wait:?}");

        // The server ending the session does the same.
        let victim = connect().await?;
        let victim_pid = victim.backend_pid().ok_or("no backend pid")?;
        let mut sub = victim.subscribe(&channel).await?;
        let (next, wait, terminated) = within(
            DEADLINE,
            "termination with pending waits",
            join3(
                sub.next(),
                victim.wait_for_notification(),
                sender.query_one("SELECT pg_terminate_backend($1)", &[&victim_pid]),
            ),
        )
        .await?;
        check!(terminated?.get::<_, bool>(0)?);
        check!(
            matches!(next, Ok(None)),
            "next() after termination: {next:?}"
        );
        check!(wait.is_err(), "wait after termination: {wait:?}");

        // Later calls fail with Closed, also those that need no LISTEN
        // (someone on the connection still listens to the channel).
        let late = conn.subscribe(&unique("notify_close_late")).await;
        check!(
            matches!(late, Err(PgError::Closed(_))),
            "subscribe to a new channel after close: {late:?}"
        );
        let late = conn.listen(&unique("notify_close_late")).await;
        check!(
            matches!(late, Err(PgError::Closed(_))),
            "listen to a new channel after close: {late:?}"
        );
        let late = conn.listen(&channel).await;
        check!(
            matches!(late, Err(PgError::Closed(_))),
            "listen to a subscribed channel after close: {late:?}"
        );
        let late = conn.subscribe(&channel).await;
        check!(
            matches!(late, Err(PgError::Closed(_))),
            "subscribe to a subscribed channel after close: {late:?}"
        );
        Ok(())
    })
}

#[test]
fn a_subscription_is_a_stream() -> TestResult {
    run(async {
        let conn = connect().await?;
        let sender = connect().await?;
        let channel = unique("notify_stream");
        let marker = unique("notify_stream_marker");
        let mut sub = conn.subscribe(&channel).await?;
        for k in 1..=5 {
            sender.notify(&channel, &k.to_string()).await?;
        }
        let first = within(DEADLINE, "StreamExt::next", StreamExt::next(&mut sub))
            .await?
            .ok_or("the stream ended")??;
        check_eq!(first.payload, "1");
        let rest: Vec<Result<Notification, PgError>> =
            within(DEADLINE, "take(4)", (&mut sub).take(4).collect()).await?;
        let rest = rest.into_iter().collect::<Result<Vec<_>, _>>()?;
        let payloads: Vec<&str> = rest.iter().map(|n| n.payload.as_str()).collect();
        check_eq!(payloads, vec!["2", "3", "4", "5"]);
        check!(rest.iter().all(|n| n.channel == channel));

        // A lag is an Err item in the stream, and the stream goes on.
        conn.listen(&marker).await?;
        notify_series(&sender, &channel, 1030, &marker).await?;
        check_eq!(waited(&conn).await?.payload, "marker");
        let items: Vec<Result<Notification, PgError>> =
            within(DEADLINE, "take(1025)", (&mut sub).take(1025).collect()).await?;
        check_eq!(items.len(), 1025);
        for (i, item) in items[..1024].iter().enumerate() {
            match item {
                Ok(n) => check_eq!(n.payload, (i + 1).to_string()),
                Err(e) => return Err(format!("item {i}: {e}").into()),
            }
        }
        check!(
            matches!(items[1024], Err(PgError::Lagged(6))),
            "after the queue: {:?}",
            items[1024]
        );
        sender.notify(&channel, "after the gap").await?;
        let n = within(DEADLINE, "StreamExt::next", StreamExt::next(&mut sub))
            .await?
            .ok_or("the stream ended")??;
        check_eq!(n.payload, "after the gap");

        conn.close().await?;
        let end = within(DEADLINE, "the end of the stream", StreamExt::next(&mut sub)).await?;
        check!(end.is_none(), "after close: {end:?}");
        Ok(())
    })
}

#[test]
fn notifications_come_at_commit_and_never_after_rollback() -> TestResult {
    run(async {
        let listener = connect().await?;
        let sender = connect().await?;
        let other = connect().await?;
        let channel = unique("notify_txn");
        let mut sub = listener.subscribe(&channel).await?;
        other.notify(&channel, "works").await?;
        check_eq!(next_of(&mut sub).await?.payload, "works");

        let txn = sender.transaction().await?;
        txn.query_params("SELECT pg_notify($1, 'committed')", &[&channel])
            .await?;
        // Sent later but committed first: comes first.
        other.notify(&channel, "marker 1").await?;
        check_eq!(next_of(&mut sub).await?.payload, "marker 1");
        txn.commit().await?;
        let n = next_of(&mut sub).await?;
        check_eq!(n.payload, "committed");
        check_eq!(Some(n.process_id), sender.backend_pid());

        let txn = sender.transaction().await?;
        txn.query_params("SELECT pg_notify($1, 'rolled back')", &[&channel])
            .await?;
        txn.rollback().await?;
        other.notify(&channel, "marker 2").await?;
        check_eq!(next_of(&mut sub).await?.payload, "marker 2");

        // A rolled-back savepoint drops its notifications; the rest of the
        // transaction's come at commit.
        let txn = sender.transaction().await?;
        txn.query_params("SELECT pg_notify($1, 'outer')", &[&channel])
            .await?;
        let savepoint = txn.savepoint("inner").await?;
        savepoint
            .query_params("SELECT pg_notify($1, 'in the savepoint')", &[&channel])
            .await?;
        savepoint.rollback().await?;
        txn.commit().await?;
        other.notify(&channel, "marker 3").await?;
        check_eq!(next_of(&mut sub).await?.payload, "outer");
        check_eq!(next_of(&mut sub).await?.payload, "marker 3");

        Ok(())
    })
}
