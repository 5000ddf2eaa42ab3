//! Administrative commands: `cache_memlimit`, `shutdown`, the `-Y` login, `stats
//! cachedump` ([`CacheDump`], the most recently used items), the LRU crawler's switch and
//! crawls, and `lru_crawler metadump` ([`Dump`]), which lists every live item as a
//! connection writes it out.

use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;

use super::{Ctx, Flow, Output};
use crate::memcached::{item_size, slab_class};
use crate::protocol::encode::{
    CACHEDUMP_ROOM, DumpLine, Reply, cachedump_item_len, put_cachedump_item, put_dump_end, put_dump_line,
    put_dump_start, put_mgdump_line, put_refresh_failed, put_reply, put_reply_unless,
};
use crate::protocol::{CacheDumpArgs, CrawlClasses, DumpFormat};
use crate::stats::Stats;
use crate::store::{DumpCursor, Recent};

/// memcached refuses `cache_memlimit` below this many MiB.
const MIN_MEMLIMIT_MIB: u32 = 8;

/// The most a dump step reserves ahead: a connection's output bound (a caller without
/// one, whose room is unbounded, gets no more).
const DUMP_RESERVE_MAX: usize = 1 << 20;

/// How far a metadump's last line may run past its room: a 250-byte key URI-encoded
/// (three bytes each), its bookkeeping and `END`.
const DUMP_LINE_SLACK: usize = 1024;

pub fn cache_memlimit(ctx: &Ctx, mib: u32, noreply: bool, out: &mut BytesMut) {
    let reply = if mib < MIN_MEMLIMIT_MIB {
        Reply::MemlimitTooSmall
    } else if mib > 1_000_000_000 {
        Reply::MemlimitAdjustFailed
    } else {
        ctx.store.set_limit((mib as usize) << 20);
        Reply::Ok
    };
    put_reply_unless(out, noreply, reply);
}

/// `shutdown`: refused unless `-A`; otherwise memcached closes the asking connection
/// without a reply and stops.
pub fn shutdown(ctx: &Ctx, mode_ok: bool, out: &mut BytesMut) -> Flow {
    if !ctx.config.enable_shutdown {
        put_reply(out, Reply::ShutdownDisabled);
    } else if !mode_ok {
        put_reply(out, Reply::ShutdownMode);
    } else {
        tracing::info!("shutdown command received");
        ctx.shutdown.cancel();
        return Flow::Close;
    }
    Flow::Continue
}

/// A `-Y` login: the credentials a client sent as a `set`'s data.
pub fn login(ctx: &Ctx, user: &[u8], password: &[u8], out: &mut BytesMut) -> Flow {
    Stats::incr(&ctx.stats.local().auth_cmds);
    if ctx.config.auth.as_ref().is_some_and(|a| a.check(user, password)) {
        put_reply(out, Reply::Stored);
        return Flow::Authenticated;
    }
    Stats::incr(&ctx.stats.local().auth_errors);
    put_reply(out, Reply::AuthFailure);
    Flow::Continue
}

/// `refresh_certs`: the certificate and key files read again for new TLS connections.
/// `noreply` silences `OK`, never an error (as in memcached).
pub fn refresh_certs(ctx: &Ctx, noreply: bool, out: &mut BytesMut) {
    match ctx.tls.as_ref().map(|tls| tls.reload()) {
        None => put_reply(out, Reply::TlsNotEnabled),
        Some(Ok(())) => put_reply_unless(out, noreply, Reply::Ok),
        Some(Err(e)) => {
            tracing::warn!(%e, "refresh_certs: keeping the certificates in use");
            put_refresh_failed(out, &e);
        }
    }
}

/// `stats cachedump <class> <limit>`: memcached's refusals (`-X` first, then the
/// arguments'), or the walk that lists the class's items. Larder reports every item in
/// class 1 (as `stats items` does), so another class lists none. `None`: answered.
pub fn cachedump(ctx: &Ctx, args: Result<CacheDumpArgs, Reply>, out: &mut BytesMut) -> Option<CacheDump> {
    if !ctx.config.dump_enabled {
        put_reply(out, Reply::CachedumpNotAllowed);
        return None;
    }
    match args {
        Err(refused) => put_reply(out, refused),
        Ok(CacheDumpArgs { class: 1, limit }) => {
            let limit = (limit > 0).then_some(limit as usize);
            return Some(CacheDump { recent: Recent::new(limit, CACHEDUMP_ROOM) });
        }
        Ok(_) => put_reply(out, Reply::End),
    }
    None
}

/// A `stats cachedump` under way: the most recently used items gathered so far. As
/// memcached lists its LRU from the head, most recent first, at most the limit asked,
/// leaving out items under base64 keys, and only as many lines as fit in its 2 MB reply.
#[derive(Debug)]
pub struct CacheDump {
    recent: Recent<Listed>,
}

/// An item as `stats cachedump` lists it.
#[derive(Debug)]
struct Listed {
    key: Box<[u8]>,
    bytes: usize,
    /// Unix time, 0 for none.
    expiry: u64,
}

impl CacheDump {
    /// Walks on through the store; once it is all walked, writes the list and `END`
    /// (memcached sends it in one piece) and returns the flow.
    pub fn step(&mut self, ctx: &Ctx, out: &mut Output) -> Option<Flow> {
        let epoch = ctx.store.clock().epoch();
        let done = ctx.store.gather_recent(&mut self.recent, |f| {
            if f.key_binary() {
                return None;
            }
            let it = f.item;
            let expiry = if it.exptime() == 0 { 0 } else { (epoch + i64::from(it.exptime())).max(0) as u64 };
            let bytes = it.value().len();
            let cost = cachedump_item_len(it.key(), bytes, expiry);
            Some((Listed { key: it.key().into(), bytes, expiry }, cost))
        });
        if !done {
            return None;
        }
        for item in self.recent.take_sorted() {
            put_cachedump_item(&mut out.buf, &item.key, item.bytes, item.expiry);
        }
        put_reply(&mut out.buf, Reply::End);
        Some(Flow::Continue)
    }
}

/// `lru_crawler enable|disable`: Larder reclaims expired items on its own, but the switch
/// keeps memcached's state and replies.
pub fn crawler(ctx: &Ctx, enable: bool, out: &mut BytesMut) {
    let was = ctx.crawler.swap(enable, Relaxed);
    put_reply(
        out,
        match (enable, was) {
            (true, true) => Reply::CrawlerStartFailed,
            (false, false) => Reply::CrawlerStopFailed,
            _ => Reply::Ok,
        },
    );
}

/// `lru_crawler crawl`: answered as memcached answers it; expired items are reclaimed anyway.
pub fn crawl(ctx: &Ctx, classes: CrawlClasses, out: &mut BytesMut) {
    let reply = crawl_refusal(ctx, classes, None).unwrap_or(match classes {
        CrawlClasses::Hash => Reply::CrawlUnknownError,
        _ => Reply::Ok,
    });
    put_reply(out, reply);
}

/// Why memcached would not start an `lru_crawler crawl` (`dump` None) or a dump of
/// `classes`, in the order it checks. `dump`: the dump's format, and whether replies to
/// earlier commands are still waiting to go out, which memcached refuses to mix with a dump.
fn crawl_refusal(ctx: &Ctx, classes: CrawlClasses, dump: Option<(DumpFormat, bool)>) -> Option<Reply> {
    if !ctx.crawler.load(Relaxed) {
        return Some(Reply::CrawlerDisabled);
    }
    if let Some((format, waiting)) = dump {
        let keys = format == DumpFormat::Keys;
        if !ctx.config.dump_enabled {
            return Some(if keys { Reply::MgdumpNotAllowed } else { Reply::MetadumpNotAllowed });
        }
        if waiting {
            return Some(if keys { Reply::MgdumpPipelined } else { Reply::MetadumpPipelined });
        }
    }
    match classes {
        CrawlClasses::Bad => Some(Reply::BadClass),
        CrawlClasses::List(0) => Some(Reply::NotStarted),
        _ => None,
    }
}

/// `lru_crawler metadump|mgdump`: the walk over the items of the slab classes it shows,
/// or memcached's reply refusing it (`replies_waiting`: see [`crawl_refusal`]).
pub fn dump(ctx: &Ctx, classes: CrawlClasses, format: DumpFormat, replies_waiting: bool) -> Result<Dump, Reply> {
    let dump = |classes| Dump { classes, format, started: false, at: DumpCursor::default() };
    match (crawl_refusal(ctx, classes, Some((format, replies_waiting))), classes) {
        (Some(refused), _) => Err(refused),
        (None, CrawlClasses::List(mask)) => Ok(dump(mask)),
        (None, _) => Ok(dump(u64::MAX)),
    }
}

/// A dump under way: the classes it shows (a bit per slab class id, the class memcached
/// would use), its lines' format, whether its `OK` went out, and where the walk carries on.
#[derive(Debug)]
pub struct Dump {
    classes: u64,
    format: DumpFormat,
    started: bool,
    at: DumpCursor,
}

impl Dump {
    /// Adds a line for each live item from where it stopped, until the output holds
    /// `limit` bytes (`None`: more to do) or the last item is shown and `END` written.
    pub fn step(&mut self, ctx: &Ctx, out: &mut Output, limit: usize) -> Option<Flow> {
        let room = limit.saturating_sub(out.len()).max(1);
        let buf = &mut out.buf;
        // Grown here, not line by line while the walk holds a shard's lock.
        buf.reserve(room.min(DUMP_RESERVE_MAX) + DUMP_LINE_SLACK);
        let stop = buf.len().saturating_add(room);
        if !self.started {
            // memcached 1.6.45 starts every dump with `OK`.
            put_dump_start(buf);
            self.started = true;
        }
        let keys = self.format == DumpFormat::Keys;
        let epoch = ctx.store.clock().epoch();
        let max_item_size = ctx.config.max_item_size;
        let next = ctx.store.dump(self.at, |f| {
            let (key, it) = (f.item.key(), f.item);
            let size = item_size(key.len(), it.flags(), it.value().len());
            let class = slab_class(size, max_item_size);
            let shown = self.classes & (1 << class) != 0;
            if shown && keys {
                put_mgdump_line(buf, key, f.key_binary());
            } else if shown {
                // memcached's format: absolute times.
                let exp = if it.exptime() == 0 { -1 } else { epoch + i64::from(it.exptime()) };
                let la = epoch + i64::from(it.time());
                let line = DumpLine { exp, la, cas: it.cas(), fetched: f.fetched_before, class, size };
                put_dump_line(buf, key, &line, it.flags());
            }
            buf.len() < stop
        });
        match next {
            Some(at) => {
                self.at = at;
                None
            }
            None => {
                put_dump_end(buf, keys);
                Some(Flow::Transmit)
            }
        }
    }
}
