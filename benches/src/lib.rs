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

pub mod socketmap;
