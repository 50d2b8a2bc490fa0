//! Netstrings (`<length>:<data>,`), the framing of Postfix's socketmap protocol: a sans-IO decoder
//! over a caller's buffer, and the encoder.
//!
//! Every byte comes from the network: the decoder never panics, never allocates, and refuses a
//! length above the caller's limit as soon as its digits exceed it (so a peer cannot make the
//! daemon buffer more than `max_len` plus a few bytes before the error).

use std::fmt;
use std::ops::Range;

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A complete netstring: its data is `buf[data]`, and it ends `consumed` bytes in.
    Complete {
        /// Where the data is in the buffer.
        data: Range<usize>,
        /// How many bytes the netstring took, terminator included.
        consumed: usize,
    },
    /// Not enough bytes yet: read more and call again with the same start.
    Incomplete,
}

/// Why a buffer does not start with a netstring. The stream cannot be resynchronised after one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetstringError {
    /// No digit before the `:`.
    NoLength,
    /// A byte other than a digit or `:` in the length.
    BadLength,
    /// The length is above the limit.
    TooLong,
    /// The byte after the data is not `,`.
    BadTerminator,
}

impl std::error::Error for NetstringError {}

impl fmt::Display for NetstringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoLength => "netstring without a length",
            Self::BadLength => "netstring length is not a number",
            Self::TooLong => "netstring longer than the request limit",
            Self::BadTerminator => "netstring does not end with a comma",
        })
    }
}

/// Decodes the netstring at the start of `buf`, whose data may be at most `max_len` bytes.
pub fn decode(buf: &[u8], max_len: usize) -> Result<Decoded, NetstringError> {
    let mut len: usize = 0;
    let mut digits = 0usize;
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                len = len
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(usize::from(b - b'0')))
                    .ok_or(NetstringError::TooLong)?;
                if len > max_len {
                    return Err(NetstringError::TooLong);
                }
                digits += 1;
            }
            b':' if digits == 0 => return Err(NetstringError::NoLength),
            b':' => {
                let start = i + 1;
                let end = start + len; // len <= max_len: no overflow for any sane limit
                return match buf.get(end) {
                    None => Ok(Decoded::Incomplete),
                    Some(b',') => Ok(Decoded::Complete {
                        data: start..end,
                        consumed: end + 1,
                    }),
                    Some(_) => Err(NetstringError::BadTerminator),
                };
            }
            _ => return Err(NetstringError::BadLength),
        }
    }
    Ok(Decoded::Incomplete)
}

/// Appends `data` as a netstring to `out`.
pub fn encode(out: &mut Vec<u8>, data: &[u8]) {
    encode_parts(out, data, b"");
}

/// Appends the netstring of `head` followed by `tail` to `out`, without allocating.
pub fn encode_parts(out: &mut Vec<u8>, head: &[u8], tail: &[u8]) {
    // The length's decimal digits, written backwards from the end of a buffer long enough for
    // any usize (cheaper than the formatting machinery on every reply).
    let mut digits = [0u8; 20];
    let mut n = head.len() + tail.len();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.push(b':');
    out.extend_from_slice(head);
    out.extend_from_slice(tail);
    out.push(b',');
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;

    fn complete(buf: &[u8]) -> (&[u8], usize) {
        match decode(buf, MAX) {
            Ok(Decoded::Complete { data, consumed }) => (&buf[data], consumed),
            other => panic!("expected a complete netstring in {buf:?}, got {other:?}"),
        }
    }

    #[test]
    fn decodes_a_request_and_says_how_much_it_took() {
        let (data, consumed) = complete(b"19:postfix example.com,");
        assert_eq!(data, b"postfix example.com");
        assert_eq!(consumed, 23);
    }

    #[test]
    fn empty_data_is_a_netstring() {
        assert_eq!(complete(b"0:,"), (&b""[..], 3));
    }

    #[test]
    fn leading_zeros_in_the_length_are_accepted() {
        assert_eq!(complete(b"003:abc,"), (&b"abc"[..], 8));
    }

    #[test]
    fn every_split_point_is_incomplete_until_the_comma() {
        let wire = b"19:postfix example.com,";
        for cut in 0..wire.len() {
            assert_eq!(
                decode(&wire[..cut], MAX),
                Ok(Decoded::Incomplete),
                "cut at {cut}"
            );
        }
        assert_eq!(complete(wire).1, wire.len());
    }

    #[test]
    fn pipelined_netstrings_decode_one_after_the_other() {
        let wire = b"5:a b.c,8:x mail.d,0:,";
        let mut at = 0;
        let mut got = Vec::new();
        while at < wire.len() {
            let (data, consumed) = complete(&wire[at..]);
            got.push(data.to_vec());
            at += consumed;
        }
        assert_eq!(got, [b"a b.c".to_vec(), b"x mail.d".to_vec(), Vec::new()]);
    }

    #[test]
    fn a_length_above_the_limit_is_refused_before_the_data_arrives() {
        assert_eq!(decode(b"1025:", MAX), Err(NetstringError::TooLong));
        // Already on the digits, without waiting for the colon.
        assert_eq!(decode(b"10000", MAX), Err(NetstringError::TooLong));
        assert_eq!(decode(b"1024:", MAX), Ok(Decoded::Incomplete));
    }

    #[test]
    fn a_huge_length_does_not_overflow() {
        let digits = b"99999999999999999999999999999999999999999:";
        assert_eq!(decode(digits, usize::MAX), Err(NetstringError::TooLong));
    }

    #[test]
    fn malformed_netstrings_are_errors() {
        assert_eq!(decode(b":abc,", MAX), Err(NetstringError::NoLength));
        assert_eq!(decode(b"3x:abc,", MAX), Err(NetstringError::BadLength));
        assert_eq!(decode(b"-3:abc,", MAX), Err(NetstringError::BadLength));
        assert_eq!(decode(b" 3:abc,", MAX), Err(NetstringError::BadLength));
        assert_eq!(decode(b"3:abcd", MAX), Err(NetstringError::BadTerminator));
        assert_eq!(decode(b"2:abc,", MAX), Err(NetstringError::BadTerminator));
        assert_eq!(
            decode(b"GET / HTTP/1.1\r\n", MAX),
            Err(NetstringError::BadLength)
        );
    }

    #[test]
    fn encode_round_trips() {
        let mut out = Vec::new();
        encode(&mut out, b"NOTFOUND ");
        encode(&mut out, b"");
        assert_eq!(out, b"9:NOTFOUND ,0:,");
        let (data, consumed) = complete(&out);
        assert_eq!((data, consumed), (&b"NOTFOUND "[..], 12));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small exhaustive sweep over short inputs from an alphabet of the interesting bytes.
        let alphabet = [b'0', b'1', b'9', b':', b',', b'a', 0xff];
        let mut buf = Vec::new();
        for n in 0..=5u32 {
            for code in 0..alphabet.len().pow(n) {
                buf.clear();
                let mut c = code;
                for _ in 0..n {
                    buf.push(alphabet[c % alphabet.len()]);
                    c /= alphabet.len();
                }
                if let Ok(Decoded::Complete { data, consumed }) = decode(&buf, 3) {
                    assert!(data.end < consumed && consumed <= buf.len());
                }
            }
        }
    }
}
