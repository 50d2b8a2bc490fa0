//! Socketmap requests to answers: the same answers as postfix-mta-sts-resolver 1.5.
//!
//! A request is `<map name> <key>`: the map name selects the zone (`zones.<name>`, else
//! `default_zone`), the key is the next-hop destination Postfix looks up (`example.com`,
//! `[mail.example.com]:587`, or `.example.com` for a parent-domain match, which never has a
//! policy). The answer is `OK secure match=… servername=hostname` for a policy in mode `enforce`
//! (and `testing` with `strict_testing`), `NOTFOUND ` otherwise.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::netstring;
// The daemon's parts: the responder and its replies to lookups.
#[cfg(feature = "daemon")]
use {
    crate::config::{DaemonConfig, Zone},
    mta_sts_core::{
        DaneState, DeferReason, Evaluation, Mode, Policy, PolicyDomain, Precedence, Verdict,
    },
    mta_sts_tokio::{Client, Outcome},
    std::fmt::Write as _,
    std::sync::Arc,
};

/// The largest reply Postfix's socketmap client accepts (`socketmap_max_reply`, 100000 bytes).
pub const MAX_REPLY: usize = 100_000;

/// A socketmap reply, before netstring framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK <data>`: the TLS policy for Postfix.
    Ok(String),
    /// `NOTFOUND `: no MTA-STS constraint; Postfix uses its default TLS level.
    NotFound,
    /// `TEMP <reason>`: Postfix defers the delivery.
    Temp(String),
    /// `PERM <reason>`: a request this daemon cannot answer.
    Perm(String),
}

impl Reply {
    /// The reply as sent inside the netstring: the status with its space, then the text.
    fn wire_parts(&self) -> (&'static [u8], &[u8]) {
        match self {
            Self::Ok(data) => (b"OK ", data.as_bytes()),
            Self::NotFound => (b"NOTFOUND ", b""),
            Self::Temp(reason) => (b"TEMP ", reason.as_bytes()),
            Self::Perm(reason) => (b"PERM ", reason.as_bytes()),
        }
    }

    /// The reply as sent inside the netstring.
    pub fn to_wire(&self) -> Vec<u8> {
        let (status, text) = self.wire_parts();
        [status, text].concat()
    }

    /// Appends the reply, framed as a netstring, to `out` (without an intermediate copy).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (status, text) = self.wire_parts();
        netstring::encode_parts(out, status, text);
    }

    /// The metrics label: `ok`, `notfound`, `temp` or `perm`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ok(_) => "ok",
            Self::NotFound => "notfound",
            Self::Temp(_) => "temp",
            Self::Perm(_) => "perm",
        }
    }
}

/// Answers requests with one [`Client`] (one cache, one lookup per domain at a time) under one
/// configuration. Replaced as a whole when the configuration is reloaded.
///
/// It decides nothing about MTA-STS itself: the client's cache re-checks a cached policy's TXT
/// id once per `cache_grace` (the core's [`Config::recheck_after`](mta_sts_core::Config)) on the
/// client's clock, and the core's [`Evaluation`] says what a lookup without a policy means under
/// the zone's settings ([`Zone::settings`]).
#[derive(Debug)]
#[cfg(feature = "daemon")]
pub struct Responder {
    client: Client,
    config: Arc<DaemonConfig>,
}

#[cfg(feature = "daemon")]
impl Responder {
    /// A responder that answers with `client` under `config`.
    pub fn new(client: Client, config: Arc<DaemonConfig>) -> Self {
        Self { client, config }
    }

    /// The client that looks policies up.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The configuration it answers under.
    pub fn config(&self) -> &Arc<DaemonConfig> {
        &self.config
    }

    /// Answers one request (the data of one netstring): `<map name> <key>`.
    pub async fn answer(&self, request: &[u8]) -> Reply {
        let Ok(request) = std::str::from_utf8(request) else {
            return Reply::Perm("request is not UTF-8".into());
        };
        let Some((name, key)) = request.split_once(' ') else {
            return Reply::Perm("request is not \"<map name> <key>\"".into());
        };
        let zone = self.config.zone(name);
        let Some(domain) = filter_domain(key) else {
            return Reply::NotFound;
        };
        if zone.dane {
            // The DANE queries go out at the same time as the MTA-STS discovery.
            let (outcome, dane) = self.client.policy_and_dane(&domain).await;
            if let Some(dane) = dane {
                return dane_reply(zone, &domain, &outcome, &dane);
            }
            return reply(zone, &domain, &outcome);
        }
        let outcome = self.client.policy(&domain).await;
        reply(zone, &domain, &outcome)
    }
}

/// The reply when the zone decides DANE first (`dane: true`, RFC 8461 §2): the core's
/// precedence of the DANE state over the policy outcome, in Postfix's TLS security levels.
///
/// - DANE-mandatory (every MX host has usable TLSA): `OK dane-only`, so Postfix requires DANE
///   authentication of every MX host;
/// - DANE-opportunistic (some hosts have usable TLSA): `OK dane`, DANE where its records are;
/// - indeterminate (a DNS failure on a query that decides DANE): `TEMP`, never a fall-back to
///   MTA-STS;
/// - TLSA present but none usable, and no MTA-STS policy that requires TLS: `OK encrypt`
///   (RFC 7672 §2.2: TLS is mandatory, without DANE authentication);
/// - DANE absent (proven by the DNS): the MTA-STS answer, as without DANE.
#[cfg(feature = "daemon")]
pub(crate) fn dane_reply(zone: &Zone, domain: &str, outcome: &Outcome, dane: &DaneState) -> Reply {
    match dane.precedence(outcome) {
        Precedence::DaneOnly => Reply::Ok("dane-only".into()),
        Precedence::Dane => Reply::Ok("dane".into()),
        Precedence::Defer => Reply::Temp(format!(
            "DANE state of {domain} is indeterminate: {}",
            dane.reason()
        )),
        Precedence::TlsRequired => match outcome.policy() {
            // `strict_testing` answers a testing policy like an enforce one: that requires TLS
            // and authenticates the MX host too.
            Some(p) if zone.strict_testing && p.policy().mode() == Mode::Testing => {
                policy_reply(zone, domain, p.policy())
            }
            _ => Reply::Ok("encrypt".into()),
        },
        Precedence::Sts => reply(zone, domain, outcome),
        // A precedence this daemon does not know: defer rather than weaken.
        #[allow(unreachable_patterns)]
        _ => Reply::Temp(format!("DANE state of {domain}: {}", dane.reason())),
    }
}

/// The domain of a lookup key, as postfix-mta-sts-resolver's `filter_domain` derives it:
/// `[host]:port` and `[host]` give `host`, `host:port` gives `host`; lowercased, trimmed, without
/// trailing dots. `None` (answer `NOTFOUND`) for parent-domain keys (`.example.com`), IP
/// addresses and empty keys.
///
/// A key that is already a lowercase host name (the usual case) is returned as it is, without
/// a copy.
pub fn filter_domain(key: &str) -> Option<Cow<'_, str>> {
    // Lowercase letters, digits, '-' and '.', with a letter (so not an IP address), no dot at
    // either end: the steps below would give the key unchanged.
    let plain = key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if plain
        && key.bytes().any(|b| b.is_ascii_lowercase())
        && !key.starts_with('.')
        && !key.ends_with('.')
    {
        return Some(Cow::Borrowed(key));
    }
    filter_any_key(key).map(Cow::Owned)
}

/// [`filter_domain`] without its fast path, for the fuzz target that holds one to the other.
#[cfg(fuzzing)]
pub fn filter_domain_general(key: &str) -> Option<String> {
    filter_any_key(key)
}

/// [`filter_domain`] for any key.
fn filter_any_key(key: &str) -> Option<String> {
    if key.trim().parse::<IpAddr>().is_ok() {
        return None;
    }
    let host = match key.split_once(']') {
        Some((left, _)) => left.trim_start_matches('['),
        None => key.rsplit_once(':').map_or(key, |(host, _port)| host),
    };
    let domain = host.to_lowercase();
    let domain = domain.trim().trim_end_matches('.');
    if domain.is_empty() || domain.starts_with('.') || domain.parse::<IpAddr>().is_ok() {
        return None;
    }
    Some(domain.to_owned())
}

/// The reply for a lookup outcome under a zone's settings. A policy is handed to Postfix (which
/// evaluates its MX hosts itself); without one, the core decides under the zone's settings
/// whether delivery defers (a temporary DNS failure with `defer_on_dns_failure`, a failure of
/// the lookup itself) or goes on without MTA-STS.
#[cfg(feature = "daemon")]
pub(crate) fn reply(zone: &Zone, domain: &str, outcome: &Outcome) -> Reply {
    if let Some(cached) = outcome.policy() {
        return policy_reply(zone, domain, cached.policy());
    }
    let no_hosts: [&str; 0] = [];
    match Evaluation::new(outcome, &zone.settings(), no_hosts).verdict() {
        Verdict::Defer(DeferReason::DnsTemporaryFailure) => match outcome {
            Outcome::TemporaryFailure(failure) => {
                Reply::Temp(format!("MTA-STS lookup for {domain} failed: {failure}"))
            }
            other => Reply::Temp(format!("MTA-STS lookup for {domain} failed: {other}")),
        },
        Verdict::Defer(_) => Reply::Temp(format!("MTA-STS lookup for {domain} failed: {outcome}")),
        _ => Reply::NotFound,
    }
}

/// The reply for a policy, in postfix-mta-sts-resolver 1.5's format:
///
/// `OK secure match=<p1>:<p2> servername=hostname` where a pattern `*.example.com` becomes
/// `.example.com` (Postfix's "any subdomain" form), and with `tlsrpt` the Postfix 3.10
/// attributes `policy_type=sts policy_domain=<d> mx_host_pattern=<p>… { policy_string = <line> }…`
/// (the mx lines first, then version, mode, max_age and extension lines).
#[cfg(feature = "daemon")]
pub(crate) fn policy_reply(zone: &Zone, domain: &str, policy: &Policy) -> Reply {
    match policy.mode() {
        Mode::Enforce => {}
        Mode::Testing if zone.strict_testing => {}
        _ => return Reply::NotFound,
    }
    if policy.mx().is_empty() {
        // Cannot happen (the parser requires an mx for these modes); an empty `match=` would
        // let Postfix accept any certificate name, so defer rather than weaken.
        return Reply::Temp(format!("MTA-STS policy of {domain} has no usable mx"));
    }
    // One allocation for the usual reply (a few patterns, no TLSRPT attributes).
    let mut data = String::with_capacity(64 + 32 * policy.mx().len());
    data.push_str("secure match=");
    for (i, p) in policy.mx().iter().enumerate() {
        if i > 0 {
            data.push(':');
        }
        let p = p.as_str();
        data.push_str(p.strip_prefix('*').unwrap_or(p));
    }
    if zone.require_sni {
        data.push_str(" servername=hostname");
    }
    if zone.tlsrpt {
        let patterns: Vec<&str> = policy.mx().iter().map(|p| p.as_str()).collect();
        let policy_domain = PolicyDomain::parse(domain);
        let policy_domain = policy_domain.as_ref().map_or(domain, PolicyDomain::as_str);
        let _ = write!(data, " policy_type=sts policy_domain={policy_domain}");
        data.push(' ');
        push_joined(
            &mut data,
            patterns.iter().map(|p| format!("mx_host_pattern={p}")),
        );
        data.push(' ');
        let mut strings: Vec<String> = patterns
            .iter()
            .map(|p| format!("{{ policy_string = mx: {p} }}"))
            .collect();
        strings.push("{ policy_string = version: STSv1 }".into());
        strings.push(format!("{{ policy_string = mode: {} }}", policy.mode()));
        strings.push(format!(
            "{{ policy_string = max_age: {} }}",
            policy.max_age()
        ));
        for e in policy.extensions() {
            // A brace would end the attribute early and let a policy publisher inject Postfix
            // attributes: such extension lines are left out of the report strings.
            if !(e.name().contains(['{', '}']) || e.value().contains(['{', '}'])) {
                strings.push(format!("{{ policy_string = {}: {} }}", e.name(), e.value()));
            }
        }
        push_joined(&mut data, strings.into_iter());
    }
    if "OK ".len() + data.len() > MAX_REPLY {
        return Reply::Temp(format!(
            "MTA-STS policy of {domain} is too large for a socketmap reply"
        ));
    }
    Reply::Ok(data)
}

#[cfg(feature = "daemon")]
fn push_joined(out: &mut String, items: impl Iterator<Item = String>) {
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&item);
    }
}

#[cfg(all(test, feature = "daemon"))]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        Policy::parse(text).unwrap()
    }

    const ENFORCE: &str =
        "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\n";

    #[test]
    fn enforce_gives_secure_match_with_dot_for_wildcards_and_servername() {
        let r = policy_reply(&Zone::default(), "example.com", &policy(ENFORCE));
        assert_eq!(
            r,
            Reply::Ok("secure match=mail.example.com:.example.net servername=hostname".into())
        );
        assert_eq!(
            r.to_wire(),
            b"OK secure match=mail.example.com:.example.net servername=hostname"
        );
    }

    #[test]
    fn require_sni_false_leaves_out_servername() {
        let zone = Zone {
            require_sni: false,
            ..Zone::default()
        };
        let r = policy_reply(&zone, "example.com", &policy(ENFORCE));
        assert_eq!(
            r,
            Reply::Ok("secure match=mail.example.com:.example.net".into())
        );
    }

    #[test]
    fn testing_is_notfound_unless_strict_testing() {
        let p = policy("version: STSv1\nmode: testing\nmx: mx.example.org\nmax_age: 86400\n");
        assert_eq!(
            policy_reply(&Zone::default(), "example.org", &p),
            Reply::NotFound
        );
        let strict = Zone {
            strict_testing: true,
            ..Zone::default()
        };
        assert_eq!(
            policy_reply(&strict, "example.org", &p),
            Reply::Ok("secure match=mx.example.org servername=hostname".into())
        );
    }

    #[test]
    fn none_is_notfound_even_with_strict_testing() {
        let p = policy("version: STSv1\nmode: none\nmax_age: 86400\n");
        let strict = Zone {
            strict_testing: true,
            ..Zone::default()
        };
        assert_eq!(policy_reply(&strict, "example.org", &p), Reply::NotFound);
        assert_eq!(Reply::NotFound.to_wire(), b"NOTFOUND ");
    }

    #[test]
    fn tlsrpt_adds_the_postfix_3_10_attributes_as_postfix_mta_sts_resolver_1_5() {
        let zone = Zone {
            tlsrpt: true,
            ..Zone::default()
        };
        let p = policy(
            "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\nx-note: hello world\n",
        );
        let Reply::Ok(data) = policy_reply(&zone, "example.com", &p) else {
            panic!("expected OK");
        };
        assert_eq!(
            data,
            "secure match=mail.example.com:.example.net servername=hostname \
             policy_type=sts policy_domain=example.com \
             mx_host_pattern=mail.example.com mx_host_pattern=*.example.net \
             { policy_string = mx: mail.example.com } { policy_string = mx: *.example.net } \
             { policy_string = version: STSv1 } { policy_string = mode: enforce } \
             { policy_string = max_age: 604800 } { policy_string = x-note: hello world }"
        );
    }

    #[test]
    fn tlsrpt_leaves_out_extension_lines_with_braces() {
        let zone = Zone {
            tlsrpt: true,
            ..Zone::default()
        };
        let p = policy(
            "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 60\nx: } match=evil {\n",
        );
        let Reply::Ok(data) = policy_reply(&zone, "example.com", &p) else {
            panic!("expected OK");
        };
        assert!(!data.contains("evil"), "{data}");
        assert!(data.ends_with("{ policy_string = max_age: 60 }"), "{data}");
    }

    #[test]
    fn filter_domain_follows_postfix_mta_sts_resolver() {
        assert_eq!(filter_domain("Example.COM"), Some("example.com".into()));
        assert_eq!(filter_domain("example.com."), Some("example.com".into()));
        assert_eq!(filter_domain("example.com:25"), Some("example.com".into()));
        assert_eq!(
            filter_domain("[mail.example.com]:587"),
            Some("mail.example.com".into())
        );
        assert_eq!(
            filter_domain("[mail.example.com]"),
            Some("mail.example.com".into())
        );
        assert_eq!(filter_domain(".example.com"), None);
        assert_eq!(filter_domain("[192.0.2.1]:25"), None);
        assert_eq!(filter_domain("192.0.2.1"), None);
        assert_eq!(filter_domain("2001:db8::1"), None);
        assert_eq!(filter_domain("[2001:db8::1]:25"), None);
        assert_eq!(filter_domain(""), None);
        assert_eq!(filter_domain("  "), None);
    }

    #[test]
    fn plain_keys_are_borrowed_and_give_what_the_general_rules_give() {
        for key in [
            "example.com",
            "d0001.example",
            "mx-1.example.com",
            "a",
            "xn--bcher-kva.example",
            "1a",
            "0x7f.1",
            "ff.ee",
        ] {
            assert!(matches!(filter_domain(key), Some(Cow::Borrowed(k)) if k == key));
            assert_eq!(filter_any_key(key).as_deref(), Some(key), "{key}");
        }
        // Not plain: the general rules decide.
        for key in [
            "192.0.2.1",
            "1.2.3",
            "Example.com",
            "example.com.",
            ".example.com",
            "a:25",
        ] {
            assert!(
                !matches!(filter_domain(key), Some(Cow::Borrowed(_))),
                "{key}"
            );
            assert_eq!(
                filter_domain(key).map(Cow::into_owned),
                filter_any_key(key),
                "{key}"
            );
        }
    }

    #[test]
    fn replies_are_framed_without_an_intermediate_copy() {
        let mut out = Vec::new();
        Reply::Ok("secure match=mx.example.com".into()).encode(&mut out);
        Reply::NotFound.encode(&mut out);
        Reply::Perm("bad".into()).encode(&mut out);
        assert_eq!(
            out,
            b"30:OK secure match=mx.example.com,9:NOTFOUND ,8:PERM bad,".as_slice()
        );
    }

    #[test]
    fn temporary_dns_failure_is_notfound_unless_the_zone_defers() {
        let outcome = Outcome::TemporaryFailure(mta_sts_core::io::DnsFailure::ServerFailure);
        assert_eq!(
            reply(&Zone::default(), "example.com", &outcome),
            Reply::NotFound
        );
        let defer = Zone {
            defer_on_dns_failure: true,
            ..Zone::default()
        };
        assert_eq!(
            reply(&defer, "example.com", &outcome),
            Reply::Temp(
                "MTA-STS lookup for example.com failed: DNS server failure (SERVFAIL)".into()
            )
        );
    }

    #[test]
    fn a_lookup_that_failed_inside_the_client_defers_never_notfound() {
        // NOTFOUND would have Postfix deliver without MTA-STS: a bug must not open that door.
        let outcome = Outcome::Internal(mta_sts_core::LookupError::UnexpectedResult);
        for zone in [
            Zone::default(),
            Zone {
                defer_on_dns_failure: true,
                ..Zone::default()
            },
        ] {
            assert!(
                matches!(reply(&zone, "example.com", &outcome), Reply::Temp(ref m) if m.contains("internal error")),
                "{zone:?}"
            );
        }
    }

    #[test]
    fn a_policy_too_large_for_postfix_is_deferred_not_truncated() {
        let mut text = String::from("version: STSv1\nmode: enforce\nmax_age: 60\n");
        for i in 0..4000 {
            let _ = writeln!(text, "mx: mx{i}.a-rather-long-mail-host-name.example.com");
        }
        let r = policy_reply(&Zone::default(), "example.com", &policy(&text));
        assert!(
            matches!(r, Reply::Temp(ref m) if m.contains("too large")),
            "{r:?}"
        );
    }
}
