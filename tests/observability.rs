//! `stats detail` by key prefix (`--prefix-segments`, `--prefix-limit`) and `stats hotkeys`
//! over real sockets: Django-shaped keys, the OTHER row, a skewed workload's hottest keys,
//! `-X` hiding key names, `stats reset` clearing both, `stats settings` listing them.

mod common;

use std::collections::BTreeMap;

use common::{Client, spawn};
use larder::Config;

/// Sends `cmd` and reads lines up to `END` (or one error line).
fn lines(c: &mut Client, cmd: &str) -> Vec<String> {
    c.send(format!("{cmd}\r\n").as_bytes());
    let mut out = Vec::new();
    loop {
        let l = c.line();
        if l == "END" || l.contains("ERROR") {
            if l != "END" {
                out.push(l);
            }
            return out;
        }
        out.push(l);
    }
}

/// `stats detail dump` as prefix -> "get g hit h set s del d" (OTHER as "<OTHER>").
fn dump(c: &mut Client) -> BTreeMap<String, String> {
    lines(c, "stats detail dump")
        .into_iter()
        .map(|l| match l.strip_prefix("OTHER ") {
            Some(rest) => ("<OTHER>".to_string(), rest.to_string()),
            None => {
                let rest = l.strip_prefix("PREFIX ").expect("a PREFIX line");
                let (prefix, counts) = rest.split_at(rest.find(" get ").expect("counts"));
                (prefix.to_string(), counts[1..].to_string())
            }
        })
        .collect()
}

fn set(c: &mut Client, key: &str) {
    c.roundtrip(format!("set {key} 0 0 1\r\nv\r\n").as_bytes(), b"STORED\r\n");
}

fn get(c: &mut Client, key: &str) {
    c.send(format!("get {key}\r\n").as_bytes());
    while c.line() != "END" {}
}

#[test]
fn django_keys_split_by_three_segments() {
    let srv = spawn(Config { prefix_segments: 3, detail_enabled: true, ..Config::for_tests() });
    let mut c = srv.connect();
    // Django: <KEY_PREFIX>:<version>:<key>, KEY_PREFIX empty by default.
    set(&mut c, ":1:a:1");
    for _ in 0..4 {
        get(&mut c, ":1:a:1");
    }
    for i in 0..3 {
        get(&mut c, &format!(":1:b:{i}"));
    }
    c.roundtrip(b"delete :1:b:0\r\n", b"NOT_FOUND\r\n");
    // Fewer delimiters than three: the longest prefix the key has; none: not counted.
    get(&mut c, ":1:homepage");
    get(&mut c, "plain");
    let want: BTreeMap<String, String> =
        [(":1:a", "get 4 hit 4 set 1 del 0"), (":1:b", "get 3 hit 0 set 0 del 1"), (":1", "get 1 hit 0 set 0 del 0")]
            .into_iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect();
    assert_eq!(dump(&mut c), want);
}

#[test]
fn memcacheds_rule_by_default_lumps_django_into_one_prefix() {
    let srv = spawn(Config { detail_enabled: true, ..Config::for_tests() });
    let mut c = srv.connect();
    set(&mut c, ":1:a:1");
    get(&mut c, ":1:a:1");
    get(&mut c, ":1:b:1");
    c.roundtrip(b"stats detail dump\r\n", b"PREFIX  get 2 hit 1 set 1 del 0\r\nEND\r\n");
}

#[test]
fn past_the_limit_the_rest_is_one_other_row() {
    let srv = spawn(Config { prefix_limit: 2, detail_enabled: true, ..Config::for_tests() });
    let mut c = srv.connect();
    for _ in 0..5 {
        get(&mut c, "busy:1");
        get(&mut c, "also:1");
    }
    for i in 0..4 {
        get(&mut c, &format!("rare{i}:1"));
    }
    let d = dump(&mut c);
    assert_eq!(d.len(), 3, "{d:?}");
    assert_eq!(d["busy"], "get 5 hit 0 set 0 del 0");
    assert_eq!(d["also"], "get 5 hit 0 set 0 del 0");
    assert_eq!(d["<OTHER>"], "get 4 hit 0 set 0 del 0");
    let rows = srv.ctx.stats.prefixes.snapshot();
    assert!(rows.last().is_some_and(|r| r.other && r.gets == 4), "the API marks the row: {rows:?}");
}

#[test]
fn stats_hotkeys_after_a_skewed_workload() {
    let srv = spawn(Config { hot_keys_sample: 1, ..Config::for_tests() });
    let mut c = srv.connect();
    set(&mut c, "hot");
    for i in 0..30 {
        set(&mut c, &format!("written{i}"));
    }
    for i in 0..50 {
        get(&mut c, "hot");
        if i % 2 == 0 {
            c.roundtrip(b"mg warm v\r\n", b"EN\r\n");
        }
        get(&mut c, &format!("cold{i} hot"));
    }
    let got = lines(&mut c, "stats hotkeys");
    assert_eq!(&got[..2], ["STAT hot 100", "STAT warm 25"], "{got:?}");
    assert!(got[2..].iter().all(|l| l.starts_with("STAT cold") && l.ends_with(" 1")), "{got:?}");
    assert!(!got.iter().any(|l| l.contains("written")), "stores are not fetches");
    let top = srv.ctx.stats.hot_keys.top(2);
    assert_eq!(
        top.iter().map(|k| (k.key.as_slice(), k.count, k.error)).collect::<Vec<_>>(),
        [(&b"hot"[..], 100, 0), (b"warm", 25, 0)]
    );
    // stats reset forgets hot keys and prefixes alike.
    c.roundtrip(b"stats detail on\r\n", b"OK\r\n");
    get(&mut c, "p:1");
    c.roundtrip(b"stats reset\r\n", b"RESET\r\n");
    c.roundtrip(b"stats hotkeys\r\n", b"END\r\n");
    c.roundtrip(b"stats detail dump\r\n", b"END\r\n");
}

#[test]
fn binary_keys_are_listed_in_base64() {
    let srv = spawn(Config { hot_keys_sample: 1, ..Config::for_tests() });
    let mut c = srv.connect();
    // "a b" in base64.
    c.roundtrip(b"mg YSBi b v\r\n", b"EN\r\n");
    c.roundtrip(b"stats hotkeys\r\n", b"STAT YSBi 1\r\nEND\r\n");
}

#[test]
fn dash_x_shows_no_key_name() {
    let srv = spawn(Config { dump_enabled: false, hot_keys_sample: 1, ..Config::for_tests() });
    let mut c = srv.connect();
    get(&mut c, "secret:token");
    get(&mut c, "secret:token");
    c.roundtrip(b"stats hotkeys\r\n", b"CLIENT_ERROR stats hotkeys not allowed\r\n");
    let top = srv.ctx.stats.hot_keys.top(10);
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].count, 2);
    assert!(top[0].key.starts_with(b"#") && !top[0].key.windows(6).any(|w| w == b"secret"), "{top:?}");
}

#[test]
fn hot_keys_off() {
    let srv = spawn(Config { hot_keys: 0, ..Config::for_tests() });
    let mut c = srv.connect();
    get(&mut c, "k");
    c.roundtrip(b"stats hotkeys\r\n", b"STAT hotkeys_status disabled\r\nEND\r\n");
    assert!(srv.ctx.stats.hot_keys.top(10).is_empty());
}

#[test]
fn stats_settings_lists_larders_own_only_away_from_defaults() {
    let names = |config: Config| {
        let srv = spawn(config);
        let mut c = srv.connect();
        lines(&mut c, "stats settings")
            .into_iter()
            .filter(|l| l.contains("prefix_segments") || l.contains("prefix_limit") || l.contains("hot_keys"))
            .collect::<Vec<_>>()
    };
    assert!(names(Config::for_tests()).is_empty(), "memcached's names only by default");
    assert_eq!(
        names(Config { prefix_segments: 3, ..Config::for_tests() }),
        [
            "STAT detail_prefix_segments 3",
            "STAT detail_prefix_limit 100",
            "STAT hot_keys 100",
            "STAT hot_keys_sample 8"
        ]
    );
}

#[test]
fn http_turns_prefix_counting_on_from_the_start() {
    let config = Config { http: Some("127.0.0.1:0".into()), ..Config::for_tests() };
    assert!(config.prefixes_on_at_start());
    assert!(!Config::for_tests().prefixes_on_at_start(), "memcached's default: off");
}

/// A Zipf workload over sockets (two connections, so two workers' sketches are merged):
/// `stats hotkeys` lists the true top ten first, and every key it lists keeps the bound
/// docs/observability.md gives (`count - error <= true <= count`, `error <= N / K`; here
/// the error is not listed, so `count - N / K <= true <= count`).
#[test]
fn a_zipf_workloads_top_ten_within_the_bound() {
    let srv = spawn(Config { hot_keys_sample: 1, threads: 2, ..Config::for_tests() });
    let (keys, n) = (5_000usize, 60_000usize);
    // Zipf 1.0 by inverse CDF, from a fixed xorshift seed.
    let weights: Vec<f64> = (1..=keys).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let cdf: Vec<f64> = weights.iter().scan(0.0, |acc, w| Some(*acc + w / total).inspect(|v| *acc = *v)).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut truth = vec![0u64; keys];
    let mut conns = [srv.connect(), srv.connect()];
    for batch in 0..n / 50 {
        let mut cmd = String::from("get");
        for _ in 0..50 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            let k = cdf.partition_point(|&c| c < u).min(keys - 1);
            truth[k] += 1;
            cmd.push_str(&format!(" z:{k}"));
        }
        get(&mut conns[batch % 2], &cmd[4..]);
    }
    let c = &mut conns[0];
    let listed: Vec<(usize, u64)> = lines(c, "stats hotkeys")
        .iter()
        .map(|l| {
            let mut w = l.strip_prefix("STAT z:").expect("a STAT line").split(' ');
            (w.next().unwrap().parse().unwrap(), w.next().unwrap().parse().unwrap())
        })
        .collect();
    let mut by_truth: Vec<usize> = (0..keys).collect();
    by_truth.sort_by_key(|&k| std::cmp::Reverse(truth[k]));
    let first10: Vec<usize> = listed.iter().take(10).map(|&(k, _)| k).collect();
    for k in &by_truth[..10] {
        assert!(first10.contains(k), "true top-10 key {k} ({} fetches) not among {first10:?}", truth[*k]);
    }
    let bound = (n / 100) as u64; // N / K, K = --hot-keys' default 100
    for &(k, count) in &listed {
        assert!(truth[k] <= count && count <= truth[k] + bound, "z:{k}: listed {count}, true {}", truth[k]);
    }
}
