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
