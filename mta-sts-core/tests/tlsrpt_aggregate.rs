//! TLSRPT aggregation and report output (REQUIREMENTS.md T3–T7): what the engine saw as
//! RFC 8460 result types, the aggregator's counts and caps, persistence, the UTC day, and
//! the report as written.
#![cfg(feature = "tlsrpt")]

use std::io::Read as _;
use std::net::IpAddr;

use mta_sts_core::io::{CertificateProblem, FetchFailure};
use mta_sts_core::tlsrpt::{
    AggregateSnapshot, AggregateSnapshotError, Aggregator, AggregatorLimits, Failure, PolicyType,
    Recorded, Report, Reporter, RestoreProblem, ResultType, Session, SessionPolicy, SessionResult,
    TlsFailure, format_datetime, utc_day_start,
};
use mta_sts_core::{
    CacheReason, CachedPolicy, Config, FetchProblem, NoPolicyReason, Outcome, Policy, PolicyCache,
    Snapshot, SnapshotEntry, Tlsa, TxtProblem, UnixTime,
};
use proptest::prelude::*;

/// 2026-01-01T00:00:00Z.
const DAY1: u64 = 1_767_225_600;
const DAY: u64 = 86_400;

fn at(secs: u64) -> UnixTime {
    UnixTime::from_secs(secs)
}

fn limits(set: impl FnOnce(&mut AggregatorLimits)) -> AggregatorLimits {
    let mut limits = AggregatorLimits::default();
    set(&mut limits);
    limits
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn reporter() -> Reporter {
    Reporter::new("Example Org", "tlsrpt@sender.example", "sender.example")
}

fn sts_policy(mode: &str) -> Policy {
    Policy::parse(&format!(
        "version: STSv1\nmode: {mode}\nmx: mx.example.com\nmx: *.backup.example.com\nmax_age: 86400\n"
    ))
    .unwrap()
}

fn success(time: u64, policy: &SessionPolicy) -> Session {
    Session::new(at(time), policy.clone(), SessionResult::Success)
}

fn failure(time: u64, policy: &SessionPolicy, f: Failure) -> Session {
    Session::new(at(time), policy.clone(), SessionResult::Failure(f))
}

fn expired() -> Failure {
    Failure::from_tls(&TlsFailure::Certificate(CertificateProblem::Expired))
        .with_sending_mta_ip(ip("198.51.100.1"))
        .with_receiving_mx_hostname("mx.example.com")
        .with_receiving_ip(ip("192.0.2.25"))
}

/// A cached policy of `example.com` in the given mode, as the engine hands it out.
fn cached(mode: &str) -> CachedPolicy {
    let now = at(DAY1);
    let body = sts_policy(mode).to_string();
    let entry = SnapshotEntry::new("example.com", "20260101", now, now, body);
    let mut cache = PolicyCache::new(Config::default());
    cache.import(Snapshot::new(vec![entry]), now).unwrap();
    cache.peek("example.com").unwrap().clone()
}

fn every_fetch_failure() -> Vec<FetchFailure> {
    vec![
        FetchFailure::Resolve("NXDOMAIN".into()),
        FetchFailure::Connect("connection refused".into()),
        FetchFailure::Certificate(CertificateProblem::Expired),
        FetchFailure::Certificate(CertificateProblem::NameMismatch),
        FetchFailure::Tls("protocol version".into()),
        FetchFailure::Timeout,
        FetchFailure::BodyTooLarge { limit: 65_536 },
        FetchFailure::Redirect(301),
        FetchFailure::Status(404),
        FetchFailure::ContentType(Some("text/html".into())),
        FetchFailure::Protocol("bad status line".into()),
    ]
}

fn the_failure(session: &Session) -> &Failure {
    match &session.result {
        SessionResult::Failure(f) => f,
        other => panic!("not a failure: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// T3: what the engine saw, as result types

#[test]
fn t3_every_certificate_problem_maps_to_its_result_type_and_reason() {
    let cases = [
        (
            CertificateProblem::Expired,
            ResultType::CertificateExpired,
            None,
        ),
        (
            CertificateProblem::NameMismatch,
            ResultType::CertificateHostMismatch,
            None,
        ),
        (
            CertificateProblem::UnknownIssuer,
            ResultType::CertificateNotTrusted,
            Some("unknown-issuer"),
        ),
        (
            CertificateProblem::Other("bad signature".into()),
            ResultType::CertificateNotTrusted,
            Some("bad signature"),
        ),
        (
            CertificateProblem::NotYetValid,
            ResultType::ValidationFailure,
            Some("certificate-not-yet-valid"),
        ),
        (
            CertificateProblem::NoCertificate,
            ResultType::ValidationFailure,
            Some("no-certificate"),
        ),
    ];
    for (problem, result_type, reason) in cases {
        assert_eq!(
            ResultType::for_certificate(&problem),
            result_type,
            "{problem:?}"
        );
        let tls = TlsFailure::Certificate(problem.clone());
        assert_eq!(ResultType::for_tls_failure(&tls), result_type);
        let f = Failure::from_tls(&tls);
        assert_eq!(f.result_type, result_type);
        assert_eq!(f.failure_reason_code.as_deref(), reason, "{problem:?}");
    }
}

#[test]
fn t3_tls_failures_map_to_negotiation_and_dane_types() {
    let cases = [
        (
            TlsFailure::StarttlsNotSupported,
            ResultType::StarttlsNotSupported,
            None,
        ),
        (TlsFailure::TlsaInvalid, ResultType::TlsaInvalid, None),
        (TlsFailure::DnssecInvalid, ResultType::DnssecInvalid, None),
        (TlsFailure::DaneRequired, ResultType::DaneRequired, None),
        (
            TlsFailure::Other("X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION".into()),
            ResultType::ValidationFailure,
            Some("X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION"),
        ),
    ];
    for (tls, result_type, reason) in cases {
        let f = Failure::from_tls(&tls);
        assert_eq!(
            (f.result_type, f.failure_reason_code.as_deref()),
            (result_type, reason)
        );
    }
}

#[test]
fn t3_every_fetch_failure_is_fetch_error_or_webpki_invalid() {
    for failure in every_fetch_failure() {
        let expected = if matches!(failure, FetchFailure::Certificate(_)) {
            ResultType::StsWebpkiInvalid
        } else {
            ResultType::StsPolicyFetchError
        };
        let problem = FetchProblem::Fetch(failure.clone());
        assert_eq!(
            ResultType::for_fetch_problem(&problem),
            expected,
            "{failure:?}"
        );
        // The same through a lookup outcome, with the problem's text as the reason code.
        let outcome = Outcome::NoPolicy(NoPolicyReason::FetchFailed(problem.clone()));
        let session = Session::from_outcome("example.com", &outcome, at(DAY1)).unwrap();
        let f = the_failure(&session);
        assert_eq!(f.result_type, expected);
        assert_eq!(f.failure_reason_code, Some(problem.to_string()));
        assert_eq!(session.time, at(DAY1));
    }
}

#[test]
fn t3_invalid_policy_is_sts_policy_invalid() {
    let error = Policy::parse("version: STSv1\nmode: sometimes\n").unwrap_err();
    let problem = FetchProblem::Invalid(error);
    assert_eq!(
        ResultType::for_fetch_problem(&problem),
        ResultType::StsPolicyInvalid
    );
    let outcome = Outcome::Cached {
        policy: cached("enforce"),
        reason: CacheReason::FetchFailed(problem),
    };
    let session = Session::from_outcome("example.com", &outcome, at(DAY1)).unwrap();
    assert_eq!(
        the_failure(&session).result_type,
        ResultType::StsPolicyInvalid
    );
}

#[test]
fn t3_outcome_reports_a_failed_fetch_under_its_policy_and_nothing_else() {
    let fetch = || FetchProblem::Fetch(FetchFailure::Status(503));
    // A failed fetch without a cached policy: an `sts` policy without policy-string.
    let outcome = Outcome::NoPolicy(NoPolicyReason::FetchFailed(fetch()));
    let session = Session::from_outcome("example.com", &outcome, at(DAY1)).unwrap();
    assert_eq!(session.policy.policy_type, PolicyType::Sts);
    assert_eq!(session.policy.policy_domain, "example.com");
    assert!(session.policy.policy_string.is_empty() && session.policy.mx_host.is_empty());
    // A failed fetch with a cached policy (testing, enforce): reported under that policy.
    for mode in ["testing", "enforce"] {
        let outcome = Outcome::Cached {
            policy: cached(mode),
            reason: CacheReason::FetchFailed(fetch()),
        };
        let session = Session::from_outcome("example.com", &outcome, at(DAY1)).unwrap();
        assert_eq!(
            session.policy,
            SessionPolicy::sts("example.com", &sts_policy(mode))
        );
        assert_eq!(
            the_failure(&session).result_type,
            ResultType::StsPolicyFetchError
        );
    }
    // Mode none, and every outcome that is not a failed fetch: nothing.
    let nothing = [
        Outcome::Cached {
            policy: cached("none"),
            reason: CacheReason::FetchFailed(fetch()),
        },
        Outcome::Fetched(cached("enforce")),
        Outcome::Cached {
            policy: cached("enforce"),
            reason: CacheReason::Fresh,
        },
        Outcome::Cached {
            policy: cached("enforce"),
            reason: CacheReason::TxtUnusable(TxtProblem::NxDomain),
        },
        Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::NxDomain)),
        Outcome::NoPolicy(NoPolicyReason::Disabled),
        Outcome::TemporaryFailure(mta_sts_core::io::DnsFailure::Timeout),
    ];
    for outcome in nothing {
        assert_eq!(
            Session::from_outcome("example.com", &outcome, at(DAY1)),
            None,
            "{outcome}"
        );
    }
}

#[test]
fn t3_session_policies_of_the_three_types() {
    let sts = SessionPolicy::sts("example.com", &sts_policy("testing"));
    assert_eq!(
        sts.policy_string,
        [
            "version: STSv1",
            "mode: testing",
            "mx: mx.example.com",
            "mx: *.backup.example.com",
            "max_age: 86400"
        ]
    );
    assert_eq!(sts.mx_host, ["mx.example.com", "*.backup.example.com"]);
    let records = [
        Tlsa::new(3, 1, 1, vec![0x1f; 32]),
        Tlsa::new(2, 0, 1, vec![0x12; 32]),
    ];
    let tlsa = SessionPolicy::tlsa("example.com", &records);
    assert_eq!(tlsa.policy_type, PolicyType::Tlsa);
    assert_eq!(
        tlsa.policy_string,
        [
            format!("3 1 1 {}", "1f".repeat(32)),
            format!("2 0 1 {}", "12".repeat(32))
        ]
    );
    let none = SessionPolicy::no_policy_found("example.com");
    assert_eq!(none.policy_type, PolicyType::NoPolicyFound);
    assert!(none.policy_string.is_empty());
}

#[test]
fn t3_successes_and_failures_count_in_the_summary() {
    let policy = SessionPolicy::sts("example.com", &sts_policy("testing"));
    let mut a = Aggregator::new(AggregatorLimits::default());
    for i in 0..5 {
        assert_eq!(a.record(&success(DAY1 + i, &policy)), Recorded::Counted);
    }
    assert_eq!(
        a.record(&failure(DAY1 + 9, &policy, expired())),
        Recorded::Counted
    );
    assert_eq!(a.sessions(), 6);
    let reports = a.close(at(DAY1 + DAY), &reporter());
    let summary = reports[0].report.policies[0].summary;
    assert_eq!(summary.total_successful_session_count, 5);
    assert_eq!(summary.total_failure_session_count, 1);
    assert_eq!(a.sessions(), 0);
}

// ---------------------------------------------------------------------------------------------
// T4: aggregation in bounded memory

#[test]
fn t4_failures_grouped_by_every_detail_field() {
    let policy = SessionPolicy::sts("example.com", &sts_policy("enforce"));
    let mut a = Aggregator::new(AggregatorLimits::default());
    let base = expired();
    let variants = [
        base.clone(),
        {
            let mut f = base.clone();
            f.result_type = ResultType::CertificateHostMismatch;
            f
        },
        base.clone().with_sending_mta_ip(ip("198.51.100.2")),
        base.clone().with_receiving_mx_hostname("mx2.example.com"),
        base.clone().with_receiving_mx_helo("helo.example.com"),
        base.clone().with_receiving_ip(ip("2001:db8::25")),
        base.clone().with_failure_reason_code("X"),
        base.clone()
            .with_additional_information("https://sender.example/why"),
    ];
    for (i, f) in variants.iter().enumerate() {
        // The first twice, the others once: the same fields are one detail.
        for _ in 0..if i == 0 { 2 } else { 1 } {
            assert_eq!(
                a.record(&failure(DAY1 + 1, &policy, f.clone())),
                Recorded::Counted
            );
        }
    }
    assert_eq!(a.details(), variants.len());
    let reports = a.close(at(DAY1 + DAY), &reporter());
    let p = &reports[0].report.policies[0];
    assert_eq!(p.summary.total_failure_session_count, 9);
    assert_eq!(p.failure_details.len(), variants.len());
    let counts: u64 = p
        .failure_details
        .iter()
        .map(|d| d.failed_session_count)
        .sum();
    assert_eq!(counts, 9);
    let twice: Vec<_> = p
        .failure_details
        .iter()
        .filter(|d| d.failed_session_count == 2)
        .collect();
    assert_eq!(twice.len(), 1);
    assert_eq!(twice[0].result_type, "certificate-expired");
    assert_eq!(twice[0].receiving_mx_helo, None);
    assert_eq!(twice[0].failure_reason_code, None);
}

#[test]
fn t4_policies_of_a_domain_counted_apart_in_one_report() {
    let sts = SessionPolicy::sts("example.com", &sts_policy("enforce"));
    let sts_old = SessionPolicy::sts("example.com", &sts_policy("testing"));
    let tlsa = SessionPolicy::tlsa("example.com", &[Tlsa::new(3, 1, 1, vec![0xab; 32])]);
    let other = SessionPolicy::no_policy_found("other.example");
    let mut a = Aggregator::new(AggregatorLimits::default());
    for p in [&sts, &sts, &sts_old, &tlsa, &other] {
        assert_eq!(a.record(&success(DAY1 + 5, p)), Recorded::Counted);
    }
    assert_eq!(a.domains(), 2);
    let reports = a.close(at(DAY1 + DAY), &reporter());
    let domains: Vec<_> = reports.iter().map(|r| r.policy_domain.as_str()).collect();
    assert_eq!(domains, ["example.com", "other.example"]);
    let policies = &reports[0].report.policies;
    assert_eq!(policies.len(), 3);
    let count = |mode: &str| {
        policies
            .iter()
            .find(|p| p.policy.policy_string.iter().any(|l| l == mode))
            .map(|p| p.summary.total_successful_session_count)
    };
    assert_eq!(count("mode: enforce"), Some(2));
    assert_eq!(count("mode: testing"), Some(1));
    assert!(policies.iter().any(|p| p.policy.policy_type == "tlsa"));
}

#[test]
fn t4_policy_domain_normalised_and_invalid_refused() {
    let mut a = Aggregator::new(AggregatorLimits::default());
    let upper = SessionPolicy::no_policy_found("EXAMPLE.com.");
    let idn = SessionPolicy::no_policy_found("bücher.example");
    assert_eq!(a.record(&success(DAY1, &upper)), Recorded::Counted);
    assert_eq!(
        a.record(&success(
            DAY1,
            &SessionPolicy::no_policy_found("example.com")
        )),
        Recorded::Counted
    );
    assert_eq!(a.record(&success(DAY1, &idn)), Recorded::Counted);
    for bad in ["", "[192.0.2.1]", "a..b"] {
        let p = SessionPolicy::no_policy_found(bad);
        assert_eq!(
            a.record(&success(DAY1, &p)),
            Recorded::InvalidDomain,
            "{bad:?}"
        );
    }
    assert_eq!(a.dropped().invalid, 3);
    let reports = a.close(at(DAY1 + DAY), &reporter());
    let domains: Vec<_> = reports.iter().map(|r| r.policy_domain.as_str()).collect();
    assert_eq!(domains, ["example.com", "xn--bcher-kva.example"]);
    assert_eq!(
        reports[0].report.policies[0].policy.policy_domain,
        "example.com"
    );
    assert_eq!(
        reports[0].report.policies[0]
            .summary
            .total_successful_session_count,
        2
    );
}

#[test]
fn t4_domain_and_policy_caps_drop_and_count() {
    let limits = limits(|l| {
        l.max_domains = 2;
        l.max_policies_per_domain = 1;
    });
    let mut a = Aggregator::new(limits);
    let p = |d: &str| SessionPolicy::no_policy_found(d);
    assert_eq!(a.record(&success(DAY1, &p("a.example"))), Recorded::Counted);
    assert_eq!(a.record(&success(DAY1, &p("b.example"))), Recorded::Counted);
    assert_eq!(
        a.record(&success(DAY1, &p("c.example"))),
        Recorded::DroppedDomain
    );
    // The cap is on (domain, day) entries over all open days.
    assert_eq!(
        a.record(&success(DAY1 + DAY, &p("a.example"))),
        Recorded::DroppedDomain
    );
    assert_eq!(a.record(&success(DAY1, &p("a.example"))), Recorded::Counted);
    let tlsa = SessionPolicy::tlsa("a.example", &[]);
    assert_eq!(a.record(&success(DAY1, &tlsa)), Recorded::DroppedPolicy);
    let dropped = a.dropped();
    assert_eq!((dropped.domains, dropped.policies), (2, 1));
    assert_eq!((a.domains(), a.sessions()), (2, 3));
}

#[test]
fn t4_detail_caps_keep_the_summary_exact() {
    let limits = limits(|l| {
        l.max_details_per_domain = 2;
        l.max_details = 3;
    });
    let mut a = Aggregator::new(limits);
    let pa = SessionPolicy::no_policy_found("a.example");
    let pb = SessionPolicy::no_policy_found("b.example");
    let f = |n: u8| {
        Failure::new(ResultType::StarttlsNotSupported)
            .with_receiving_ip(ip(&format!("192.0.2.{n}")))
    };
    assert_eq!(a.record(&failure(DAY1, &pa, f(1))), Recorded::Counted);
    assert_eq!(a.record(&failure(DAY1, &pa, f(2))), Recorded::Counted);
    assert_eq!(a.record(&failure(DAY1, &pa, f(3))), Recorded::DroppedDetail);
    // A detail already held still counts.
    assert_eq!(a.record(&failure(DAY1, &pa, f(1))), Recorded::Counted);
    assert_eq!(a.record(&failure(DAY1, &pb, f(1))), Recorded::Counted);
    // The total cap (3) is reached before b's own (2).
    assert_eq!(a.record(&failure(DAY1, &pb, f(2))), Recorded::DroppedDetail);
    assert_eq!(a.dropped().details, 2);
    assert_eq!(a.details(), 3);
    let reports = a.close(at(DAY1 + DAY), &reporter());
    let pa = &reports[0].report.policies[0];
    assert_eq!(pa.summary.total_failure_session_count, 4);
    let in_details: u64 = pa
        .failure_details
        .iter()
        .map(|d| d.failed_session_count)
        .sum();
    assert_eq!(in_details, 3);
    assert_eq!(
        reports[1].report.policies[0]
            .summary
            .total_failure_session_count,
        2
    );
    assert_eq!(a.details(), 0);
}

#[test]
fn t4_day_cap_and_times_beyond_rfc3339() {
    let limits = limits(|l| {
        l.max_days = 2;
    });
    let mut a = Aggregator::new(limits);
    let p = SessionPolicy::no_policy_found("example.com");
    assert_eq!(a.record(&success(DAY1, &p)), Recorded::Counted);
    assert_eq!(a.record(&success(DAY1 + DAY, &p)), Recorded::Counted);
    assert_eq!(a.record(&success(DAY1 + 2 * DAY, &p)), Recorded::DroppedDay);
    assert_eq!(a.record(&success(u64::MAX, &p)), Recorded::DroppedDay);
    // The last day of the year 9999 is not counted either (its end is the year 10000).
    assert_eq!(
        a.record(&success(253_402_300_799, &p)),
        Recorded::DroppedDay
    );
    assert_eq!(a.dropped().days, 3);
}

#[test]
fn t4_long_texts_are_cut() {
    let mut a = Aggregator::new(AggregatorLimits::default());
    let mut p = SessionPolicy::no_policy_found("example.com");
    p.policy_string = vec!["x".repeat(10_000), "y".repeat(10_000)];
    let f = Failure::new(ResultType::ValidationFailure).with_failure_reason_code("é".repeat(1000));
    assert_eq!(a.record(&failure(DAY1, &p, f.clone())), Recorded::Counted);
    assert_eq!(a.record(&failure(DAY1, &p, f)), Recorded::Counted);
    let reports = a.close(at(DAY1 + DAY), &reporter());
    let policy = &reports[0].report.policies[0];
    assert_eq!(policy.policy.policy_string, ["x".repeat(10_000)]);
    let detail = &policy.failure_details[0];
    assert_eq!(detail.failed_session_count, 2);
    assert_eq!(
        detail.failure_reason_code.as_deref(),
        Some("é".repeat(256).as_str())
    );
}

/// One million sessions over 100,000 domains: the aggregator holds at most `max_domains`
/// entries and counts everything else as dropped.
#[test]
fn t4_a_million_sessions_over_100k_domains_stay_within_the_caps() {
    let limits = AggregatorLimits::default();
    let mut a = Aggregator::new(limits);
    let mut session = success(DAY1, &SessionPolicy::no_policy_found("d0.example"));
    let (mut counted, mut dropped_domain, mut dropped_detail) = (0u64, 0u64, 0u64);
    for i in 0..1_000_000u64 {
        let domain = i % 100_000;
        session.policy.policy_domain.clear();
        session
            .policy
            .policy_domain
            .push_str(&format!("d{domain}.example"));
        session.time = at(DAY1 + i % DAY);
        session.result = if i % 4 == 0 {
            SessionResult::Failure(
                Failure::new(ResultType::StarttlsNotSupported)
                    .with_receiving_mx_hostname(format!("mx{}.example", i / 100_000)),
            )
        } else {
            SessionResult::Success
        };
        match a.record(&session) {
            Recorded::Counted => counted += 1,
            Recorded::DroppedDomain => dropped_domain += 1,
            Recorded::DroppedDetail => dropped_detail += 1,
            other => panic!("{other:?}"),
        }
        assert!(a.domains() <= limits.max_domains);
        assert!(a.details() <= limits.max_details);
    }
    // Domains 0..10,000 fit: 10 sessions each; the other 90,000 domains are dropped.
    assert_eq!(a.domains(), limits.max_domains);
    assert_eq!(counted + dropped_detail, 100_000);
    assert_eq!(dropped_domain, 900_000);
    assert_eq!(a.dropped().domains, 900_000);
    assert_eq!(a.sessions(), 100_000);
    // A kept domain d with d % 4 == 0 failed all its ten sessions (i % 4 == d % 4), each to
    // another MX (i / 100,000): ten details, far below the detail caps.
    assert_eq!(dropped_detail, 0);
    assert_eq!(a.details(), 2_500 * 10);
    let reports = a.close(at(DAY1 + DAY), &reporter());
    assert_eq!(reports.len(), limits.max_domains);
    let total: u64 = reports
        .iter()
        .map(|r| {
            let s = r.report.policies[0].summary;
            s.total_successful_session_count + s.total_failure_session_count
        })
        .sum();
    assert_eq!(total, 100_000);
    assert!(a.is_empty());
}

// ---------------------------------------------------------------------------------------------
// T5: the aggregate survives a restart

fn busy_aggregator() -> Aggregator {
    let mut a = Aggregator::new(AggregatorLimits::default());
    let sts = SessionPolicy::sts("example.com", &sts_policy("testing"));
    let tlsa = SessionPolicy::tlsa("example.net", &[Tlsa::new(3, 1, 1, vec![0xab; 32])]);
    for t in [DAY1 + 1, DAY1 + DAY + 1] {
        assert_eq!(a.record(&success(t, &sts)), Recorded::Counted);
        assert_eq!(a.record(&failure(t, &sts, expired())), Recorded::Counted);
        let dane =
            Failure::from_tls(&TlsFailure::TlsaInvalid).with_receiving_mx_helo("mx.example.net");
        assert_eq!(a.record(&failure(t, &tlsa, dane)), Recorded::Counted);
    }
    a
}

#[test]
fn t5_snapshot_round_trip_gives_the_same_reports() {
    let mut a = busy_aggregator();
    let _ = a.record(&success(0, &SessionPolicy::no_policy_found("")));
    let bytes = a.to_json();
    let (mut b, report) = Aggregator::from_json(&bytes, AggregatorLimits::default()).unwrap();
    assert_eq!(report.refused, None);
    assert_eq!(
        (report.loaded, report.skipped, report.not_loaded),
        (4, 0, 0)
    );
    assert_eq!(b.sessions(), a.sessions());
    assert_eq!(b.dropped(), a.dropped());
    assert_eq!(b.snapshot(), a.snapshot());
    let end = at(DAY1 + 2 * DAY);
    assert_eq!(b.close(end, &reporter()), a.close(end, &reporter()));
    // Through serde too (any format): the typed snapshot round-trips.
    let snapshot = busy_aggregator().snapshot();
    let again: AggregateSnapshot = serde_json::from_slice(&snapshot.to_json()).unwrap();
    assert_eq!(again, snapshot);
}

#[test]
fn t5_a_closed_day_stays_closed_after_restore() {
    let mut a = busy_aggregator();
    assert_eq!(a.close(at(DAY1 + DAY), &reporter()).len(), 2);
    let (mut b, _) = Aggregator::from_json(&a.to_json(), AggregatorLimits::default()).unwrap();
    let sts = SessionPolicy::sts("example.com", &sts_policy("testing"));
    assert_eq!(b.record(&success(DAY1 + 5, &sts)), Recorded::DroppedDay);
    assert_eq!(b.dropped().late, 1);
    assert_eq!(b.next_close(), Some(at(DAY1 + 2 * DAY)));
    // A mark in the future (a damaged snapshot, a clock set back) lasts until the next close.
    let json = String::from_utf8(b.to_json()).unwrap();
    let far = json.replace(
        &format!("\"first_open_day\":{}", DAY1 + DAY),
        "\"first_open_day\":9767225600",
    );
    assert_ne!(far, json);
    let (mut c, report) =
        Aggregator::from_json(far.as_bytes(), AggregatorLimits::default()).unwrap();
    assert_eq!(
        report.skipped, 2,
        "the entries of the day after the first are before the mark"
    );
    assert_eq!(
        c.record(&success(DAY1 + DAY + 5, &sts)),
        Recorded::DroppedDay
    );
    assert!(c.close(at(DAY1 + DAY + 60), &reporter()).is_empty());
    assert_eq!(c.record(&success(DAY1 + DAY + 65, &sts)), Recorded::Counted);
}

#[test]
fn t5_damaged_snapshot_skips_bad_entries_and_loads_the_rest() {
    let good = |domain: &str, day: u64| {
        format!(
            r#"{{"day_start":{day},"policy_domain":"{domain}","policies":[{{"policy_type":"sts",
            "policy_string":["version: STSv1"],"mx_host":[],"successful":3,"failed":2,
            "details":[{{"result_type":"starttls-not-supported","receiving_ip":"192.0.2.1","count":2}}]}}]}}"#
        )
    };
    let bad_policy = |policy: &str| {
        format!(r#"{{"day_start":{DAY1},"policy_domain":"bad.example","policies":[{policy}]}}"#)
    };
    let entries = [
        good("a.example", DAY1),                   // 0: loads
        r#"{"day_start":"yesterday"}"#.to_owned(), // 1: wrong shape
        good("[192.0.2.1]", DAY1),                 // 2: invalid domain
        good("c.example", DAY1 + 5),               // 3: not a midnight
        good("a.example", DAY1),                   // 4: repeated
        bad_policy(
            r#"{"policy_type":"dane","policy_string":[],"mx_host":[],"successful":0,"failed":0,"details":[]}"#,
        ), // 5
        bad_policy(
            r#"{"policy_type":"sts","policy_string":[],"mx_host":[],"successful":0,"failed":1,"details":[{"result_type":"certificate-expired","count":5}]}"#,
        ), // 6: details > failed
        bad_policy(
            r#"{"policy_type":"sts","policy_string":[],"mx_host":[],"successful":0,"failed":1,"details":[{"result_type":"certificate-expired","sending_mta_ip":"not-an-ip","count":1}]}"#,
        ), // 7
        bad_policy(
            r#"{"policy_type":"sts","policy_string":[],"mx_host":[],"successful":0,"failed":1,"details":[{"result_type":"certificate-exploded","count":1}]}"#,
        ), // 8
        good("b.example", DAY1 - DAY),             // 9: closed already
        "42".to_owned(),                           // 10: wrong shape
        good("UPPER.example", DAY1 + DAY),         // 11: loads, normalised
    ];
    let json = format!(
        r#"{{"format":"mta-sts-tlsrpt-aggregate","version":1,"first_open_day":{DAY1},
        "dropped":{{"domains":7}},"entries":[{}]}}"#,
        entries.join(",")
    );
    let snapshot = AggregateSnapshot::from_json(json.as_bytes()).unwrap();
    assert_eq!(snapshot.malformed(), 2);
    let (mut a, report) = Aggregator::restore(snapshot, AggregatorLimits::default());
    assert_eq!(report.refused, None);
    assert_eq!(
        (report.loaded, report.skipped, report.not_loaded),
        (2, 10, 0)
    );
    let indexes: Vec<_> = report
        .problems
        .iter()
        .map(|p| match p {
            RestoreProblem::Malformed { index }
            | RestoreProblem::InvalidDomain { index, .. }
            | RestoreProblem::InvalidDay { index, .. }
            | RestoreProblem::AlreadyClosed { index }
            | RestoreProblem::Duplicate { index }
            | RestoreProblem::InvalidPolicy { index, .. } => *index,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(indexes, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert!(matches!(
        report.problems[0],
        RestoreProblem::Malformed { index: 1 }
    ));
    assert!(matches!(
        report.problems[3],
        RestoreProblem::Duplicate { index: 4 }
    ));
    assert!(matches!(
        report.problems[8],
        RestoreProblem::AlreadyClosed { index: 9 }
    ));
    assert_eq!(
        report.problems[4].to_string(),
        r#"entry 5, policy 0: policy_type: "dane" is not an RFC 8460 name"#
    );
    assert_eq!(a.dropped().domains, 7);
    assert_eq!(a.sessions(), 10);
    let reports = a.close(at(DAY1 + 2 * DAY), &reporter());
    let domains: Vec<_> = reports.iter().map(|r| r.policy_domain.as_str()).collect();
    assert_eq!(domains, ["a.example", "upper.example"]);
}

#[test]
fn t5_foreign_or_broken_snapshot_bytes_are_refused_with_a_typed_error() {
    let cases: [(&[u8], &str); 4] = [
        (
            b"{\"format\":\"mta-sts-policy-cache\",\"version\":1,\"entries\":[]}",
            "foreign",
        ),
        (
            b"{\"format\":\"mta-sts-tlsrpt-aggregate\",\"version\":2,\"entries\":[]}",
            "version",
        ),
        (
            b"{\"format\":\"mta-sts-tlsrpt-aggregate\",\n\"version\":1,\"entries\":[",
            "syntax",
        ),
        (b"\xff\xfe", "syntax"),
    ];
    for (bytes, kind) in cases {
        let error = Aggregator::from_json(bytes, AggregatorLimits::default()).unwrap_err();
        match (kind, &error) {
            ("foreign", AggregateSnapshotError::Foreign { format }) => {
                assert_eq!(format, "mta-sts-policy-cache")
            }
            ("version", AggregateSnapshotError::UnsupportedVersion(2)) => {}
            ("syntax", AggregateSnapshotError::Syntax { line, column, .. }) => {
                assert!(*line >= 1 && *column >= 1, "{error}")
            }
            _ => panic!("{kind}: {error:?}"),
        }
    }
    let syntax = Aggregator::from_json(cases[2].0, AggregatorLimits::default()).unwrap_err();
    assert!(
        matches!(syntax, AggregateSnapshotError::Syntax { line: 2, .. }),
        "{syntax:?}"
    );
    // A typed snapshot of another format, restored: nothing loads, the report says why.
    let foreign: AggregateSnapshot = serde_json::from_slice(cases[0].0).unwrap();
    let (a, report) = Aggregator::restore(foreign, AggregatorLimits::default());
    assert!(a.is_empty());
    assert!(matches!(
        report.refused,
        Some(AggregateSnapshotError::Foreign { .. })
    ));
}

#[test]
fn t5_restore_applies_the_limits() {
    let a = busy_aggregator();
    let limits = limits(|l| {
        l.max_domains = 3;
        l.max_details_per_domain = 0;
    });
    let (b, report) = Aggregator::restore(a.snapshot(), limits);
    // Four entries, three loaded; each kept entry's one detail left out.
    assert_eq!((report.loaded, report.not_loaded), (3, 1 + 3));
    assert_eq!(b.domains(), 3);
    assert_eq!(b.details(), 0);
    assert_eq!(b.dropped().domains, 1);
    assert_eq!(b.dropped().details, 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Damaged snapshot bytes (a valid snapshot with bytes replaced, cut or inserted) never
    /// make restore panic, and what loads stays within the limits.
    #[test]
    fn t5_restore_of_damaged_bytes_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = busy_aggregator().to_json();
        for (index, byte, kind) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = index.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, byte),
            }
        }
        let limits = limits(|l| { l.max_domains = 3; });
        if let Ok((mut a, report)) = Aggregator::from_json(&bytes, limits) {
            prop_assert!(a.domains() <= 3);
            prop_assert!(report.problems.len() <= report.skipped);
            for r in a.close(UnixTime::MAX, &reporter()) {
                let json = r.json();
                prop_assert!(serde_json::from_slice::<Report>(&json).is_ok());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// T6: a report covers one whole UTC day

#[test]
fn t6_a_day_closes_at_midnight_exactly() {
    let mut a = Aggregator::new(AggregatorLimits::default());
    let p = SessionPolicy::no_policy_found("example.com");
    // The first and the last second of the day.
    assert_eq!(a.record(&success(DAY1, &p)), Recorded::Counted);
    assert_eq!(a.record(&success(DAY1 + DAY - 1, &p)), Recorded::Counted);
    assert_eq!(a.next_close(), Some(at(DAY1 + DAY)));
    assert!(a.close(at(DAY1 + DAY - 1), &reporter()).is_empty()); // 23:59:59: not yet
    assert_eq!(a.sessions(), 2);
    let reports = a.close(at(DAY1 + DAY), &reporter()); // 00:00:00: closed
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(
        r.report.policies[0].summary.total_successful_session_count,
        2
    );
    assert_eq!((r.day_start, r.day_end), (at(DAY1), at(DAY1 + DAY - 1)));
    assert_eq!(r.report.date_range.start_datetime, "2026-01-01T00:00:00Z");
    assert_eq!(r.report.date_range.end_datetime, "2026-01-01T23:59:59Z");
    assert!(a.is_empty());
    assert_eq!(a.next_close(), None);
    // A session of the closed day that comes late is not reported again.
    assert_eq!(a.record(&success(DAY1 + DAY - 1, &p)), Recorded::DroppedDay);
    assert_eq!(a.dropped().late, 1);
    assert_eq!(a.record(&success(DAY1 + DAY, &p)), Recorded::Counted);
}

#[test]
fn t6_two_days_are_kept_apart() {
    let mut a = Aggregator::new(AggregatorLimits::default());
    let p = SessionPolicy::no_policy_found("example.com");
    for t in [DAY1 + 10, DAY1 + DAY + 10, DAY1 + DAY + 20] {
        assert_eq!(a.record(&success(t, &p)), Recorded::Counted);
    }
    assert_eq!(a.domains(), 2);
    let first = a.close(at(DAY1 + DAY + 3600), &reporter());
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].report.policies[0]
            .summary
            .total_successful_session_count,
        1
    );
    assert_eq!(a.next_close(), Some(at(DAY1 + 2 * DAY)));
    // Closing long after closes every ended day at once, in order.
    assert_eq!(a.record(&success(DAY1 + 3 * DAY, &p)), Recorded::Counted);
    let later = a.close(at(DAY1 + 10 * DAY), &reporter());
    let starts: Vec<_> = later
        .iter()
        .map(|r| r.report.date_range.start_datetime.as_str())
        .collect();
    assert_eq!(starts, ["2026-01-02T00:00:00Z", "2026-01-04T00:00:00Z"]);
    assert_eq!(
        later[0].report.policies[0]
            .summary
            .total_successful_session_count,
        2
    );
    assert_ne!(first[0].report_id(), later[0].report_id());
}

#[test]
fn t6_report_id_is_unique_and_deterministic() {
    let run = || {
        let mut a = busy_aggregator();
        a.close(at(DAY1 + 2 * DAY), &reporter())
    };
    let (one, two) = (run(), run());
    assert_eq!(one, two);
    let ids: std::collections::HashSet<_> = one.iter().map(|r| r.report_id().to_owned()).collect();
    assert_eq!(ids.len(), one.len());
    let id = one[0].report_id();
    assert!(id.starts_with("2026-01-01_example.com_"), "{id}");
    assert!(id.ends_with("@sender.example"), "{id}");
    // Other counts, another id; another submitter, another id.
    let mut a = busy_aggregator();
    let _ = a.record(&success(
        DAY1 + 2,
        &SessionPolicy::sts("example.com", &sts_policy("testing")),
    ));
    assert_ne!(a.close(at(DAY1 + DAY), &reporter())[0].report_id(), id);
    let other = Reporter::new("Example Org", "tlsrpt@sender.example", "mx.sender.example");
    assert_ne!(
        busy_aggregator().close(at(DAY1 + DAY), &other)[0].report_id(),
        id
    );
}

#[test]
fn t6_day_helpers() {
    assert_eq!(utc_day_start(at(DAY1 + DAY - 1)), at(DAY1));
    assert_eq!(utc_day_start(at(DAY1)), at(DAY1));
    assert_eq!(format_datetime(at(DAY1 + DAY - 1)), "2026-01-01T23:59:59Z");
    assert_eq!(format_datetime(at(951_782_400)), "2000-02-29T00:00:00Z");
}

// ---------------------------------------------------------------------------------------------
// T7: the report as written

fn small_report() -> mta_sts_core::tlsrpt::DayReport {
    let mut a = Aggregator::new(AggregatorLimits::default());
    let policy = SessionPolicy::sts("example.com", &sts_policy("testing"));
    for t in [DAY1 + 1, DAY1 + 2] {
        let _ = a.record(&success(t, &policy));
    }
    let _ = a.record(&failure(DAY1 + 3, &policy, expired()));
    a.close(at(DAY1 + DAY), &reporter()).remove(0)
}

#[test]
fn t7_exact_json_of_a_small_report() {
    let r = small_report();
    let expected = concat!(
        r#"{"organization-name":"Example Org","#,
        r#""date-range":{"start-datetime":"2026-01-01T00:00:00Z","end-datetime":"2026-01-01T23:59:59Z"},"#,
        r#""contact-info":"tlsrpt@sender.example","#,
        r#""report-id":"2026-01-01_example.com_e1d5f1fff5535fc8@sender.example","#,
        r#""policies":[{"policy":{"policy-type":"sts","#,
        r#""policy-string":["version: STSv1","mode: testing","mx: mx.example.com","mx: *.backup.example.com","max_age: 86400"],"#,
        r#""policy-domain":"example.com","mx-host":["mx.example.com","*.backup.example.com"]},"#,
        r#""summary":{"total-successful-session-count":2,"total-failure-session-count":1},"#,
        r#""failure-details":[{"result-type":"certificate-expired","sending-mta-ip":"198.51.100.1","#,
        r#""receiving-mx-hostname":"mx.example.com","receiving-ip":"192.0.2.25","failed-session-count":1}]}]}"#
    );
    // The hash is pinned: report ids must not change with the compiler or platform.
    assert_eq!(String::from_utf8(r.json()).unwrap(), expected);
}

#[test]
fn t7_json_field_names_are_those_of_rfc8460() {
    let r = small_report();
    let v: serde_json::Value = serde_json::from_slice(&r.json()).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&v),
        [
            "contact-info",
            "date-range",
            "organization-name",
            "policies",
            "report-id"
        ]
    );
    assert_eq!(keys(&v["date-range"]), ["end-datetime", "start-datetime"]);
    let policy = &v["policies"][0];
    assert!(v["policies"].is_array());
    assert_eq!(keys(policy), ["failure-details", "policy", "summary"]);
    assert_eq!(
        keys(&policy["policy"]),
        ["mx-host", "policy-domain", "policy-string", "policy-type"]
    );
    assert!(policy["policy"]["mx-host"].is_array());
    assert!(policy["policy"]["policy-string"].is_array());
    assert_eq!(
        keys(&policy["summary"]),
        [
            "total-failure-session-count",
            "total-successful-session-count"
        ]
    );
    assert!(policy["summary"]["total-failure-session-count"].is_u64());
    // Fields without a value are left out: no helo, reason code or additional information.
    assert_eq!(
        keys(&policy["failure-details"][0]),
        [
            "failed-session-count",
            "receiving-ip",
            "receiving-mx-hostname",
            "result-type",
            "sending-mta-ip"
        ]
    );
    // And every optional field, when it has one, by its §4.4 name.
    let mut a = Aggregator::new(AggregatorLimits::default());
    let full = expired()
        .with_receiving_mx_helo("helo.example.com")
        .with_failure_reason_code("X509_V_ERR_CERT_HAS_EXPIRED")
        .with_additional_information("https://sender.example/tlsrpt/1");
    let _ = a.record(&failure(
        DAY1,
        &SessionPolicy::no_policy_found("example.com"),
        full,
    ));
    let r = a.close(at(DAY1 + DAY), &reporter()).remove(0);
    let v: serde_json::Value = serde_json::from_slice(&r.json()).unwrap();
    let policy = &v["policies"][0];
    assert_eq!(keys(&policy["policy"]), ["policy-domain", "policy-type"]);
    assert_eq!(policy["policy"]["policy-type"], "no-policy-found");
    let detail = &policy["failure-details"][0];
    assert_eq!(detail["receiving-mx-helo"], "helo.example.com");
    assert_eq!(detail["failure-reason-code"], "X509_V_ERR_CERT_HAS_EXPIRED");
    assert_eq!(
        detail["additional-information"],
        "https://sender.example/tlsrpt/1"
    );
    // A policy without failures has no failure-details at all.
    let mut a = Aggregator::new(AggregatorLimits::default());
    let _ = a.record(&success(
        DAY1,
        &SessionPolicy::no_policy_found("example.com"),
    ));
    let r = a.close(at(DAY1 + DAY), &reporter()).remove(0);
    let v: serde_json::Value = serde_json::from_slice(&r.json()).unwrap();
    assert_eq!(keys(&v["policies"][0]), ["policy", "summary"]);
}

#[test]
fn t7_json_reads_back_into_the_model() {
    let r = small_report();
    let back: Report = serde_json::from_slice(&r.json()).unwrap();
    assert_eq!(back, r.report);
}

#[test]
fn t7_gzip_round_trip() {
    let r = small_report();
    let gz = r.gzip();
    assert_eq!(&gz[..2], [0x1f, 0x8b]);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, r.json());
    // Deterministic: no time in the header.
    assert_eq!(small_report().gzip(), gz);
}

#[test]
fn t7_file_name_of_rfc8460_section_5_1() {
    let r = small_report();
    let name = r.file_name();
    let parts: Vec<_> = name.split('!').collect();
    assert_eq!(parts.len(), 5, "{name}");
    assert_eq!(parts[0], "sender.example");
    assert_eq!(parts[1], "example.com");
    assert_eq!(parts[2], DAY1.to_string());
    assert_eq!(parts[3], (DAY1 + DAY - 1).to_string());
    let (unique, ext) = parts[4].split_once('.').unwrap();
    assert_eq!(ext, "json.gz");
    assert_eq!(unique.len(), 16);
    assert!(
        unique.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{unique}"
    );
    assert_eq!(small_report().file_name(), name);
}
