//! TLSRPT (RFC 8460) in the client: the report POST over any runtime ([`post_report`]), the
//! settings ([`TlsRptSettings`]), the MTA's per-MX TLS results ([`TlsResult`]), the counters
//! ([`TlsRptStats`]), and the reporting state the client keeps: the core's aggregator and outbox
//! behind a mutex, the rounds that close days and drive the outbox, and the state files.

use std::fmt;
use std::future::poll_fn;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use event_listener::Event;
use futures_io::AsyncRead;
use mta_sts_core::UnixTime;
use mta_sts_core::io::FetchFailure;
use mta_sts_core::tlsrpt::aggregate::{
    Aggregator, AggregatorLimits, Dropped, Failure, MAX_AGGREGATE_SNAPSHOT, Recorded, Reporter,
    Session, SessionPolicy, SessionResult, TlsFailure,
};
use mta_sts_core::tlsrpt::deliver::{
    DeliveryEvent, DeliveryId, DeliveryIo, DeliveryResult, Outbox, OutboxConfig, OutboxSnapshot,
    PendingReport, PostResult, ReportMail, ReportPost,
};
use mta_sts_core::wire::http::{PostProgress, PostResponseParser, post_request};
use rustls::ClientConfig;

use crate::dns::{Resolver, far};
use crate::fetch::{FetchTrace, Target, open_tls, send};
use crate::persist::{load_state_file, write_atomically};
use crate::runtime::{BoxFuture, Runtime, until};
use crate::{classify_tls_error, server_name, with_read_buffer};

/// Carries out a report POST as [`ReportPost`] describes it, within `post.timeout`, like a
/// policy fetch ([`fetch_policy`](crate::fetch_policy)): the host's addresses through
/// `resolver`, one connection attempt per address, TLS with `tls` (a WebPKI configuration such
/// as [`policy_fetch_config`](crate::policy_fetch_config)) and SNI `post.host`, the request
/// bytes of [`post_request`], and the response read by the core's [`PostResponseParser`] (at
/// most `post.max_response` bytes of body, a 3xx never followed). Any final status is an
/// `Ok` [`PostResponse`](mta_sts_core::tlsrpt::deliver::PostResponse): the outbox decides that
/// only a 2xx is delivered.
pub async fn post_report<R: Runtime>(
    rt: &R,
    resolver: &dyn Resolver,
    tls: &Arc<ClientConfig>,
    post: &ReportPost,
) -> PostResult {
    let start = rt.now();
    let deadline = start
        .checked_add(post.timeout)
        .unwrap_or_else(|| far(start));
    until(rt, deadline, post_within(rt, resolver, tls, post, deadline))
        .await
        .unwrap_or(Err(FetchFailure::Timeout))
}

async fn post_within<R: Runtime>(
    rt: &R,
    resolver: &dyn Resolver,
    tls: &Arc<ClientConfig>,
    post: &ReportPost,
    deadline: Instant,
) -> PostResult {
    let name = server_name(&post.host).map_err(|e| FetchFailure::Resolve(e.to_string()))?;
    let target = Target {
        host: &post.host,
        name,
        port: post.port,
        timeout: post.timeout,
        deadline,
    };
    let mut tls = open_tls(rt, resolver, tls, target, &mut FetchTrace::default()).await?;
    send(&mut tls, &post_request(post)).await?;
    let mut parser = PostResponseParser::new(post);
    poll_fn(|cx| {
        with_read_buffer(|buf| {
            loop {
                let Poll::Ready(read) = Pin::new(&mut tls).poll_read(cx, buf) else {
                    return Poll::Pending;
                };
                match read {
                    Ok(0) => return Poll::Ready(parser.finish()),
                    Ok(n) => {
                        if let PostProgress::Complete(result) = parser.feed(&buf[..n]) {
                            return Poll::Ready(result);
                        }
                    }
                    Err(e) => return Poll::Ready(Err(classify_tls_error(&e))),
                }
            }
        })
    })
    .await
}

/// What the embedder does with a report for a `mailto:` URI: queue the message
/// ([`ReportMail::message`], from [`ReportMail::from`] to [`ReportMail::to`]) and answer `Ok`
/// once the MTA has taken responsibility for it, or `Err` with why not (the outbox retries).
///
/// The MTA must deliver it without requiring TLS (the message says `TLS-Required: No`; RFC 8460
/// §5.3: a report must reach a domain whose TLS is broken) and **must not** report on its
/// delivery: never call [`Client::record_tls_result`](crate::Client::record_tls_result) for a
/// message that [`is_report_mail`](mta_sts_core::tlsrpt::deliver::is_report_mail) recognises.
/// Called from the reporting task; it should not block for long.
pub type MailSink = Arc<MailFn>;

/// What a [`MailSink`] points at.
type MailFn = dyn Fn(ReportMail) -> Result<(), String> + Send + Sync;

/// The TLSRPT settings of a client ([`ClientBuilder::tlsrpt`](crate::ClientBuilder::tlsrpt)):
/// who reports, where the state is kept, what to do with `mailto:` reports, the aggregator's
/// caps and the outbox's schedule.
///
/// ```
/// use mta_sts_net::TlsRptSettings;
/// use mta_sts_core::tlsrpt::aggregate::Reporter;
///
/// let settings = TlsRptSettings::new(Reporter::new(
///     "Example Mail", "tlsrpt@mail.example.net", "mail.example.net",
/// ))
/// .persistence("/var/lib/mta/tlsrpt.json")
/// .mailto(|mail| {
///     // queue mail.message from mail.from to mail.to, without requiring TLS
///     # let _ = mail;
///     Ok(())
/// });
/// assert_eq!(settings.reporter().submitter, "mail.example.net");
/// ```
#[derive(Clone)]
pub struct TlsRptSettings {
    reporter: Reporter,
    persistence: Option<PathBuf>,
    mail: Option<MailSink>,
    limits: AggregatorLimits,
    outbox: OutboxConfig,
}

impl fmt::Debug for TlsRptSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsRptSettings")
            .field("reporter", &self.reporter)
            .field("persistence", &self.persistence)
            .field("mail", &self.mail.as_ref().map(|_| "callback"))
            .field("limits", &self.limits)
            .field("outbox", &self.outbox)
            .finish()
    }
}

impl TlsRptSettings {
    /// Reports signed by `reporter` (organisation, contact address, submitter domain), with the
    /// default caps ([`AggregatorLimits::default`]) and schedule ([`OutboxConfig::default`]:
    /// first sent within 4 hours after midnight, retried for 24 hours), no state file and no
    /// mail: `mailto:` reports fail (and are retried, then given up) until a
    /// [`mailto`](Self::mailto) callback is set.
    pub fn new(reporter: Reporter) -> Self {
        Self {
            reporter,
            persistence: None,
            mail: None,
            limits: AggregatorLimits::default(),
            outbox: OutboxConfig::default(),
        }
    }

    /// Keeps the day's counts in this file and the reports still to deliver in the file of
    /// the same name with `.outbox` added, across restarts (like the policy cache:
    /// [`ClientBuilder::persistence`](crate::ClientBuilder::persistence)). Both are loaded by
    /// `build` (a damaged file is moved aside and never stops it), written after each reporting
    /// round, at most every [`STATE_SAVE_INTERVAL`] while sessions are recorded, by
    /// [`Client::save`](crate::Client::save) and when the client's last handle is dropped.
    #[must_use]
    pub fn persistence(mut self, path: impl Into<PathBuf>) -> Self {
        self.persistence = Some(path.into());
        self
    }

    /// Hands each report for a `mailto:` URI to `sink` (see [`MailSink`]).
    #[must_use]
    pub fn mailto(
        mut self,
        sink: impl Fn(ReportMail) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.mail = Some(Arc::new(sink));
        self
    }

    /// The aggregator's caps on domains, policies and failure details.
    #[must_use]
    pub fn limits(mut self, limits: AggregatorLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The outbox's schedule (spread after midnight, retries, timeouts, caps, `From` of mail).
    #[must_use]
    pub fn outbox(mut self, config: OutboxConfig) -> Self {
        self.outbox = config;
        self
    }

    /// Who reports.
    pub fn reporter(&self) -> &Reporter {
        &self.reporter
    }

    /// The state file, if any.
    pub fn persistence_path(&self) -> Option<&Path> {
        self.persistence.as_deref()
    }

    /// The outbox file beside `path`: `<path>.outbox`.
    fn outbox_path(path: &Path) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".outbox");
        PathBuf::from(p)
    }
}

/// How often at most the reporting task saves the day's counts while sessions are being
/// recorded (a crash loses at most this much of the day).
pub const STATE_SAVE_INTERVAL: Duration = Duration::from_secs(300);

/// The most report deliveries (TXT discoveries, POSTs, mails) a reporting round has under way
/// at once.
pub const MAX_CONCURRENT_DELIVERIES: usize = 8;

/// One TLS session of the MTA to an MX host, for
/// [`Client::record_tls_result`](crate::Client::record_tls_result): the policy domain (the
/// next-hop domain asked about), the MX host connected to, the addresses on both ends, and
/// whether TLS was negotiated as the applicable policy requires.
///
/// ```
/// use mta_sts_net::TlsResult;
/// use mta_sts_core::io::CertificateProblem;
/// use mta_sts_core::tlsrpt::aggregate::TlsFailure;
///
/// let ok = TlsResult::success("example.com", "mx1.example.com")
///     .receiving_ip("192.0.2.25".parse().unwrap())
///     .sending_ip("198.51.100.7".parse().unwrap());
/// let expired = TlsResult::failure(
///     "example.com",
///     "mx2.example.com",
///     TlsFailure::Certificate(CertificateProblem::Expired),
/// );
/// assert!(ok.result.is_ok() && expired.result.is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsResult {
    /// The policy domain: the domain whose MTA-STS policy (or DANE records) applied.
    pub policy_domain: String,
    /// The MX host name connected to (`receiving-mx-hostname`).
    pub mx_host: String,
    /// The MX's address (`receiving-ip`).
    pub receiving_ip: Option<IpAddr>,
    /// The MTA's own address (`sending-mta-ip`).
    pub sending_ip: Option<IpAddr>,
    /// The name the MX gave in its greeting or EHLO answer (`receiving-mx-helo`).
    pub receiving_helo: Option<String>,
    /// `Ok` when TLS was negotiated as the policy requires; otherwise what failed.
    pub result: Result<(), TlsFailure>,
}

impl TlsResult {
    /// A session that negotiated TLS as the policy requires.
    pub fn success(policy_domain: impl Into<String>, mx_host: impl Into<String>) -> Self {
        Self {
            policy_domain: policy_domain.into(),
            mx_host: mx_host.into(),
            receiving_ip: None,
            sending_ip: None,
            receiving_helo: None,
            result: Ok(()),
        }
    }

    /// A session that failed with `failure`.
    pub fn failure(
        policy_domain: impl Into<String>,
        mx_host: impl Into<String>,
        failure: TlsFailure,
    ) -> Self {
        Self {
            result: Err(failure),
            ..Self::success(policy_domain, mx_host)
        }
    }

    /// Sets the MX's address.
    #[must_use]
    pub fn receiving_ip(mut self, ip: IpAddr) -> Self {
        self.receiving_ip = Some(ip);
        self
    }

    /// Sets the MTA's own address.
    #[must_use]
    pub fn sending_ip(mut self, ip: IpAddr) -> Self {
        self.sending_ip = Some(ip);
        self
    }

    /// Sets the name the MX gave in its greeting or EHLO answer.
    #[must_use]
    pub fn receiving_helo(mut self, helo: impl Into<String>) -> Self {
        self.receiving_helo = Some(helo.into());
        self
    }

    /// The session under `policy` at `time`.
    pub(crate) fn session(&self, policy: SessionPolicy, time: UnixTime) -> Session {
        let result = match &self.result {
            Ok(()) => SessionResult::Success,
            Err(failure) => {
                let mut f = Failure::from_tls(failure).with_receiving_mx_hostname(&self.mx_host);
                if let Some(ip) = self.receiving_ip {
                    f = f.with_receiving_ip(ip);
                }
                if let Some(ip) = self.sending_ip {
                    f = f.with_sending_mta_ip(ip);
                }
                if let Some(helo) = &self.receiving_helo {
                    f = f.with_receiving_mx_helo(helo);
                }
                SessionResult::Failure(f)
            }
        };
        Session::new(time, policy, result)
    }
}

/// The TLSRPT counters of a client ([`Client::tlsrpt_stats`](crate::Client::tlsrpt_stats)),
/// also exported through the `metrics` facade:
///
/// - `mta_sts_tlsrpt_sessions_total{result}`: `success`, `failure` (sessions counted);
/// - `mta_sts_tlsrpt_sessions_dropped_total{reason}`: `domains`, `policies`, `details` (a failed
///   session counted without its detail), `days`, `late`, `invalid` (the aggregator's caps);
/// - `mta_sts_tlsrpt_reports_total{result}`: `delivered` (a 2xx answer, or the MTA took the
///   mail), `retry` (an attempt failed, another is scheduled), `failed` (given up after the
///   retry window), `no_record` (the domain publishes no usable `_smtp._tls` record),
///   `refused` (the outbox was full);
/// - `mta_sts_tlsrpt_reports_pending`: the reports in the outbox (gauge).
///
/// `delivered`, `retry` and `failed` count each `rua` URI of a report apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsRptStats {
    /// Successful sessions counted.
    pub successful_sessions: u64,
    /// Failed sessions counted.
    pub failed_sessions: u64,
    /// What the aggregator's caps dropped.
    pub dropped: Dropped,
    /// Reports made from closed days.
    pub reports: u64,
    /// Reports the outbox refused (full).
    pub refused: u64,
    /// Deliveries to a URI that succeeded.
    pub delivered: u64,
    /// Attempts that failed and will be retried.
    pub retry: u64,
    /// Deliveries to a URI given up.
    pub failed: u64,
    /// Reports dropped because their domain publishes no usable record.
    pub no_record: u64,
    /// Reports in the outbox.
    pub pending: usize,
}

impl TlsRptStats {
    /// Publishes the counters through the `metrics` facade, as absolute values.
    pub fn export(&self) {
        use metrics::{counter, gauge};
        for (result, value) in [
            ("success", self.successful_sessions),
            ("failure", self.failed_sessions),
        ] {
            counter!("mta_sts_tlsrpt_sessions_total", "result" => result).absolute(value);
        }
        let d = &self.dropped;
        for (reason, value) in [
            ("domains", d.domains),
            ("policies", d.policies),
            ("details", d.details),
            ("days", d.days),
            ("late", d.late),
            ("invalid", d.invalid),
        ] {
            counter!("mta_sts_tlsrpt_sessions_dropped_total", "reason" => reason).absolute(value);
        }
        for (result, value) in [
            ("delivered", self.delivered),
            ("retry", self.retry),
            ("failed", self.failed),
            ("no_record", self.no_record),
            ("refused", self.refused),
        ] {
            counter!("mta_sts_tlsrpt_reports_total", "result" => result).absolute(value);
        }
        gauge!("mta_sts_tlsrpt_reports_pending").set(self.pending as f64);
    }
}

/// What the client keeps for TLSRPT, behind its own mutex.
struct State {
    aggregator: Aggregator,
    outbox: Outbox,
    stats: TlsRptStats,
    /// Sessions recorded since the last save.
    dirty: bool,
    /// When the state was last saved.
    saved_at: UnixTime,
    /// Deliveries finished since the client was built (for waiting in tests).
    handled: u64,
}

/// The client's TLSRPT side.
pub(crate) struct Reporting {
    settings: TlsRptSettings,
    state: Mutex<State>,
    /// Fires when a day can be closed (a session of a later day was recorded), when a round
    /// ends, and when deliveries were handled.
    pub(crate) changed: Event,
    /// One save at a time, so that an older state never overwrites a newer one.
    saving: async_lock::Mutex<()>,
}

impl fmt::Debug for Reporting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporting")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Reporting {
    /// The reporting state, loaded from the state files when there are (what cannot be used
    /// is logged and set aside, never an error).
    pub(crate) fn new(settings: TlsRptSettings, now: UnixTime) -> Self {
        let mut aggregator = Aggregator::new(settings.limits);
        let mut outbox = Outbox::new(settings.outbox.clone());
        if let Some(path) = &settings.persistence {
            let limits = settings.limits;
            let report = load_state_file(path, now, MAX_AGGREGATE_SNAPSHOT as u64, |bytes| {
                Aggregator::from_json(bytes, limits).map_err(|e| e.to_string())
            });
            log_load("aggregate", path, &report);
            if let Some((loaded, restore)) = report.loaded {
                aggregator = loaded;
                if restore.skipped > 0 || restore.not_loaded > 0 {
                    tracing::warn!(path = %path.display(), ?restore, "TLSRPT aggregate file");
                }
            }
            let outbox_path = TlsRptSettings::outbox_path(path);
            let config = settings.outbox.clone();
            let report = load_state_file(&outbox_path, now, MAX_OUTBOX_FILE, |bytes| {
                let snapshot: OutboxSnapshot =
                    serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
                let mut restored = Outbox::new(config);
                let report = restored.restore(snapshot, now).map_err(|e| e.to_string())?;
                Ok((restored, report))
            });
            log_load("outbox", &outbox_path, &report);
            if let Some((loaded, restore)) = report.loaded {
                outbox = loaded;
                if restore.skipped > 0 || restore.not_loaded > 0 {
                    tracing::warn!(path = %outbox_path.display(), ?restore, "TLSRPT outbox file");
                }
            }
        }
        let stats = TlsRptStats {
            dropped: aggregator.dropped(),
            pending: outbox.len(),
            ..TlsRptStats::default()
        };
        Self {
            settings,
            state: Mutex::new(State {
                aggregator,
                outbox,
                stats,
                dirty: false,
                saved_at: now,
                handled: 0,
            }),
            changed: Event::new(),
            saving: async_lock::Mutex::new(()),
        }
    }

    /// Counts `session`; whether it was counted (in the summary at least).
    pub(crate) fn record(&self, session: &Session, now: UnixTime) -> bool {
        let mut st = lock(&self.state);
        let recorded = st.aggregator.record(session);
        let counted = matches!(recorded, Recorded::Counted | Recorded::DroppedDetail);
        if counted {
            match session.result {
                SessionResult::Success => st.stats.successful_sessions += 1,
                _ => st.stats.failed_sessions += 1,
            }
            st.dirty = true;
        }
        st.stats.dropped = st.aggregator.dropped();
        let stats = st.stats;
        // A session of a later day lets the earlier one close: wake the reporting task.
        let due = st.aggregator.next_close().is_some_and(|at| at <= now);
        drop(st);
        stats.export();
        if due {
            self.changed.notify(usize::MAX);
        }
        counted
    }

    pub(crate) fn stats(&self) -> TlsRptStats {
        lock(&self.state).stats
    }

    /// When the reporting task has something to do next: a day to close, a delivery due, or a
    /// save of recorded sessions.
    pub(crate) fn next_due(&self) -> Option<UnixTime> {
        let st = lock(&self.state);
        let save = (st.dirty && self.settings.persistence.is_some())
            .then(|| st.saved_at.saturating_add(STATE_SAVE_INTERVAL));
        [st.aggregator.next_close(), st.outbox.poll_timeout(), save]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether recorded sessions wait for a save that is due.
    fn save_due(&self, now: UnixTime) -> bool {
        let st = lock(&self.state);
        self.settings.persistence.is_some()
            && st.dirty
            && st.saved_at.saturating_add(STATE_SAVE_INTERVAL) <= now
    }

    /// Deliveries finished since the client was built.
    pub(crate) fn handled(&self) -> u64 {
        lock(&self.state).handled
    }

    /// Closes the days ended by `now` into reports and puts them into the outbox. Returns how
    /// many.
    fn close_days(&self, now: UnixTime) -> usize {
        let mut st = lock(&self.state);
        if st.aggregator.next_close().is_none_or(|at| at > now) {
            return 0;
        }
        let reports = st.aggregator.close(now, &self.settings.reporter);
        let closed = reports.len();
        for report in reports {
            let domain = report.policy_domain.clone();
            if let Err(e) = st.outbox.push(PendingReport::from(&report), now) {
                tracing::warn!(domain, error = %e, "TLSRPT report refused");
                st.stats.refused += 1;
            }
            st.stats.reports += 1;
        }
        st.dirty |= closed > 0;
        st.stats.pending = st.outbox.len();
        closed
    }

    /// Counts what came of a delivery.
    fn count(&self, id: DeliveryId, result: DeliveryResult, now: UnixTime) {
        let mut st = lock(&self.state);
        for event in st.outbox.handle(id, result, now) {
            match event {
                DeliveryEvent::Delivered {
                    policy_domain, uri, ..
                } => {
                    tracing::info!(policy_domain, uri, "TLSRPT report delivered");
                    st.stats.delivered += 1;
                }
                DeliveryEvent::Retrying {
                    policy_domain,
                    uri,
                    attempt,
                    error,
                    ..
                } => {
                    tracing::info!(
                        policy_domain,
                        uri,
                        attempt,
                        error,
                        "TLSRPT report: retrying"
                    );
                    st.stats.retry += 1;
                }
                DeliveryEvent::GaveUp {
                    policy_domain,
                    uri,
                    error,
                    ..
                } => {
                    tracing::warn!(policy_domain, uri, error, "TLSRPT report given up");
                    st.stats.failed += 1;
                }
                DeliveryEvent::NoRecord {
                    policy_domain,
                    error,
                    ..
                } => {
                    tracing::info!(policy_domain, error, "TLSRPT report dropped: no record");
                    st.stats.no_record += 1;
                }
                _ => {}
            }
        }
        st.stats.pending = st.outbox.len();
        st.handled += 1;
        st.dirty = true;
        let stats = st.stats;
        drop(st);
        stats.export();
        self.changed.notify(usize::MAX);
    }

    /// One reporting round at `now()`: the days ended are closed into reports, then every
    /// delivery due is carried out (at most [`MAX_CONCURRENT_DELIVERIES`] at once) and its
    /// result handed to the outbox, until none is due or `stop` is set; then the state is saved
    /// if anything changed. Returns how many deliveries ran.
    pub(crate) async fn round<R: Runtime>(
        &self,
        io: &DeliveryIoContext<'_, R>,
        stop: Option<&AtomicBool>,
    ) -> usize {
        let closed = self.close_days((io.now)());
        let mut pending: Vec<BoxFuture<'_, (DeliveryId, DeliveryResult)>> = Vec::new();
        let mut ran = 0;
        // Each delivery's retry is later than `now`, so the round ends; the bound guards it.
        let limit = 4 * (lock(&self.state).outbox.len() + 1) * 16;
        loop {
            let stopping = stop.is_some_and(|s| s.load(Ordering::SeqCst));
            while !stopping && pending.len() < MAX_CONCURRENT_DELIVERIES && ran < limit {
                let next = lock(&self.state).outbox.poll_io((io.now)());
                let Some((id, request)) = next else { break };
                ran += 1;
                let mail = self.settings.mail.clone();
                pending.push(Box::pin(async move {
                    (id, io.perform(request, mail.as_deref()).await)
                }));
            }
            if pending.is_empty() {
                break;
            }
            let (id, result) = crate::client::first_of(&mut pending).await;
            self.count(id, result, (io.now)());
        }
        if (closed > 0 || ran > 0 || self.save_due((io.now)()))
            && let Err(e) = self.save(io.runtime, (io.now)()).await
        {
            tracing::warn!(error = %e, "cannot save the TLSRPT state");
        }
        self.changed.notify(usize::MAX);
        ran
    }

    /// Writes the state files, if configured (one save at a time).
    pub(crate) async fn save<R: Runtime>(&self, rt: &R, now: UnixTime) -> std::io::Result<()> {
        let Some(path) = self.settings.persistence.clone() else {
            return Ok(());
        };
        let _one_at_a_time = self.saving.lock().await;
        let (aggregate, outbox) = self.serialise(now);
        let result = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&result);
        let work = move || *lock(&slot) = Some(write_files(&path, &aggregate, &outbox));
        rt.unblock(Box::new(work)).await;
        let saved = lock(&result).take();
        saved.unwrap_or_else(|| Err(std::io::Error::other("the save did not run")))
    }

    /// The state as the bytes of its two files, marked saved at `now`.
    fn serialise(&self, now: UnixTime) -> (Vec<u8>, Vec<u8>) {
        let mut st = lock(&self.state);
        st.dirty = false;
        st.saved_at = now;
        let aggregate = st.aggregator.to_json();
        // A snapshot of plain data always serialises.
        let outbox = serde_json::to_vec(&st.outbox.snapshot()).unwrap_or_default();
        (aggregate, outbox)
    }

    /// Saves synchronously (the client's last handle is gone).
    pub(crate) fn save_now(&self, now: UnixTime) {
        let Some(path) = &self.settings.persistence else {
            return;
        };
        let (aggregate, outbox) = self.serialise(now);
        if let Err(e) = write_files(path, &aggregate, &outbox) {
            tracing::warn!(error = %e, "cannot save the TLSRPT state");
        }
    }
}

/// The largest outbox file read: the outbox's default byte cap in base64-free JSON arrays of
/// numbers would be far larger, so the cap follows the aggregate's.
const MAX_OUTBOX_FILE: u64 = 4 * MAX_AGGREGATE_SNAPSHOT as u64;

fn write_files(path: &Path, aggregate: &[u8], outbox: &[u8]) -> std::io::Result<()> {
    write_atomically(path, aggregate)?;
    write_atomically(&TlsRptSettings::outbox_path(path), outbox)
}

fn log_load<T>(what: &str, path: &Path, report: &crate::persist::StateFileReport<T>) {
    if report.has_problems() {
        tracing::warn!(path = %path.display(), "TLSRPT {what} file: {report}");
    }
}

/// What a reporting round carries out its deliveries with: the client's runtime, resolver,
/// TLS configuration and clock.
pub(crate) struct DeliveryIoContext<'a, R> {
    pub(crate) runtime: &'a R,
    pub(crate) resolver: &'a dyn Resolver,
    pub(crate) tls: &'a Arc<ClientConfig>,
    pub(crate) now: &'a (dyn Fn() -> UnixTime + Send + Sync),
}

impl<R: Runtime> DeliveryIoContext<'_, R> {
    async fn perform(&self, io: DeliveryIo, mail: Option<&MailFn>) -> DeliveryResult {
        match io {
            DeliveryIo::Discover(query) => DeliveryResult::Discover(
                crate::client::txt_within(self.runtime, self.resolver, &query).await,
            ),
            DeliveryIo::Post(post) => DeliveryResult::Post(
                Box::pin(post_report(self.runtime, self.resolver, self.tls, &post)).await,
            ),
            DeliveryIo::Mail(message) => DeliveryResult::Mail(match mail {
                Some(sink) => sink(message),
                None => Err("no mailto callback configured (TlsRptSettings::mailto)".into()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t13_tlsrpt_metrics_names_and_labels_are_the_documented_ones() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let mut stats = TlsRptStats {
            successful_sessions: 5,
            failed_sessions: 2,
            delivered: 3,
            retry: 4,
            failed: 1,
            no_record: 6,
            refused: 7,
            pending: 8,
            ..TlsRptStats::default()
        };
        stats.dropped.late = 9;
        metrics::with_local_recorder(&recorder, || stats.export());
        let mut seen = std::collections::BTreeMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let k = key.key();
            let labels: Vec<String> = k
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let v = match value {
                DebugValue::Counter(c) => c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => f64::NAN,
            };
            seen.insert(format!("{}{{{}}}", k.name(), labels.join(",")), v);
        }
        let reports = |r: &str| seen[&format!("mta_sts_tlsrpt_reports_total{{result={r}}}")];
        assert_eq!(
            ["delivered", "retry", "failed", "no_record", "refused"].map(reports),
            [3.0, 4.0, 1.0, 6.0, 7.0]
        );
        assert_eq!(seen["mta_sts_tlsrpt_sessions_total{result=success}"], 5.0);
        assert_eq!(seen["mta_sts_tlsrpt_sessions_total{result=failure}"], 2.0);
        assert_eq!(
            seen["mta_sts_tlsrpt_sessions_dropped_total{reason=late}"],
            9.0
        );
        assert_eq!(seen["mta_sts_tlsrpt_reports_pending{}"], 8.0);
        assert_eq!(seen.len(), 5 + 2 + 6 + 1, "{seen:?}");
    }

    #[test]
    fn t13_a_tls_result_becomes_a_session_with_its_failure_detail() {
        use mta_sts_core::io::CertificateProblem;
        let at = UnixTime::from_secs(1_767_225_600);
        let policy = SessionPolicy::no_policy_found("example.com");
        let ok = TlsResult::success("example.com", "mx1.example.com").session(policy.clone(), at);
        assert_eq!(ok.result, SessionResult::Success);
        let failed = TlsResult::failure(
            "example.com",
            "mx2.example.com",
            TlsFailure::Certificate(CertificateProblem::NameMismatch),
        )
        .receiving_ip("192.0.2.25".parse().unwrap())
        .sending_ip("198.51.100.7".parse().unwrap())
        .receiving_helo("mx2.example.com")
        .session(policy, at);
        let SessionResult::Failure(f) = &failed.result else {
            panic!("{failed:?}")
        };
        assert_eq!(
            f.result_type,
            mta_sts_core::tlsrpt::ResultType::CertificateHostMismatch
        );
        assert_eq!(f.receiving_mx_hostname.as_deref(), Some("mx2.example.com"));
        assert_eq!(f.receiving_mx_helo.as_deref(), Some("mx2.example.com"));
        assert_eq!(f.receiving_ip, Some("192.0.2.25".parse().unwrap()));
        assert_eq!(f.sending_mta_ip, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(failed.time, at);
    }
}
