//! The administrative commands' lines (`stats`, `slabs`, `lru`, `lru_crawler`,
//! `verbosity`, `cache_memlimit`, `shutdown`, `refresh_certs`), validated as memcached
//! validates them. Those about machinery Larder does not have (slab classes, LRU tuning,
//! the crawler's knobs) decode to the reply memcached gives, with no effect.

use bytes::Bytes;

use super::encode::Reply;
use super::text::Tokens;
use super::{CacheDumpArgs, CrawlClasses, DetailCmd, DumpFormat, ProtocolError, Rejection, Request, StatsGroup};
use crate::memcached::number::{parse_i32_truncating, parse_u32_truncating};
use crate::memcached::{LARGEST_SLAB_CLASS, MAX_SLAB_CLASSES};

/// The request an administrative command line makes, or `None` if `cmd` is not one.
pub(super) fn parse(cmd: &[u8], toks: &Tokens, line: &Bytes, noreply: bool) -> Result<Option<Request>, Rejection> {
    // ntokens as memcached counts it: the real tokens plus a terminal one.
    let ntokens = toks.n + 1;
    let want = |ok: bool| if ok { Ok(()) } else { Err(Rejection::from(ProtocolError::UnknownCommand)) };
    let silent = |error: ProtocolError| Rejection { error, noreply };
    let line = &line[..];
    Ok(Some(match cmd {
        b"shutdown" => {
            Request::Shutdown { mode_ok: ntokens == 2 || (ntokens == 3 && toks.get(line, 1) == b"graceful") }
        }
        b"verbosity" => {
            want(ntokens == 3 || ntokens == 4)?;
            parse_u32_truncating(toks.get(line, 1)).ok_or(silent(ProtocolError::BadFormat))?;
            Request::Verbosity { noreply }
        }
        b"cache_memlimit" => {
            want(ntokens == 3 || ntokens == 4)?;
            let mib = parse_u32_truncating(toks.get(line, 1)).ok_or(silent(ProtocolError::UnknownCommand))?;
            Request::CacheMemlimit { mib, noreply }
        }
        b"stats" if toks.get(line, 1) == b"cachedump" => {
            // Refusals are replies, not protocol errors: memcached checks -X first.
            let args = if ntokens < 5 {
                Err(Reply::BadCommandLine)
            } else {
                match (parse_u32_truncating(toks.get(line, 2)), parse_u32_truncating(toks.get(line, 3))) {
                    (Some(id), Some(_)) if id >= MAX_SLAB_CLASSES => Err(Reply::IllegalSlabId),
                    (Some(class), Some(limit)) => Ok(CacheDumpArgs { class, limit }),
                    _ => Err(Reply::BadCommandLineFormat),
                }
            };
            Request::CacheDump { args }
        }
        b"stats" => Request::Stats { group: stats_group(toks, line)? },
        b"slabs" => Request::NoOp { reply: slabs_reply(toks, line, ntokens, noreply)?, noreply },
        b"lru" => {
            want(ntokens >= 3)?;
            Request::NoOp { reply: lru_reply(toks, line, ntokens), noreply }
        }
        b"lru_crawler" if ntokens == 3 && matches!(toks.get(line, 1), b"enable" | b"disable") => {
            Request::Crawler { enable: toks.get(line, 1) == b"enable" }
        }
        b"lru_crawler" if ntokens == 4 && matches!(toks.get(line, 1), b"crawl" | b"metadump" | b"mgdump") => {
            let dump = match toks.get(line, 1) {
                b"metadump" => Some(DumpFormat::Meta),
                b"mgdump" => Some(DumpFormat::Keys),
                _ => None,
            };
            Request::Crawl { classes: crawl_classes(toks.get(line, 2)), dump }
        }
        b"lru_crawler" => Request::NoOp { reply: lru_crawler_reply(toks, line, ntokens), noreply: false },
        b"refresh_certs" => Request::RefreshCerts { noreply },
        _ => return Ok(None),
    }))
}

fn stats_group(toks: &Tokens, line: &[u8]) -> Result<StatsGroup, Rejection> {
    if toks.n == 1 {
        return Ok(StatsGroup::General);
    }
    Ok(match toks.get(line, 1) {
        b"reset" => StatsGroup::Reset,
        b"settings" => StatsGroup::Settings,
        b"items" => StatsGroup::Items,
        b"slabs" => StatsGroup::Slabs,
        b"sizes" => StatsGroup::Sizes,
        b"conns" => StatsGroup::Conns,
        b"detail" if toks.n >= 3 => match toks.get(line, 2) {
            b"on" => StatsGroup::Detail(DetailCmd::On),
            b"off" => StatsGroup::Detail(DetailCmd::Off),
            b"dump" => StatsGroup::Detail(DetailCmd::Dump),
            _ => StatsGroup::DetailUsage,
        },
        b"detail" => StatsGroup::DetailUsage,
        b"hotkeys" => StatsGroup::HotKeys,
        _ => return Err(ProtocolError::UnknownCommand.into()),
    })
}

const OK: Reply = Reply::Ok;
const ERROR: Reply = Reply::Error;

/// `slabs reassign|automove`: Larder has no slab classes, so there is never a page to move.
fn slabs_reply(toks: &Tokens, line: &[u8], ntokens: usize, noreply: bool) -> Result<Reply, Rejection> {
    let sub = toks.get(line, 1);
    if ntokens == 5 && sub == b"reassign" {
        let (Some(src), Some(dst)) = (parse_i32_truncating(toks.get(line, 2)), parse_i32_truncating(toks.get(line, 3)))
        else {
            return Err(ProtocolError::BadFormat.into());
        };
        let class_ok = |c: i32| (1..=LARGEST_SLAB_CLASS).contains(&c);
        return Ok(if src == dst {
            Reply::SameClass
        } else if !(class_ok(src) || src == -1) || !class_ok(dst) {
            Reply::BadClassPair
        } else {
            Reply::NoSpare
        });
    }
    if ntokens >= 4 && sub == b"automove" {
        let arg = toks.get(line, 2);
        if arg == b"ratio" {
            let ok = ntokens >= 5 && std::str::from_utf8(toks.get(line, 3)).is_ok_and(|r| r.parse::<f64>().is_ok());
            return Ok(if ok { OK } else { ERROR });
        }
        return match parse_u32_truncating(arg) {
            None => Err(Rejection { error: ProtocolError::BadFormat, noreply }),
            Some(0..=2) => Ok(OK),
            Some(_) => Ok(ERROR),
        };
    }
    Err(ProtocolError::UnknownCommand.into())
}

/// `lru tune|mode|temp_ttl`, validated as memcached validates them.
fn lru_reply(toks: &Tokens, line: &[u8], ntokens: usize) -> Reply {
    let float = |i: usize| std::str::from_utf8(toks.get(line, i)).ok().and_then(|f| f.parse::<f64>().ok());
    match toks.get(line, 1) {
        b"tune" if ntokens >= 7 => {
            let (Some(hot), Some(warm), Some(hot_factor), Some(factor)) =
                (parse_u32_truncating(toks.get(line, 2)), parse_u32_truncating(toks.get(line, 3)), float(4), float(5))
            else {
                return ERROR;
            };
            if u64::from(hot) + u64::from(warm) > 80 {
                Reply::LruPctOver
            } else if factor <= 0.0 || hot_factor <= 0.0 {
                Reply::LruFactorZero
            } else {
                OK
            }
        }
        b"mode" if ntokens >= 4 => match toks.get(line, 2) {
            b"flat" | b"segmented" => OK,
            _ => ERROR,
        },
        b"temp_ttl" if ntokens >= 4 => {
            if parse_i32_truncating(toks.get(line, 2)).is_some() {
                OK
            } else {
                ERROR
            }
        }
        _ => ERROR,
    }
}

/// `lru_crawler crawl|metadump <classes>`: `all`, `hash` (a walk of the hash table, which
/// `crawl` refuses), or slab class ids from 1 to 63 separated by commas (empty ids skipped,
/// each parsed as memcached's `safe_strtoul` into 32 bits).
fn crawl_classes(tok: &[u8]) -> CrawlClasses {
    match tok {
        b"all" => CrawlClasses::All,
        b"hash" => CrawlClasses::Hash,
        _ => {
            let mut mask = 0u64;
            for id in tok.split(|&b| b == b',').filter(|id| !id.is_empty()) {
                match parse_u32_truncating(id) {
                    Some(n) if (1..MAX_SLAB_CLASSES).contains(&n) => mask |= 1 << n,
                    _ => return CrawlClasses::Bad,
                }
            }
            CrawlClasses::List(mask)
        }
    }
}

/// `lru_crawler`: Larder reclaims expired items on its own schedule; the knobs are accepted.
fn lru_crawler_reply(toks: &Tokens, line: &[u8], ntokens: usize) -> Reply {
    let sub = toks.get(line, 1);
    match (ntokens, sub) {
        (4, b"tocrawl") => {
            if parse_u32_truncating(toks.get(line, 2)).is_some() {
                OK
            } else {
                Reply::BadCommandLineFormat
            }
        }
        (4, b"sleep") => match parse_u32_truncating(toks.get(line, 2)) {
            None => Reply::BadCommandLineFormat,
            Some(us) if us > 1_000_000 => Reply::CrawlerSleepTooLong,
            Some(_) => OK,
        },
        _ => ERROR,
    }
}
