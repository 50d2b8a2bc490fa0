//! The daemon's YAML configuration parser on arbitrary text. Checks: nothing panics; an error is
//! one of the kinds `parse` gives (never `Empty` or `Read`, which are about files), a value error
//! names a known key, and a nesting error names the limit; an accepted configuration has every
//! value within its documented bounds, and written back as YAML (every key, quoted) it parses to
//! the same configuration. And the nesting check against the parser: where yaml_serde reads the
//! text, its value is never deeper than the check counted, so the check can never let through a
//! text that nests past the limit (and into the parser's quadratic time).
//! Seeds: `fuzz/seeds/config`.
#![no_main]

use std::fmt::Write as _;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mta_sts_postfix::config::{
    ConfigErrorKind, DaemonConfig, Listen, MAX_CONFIG_BYTES, MAX_NESTING, Zone, nesting_depth,
    parse,
};

/// The keys a value error may name: the top-level ones, and those inside a section
/// (`zones.<name>.<key>` ends in a zone key).
const TOP: &[&str] = &[
    "port", "mode", "reuse_port", "cache_grace", "shutdown_timeout", "resolvers", "https_port",
    "max_connections", "idle_timeout", "write_timeout", "metrics.port", "cache.type",
    "cache.options.cache_size", "cache.options.path", "proactive_policy_fetching.enabled",
    "proactive_policy_fetching.interval", "proactive_policy_fetching.concurrency_limit",
    "proactive_policy_fetching.grace_ratio",
];
const ZONE: &[&str] = &[
    "strict_testing", "timeout", "require_sni", "tlsrpt", "defer_on_dns_failure", "dane",
];
const KNOWN: &[&str] = &[
    "host", "port", "path", "mode", "reuse_port", "cache_grace", "shutdown_timeout", "cache",
    "proactive_policy_fetching", "default_zone", "zones", "metrics", "resolvers", "ca_file",
    "https_port", "max_connections", "idle_timeout", "write_timeout",
];

fn known_value_key(key: &str) -> bool {
    TOP.contains(&key)
        // The store backends' options (`cache.options.url`, `cache.options.sentinels[0]`, …)
        // and their error policy.
        || key.starts_with("cache.options.")
        || key == "cache.on_store_error"
        || ZONE.iter().any(|z| {
            key.strip_suffix(z).is_some_and(|section| {
                section == "default_zone." || section.starts_with("zones.") && section.ends_with('.')
            })
        })
}

/// A YAML double-quoted scalar of `s` (JSON's escapes are YAML's).
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{85}' || c == '\u{2028}' || c == '\u{2029}' || c == '\u{feff}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn secs(d: Duration) -> String {
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

fn zone(z: &Zone) -> String {
    format!(
        "{{strict_testing: {}, timeout: {}, require_sni: {}, tlsrpt: {}, defer_on_dns_failure: {}, dane: {}}}",
        z.strict_testing,
        secs(z.timeout),
        z.require_sni,
        z.tlsrpt,
        z.defer_on_dns_failure,
        z.dane
    )
}

/// Every setting of `c` as a configuration file.
fn render(c: &DaemonConfig) -> String {
    let mut y = String::new();
    match &c.listen {
        Listen::Tcp { host, port, reuse_port } => {
            let _ = writeln!(y, "host: {}\nport: {port}\nreuse_port: {reuse_port}", quoted(host));
        }
        Listen::Unix { path, mode } => {
            let _ = writeln!(y, "path: {}", quoted(path.to_str().unwrap()));
            if let Some(m) = mode {
                let _ = writeln!(y, "mode: 0o{m:o}");
            }
        }
    }
    let _ = writeln!(y, "cache_grace: {}", secs(c.cache_grace));
    let _ = writeln!(y, "shutdown_timeout: {}", secs(c.shutdown_timeout));
    match &c.cache.file {
        None => {
            let _ = writeln!(y, "cache: {{type: internal, options: {{cache_size: {}}}}}", c.cache.size);
        }
        Some(f) => {
            let _ = writeln!(
                y,
                "cache: {{type: file, options: {{cache_size: {}, path: {}}}}}",
                c.cache.size,
                quoted(f.to_str().unwrap())
            );
        }
    }
    let p = &c.proactive;
    let _ = writeln!(
        y,
        "proactive_policy_fetching: {{enabled: {}, interval: {}, concurrency_limit: {}, grace_ratio: {:?}}}",
        p.enabled,
        p.interval.as_secs(),
        p.concurrency_limit,
        p.grace_ratio
    );
    let _ = writeln!(y, "default_zone: {}", zone(&c.default_zone));
    // Explicit keys: a simple key is at most 1024 characters long.
    let _ = writeln!(y, "zones:");
    for (name, z) in &c.zones {
        let _ = writeln!(y, "  ? {}\n  : {}", quoted(name), zone(z));
    }
    if c.zones.is_empty() {
        y.push_str("  {}\n");
    }
    if let Some((host, port)) = &c.metrics {
        let _ = writeln!(y, "metrics: {{host: {}, port: {port}}}", quoted(host));
    }
    let resolvers: Vec<String> = c.resolvers.iter().map(|r| quoted(&r.to_string())).collect();
    let _ = writeln!(y, "resolvers: [{}]", resolvers.join(", "));
    if let Some(ca) = &c.ca_file {
        let _ = writeln!(y, "ca_file: {}", quoted(ca.to_str().unwrap()));
    }
    if let Some(port) = c.https_port {
        let _ = writeln!(y, "https_port: {port}");
    }
    let _ = writeln!(y, "max_connections: {}", c.max_connections);
    let _ = writeln!(y, "idle_timeout: {}", secs(c.idle_timeout));
    let _ = writeln!(y, "write_timeout: {}", secs(c.write_timeout));
    y
}

/// Durations through decimal text and f64 may differ in their last nanoseconds.
fn near(a: Duration, b: Duration) -> bool {
    let (a, b) = (a.as_secs_f64(), b.as_secs_f64());
    (a - b).abs() <= 2e-9 + a.abs() * 1e-12
}

fn same_after_round_trip(a: &DaemonConfig, mut b: DaemonConfig) {
    for (x, y) in [
        (a.cache_grace, &mut b.cache_grace),
        (a.shutdown_timeout, &mut b.shutdown_timeout),
        (a.idle_timeout, &mut b.idle_timeout),
        (a.write_timeout, &mut b.write_timeout),
        (a.default_zone.timeout, &mut b.default_zone.timeout),
    ] {
        assert!(near(x, *y), "{x:?} came back as {y:?}");
        *y = x;
    }
    for (name, z) in &mut b.zones {
        let x = a.zones[name].timeout;
        assert!(near(x, z.timeout), "{x:?} came back as {:?}", z.timeout);
        z.timeout = x;
    }
    // What was warned about (unknown keys, ignored cache options) is not rendered back.
    b.unknown_keys.clone_from(&a.unknown_keys);
    b.cache.warnings.clone_from(&a.cache.warnings);
    assert_eq!(*a, b);
}

fn check_bounds(c: &DaemonConfig) {
    for z in std::iter::once(&c.default_zone).chain(c.zones.values()) {
        assert!(!z.timeout.is_zero() && z.timeout <= Duration::from_secs(86_400));
    }
    assert!(c.cache.size >= 1);
    assert!(c.cache.file.as_ref().is_none_or(|f| !f.as_os_str().is_empty()));
    let p = &c.proactive;
    assert!(p.interval >= Duration::from_secs(1));
    assert!(p.interval <= Duration::from_secs(u64::from(mta_sts_core::MAX_AGE_LIMIT)));
    assert!(p.concurrency_limit >= 1);
    assert!(p.grace_ratio.is_finite() && p.grace_ratio > 0.0);
    assert!(c.max_connections >= 1);
    assert!(!c.write_timeout.is_zero());
    for d in [c.cache_grace, c.shutdown_timeout, c.idle_timeout, c.write_timeout] {
        assert!(d < Duration::from_secs(1_000_000_000_000));
    }
    match &c.listen {
        Listen::Tcp { host, .. } => assert!(!host.is_empty()),
        Listen::Unix { path, mode } => {
            assert!(!path.as_os_str().is_empty());
            assert!(mode.is_none_or(|m| m <= 0o7777));
        }
    }
    if let Some((host, _)) = &c.metrics {
        assert!(!host.is_empty());
    }
    for key in &c.unknown_keys {
        assert!(!KNOWN.contains(&key.as_str()), "{key} is known");
    }
}

fn value_depth(v: &yaml_serde::Value) -> usize {
    use yaml_serde::Value;
    match v {
        Value::Sequence(s) => 1 + s.iter().map(value_depth).max().unwrap_or(0),
        Value::Mapping(m) => {
            1 + m.iter().map(|(k, v)| value_depth(k).max(value_depth(v))).max().unwrap_or(0)
        }
        Value::Tagged(t) => value_depth(&t.value),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let counted = nesting_depth(text);
    match parse(text) {
        Ok(c) => {
            assert!(counted <= MAX_NESTING);
            check_bounds(&c);
            // `render` writes the in-process caches (internal, file) only: a store backend
            // (sqlite, redis, postgres) has its own tests of what it reads.
            if c.cache.backend.is_store() {
                return;
            }
            let again = render(&c);
            let back = parse(&again).unwrap_or_else(|e| panic!("{again}\nwas refused: {e}"));
            assert!(back.unknown_keys.is_empty(), "{again}");
            same_after_round_trip(&c, back);
        }
        Err(e) => {
            assert!(e.file().is_none());
            match e.kind() {
                ConfigErrorKind::Syntax(message) => assert!(!message.is_empty()),
                ConfigErrorKind::Value { key, message } => {
                    assert!(known_value_key(key), "{key}: {message}");
                    assert!(!message.is_empty());
                }
                ConfigErrorKind::TooDeep { limit, line } => {
                    assert_eq!(*limit, MAX_NESTING);
                    assert!(counted > MAX_NESTING && *line >= 1);
                }
                ConfigErrorKind::TooLarge { limit } => {
                    assert_eq!(*limit, MAX_CONFIG_BYTES);
                    assert!(text.len() > MAX_CONFIG_BYTES);
                }
                other => panic!("parse gave {other:?}"),
            }
        }
    }

    // The parser's own depth never exceeds the count (aliases repeat nodes: left out). Only
    // texts the count keeps shallow are parsed: a deeper one could take the parser long.
    if counted <= 100 && !text.contains('*') {
        match yaml_serde::from_str::<yaml_serde::Value>(text) {
            Ok(v) => {
                let depth = value_depth(&v);
                assert!(depth <= counted, "the parser nests {depth} deep, the check counted {counted}");
            }
            Err(e) => assert!(
                !e.to_string().contains("recursion limit exceeded"),
                "the check counted {counted}, the parser went past its limit of 128: {e}"
            ),
        }
    }
});
