//! The server's coarse clock and memcached's exptime rules. Time is whole seconds since
//! "process start" as memcached counts it (`current_time`), read from one relaxed atomic on
//! hot paths; a ticker advances it in production, tests advance it by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Relative seconds since the clock's epoch; 0 in an exptime means "never".
pub type RelTime = u32;

/// Exptimes above this many seconds (30 days) are absolute Unix times (`REALTIME_MAXDELTA`).
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// memcached starts its clock this far in the past (`ITEM_UPDATE_INTERVAL + 2`), so that
/// relative time 1, which marks "already expired", is always in the past.
const START_OFFSET: i64 = 62;

/// A shared seconds clock. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Unix time of relative time 0.
    epoch: i64,
    now: AtomicU32,
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Clock {
    /// A clock at the current wall time; call [`Clock::tick`] (or run [`Clock::run_ticker`])
    /// to keep it current.
    pub fn system() -> Self {
        Self::starting_at(unix_now())
    }

    /// A clock whose current Unix time is `unix`, for tests; it moves only with `advance`.
    pub fn starting_at(unix: i64) -> Self {
        let inner = Inner { epoch: unix - START_OFFSET, now: AtomicU32::new(START_OFFSET as u32) };
        Self { inner: Arc::new(inner) }
    }

    /// Current relative time.
    #[inline]
    pub fn now(&self) -> RelTime {
        self.inner.now.load(Ordering::Relaxed)
    }

    /// Seconds up, as memcached's `stats` counts them (`current_time` less its
    /// `ITEM_UPDATE_INTERVAL` of 60): a fresh server says 2.
    pub fn uptime(&self) -> RelTime {
        self.now().saturating_sub(START_OFFSET as RelTime - 2)
    }

    /// Current Unix time as the clock sees it.
    pub fn unix_now(&self) -> i64 {
        self.inner.epoch + i64::from(self.now())
    }

    /// Unix time of relative time 0 (memcached's `process_started`).
    pub fn epoch(&self) -> i64 {
        self.inner.epoch
    }

    /// Moves the clock forward by `secs` (tests).
    pub fn advance(&self, secs: u32) {
        self.inner.now.fetch_add(secs, Ordering::Relaxed);
    }

    /// Re-reads the wall clock. Time never goes backwards.
    pub fn tick(&self) {
        let rel = (unix_now() - self.inner.epoch).clamp(0, i64::from(u32::MAX)) as u32;
        self.inner.now.fetch_max(rel, Ordering::Relaxed);
    }

    /// Ticks a few times a second for as long as the runtime lives.
    pub async fn run_ticker(self) {
        let mut every = tokio::time::interval(Duration::from_millis(200));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.tick();
        }
    }

    /// memcached's `realtime(EXPTIME_TO_POSITIVE_TIME(exptime))`: the relative deadline of a
    /// client exptime. 0 never expires; negative is already expired (1); up to 30 days is
    /// relative to now; beyond is an absolute Unix time, expired if not after our epoch.
    pub fn deadline(&self, exptime: i32) -> RelTime {
        let e = i64::from(exptime);
        if e == 0 {
            0
        } else if e < 0 {
            1
        } else if e > REALTIME_MAXDELTA {
            if e <= self.inner.epoch { 1 } else { (e - self.inner.epoch).min(i64::from(u32::MAX)) as u32 }
        } else {
            (e + i64::from(self.now())).min(i64::from(u32::MAX)) as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_rules() {
        let unix = 1_800_000_000;
        let c = Clock::starting_at(unix);
        let now = c.now();
        assert_eq!(c.deadline(0), 0);
        assert_eq!(c.deadline(-1), 1);
        assert_eq!(c.deadline(i32::MIN), 1);
        assert_eq!(c.deadline(100), now + 100);
        assert_eq!(c.deadline(2_592_000), now + 2_592_000, "30 days is still relative");
        assert_eq!(c.deadline(2_592_001), 1, "absolute, long past");
        assert_eq!(c.deadline((unix + 1000) as i32), now + 1000, "absolute future");
        assert_eq!(c.uptime(), 2, "memcached's fresh uptime");
        c.advance(5);
        assert_eq!(c.now(), now + 5);
        assert_eq!(c.uptime(), 7);
        assert_eq!(c.unix_now(), unix + 5);
    }
}
