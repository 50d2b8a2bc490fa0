//! Shared inputs for the criterion benchmarks in `benches/`.

/// A typical policy: the RFC 8461 §3.2 shape with one MX (4 lines), CRLF.
pub const POLICY_TYPICAL: &str =
    "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n";

/// A policy with 20 `mx` lines, half of them wildcards.
pub fn policy_20_mx() -> String {
    let mut s = String::from("version: STSv1\r\nmode: enforce\r\n");
    for i in 0..20 {
        if i % 2 == 0 {
            s.push_str(&format!("mx: mx{i}.mail.example.com\r\n"));
        } else {
            s.push_str(&format!("mx: *.pool{i}.example.net\r\n"));
        }
    }
    s.push_str("max_age: 604800\r\n");
    s
}

/// A typical `_mta-sts` TXT record.
pub const TXT_RECORD: &str = "v=STSv1; id=20160831085700Z;";

/// The floor for parsing: split the body into `key: value` pairs with no validation at all.
/// Benchmarks report the real parser as a ratio of this.
pub fn naive_split(body: &str) -> usize {
    body.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| k.len() + v.trim().len())
        .sum()
}

/// One complete lookup of `domain` through `cache` with canned I/O results (the TXT record
/// `txt`, then the policy `body` with status 200): begin, TXT, fetch, apply. `None` when another
/// lookup of the domain is under way.
pub fn canned_lookup(
    cache: &mut mta_sts_core::PolicyCache,
    domain: &str,
    now: mta_sts_core::UnixTime,
    txt: &[u8],
    body: &str,
) -> Option<mta_sts_core::Outcome> {
    use mta_sts_core::io::{FetchResponse, Io, TxtAnswer};
    use mta_sts_core::{Begin, IoResult, Step};
    match cache.begin(domain, now) {
        Begin::Ready(o) => Some(o),
        Begin::InProgress(_) => None,
        Begin::Started(mut lookup) => loop {
            let step = lookup.poll();
            if let Step::Done(resolution) = step {
                break Some(cache.apply(resolution, now));
            }
            let result = match step {
                Step::Io(Io::Txt(_)) => IoResult::Txt(Ok(TxtAnswer::Records(vec![txt.to_vec()]))),
                _ => IoResult::Fetch(Ok(FetchResponse::new(200, Some("text/plain"), body))),
            };
            // The canned results always fit the requests made.
            if lookup.handle(result, now).is_err() {
                return None;
            }
        },
    }
}

pub mod socketmap;
