//! A scripted fake server on an in-memory stream, for what a real server
//! cannot be made to do: send garbage, cut a message short, declare absurd
//! lengths, ask for insecure authentication.

#![allow(dead_code)]

use wasi_pg_client::transport::memory::{duplex, MemoryTransport};
use wasi_pg_client::AsyncTransport;

/// The server side of a scripted exchange, over the in-memory stream or
/// over anything else that speaks [`AsyncTransport`] (such as the TLS
/// stream in `fake_tls`).
pub struct FakeServer<S = MemoryTransport> {
    pub stream: S,
    buf: Vec<u8>,
}

/// A client end and a server end, each direction buffering `capacity` bytes.
pub fn pair(capacity: usize) -> (MemoryTransport, FakeServer) {
    let (client, server) = duplex(capacity);
    (
        client,
        FakeServer {
            stream: server,
            buf: Vec::new(),
        },
    )
}

/// A backend message: tag, length, body.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

pub fn auth_ok() -> Vec<u8> {
    message(b'R', &0u32.to_be_bytes())
}

pub fn ready() -> Vec<u8> {
    message(b'Z', b"I")
}

pub fn command_complete(tag: &str) -> Vec<u8> {
    let mut body = tag.as_bytes().to_vec();
    body.push(0);
    message(b'C', &body)
}

/// The answer to a StartupMessage without authentication: AuthenticationOk,
/// a parameter, the key data, ReadyForQuery.
pub fn trust_answer() -> Vec<u8> {
    let mut out = auth_ok();
    out.extend(message(b'S', b"server_version\x0015.0\x00"));
    let mut key = 4242u32.to_be_bytes().to_vec();
    key.extend_from_slice(&7u32.to_be_bytes());
    out.extend(message(b'K', &key));
    out.extend(ready());
    out
}

/// The answer to Parse/Bind/Describe/Execute/Sync for a statement with no rows.
pub fn empty_extended_answer() -> Vec<u8> {
    let mut out = message(b'1', b"");
    out.extend(message(b'2', b""));
    out.extend(message(b'n', b""));
    out.extend(command_complete("DO"));
    out.extend(ready());
    out
}

/// An ErrorResponse with severity FATAL, SQLSTATE `code` and `text`.
pub fn error_response(code: &str, text: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', code), (b'M', text)] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    message(b'E', &body)
}

/// The SSLRequest code (1234 in the high 16 bits, 5679 in the low).
pub const SSL_REQUEST_CODE: u32 = 80877103;

impl<S: AsyncTransport> FakeServer<S> {
    /// A fake server on `stream`, nothing read yet.
    pub fn new(stream: S) -> Self {
        FakeServer {
            stream,
            buf: Vec::new(),
        }
    }

    /// The stream back, to wrap it (in TLS, say). Fails if bytes the
    /// client sent are buffered here: they would be lost.
    pub fn into_stream(self) -> Result<S, String> {
        if !self.buf.is_empty() {
            return Err(format!(
                "the client sent {} bytes too early: {:?}",
                self.buf.len(),
                self.buf
            ));
        }
        Ok(self.stream)
    }

    async fn fill(&mut self) -> Result<bool, String> {
        let mut chunk = [0u8; 8192];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(|e| e.to_string())?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    async fn take(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err("client closed the stream".into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads an SSLRequest (length 8, code 80877103); fails on anything else.
    pub async fn read_ssl_request(&mut self) -> Result<(), String> {
        let request = self.take(8).await?;
        let len = u32::from_be_bytes([request[0], request[1], request[2], request[3]]);
        let code = u32::from_be_bytes([request[4], request[5], request[6], request[7]]);
        if len != 8 || code != SSL_REQUEST_CODE {
            return Err(format!("expected an SSLRequest, got {request:?}"));
        }
        Ok(())
    }

    /// Reads everything until the client closes the stream.
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>, String> {
        while self.fill().await? {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// Reads the StartupMessage (no tag byte) and returns its body.
    pub async fn read_startup(&mut self) -> Result<Vec<u8>, String> {
        let len = self.take(4).await?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        self.take(len.saturating_sub(4)).await
    }

    /// Reads one frontend message: (tag, body).
    pub async fn read_message(&mut self) -> Result<(u8, Vec<u8>), String> {
        let header = self.take(5).await?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let body = self.take(len.saturating_sub(4)).await?;
        Ok((header[0], body))
    }

    /// Reads messages up to and including the next Sync; returns their tags.
    pub async fn read_until_sync(&mut self) -> Result<Vec<u8>, String> {
        let mut tags = Vec::new();
        loop {
            let (tag, _) = self.read_message().await?;
            tags.push(tag);
            if tag == b'S' || tag == b'Q' {
                return Ok(tags);
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = self.stream.write(rest).await.map_err(|e| e.to_string())?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Startup without authentication: AuthenticationOk, a parameter, the
    /// key data, ReadyForQuery.
    pub async fn accept_trust(&mut self) -> Result<(), String> {
        self.read_startup().await?;
        self.send(&trust_answer()).await
    }
}
