//! The socketmap request key filter (`filter_domain`, as postfix-mta-sts-resolver derives a
//! domain from a key) on arbitrary text. Checks its documented rules: `None` for IP addresses
//! (bare, `[…]` or with a port) and for keys that begin with `.`; a domain is never empty, is
//! lowercase, begins and ends with no `.` and is no IP address itself; the borrowed fast path
//! answers exactly as the general path, and borrows only a key it gives back unchanged.
//! Seeds: `fuzz/seeds/filter_domain`.
#![no_main]

use std::borrow::Cow;
use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use mta_sts_postfix::responder::{filter_domain, filter_domain_general};

fuzz_target!(|data: &[u8]| {
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    let domain = filter_domain(key);
    let general = filter_domain_general(key);
    assert_eq!(domain.as_deref(), general.as_deref(), "{key:?}: fast and general paths differ");

    if key.trim().parse::<IpAddr>().is_ok() || key.starts_with('.') {
        assert_eq!(domain, None, "{key:?}");
    }
    // A bracketed IP address, with or without a port.
    if let Some((inner, _)) = key.strip_prefix('[').and_then(|k| k.split_once(']'))
        && inner.trim().parse::<IpAddr>().is_ok()
    {
        assert_eq!(domain, None, "{key:?}");
    }
    let Some(d) = domain else {
        return;
    };
    assert!(!d.is_empty(), "{key:?}");
    assert_eq!(d.to_lowercase(), *d, "{key:?}: not lowercase");
    assert!(!d.starts_with('.') && !d.ends_with('.'), "{key:?} gave {d:?}");
    assert!(d.parse::<IpAddr>().is_err(), "{key:?} gave the IP address {d:?}");
    if let Cow::Borrowed(b) = d {
        assert_eq!(b, key, "borrowed a changed key");
    }
});
