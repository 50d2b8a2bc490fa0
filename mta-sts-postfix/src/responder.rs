//! Socketmap requests to answers: the same answers as postfix-mta-sts-resolver 1.5.
//!
//! A request is `<map name> <key>`: the map name selects the zone (`zones.<name>`, else
//! `default_zone`), the key is the next-hop destination Postfix looks up (`example.com`,
//! `[mail.example.com]:587`, or `.example.com` for a parent-domain match, which never has a
//! policy). The answer is `OK secure match=… servername=hostname` for a policy in mode `enforce`
//! (and `testing` with `strict_testing`), `NOTFOUND ` otherwise.
//!
//! # TLSRPT attributes (`tlsrpt: true`, Postfix 3.10)
//!
//! Postfix 3.10 reads TLSRPT attributes after the security level of an `smtp_tls_policy_maps`
//! answer and hands them to its TLSRPT client, which reports each TLS handshake under the policy
//! they describe (RFC 8460 §4.3). What Postfix accepts, as its sources say (tags `v3.10.0` to
//! `v3.10.13` of the Postfix source; nothing relevant changed up to 3.12):
//!
//! - **Names and values** (`src/smtp/smtp_tls_policy.c`, `tls_policy_lookup_one`):
//!   `policy_type` (once; `valid_tlsrpt_policy_type()`), `policy_domain` (once;
//!   `valid_hostname(val, DO_GRIPE)`), `policy_string` and `mx_host_pattern` (any number),
//!   `policy_failure` (once; `valid_tlsrpt_policy_failure()`), `policy_ttl` (deprecated,
//!   TLSRPT_README: "The time value is not used"). Any other name, a repeated one-only name or an
//!   unexpected value is "invalid attribute name" or "has an unexpected value", and the whole
//!   policy becomes `TLS_LEV_INVALID`: Postfix defers the mail. Without `policy_type` the others
//!   are an error too ("built-in policy has unexpected attribute").
//! - **Policy types** (`src/tls/tlsrpt_wrapper.c`, `tlsrpt_policy_type_mapping`): `"sts"` and
//!   `"no-policy-found"` only. `tlsa` is *not* accepted from a plug-in: an answer carrying
//!   `policy_type=tlsa` would make Postfix defer every message to the domain.
//! - **Policy failures** (`tlsrpt_policy_failure_mapping`): `sts-policy-fetch-error`,
//!   `sts-policy-invalid`, `sts-webpki-invalid`, `validation-failure`. Postfix uses the value
//!   only in `src/tls/tls_verify.c`, `tls_log_verify_error`: "If an external policy flagged an
//!   error, report that instead" of the certificate error, and only once verification has
//!   already failed; `src/smtp/smtp_tlsrpt.c` still has "TODO(wietse) propagate
//!   tls->policy_failure to force policy enforcement to fail". So it forces nothing: it would
//!   only relabel a real certificate failure (expired, wrong name) as a fetch problem.
//! - **Levels**: attributes after a level below `may` are ignored with a warning ("ignoring
//!   attribute ... with TLS disabled"). At the DANE levels (`dane`, `dane-only`) Postfix
//!   reports the TLSA records it looked up itself (`smtp_tlsrpt_set_tls_policy`:
//!   `if (TLS_DANE_BASED(tls->level)) ... smtp_tlsrpt_set_dane_policy` with
//!   `TLSRPT_POLICY_TLSA`, or no-policy-found without TLSA); a plug-in's attributes are used
//!   only at the other levels (`else if (tls->ext_policy_type) smtp_tlsrpt_set_ext_policy`),
//!   and without them Postfix reports `no-policy-found` (`else smtp_tlsrpt_set_no_policy`).
//! - **`sts` needs both lists**: Postfix 3.10.0 to 3.10.5 dereference
//!   `tls->ext_policy_strings->argv` and `tls->ext_mx_host_patterns->argv` unchecked
//!   (`smtp_tlsrpt_set_ext_policy`; HISTORY of 3.10.6: "SMTP client null pointer crash when an
//!   STS policy plugin sends no policy_string or no mx_pattern attributes").
//! - **Syntax**: tokens are split at `", \t\r\n"` with `{}` grouping (`mystrtokq`); `{ name =
//!   value }` protects spaces (`extpar` with `EXTPAR_FLAG_STRIP | EXTPAR_FLAG_NORMAL_WS`). A brace
//!   inside a value would end the group early and inject attributes.
//!
//! What this daemon answers in a `tlsrpt: true` zone, then:
//!
//! | answer | TLSRPT attributes |
//! |---|---|
//! | `OK secure match=…` (MTA-STS policy, also a cached one after a failed refresh) | `policy_type=sts policy_domain=<d> mx_host_pattern=<p>… { policy_string = <line> }…`, as postfix-mta-sts-resolver 1.5 and postfix-tlspol send them; never `policy_failure` |
//! | `OK encrypt` (TLSA records, none usable; no `enforce` policy) | `policy_type=no-policy-found`: the level is not DANE-based, so Postfix uses it |
//! | `OK dane-only`, `OK dane` | none: Postfix reports `tlsa` from its own TLSA lookup; `tlsa` is refused from a plug-in (postfix-tlspol sends none either) |
//! | `NOTFOUND ` (no policy, `testing`, `none`, fetch failure without a cached policy) | none possible: Postfix keeps its own `smtp_tls_security_level` and reports `no-policy-found` itself (or `tlsa` when that level is `dane`). An `OK <level> policy_type=no-policy-found` would replace that level, which this daemon does not know. postfix-tlspol and postfix-mta-sts-resolver answer `NOTFOUND` too |
//! | `TEMP `, `PERM ` | none possible: Postfix defers before it connects, so there is no session to report |
//!
//! A `testing` policy is not answered with `policy_type=sts`: Postfix has no level that reports
//! a verification failure without enforcing it (`may` checks no names and would report success
//! for any certificate; it would also replace the default level). A fetch failure is not
//! answered with `policy_failure` (see above); the library's embedders report
//! `sts-policy-fetch-error` and friends themselves. When the attributes would make the answer
//! longer than [`MAX_REPLY`], the answer goes without them (Postfix then reports
//! `no-policy-found`) rather than being deferred.

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
    precedence_reply(zone, domain, outcome, dane.precedence(outcome), || {
        dane.reason()
    })
}

/// [`dane_reply`] for the precedence the DANE state gave, with `reason` the state's reason (for
/// a `TEMP`). DANE answers carry no TLSRPT attributes (Postfix reports its own TLSA lookup),
/// `OK encrypt` carries `policy_type=no-policy-found` with `tlsrpt` (module docs).
#[cfg(feature = "daemon")]
fn precedence_reply(
    zone: &Zone,
    domain: &str,
    outcome: &Outcome,
    precedence: Precedence,
    reason: impl FnOnce() -> String,
) -> Reply {
    match precedence {
        Precedence::DaneOnly => Reply::Ok("dane-only".into()),
        Precedence::Dane => Reply::Ok("dane".into()),
        Precedence::Defer => Reply::Temp(format!(
            "DANE state of {domain} is indeterminate: {}",
            reason()
        )),
        Precedence::TlsRequired => match outcome.policy() {
            // `strict_testing` answers a testing policy like an enforce one: that requires TLS
            // and authenticates the MX host too.
            Some(p) if zone.strict_testing && p.policy().mode() == Mode::Testing => {
                policy_reply(zone, domain, p.policy())
            }
            _ => encrypt_reply(zone),
        },
        Precedence::Sts => reply(zone, domain, outcome),
        // A precedence this daemon does not know: defer rather than weaken.
        #[allow(unreachable_patterns)]
        _ => Reply::Temp(format!("DANE state of {domain}: {}", reason())),
    }
}

/// `OK encrypt` (TLS required, no authentication: RFC 7672 §2.2), with `tlsrpt` the one
/// attribute Postfix uses for it: `policy_type=no-policy-found` (module docs).
#[cfg(feature = "daemon")]
fn encrypt_reply(zone: &Zone) -> Reply {
    Reply::Ok(if zone.tlsrpt {
        "encrypt policy_type=no-policy-found".into()
    } else {
        "encrypt".into()
    })
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
/// (the mx lines first, then version, mode, max_age and extension lines). An answer that the
/// attributes would make longer than [`MAX_REPLY`] goes without them; one too long even without
/// them is `TEMP`.
#[cfg(feature = "daemon")]
pub(crate) fn policy_reply(zone: &Zone, domain: &str, policy: &Policy) -> Reply {
    match policy.mode() {
        Mode::Enforce => {}
        Mode::Testing if zone.strict_testing => {}
        _ => return Reply::NotFound,
    }
    if policy.mx().is_empty() {
        // Cannot happen (the parser requires an mx for these modes); an empty `match=` would
        // let Postfix accept any certificate name, so defer rather than weaken. (It also keeps
        // `policy_type=sts` from going out without an `mx_host_pattern`, which crashes the
        // SMTP client of Postfix 3.10.0 to 3.10.5.)
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
        let bare = data.len();
        push_sts_attributes(&mut data, domain, policy);
        if fits(&data) {
            return Reply::Ok(data);
        }
        // The report's description must not cost the delivery: the same level and names
        // without it (Postfix then reports no-policy-found).
        data.truncate(bare);
    }
    if !fits(&data) {
        return Reply::Temp(format!(
            "MTA-STS policy of {domain} is too large for a socketmap reply"
        ));
    }
    Reply::Ok(data)
}

/// Whether `OK <data>` fits in a socketmap reply.
#[cfg(feature = "daemon")]
fn fits(data: &str) -> bool {
    "OK ".len() + data.len() <= MAX_REPLY
}

/// Appends ` policy_type=sts policy_domain=<d> mx_host_pattern=<p>… { policy_string = <line> }…`
/// for `policy` (of at least one mx, so both lists are never empty: module docs).
///
/// Safe from injection: the domain is normalised (lowercase A-labels, what Postfix's
/// `valid_hostname` accepts) and the patterns are host names, so neither holds a separator or
/// a brace; an extension line holding a brace is left out (its name is `[A-Za-z0-9_.-]`, its
/// value has no control character).
#[cfg(feature = "daemon")]
fn push_sts_attributes(data: &mut String, domain: &str, policy: &Policy) {
    let policy_domain = PolicyDomain::parse(domain);
    let policy_domain = policy_domain.as_ref().map_or(domain, PolicyDomain::as_str);
    let _ = write!(data, " policy_type=sts policy_domain={policy_domain}");
    for p in policy.mx() {
        let _ = write!(data, " mx_host_pattern={}", p.as_str());
    }
    for p in policy.mx() {
        let _ = write!(data, " {{ policy_string = mx: {} }}", p.as_str());
    }
    data.push_str(" { policy_string = version: STSv1 }");
    let _ = write!(data, " {{ policy_string = mode: {} }}", policy.mode());
    let _ = write!(data, " {{ policy_string = max_age: {} }}", policy.max_age());
    for e in policy.extensions() {
        // A brace would end the attribute early and let a policy publisher inject Postfix
        // attributes: such extension lines are left out of the report strings.
        if !(e.name().contains(['{', '}']) || e.value().contains(['{', '}'])) {
            let _ = write!(data, " {{ policy_string = {}: {} }}", e.name(), e.value());
        }
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

/// T17: every answer of a `tlsrpt: true` zone, held to a model of how Postfix 3.10 reads an
/// `smtp_tls_policy_maps` answer (module docs; `src/smtp/smtp_tls_policy.c`,
/// `tls_policy_lookup_one`, and `src/smtp/smtp_tlsrpt.c`, `smtp_tlsrpt_set_tls_policy`).
#[cfg(all(test, feature = "daemon"))]
mod t17 {
    use super::*;
    use mta_sts_core::io::FetchFailure;
    use mta_sts_core::{
        CacheReason, CachedPolicy, Config, FetchProblem, NoPolicyReason, PolicyCache, Snapshot,
        SnapshotEntry, TxtProblem, UnixTime,
    };

    /// What Postfix 3.10 makes of an `OK` answer.
    #[derive(Debug, PartialEq, Eq)]
    struct Parsed {
        level: &'static str,
        /// The policy type Postfix's TLSRPT client reports the sessions under:
        /// `sts`, `no-policy-found`, or `tlsa (Postfix's own lookup)`.
        reported: &'static str,
        policy_domain: Option<String>,
        mx_host_patterns: Vec<String>,
        policy_strings: Vec<String>,
    }

    /// Postfix's levels (`src/tls/tls_level.c`), lowest first.
    const LEVELS: [&str; 8] = [
        "none",
        "may",
        "encrypt",
        "fingerprint",
        "dane",
        "dane-only",
        "verify",
        "secure",
    ];

    /// `mystrtokq(&policy, CHARS_COMMA_SP, CHARS_BRACE)`: tokens split at `", \t\r\n"` outside
    /// `{}`.
    fn tokens(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let (mut depth, mut start) = (0usize, None);
        for (i, c) in s.char_indices() {
            match c {
                '{' => {
                    depth += 1;
                    start.get_or_insert(i);
                }
                '}' => {
                    depth = depth.saturating_sub(1);
                    start.get_or_insert(i);
                }
                ',' | ' ' | '\t' | '\r' | '\n' if depth == 0 => {
                    if let Some(b) = start.take() {
                        out.push(&s[b..i]);
                    }
                }
                _ => {
                    start.get_or_insert(i);
                }
            }
        }
        if let Some(b) = start {
            out.push(&s[b..]);
        }
        out
    }

    /// Postfix's `valid_hostname(name, DO_GRIPE)` (`src/util/valid_hostname.c`).
    fn valid_hostname(name: &str) -> bool {
        let labels_ok = name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        labels_ok && name.len() <= 255 && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    }

    /// `tls_policy_lookup_one` for the data of an `OK` answer, then which policy type
    /// `smtp_tlsrpt_set_tls_policy` reports. `Err` is what Postfix logs before it marks the
    /// policy invalid (and defers), or ignores attributes.
    fn postfix_3_10(data: &str) -> Result<Parsed, String> {
        let toks = tokens(data);
        let (&level, attrs) = toks.split_first().ok_or("invalid empty policy")?;
        let rank = LEVELS
            .iter()
            .position(|l| *l == level)
            .ok_or(format!("invalid security level \"{level}\""))?;
        if rank < 1 && !attrs.is_empty() {
            return Err("ignoring attribute with TLS disabled".into());
        }
        let mut p = Parsed {
            level: LEVELS[rank],
            reported: "no-policy-found",
            policy_domain: None,
            mx_host_patterns: Vec::new(),
            policy_strings: Vec::new(),
        };
        let (mut policy_type, mut failure, mut matched) = (None, None, false);
        for tok in attrs {
            let tok = if let Some(inner) = tok.strip_prefix('{') {
                let inner = inner
                    .strip_suffix('}')
                    .ok_or(format!("missing '}}' in \"{tok}\""))?;
                if inner.contains(['{', '}']) {
                    return Err(format!("syntax error after '}}' in \"{tok}\""));
                }
                inner.trim()
            } else {
                tok
            };
            let (name, value) = tok
                .split_once('=')
                .ok_or(format!("missing '=' after attribute name: {tok}"))?;
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(format!("missing attribute name: {tok}"));
            }
            match name {
                "servername" => {
                    if !valid_hostname(value) {
                        return Err(format!("servername={value} is an invalid hostname"));
                    }
                }
                "match" => {
                    if !["fingerprint", "verify", "secure"].contains(&level) || value.is_empty() {
                        return Err(format!("match invalid at level {level}"));
                    }
                    matched = true;
                }
                "policy_type" => {
                    if policy_type.is_some() {
                        return Err("policy_type is specified multiple times".into());
                    }
                    if !["sts", "no-policy-found"].contains(&value) {
                        return Err(format!("policy_type has an unexpected value: \"{value}\""));
                    }
                    policy_type = Some(value.to_owned());
                }
                "policy_domain" => {
                    if p.policy_domain.is_some() || !valid_hostname(value) {
                        return Err(format!("bad or repeated policy_domain \"{value}\""));
                    }
                    p.policy_domain = Some(value.to_owned());
                }
                "policy_string" => p.policy_strings.push(value.to_owned()),
                "mx_host_pattern" => p.mx_host_patterns.push(value.to_owned()),
                "policy_failure" => {
                    if failure.is_some()
                        || ![
                            "sts-policy-fetch-error",
                            "sts-policy-invalid",
                            "sts-webpki-invalid",
                            "validation-failure",
                        ]
                        .contains(&value)
                    {
                        return Err(format!("bad or repeated policy_failure \"{value}\""));
                    }
                    failure = Some(value.to_owned());
                }
                other => return Err(format!("invalid attribute name: \"{other}\"")),
            }
        }
        let extras = p.policy_domain.is_some()
            || !p.policy_strings.is_empty()
            || !p.mx_host_patterns.is_empty()
            || failure.is_some();
        match policy_type.as_deref() {
            None if extras => return Err("built-in policy has unexpected attribute".into()),
            Some("sts") if p.policy_strings.is_empty() || p.mx_host_patterns.is_empty() => {
                return Err(
                    "sts without policy_string or mx_host_pattern (3.10.0-3.10.5 crash)".into(),
                );
            }
            _ => {}
        }
        if ["fingerprint", "verify", "secure"].contains(&level) && !matched {
            // Not an error for Postfix, but never what this daemon means.
            return Err(format!("{level} without match"));
        }
        p.reported = if ["dane", "dane-only"].contains(&level) {
            "tlsa (Postfix's own lookup)"
        } else if policy_type.as_deref() == Some("sts") {
            "sts"
        } else {
            "no-policy-found"
        };
        Ok(p)
    }

    fn tlsrpt() -> Zone {
        Zone {
            tlsrpt: true,
            ..Zone::default()
        }
    }

    const NOW: u64 = 1_767_225_600;

    /// A cached policy of `example.com` with this body.
    fn cached(body: &str) -> CachedPolicy {
        let now = UnixTime::from_secs(NOW);
        let mut cache = PolicyCache::new(Config::default());
        let entry = SnapshotEntry::new("example.com", "20260101", now, now, body);
        cache.import(Snapshot::new(vec![entry]), now).unwrap();
        cache.peek("example.com").unwrap().clone()
    }

    const ENFORCE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n";
    const TESTING: &str =
        "version: STSv1\r\nmode: testing\r\nmx: mail.example.com\r\nmax_age: 86400\r\n";
    const NONE: &str = "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n";

    fn ok(reply: Reply) -> String {
        match reply {
            Reply::Ok(data) => data,
            other => panic!("expected OK, got {other:?}"),
        }
    }

    #[test]
    fn t17_the_sts_answer_describes_the_policy_postfix_reports_sts() {
        let outcome = Outcome::Fetched(cached(ENFORCE));
        let data = ok(reply(&tlsrpt(), "example.com", &outcome));
        let parsed = postfix_3_10(&data).unwrap();
        assert_eq!(
            parsed,
            Parsed {
                level: "secure",
                reported: "sts",
                policy_domain: Some("example.com".into()),
                mx_host_patterns: vec!["mail.example.com".into(), "*.example.net".into()],
                policy_strings: vec![
                    "mx: mail.example.com".into(),
                    "mx: *.example.net".into(),
                    "version: STSv1".into(),
                    "mode: enforce".into(),
                    "max_age: 604800".into(),
                ],
            }
        );
        // The same answer through the DANE path, where DANE is absent.
        assert_eq!(
            ok(precedence_reply(
                &tlsrpt(),
                "example.com",
                &outcome,
                Precedence::Sts,
                String::new
            )),
            data
        );
    }

    #[test]
    fn t17_a_cached_policy_after_a_failed_refresh_is_described_without_policy_failure() {
        // RFC 8461 §5.1: the cached policy still applies. `policy_failure` would only relabel a
        // real certificate failure under it as a fetch problem (tls_verify.c), so it is not sent.
        for problem in [
            FetchProblem::Fetch(FetchFailure::Status(503)),
            FetchProblem::Fetch(FetchFailure::Timeout),
        ] {
            let outcome = Outcome::Cached {
                policy: cached(ENFORCE),
                reason: CacheReason::FetchFailed(problem),
            };
            assert!(outcome.fetch_problem().is_some());
            let data = ok(reply(&tlsrpt(), "example.com", &outcome));
            assert!(!data.contains("policy_failure"), "{data}");
            assert_eq!(postfix_3_10(&data).unwrap().reported, "sts");
        }
    }

    #[test]
    fn t17_strict_testing_describes_the_testing_policy_as_sts() {
        let zone = Zone {
            strict_testing: true,
            ..tlsrpt()
        };
        let outcome = Outcome::Fetched(cached(TESTING));
        let data = ok(reply(&zone, "example.com", &outcome));
        let parsed = postfix_3_10(&data).unwrap();
        assert_eq!(parsed.reported, "sts");
        assert!(parsed.policy_strings.contains(&"mode: testing".to_owned()));
        // Also where TLSA records are published but unusable: the testing policy, not encrypt.
        let via_dane = precedence_reply(
            &zone,
            "example.com",
            &outcome,
            Precedence::TlsRequired,
            String::new,
        );
        assert_eq!(ok(via_dane), data);
    }

    #[test]
    fn t17_notfound_answers_carry_nothing_postfix_reports_no_policy_found_itself() {
        // NOTFOUND has no data: Postfix keeps its default level and reports no-policy-found
        // (smtp_tlsrpt_set_no_policy). Testing (no strict_testing), none, no record, and a
        // failed fetch with nothing cached: RFC 8461 §5 delivers as without a policy.
        for outcome in [
            Outcome::Fetched(cached(TESTING)),
            Outcome::Fetched(cached(NONE)),
            Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::NxDomain)),
            Outcome::NoPolicy(NoPolicyReason::FetchFailed(FetchProblem::Fetch(
                FetchFailure::Status(404),
            ))),
            Outcome::TemporaryFailure(mta_sts_core::io::DnsFailure::ServerFailure),
        ] {
            assert_eq!(
                reply(&tlsrpt(), "example.com", &outcome),
                Reply::NotFound,
                "{outcome:?}"
            );
            assert_eq!(
                precedence_reply(
                    &tlsrpt(),
                    "example.com",
                    &outcome,
                    Precedence::Sts,
                    String::new
                ),
                Reply::NotFound
            );
        }
    }

    #[test]
    fn t17_temp_answers_carry_nothing() {
        let defer = Zone {
            defer_on_dns_failure: true,
            ..tlsrpt()
        };
        let outcome = Outcome::TemporaryFailure(mta_sts_core::io::DnsFailure::ServerFailure);
        assert!(
            matches!(reply(&defer, "example.com", &outcome), Reply::Temp(ref m) if !m.contains("policy_type"))
        );
        let r = precedence_reply(
            &tlsrpt(),
            "example.com",
            &Outcome::Fetched(cached(ENFORCE)),
            Precedence::Defer,
            || "TLSA _25._tcp.mx.example.com: SERVFAIL".into(),
        );
        assert_eq!(
            r,
            Reply::Temp(
                "DANE state of example.com is indeterminate: TLSA _25._tcp.mx.example.com: SERVFAIL"
                    .into()
            )
        );
    }

    #[test]
    fn t17_dane_answers_carry_nothing_postfix_reports_its_own_tlsa() {
        let outcome = Outcome::Fetched(cached(ENFORCE));
        for (precedence, want) in [
            (Precedence::DaneOnly, "dane-only"),
            (Precedence::Dane, "dane"),
        ] {
            let data = ok(precedence_reply(
                &tlsrpt(),
                "example.com",
                &outcome,
                precedence,
                String::new,
            ));
            assert_eq!(data, want);
            assert_eq!(
                postfix_3_10(&data).unwrap().reported,
                "tlsa (Postfix's own lookup)"
            );
        }
        // The model holds what Postfix refuses: a `tlsa` policy type from a plug-in.
        assert!(
            postfix_3_10("dane-only policy_type=tlsa")
                .unwrap_err()
                .contains("unexpected value")
        );
    }

    #[test]
    fn t17_encrypt_says_no_policy_found() {
        for outcome in [
            Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::NoData)),
            Outcome::Fetched(cached(TESTING)),
        ] {
            let data = ok(precedence_reply(
                &tlsrpt(),
                "example.com",
                &outcome,
                Precedence::TlsRequired,
                String::new,
            ));
            assert_eq!(data, "encrypt policy_type=no-policy-found");
            let parsed = postfix_3_10(&data).unwrap();
            assert_eq!(
                (parsed.level, parsed.reported),
                ("encrypt", "no-policy-found")
            );
            // Without tlsrpt: as before.
            assert_eq!(
                precedence_reply(
                    &Zone::default(),
                    "example.com",
                    &outcome,
                    Precedence::TlsRequired,
                    String::new
                ),
                Reply::Ok("encrypt".into())
            );
        }
    }

    #[test]
    fn t17_hostile_extensions_inject_no_attribute() {
        // An extension value may hold spaces, '=', ',', non-ASCII (RFC 8461 sts-policy-ext-value)
        // and braces; a brace line is left out, the others stay inside their `{ }`.
        let body = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 60\r\n\
                    x-a: a=b, c policy_type=tlsa\r\nx-b: } match=evil.example {\r\nx-c: caf\u{e9} \u{2603}\r\n\
                    x-d: {policy_failure=sts-policy-invalid}\r\n";
        let data = ok(policy_reply(
            &tlsrpt(),
            "example.com",
            cached(body).policy(),
        ));
        let parsed = postfix_3_10(&data).unwrap();
        assert_eq!(parsed.reported, "sts");
        assert_eq!(
            parsed.policy_strings[2..],
            [
                "mode: enforce",
                "max_age: 60",
                "x-a: a=b, c policy_type=tlsa",
                "x-c: caf\u{e9} \u{2603}"
            ]
        );
        assert!(
            !data.contains("evil") && !data.contains("policy_failure"),
            "{data}"
        );
    }

    #[test]
    fn t17_an_idn_domain_is_described_by_its_a_label() {
        // Postfix's valid_hostname refuses U-labels: a policy_domain in UTF-8 would make the
        // policy invalid and defer the mail.
        let data = ok(policy_reply(
            &tlsrpt(),
            "bücher.example",
            cached(ENFORCE).policy(),
        ));
        let parsed = postfix_3_10(&data).unwrap();
        assert_eq!(
            parsed.policy_domain.as_deref(),
            Some("xn--bcher-kva.example")
        );
    }

    /// An enforce policy of `n` mx patterns `mx<i>.<label>.example.com` and, with `pad` > 0, an
    /// extension line whose value is `pad` bytes long.
    fn big(n: usize, pad: usize) -> Policy {
        let mut text = String::from("version: STSv1\nmode: enforce\nmax_age: 60\n");
        for i in 0..n {
            let _ = writeln!(text, "mx: mx{i}.a-rather-long-mail-host-name.example.com");
        }
        if pad > 0 {
            let _ = writeln!(text, "x-pad: {}", "p".repeat(pad));
        }
        Policy::parse(&text).unwrap()
    }

    #[test]
    fn t17_the_longest_answer_fits_and_a_longer_one_goes_without_the_attributes() {
        // Find the padding that makes `OK <data>` exactly MAX_REPLY bytes long.
        let n = 500;
        let base = ok(policy_reply(&tlsrpt(), "example.com", &big(n, 1)));
        assert!(base.contains("policy_type=sts") && base.len() < MAX_REPLY - 100);
        let base = base.len();
        let pad = MAX_REPLY - "OK ".len() - base + 1;
        let longest = ok(policy_reply(&tlsrpt(), "example.com", &big(n, pad)));
        assert_eq!("OK ".len() + longest.len(), MAX_REPLY);
        let parsed = postfix_3_10(&longest).unwrap();
        assert_eq!((parsed.reported, parsed.mx_host_patterns.len()), ("sts", n));
        // One byte more: the same level and names, without the description (never TEMP for
        // the sake of a report, never a truncated list).
        let over = ok(policy_reply(&tlsrpt(), "example.com", &big(n, pad + 1)));
        assert_eq!(
            over,
            ok(policy_reply(&Zone::default(), "example.com", &big(n, 0)))
        );
        assert_eq!(postfix_3_10(&over).unwrap().reported, "no-policy-found");
    }

    #[test]
    fn t17_the_postfix_model_refuses_what_postfix_3_10_refuses() {
        // So that the checks above can fail: each line is an answer Postfix marks invalid (and
        // defers the mail), or whose attributes it ignores.
        for bad in [
            "secure match=mx.example.com policy_type=tlsa",
            "secure match=mx.example.com policy_type=sts policy_type=sts { policy_string = a } mx_host_pattern=mx.example.com",
            "secure match=mx.example.com policy_type=sts policy_domain=example.com",
            "secure match=mx.example.com policy_domain=example.com",
            "secure match=mx.example.com policy_type=sts policy_domain=b\u{fc}cher.example { policy_string = a } mx_host_pattern=mx.example.com",
            "secure match=mx.example.com policy_type=no-policy-found policy_failure=sts-expired",
            "secure match=mx.example.com policy_report=yes",
            "none policy_type=no-policy-found",
            "encrypt match=mx.example.com",
            "encrypt { policy_type = sts",
            "dane-only policy_type=sts { policy_string = } match=x { }",
        ] {
            assert!(postfix_3_10(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn t17_every_answer_passes_postfix_3_10_rules() {
        // Every OK answer of a tlsrpt zone, each outcome under each precedence and zone flag.
        let outcomes = [
            Outcome::Fetched(cached(ENFORCE)),
            Outcome::Fetched(cached(TESTING)),
            Outcome::Fetched(cached(NONE)),
            Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::NxDomain)),
        ];
        let precedences = [
            Precedence::DaneOnly,
            Precedence::Dane,
            Precedence::Defer,
            Precedence::TlsRequired,
            Precedence::Sts,
        ];
        let mut seen = std::collections::BTreeSet::new();
        for strict_testing in [false, true] {
            for require_sni in [false, true] {
                let zone = Zone {
                    strict_testing,
                    require_sni,
                    ..tlsrpt()
                };
                for outcome in &outcomes {
                    let direct = reply(&zone, "example.com", outcome);
                    let via = precedences
                        .map(|p| precedence_reply(&zone, "example.com", outcome, p, String::new));
                    for r in std::iter::once(direct).chain(via) {
                        if let Reply::Ok(data) = r {
                            let parsed =
                                postfix_3_10(&data).unwrap_or_else(|e| panic!("{data:?}: {e}"));
                            seen.insert((parsed.level, parsed.reported));
                        }
                    }
                }
            }
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            [
                ("dane", "tlsa (Postfix's own lookup)"),
                ("dane-only", "tlsa (Postfix's own lookup)"),
                ("encrypt", "no-policy-found"),
                ("secure", "sts"),
            ]
        );
    }
}
