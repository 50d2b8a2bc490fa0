//! Counters for adapters to export (Prometheus, StatsD, logs…): the core does no I/O itself.

/// Counters of a [`PolicyCache`](crate::PolicyCache), read with
/// [`PolicyCache::stats`](crate::PolicyCache::stats). Counters only grow (wrapping is not a
/// concern at `u64`); `entries` and `in_flight` are gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Policy fetches that gave a valid policy.
    pub fetch_success: u64,
    /// Policy fetches that failed (any HTTPS failure or an invalid policy).
    pub fetch_failure: u64,
    /// Lookups answered with a cached policy (without a successful fetch).
    pub cached: u64,
    /// Proactive refreshes that gave a valid policy (also counted in `fetch_success`).
    pub refresh_success: u64,
    /// Proactive refreshes that failed (also counted in `fetch_failure`; R45).
    pub refresh_failure: u64,
    /// Entries evicted because the cache was full.
    pub evictions: u64,
    /// Entries now in the cache (gauge).
    pub entries: usize,
    /// Lookups marked as under way (gauge; a lookup abandoned without
    /// [`PolicyCache::abandon`](crate::PolicyCache::abandon) counts until its mark is purged).
    pub in_flight: usize,
    /// Lookups answered from a remembered negative answer (NXDOMAIN or NODATA), without I/O.
    pub negative_hits: u64,
    /// Negative answers remembered now (gauge; expired ones count until the next lookup or
    /// [`PolicyCache::poll_refresh`](crate::PolicyCache::poll_refresh) drops them).
    pub negative_entries: usize,
    /// Delivery decisions.
    pub decisions: DecisionStats,
}

/// Delivery decisions by mode and result, counted by
/// [`PolicyCache::evaluate`](crate::PolicyCache::evaluate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecisionStats {
    /// `enforce`: MX hosts that match the policy (deliver with validated TLS only).
    pub enforce_match: u64,
    /// `enforce`: MX hosts skipped because they do not match (R36).
    pub enforce_skip: u64,
    /// `enforce`: deliveries deferred because no MX host matches (R39).
    pub enforce_defer: u64,
    /// `testing`: MX hosts that match the policy.
    pub testing_match: u64,
    /// `testing`: MX hosts that do not match (delivered anyway, report-worthy; R37).
    pub testing_mismatch: u64,
    /// Deliveries without constraint because the policy's mode is `none` (R38).
    pub mode_none: u64,
    /// Deliveries without constraint because there is no policy (or MTA-STS is disabled).
    pub no_policy: u64,
    /// Deliveries deferred by configuration (`require` without a policy, or a temporary DNS
    /// failure configured to defer).
    pub deferred: u64,
    /// Deliveries DANE alone decided: every MX host has usable TLSA records
    /// ([`PolicyCache::evaluate_with_dane`](crate::PolicyCache::evaluate_with_dane)).
    pub dane_only: u64,
    /// Deliveries where DANE decided for some MX hosts (opportunistic DANE).
    pub dane: u64,
    /// Deliveries deferred because the DANE state was indeterminate.
    pub dane_deferred: u64,
    /// Deliveries with TLSA records but none usable and no MTA-STS policy: TLS required.
    pub dane_tls_required: u64,
}
