//! The cancel service: a sibling actor that asks the server to cancel the
//! query a backend is running.
//!
//! PostgreSQL cancels over a fresh connection that carries only a
//! CancelRequest (the backend's process ID and secret key). The service
//! opens that connection the same way the original was made (host, port,
//! TLS settings and negotiation), so cancelling works over TLS too. It
//! needs nothing from the connection actor and outlives it: a token can
//! cancel after its connection is gone. It ends when the last handle that
//! can reach it (the connection and every token) is dropped.

use std::sync::Arc;

use bytes::BytesMut;
use futures_channel::oneshot;

use crate::actors::mailbox::{mailbox, MailboxReceiver, MailboxSender};
use crate::actors::rt;
use crate::api::config::Host;
use crate::transport::connect::{describe, open};
use crate::transport::negotiate::{negotiate, Attempt};
use crate::transport::{write_all, AsyncTransport};
use crate::{Config, PgError};

/// Where and how to reach the backend, and which one it is.
#[derive(Debug)]
pub(crate) struct CancelTarget {
    pub(crate) config: Config,
    pub(crate) host: Host,
    pub(crate) port: u16,
    /// Negotiate as the connection ended up: TLS, or plaintext.
    pub(crate) attempt: Attempt,
    pub(crate) process_id: i32,
    pub(crate) secret_key: i32,
}

pub(crate) struct CancelCommand {
    target: Arc<CancelTarget>,
    reply: oneshot::Sender<Result<(), PgError>>,
}

/// A handle to the cancel service.
#[derive(Clone)]
pub(crate) struct CancelService {
    mailbox: MailboxSender<CancelCommand>,
}

impl CancelService {
    /// Starts the service on this target's runtime.
    pub(crate) fn spawn() -> CancelService {
        let (tx, rx) = mailbox(16);
        rt::spawn(serve(rx));
        CancelService { mailbox: tx }
    }

    pub(crate) async fn cancel(&self, target: Arc<CancelTarget>) -> Result<(), PgError> {
        let (reply, answer) = oneshot::channel();
        self.mailbox
            .send(CancelCommand { target, reply })
            .await
            .map_err(|_| PgError::Closed("the cancel service has stopped".into()))?;
        answer
            .await
            .map_err(|_| PgError::Closed("the cancel service has stopped".into()))?
    }
}

async fn serve(mut mailbox: MailboxReceiver<CancelCommand>) {
    while let Some(command) = std::future::poll_fn(|cx| mailbox.poll_recv(cx)).await {
        let target = &command.target;
        let what = format!("cancelling through {}", describe(&target.host, target.port));
        let result = rt::timeout(target.config.connect_timeout, &what, send_cancel(target))
            .await
            .and_then(|r| r);
        let _ = command.reply.send(result);
    }
}

async fn send_cancel(target: &CancelTarget) -> Result<(), PgError> {
    let socket = open(&target.host, target.port).await?;
    let stream = negotiate(socket, &target.config, &target.host, target.attempt).await?;
    let mut request = BytesMut::new();
    postgres_protocol::message::frontend::cancel_request(
        target.process_id,
        target.secret_key,
        &mut request,
    );
    write_all(&stream, &request)
        .await
        .map_err(|e| PgError::io("sending the cancel request", e))?;
    // The server answers by closing the connection; waiting for that means
    // the request was read before we report success.
    let mut byte = [0u8; 1];
    let _ = stream.read(&mut byte).await;
    let _ = stream.shutdown().await;
    Ok(())
}
