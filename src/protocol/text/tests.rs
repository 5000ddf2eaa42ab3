//! The text decoder's unit tests: every framing path, split at every byte.

use super::*;
use crate::protocol::StatsGroup;

fn decoder() -> Decoder {
    Decoder::new(Limits { max_item_size: 1 << 20 }, Clock::starting_at(1_800_000_000))
}

/// Decodes until more input is needed; errors are kept in order with the requests.
fn drain(d: &mut Decoder, buf: &mut BytesMut) -> Vec<Result<Request, Rejection>> {
    let mut out = Vec::new();
    loop {
        match d.decode(buf) {
            Ok(Some(r)) => out.push(Ok(r)),
            Ok(None) => return out,
            Err(e) => {
                let fatal = e.error.is_fatal();
                out.push(Err(e));
                if fatal {
                    return out;
                }
            }
        }
    }
}

fn decode_all(wire: &[u8]) -> Vec<Result<Request, Rejection>> {
    drain(&mut decoder(), &mut BytesMut::from(wire))
}

fn one(wire: &[u8]) -> Result<Request, Rejection> {
    let mut v = decode_all(wire);
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

fn err(wire: &[u8]) -> (ProtocolError, bool) {
    let e = one(wire).unwrap_err();
    (e.error, e.noreply)
}

const PIPELINE: &[u8] = b"set k 1 0 5\r\nhello\r\nget k  k2\r\nincr n 5\nbogus\r\n\
    cas k 0 0 1 99 noreply\r\nx\r\nset big 0 0 2000\r\n";

/// Pipelines covering every framing path: data blocks, bad chunks, swallowed items,
/// noreply errors, bare newlines, retrievals and admin commands.
const PIPELINES: &[&[u8]] = &[
    PIPELINE,
    b"set k 0 0 3\r\nabcde\r\nget k\r\ndelete k 0 noreply\n",
    b"gats 10 a b\r\nset x 0 0 -1 noreply\r\nincr k 18446744073709551615\r\n\r\nstats\r\n",
    b"append k 0 0 0\r\n\r\nprepend k 0 0 2\r\n\r\n\r\nflush_all 10\r\nmn\r\nquit\r\n",
    b"touch k -1\r\nverbosity 1 noreply\r\nslabs automove 1\r\nGET / HTTP/1.1\r\n",
];

#[test]
fn decodes_at_every_split_point() {
    assert_eq!(decode_all(PIPELINE).len(), 5);
    for wire in PIPELINES {
        let whole = decode_all(wire);
        for cut in 0..=wire.len() {
            let (mut d, mut buf) = (decoder(), BytesMut::from(&wire[..cut]));
            let mut got = drain(&mut d, &mut buf);
            buf.extend_from_slice(&wire[cut..]);
            got.extend(drain(&mut d, &mut buf));
            assert_eq!(got, whole, "split at {cut} of {:?}", String::from_utf8_lossy(wire));
        }
    }
}

#[test]
fn swallow_survives_every_split_point() {
    let mut wire = b"set big 0 0 2000\r\n".to_vec();
    wire.extend_from_slice(&[b'z'; 2000]);
    wire.extend_from_slice(b"\r\nget k\r\n");
    let limits = Limits { max_item_size: 1024 };
    let fresh = || Decoder::new(limits, Clock::starting_at(1_800_000_000));
    let whole = drain(&mut fresh(), &mut BytesMut::from(&wire[..]));
    assert_eq!(whole.len(), 3, "{whole:?}");
    for cut in (0..=wire.len()).step_by(7) {
        let (mut d, mut buf) = (fresh(), BytesMut::from(&wire[..cut]));
        let mut got = drain(&mut d, &mut buf);
        buf.extend_from_slice(&wire[cut..]);
        got.extend(drain(&mut d, &mut buf));
        assert_eq!(got, whole, "split at {cut}");
    }
}

#[test]
fn decodes_byte_by_byte() {
    for wire in PIPELINES {
        let (mut d, mut buf) = (decoder(), BytesMut::new());
        let mut got = Vec::new();
        for &b in *wire {
            buf.extend_from_slice(&[b]);
            got.extend(drain(&mut d, &mut buf));
        }
        assert_eq!(got, decode_all(wire));
    }
}

#[test]
fn storage_line() {
    let Ok(Request::Store { mode, key, flags, deadline, value, noreply }) =
        one(b"set  k   4294967296 4294967295 2 \r\nhi\r\n")
    else {
        panic!()
    };
    assert_eq!(
        (mode, &key[..], flags, deadline, &value[..], noreply),
        (StoreMode::Set, &b"k"[..], 0, 1, &b"hi"[..], false),
        "4294967295 is -1: expired"
    );
    assert!(matches!(
        one(b"cas k 0 0 1 7 noreply\r\nx\r\n"),
        Ok(Request::Store { mode: StoreMode::Cas { unique: 7 }, noreply: true, .. })
    ));
    // An unknown 7th token is ignored.
    assert!(matches!(one(b"set k 0 0 1 garbage\r\nx\r\n"), Ok(Request::Store { noreply: false, .. })));
}

#[test]
fn storage_errors() {
    assert_eq!(err(b"set k 0 0\r\n"), (ProtocolError::UnknownCommand, false));
    assert_eq!(err(b"set k 0 0 -1\r\n"), (ProtocolError::BadFormat, false));
    assert_eq!(err(b"set k 0 0 -1 noreply\r\n"), (ProtocolError::BadFormat, true));
    assert_eq!(err(b"set k -1 0 1\r\n"), (ProtocolError::BadFormat, false));
    assert_eq!(err(b"set k 0 x 1\r\n"), (ProtocolError::BadFormat, false));
    assert_eq!(err(b"set k 0 0 2147483647\r\n"), (ProtocolError::BadFormat, false));
    let long = [b'a'; 251];
    let mut line = b"set ".to_vec();
    line.extend_from_slice(&long);
    line.extend_from_slice(b" 0 0 1\r\n");
    assert_eq!(err(&line), (ProtocolError::BadFormat, false));
    let got = decode_all(b"set k 0 0 3\r\nabcde\r\n");
    assert_eq!(got[0], Err(Rejection { error: ProtocolError::BadDataChunk, noreply: false }));
    assert_eq!(got[1], Err(ProtocolError::UnknownCommand.into()), "the leftover \\r\\n is a line");
}

#[test]
fn too_large_is_swallowed() {
    let mut d = Decoder::new(Limits { max_item_size: 1024 }, Clock::starting_at(1_800_000_000));
    let mut buf = BytesMut::from(&b"set k 0 0 1000\r\n"[..]);
    assert!(matches!(d.decode(&mut buf), Ok(Some(Request::TooLarge { mode: StoreMode::Set, .. }))));
    assert_eq!(d.decode(&mut buf), Ok(None), "no reply before the data is consumed");
    buf.extend_from_slice(&[b'x'; 600]);
    assert_eq!(d.decode(&mut buf), Ok(None));
    assert!(buf.is_empty(), "swallowed bytes are not buffered");
    buf.extend_from_slice(&[b'x'; 400]);
    buf.extend_from_slice(b"\r\nversion\r\n");
    assert_eq!(d.decode(&mut buf), Err(ProtocolError::TooLarge.into()));
    assert_eq!(d.decode(&mut buf), Ok(Some(Request::Version)));
    // The boundary is memcached's: 1024 - 59 - key length.
    let ok = format!("set k 0 0 {}\r\n", 1024 - 59 - 1);
    assert!(matches!(
        Decoder::new(Limits { max_item_size: 1024 }, Clock::starting_at(1_800_000_000))
            .decode(&mut BytesMut::from(ok.as_bytes())),
        Ok(None)
    ));
    let over = format!("set k 0 0 {}\r\n", 1024 - 59);
    assert!(matches!(
        Decoder::new(Limits { max_item_size: 1024 }, Clock::starting_at(1_800_000_000))
            .decode(&mut BytesMut::from(over.as_bytes())),
        Ok(Some(Request::TooLarge { .. }))
    ));
}

#[test]
fn retrieval() {
    let Ok(Request::Get { keys, with_cas: true, touch: Some(-1) }) = one(b"gats 4294967295 a b  a \r\n") else {
        panic!()
    };
    assert_eq!(keys.iter().collect::<Vec<_>>(), vec![&b"a"[..], b"b", b"a"]);
    assert!(matches!(one(b"gat 10\r\n"), Ok(Request::Get { .. })));
    assert_eq!(err(b"get\r\n"), (ProtocolError::UnknownCommand, false));
    assert_eq!(err(b"gat x k\r\n"), (ProtocolError::BadExptime, false));
    let mut line = b"get a ".to_vec();
    line.extend_from_slice(&[b'k'; 251]);
    line.extend_from_slice(b"\r\n");
    assert_eq!(err(&line), (ProtocolError::GetKeyTooLong, false));
    // 30 keys: more than the tokenizer's 24 slots, all kept.
    let many: String = (0..30).map(|i| format!(" k{i}")).collect();
    let Ok(Request::Get { keys, .. }) = one(format!("get{many}\r\n").as_bytes()) else { panic!() };
    assert_eq!(keys.iter().count(), 30);
}

#[test]
fn other_commands() {
    assert_eq!(one(b"delete k 0\r\n"), Ok(Request::Delete { key: Bytes::from_static(b"k"), noreply: false }));
    assert_eq!(one(b"delete k 0 noreply\r\n"), Ok(Request::Delete { key: Bytes::from_static(b"k"), noreply: true }));
    assert_eq!(err(b"delete k 1\r\n"), (ProtocolError::DeleteUsage, false));
    assert_eq!(err(b"delete k 1 noreply\r\n"), (ProtocolError::DeleteUsage, true));
    assert_eq!(err(b"incr k -1\r\n"), (ProtocolError::BadDelta, false));
    assert_eq!(err(b"touch k x noreply\r\n"), (ProtocolError::BadExptime, true));
    assert_eq!(one(b"flush_all\r\n"), Ok(Request::FlushAll { delay: Some(0), noreply: false }));
    assert_eq!(one(b"flush_all noreply\r\n"), Ok(Request::FlushAll { delay: Some(0), noreply: true }));
    assert_eq!(one(b"flush_all -5 noreply\r\n"), Ok(Request::FlushAll { delay: Some(-5), noreply: true }));
    // The bad delay is answered by exec, after -F's refusal.
    assert_eq!(one(b"flush_all abc\r\n"), Ok(Request::FlushAll { delay: None, noreply: false }));
    assert_eq!(err(b"verbosity\r\n"), (ProtocolError::UnknownCommand, false));
    assert_eq!(one(b"verbosity 1\n"), Ok(Request::Verbosity { noreply: false }));
    assert_eq!(one(b"stats\r\n"), Ok(Request::Stats { group: StatsGroup::General }));
    assert_eq!(err(b"stats nope\r\n"), (ProtocolError::UnknownCommand, false));
    assert_eq!(err(b"GET k\r\n"), (ProtocolError::UnknownCommand, false));
    assert_eq!(err(b"\r\n"), (ProtocolError::UnknownCommand, false));
    assert_eq!(err(b"GET / HTTP/1.1\r\n"), (ProtocolError::Http, false));
    // A NUL ends the line for memcached.
    assert_eq!(err(b"set a\0b 0 0 1\r\n"), (ProtocolError::UnknownCommand, false));
}

#[test]
fn long_lines() {
    let mut d = decoder();
    let mut buf = BytesMut::from(&[b'x'; MAX_LINE + 1][..]);
    assert_eq!(d.decode(&mut buf).unwrap_err().error, ProtocolError::LineTooLong);
    let mut line = b"get ".to_vec();
    line.extend(std::iter::repeat_n(b"key ".iter().copied(), 1000).flatten());
    let mut buf = BytesMut::from(&line[..]);
    assert_eq!(d.decode(&mut buf), Ok(None), "a long multiget waits for its newline");
    buf.extend_from_slice(b"\r\n");
    assert!(matches!(d.decode(&mut buf), Ok(Some(Request::Get { .. }))));
    // A long line whose newline arrived with it is parsed normally.
    let mut line = vec![b'z'; 3000];
    line.extend_from_slice(b"\r\n");
    assert_eq!(err(&line), (ProtocolError::UnknownCommand, false));
}

/// `watch`'s words as memcached 1.6.18 takes them: none means fetchers, every word must be
/// one it knows (`noreply` is none, and silences the ERROR).
#[test]
fn watch_words() {
    use crate::watch::kind;
    let cases: &[(&[u8], Option<u16>, bool)] = &[
        (b"watch\r\n", Some(kind::FETCHERS), false),
        (b"watch mutations evictions\r\n", Some(kind::MUTATIONS | kind::EVICTIONS), false),
        (b"watch  connevents  fetchers \r\n", Some(kind::CONNEVENTS | kind::FETCHERS), false),
        (b"watch sysevents rawcmds proxyreqs proxyevents proxyuser\r\n", Some(0x1e02), false),
        (b"watch fetchers bogus\r\n", None, false),
        (b"watch Fetchers\r\n", None, false),
        (b"watch noreply\r\n", None, true),
    ];
    for &(wire, kinds, noreply) in cases {
        match one(wire) {
            Ok(Request::Watch { kinds: k, noreply: n }) => assert_eq!((k, n), (kinds, noreply), "{wire:?}"),
            other => panic!("{wire:?}: {other:?}"),
        }
    }
}
