//! The `_smtp._tls` record parser (RFC 8460 §3) on arbitrary bytes, both profiles, and TXT
//! discovery on the input split into records at 0xff bytes: no panic; an accepted record has at
//! least one and at most `MAX_URIS` URIs; what the strict profile accepts, the default profile
//! accepts with the same URIs and extensions; the canonical text (if within the length limit)
//! parses back, strictly, to the same URIs and extensions; error columns lie within the record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_core::Profile;
use mta_sts_core::tlsrpt::{MAX_RECORD_LEN, MAX_URIS, ReportUri, TlsRptRecord};

fuzz_target!(|data: &[u8]| {
    let default = TlsRptRecord::parse_bytes(data, Profile::Default);
    let strict = TlsRptRecord::parse_bytes(data, Profile::Strict);
    let chars = String::from_utf8_lossy(data).chars().count();
    for r in [&default, &strict] {
        match r {
            Ok(r) => {
                assert!(!r.rua().is_empty() && r.rua().len() <= MAX_URIS);
                for uri in r.rua() {
                    match uri {
                        ReportUri::Mailto(a) => assert!(a.contains('@')),
                        ReportUri::Https {
                            url,
                            host,
                            port,
                            path,
                        } => {
                            assert!(url.starts_with("https://") && url.is_ascii());
                            assert!(!host.is_empty() && *port > 0 && path.starts_with('/'));
                        }
                    }
                }
                // Encoding raw non-ASCII can make the canonical text longer than the limit.
                let text = r.to_string();
                if text.len() <= MAX_RECORD_LEN {
                    let again =
                        TlsRptRecord::parse_strict(&text).expect("canonical record is valid");
                    assert_eq!(again.rua(), r.rua());
                    assert_eq!(again.extensions(), r.extensions());
                }
                for w in r.warnings() {
                    assert!(w.column() >= 1 && w.column() <= chars + 1);
                }
            }
            Err(e) => assert!(e.column().is_none_or(|c| c >= 1 && c <= chars + 1)),
        }
    }
    if let Ok(s) = &strict {
        let d = default.as_ref().expect("strict Ok implies default Ok");
        assert_eq!(d.rua(), s.rua());
        assert_eq!(d.extensions(), s.extensions());
    }
    let records: Vec<&[u8]> = data.split(|&b| b == 0xff).collect();
    for profile in [Profile::Default, Profile::Strict] {
        if let Ok(r) = TlsRptRecord::discover_with(records.iter().copied(), profile) {
            assert!(!r.rua().is_empty());
        }
    }
});
