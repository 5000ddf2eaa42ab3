//! The binary protocol's commands: [`execute`] matches on a decoded [`Packet`], runs it
//! against the store through the same counted verbs as the text commands, and writes
//! memcached's response packets (quiet variants silenced, errors with memcached's texts).
//! SASL logins go through [`crate::sasl`].

use bytes::BytesMut;

use super::{Ctx, Flow, Output, VERSION, retrieval, stats, storage};
use crate::memcached::{StoreMode, TtlFlags};
use crate::protocol::binary::{self, Command, Echo, Packet, Status, put_error, put_ok};
use crate::protocol::{DetailCmd, StatsGroup};
use crate::stats::Stats;
use crate::store::{ArithArgs, ArithOutcome, DeleteOutcome, Lookup, StoreArgs, StoreOutcome};

/// What a binary connection keeps between packets: its SASL exchange, once one started.
#[derive(Default)]
pub struct Session {
    sasl: Option<crate::sasl::Session>,
    /// A `sasl_auth` has started an exchange a `sasl_step` may go on with.
    sasl_started: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("sasl_started", &self.sasl_started).finish_non_exhaustive()
    }
}

/// Runs one packet and appends its response (if any) to `out`.
pub fn execute(ctx: &Ctx, packet: Packet, out: &mut Output, session: &mut Session) -> Flow {
    let Packet { echo, cas, quiet, command } = packet;
    let buf = &mut out.buf;
    match command {
        Command::Get { key, with_key, with_value, touch } => {
            let lookup = touch.map_or(Lookup::GET, Lookup::touch);
            let hit = ctx
                .store
                .lookup(&key, &lookup, |f| {
                    let it = f.item;
                    let value_len = if with_value { it.value().len() } else { 0 };
                    let k = with_key.then_some(&key[..]);
                    binary::put_hit_head(&mut out.buf, echo, it.cas(), it.flags(), k, value_len);
                    if with_value {
                        match it.shared_value() {
                            Some(v) => out.splice(v),
                            None => out.buf.extend_from_slice(it.value()),
                        }
                    }
                })
                .is_some();
            retrieval::count(ctx, &key, hit, touch.is_some());
            if hit || quiet {
                return Flow::Continue;
            }
            if with_key {
                binary::put_miss_with_key(&mut out.buf, echo, &key);
                return Flow::Continue;
            }
            put_error(&mut out.buf, echo, Status::NotFound, None);
            return Flow::Transmit;
        }
        Command::Store { mode, key, flags, deadline, value } => {
            let mut args =
                StoreArgs { mode, key: &key, flags, exptime: deadline, value: &value, ..StoreArgs::default() };
            if matches!(mode, StoreMode::Append | StoreMode::Prepend) {
                args.compare_cas = cas;
            }
            let status = match storage::store_counted(ctx, &args) {
                (StoreOutcome::Stored, new_cas) => {
                    if !quiet {
                        put_ok(buf, echo, new_cas, b"");
                    }
                    return Flow::Continue;
                }
                (StoreOutcome::Exists, _) => Status::Exists,
                (StoreOutcome::NotFound, _) => Status::NotFound,
                (StoreOutcome::NotStored, _) => match mode {
                    StoreMode::Add => Status::Exists,
                    StoreMode::Replace => Status::NotFound,
                    _ => Status::NotStored,
                },
                (StoreOutcome::NoMemory, _) => {
                    put_error(buf, echo, Status::OutOfMemory, Some(b"Out of memory allocating item"));
                    return Flow::Transmit;
                }
            };
            put_error(buf, echo, status, None);
            return Flow::Transmit;
        }
        Command::TooLarge { key, mode } => {
            storage::too_large(ctx, &key, mode, false);
            // The value is discarded next: memcached answers without a flush.
            put_error(buf, echo, Status::TooLarge, None);
        }
        Command::Delete { key } => {
            let status = match storage::delete_counted(ctx, &key, (cas != 0).then_some(cas)) {
                DeleteOutcome::Deleted | DeleteOutcome::Invalidated => {
                    if !quiet {
                        put_ok(buf, echo, 0, b"");
                    }
                    return Flow::Continue;
                }
                DeleteOutcome::Exists => Status::Exists,
                DeleteOutcome::NotFound => Status::NotFound,
            };
            put_error(buf, echo, status, None);
            return Flow::Transmit;
        }
        Command::Arith { key, incr, delta, create } => {
            let args = ArithArgs {
                incr,
                delta,
                compare_cas: cas,
                initial: create.map(|(v, _)| v),
                ttl: TtlFlags { touch: None, vivify: create.map(|(_, deadline)| (deadline, 0)) },
                ..ArithArgs::default()
            };
            let stats = ctx.stats.local();
            let (hits, misses) =
                if incr { (&stats.incr_hits, &stats.incr_misses) } else { (&stats.decr_hits, &stats.decr_misses) };
            let status = match ctx.store.arith(&key, &args) {
                ArithOutcome::Value { value, cas, created, .. } => {
                    // A counter binary incr creates is counted as neither hit nor miss.
                    if !created {
                        Stats::incr(hits);
                    }
                    if !quiet {
                        binary::put_counter(buf, echo, cas, value);
                    }
                    return Flow::Continue;
                }
                ArithOutcome::NotFound => {
                    Stats::incr(misses);
                    Status::NotFound
                }
                ArithOutcome::Exists => Status::Exists,
                ArithOutcome::NonNumeric => Status::NonNumeric,
                ArithOutcome::NoMemory => {
                    put_error(buf, echo, Status::OutOfMemory, Some(b"Out of memory allocating new item"));
                    return Flow::Transmit;
                }
            };
            put_error(buf, echo, status, None);
            return Flow::Transmit;
        }
        Command::Flush { delay } => {
            if !ctx.config.flush_enabled {
                // memcached refuses it as an auth failure, and does not count it.
                put_error(buf, echo, Status::AuthError, None);
                return Flow::Transmit;
            }
            Stats::incr(&ctx.stats.local().cmd_flush);
            ctx.store.flush_all(i32::try_from(delay).unwrap_or(i32::MAX));
            if !quiet {
                put_ok(buf, echo, 0, b"");
            }
        }
        Command::Noop => {
            put_ok(buf, echo, 0, b"");
            return Flow::Transmit;
        }
        Command::Version => put_ok(buf, echo, 0, VERSION.as_bytes()),
        Command::Quit => {
            if !quiet {
                put_ok(buf, echo, 0, b"");
            }
            return Flow::Close;
        }
        Command::Stat { key } => return stat(ctx, echo, &key, buf),
        Command::SaslList => return sasl_list(echo, session, buf),
        Command::Sasl { step, mech, data } => return sasl(ctx, echo, step, &mech, &data, session, buf),
        // The body is discarded next: memcached answers without a flush.
        Command::Refused(status) => put_error(buf, echo, status, None),
    }
    Flow::Continue
}

/// `stat`: memcached's reports by the key's name, each `STAT` line one packet, then an
/// empty packet to end them; memcached matches `reset`, `settings` and `detail` as
/// prefixes of the key. The packets are not flushed at once (an unknown report's error is).
fn stat(ctx: &Ctx, echo: Echo, key: &[u8], out: &mut BytesMut) -> Flow {
    let unknown = |out: &mut BytesMut| {
        put_error(out, echo, Status::NotFound, None);
        Flow::Transmit
    };
    let group = match key {
        b"" => StatsGroup::General,
        k if k.starts_with(b"reset") => StatsGroup::Reset,
        k if k.starts_with(b"settings") => StatsGroup::Settings,
        k if k.starts_with(b"detail") => {
            let sub = &k[6..];
            match () {
                _ if !ctx.config.dump_enabled => return unknown(out),
                _ if sub.starts_with(b" dump") => StatsGroup::Detail(DetailCmd::Dump),
                _ if sub.starts_with(b" on") => StatsGroup::Detail(DetailCmd::On),
                _ if sub.starts_with(b" off") => StatsGroup::Detail(DetailCmd::Off),
                _ => return unknown(out),
            }
        }
        b"items" => StatsGroup::Items,
        b"slabs" => StatsGroup::Slabs,
        b"sizes" => StatsGroup::Sizes,
        _ => return unknown(out),
    };
    let mut text = BytesMut::new();
    stats::write(ctx, group, &mut text);
    match group {
        StatsGroup::Reset | StatsGroup::Detail(DetailCmd::On | DetailCmd::Off) => {}
        // The dump goes in one packet, as memcached sends it.
        StatsGroup::Detail(DetailCmd::Dump) => binary::put_stat(out, echo.opaque, b"detailed", &text),
        _ => {
            for line in text[..].split(|&b| b == b'\n') {
                let Some(stat) = line.strip_prefix(b"STAT ") else { continue };
                let stat = stat.strip_suffix(b"\r").unwrap_or(stat);
                let space = memchr::memchr(b' ', stat).unwrap_or(stat.len());
                let value = stat.get(space + 1..).unwrap_or_default();
                binary::put_stat(out, echo.opaque, &stat[..space], value);
            }
        }
    }
    binary::put_stat(out, echo.opaque, b"", b"");
    Flow::Continue
}

/// `sasl_list_mechs`: the mechanisms libsasl2 offers, space-separated.
fn sasl_list(echo: Echo, session: &mut Session, out: &mut BytesMut) -> Flow {
    match session.conn().and_then(|s| s.mechanisms().ok()) {
        Some(list) => put_ok(out, echo, 0, &list),
        None => {
            put_error(out, echo, Status::AuthError, None);
            return Flow::Transmit;
        }
    }
    Flow::Continue
}

/// `sasl_auth` and `sasl_step`: one round of the exchange, counted as memcached counts a
/// login (`auth_cmds`, and `auth_errors` for a refusal).
fn sasl(
    ctx: &Ctx,
    echo: Echo,
    step: bool,
    mech: &[u8],
    data: &[u8],
    session: &mut Session,
    out: &mut BytesMut,
) -> Flow {
    use crate::sasl::Step;
    let started = session.sasl_started;
    let result = match session.conn() {
        Some(conn) if !step => {
            let r = conn.start(mech, data);
            session.sasl_started = !matches!(r, Step::Failed);
            r
        }
        // memcached refuses a step with no exchange started.
        Some(conn) if started => conn.step(data),
        _ => Step::Failed,
    };
    let stats = ctx.stats.local();
    match result {
        Step::Done => {
            Stats::incr(&stats.auth_cmds);
            put_ok(out, echo, 0, b"Authenticated");
            Flow::Authenticated
        }
        Step::Continue(challenge) => {
            binary::put_header(out, echo, Status::AuthContinue.code(), 0, 0, challenge.len() as u32, 0);
            out.extend_from_slice(&challenge);
            Flow::Transmit
        }
        Step::Failed => {
            Stats::incr(&stats.auth_cmds);
            Stats::incr(&stats.auth_errors);
            put_error(out, echo, Status::AuthError, None);
            Flow::Transmit
        }
    }
}

impl Session {
    /// This connection's libsasl2 context, made at first use (as memcached's
    /// `init_sasl_conn`); `None` if libsasl2 cannot make one.
    fn conn(&mut self) -> Option<&mut crate::sasl::Session> {
        if self.sasl.is_none() {
            self.sasl = crate::sasl::Session::new().ok();
        }
        self.sasl.as_mut()
    }
}

/// The group a packet is timed in (see [`crate::latency`]).
pub fn command_group(packet: &Packet) -> crate::latency::Command {
    use crate::latency::Command as Group;
    match packet.command {
        Command::Get { touch: None, .. } => Group::Get,
        Command::Get { touch: Some(_), with_value: false, .. } => Group::Touch,
        Command::Get { .. } => Group::Get,
        Command::Store { .. } | Command::TooLarge { .. } => Group::Set,
        Command::Delete { .. } => Group::Delete,
        Command::Arith { .. } => Group::Arith,
        _ => Group::Other,
    }
}
