//! WASI Preview 2 TCP, for components running under wasmtime and similar hosts.
//!
//! wstd ships a `TcpStream`, but it cannot be used as it is: its `connect`
//! resolves names with std's blocking lookup, which stalls the whole event
//! loop (every other task in the component freezes until DNS answers), and
//! its `connect_addr` panics on IPv6 addresses. Its errors also flatten most
//! `wasi:sockets` codes to `ErrorKind::Other` without saying which host was
//! being reached or which runtime flag is missing. So this module owns the
//! socket setup — asynchronous `wasi:sockets/ip-name-lookup`, one attempt per
//! resolved address — and reuses wstd's reactor.
//!
//! The input side is ours too: wstd's `AsyncInputStream::read` keeps its
//! readiness wait registered with the reactor after the read future is
//! dropped. The connection actor drops pending reads all the time (it waits
//! for the socket or its mailbox, whichever is first), and with that stale
//! registration the event loop spins at full CPU whenever unread bytes sit
//! on the socket and no read is pending (measured: thousands of wake-ups in
//! 100 ms instead of two).

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

use wasip2::io::streams::{InputStream, OutputStream, StreamError};
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::ip_name_lookup::resolve_addresses;
use wasip2::sockets::network::{
    ErrorCode, IpAddress, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
    Network,
};
use wasip2::sockets::tcp::{ShutdownType, TcpSocket};
use wasip2::sockets::tcp_create_socket::create_tcp_socket;
use wstd::runtime::AsyncPollable;

use super::AsyncTransport;

/// A connected `wasi:sockets` TCP stream.
///
/// Must be dropped inside the wstd runtime (`block_on`) it was made in:
/// its pollables deregister from the current reactor on drop.
#[derive(Debug)]
pub(crate) struct WasiTcpStream {
    // Field order matters: fields drop top to bottom, and the host traps the
    // whole component if a resource is dropped before its children. The
    // pollables are the streams' children; both streams are the socket's.
    readable: AsyncPollable,
    input: InputStream,
    /// How many bytes the next read asks for (see [`next_read_request`]).
    read_request: AtomicUsize,
    writable: AsyncPollable,
    output: OutputStream,
    socket: TcpSocket,
}

/// Opens a TCP connection to `host:port`.
///
/// `host` is an IPv4 literal, an IPv6 literal (bare, or in brackets), or a
/// name resolved with `wasi:sockets/ip-name-lookup` (the host must allow it,
/// e.g. wasmtime's `-S allow-ip-name-lookup=y`). Each resolved address is
/// tried in the resolver's order; the first that accepts wins, otherwise the
/// error from the last attempt is returned.
pub(crate) async fn connect(host: &str, port: u16) -> io::Result<WasiTcpStream> {
    let network = instance_network();
    let addresses = match parse_ip_literal(host) {
        // Literals skip the resolver so they work without name-lookup rights.
        Some(ip) => vec![ip],
        None => resolve(&network, host, port).await?,
    };
    connect_any(&network, addresses, host, port).await
}

/// Tries `addresses` in order and returns the first connection made, else
/// the last attempt's error.
async fn connect_any(
    network: &Network,
    addresses: Vec<IpAddress>,
    host: &str,
    port: u16,
) -> io::Result<WasiTcpStream> {
    let mut last_error = None;
    for address in addresses {
        match connect_address(network, address, host, port).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{}: the name has no addresses",
                context("resolving", host, port, None)
            ),
        )
    }))
}

/// Parses `host` as an IP address literal.
fn parse_ip_literal(host: &str) -> Option<IpAddress> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(ipv4(v4.octets())),
        // WASI refuses IPv4-mapped IPv6 addresses (invalid-argument); the
        // IPv4 address they stand for reaches the same server.
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some(ipv4(v4.octets())),
            None => Some(ipv6(v6)),
        },
    }
}

fn ipv4([a, b, c, d]: [u8; 4]) -> IpAddress {
    IpAddress::Ipv4((a, b, c, d))
}

fn ipv6(v6: Ipv6Addr) -> IpAddress {
    let [a, b, c, d, e, f, g, h] = v6.segments();
    IpAddress::Ipv6((a, b, c, d, e, f, g, h))
}

/// Resolves `host` to its addresses, in the resolver's preference order,
/// waiting on the lookup's pollable so other tasks keep running meanwhile.
async fn resolve(network: &Network, host: &str, port: u16) -> io::Result<Vec<IpAddress>> {
    let fail = |code| wasi_error(code, &context("resolving", host, port, None));
    let stream = resolve_addresses(network, host).map_err(fail)?;
    // Declared after `stream`, so dropped before it (the pollable is its child).
    let ready = AsyncPollable::new(stream.subscribe());
    let mut addresses = Vec::new();
    loop {
        match stream.resolve_next_address() {
            Ok(Some(address)) => addresses.push(address),
            Ok(None) => return Ok(addresses),
            Err(ErrorCode::WouldBlock) => ready.wait_for().await,
            // WASI reports lookup errors before any address; should one come
            // later anyway, the addresses already received are still usable.
            Err(_) if !addresses.is_empty() => return Ok(addresses),
            Err(code) => return Err(fail(code)),
        }
    }
}

/// Makes one connection attempt to one resolved address.
async fn connect_address(
    network: &Network,
    address: IpAddress,
    host: &str,
    port: u16,
) -> io::Result<WasiTcpStream> {
    let fail = |code| wasi_error(code, &context("connecting to", host, port, Some(address)));
    let (family, remote) = match address {
        IpAddress::Ipv4(address) => (
            IpAddressFamily::Ipv4,
            IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address }),
        ),
        IpAddress::Ipv6(address) => (
            IpAddressFamily::Ipv6,
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port,
                flow_info: 0,
                address,
                scope_id: 0,
            }),
        ),
    };
    let socket = create_tcp_socket(family).map_err(fail)?;
    socket.start_connect(network, remote).map_err(fail)?;
    // Declared after `socket`, so dropped before it, also when this future is
    // cancelled mid-connect (the pollable is the socket's child resource).
    let ready = AsyncPollable::new(socket.subscribe());
    let (input, output) = loop {
        ready.wait_for().await;
        match socket.finish_connect() {
            Ok(streams) => break streams,
            // The pollable may wake for reasons other than this connect.
            Err(ErrorCode::WouldBlock) => {}
            Err(code) => return Err(fail(code)),
        }
    };
    drop(ready);
    Ok(WasiTcpStream {
        readable: AsyncPollable::new(input.subscribe()),
        input,
        read_request: AtomicUsize::new(MIN_READ_REQUEST),
        writable: AsyncPollable::new(output.subscribe()),
        output,
        socket,
    })
}

/// Describes what was being attempted, for error messages: `host:port`, plus
/// the address tried when `host` is a name.
fn context(action: &str, host: &str, port: u16, address: Option<IpAddress>) -> String {
    let target = if host.contains(':') && !host.starts_with('[') {
        // Brackets keep an IPv6 literal's last group apart from the port.
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match address {
        Some(address) if parse_ip_literal(host).is_none() => {
            format!("{action} {target} ({})", ip_to_std(address))
        }
        _ => format!("{action} {target}"),
    }
}

/// Turns a `wasi:sockets` error code into an `io::Error` whose kind callers
/// can match on and whose message says what failed (`context`), the WASI
/// code and, where it helps, what to change.
fn wasi_error(code: ErrorCode, context: &str) -> io::Error {
    use io::ErrorKind as K;
    use ErrorCode as E;
    let (kind, hint) = match code {
        E::ConnectionRefused => (K::ConnectionRefused, ""),
        E::ConnectionReset => (K::ConnectionReset, ""),
        E::ConnectionAborted => (K::ConnectionAborted, ""),
        E::Timeout => (K::TimedOut, ""),
        E::WouldBlock => (K::WouldBlock, ""),
        E::AccessDenied => (
            K::PermissionDenied,
            "; the WASI host denied network access (under wasmtime, run with \
             `-S inherit-network=y`, and `-S allow-ip-name-lookup=y` to resolve host names)",
        ),
        E::NameUnresolvable => (K::NotFound, "; no such host"),
        E::TemporaryResolverFailure => (K::Other, "; temporary name resolution failure, try again"),
        // wasmtime also answers this when name lookup is not allowed.
        E::PermanentResolverFailure => (
            K::Other,
            "; name resolution failed (under wasmtime, resolving host names needs \
             `-S allow-ip-name-lookup=y`)",
        ),
        E::InvalidArgument => (K::InvalidInput, ""),
        E::AddressInUse => (K::AddrInUse, "; no ephemeral port available"),
        E::AddressNotBindable => (K::AddrNotAvailable, ""),
        E::RemoteUnreachable => (K::HostUnreachable, ""),
        E::NotSupported => (K::Unsupported, ""),
        E::OutOfMemory => (K::OutOfMemory, ""),
        E::NewSocketLimit => (K::Other, "; too many open sockets"),
        E::Unknown
        | E::ConcurrencyConflict
        | E::NotInProgress
        | E::InvalidState
        | E::DatagramTooLarge => (K::Other, ""),
    };
    io::Error::new(
        kind,
        format!("{context}: wasi:sockets error `{}`{hint}", code.name()),
    )
}

fn ip_to_std(address: IpAddress) -> IpAddr {
    match address {
        IpAddress::Ipv4((a, b, c, d)) => IpAddr::from([a, b, c, d]),
        IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => IpAddr::from([a, b, c, d, e, f, g, h]),
    }
}

/// The smallest read asked of the host: an answer to a small query fits.
const MIN_READ_REQUEST: usize = 4096;

/// The size of the read after one that asked for `asked` bytes and got `got`
/// (of at most `most`, the caller's buffer).
///
/// wasmtime allocates and zeroes a buffer of the size asked for on every
/// read, however few bytes arrive: asking for 64 KiB to receive a 40-byte
/// answer cost more than the round trip itself (callgrind: 66k host
/// instructions per read). So the request doubles while reads come back
/// full (a large result streaming in) and halves once they come back less
/// than a quarter full.
fn next_read_request(asked: usize, got: usize, most: usize) -> usize {
    let next = if got >= asked {
        asked.saturating_mul(2)
    } else if got < asked / 4 {
        asked / 2
    } else {
        asked
    };
    next.clamp(MIN_READ_REQUEST.min(most), most.max(1))
}

// Cancel safety (`AsyncTransport` requires it of `read`; `write` has it too,
// and says so through `write_is_cancel_safe`):
// - `read` awaits only readiness. Taking bytes off the stream and copying
//   them into `buf` happen in one poll, after the last await, so a read
//   dropped before it returns consumed nothing. Its readiness wait is a
//   fresh `WaitFor`, deregistered when dropped.
// - `write` awaits only readiness (when `check-write` says 0); the WASI
//   `write` is its last step, in the same poll as its return, so a dropped
//   write future wrote nothing.
//
// `write` also requests a flush without waiting for it (WASI's `flush` never
// blocks): the host starts sending at once, and the next `check-write` waits
// for it. Awaiting each flush, as wstd's `AsyncOutputStream` does, cost a
// reactor round trip per request and a third of the round-trip rate under
// wasmtime.
impl AsyncTransport for WasiTcpStream {
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // A zero-length read would wait for data it cannot return.
        if buf.is_empty() {
            return Ok(0);
        }
        // Read first, wait only on an empty read. Checking readiness first
        // after a short read saves nothing under wasmtime: its readiness
        // stays set until a read finds the socket empty, so the check says
        // ready, the read comes back empty, and a second check follows (one
        // host call more per round trip than reading first).
        loop {
            // WASI reads never block: an empty result means "nothing yet",
            // not end of stream (that is `closed`).
            let asked = self.read_request.load(Ordering::Relaxed).min(buf.len());
            match self.input.read(asked as u64) {
                Ok(bytes) if bytes.is_empty() => self.readable.wait_for().await,
                Ok(bytes) => {
                    let n = bytes.len();
                    let dest = buf.get_mut(..n).ok_or_else(|| {
                        io::Error::other("the WASI host returned more bytes than were asked for")
                    })?;
                    dest.copy_from_slice(&bytes);
                    self.read_request
                        .store(next_read_request(asked, n, buf.len()), Ordering::Relaxed);
                    return Ok(n);
                }
                Err(StreamError::Closed) => return Ok(0),
                // wasip2 1.0 has no binding to turn this into a socket error
                // code, so the host's description is all there is.
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(io::Error::other(format!(
                        "reading from the socket: {}",
                        e.to_debug_string()
                    )))
                }
            }
        }
    }

    async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.output.check_write() {
                Ok(0) => self.writable.wait_for().await,
                Ok(permitted) => {
                    let n = usize::try_from(permitted)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    let chunk = buf.get(..n).unwrap_or(buf);
                    self.output.write(chunk).map_err(write_error)?;
                    self.output.flush().map_err(write_error)?;
                    return Ok(chunk.len());
                }
                Err(e) => return Err(write_error(e)),
            }
        }
    }

    async fn flush(&self) -> io::Result<()> {
        // Every write already requested its flush; this waits until the
        // host has taken all of it.
        loop {
            match self.output.check_write() {
                Ok(0) => self.writable.wait_for().await,
                Ok(_) => return Ok(()),
                Err(e) => return Err(write_error(e)),
            }
        }
    }

    async fn shutdown(&self) -> io::Result<()> {
        // wasmtime defers the FIN until a write still in progress finishes,
        // so nothing already accepted by `write` is lost.
        match self.socket.shutdown(ShutdownType::Send) {
            // `invalid-state` is WASI's ENOTCONN: nothing left to shut down.
            Ok(()) | Err(ErrorCode::InvalidState) => Ok(()),
            Err(code) => Err(wasi_error(code, "shutting down the connection's send side")),
        }
    }

    /// See the cancel-safety notes above.
    fn write_is_cancel_safe(&self) -> bool {
        true
    }
}

fn write_error(e: StreamError) -> io::Error {
    match e {
        StreamError::Closed => io::Error::new(
            io::ErrorKind::ConnectionReset,
            "the server closed the connection",
        ),
        StreamError::LastOperationFailed(e) => {
            io::Error::other(format!("writing to the socket: {}", e.to_debug_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wstd::iter::AsyncIterator;
    use wstd::net::TcpListener;

    fn assert_send<T: Send>(_: &T) {}

    /// A compile-time check: the transport's futures must be `Send` because
    /// the crate's API requires `Send` futures on every target.
    #[allow(dead_code)]
    fn futures_are_send(stream: &WasiTcpStream, buf: &mut [u8]) {
        assert_send(&connect("localhost", 5432));
        assert_send(&stream.write(&[]));
        assert_send(&stream.flush());
        assert_send(&stream.shutdown());
        assert_send(&stream.read(buf));
    }

    /// Binds a listener on `addr` and returns it with the port it got.
    async fn listen(addr: &str) -> io::Result<(TcpListener, u16)> {
        let listener = TcpListener::bind(addr).await?;
        let port = listener.local_addr()?.port();
        Ok((listener, port))
    }

    /// Connects with our code while the listener accepts, then checks bytes
    /// flow both ways and that shutdown reaches the peer as end of stream.
    async fn round_trip(host: &str, bind: &str) -> io::Result<()> {
        let (listener, port) = listen(bind).await?;
        let mut incoming = listener.incoming();
        let (client, server) = futures_util::join!(connect(host, port), incoming.next());
        let client = client?;
        let server = server.ok_or_else(|| io::Error::other("listener stopped"))??;

        // Client to server.
        super::super::write_all(&client, b"hello server").await?;
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 12 {
            let n = wstd::io::AsyncRead::read(&mut &server, &mut buf).await?;
            assert!(n > 0, "server saw end of stream early");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"hello server");

        // Server to client.
        wstd::io::AsyncWrite::write_all(&mut &server, b"hello client").await?;
        wstd::io::AsyncWrite::flush(&mut &server).await?;
        let mut got = Vec::new();
        while got.len() < 12 {
            let n = client.read(&mut buf).await?;
            assert!(n > 0, "client saw end of stream early");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"hello client");

        // Our shutdown is the server's end of stream; twice is harmless.
        client.shutdown().await?;
        client.shutdown().await?;
        let n = wstd::io::AsyncRead::read(&mut &server, &mut buf).await?;
        assert_eq!(n, 0, "server should see end of stream after shutdown");

        // The server closing is our end of stream.
        drop(server);
        let n = client.read(&mut buf).await?;
        assert_eq!(
            n, 0,
            "client should see end of stream after the server closed"
        );
        Ok(())
    }

    #[test]
    fn ipv4_literal_round_trip() -> io::Result<()> {
        wstd::runtime::block_on(round_trip("127.0.0.1", "127.0.0.1:0"))
    }

    #[test]
    fn localhost_name_round_trip() -> io::Result<()> {
        // Goes through ip-name-lookup. Where "localhost" also resolves to ::1
        // first, that attempt is refused and 127.0.0.1 must be tried next.
        wstd::runtime::block_on(round_trip("localhost", "127.0.0.1:0"))
    }

    #[test]
    fn ipv6_literal_round_trip() -> io::Result<()> {
        wstd::runtime::block_on(async {
            // scripts/lib/cluster.sh says whether this machine has IPv6
            // loopback; where it does, this must work.
            if std::env::var("PGTEST_IPV6").as_deref() == Ok("0") {
                return Ok(());
            }
            round_trip("::1", "[::1]:0").await?;
            round_trip("[::1]", "[::1]:0").await
        })
    }

    #[test]
    fn ipv4_mapped_literal_connects_over_ipv4() -> io::Result<()> {
        wstd::runtime::block_on(round_trip("::ffff:127.0.0.1", "127.0.0.1:0"))
    }

    #[test]
    fn closed_port_is_connection_refused() -> io::Result<()> {
        wstd::runtime::block_on(async {
            let (listener, port) = listen("127.0.0.1:0").await?;
            drop(listener);
            let Err(err) = connect("127.0.0.1", port).await else {
                return Err(io::Error::other("connected to a closed port"));
            };
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            let message = err.to_string();
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
            assert!(message.contains("connection-refused"), "{message}");
            Ok(())
        })
    }

    #[test]
    fn unresolvable_name_is_not_found() -> io::Result<()> {
        wstd::runtime::block_on(async {
            let Err(err) = connect("no-such-host.invalid", 5432).await else {
                return Err(io::Error::other("connected to a .invalid host"));
            };
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
            assert!(
                err.to_string().contains("no-such-host.invalid:5432"),
                "{err}"
            );
            Ok(())
        })
    }

    #[test]
    fn cancelled_read_loses_no_bytes() -> io::Result<()> {
        wstd::runtime::block_on(async {
            let (listener, port) = listen("127.0.0.1:0").await?;
            let mut incoming = listener.incoming();
            let (client, server) = futures_util::join!(connect("127.0.0.1", port), incoming.next());
            let client = client?;
            let server = server.ok_or_else(|| io::Error::other("listener stopped"))??;
            let mut buf = [0u8; 16];

            // Poll a read once with nothing to read, then drop it.
            {
                let read = client.read(&mut buf);
                let mut read = std::pin::pin!(read);
                let polled = futures_util::poll!(read.as_mut());
                assert!(polled.is_pending(), "read completed with no data sent");
            }
            wstd::io::AsyncWrite::write_all(&mut &server, b"xyz").await?;
            wstd::io::AsyncWrite::flush(&mut &server).await?;
            let n = client.read(&mut buf).await?;
            assert_eq!(&buf[..n], b"xyz");
            Ok(())
        })
    }

    /// Megabytes through an echo server: the client's reads and writes run at
    /// the same time (otherwise both sides block on full buffers), and a
    /// shutdown right after a large write still delivers every byte first.
    #[test]
    fn concurrent_read_and_write_through_echo() -> io::Result<()> {
        const LEN: usize = 4 << 20;
        wstd::runtime::block_on(async {
            let (listener, port) = listen("127.0.0.1:0").await?;
            let mut incoming = listener.incoming();
            let (client, server) = futures_util::join!(connect("127.0.0.1", port), incoming.next());
            let client = client?;
            let server = server.ok_or_else(|| io::Error::other("listener stopped"))??;
            let sent: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();

            let echo = async {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = wstd::io::AsyncRead::read(&mut &server, &mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    wstd::io::AsyncWrite::write_all(&mut &server, &buf[..n]).await?;
                }
                wstd::io::AsyncWrite::flush(&mut &server).await?;
                drop(server);
                io::Result::Ok(())
            };
            let send = async {
                let mut rest = &sent[..];
                while !rest.is_empty() {
                    let n = client.write(rest).await?;
                    rest = &rest[n..];
                }
                // No flush: shutdown alone must not cut off a pending write.
                client.shutdown().await
            };
            let receive = async {
                let mut got = Vec::with_capacity(LEN);
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = client.read(&mut buf).await?;
                    if n == 0 {
                        return io::Result::Ok(got);
                    }
                    got.extend_from_slice(&buf[..n]);
                }
            };
            let (echoed, sent_result, received) = futures_util::join!(echo, send, receive);
            echoed?;
            sent_result?;
            let received = received?;
            assert_eq!(received.len(), LEN);
            assert!(received == sent, "echoed bytes differ from the bytes sent");
            Ok(())
        })
    }

    #[test]
    fn falls_back_to_the_next_address() -> io::Result<()> {
        wstd::runtime::block_on(async {
            let (listener, port) = listen("127.0.0.1:0").await?;
            let mut incoming = listener.incoming();
            // 0.0.0.0 fails at once (WASI refuses to connect to it).
            let addresses = vec![ipv4([0, 0, 0, 0]), ipv4([127, 0, 0, 1])];
            let network = instance_network();
            let (client, server) = futures_util::join!(
                connect_any(&network, addresses, "db.test", port),
                incoming.next()
            );
            client?;
            server.ok_or_else(|| io::Error::other("listener stopped"))??;
            Ok(())
        })
    }

    #[test]
    fn all_addresses_failing_returns_the_last_error() -> io::Result<()> {
        wstd::runtime::block_on(async {
            let (listener, port) = listen("127.0.0.1:0").await?;
            drop(listener);
            let addresses = vec![ipv4([0, 0, 0, 0]), ipv4([127, 0, 0, 1])];
            let network = instance_network();
            let Err(err) = connect_any(&network, addresses, "db.test", port).await else {
                return Err(io::Error::other("connected to a closed port"));
            };
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            assert!(
                err.to_string()
                    .contains(&format!("db.test:{port} (127.0.0.1)")),
                "{err}"
            );

            let Err(err) = connect_any(&network, Vec::new(), "db.test", port).await else {
                return Err(io::Error::other("connected to no address"));
            };
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
            Ok(())
        })
    }

    #[test]
    fn cancelled_connect_releases_its_resources() -> io::Result<()> {
        wstd::runtime::block_on(async {
            let (listener, port) = listen("127.0.0.1:0").await?;
            // Poll a connect once and drop it mid-handshake: dropping the
            // socket before its pollable would trap the whole component.
            {
                let connecting = connect("127.0.0.1", port);
                let mut connecting = std::pin::pin!(connecting);
                let _ = futures_util::poll!(connecting.as_mut());
            }
            // The runtime still works, and so does the listener.
            let mut incoming = listener.incoming();
            let (client, server) = futures_util::join!(connect("127.0.0.1", port), incoming.next());
            client?;
            server.ok_or_else(|| io::Error::other("listener stopped"))??;
            Ok(())
        })
    }

    /// wstd's own input stream keeps a dropped read's wait registered, which
    /// makes the event loop spin while unread bytes sit on the socket. The
    /// timer here is a measuring window, not synchronisation.
    #[test]
    fn cancelled_read_leaves_the_event_loop_idle() -> io::Result<()> {
        wstd::runtime::block_on(async {
            let (listener, port) = listen("127.0.0.1:0").await?;
            let mut incoming = listener.incoming();
            let (client, server) = futures_util::join!(connect("127.0.0.1", port), incoming.next());
            let client = client?;
            let server = server.ok_or_else(|| io::Error::other("listener stopped"))??;
            let mut buf = [0u8; 16];
            {
                let read = client.read(&mut buf);
                let mut read = std::pin::pin!(read);
                assert!(futures_util::poll!(read.as_mut()).is_pending());
            }
            wstd::io::AsyncWrite::write_all(&mut &server, b"unread").await?;
            wstd::io::AsyncWrite::flush(&mut &server).await?;

            let mut polls = 0u32;
            let mut sleep =
                std::pin::pin!(wstd::task::sleep(wstd::time::Duration::from_millis(50)));
            std::future::poll_fn(|cx| {
                polls += 1;
                std::future::Future::poll(sleep.as_mut(), cx)
            })
            .await;
            // Idle: polled once to start and once when the timer fires (a
            // spinning loop polls thousands of times).
            assert!(polls < 10, "the event loop woke {polls} times while idle");

            let n = client.read(&mut buf).await?;
            assert_eq!(&buf[..n], b"unread");
            Ok(())
        })
    }

    #[test]
    fn error_mapping() {
        let cases = [
            (
                ErrorCode::ConnectionRefused,
                io::ErrorKind::ConnectionRefused,
            ),
            (ErrorCode::AccessDenied, io::ErrorKind::PermissionDenied),
            (ErrorCode::NameUnresolvable, io::ErrorKind::NotFound),
            (ErrorCode::RemoteUnreachable, io::ErrorKind::HostUnreachable),
            (ErrorCode::InvalidState, io::ErrorKind::Other),
        ];
        for (code, kind) in cases {
            let what = context(
                "connecting to",
                "db.example",
                5432,
                Some(ipv4([10, 0, 0, 1])),
            );
            let err = wasi_error(code, &what);
            assert_eq!(err.kind(), kind, "{err}");
            let message = err.to_string();
            assert!(message.contains("db.example:5432 (10.0.0.1)"), "{message}");
            assert!(message.contains(code.name()), "{message}");
        }
        let denied = wasi_error(
            ErrorCode::AccessDenied,
            &context("connecting to", "::1", 1, None),
        );
        assert!(denied.to_string().contains("[::1]:1"), "{denied}");
        assert!(
            denied.to_string().contains("-S inherit-network=y"),
            "{denied}"
        );
    }

    #[test]
    fn read_requests_grow_while_full_and_shrink_when_mostly_empty() {
        let most = 64 * 1024;
        assert_eq!(next_read_request(4096, 4096, most), 8192);
        assert_eq!(next_read_request(most, most, most), most);
        assert_eq!(next_read_request(16384, 40, most), 8192);
        assert_eq!(next_read_request(4096, 40, most), MIN_READ_REQUEST);
        assert_eq!(next_read_request(8192, 3000, most), 8192);
        // A caller's buffer smaller than the minimum caps every request.
        assert_eq!(next_read_request(100, 100, 100), 100);
        assert_eq!(next_read_request(100, 1, 100), 100);
    }
}
