//! The DANE lookup of one destination: MX, then A, AAAA and TLSA for every MX host, all with
//! DNSSEC (RFC 7672 §2.2), as a sans-IO state machine.

use core::fmt;
use core::time::Duration;

use crate::domain::{self, MAX_NAME_LEN, NameProblem};
use crate::io::{DEFAULT_DNS_TIMEOUT, DnssecData, DnssecQuery, DnssecResult, DnssecType};
use crate::policy_domain::{PolicyDomain, PolicyDomainError};
use crate::time::UnixTime;

use super::state::{
    DaneAbsent, DaneHost, DaneHosts, DaneIndeterminate, DaneState, HostCoverage, NotCoveredReason,
    SkipReason,
};
use super::tlsa::{MAX_TLSA_RECORDS, Tlsa};

/// The most MX hosts of one destination that are looked up (D2); further hosts are noted as
/// [`SkipReason::TooMany`]. A lookup thus makes at most `1 + 3 × MAX_DANE_HOSTS` queries (D9).
pub const MAX_DANE_HOSTS: usize = 16;

/// The most skipped MX targets noted in a state; further ones are only counted
/// ([`DaneHosts::omitted`]).
const MAX_NOTED_SKIPS: usize = MAX_DANE_HOSTS;

/// The prefix of a TLSA name for SMTP (RFC 7672 §2.2.3).
const TLSA_PREFIX: &str = "_25._tcp.";

/// Settings of DANE lookups and of the [`DaneCache`](crate::DaneCache).
///
/// ```
/// use core::time::Duration;
/// use mta_sts_core::DaneConfig;
///
/// let mut config = DaneConfig::default();
/// assert_eq!(config.capacity, 10_000);
/// assert_eq!(config.max_ttl, Duration::from_secs(86_400));
/// config.max_ttl = Duration::from_secs(3_600);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DaneConfig {
    /// The most destinations whose DANE state is cached (default 10,000); 0 caches nothing.
    pub capacity: usize,
    /// The longest a DANE state is cached, whatever the TTLs say (default one day).
    pub max_ttl: Duration,
    /// The timeout of each DNSSEC query ([`DnssecQuery::timeout`]; default 10 s).
    pub dns_timeout: Duration,
    /// The most bytes the cached states may hold, host names and TLSA data counted (default
    /// 16 MiB): a hostile zone can publish up to 64 KiB of TLSA data per MX host, so the count
    /// of destinations alone does not bound memory. Least recently used states go first; a
    /// state larger than this on its own is not cached.
    pub max_bytes: usize,
}

impl Default for DaneConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            max_ttl: Duration::from_secs(86_400),
            dns_timeout: DEFAULT_DNS_TIMEOUT,
            max_bytes: 16 << 20,
        }
    }
}

/// The token of one query a [`DaneLookup`] asked for; hand it back with the result.
///
/// A driver that tags its requests with integers may use [`DaneQueryId::as_u32`] and
/// [`DaneQueryId::from_u32`]; an id the lookup did not hand out is refused by
/// [`DaneLookup::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DaneQueryId(u32);

impl DaneQueryId {
    /// The id as an integer.
    pub fn as_u32(self) -> u32 {
        self.0
    }

    /// The id with this integer value.
    pub fn from_u32(raw: u32) -> Self {
        Self(raw)
    }
}

impl fmt::Display for DaneQueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a [`DaneLookup`] wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum DaneStep {
    /// Send this query (concurrently with the others under way) and hand its result to
    /// [`DaneLookup::handle`] with the id.
    Query(DaneQueryId, DnssecQuery),
    /// Every query asked for so far is under way: wait for a result.
    Wait,
    /// The lookup is over: pass the resolution to [`DaneCache::apply`](crate::DaneCache::apply)
    /// (or use its state directly). Polling again gives the same resolution.
    Done(DaneResolution),
}

/// What a [`DaneLookup`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaneResolution {
    domain: String,
    state: DaneState,
}

impl DaneResolution {
    /// The destination domain, normalised.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The DANE state.
    pub fn state(&self) -> &DaneState {
        &self.state
    }

    /// The DANE state, by value.
    pub fn into_state(self) -> DaneState {
        self.state
    }
}

/// Why [`DaneLookup::handle`] refused a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DaneLookupError {
    /// The id was not handed out by this lookup's [`DaneLookup::poll`].
    UnknownQuery(DaneQueryId),
    /// A result for this id was already handled.
    Repeated(DaneQueryId),
    /// The lookup has concluded (an earlier answer decided it): the result is not needed.
    Finished(DaneQueryId),
}

impl fmt::Display for DaneLookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownQuery(id) => write!(f, "DANE query {id} was not asked by this lookup"),
            Self::Repeated(id) => write!(f, "DANE query {id} was already answered"),
            Self::Finished(id) => {
                write!(f, "DANE query {id} answered after the lookup concluded")
            }
        }
    }
}

impl std::error::Error for DaneLookupError {}

/// A host's answer, reduced to what decides DANE.
#[derive(Debug, Clone)]
enum Got {
    Failed(DaneIndeterminate),
    /// Address records: authenticated, and whether there is at least one address.
    Addrs {
        auth: bool,
        any: bool,
    },
    /// TLSA records (empty for NXDOMAIN or NODATA), at most [`MAX_TLSA_RECORDS`].
    Tlsa {
        auth: bool,
        records: Vec<Tlsa>,
    },
}

/// One query of a lookup: sent or not, answered or not (with the time its answer stops holding).
#[derive(Debug, Clone, Default)]
struct Entry {
    sent: bool,
    got: Option<(Got, UnixTime)>,
    /// Answered (also true for the MX query, whose answer is processed at once).
    answered: bool,
}

/// Where a host stands once some of its answers are in.
enum HostStatus {
    Pending,
    Indeterminate(DaneIndeterminate),
    Decided(HostCoverage, Option<UnixTime>),
}

/// The DANE lookup of one destination (D1–D5, D9): ask the queries [`poll`](Self::poll) gives,
/// all concurrently, hand back each result with [`handle`](Self::handle), until
/// [`DaneStep::Done`].
///
/// It first asks for the MX records; when they are known, for A, AAAA and TLSA
/// (`_25._tcp.<host>`) of each MX host at once. It makes at most `1 + 3 ×`[`MAX_DANE_HOSTS`]
/// queries, and concludes as soon as the answers decide the state: at once for an
/// indeterminate answer that matters, otherwise when every query asked is answered.
///
/// ```
/// use mta_sts_core::io::{DnssecAnswer, DnssecData, DnssecType};
/// use mta_sts_core::{DaneConfig, DaneLookup, DaneStep, UnixTime};
///
/// let mut lookup = DaneLookup::new("example.com", &DaneConfig::default())?;
/// let now = UnixTime::from_secs(1_700_000_000);
/// let DaneStep::Query(id, query) = lookup.poll() else { unreachable!() };
/// assert_eq!((query.name.as_str(), query.rtype), ("example.com", DnssecType::Mx));
/// assert_eq!(lookup.poll(), DaneStep::Wait);
/// // The MX answer is not authenticated: an insecure zone, DANE does not apply.
/// let insecure = DnssecAnswer::new(false, 300, DnssecData::Mx(vec![(10, "mx.example.com".into())]));
/// lookup.handle(id, Ok(insecure), now)?;
/// let DaneStep::Done(resolution) = lookup.poll() else { unreachable!() };
/// assert_eq!(resolution.state().name(), "absent");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct DaneLookup {
    domain: String,
    timeout: Duration,
    max_ttl: Duration,
    /// Index 0: the MX query; then A, AAAA and TLSA of each host in `hosts`.
    entries: Vec<Entry>,
    /// The MX hosts looked up, normalised, in preference order.
    hosts: Vec<String>,
    /// MX targets not looked up, noted up to a bound.
    skipped: Vec<DaneHost>,
    omitted: usize,
    /// When the MX answer stops holding.
    mx_until: Option<UnixTime>,
    next: usize,
    result: Option<DaneResolution>,
}

impl DaneLookup {
    /// A lookup for `domain` (normalised like a policy domain), outside any cache.
    pub fn new(domain: &str, config: &DaneConfig) -> Result<Self, PolicyDomainError> {
        let name = PolicyDomain::normalised(domain)?;
        Ok(Self::for_normalised(name.into_owned(), config))
    }

    pub(crate) fn for_normalised(domain: String, config: &DaneConfig) -> Self {
        Self {
            domain,
            timeout: config.dns_timeout,
            max_ttl: config.max_ttl,
            entries: vec![Entry::default()],
            hosts: Vec::new(),
            skipped: Vec::new(),
            omitted: 0,
            mx_until: None,
            next: 0,
            result: None,
        }
    }

    /// The destination domain, normalised.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The next query to send (send them all concurrently), [`DaneStep::Wait`] while results
    /// are outstanding, or [`DaneStep::Done`].
    pub fn poll(&mut self) -> DaneStep {
        if let Some(result) = &self.result {
            return DaneStep::Done(result.clone());
        }
        let Some(entry) = self.entries.get_mut(self.next) else {
            return DaneStep::Wait;
        };
        entry.sent = true;
        let index = self.next;
        self.next += 1;
        let query = self.query(index);
        DaneStep::Query(DaneQueryId(id_of(index)), query)
    }

    /// Hands in the result of the query `id`, received at `now`.
    ///
    /// An id this lookup did not hand out, or one already answered, is an error (the lookup is
    /// unchanged); so is a result that comes after the lookup concluded.
    pub fn handle(
        &mut self,
        id: DaneQueryId,
        result: DnssecResult,
        now: UnixTime,
    ) -> Result<(), DaneLookupError> {
        let index = usize::try_from(id.0).unwrap_or(usize::MAX);
        let entry = match self.entries.get(index) {
            Some(e) if e.sent => e,
            _ => return Err(DaneLookupError::UnknownQuery(id)),
        };
        if entry.answered {
            return Err(DaneLookupError::Repeated(id));
        }
        if self.result.is_some() {
            self.entries[index].answered = true;
            return Err(DaneLookupError::Finished(id));
        }
        self.entries[index].answered = true;
        if index == 0 {
            self.handle_mx(result, now);
        } else {
            let (name, rtype) = self.name_and_type(index);
            let (got, ttl) = reduce(name, rtype, result);
            let ttl = Duration::from_secs(u64::from(ttl));
            let until = now.saturating_add(self.max_ttl.min(ttl));
            self.entries[index].got = Some((got, until));
            self.conclude();
        }
        Ok(())
    }

    /// The query at `index`.
    fn query(&self, index: usize) -> DnssecQuery {
        let (name, rtype) = self.name_and_type(index);
        DnssecQuery {
            name,
            rtype,
            timeout: self.timeout,
        }
    }

    fn name_and_type(&self, index: usize) -> (String, DnssecType) {
        if index == 0 {
            return (self.domain.clone(), DnssecType::Mx);
        }
        let host = &self.hosts[(index - 1) / 3];
        match (index - 1) % 3 {
            0 => (host.clone(), DnssecType::A),
            1 => (host.clone(), DnssecType::Aaaa),
            _ => (format!("{TLSA_PREFIX}{host}"), DnssecType::Tlsa),
        }
    }

    fn finish(&mut self, state: DaneState) {
        self.result = Some(DaneResolution {
            domain: self.domain.clone(),
            state,
        });
    }

    fn absent(&mut self, why: DaneAbsent, hosts: Vec<DaneHost>, until: Option<UnixTime>) {
        let hosts = DaneHosts::new(hosts, self.omitted, until);
        self.finish(DaneState::Absent(why, hosts));
    }

    /// D1, D2: the MX answer decides the hosts (or the state).
    fn handle_mx(&mut self, result: DnssecResult, now: UnixTime) {
        let answer = match result {
            Ok(a) => a,
            Err(failure) => {
                let why = DaneIndeterminate::Failed {
                    name: self.domain.clone(),
                    rtype: DnssecType::Mx,
                    failure,
                };
                return self.finish(DaneState::Indeterminate(why));
            }
        };
        let until =
            now.saturating_add(self.max_ttl.min(Duration::from_secs(u64::from(answer.ttl))));
        self.mx_until = Some(until);
        let targets = match answer.data {
            DnssecData::Mx(v) if !v.is_empty() => v,
            DnssecData::Mx(_) | DnssecData::NoData => vec![(0, self.domain.clone())],
            DnssecData::NxDomain => {
                return if answer.authenticated {
                    self.absent(DaneAbsent::NxDomain, Vec::new(), Some(until))
                } else {
                    self.absent(DaneAbsent::InsecureMx, Vec::new(), Some(until))
                };
            }
            DnssecData::Addrs(_) | DnssecData::Tlsa(_) => {
                let why = DaneIndeterminate::WrongKind {
                    name: self.domain.clone(),
                    rtype: DnssecType::Mx,
                };
                return self.finish(DaneState::Indeterminate(why));
            }
        };
        if !answer.authenticated {
            return self.absent(DaneAbsent::InsecureMx, Vec::new(), Some(until));
        }
        if targets.iter().all(|(_, t)| is_null(t)) {
            return self.absent(DaneAbsent::NullMx, Vec::new(), Some(until));
        }
        self.choose_hosts(targets);
        if self.hosts.is_empty() {
            let skipped = core::mem::take(&mut self.skipped);
            return self.absent(DaneAbsent::NoHost, skipped, Some(until));
        }
        self.entries
            .resize(1 + 3 * self.hosts.len(), Entry::default());
    }

    /// D2: the MX targets in preference order, deduplicated, at most [`MAX_DANE_HOSTS`]; the
    /// others noted as skipped.
    fn choose_hosts(&mut self, mut targets: Vec<(u16, String)>) {
        targets.sort_by_key(|(preference, _)| *preference);
        let mut seen: Vec<String> = Vec::new();
        for (_, target) in targets {
            let (name, skip) = match host_name(&target) {
                Ok(name) => (name, None),
                Err(why) => (target.to_ascii_lowercase(), Some(why)),
            };
            // At most 2 × 16 names are remembered: the rest of a hostile set is only counted.
            if seen.contains(&name) {
                continue;
            }
            let skip = match skip {
                None if self.hosts.len() < MAX_DANE_HOSTS => {
                    seen.push(name.clone());
                    self.hosts.push(name);
                    continue;
                }
                None => SkipReason::TooMany,
                Some(why) => why,
            };
            if self.skipped.len() < MAX_NOTED_SKIPS {
                seen.push(name.clone());
                self.skipped
                    .push(DaneHost::new(name, HostCoverage::Skipped(skip)));
            } else {
                self.omitted = self.omitted.saturating_add(1);
            }
        }
    }

    /// D3–D5: concludes when the answers in decide the state.
    fn conclude(&mut self) {
        let mut decided = Vec::with_capacity(self.hosts.len());
        let mut pending = false;
        for (i, name) in self.hosts.iter().enumerate() {
            let base = 1 + 3 * i;
            match host_status(&self.entries[base..base + 3]) {
                HostStatus::Indeterminate(why) => {
                    return self.finish(DaneState::Indeterminate(why));
                }
                HostStatus::Pending => pending = true,
                HostStatus::Decided(coverage, until) => {
                    decided.push((DaneHost::new(name.clone(), coverage), until));
                }
            }
        }
        if pending {
            return;
        }
        let mut until = self.mx_until;
        let mut hosts = Vec::with_capacity(decided.len() + self.skipped.len());
        for (host, host_until) in decided {
            until = earliest(until, host_until);
            hosts.push(host);
        }
        let count = |f: fn(&HostCoverage) -> bool| hosts.iter().filter(|h| f(h.coverage())).count();
        let considered = count(|c| !matches!(c, HostCoverage::Skipped(_)));
        let usable = count(|c| matches!(c, HostCoverage::Usable(_)));
        let unusable = count(|c| matches!(c, HostCoverage::Unusable(_)));
        hosts.append(&mut self.skipped);
        let all = DaneHosts::new(hosts, self.omitted, until);
        let state = if considered == 0 {
            DaneState::Absent(DaneAbsent::NoHost, all)
        } else if usable == considered {
            DaneState::Mandatory(all)
        } else if usable > 0 {
            DaneState::Opportunistic(all)
        } else if unusable > 0 {
            DaneState::UnusableOnly(all)
        } else {
            DaneState::Absent(DaneAbsent::NotCovered, all)
        };
        self.finish(state);
    }
}

/// The token of the query at `index` (at most `1 + 3 × 16`, so it fits).
fn id_of(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

fn earliest(a: Option<UnixTime>, b: Option<UnixTime>) -> Option<UnixTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The null MX target (RFC 7505): `.`, or the empty name a codec may give for the root.
fn is_null(target: &str) -> bool {
    target.is_empty() || target == "."
}

/// An MX target as a host name DANE can cover, or why not.
fn host_name(target: &str) -> Result<String, SkipReason> {
    if is_null(target) {
        return Err(SkipReason::NullMx);
    }
    let n = domain::normalise(target).map_err(|p| match p {
        NameProblem::AddressLiteral => SkipReason::IpAddress,
        p => SkipReason::InvalidName(p),
    })?;
    if n.name.len() + TLSA_PREFIX.len() > MAX_NAME_LEN {
        return Err(SkipReason::InvalidName(NameProblem::NameTooLong));
    }
    Ok(n.name.into_owned())
}

/// An A, AAAA or TLSA result reduced to what decides DANE; records of the wrong kind make the
/// answer malformed (D1, D3, D4).
fn reduce(name: String, rtype: DnssecType, result: DnssecResult) -> (Got, u32) {
    let answer = match result {
        Ok(a) => a,
        Err(failure) => {
            let why = DaneIndeterminate::Failed {
                name,
                rtype,
                failure,
            };
            return (Got::Failed(why), 0);
        }
    };
    let auth = answer.authenticated;
    let got = match (rtype, answer.data) {
        (DnssecType::A | DnssecType::Aaaa, DnssecData::NxDomain | DnssecData::NoData) => {
            Some(Got::Addrs { auth, any: false })
        }
        (DnssecType::A, DnssecData::Addrs(v)) if v.iter().all(std::net::IpAddr::is_ipv4) => {
            Some(Got::Addrs {
                auth,
                any: !v.is_empty(),
            })
        }
        (DnssecType::Aaaa, DnssecData::Addrs(v)) if v.iter().all(std::net::IpAddr::is_ipv6) => {
            Some(Got::Addrs {
                auth,
                any: !v.is_empty(),
            })
        }
        (DnssecType::Tlsa, DnssecData::NxDomain | DnssecData::NoData) => Some(Got::Tlsa {
            auth,
            records: Vec::new(),
        }),
        (DnssecType::Tlsa, DnssecData::Tlsa(mut records)) => {
            records.truncate(MAX_TLSA_RECORDS);
            Some(Got::Tlsa { auth, records })
        }
        _ => None,
    };
    match got {
        Some(got) => (got, answer.ttl),
        None => (Got::Failed(DaneIndeterminate::WrongKind { name, rtype }), 0),
    }
}

/// Where one host stands, from its A, AAAA and TLSA entries (D3, D4).
fn host_status(entries: &[Entry]) -> HostStatus {
    let [a, aaaa, tlsa] = entries else {
        return HostStatus::Pending;
    };
    // Any failed address query decides: the host's addresses are unknown.
    for e in [a, aaaa] {
        if let Some((Got::Failed(why), _)) = &e.got {
            return HostStatus::Indeterminate(why.clone());
        }
    }
    let (
        Some((
            Got::Addrs {
                auth: a_auth,
                any: a_any,
            },
            a_until,
        )),
        Some((
            Got::Addrs {
                auth: b_auth,
                any: b_any,
            },
            b_until,
        )),
    ) = (&a.got, &aaaa.got)
    else {
        return HostStatus::Pending;
    };
    let addr_until = earliest(Some(*a_until), Some(*b_until));
    let secure = (*a_auth && *a_any) || (*b_auth && *b_any);
    if !secure {
        let coverage = if *a_auth && *b_auth {
            HostCoverage::Skipped(SkipReason::NoAddresses)
        } else {
            HostCoverage::NotCovered(NotCoveredReason::InsecureAddresses)
        };
        return HostStatus::Decided(coverage, addr_until);
    }
    let Some((got, until)) = &tlsa.got else {
        return HostStatus::Pending;
    };
    let until = earliest(addr_until, Some(*until));
    let coverage = match got {
        Got::Failed(why) => return HostStatus::Indeterminate(why.clone()),
        Got::Addrs { .. } => return HostStatus::Pending,
        Got::Tlsa { auth: false, .. } => HostCoverage::NotCovered(NotCoveredReason::InsecureTlsa),
        Got::Tlsa { records, .. } if records.is_empty() => {
            HostCoverage::NotCovered(NotCoveredReason::NoTlsa)
        }
        Got::Tlsa { records, .. } => {
            let usable: Vec<Tlsa> = records.iter().filter(|t| t.is_usable()).cloned().collect();
            if usable.is_empty() {
                HostCoverage::Unusable(records.clone())
            } else {
                HostCoverage::Usable(usable)
            }
        }
    };
    HostStatus::Decided(coverage, until)
}
