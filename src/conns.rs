//! The table of open sockets behind `stats conns`: listeners and client connections by
//! file descriptor, each with its addresses, what it is doing ([`ConnState`], memcached's
//! name for it) and when it last sent a command. Connections update their own row with
//! relaxed atomics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering::Relaxed};
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

/// What a client connection is doing, as memcached's connection states name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    /// Nothing received yet (`conn_new_cmd`).
    New,
    /// Waiting for a command, or for the rest of its line (`conn_read`).
    Read,
    /// Running commands (`conn_parse_cmd`).
    Parse,
    /// Waiting for the rest of a storage command's data block (`conn_nread`).
    DataBlock,
    /// Discarding a refused data block as it arrives (`conn_swallow`).
    Swallow,
    /// Waiting for the client to take its replies (`conn_mwrite`).
    Write,
    /// A `watch` log stream (`conn_watch`).
    Watch,
}

impl ConnState {
    const ALL: [Self; 7] =
        [Self::New, Self::Read, Self::Parse, Self::DataBlock, Self::Swallow, Self::Write, Self::Watch];

    /// memcached's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            Self::New => "conn_new_cmd",
            Self::Read => "conn_read",
            Self::Parse => "conn_parse_cmd",
            Self::DataBlock => "conn_nread",
            Self::Swallow => "conn_swallow",
            Self::Write => "conn_mwrite",
            Self::Watch => "conn_watch",
        }
    }
}

/// One client connection's row.
#[derive(Debug)]
pub struct ConnRow {
    peer: String,
    local: String,
    /// A [`ConnState`].
    state: AtomicU8,
    last_cmd: AtomicU32,
}

impl ConnRow {
    /// Shows the connection in `state`.
    pub fn set_state(&self, state: ConnState) {
        self.state.store(state as u8, Relaxed);
    }

    /// Shows the connection running commands that came in at time `now`.
    pub fn set_parsing(&self, now: RelTime) {
        self.set_state(ConnState::Parse);
        self.last_cmd.store(now, Relaxed);
    }

    fn state(&self) -> ConnState {
        let s = self.state.load(Relaxed);
        ConnState::ALL.into_iter().find(|c| *c as u8 == s).unwrap_or(ConnState::Read)
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
        let row = Arc::new(ConnRow {
            peer,
            local,
            state: AtomicU8::new(ConnState::New as u8),
            last_cmd: AtomicU32::new(now),
        });
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
            state: c.state().name(),
            idle: now.saturating_sub(c.last_cmd.load(Relaxed)),
        }));
        rows.sort_by_key(|r| r.fd);
        rows
    }
}
