//! Sender-side configuration: how MTA-STS is used, fetch limits, cache size and refresh timing.

use core::time::Duration;
use std::collections::BTreeMap;

use crate::io::{ContentTypeCheck, DEFAULT_DNS_TIMEOUT, DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_BODY};
use crate::policy_domain::{PolicyDomain, PolicyDomainError};

/// Whether MTA-STS is used for a domain, as in mature MTAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StsUsage {
    /// Use a policy when the domain publishes one (RFC 8461). The default.
    #[default]
    Optional,
    /// A valid policy in mode `enforce` or `testing` is required: without one (no policy,
    /// mode `none`, temporary failure), delivery is deferred. For custom per-domain rules.
    Require,
    /// Never look up or apply MTA-STS.
    Disable,
}

/// What to do when the TXT lookup fails temporarily (SERVFAIL, timeout, network error) and no
/// unexpired policy is cached (R12). With a cached policy, the cached policy always applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum DnsTempFailure {
    /// Deliver as though the domain had no policy: the RFC's literal reading. The default.
    #[default]
    DeliverWithoutSts,
    /// Defer delivery (a temporary failure), as some MTAs do to resist DNS blocking (§10.2).
    Defer,
}

/// The settings that can differ per policy domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DomainSettings {
    /// Whether MTA-STS is used.
    pub usage: StsUsage,
    /// What a temporary DNS failure without a cached policy means.
    pub dns_temp_failure: DnsTempFailure,
    /// How the policy response's `Content-Type` is checked; lenient is an operator's switch,
    /// off by default. It travels on [`PolicyFetch::content_type`](crate::io::PolicyFetch).
    pub content_type: ContentTypeCheck,
}

/// The engine's configuration. Start from [`Config::default`] and change fields.
///
/// ```
/// use core::time::Duration;
/// use mta_sts_core::{Config, DnsTempFailure, StsUsage};
///
/// let mut config = Config::default();
/// config.defaults.dns_temp_failure = DnsTempFailure::Defer;
/// config.capacity = 50_000;
/// config.refresh_interval = Duration::from_secs(12 * 3600);
/// let mut strict = config.defaults;
/// strict.usage = StsUsage::Require;
/// config.set_override("bank.example", strict)?;
/// # Ok::<(), mta_sts_core::PolicyDomainError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Settings for every domain without an override.
    pub defaults: DomainSettings,
    /// Largest policy body accepted, in bytes (default 64 KiB).
    pub max_body: usize,
    /// Total time allowed for a policy fetch (default 60 s).
    pub fetch_timeout: Duration,
    /// Time allowed for a TXT lookup (default 10 s).
    pub dns_timeout: Duration,
    /// HTTPS port of policy hosts: 443 (tests may point elsewhere).
    pub https_port: u16,
    /// After a failed fetch, the same TXT id is not fetched again for this long (R19; default
    /// and RFC minimum 5 minutes). A new id may be fetched at once.
    pub fetch_retry_after: Duration,
    /// How often a cached policy (mode not `none`) is refetched proactively (R44; default one
    /// day). A policy whose `max_age` is shorter is refreshed at its `max_age` instead. Up to a
    /// tenth of the period is taken off, chosen from [`Config::seed`] and the domain, so that
    /// refreshes spread out.
    pub refresh_interval: Duration,
    /// After a failed proactive refresh, the next attempt comes this much later (default 1 h).
    pub refresh_retry: Duration,
    /// An entry not used by a delivery for this long is no longer refreshed; it stays until it
    /// expires and is then dropped (default 30 days).
    pub idle_after: Duration,
    /// Most entries the cache holds (default 100 000). See [`PolicyCache`](crate::PolicyCache)
    /// for the eviction order.
    pub capacity: usize,
    /// Most lookups tracked as under way at once, for coalescing (default 4096). Beyond that,
    /// lookups still run but are not coalesced.
    pub max_in_flight: usize,
    /// A lookup under way is considered abandoned after this long (default 5 minutes), so that a
    /// caller that never finished does not block the domain.
    pub lookup_deadline: Duration,
    /// Re-checks the TXT id of a domain whose cached policy is still fresh when it was last
    /// checked this long ago (default `None`: never; the policy is used until it is refreshed or
    /// expires). RFC 8461 §5.1 step 1 allows a sender to "unconditionally check for a new
    /// policy" at every delivery; this does it at most once per period and domain: the delivery
    /// that finds the check due drives a re-check ([`LookupKind::Recheck`](crate::LookupKind):
    /// an unchanged id keeps the policy, a new one is fetched), while the deliveries that come
    /// during it get the cached policy at once. A failed check never drops the policy (R11,
    /// R12). `Some(Duration::ZERO)` checks at every delivery. The Postfix daemon's
    /// `cache_grace` is this setting.
    pub recheck_after: Option<Duration>,
    /// Longest a negative answer (NXDOMAIN or NODATA for `_mta-sts.<domain>`) is reused before
    /// the domain is asked again (default 1 hour). The answer's own negative TTL (RFC 2308 §5)
    /// applies when shorter. One hour is the low end of RFC 2308 §5's advice (one to three
    /// hours) and bounds how long a domain that starts publishing MTA-STS goes unnoticed; most
    /// zones' SOA minimum (often 300 s to 3600 s) is at or below it anyway.
    pub negative_ttl_max: Duration,
    /// Shortest a negative answer is reused (default 5 s), even when its negative TTL is 0 or
    /// tiny: a burst of deliveries to one domain without MTA-STS then costs one lookup, not one
    /// each, while a newly published record is still seen within seconds.
    pub negative_ttl_min: Duration,
    /// How long a negative answer without a SOA record (or from an adapter that cannot see it)
    /// is reused (default 300 s): the same five minutes as [`Config::fetch_retry_after`], short
    /// enough that a new record is seen soon, long enough to spare the resolver the common case.
    pub negative_ttl_default: Duration,
    /// Most negative answers remembered at once (default 100 000; 0 turns negative caching
    /// off). When full, the one that expires first is forgotten to make room (with the usual
    /// single TTL, the oldest).
    pub negative_capacity: usize,
    /// Seed for the refresh jitter: give each process its own (e.g. from the OS RNG) so that a
    /// fleet does not refresh in step; the same seed gives the same schedule.
    pub seed: u64,
    overrides: BTreeMap<PolicyDomain, DomainSettings>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            defaults: DomainSettings::default(),
            max_body: DEFAULT_MAX_BODY,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            dns_timeout: DEFAULT_DNS_TIMEOUT,
            https_port: 443,
            fetch_retry_after: Duration::from_secs(300),
            refresh_interval: Duration::from_secs(86_400),
            refresh_retry: Duration::from_secs(3600),
            idle_after: Duration::from_secs(30 * 86_400),
            capacity: 100_000,
            max_in_flight: 4096,
            lookup_deadline: Duration::from_secs(300),
            recheck_after: None,
            negative_ttl_max: Duration::from_secs(3600),
            negative_ttl_min: Duration::from_secs(5),
            negative_ttl_default: Duration::from_secs(300),
            negative_capacity: 100_000,
            seed: 0,
            overrides: BTreeMap::new(),
        }
    }
}

impl Config {
    /// How long a negative TXT answer with this negative TTL (`None`: no SOA record) is reused:
    /// the TTL, or [`Config::negative_ttl_default`] without one, within
    /// [`Config::negative_ttl_min`] and [`Config::negative_ttl_max`] (the cap wins).
    ///
    /// ```
    /// use core::time::Duration;
    /// use mta_sts_core::Config;
    ///
    /// let c = Config::default();
    /// assert_eq!(c.negative_ttl(Some(Duration::from_secs(600))), Duration::from_secs(600));
    /// assert_eq!(c.negative_ttl(Some(Duration::from_secs(86_400))), Duration::from_secs(3600));
    /// assert_eq!(c.negative_ttl(Some(Duration::ZERO)), Duration::from_secs(5));
    /// assert_eq!(c.negative_ttl(None), Duration::from_secs(300));
    /// ```
    pub fn negative_ttl(&self, ttl: Option<Duration>) -> Duration {
        crate::negative::clamp_ttl(
            ttl,
            self.negative_ttl_default,
            self.negative_ttl_min,
            self.negative_ttl_max,
        )
    }
}

impl Config {
    /// Sets the settings for one policy domain (normalised like every lookup).
    pub fn set_override(
        &mut self,
        domain: &str,
        settings: DomainSettings,
    ) -> Result<(), PolicyDomainError> {
        self.overrides
            .insert(PolicyDomain::parse(domain)?, settings);
        Ok(())
    }

    /// Removes a domain's override; true if there was one.
    pub fn remove_override(&mut self, domain: &str) -> bool {
        PolicyDomain::normalised(domain).is_ok_and(|d| self.overrides.remove(d.as_ref()).is_some())
    }

    /// The settings that apply to a policy domain: its override, else the defaults.
    pub fn settings_for(&self, domain: &PolicyDomain) -> DomainSettings {
        self.settings_for_str(domain.as_str())
    }

    pub(crate) fn settings_for_str(&self, domain: &str) -> DomainSettings {
        if self.overrides.is_empty() {
            return self.defaults;
        }
        self.overrides.get(domain).copied().unwrap_or(self.defaults)
    }
}
