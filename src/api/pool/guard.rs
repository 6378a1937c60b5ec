//! The guards a pool lends: they deref to [`Connection`] and give it back
//! when done.
//!
//! An exclusively lent connection is reset before it goes back: once
//! everything its user sent has been answered, an open transaction is
//! rolled back (and, if configured, the session discarded). Most need none
//! of that, and the connection actor's published state says so without
//! asking it. A connection that broke, or that someone still holds a clone
//! of, does not go back.

use std::ops::Deref;
use std::sync::Arc;

use crate::actors::pool::{Checkup, PoolCore, Slot};
use crate::actors::rt;
use crate::{Connection, PgError};

/// A connection lent to one caller by [`Pool::acquire`](super::Pool::acquire).
///
/// Derefs to [`Connection`], so every query method works on it. Give it
/// back with [`release`](PooledConnection::release); dropping it gives it
/// back too, with the reset running in the background.
///
/// Do not keep clones of the connection past the guard: a connection that
/// is still referenced when its guard goes back leaves the pool (it stays
/// usable through those clones, and the pool opens another).
pub struct PooledConnection {
    conn: Option<Connection>,
    slot: Slot,
    checkup: Checkup,
    core: Arc<PoolCore>,
}

impl std::fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConnection")
            .field("connection", &self.conn)
            .finish()
    }
}

impl PooledConnection {
    pub(crate) fn new(
        conn: Connection,
        slot: Slot,
        checkup: Checkup,
        core: Arc<PoolCore>,
    ) -> PooledConnection {
        PooledConnection {
            conn: Some(conn),
            slot,
            checkup,
            core,
        }
    }

    /// Takes the connection back out without giving it back (the caller
    /// never saw it).
    pub(crate) fn disarm(mut self) -> Option<(Connection, Slot)> {
        Some((self.conn.take()?, self.slot))
    }

    /// What the pool asked for before use: a ping after a long idle, a
    /// reset after shared use. A failure means the connection is broken;
    /// the guard then goes back as such when dropped.
    /// Whether [`checkup`](Self::checkup) has anything to do.
    pub(crate) fn needs_checkup(&self) -> bool {
        self.checkup.ping || self.checkup.reset
    }

    pub(crate) async fn checkup(&self) -> Result<(), PgError> {
        let Some(conn) = self.conn.as_ref() else {
            return Err(PgError::Closed("the pooled connection is gone".into()));
        };
        // Both checks are the rare path, boxed: inline, their futures would
        // make every `acquire` future kilobytes long (copied on each call).
        if self.checkup.ping {
            Box::pin(conn.simple_query("")).await?;
        }
        if self.checkup.reset && !Box::pin(reset(conn, &self.core)).await {
            return Err(PgError::Closed(
                "the pooled connection could not be reset".into(),
            ));
        }
        Ok(())
    }

    /// Gives the connection back. If anything sent on it is still
    /// unanswered, or a transaction was left open, or `DISCARD ALL` is
    /// configured, this first waits for the answers, rolls the transaction
    /// back and discards the session; usually there is nothing to do. A
    /// broken connection is closed instead.
    pub async fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            give_back(conn, self.slot, self.core.clone()).await;
        }
    }

    /// Takes the connection out of the pool for good; the pool opens
    /// another when it needs one.
    pub fn detach(mut self) -> Connection {
        let conn = self.conn.take();
        self.core.give_back(self.slot, None);
        match conn {
            Some(conn) => conn,
            None => unreachable_disarm(),
        }
    }
}

/// Only the methods that consume a guard (and `Drop`) take its connection
/// out, so no method can see it missing.
fn unreachable_disarm() -> ! {
    unreachable!("a pooled connection's guard lost its connection while still in use")
}

impl Deref for PooledConnection {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self.conn.as_ref() {
            Some(conn) => conn,
            None => unreachable_disarm(),
        }
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let slot = self.slot;
        if is_clean(&conn, &self.core) {
            // Nothing to reset: back at once.
            self.core.give_back(slot, Some(conn));
            return;
        }
        // The reset needs round trips; it runs on its own task. Outside a
        // runtime (it was shut down), the connection is simply closed.
        if !rt::try_spawn(give_back(conn, slot, self.core.clone())) {
            self.core.give_back(slot, None);
        }
    }
}

/// Whether a connection can go back as it is: nobody else holds it, it is
/// open, and its actor had finished everything sent to it, outside a
/// transaction, when it last looked (so there is nothing to reset and no
/// need to ask it). Most releases are this.
fn is_clean(conn: &Connection, core: &PoolCore) -> bool {
    !core.settings.discard_all_on_release
        && conn.is_sole_handle()
        && !conn.is_closed()
        && conn.status_if_settled() == Some(b'I')
}

async fn give_back(conn: Connection, slot: Slot, core: Arc<PoolCore>) {
    let reusable = if is_clean(&conn, &core) {
        true
    } else if conn.is_sole_handle() {
        // Boxed: the rare path would otherwise size every release future.
        Box::pin(reset(&conn, &core)).await
    } else {
        // Still referenced elsewhere: it leaves the pool and lives on with
        // those clones.
        false
    };
    core.give_back(slot, reusable.then_some(conn));
}

/// Brings a connection nobody else holds back to a clean session; false
/// if it broke or took longer than `acquire_timeout`.
async fn reset(conn: &Connection, core: &PoolCore) -> bool {
    let settings = &core.settings;
    let work = async {
        if conn.is_closed() {
            return false;
        }
        let Ok(status) = conn.settle().await else {
            return false;
        };
        if status != b'I' && conn.simple_query("ROLLBACK").await.is_err() {
            return false;
        }
        if settings.discard_all_on_release {
            if conn.simple_query("DISCARD ALL").await.is_err() {
                return false;
            }
            conn.forget_session();
        }
        !conn.is_closed()
    };
    matches!(
        rt::timeout(
            Some(settings.acquire_timeout),
            "resetting a pooled connection",
            work
        )
        .await,
        Ok(true)
    )
}

/// A connection shared with other callers, from
/// [`Pool::get_shared`](super::Pool::get_shared).
///
/// Derefs to [`Connection`]; every sharer's requests are pipelined on one
/// socket. Dropping it tells the pool one sharer fewer uses it.
pub struct SharedConnection {
    conn: Connection,
    id: u64,
    core: Option<Arc<PoolCore>>,
}

impl std::fmt::Debug for SharedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConnection")
            .field("connection", &self.conn)
            .finish()
    }
}

impl SharedConnection {
    pub(crate) fn new(conn: Connection, id: u64, core: Arc<PoolCore>) -> SharedConnection {
        SharedConnection {
            conn,
            id,
            core: Some(core),
        }
    }

    /// Drops it without telling the pool (the caller never saw it; the
    /// pool, holding its lock, counts it itself). Returns its id.
    pub(crate) fn disarm(mut self) -> u64 {
        self.core = None;
        self.id
    }
}

impl Deref for SharedConnection {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Drop for SharedConnection {
    fn drop(&mut self) {
        if let Some(core) = self.core.take() {
            core.unshare(self.id);
        }
    }
}
