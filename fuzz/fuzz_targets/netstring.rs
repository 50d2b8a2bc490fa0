//! The socketmap framing on arbitrary bytes: the first two bytes are the length limit, the rest
//! a buffer as a peer sends it. Checks: `decode` never panics and never reaches past its buffer;
//! a netstring it finds lies within the buffer, is no longer than the limit and ends in `,`; the
//! answer for a buffer does not change with what follows the netstring, and every shorter
//! prefix of it is `Incomplete`; an error stays an error however much more arrives; and
//! `encode` (and `encode_parts` alike) frames the data so that `decode` gives it back, one
//! netstring after another. Seeds: `fuzz/seeds/netstring`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_postfix::netstring::{Decoded, decode, encode, encode_parts};

fuzz_target!(|data: &[u8]| {
    let (max_len, buf) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
        _ => (1024, data),
    };
    let result = decode(buf, max_len);
    match &result {
        Ok(Decoded::Complete { data, consumed }) => {
            let (data, consumed) = (data.clone(), *consumed);
            assert!(data.start <= data.end && data.end < consumed && consumed <= buf.len());
            assert!(data.len() <= max_len, "{} bytes over the limit {max_len}", data.len());
            assert_eq!(buf[consumed - 1], b',');
            assert_eq!(buf[data.start - 1], b':');
            assert!(buf[..data.start - 1].iter().all(u8::is_ascii_digit));
            // The same netstring alone, or followed by anything.
            assert_eq!(decode(&buf[..consumed], max_len), result);
            let mut more = buf[..consumed].to_vec();
            more.extend_from_slice(b"9999999999:x");
            assert_eq!(decode(&more, max_len), result);
            // Each shorter prefix is incomplete (a reader waits for more).
            for cut in [0, data.start, data.end, consumed - 1] {
                assert_eq!(decode(&buf[..cut], max_len), Ok(Decoded::Incomplete), "cut {cut}");
            }
        }
        Ok(Decoded::Incomplete) => {
            // Nothing in the buffer contradicts a netstring yet: bytes past it never turn that
            // into a netstring that ends inside it.
            let mut more = buf.to_vec();
            more.push(b',');
            if let Ok(Decoded::Complete { consumed, .. }) = decode(&more, max_len) {
                assert_eq!(consumed, more.len());
            }
        }
        Err(e) => {
            // An error is final: more bytes do not take it back.
            let mut more = buf.to_vec();
            more.extend_from_slice(b"0:,");
            assert_eq!(decode(&more, max_len), Err(*e));
        }
    }

    // Round trip: the input (and its halves, as head and tail) framed, twice in a row.
    let mut wire = Vec::new();
    encode(&mut wire, buf);
    let (head, tail) = buf.split_at(buf.len() / 2);
    let mut parts = Vec::new();
    encode_parts(&mut parts, head, tail);
    assert_eq!(parts, wire);
    let one = wire.len();
    encode(&mut wire, tail);
    let Ok(Decoded::Complete { data, consumed }) = decode(&wire, buf.len()) else {
        panic!("encode gave no netstring for {} bytes", buf.len());
    };
    assert_eq!((&wire[data], consumed), (buf, one));
    let Ok(Decoded::Complete { data, consumed }) = decode(&wire[one..], buf.len()) else {
        panic!("the second netstring did not decode");
    };
    assert_eq!((&wire[one..][data], one + consumed), (tail, wire.len()));
    if !buf.is_empty() {
        assert!(decode(&wire, buf.len() - 1).is_err(), "a netstring over the limit decoded");
    }
});
