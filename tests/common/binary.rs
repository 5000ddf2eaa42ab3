//! Binary-protocol requests built by hand, so that their lengths can lie.

/// A request header with the lengths given (true or not) and `opaque`.
pub fn header(opcode: u8, keylen: u16, extlen: u8, bodylen: u32, opaque: u32) -> Vec<u8> {
    let mut b = vec![0u8; 24];
    b[0] = 0x80;
    b[1] = opcode;
    b[2..4].copy_from_slice(&keylen.to_be_bytes());
    b[4] = extlen;
    b[8..12].copy_from_slice(&bodylen.to_be_bytes());
    b[12..16].copy_from_slice(&opaque.to_be_bytes());
    b
}

/// A request whose lengths tell the truth.
pub fn packet(opcode: u8, key: &[u8], extras: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    let body = (key.len() + extras.len() + value.len()) as u32;
    let mut b = header(opcode, key.len() as u16, extras.len() as u8, body, opaque);
    b.extend_from_slice(extras);
    b.extend_from_slice(key);
    b.extend_from_slice(value);
    b
}
