//! The `floor` client: round trips with no client library, as the most any
//! client could do on this machine.
//!
//! Sockets with the statement prepared once, then per query only what the
//! protocol needs: Bind + Execute + Sync encoded into a reused buffer,
//! written, and the answer read back and checked. No task, no channel, no
//! allocation per query, no error handling past "fail". What it measures is
//! the kernel, the runtime and the server; the gap between it and a real
//! client is all a client could ever win. Trust authentication only (the
//! bench's cluster), plaintext only.
//!
//! Three workloads: latency (one socket, one query at a time), concurrent
//! (a socket per pooled connection, each running its share one query at a
//! time, all at once: a pool's lending without the pool) and
//! concurrent_shared (the tasks' queries kept in flight on shared sockets,
//! each answer's successor sent at once, every successor found by one read
//! going out in one write: the most batching that as many independent
//! callers, each waiting for its answer and each with its own Sync, allow).

use std::io;
use std::ops::Range;

use bytes::{Buf, BufMut, BytesMut};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;

use crate::{check, chunks, BoxError, Stopwatch, Timing, ECHO_SQL, WARM_UP};

/// The one statement, prepared under this name.
const STATEMENT: &str = "floor_echo";
/// Read request size: the answers are tens of bytes (under wasmtime the
/// host zeroes a buffer of the size asked for, on every read).
const READ_SIZE: usize = 4096;
/// Binary format code.
const BINARY: i16 = 1;

/// The latency workload: `n` round trips, one after another.
pub async fn measure(url: &str, n: i32) -> Result<Timing, BoxError> {
    let mut floor = Floor::open(url).await?;
    let stopwatch = Stopwatch::start();
    floor.echo_each(0..n).await?;
    Ok(stopwatch.stop())
}

/// The concurrent workload: `n` round trips shared out over `connections`
/// sockets, each running its share one after another, all at once.
pub async fn measure_concurrent(url: &str, n: i32, connections: usize) -> Result<Timing, BoxError> {
    run_on_sockets(url, n, connections, Pace::OneAtATime).await
}

/// The concurrent_shared workload: `n` round trips with `in_flight` queries
/// in flight at all times, spread evenly over as many of up to
/// `connections` sockets as run them fastest. Each spread first runs an
/// untimed trial of a fixed size (so it cancels out of the bench's
/// steady-state instruction count); then the fastest runs the `n`.
pub async fn measure_shared(
    url: &str,
    n: i32,
    in_flight: usize,
    connections: usize,
) -> Result<Timing, BoxError> {
    let mut fastest: Option<(f64, usize)> = None;
    for sockets in (1..=connections).filter(|c| in_flight.is_multiple_of(*c)) {
        let pace = Pace::Deep(in_flight / sockets);
        let trial = run_on_sockets(url, SHARED_TRIAL, sockets, pace).await?;
        eprintln!(
            "floor trial: {sockets} socket(s), {} deep: {:.0} queries/s",
            in_flight / sockets,
            f64::from(SHARED_TRIAL) / trial.secs
        );
        if fastest.is_none_or(|(secs, _)| trial.secs < secs) {
            fastest = Some((trial.secs, sockets));
        }
    }
    let (_, sockets) = fastest.ok_or("no even spread of the queries over the sockets")?;
    run_on_sockets(url, n, sockets, Pace::Deep(in_flight / sockets)).await
}

/// Queries in a [`measure_shared`] trial.
const SHARED_TRIAL: i32 = 5_000;

/// How each socket runs its share of the round trips.
#[derive(Clone, Copy)]
enum Pace {
    /// One query at a time: a pool's lending.
    OneAtATime,
    /// This many in flight: shared use.
    Deep(usize),
}

/// `n` round trips shared out over `sockets` fresh sockets, all at once,
/// each at `pace`.
async fn run_on_sockets(url: &str, n: i32, sockets: usize, pace: Pace) -> Result<Timing, BoxError> {
    let mut floors = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        floors.push(Floor::open(url).await?);
    }
    let share = usize::try_from(n)?.div_ceil(sockets.max(1));
    let stopwatch = Stopwatch::start();
    futures_util::future::try_join_all(floors.iter_mut().zip(chunks(0..n, share)).map(
        |(floor, values)| async move {
            match pace {
                Pace::OneAtATime => floor.echo_each(values).await,
                Pace::Deep(depth) => floor.echo_pipelined(values, depth).await,
            }
        },
    ))
    .await?;
    Ok(stopwatch.stop())
}

struct Floor {
    socket: Socket,
    out: BytesMut,
    incoming: BytesMut,
}

impl Floor {
    /// Connects as the URL's user to its database, over TCP, prepares the
    /// statement and warms up.
    async fn open(url: &str) -> Result<Floor, BoxError> {
        let config = wasi_pg_client::Config::from_uri(url)?;
        let host = match config.get_hosts().first() {
            Some(wasi_pg_client::Host::Tcp(host)) => host.clone(),
            _ => return Err("the floor client needs a TCP host in BENCH_URL".into()),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().ok_or("BENCH_URL names no user")?;
        let dbname = config.get_dbname().unwrap_or(user);
        let mut floor = Floor {
            socket: Socket::connect(&host, port).await?,
            out: BytesMut::new(),
            incoming: BytesMut::with_capacity(READ_SIZE),
        };
        frontend::startup_message([("user", user), ("database", dbname)], &mut floor.out)?;
        floor.round_trip().await?;
        frontend::parse(
            STATEMENT,
            ECHO_SQL,
            [wasi_pg_client::types::Type::INT4.oid()],
            &mut floor.out,
        )?;
        frontend::sync(&mut floor.out);
        floor.round_trip().await?;
        floor.echo_each(0..WARM_UP).await?;
        Ok(floor)
    }

    /// `SELECT $1::int4` for each value, one after another, each answer
    /// checked.
    async fn echo_each(&mut self, values: Range<i32>) -> Result<(), BoxError> {
        for i in values {
            self.queue_echo(i)?;
            let echoed = self.round_trip().await?.ok_or("no row")?;
            check("echo", i, echoed)?;
        }
        Ok(())
    }

    /// `SELECT $1::int4` for each value, `depth` in flight: each read's
    /// complete answers are checked, and as many next queries go out in
    /// one write.
    async fn echo_pipelined(&mut self, values: Range<i32>, depth: usize) -> Result<(), BoxError> {
        let mut waiting = std::collections::VecDeque::with_capacity(depth);
        let mut next = values.start;
        let mut value = None;
        loop {
            while waiting.len() < depth && next < values.end {
                self.queue_echo(next)?;
                waiting.push_back(next);
                next += 1;
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if !self.out.is_empty() {
                self.socket.write_all(&self.out).await?;
                self.out.clear();
            }
            self.socket.read_into(&mut self.incoming).await?;
            while let Some(message) = Message::parse(&mut self.incoming)? {
                if answer_ended(message, &mut value)? {
                    let asked = waiting.pop_front().ok_or("an answer to no query")?;
                    check("echo", asked, value.take().ok_or("no row")?)?;
                }
            }
        }
    }

    /// Encodes Bind + Execute + Sync of the statement with `i` into `out`.
    fn queue_echo(&mut self, i: i32) -> Result<(), BoxError> {
        frontend::bind(
            "",
            STATEMENT,
            [BINARY],
            [i],
            |value, buf| {
                buf.put_i32(value);
                Ok(IsNull::No)
            },
            [BINARY],
            &mut self.out,
        )
        .map_err(|_| "encoding Bind failed")?;
        frontend::execute("", 0, &mut self.out)?;
        frontend::sync(&mut self.out);
        Ok(())
    }

    /// Sends `out`, then reads until ReadyForQuery; returns the int4 of the
    /// last one-column DataRow, if any.
    async fn round_trip(&mut self) -> Result<Option<i32>, BoxError> {
        self.socket.write_all(&self.out).await?;
        self.out.clear();
        let mut value = None;
        loop {
            while let Some(message) = Message::parse(&mut self.incoming)? {
                if answer_ended(message, &mut value)? {
                    return Ok(value);
                }
            }
            self.socket.read_into(&mut self.incoming).await?;
        }
    }
}

/// Takes in one message of an answer, keeping a one-int4 DataRow's value in
/// `value`; whether it was the answer's end (ReadyForQuery).
fn answer_ended(message: Message, value: &mut Option<i32>) -> Result<bool, BoxError> {
    match message {
        Message::ReadyForQuery(_) => return Ok(true),
        Message::DataRow(row) => {
            let mut fields = row.buffer();
            if fields.len() != 8 || fields.get_i32() != 4 {
                return Err("expected one int4".into());
            }
            *value = Some(fields.get_i32());
        }
        Message::ErrorResponse(_) => return Err("the server answered an error".into()),
        Message::AuthenticationOk
        | Message::ParameterStatus(_)
        | Message::BackendKeyData(_)
        | Message::ParseComplete
        | Message::BindComplete
        | Message::CommandComplete(_) => {}
        _ => {
            return Err("unexpected message (the floor client knows trust auth only)".into());
        }
    }
    Ok(false)
}

#[cfg(not(target_arch = "wasm32"))]
struct Socket(tokio::net::TcpStream);

#[cfg(not(target_arch = "wasm32"))]
impl Socket {
    async fn connect(host: &str, port: u16) -> io::Result<Socket> {
        let stream = tokio::net::TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(Socket(stream))
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        tokio::io::AsyncWriteExt::write_all(&mut self.0, buf).await
    }

    /// Appends what one read returns; end of stream is an error.
    async fn read_into(&mut self, incoming: &mut BytesMut) -> io::Result<()> {
        incoming.reserve(READ_SIZE);
        match tokio::io::AsyncReadExt::read_buf(&mut self.0, incoming).await? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(target_arch = "wasm32")]
struct Socket(wstd::net::TcpStream);

#[cfg(target_arch = "wasm32")]
impl Socket {
    async fn connect(host: &str, port: u16) -> io::Result<Socket> {
        Ok(Socket(wstd::net::TcpStream::connect((host, port)).await?))
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        wstd::io::AsyncWrite::write_all(&mut self.0, buf).await
    }

    /// Appends what one read returns; end of stream is an error.
    async fn read_into(&mut self, incoming: &mut BytesMut) -> io::Result<()> {
        let mut chunk = [0u8; READ_SIZE];
        match wstd::io::AsyncRead::read(&mut self.0, &mut chunk).await? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                incoming.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }
}
