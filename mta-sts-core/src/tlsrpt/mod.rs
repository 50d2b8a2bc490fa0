//! TLSRPT (RFC 8460): what a sending MTA saw of MTA-STS and DANE, reported to the domain.
//!
//! - [`model`]: the result model of §4.3 ([`PolicyType`], [`ResultType`]) and the JSON report
//!   of §4.4 ([`Report`]).
//! - [`record`]: the `_smtp._tls.<domain>` TXT record (§3).
//! - [`read`]: the reader of received reports (`.json`, `.json.gz`, a whole mail), with the
//!   warnings real reporters earn.
//! - [`aggregate`]: sessions counted per policy domain, policy and UTC day, closed into reports.
//! - [`output`]: the report as JSON, gzip, §5.3 file name, HTTPS POST and mail message.
//! - [`deliver`]: the submission schedule (discovery, POST or mail, retries for 24 hours).
//!
//! # Driving it
//!
//! As for the policy engine, time is passed in and the I/O is the adapter's: the [`Aggregator`]
//! counts each [`Session`] (a delivery attempt to one MX, or what a policy lookup implied:
//! [`Session::from_outcome`]); at each UTC midnight [`Aggregator::close`] turns the day into one
//! [`DayReport`] per policy domain; the [`Outbox`] discovers each domain's `_smtp._tls` record
//! and asks for one POST or mail per `rua` URI ([`Outbox::poll_io`]), and takes the answers
//! ([`Outbox::handle`]), retrying failures with backoff for 24 hours. Report traffic is never
//! itself recorded as a session ([`is_report_mail`] tells an MTA which mail to leave out).
//!
//! ```
//! use std::time::Duration;
//! use mta_sts_core::io::{CertificateProblem, TxtAnswer};
//! use mta_sts_core::tlsrpt::{
//!     Aggregator, AggregatorLimits, DeliveryEvent, DeliveryIo, DeliveryResult, Failure, Outbox,
//!     OutboxConfig, PendingReport, PostResponse, Reporter, Session, SessionPolicy,
//!     SessionResult, TlsFailure,
//! };
//! use mta_sts_core::{Policy, UnixTime};
//!
//! let policy = Policy::parse("version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400\n")?;
//! let day = UnixTime::from_secs(1_767_225_600); // 2026-01-01T00:00:00Z
//! let sts = SessionPolicy::sts("example.com", &policy);
//!
//! // During the day: what the MTA saw of each STARTTLS session under the policy.
//! let mut aggregator = Aggregator::new(AggregatorLimits::default());
//! let noon = day.saturating_add(Duration::from_secs(12 * 3600));
//! aggregator.record(&Session::new(noon, sts.clone(), SessionResult::Success));
//! let expired = Failure::from_tls(&TlsFailure::Certificate(CertificateProblem::Expired))
//!     .with_receiving_mx_hostname("mx.example.com");
//! aggregator.record(&Session::new(noon, sts, SessionResult::Failure(expired)));
//!
//! // At midnight (UTC) the day closes into one report per policy domain.
//! let midnight = day.saturating_add(Duration::from_secs(86_400));
//! let reporter = Reporter::new("Example Sender", "tlsrpt@sender.example", "sender.example");
//! let reports = aggregator.close(midnight, &reporter);
//! assert_eq!(reports.len(), 1);
//! let summary = reports[0].report.policies[0].summary;
//! assert_eq!((summary.total_successful_session_count, summary.total_failure_session_count), (1, 1));
//!
//! // The outbox delivers it: discovery, then a POST per https URI (a mail per mailto URI).
//! let mut outbox = Outbox::new(OutboxConfig::default());
//! outbox.push(PendingReport::from(&reports[0]), midnight)?;
//! let mut now = midnight;
//! let mut delivered = false;
//! while !delivered {
//!     let Some((id, io)) = outbox.poll_io(now) else {
//!         now = outbox.poll_timeout().expect("a report is pending"); // sleep until then
//!         continue;
//!     };
//!     let result = match io {
//!         DeliveryIo::Discover(query) => {
//!             assert_eq!(query.name, "_smtp._tls.example.com");
//!             let record = b"v=TLSRPTv1; rua=https://reports.example.com/tlsrpt".to_vec();
//!             DeliveryResult::Discover(Ok(TxtAnswer::Records(vec![record])))
//!         }
//!         DeliveryIo::Post(post) => {
//!             assert_eq!(post.url, "https://reports.example.com/tlsrpt");
//!             DeliveryResult::Post(Ok(PostResponse::new(200)))
//!         }
//!         DeliveryIo::Mail(_) => unreachable!("no mailto URI here"),
//!     };
//!     for event in outbox.handle(id, result, now) {
//!         delivered |= matches!(event, DeliveryEvent::Delivered { .. });
//!     }
//! }
//! assert!(outbox.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod aggregate;
pub mod deliver;
pub mod model;
pub mod output;
pub mod read;
pub mod record;

pub use model::{
    DateRange, FailureDetail, PolicyDescription, PolicyReport, PolicyType, Report, ResultType,
    Summary, UnknownName,
};

// record: the `_smtp._tls` TXT record (§3).
pub use record::{
    MAX_RECORD_LEN, MAX_URIS, ReportUri, TlsRptError, TlsRptErrorKind, TlsRptLayout, TlsRptRecord,
    TlsRptWarning, TlsRptWarningKind, UriProblem, record_name,
};

// read: the reader of received reports.
pub use read::{
    MAX_WARNINGS, ReadError, ReadErrorKind, ReadLimits, ReadReport, ReportFormat, ReportWarning,
    ReportWarningKind, parse_datetime, read_report, validate,
};

// deliver (helper tlsrpt-deliver)
pub use deliver::{
    DeliveryEvent, DeliveryId, DeliveryIo, DeliveryResult, OUTBOX_SNAPSHOT_FORMAT,
    OUTBOX_SNAPSHOT_VERSION, Outbox, OutboxConfig, OutboxFull, OutboxRestoreReport, OutboxSnapshot,
    OutboxSnapshotError, PendingReport, PostResponse, PostResult, REPORT_MEDIA_TYPE, ReportMail,
    ReportPost, is_report_mail, report_mail,
};

// tlsrpt-aggregate: the aggregator and the report as written.
pub use aggregate::{
    AGGREGATE_FORMAT, AGGREGATE_VERSION, AggregateSnapshot, AggregateSnapshotError, Aggregator,
    AggregatorLimits, Dropped, Failure, MAX_AGGREGATE_SNAPSHOT, MAX_DETAIL_TEXT, MAX_POLICY_TEXT,
    Recorded, Reporter, RestoreProblem, RestoreReport, Session, SessionPolicy, SessionResult,
    TlsFailure,
};
pub use output::{DayReport, format_datetime, utc_day_start};
