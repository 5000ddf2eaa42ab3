//! `GET /metrics`: the Prometheus text format (version 0.0.4). The `memcached_*` series
//! carry memcached_exporter's names and labels, made from one `stats` report read at one
//! instant (as the exporter makes them from memcached's), so a counter always equals the
//! `stats` field it comes from. Larder's own series are prefixed `larder_`.

use std::fmt::Write;

use crate::exec::Ctx;
use crate::latency::{BUCKETS_MICROS, Command};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole exposition.
pub fn render(ctx: &Ctx) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push_str(
        "# HELP memcached_up Could the memcached server be reached.\n# TYPE memcached_up gauge\nmemcached_up 1\n",
    );
    latency(ctx, &mut out);
    out
}

/// `larder_request_duration_seconds{command}`: see [`crate::latency`].
fn latency(ctx: &Ctx, out: &mut String) {
    out.push_str(
        "# HELP larder_request_duration_seconds Time from reading a request to queueing its reply, by command group.\n",
    );
    out.push_str("# TYPE larder_request_duration_seconds histogram\n");
    for c in Command::ALL {
        let s = ctx.latency.summary(c);
        let label = c.label();
        for (bound, n) in BUCKETS_MICROS.iter().zip(&s.cumulative) {
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "larder_request_duration_seconds_bucket{{command=\"{label}\",le=\"{le}\"}} {n}");
        }
        let total = s.cumulative[BUCKETS_MICROS.len()];
        let _ = writeln!(out, "larder_request_duration_seconds_bucket{{command=\"{label}\",le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "larder_request_duration_seconds_sum{{command=\"{label}\"}} {}", s.sum.as_secs_f64());
        let _ = writeln!(out, "larder_request_duration_seconds_count{{command=\"{label}\"}} {total}");
    }
}
