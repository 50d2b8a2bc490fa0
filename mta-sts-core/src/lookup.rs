//! The per-domain lookup state machine: discovery (TXT), fetch (HTTPS) and every rule of RFC 8461
//! about when to fetch and which policy applies (R9–R20, R42–R46).

use core::fmt;
use core::time::Duration;

use crate::cache::FlightId;
use crate::config::{Config, StsUsage};
use crate::io::{FetchFailure, FetchResult, Io, PolicyFetch, TxtAnswer, TxtQuery, TxtResult};
use crate::negative::{Absent, clamp_ttl};
use crate::outcome::{
    CacheReason, CachedPolicy, FetchProblem, NoPolicyReason, Outcome, TxtProblem,
};
use crate::policy::{Policy, Profile};
use crate::policy_domain::PolicyDomain;
use crate::time::UnixTime;
use crate::txt::{RecordId, StsRecord};

/// Why a lookup runs; it changes which I/O is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LookupKind {
    /// For a delivery (§5.1 step 1): an unexpired cached policy is used without any I/O;
    /// otherwise the TXT record is queried and the policy fetched if its id is new or the cached
    /// policy has expired.
    Delivery,
    /// Before a permanent failure (R39, §5.1 step 3): the TXT record is always queried; a new id
    /// is fetched, an unchanged one is not.
    Recheck,
    /// A proactive refresh (R44): the policy is refetched whatever the TXT record says (the TXT
    /// answer only updates the id the policy is cached under).
    Refresh,
}

/// The result of an [`Io`] request, handed back with [`Lookup::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoResult {
    /// The answer to [`Io::Txt`].
    Txt(TxtResult),
    /// The answer to [`Io::Fetch`].
    Fetch(FetchResult),
}

impl From<TxtResult> for IoResult {
    fn from(r: TxtResult) -> Self {
        Self::Txt(r)
    }
}

impl From<FetchResult> for IoResult {
    fn from(r: FetchResult) -> Self {
        Self::Fetch(r)
    }
}

/// What a [`Lookup`] wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Step {
    /// Perform this request and hand its result to [`Lookup::handle`]. Polling again before
    /// that returns the same request.
    Io(Io),
    /// The lookup is finished: hand the resolution to
    /// [`PolicyCache::apply`](crate::PolicyCache::apply) (or read its outcome).
    Done(Resolution),
}

/// A misuse of [`Lookup::handle`]; the lookup is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LookupError {
    /// The result is not for the request outstanding (a fetch result while a TXT answer is
    /// awaited, or the other way round).
    UnexpectedResult,
    /// The lookup is already finished.
    Finished,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedResult => f.write_str("I/O result does not answer the pending request"),
            Self::Finished => f.write_str("the lookup is already finished"),
        }
    }
}

impl std::error::Error for LookupError {}

/// A failed fetch remembered per TXT id (R19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FetchMemo {
    pub(crate) id: RecordId,
    pub(crate) at: UnixTime,
}

/// What a lookup's state-of-the-world inputs are, taken from the cache or the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    usage: StsUsage,
    txt: Duration,
    fetch_retry_after: Duration,
    fetch: FetchTemplate,
    negative: NegativeTtl,
}

/// [`Config::negative_ttl`]'s settings, copied into a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NegativeTtl {
    default: Duration,
    min: Duration,
    max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FetchTemplate {
    port: u16,
    max_body: usize,
    timeout: Duration,
    content_type: crate::io::ContentTypeCheck,
}

impl Params {
    pub(crate) fn new(config: &Config, domain: &PolicyDomain) -> Self {
        let s = config.settings_for(domain);
        Self {
            usage: s.usage,
            txt: config.dns_timeout,
            fetch_retry_after: config.fetch_retry_after,
            fetch: FetchTemplate {
                port: config.https_port,
                max_body: config.max_body,
                timeout: config.fetch_timeout,
                content_type: s.content_type,
            },
            negative: NegativeTtl {
                default: config.negative_ttl_default,
                min: config.negative_ttl_min,
                max: config.negative_ttl_max,
            },
        }
    }
}

/// How a finished lookup changes the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Update {
    /// Nothing to change (but a cache hit counts as a use).
    None,
    /// Store this freshly fetched policy; forget any fetch failure.
    Store(CachedPolicy),
    /// Remember a failed fetch of this id (R19); keep any cached policy.
    FetchFailed(FetchMemo),
    /// The cached policy, if any, has expired and there is no policy: drop it; and, after a
    /// NXDOMAIN or NODATA answer, remember that there is none until the given time.
    ForgetExpired(Option<(Absent, UnixTime)>),
}

/// A finished lookup: its outcome, and how it updates the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Resolution {
    pub(crate) domain: PolicyDomain,
    pub(crate) kind: LookupKind,
    pub(crate) outcome: Outcome,
    pub(crate) update: Update,
    pub(crate) io_done: u8,
    /// The flight of the lookup, when a cache started it.
    pub(crate) flight: Option<FlightId>,
}

impl Resolution {
    /// The policy domain looked up.
    pub fn domain(&self) -> &PolicyDomain {
        &self.domain
    }

    /// Why the lookup ran.
    pub fn kind(&self) -> LookupKind {
        self.kind
    }

    /// The outcome. Without a cache, this is the answer; with one, prefer the return value of
    /// [`PolicyCache::apply`](crate::PolicyCache::apply), which is the same.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// The outcome, consuming the resolution (without updating any cache).
    pub fn into_outcome(self) -> Outcome {
        self.outcome
    }

    /// The flight of the lookup, when a [`PolicyCache`](crate::PolicyCache) started it: the
    /// identity its waiters were given.
    pub fn flight(&self) -> Option<FlightId> {
        self.flight
    }

    /// After a NXDOMAIN or NODATA answer that left the domain without a policy: what the answer
    /// was and until when it may be reused (its negative TTL within the [`Config`] bounds, see
    /// [`Config::negative_ttl`]). A client with a shared store writes it there for its peers
    /// ([`PolicyCache::adopt_absent`](crate::PolicyCache::adopt_absent)).
    pub fn absent_until(&self) -> Option<(Absent, UnixTime)> {
        match self.update {
            Update::ForgetExpired(absent) => absent,
            _ => None,
        }
    }

    /// True when the lookup fetched a policy or tried to.
    pub fn fetched(&self) -> bool {
        matches!(self.update, Update::Store(_) | Update::FetchFailed(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Txt(TxtQuery),
    Fetch { request: PolicyFetch, id: RecordId },
    Done(Resolution),
}

/// One policy lookup for one policy domain: a deterministic state machine that never does I/O
/// and never reads the clock.
///
/// It emits at most two requests, in order: a TXT query for `_mta-sts.<domain>`, then, when
/// needed, an HTTPS fetch of the policy. Drive it with [`Lookup::poll`] and [`Lookup::handle`]
/// until [`Step::Done`]; see the crate docs for the loop. Usually a
/// [`PolicyCache`](crate::PolicyCache) creates lookups, with the cached policy and the memory of
/// failed fetches; [`Lookup::new`] makes one without a cache.
#[derive(Debug, Clone)]
pub struct Lookup {
    domain: PolicyDomain,
    kind: LookupKind,
    params: Params,
    cached: Option<CachedPolicy>,
    memo: Option<FetchMemo>,
    io_done: u8,
    flight: Option<FlightId>,
    state: State,
}

impl Lookup {
    /// A delivery lookup for `domain`, given the policy cached for it (if any), at `now`.
    ///
    /// With an unexpired `cached` policy, the lookup is finished at once without I/O.
    pub fn new(
        domain: PolicyDomain,
        cached: Option<CachedPolicy>,
        config: &Config,
        now: UnixTime,
    ) -> Self {
        let params = Params::new(config, &domain);
        Self::with(
            domain,
            LookupKind::Delivery,
            params,
            cached,
            None,
            None,
            now,
        )
    }

    pub(crate) fn with(
        domain: PolicyDomain,
        kind: LookupKind,
        params: Params,
        cached: Option<CachedPolicy>,
        memo: Option<FetchMemo>,
        flight: Option<FlightId>,
        now: UnixTime,
    ) -> Self {
        // A refresh is only ever made for a cached policy; without one it is a recheck.
        let kind = if kind == LookupKind::Refresh && cached.is_none() {
            LookupKind::Recheck
        } else {
            kind
        };
        let query = TxtQuery {
            name: domain.txt_name(),
            timeout: params.txt,
        };
        let mut lookup = Self {
            domain,
            kind,
            params,
            cached,
            memo,
            io_done: 0,
            flight,
            state: State::Txt(query),
        };
        if params.usage == StsUsage::Disable {
            lookup.finish(Outcome::NoPolicy(NoPolicyReason::Disabled), Update::None);
        } else if kind == LookupKind::Delivery
            && let Some(c) = lookup.fresh(now)
        {
            let outcome = Outcome::Cached {
                policy: c,
                reason: CacheReason::Fresh,
            };
            lookup.finish(outcome, Update::None);
        }
        lookup
    }

    /// The policy domain.
    pub fn domain(&self) -> &PolicyDomain {
        &self.domain
    }

    /// Why the lookup runs.
    pub fn kind(&self) -> LookupKind {
        self.kind
    }

    /// The flight of this lookup, when a [`PolicyCache`](crate::PolicyCache) started it (`None`
    /// for [`Lookup::new`]): the identity the cache gave the callers waiting on it
    /// ([`Begin::InProgress`](crate::Begin::InProgress)), and the one to hand to
    /// [`PolicyCache::abandon`](crate::PolicyCache::abandon) if this lookup is given up.
    pub fn flight(&self) -> Option<FlightId> {
        self.flight
    }

    /// True once [`Lookup::poll`] returns [`Step::Done`].
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// The next request, or the resolution once finished. Idempotent: it returns the same
    /// answer until [`Lookup::handle`] is called.
    pub fn poll(&self) -> Step {
        match &self.state {
            State::Txt(q) => Step::Io(Io::Txt(q.clone())),
            State::Fetch { request, .. } => Step::Io(Io::Fetch(request.clone())),
            State::Done(r) => Step::Done(r.clone()),
        }
    }

    /// Hands in the result of the request last polled, at `now` (when it completed).
    pub fn handle(&mut self, result: IoResult, now: UnixTime) -> Result<(), LookupError> {
        match (&self.state, result) {
            (State::Done(_), _) => Err(LookupError::Finished),
            (State::Txt(_), IoResult::Txt(r)) => {
                self.io_done = self.io_done.saturating_add(1);
                self.on_txt(r, now);
                Ok(())
            }
            (State::Fetch { request, id }, IoResult::Fetch(r)) => {
                let (request, id) = (request.clone(), *id);
                self.io_done = self.io_done.saturating_add(1);
                self.on_fetch(&request, id, r, now);
                Ok(())
            }
            _ => Err(LookupError::UnexpectedResult),
        }
    }

    fn fresh(&self, now: UnixTime) -> Option<CachedPolicy> {
        self.cached.as_ref().filter(|c| c.is_fresh(now)).cloned()
    }

    fn finish(&mut self, outcome: Outcome, update: Update) {
        let resolution = Resolution {
            domain: self.domain.clone(),
            kind: self.kind,
            outcome,
            update,
            io_done: self.io_done,
            flight: self.flight,
        };
        self.state = State::Done(resolution);
    }

    fn on_txt(&mut self, result: TxtResult, now: UnixTime) {
        let mut absent = None;
        let problem = match result {
            Ok(TxtAnswer::Records(records)) => match StsRecord::discover(&records) {
                Ok(record) => return self.on_id(record.record_id(), now),
                Err(e) => TxtProblem::Invalid(e),
            },
            Ok(TxtAnswer::NxDomain { negative_ttl }) => {
                absent = Some((Absent::NxDomain, self.negative_until(negative_ttl, now)));
                TxtProblem::NxDomain
            }
            Ok(TxtAnswer::NoData { negative_ttl }) => {
                absent = Some((Absent::NoData, self.negative_until(negative_ttl, now)));
                TxtProblem::NoData
            }
            Err(failure) => {
                if let Some(id) = self.refresh_id() {
                    return self.fetch_or_back_off(id, now);
                }
                let outcome = match self.fresh(now) {
                    Some(policy) => Outcome::Cached {
                        policy,
                        reason: CacheReason::DnsFailure(failure),
                    },
                    None => Outcome::TemporaryFailure(failure),
                };
                return self.finish(outcome, Update::None);
            }
        };
        if let Some(id) = self.refresh_id() {
            return self.fetch_or_back_off(id, now);
        }
        // R11: an unusable TXT record does not evict an unexpired cached policy.
        match self.fresh(now) {
            Some(policy) => {
                let reason = CacheReason::TxtUnusable(problem);
                self.finish(Outcome::Cached { policy, reason }, Update::None);
            }
            None => self.finish(
                Outcome::NoPolicy(NoPolicyReason::NoRecord(problem)),
                Update::ForgetExpired(absent),
            ),
        }
    }

    /// Until when a negative answer with this TTL is reused (see [`Config::negative_ttl`]).
    fn negative_until(&self, ttl: Option<Duration>, now: UnixTime) -> UnixTime {
        let n = self.params.negative;
        now.saturating_add(clamp_ttl(ttl, n.default, n.min, n.max))
    }

    /// R44: a refresh fetches whatever the TXT record says; without a usable TXT id it fetches
    /// under the cached one.
    fn refresh_id(&self) -> Option<RecordId> {
        match self.kind {
            LookupKind::Refresh => self.cached.as_ref().map(CachedPolicy::record_id),
            _ => None,
        }
    }

    fn on_id(&mut self, id: RecordId, now: UnixTime) {
        if self.kind != LookupKind::Refresh {
            // R9/R43: ids are compared for equality only; an unchanged id means no fetch. An
            // expired policy is never extended without a fetch (R42).
            if let Some(policy) = self.fresh(now).filter(|c| c.record_id() == id) {
                let outcome = Outcome::Cached {
                    policy,
                    reason: CacheReason::UnchangedId,
                };
                return self.finish(outcome, Update::None);
            }
        }
        self.fetch_or_back_off(id, now);
    }

    fn fetch_or_back_off(&mut self, id: RecordId, now: UnixTime) {
        // R19: after a failed fetch, the same id is not fetched again for a while.
        if let Some(memo) = self.memo.filter(|m| m.id == id) {
            let retry_at = memo.at.saturating_add(self.params.fetch_retry_after);
            if now < retry_at {
                let outcome = match self.fresh(now) {
                    Some(policy) => Outcome::Cached {
                        policy,
                        reason: CacheReason::RetryLater { retry_at },
                    },
                    None => Outcome::NoPolicy(NoPolicyReason::RetryLater { retry_at }),
                };
                return self.finish(outcome, Update::None);
            }
        }
        let t = self.params.fetch;
        let request = PolicyFetch {
            host: self.domain.policy_host(),
            port: t.port,
            max_body: t.max_body,
            timeout: t.timeout,
            content_type: t.content_type,
        };
        self.state = State::Fetch { request, id };
    }

    fn on_fetch(
        &mut self,
        request: &PolicyFetch,
        id: RecordId,
        result: FetchResult,
        now: UnixTime,
    ) {
        match check_response(request, result) {
            Ok(policy) => {
                let cached = CachedPolicy::new(policy, id, now);
                self.finish(Outcome::Fetched(cached.clone()), Update::Store(cached));
            }
            Err(problem) => {
                // R20/R43: a failed fetch never removes an unexpired cached policy.
                let outcome = match self.fresh(now) {
                    Some(policy) => Outcome::Cached {
                        policy,
                        reason: CacheReason::FetchFailed(problem),
                    },
                    None => Outcome::NoPolicy(NoPolicyReason::FetchFailed(problem)),
                };
                self.finish(outcome, Update::FetchFailed(FetchMemo { id, at: now }));
            }
        }
    }
}

/// Checks a fetch result against the request (status, media type, size; R15–R19) and parses the
/// body (default profile).
fn check_response(request: &PolicyFetch, result: FetchResult) -> Result<Policy, FetchProblem> {
    let response = result.map_err(FetchProblem::Fetch)?;
    request
        .check_head(response.status, response.content_type.as_deref())
        .map_err(FetchProblem::Fetch)?;
    if response.body.len() > request.max_body {
        let limit = request.max_body;
        return Err(FetchProblem::Fetch(FetchFailure::BodyTooLarge { limit }));
    }
    Policy::parse_bytes(&response.body, Profile::Default).map_err(FetchProblem::Invalid)
}
