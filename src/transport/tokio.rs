//! Native transports on tokio: TCP and Unix-domain sockets.
//!
//! Both use tokio's `&self` readiness API (`readable` + `try_read`,
//! `writable` + `try_write`), which gives the concurrent, cancel-safe read
//! and write the actor needs without splitting the socket.

use std::io;

use tokio::net::{TcpStream, UnixStream};

use super::AsyncTransport;

/// A connected native socket.
#[derive(Debug)]
pub(crate) enum TokioStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl TokioStream {
    pub(crate) async fn connect_tcp(host: &str, port: u16) -> io::Result<TokioStream> {
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(TokioStream::Tcp(stream))
    }

    pub(crate) async fn connect_unix(path: &std::path::Path) -> io::Result<TokioStream> {
        Ok(TokioStream::Unix(UnixStream::connect(path).await?))
    }
}

macro_rules! each_socket {
    ($self:ident, $s:ident => $body:expr) => {
        match $self {
            TokioStream::Tcp($s) => $body,
            TokioStream::Unix($s) => $body,
        }
    };
}

impl AsyncTransport for TokioStream {
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            each_socket!(self, s => s.readable().await)?;
            match each_socket!(self, s => s.try_read(buf)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            each_socket!(self, s => s.writable().await)?;
            match each_socket!(self, s => s.try_write(buf)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    async fn shutdown(&self) -> io::Result<()> {
        let result =
            each_socket!(self, s => socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write));
        match result {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}
