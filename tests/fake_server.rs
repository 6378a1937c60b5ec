//! Hostile and broken servers, played by an in-memory fake: the client must
//! answer every one with a clear error, never a panic, a hang or a huge
//! allocation, and mark the connection broken.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::fake::{self, empty_extended_answer, message};
use common::{run, spawn, TestResult};
use futures_util::future::join;
use wasi_pg_client::transport::memory::MemoryTransport;
use wasi_pg_client::{classify_error, AsyncTransport, Config, Connection, ErrorClass, PgError};

fn config() -> Config {
    Config::new()
        .user("alice")
        .password("wonderland")
        .ssl_mode(wasi_pg_client::SslMode::Disable)
}

/// Connects over the fake and runs the actor in the background.
async fn connect_fake<T: AsyncTransport>(
    config: &Config,
    client: T,
) -> Result<Connection, PgError> {
    let (conn, task) = Connection::connect_with_transport(config, client).await?;
    let _actor = spawn(task);
    Ok(conn)
}

/// A trusted connection whose first request gets `answer` instead of a
/// proper reply; returns the error the request saw.
async fn first_request_gets(
    answer: Vec<u8>,
    config: Config,
) -> Result<(PgError, Connection), String> {
    let (client, mut server) = fake::pair(64 * 1024);
    let server_side = async move {
        server.accept_trust().await?;
        server.read_until_sync().await?;
        server.send(&answer).await?;
        // Hold the stream open: the client must not wait for more.
        Ok::<_, String>(server)
    };
    let client_side = async {
        let conn = connect_fake(&config, client)
            .await
            .map_err(|e| e.to_string())?;
        let e = conn
            .query("SELECT 1")
            .await
            .err()
            .ok_or("the request must fail")?;
        Ok::<_, String>((e, conn))
    };
    let (server, client) = join(server_side, client_side).await;
    let _server = server?;
    client
}

#[test]
fn garbage_is_a_protocol_error_and_breaks_the_connection() -> TestResult {
    run(async {
        let (e, conn) = first_request_gets(b"\x00\x01garbage!".to_vec(), config()).await?;
        check!(matches!(e, PgError::Protocol(_)), "{e:?}");
        check_eq!(classify_error(&e), ErrorClass::Broken);
        let later = conn
            .query("SELECT 1")
            .await
            .err()
            .ok_or("later calls must fail")?;
        check_eq!(classify_error(&later), ErrorClass::Broken);
        Ok(())
    })
}

#[test]
fn length_over_the_cap_is_refused_without_allocating() -> TestResult {
    run(async {
        for declared in [0x7fff_ffffu32, 0xffff_ffff, 1_000_000] {
            let mut answer = vec![b'D'];
            answer.extend_from_slice(&declared.to_be_bytes());
            let (e, _conn) =
                first_request_gets(answer, config().max_message_size(64 * 1024)).await?;
            check!(e.to_string().contains("over the limit"), "{declared}: {e}");
            check_eq!(classify_error(&e), ErrorClass::Broken);
        }
        Ok(())
    })
}

#[test]
fn length_below_four_is_a_protocol_error() -> TestResult {
    run(async {
        let (e, _conn) = first_request_gets(vec![b'Z', 0, 0, 0, 2], config()).await?;
        check!(matches!(e, PgError::Protocol(_)), "{e:?}");
        Ok(())
    })
}

#[test]
fn malformed_body_is_a_protocol_error() -> TestResult {
    run(async {
        // ParseComplete, then a RowDescription claiming 3 fields with none.
        let mut answer = message(b'1', b"");
        answer.extend(message(b'T', &[0, 3]));
        let (e, _conn) = first_request_gets(answer, config()).await?;
        check!(matches!(e, PgError::Protocol(_)), "{e:?}");
        Ok(())
    })
}

#[test]
fn truncated_message_then_disconnect_fails_every_request() -> TestResult {
    run(async {
        let (client, mut server) = fake::pair(64 * 1024);
        let server_side = async move {
            server.accept_trust().await?;
            server.read_until_sync().await?;
            // Half a DataRow, then the server goes away.
            server.send(&[b'D', 0, 0, 0, 100, 0, 1]).await?;
            drop(server);
            Ok::<_, String>(())
        };
        let client_side = async {
            let conn = connect_fake(&config(), client)
                .await
                .map_err(|e| e.to_string())?;
            let (a, b) = join(conn.query("SELECT 1"), conn.query("SELECT 2")).await;
            Ok::<_, String>((a, b))
        };
        let (server, client) = join(server_side, client_side).await;
        server?;
        let (a, b) = client?;
        for result in [a, b] {
            let e = result
                .err()
                .ok_or("a request on a cut connection must fail")?;
            check_eq!(classify_error(&e), ErrorClass::Broken);
        }
        Ok(())
    })
}

#[test]
fn unsolicited_message_breaks_the_connection() -> TestResult {
    run(async {
        let (client, mut server) = fake::pair(64 * 1024);
        let server_side = async move {
            server.accept_trust().await?;
            // A row nobody asked for.
            server.send(&message(b'D', &[0, 0])).await?;
            Ok::<_, String>(server)
        };
        let (server, conn) = join(server_side, connect_fake(&config(), client)).await;
        let _server = server?;
        let conn = conn?;
        let e = conn.query("SELECT 1").await.err().ok_or("must fail")?;
        check_eq!(classify_error(&e), ErrorClass::Broken);
        check!(e.to_string().contains("no request was waiting"), "{e}");
        Ok(())
    })
}

/// Startup where the server asks for `auth` (an Authentication message
/// body); returns the client's result and what the server received next.
async fn startup_with(
    auth: Vec<u8>,
    config: Config,
) -> Result<(Result<Connection, PgError>, Option<(u8, Vec<u8>)>), String> {
    let (client, mut server) = fake::pair(64 * 1024);
    let server_side = async move {
        server.read_startup().await?;
        server.send(&message(b'R', &auth)).await?;
        let answer = server.read_message().await.ok();
        if answer.is_some() {
            let mut ok = fake::auth_ok();
            ok.extend(fake::ready());
            server.send(&ok).await?;
        }
        Ok::<_, String>(answer)
    };
    let (answer, client) = join(server_side, connect_fake(&config, client)).await;
    Ok((client, answer?))
}

#[test]
fn cleartext_over_plaintext_is_refused_unless_opted_in() -> TestResult {
    run(async {
        let (result, sent) = startup_with(3u32.to_be_bytes().to_vec(), config()).await?;
        let e = result.err().ok_or("cleartext must be refused")?;
        check!(matches!(e, PgError::Auth(_)), "{e:?}");
        check!(e.to_string().contains("allow_insecure_auth"), "{e}");
        check!(sent.is_none(), "no password may be sent: {sent:?}");

        let (result, sent) = startup_with(
            3u32.to_be_bytes().to_vec(),
            config().allow_insecure_auth(true),
        )
        .await?;
        result?;
        let (tag, body) = sent.ok_or("the password message was expected")?;
        check_eq!(tag, b'p');
        check_eq!(body, b"wonderland\0".to_vec());
        Ok(())
    })
}

#[test]
fn md5_is_refused_without_the_feature_or_the_opt_in() -> TestResult {
    run(async {
        let mut auth = 5u32.to_be_bytes().to_vec();
        auth.extend_from_slice(b"salt");
        let (result, sent) = startup_with(auth.clone(), config()).await?;
        let e = result.err().ok_or("MD5 must be refused")?;
        check!(sent.is_none());
        if cfg!(feature = "md5-auth") {
            check!(e.to_string().contains("allow_insecure_auth"), "{e}");
            let (result, sent) = startup_with(auth, config().allow_insecure_auth(true)).await?;
            result?;
            let (tag, body) = sent.ok_or("the hash was expected")?;
            check_eq!(tag, b'p');
            check!(body.starts_with(b"md5"), "{body:?}");
        } else {
            check!(e.to_string().contains("md5-auth"), "{e}");
        }
        Ok(())
    })
}

#[test]
fn garbage_during_startup_is_a_protocol_error() -> TestResult {
    run(async {
        let (client, mut server) = fake::pair(64 * 1024);
        let server_side = async move {
            server.read_startup().await?;
            server.send(b"HTTP/1.1 400 Bad Request\r\n\r\n").await?;
            Ok::<_, String>(server)
        };
        let (server, result) = join(server_side, connect_fake(&config(), client)).await;
        let _server = server?;
        let e = result.err().ok_or("garbage must fail the startup")?;
        check!(matches!(e, PgError::Protocol(_)), "{e:?}");
        Ok(())
    })
}

/// Counts write calls; holds the first write after `arm` until released.
struct CountingTransport {
    inner: MemoryTransport,
    writes: Arc<AtomicUsize>,
    gate: Arc<Mutex<Option<futures_channel::oneshot::Receiver<()>>>>,
}

impl AsyncTransport for CountingTransport {
    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).await
    }
    async fn write(&self, buf: &[u8]) -> std::io::Result<usize> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let gate = self.gate.lock().ok().and_then(|mut g| g.take());
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        self.inner.write(buf).await
    }
    async fn flush(&self) -> std::io::Result<()> {
        self.inner.flush().await
    }
    async fn shutdown(&self) -> std::io::Result<()> {
        self.inner.shutdown().await
    }
}

#[test]
fn requests_queued_behind_a_write_go_out_together() -> TestResult {
    run(async {
        const REQUESTS: usize = 100;
        let (client, mut server) = fake::pair(1 << 20);
        let writes = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Mutex::new(None));
        let transport = CountingTransport {
            inner: client,
            writes: writes.clone(),
            gate: gate.clone(),
        };
        let server_side = async move {
            server.accept_trust().await?;
            for _ in 0..REQUESTS {
                server.read_until_sync().await?;
                server.send(&empty_extended_answer()).await?;
            }
            Ok::<_, String>(server)
        };
        let client_side = async {
            let conn = connect_fake(&config(), transport)
                .await
                .map_err(|e| e.to_string())?;
            writes.store(0, Ordering::SeqCst);
            let (open, closed) = futures_channel::oneshot::channel();
            *gate.lock().map_err(|e| e.to_string())? = Some(closed);
            let mut requests: Vec<_> = (0..REQUESTS)
                .map(|_| Box::pin(conn.query("SELECT 1")))
                .collect();
            // One poll each puts every request in the mailbox (it has room);
            // none can finish while the first write is held.
            std::future::poll_fn(|cx| {
                for r in requests.iter_mut() {
                    let _ = r.as_mut().poll(cx);
                }
                std::task::Poll::Ready(())
            })
            .await;
            let _ = open.send(());
            let results = futures_util::future::join_all(requests).await;
            // Counted before `conn` drops: its Terminate is one more write.
            Ok::<_, String>((results, writes.load(Ordering::SeqCst)))
        };
        let (server, client) = join(server_side, client_side).await;
        let _server = server?;
        let (results, writes) = client?;
        for r in results {
            r?;
        }
        // The held write, then everything that queued behind it.
        check!(writes <= 2, "{REQUESTS} requests took {writes} writes");
        Ok(())
    })
}

#[test]
fn hostile_array_count_is_a_decode_error_not_an_abort() -> TestResult {
    run(async {
        // Found by fuzz/decode_pg_types: a text[] declaring 2^31-1 elements
        // in 20 bytes made postgres-types reserve 51 GB and abort.
        let hostile: &[u8] =
            b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x19\x7f\xff\xff\xff\x00\x00\x00\x01";
        let mut field = b"tags\0".to_vec();
        field.extend_from_slice(&0u32.to_be_bytes()); // table OID
        field.extend_from_slice(&0i16.to_be_bytes()); // column number
        field.extend_from_slice(&1009u32.to_be_bytes()); // text[]
        field.extend_from_slice(&(-1i16).to_be_bytes()); // size
        field.extend_from_slice(&(-1i32).to_be_bytes()); // modifier
        field.extend_from_slice(&1i16.to_be_bytes()); // binary
        let mut description = 1i16.to_be_bytes().to_vec();
        description.extend(field);
        let mut row = 1i16.to_be_bytes().to_vec();
        row.extend_from_slice(&(hostile.len() as i32).to_be_bytes());
        row.extend_from_slice(hostile);

        let (client, mut server) = fake::pair(64 * 1024);
        let server_side = async move {
            server.accept_trust().await?;
            server.read_until_sync().await?;
            let mut answer = message(b'1', b"");
            answer.extend(message(b'2', b""));
            answer.extend(message(b'T', &description));
            answer.extend(message(b'D', &row));
            answer.extend(fake::command_complete("SELECT 1"));
            answer.extend(fake::ready());
            server.send(&answer).await?;
            Ok::<_, String>(server)
        };
        let client_side = async {
            let conn = connect_fake(&config(), client)
                .await
                .map_err(|e| e.to_string())?;
            conn.query("SELECT tags").await.map_err(|e| e.to_string())
        };
        let (server, result) = join(server_side, client_side).await;
        let _server = server?;
        let result = result?;
        let e = result.rows()[0]
            .get::<_, Vec<String>>(0)
            .err()
            .ok_or("the hostile array must not decode")?;
        check!(matches!(e, PgError::Decode(_)), "{e:?}");
        check!(e.to_string().contains("2147483647 elements"), "{e}");
        Ok(())
    })
}

#[test]
fn binary_copy_out_rows_split_across_chunks_are_joined() -> TestResult {
    run(async {
        // (7, 'seven'), (8, NULL), (9, a 3000-byte name) in COPY's binary
        // format, then the trailer.
        let long = "n".repeat(3000);
        let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
        data.extend_from_slice(&[0; 8]); // flags, header extension length
        let rows: [(i32, Option<&str>); 3] = [(7, Some("seven")), (8, None), (9, Some(&long))];
        for (id, name) in rows {
            data.extend_from_slice(&2i16.to_be_bytes());
            data.extend_from_slice(&4i32.to_be_bytes());
            data.extend_from_slice(&id.to_be_bytes());
            match name {
                Some(name) => {
                    data.extend_from_slice(&(name.len() as i32).to_be_bytes());
                    data.extend_from_slice(name.as_bytes());
                }
                None => data.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        data.extend_from_slice(&(-1i16).to_be_bytes());
        // The header split mid-signature; the first two rows together with
        // the start of the third; the long row dribbled out a byte at a time
        // for a while; the rest, trailer included, at once.
        let second_row_end = 19 + (2 + 8 + 4 + 5) + (2 + 8 + 4);
        let cuts = [3, second_row_end + 10];
        let mut chunks = vec![&data[..cuts[0]], &data[cuts[0]..cuts[1]]];
        let dribble_end = cuts[1] + 200;
        for at in cuts[1]..dribble_end {
            chunks.push(&data[at..at + 1]);
        }
        chunks.push(&data[dribble_end..]);

        let (client, mut server) = fake::pair(64 * 1024);
        let mut answer = message(b'H', &[1, 0, 2, 0, 1, 0, 1]);
        for chunk in &chunks {
            answer.extend(message(b'd', chunk));
        }
        answer.extend(message(b'c', b""));
        answer.extend(fake::command_complete("COPY 3"));
        answer.extend(fake::ready());
        let server_side = async move {
            server.accept_trust().await?;
            let (tag, _) = server.read_message().await?;
            if tag != b'Q' {
                return Err(format!(
                    "expected a simple query, got {:?}",
                    char::from(tag)
                ));
            }
            server.send(&answer).await?;
            Ok::<_, String>(server)
        };
        let client_side = async {
            let conn = connect_fake(&config(), client)
                .await
                .map_err(|e| e.to_string())?;
            let out = conn
                .copy_out("COPY t TO STDOUT (FORMAT binary)")
                .await
                .map_err(|e| e.to_string())?;
            let mut reader = wasi_pg_client::BinaryCopyOutReader::new(
                out,
                &[
                    wasi_pg_client::types::Type::INT4,
                    wasi_pg_client::types::Type::TEXT,
                ],
            );
            let mut read = Vec::new();
            while let Some(row) = reader.next().await.map_err(|e| e.to_string())? {
                let id: i32 = row.get(0).map_err(|e| e.to_string())?;
                let name: Option<String> = row.get(1).map_err(|e| e.to_string())?;
                read.push((id, name));
            }
            Ok::<_, String>(read)
        };
        let (server, read) = join(server_side, client_side).await;
        let _server = server?;
        let read = read?;
        check_eq!(
            read,
            vec![
                (7, Some("seven".to_string())),
                (8, None),
                (9, Some(long.clone()))
            ]
        );
        Ok(())
    })
}
