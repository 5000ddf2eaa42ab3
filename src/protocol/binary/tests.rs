use bytes::BytesMut;

use super::*;
use crate::clock::Clock;

fn decoder() -> Decoder {
    Decoder::new(Limits { max_item_size: 1024 }, Clock::starting_at(1_800_000_000))
}

fn packet(opcode: u8, key: &[u8], extras: &[u8], value: &[u8], opaque: u32, cas: u64) -> Vec<u8> {
    let mut b = vec![REQUEST_MAGIC, opcode];
    b.extend((key.len() as u16).to_be_bytes());
    b.push(extras.len() as u8);
    b.extend([0, 0, 0]);
    b.extend(((key.len() + extras.len() + value.len()) as u32).to_be_bytes());
    b.extend(opaque.to_ne_bytes());
    b.extend(cas.to_be_bytes());
    b.extend(extras);
    b.extend(key);
    b.extend(value);
    b
}

/// Everything `input` decodes to, fed to the decoder in pieces of `chunk` bytes.
fn decode_all(d: &mut Decoder, input: &[u8], chunk: usize) -> Vec<Result<Packet, Fatal>> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(p)) => out.push(Ok(p)),
                Ok(None) => break,
                Err(f) => {
                    out.push(Err(f));
                    return out;
                }
            }
        }
    }
    out
}

fn pipeline() -> Vec<u8> {
    let set_extras = [7u32.to_be_bytes(), 0u32.to_be_bytes()].concat();
    let arith_extras = [&5u64.to_be_bytes()[..], &1u64.to_be_bytes(), &u32::MAX.to_be_bytes()].concat();
    [
        packet(op::SET, b"key", &set_extras, b"value", 1, 0),
        packet(op::GETK, b"key", &[], b"", 2, 0),
        packet(op::SETQ, b"k2", &set_extras, b"", 3, 99),
        packet(op::INCREMENT, b"n", &arith_extras, b"", 4, 0),
        packet(op::APPENDQ, b"key", &[], b"++", 5, 0),
        // An unknown opcode: after its key, as many bytes as its body length are discarded.
        packet(0x50, b"ab", &[], b"", 6, 0),
        b"cd".to_vec(),
        packet(op::FLUSH, b"", &10u32.to_be_bytes(), b"", 7, 0),
        packet(op::STAT, b"items", &[], b"", 8, 0),
        packet(op::NOOP, b"", &[], b"", 9, 0),
    ]
    .concat()
}

#[test]
fn a_pipeline_decodes_the_same_split_at_every_byte() {
    let input = pipeline();
    let whole = decode_all(&mut decoder(), &input, input.len());
    let opaques: Vec<u32> = whole.iter().map(|p| p.as_ref().unwrap().echo.opaque).collect();
    assert_eq!(opaques, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let Ok(Packet { command: Command::Store { mode, key, flags, value, .. }, quiet: false, .. }) = &whole[0] else {
        panic!("{:?}", whole[0])
    };
    assert_eq!((*mode, &key[..], *flags, &value[..]), (StoreMode::Set, &b"key"[..], 7, &b"value"[..]));
    assert!(matches!(&whole[1], Ok(Packet { command: Command::Get { with_key: true, touch: None, .. }, .. })));
    assert!(
        matches!(
            &whole[2],
            Ok(Packet { command: Command::Store { mode: StoreMode::Cas { unique: 99 }, .. }, quiet: true, .. })
        ),
        "a set with a CAS is a cas"
    );
    assert!(matches!(&whole[3], Ok(Packet { command: Command::Arith { delta: 5, create: None, incr: true, .. }, .. })));
    assert!(matches!(&whole[5], Ok(Packet { command: Command::Refused(Status::UnknownCommand), .. })));
    assert!(matches!(&whole[6], Ok(Packet { command: Command::Flush { delay: 10 }, .. })));
    for chunk in 1..input.len() {
        assert_eq!(decode_all(&mut decoder(), &input, chunk), whole, "split every {chunk} bytes");
    }
}

#[test]
fn lengths_that_lie_and_bad_magic_end_the_connection() {
    let fatal = |input: Vec<u8>| decode_all(&mut decoder(), &input, input.len()).pop().unwrap().unwrap_err().status;
    let mut bad = packet(op::GET, b"k", &[], b"", 0, 0);
    bad[0] = 0x81;
    assert_eq!(fatal(bad), None, "bad magic: closed without a reply");
    let mut key_past_body = packet(op::GET, b"abc", &[], b"", 0, 0);
    key_past_body[11] = 2;
    assert_eq!(fatal(key_past_body), Some(Status::UnknownCommand));
    let mut huge = packet(op::SET, b"k", &[0; 8], b"", 0, 0);
    huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(fatal(huge), Some(Status::Invalid), "a body of 2^32-1");
    assert_eq!(fatal(packet(op::GET, &[b'k'; 251], &[], b"", 0, 0)), Some(Status::Invalid));
    assert_eq!(fatal(packet(op::GET, b"k", &[0; 4], b"", 0, 0)), Some(Status::Invalid), "a get with extras");
    assert_eq!(fatal(packet(op::NOOP, b"", &[], b"x", 0, 0)), Some(Status::Invalid));
    assert_eq!(fatal(packet(op::INCREMENT, b"k", &[0; 8], b"", 0, 0)), Some(Status::Invalid));
}

#[test]
fn a_header_alone_buffers_no_more_than_its_extras_and_key() {
    // A set whose header promises a 1 GB body: nothing is reserved for the value until it
    // comes, and it is refused as too large once the key is in.
    let mut d = decoder();
    let mut h = packet(op::SET, b"k", &[0; 8], b"", 0, 0);
    h[8..12].copy_from_slice(&(1u32 << 30).to_be_bytes());
    let mut buf = BytesMut::from(&h[..]);
    let p = d.decode(&mut buf).unwrap().unwrap();
    assert!(matches!(p.command, Command::TooLarge { mode: StoreMode::Set, .. }));
    assert!(buf.capacity() < 64 * 1024, "{}", buf.capacity());
    assert_eq!(d.framing(), Framing::Swallow);
    buf.extend_from_slice(&[0; 4096]);
    assert_eq!(d.decode(&mut buf).unwrap(), None);
    assert!(buf.is_empty(), "the value is discarded as it comes");
}

#[test]
fn a_value_over_the_item_size_is_discarded_and_the_next_packet_served() {
    let mut input = packet(op::SET, b"k", &[0; 8], &[b'x'; 2000], 1, 0);
    input.extend(packet(op::GET, b"k", &[], b"", 2, 0));
    let got = decode_all(&mut decoder(), &input, 7);
    assert!(matches!(got[0], Ok(Packet { command: Command::TooLarge { .. }, .. })));
    assert!(matches!(got[1], Ok(Packet { command: Command::Get { .. }, echo: Echo { opaque: 2, .. }, .. })));
    assert_eq!(got.len(), 2);
}

#[test]
fn under_sasl_only_sasl_and_version_come_before_a_login() {
    let mut d = decoder().require_sasl();
    let version = packet(op::VERSION, b"", &[], b"", 0, 0);
    assert!(matches!(decode_all(&mut d, &version, 24)[0], Ok(Packet { command: Command::Version, .. })));
    let auth = packet(op::SASL_AUTH, b"PLAIN", &[], b"\0u\0p", 0, 0);
    let got = decode_all(&mut d, &auth, 3);
    let Ok(Packet { command: Command::Sasl { step: false, mech, data }, .. }) = &got[0] else { panic!("{got:?}") };
    assert_eq!((&mech[..], &data[..]), (&b"PLAIN"[..], &b"\0u\0p"[..]));
    let get = packet(op::GETQ, b"k", &[], b"", 0, 0);
    assert_eq!(
        decode_all(&mut d, &get, 24)[0],
        Err(Fatal { echo: Echo { opcode: op::GETQ, opaque: 0 }, status: Some(Status::AuthError) })
    );
    d.authenticated();
    assert!(decode_all(&mut d, &get, 24)[0].is_ok());
    decode_all(&mut d, &packet(op::SASL_LIST_MECHS, b"", &[], b"", 0, 0), 24);
    assert!(decode_all(&mut d, &get, 24)[0].is_err(), "a SASL command logs the client out");
    let long = packet(op::SASL_AUTH, &[b'M'; 33], &[], b"data", 0, 0);
    let mut d = decoder().require_sasl();
    let got = decode_all(&mut d, &long, long.len());
    assert_eq!(got.len(), 1);
    assert!(matches!(got[0], Ok(Packet { command: Command::Refused(Status::Invalid), .. })));
}

#[test]
fn without_sasl_its_opcodes_are_unknown_and_their_data_discarded() {
    let mut input = packet(op::SASL_AUTH, b"PLAIN", &[], b"\0u\0p", 1, 0);
    input.extend(packet(op::NOOP, b"", &[], b"", 2, 0));
    let got = decode_all(&mut decoder(), &input, input.len());
    assert!(matches!(got[0], Ok(Packet { command: Command::Refused(Status::UnknownCommand), .. })));
    assert!(matches!(got[1], Ok(Packet { command: Command::Noop, .. })));
}

#[test]
fn response_headers_are_memcacheds() {
    let mut out = BytesMut::new();
    put_error(&mut out, Echo { opcode: op::GET, opaque: 0x0102_0304 }, Status::NotFound, None);
    let mut want = vec![0x81, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9];
    want.extend(0x0102_0304u32.to_ne_bytes());
    want.extend([0; 8]);
    want.extend(b"Not found");
    assert_eq!(&out[..], &want[..]);
    let mut out = BytesMut::new();
    put_hit_head(&mut out, Echo { opcode: op::GETK, opaque: 0 }, 5, 7, Some(b"k"), 3);
    assert_eq!(&out[..12], &[0x81, op::GETK, 0, 1, 4, 0, 0, 0, 0, 0, 0, 8]);
    assert_eq!(&out[16..], &[0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 7, b'k']);
}

#[test]
fn prefetch_hint_walks_a_pipeline_of_packets() {
    let keys = |buf: &[u8], max: usize| {
        let mut v = Vec::new();
        pipelined_get_keys(buf, max, |k| v.push(String::from_utf8_lossy(k).into_owned()));
        v
    };
    let getkq = |k: &[u8]| packet(op::GETKQ, k, b"", b"", 0, 0);
    let mut batch = getkq(b"a");
    batch.extend(packet(op::SET, b"s", &[0; 8], &getkq(b"fake"), 0, 0));
    batch.extend(packet(op::GAT, b"b", &[0; 4], b"", 0, 0));
    batch.extend(packet(op::DELETE, b"d", b"", b"", 0, 0));
    batch.extend(packet(op::GET, b"c", b"", b"", 0, 0));
    batch.extend(packet(op::NOOP, b"", b"", b"", 0, 0));
    assert_eq!(keys(&batch, 32), ["a", "b", "c"], "a value that looks like a get is stepped over");
    assert_eq!(keys(&batch, 3), ["a", "b"]);
    assert!(keys(&getkq(b"a"), 32).is_empty(), "one packet: nothing to overlap");
    let mut cut = getkq(b"a");
    cut.extend(&getkq(b"b")[..HEADER_LEN]);
    assert_eq!(keys(&cut, 32), ["a"], "a key not all here is not looked at");
    let mut bad = getkq(b"a");
    bad.push(0x81);
    bad.extend(&getkq(b"b")[1..]);
    assert_eq!(keys(&bad, 32), ["a"], "nor anything after a header without the request magic");
}
