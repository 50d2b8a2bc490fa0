//! Netstrings (`<len>:<data>,`), the framing of Postfix's socketmap protocol, for the
//! `socketmap-load` generator and the `socketmap-floor` server: the daemon's own codec
//! ([`mta_sts_postfix::netstring`]), which decodes in place in the caller's read buffer and never
//! allocates.

use mta_sts_postfix::netstring as codec;

/// The longest netstring either program takes: Postfix's limit on a socketmap reply
/// (`socketmap_max_reply`, 100000 bytes).
const MAX_LEN: usize = 100_000;

/// Appends the netstring of `data` to `out`.
pub fn encode(out: &mut Vec<u8>, data: &[u8]) {
    codec::encode(out, data);
}

/// The netstring at the start of `buf`: `Ok(Some((data, consumed)))`, `Ok(None)` when more
/// bytes are needed, `Err` when the bytes are not a netstring.
pub fn decode(buf: &[u8]) -> Result<Option<(&[u8], usize)>, String> {
    match codec::decode(buf, MAX_LEN) {
        Ok(codec::Decoded::Complete { data, consumed }) => Ok(Some((&buf[data], consumed))),
        Ok(codec::Decoded::Incomplete) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
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
