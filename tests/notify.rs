//! LISTEN/NOTIFY through the notification dispatcher.

mod common;

use std::time::Duration;

use common::{connect, run, TestResult};

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
