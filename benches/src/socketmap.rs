//! Netstrings (`<len>:<data>,`), the framing of Postfix's socketmap protocol, for the
//! `socketmap-load` generator and the `socketmap-floor` server.
//!
//! Written here rather than taken from a crate: the framing is a dozen lines, and both programs
//! must cost as little as possible per request, so the decoder works in place in the caller's
//! read buffer and never allocates.

/// Appends the netstring of `data` to `out`.
pub fn encode(out: &mut Vec<u8>, data: &[u8]) {
    let mut digits = [0u8; 20];
    let mut n = data.len();
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
    out.extend_from_slice(data);
    out.push(b',');
}

/// The netstring at the start of `buf`: `Ok(Some((data, consumed)))`, `Ok(None)` when more
/// bytes are needed, `Err` when the bytes are not a netstring.
pub fn decode(buf: &[u8]) -> Result<Option<(&[u8], usize)>, &'static str> {
    let mut len: usize = 0;
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'0'..=b'9' if i < 19 => len = len * 10 + usize::from(b - b'0'),
            b':' if i > 0 => {
                let end = i + 1 + len;
                return match buf.get(end) {
                    None => Ok(None),
                    Some(b',') => Ok(Some((&buf[i + 1..end], end + 1))),
                    Some(_) => Err("netstring does not end with a comma"),
                };
            }
            _ => return Err("not a netstring"),
        }
    }
    Ok(None)
}

/// The reply every socketmap server gives for a test-world bulk domain `key` (policy
/// `mode: enforce`, `mx: mx.<key>`), as postfix-mta-sts-resolver and `mta-sts daemon` send it.
pub fn enforce_reply(key: &str) -> String {
    format!("OK secure match=mx.{key} servername=hostname")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode() {
        for data in [&b""[..], b"postfix d0001.example", &[b'x'; 1234]] {
            let mut out = Vec::new();
            encode(&mut out, data);
            assert_eq!(out.len(), data.len().to_string().len() + data.len() + 2);
            assert_eq!(decode(&out), Ok(Some((data, out.len()))));
            for cut in 0..out.len() {
                assert_eq!(decode(&out[..cut]), Ok(None), "{cut}");
            }
        }
    }

    #[test]
    fn malformed_netstrings_are_errors() {
        assert!(decode(b":abc,").is_err());
        assert!(decode(b"3:abcX").is_err());
        assert!(decode(b"3x").is_err());
        assert!(decode(b"99999999999999999999:").is_err());
    }
}
