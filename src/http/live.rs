//! What the live page shows: [`History`], a sample of the server's figures every second for
//! the last [`KEEP`] seconds (kept by [`sample`], a task of the HTTP side, so a page opened
//! late still plots the minutes before it), and [`json`], the reply to `GET /live`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::exec::Ctx;
use crate::latency::Command;

/// Seconds of history kept (15 minutes).
pub const KEEP: usize = 900;

/// The figures read at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Unix time, in seconds.
    pub time: f64,
    /// Commands run, of every kind.
    pub commands: u64,
    pub get_hits: u64,
    pub get_misses: u64,
    pub evictions: u64,
    pub bytes: u64,
    pub limit: u64,
    pub items: u64,
    pub connections: u64,
}

impl Sample {
    /// Reads `ctx` now.
    pub fn read(ctx: &Ctx) -> Self {
        let (s, st) = (ctx.stats.totals(), ctx.store.stats.totals());
        let time = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let commands = Command::ALL.iter().map(|&c| *ctx.latency.summary(c).cumulative.last().unwrap_or(&0)).sum();
        Self {
            time,
            commands,
            get_hits: s.get_hits,
            get_misses: s.get_misses,
            evictions: st.evictions,
            bytes: ctx.store.bytes() as u64,
            limit: ctx.store.limit() as u64,
            items: ctx.store.len() as u64,
            connections: s.curr_connections,
        }
    }

    fn to_json(self) -> Value {
        json!([
            self.time,
            self.commands,
            self.get_hits,
            self.get_misses,
            self.evictions,
            self.bytes,
            self.limit,
            self.items,
            self.connections
        ])
    }
}

/// The field names of a sample's array in `/live`, in order.
const SAMPLE_FIELDS: [&str; 9] =
    ["time", "commands", "get_hits", "get_misses", "evictions", "bytes", "limit", "items", "connections"];

/// The last [`KEEP`] samples, oldest first.
#[derive(Debug, Default)]
pub struct History(Mutex<VecDeque<Sample>>);

impl History {
    pub fn push(&self, s: Sample) {
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() == KEEP {
            h.pop_front();
        }
        h.push_back(s);
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect()
    }
}

/// Samples `ctx` into `history` every second, for as long as the runtime runs.
pub async fn sample(ctx: Arc<Ctx>, history: Arc<History>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        history.push(Sample::read(&ctx));
    }
}

/// `GET /live`: the history, the figures now, and the server's settings the page names.
pub fn json(ctx: &Ctx, history: &History) -> String {
    let samples: Vec<Value> = history.samples().into_iter().map(Sample::to_json).collect();
    let doc = json!({
        "version": crate::exec::VERSION,
        "uptime": ctx.store.clock().uptime(),
        "fields": SAMPLE_FIELDS,
        "now": Sample::read(ctx).to_json(),
        "history": samples,
    });
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_last_samples_in_order() {
        let h = History::default();
        for i in 0..KEEP + 5 {
            h.push(Sample { time: i as f64, ..Sample::default() });
        }
        let s = h.samples();
        assert_eq!((s.len(), s[0].time, s[KEEP - 1].time), (KEEP, 5.0, (KEEP + 4) as f64));
    }
}
