//! The table of open sockets behind `stats conns`: listeners and client connections by
//! file descriptor, each with its addresses, what it is doing and when it last sent a
//! command. Connections update their own row with relaxed atomics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::clock::RelTime;

/// One socket as `stats conns` shows it.
#[derive(Debug, Clone)]
pub struct Row {
    pub fd: i32,
    pub addr: String,
    /// The address a client connected to (none for a listener).
    pub listen_addr: Option<String>,
    /// memcached's name for what it is doing.
    pub state: &'static str,
    /// Seconds since its last command.
    pub idle: RelTime,
}

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

    /// Listening sockets registered.
    pub fn listeners(&self) -> usize {
        lock(&self.listeners).len()
    }

    pub fn remove(&self, fd: i32) {
        lock(&self.clients).remove(&fd);
    }

    /// Every open socket by file descriptor, in order, as `stats conns` lists them.
    pub fn rows(&self, now: RelTime) -> Vec<Row> {
        let mut rows: Vec<Row> = lock(&self.listeners)
            .iter()
            .map(|(&fd, addr)| Row { fd, addr: addr.clone(), listen_addr: None, state: "conn_listening", idle: 0 })
            .collect();
        rows.extend(lock(&self.clients).iter().map(|(&fd, c)| Row {
            fd,
            addr: c.peer.clone(),
            listen_addr: Some(c.local.clone()),
            state: if c.busy.load(Relaxed) { "conn_parse_cmd" } else { "conn_read" },
            idle: now.saturating_sub(c.last_cmd.load(Relaxed)),
        }));
        rows.sort_by_key(|r| r.fd);
        rows
    }
}
