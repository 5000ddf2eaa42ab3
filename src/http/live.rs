//! What the live page shows: [`History`], a sample of the server's figures every second for
//! the last [`KEEP`] seconds (kept by [`sample`], a task of the HTTP side, so a page opened
//! late still plots the minutes before it), and [`json`], the reply to `GET /live`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::exec::Ctx;
use crate::latency::Command;

use super::metrics::OTHER_PREFIXES;

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

/// Rows of each table the page shows.
const TABLE_ROWS: usize = 20;

/// `GET /live`: the history, the figures now, the busiest prefixes and the hottest keys.
pub fn json(ctx: &Ctx, history: &History) -> String {
    let samples: Vec<Value> = history.samples().into_iter().map(Sample::to_json).collect();
    let doc = json!({
        "version": crate::exec::VERSION,
        "uptime": ctx.store.clock().uptime(),
        "fields": SAMPLE_FIELDS,
        "now": Sample::read(ctx).to_json(),
        "history": samples,
        "prefixes": prefixes(ctx),
        "hot_keys": hot_keys(ctx),
    });
    doc.to_string()
}

/// The prefixes of `stats detail dump` with the most gets (the rest together last); none
/// under `-X`, which refuses that dump.
fn prefixes(ctx: &Ctx) -> Value {
    if !ctx.config.dump_enabled {
        return json!({ "rows": [], "note": "Key prefixes are hidden (-X), as stats detail is." });
    }
    let p = &ctx.stats.prefixes;
    let mut rows = p.snapshot();
    rows.sort_by_key(|r| (r.other, std::cmp::Reverse(r.gets + r.sets + r.deletes)));
    let shown = rows.len().min(TABLE_ROWS);
    let rows: Vec<Value> = rows[..shown]
        .iter()
        .map(|r| {
            let prefix = if r.other { OTHER_PREFIXES.into() } else { String::from_utf8_lossy(&r.prefix).into_owned() };
            json!({ "prefix": prefix, "gets": r.gets, "hits": r.hits, "sets": r.sets, "deletes": r.deletes })
        })
        .collect();
    let note = if !p.enabled() {
        "Counting by prefix is off: `stats detail on` (or -D, or --http at start) turns it on.".to_string()
    } else if rows.is_empty() {
        "No key with a prefix yet.".to_string()
    } else {
        format!("Prefixes counted by their first {} segment(s); at most {} kept.", p.rule().segments, p.limit())
    };
    json!({ "rows": rows, "note": note })
}

/// The hottest keys of `stats hotkeys` (names hashed under -X).
fn hot_keys(ctx: &Ctx) -> Value {
    let h = &ctx.stats.hot_keys;
    let rows: Vec<Value> = h
        .top(TABLE_ROWS)
        .into_iter()
        .map(|k| json!({ "key": String::from_utf8_lossy(&k.key), "count": k.count, "error": k.error }))
        .collect();
    let note = if !h.enabled() {
        "Hot keys are off (--hot-keys 0).".to_string()
    } else if h.names_hidden() {
        "Key names are hidden (-X): each key is shown by a hash.".to_string()
    } else {
        format!(
            "Estimated by a Space-Saving sketch of {} keys per thread, one fetch in {} sampled.",
            h.capacity(),
            h.sample()
        )
    };
    json!({ "rows": rows, "note": note })
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
