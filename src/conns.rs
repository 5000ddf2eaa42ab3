//! The table of open sockets behind `stats conns`: listeners and client connections by
//! file descriptor, each with its addresses, what it is doing and when it last sent a
//! command. Connections update their own row with relaxed atomics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;

use crate::clock::RelTime;
use crate::protocol::encode::put_stat;

/// One client connection's row.
#[derive(Debug)]
pub struct ConnRow {
    peer: String,
    local: String,
    /// Working on a batch of commands (memcached's `conn_parse_cmd`), or waiting for input
    /// (`conn_read`).
    busy: AtomicBool,
    last_cmd: AtomicU32,
}

impl ConnRow {
    /// Marks the start (`true`) or end of a batch of commands at time `now`.
    pub fn set_busy(&self, busy: bool, now: RelTime) {
        self.busy.store(busy, Relaxed);
        if busy {
            self.last_cmd.store(now, Relaxed);
        }
    }
}

#[derive(Debug, Default)]
pub struct Conns {
    listeners: Mutex<BTreeMap<i32, String>>,
    clients: Mutex<BTreeMap<i32, Arc<ConnRow>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conns {
    /// Registers a listener under memcached's name for its address (`tcp:1.2.3.4:5`,
    /// `tcp6:[::1]:5`, `unix:/path`).
    pub fn add_listener(&self, fd: i32, local: String) {
        lock(&self.listeners).insert(fd, local);
    }

    /// Registers a client; the row is removed by [`Conns::remove`].
    pub fn add(&self, fd: i32, peer: String, local: String, now: RelTime) -> Arc<ConnRow> {
        let row = Arc::new(ConnRow { peer, local, busy: AtomicBool::new(false), last_cmd: AtomicU32::new(now) });
        lock(&self.clients).insert(fd, row.clone());
        row
    }

    pub fn remove(&self, fd: i32) {
        lock(&self.clients).remove(&fd);
    }

    /// `stats conns` lines, by file descriptor as memcached lists them.
    pub fn report(&self, now: RelTime, out: &mut BytesMut) {
        let listeners = lock(&self.listeners).clone();
        let clients: Vec<(i32, Arc<ConnRow>)> = lock(&self.clients).iter().map(|(f, r)| (*f, r.clone())).collect();
        let mut rows: Vec<(i32, Option<&String>, Option<&ConnRow>)> =
            listeners.iter().map(|(f, a)| (*f, Some(a), None)).collect();
        rows.extend(clients.iter().map(|(f, r)| (*f, None, Some(&**r))));
        rows.sort_by_key(|r| r.0);
        for (fd, listener, client) in rows {
            let name = |field: &str| format!("{fd}:{field}");
            match (listener, client) {
                (Some(l), _) => {
                    put_stat(out, &name("addr"), l.as_str());
                    put_stat(out, &name("state"), "conn_listening");
                    put_stat(out, &name("secs_since_last_cmd"), 0u32);
                }
                (None, Some(c)) => {
                    put_stat(out, &name("addr"), c.peer.as_str());
                    put_stat(out, &name("listen_addr"), c.local.as_str());
                    let state = if c.busy.load(Relaxed) { "conn_parse_cmd" } else { "conn_read" };
                    put_stat(out, &name("state"), state);
                    put_stat(out, &name("secs_since_last_cmd"), now.saturating_sub(c.last_cmd.load(Relaxed)));
                }
                (None, None) => {}
            }
        }
    }
}
