//! The engine against RFC 8461, requirement by requirement (IDs from REQUIREMENTS.md),
//! in virtual time with a scripted network.

mod engine_harness;

use core::time::Duration;

use engine_harness::*;
use mta_sts_core::io::{
    ContentTypeCheck, DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_BODY, DnsFailure, FetchFailure,
    FetchResponse, Io, TxtAnswer,
};
use mta_sts_core::{
    Begin, CacheReason, Config, DeferReason, DnsTempFailure, FetchProblem, IoResult, Lookup,
    LookupError, LookupKind, Mode, MxDecision, NoPolicyReason, Outcome, PolicyCache, PolicyDomain,
    PolicyDomainError, Snapshot, SnapshotEntry, SnapshotError, Step, StsUsage, TxtProblem, Verdict,
    WhenAllFail,
};

const ENFORCE: &str = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.backup.example.com\nmax_age: 86400\n";

fn enforce_world() -> World {
    let mut w = World::new();
    w.publish("example.com", "A1", ENFORCE);
    w
}

fn records(rs: &[&str]) -> mta_sts_core::io::TxtResult {
    Ok(TxtAnswer::Records(
        rs.iter().map(|r| r.as_bytes().to_vec()).collect(),
    ))
}

fn reason_of(o: &Outcome) -> Option<&CacheReason> {
    match o {
        Outcome::Cached { reason, .. } => Some(reason),
        _ => None,
    }
}

fn mode_of(o: &Outcome) -> Option<Mode> {
    o.policy().map(|p| p.mode())
}

fn fetch_hosts(log: &[Io]) -> Vec<String> {
    log.iter()
        .filter_map(|i| match i {
            Io::Fetch(f) => Some(f.host.clone()),
            _ => None,
        })
        .collect()
}

// ----- A. Discovery -----

#[test]
fn r1_txt_query_at_mta_sts_of_next_hop_domain() {
    let mut w = enforce_world();
    let domain = PolicyDomain::of_address("a@example.com").unwrap();
    let o = w.deliver(domain.as_str());
    assert!(matches!(o, Outcome::Fetched(_)));
    let log = w.take_log();
    assert!(matches!(&log[0], Io::Txt(q) if q.name == "_mta-sts.example.com"));
}

#[test]
fn r2_smart_host_domain_is_the_policy_domain() {
    let mut w = World::new();
    w.publish(
        "relay.example",
        "R1",
        &body("enforce", 86400, &["relay.example"]),
    );
    let o = w.deliver("relay.example");
    assert_eq!(
        o.policy().unwrap().policy().mx()[0].as_str(),
        "relay.example"
    );
    assert_eq!(fetch_hosts(&w.take_log()), ["mta-sts.relay.example"]);
}

#[test]
fn r3_no_parent_domain_fallback() {
    let mut w = enforce_world(); // only _mta-sts.example.com exists
    let o = w.deliver("mail.example.com");
    assert_eq!(
        o,
        Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::NxDomain))
    );
    let log = w.take_log();
    assert_eq!(log.len(), 1, "one query, no retry at the parent: {log:?}");
    assert!(matches!(&log[0], Io::Txt(q) if q.name == "_mta-sts.mail.example.com"));
}

#[test]
fn r4_address_literal_gets_no_policy_without_io() {
    let mut w = World::new();
    for dest in ["[192.0.2.1]", "[IPv6:2001:db8::1]", "192.0.2.1"] {
        assert_eq!(
            w.deliver(dest),
            Outcome::NoPolicy(NoPolicyReason::AddressLiteral),
            "{dest}"
        );
    }
    assert_eq!(
        PolicyDomain::of_address("a@[192.0.2.1]"),
        Err(PolicyDomainError::AddressLiteral)
    );
    assert_eq!(w.io(), (0, 0));
}

#[test]
fn r6_other_txt_records_are_discarded_before_counting() {
    let mut w = enforce_world();
    w.set_txt("example.com", records(&["v=spf1 -all", "v=STSv1; id=1;"]));
    assert_eq!(w.deliver("example.com").policy().unwrap().id(), "1");
}

#[test]
fn r7_two_sts_records_mean_no_policy_and_no_fetch() {
    let mut w = enforce_world();
    w.set_txt(
        "example.com",
        records(&["v=STSv1; id=1;", "v=STSv1; id=2;"]),
    );
    let o = w.deliver("example.com");
    assert!(matches!(
        o,
        Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::Invalid(_)))
    ));
    assert_eq!(w.io(), (1, 0));
}

#[test]
fn r9_id_compared_for_equality_only() {
    let mut w = World::new();
    w.publish("example.com", "2024", ENFORCE);
    let _ = w.deliver("example.com");
    // An "older-looking" id is still a change: it is fetched.
    w.publish(
        "example.com",
        "2023",
        &body("testing", 86400, &["mail.example.com"]),
    );
    w.take_log();
    let o = w.recheck("example.com");
    assert!(matches!(o, Outcome::Fetched(ref p) if p.id() == "2023" && p.mode() == Mode::Testing));
    assert_eq!(w.io(), (1, 1));
}

#[test]
fn r10_cname_provider_id_but_fetch_from_user_domain() {
    let mut w = World::new();
    // The adapter followed _mta-sts.user.example CNAME _mta-sts.provider.example: the answer is
    // the provider's record, returned for the name asked.
    w.set_txt("user.example", txt_id("PROVIDER7"));
    w.set_fetch(
        "user.example",
        ok_policy(&body("enforce", 86400, &["mx.provider.example"])),
    );
    let o = w.deliver("user.example");
    assert_eq!(o.policy().unwrap().id(), "PROVIDER7");
    assert_eq!(fetch_hosts(&w.take_log()), ["mta-sts.user.example"]);
}

#[test]
fn r11_unusable_txt_does_not_evict_cache() {
    for problem in [
        Ok(TxtAnswer::NXDOMAIN),
        Ok(TxtAnswer::NODATA),
        Ok(TxtAnswer::Records(vec![b"v=STSv1; id=a-b;".to_vec()])),
        Ok(TxtAnswer::Records(vec![])),
    ] {
        let mut w = enforce_world();
        let _ = w.deliver("example.com");
        w.set_txt("example.com", problem.clone());
        let o = w.recheck("example.com");
        assert!(
            matches!(
                o,
                Outcome::Cached {
                    reason: CacheReason::TxtUnusable(_),
                    ..
                }
            ),
            "{problem:?}: {o:?}"
        );
        assert_eq!(mode_of(&w.deliver("example.com")), Some(Mode::Enforce));
        assert_eq!(w.cache.len(), 1);
    }
}

#[test]
fn r12_nxdomain_without_cache_is_no_policy() {
    let mut w = World::new();
    let o = w.deliver("example.org");
    assert_eq!(
        o,
        Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::NxDomain))
    );
    w.set_txt("example.org", Ok(TxtAnswer::NODATA));
    // The NXDOMAIN is reused until its negative TTL (no SOA: the default) has passed (S9).
    w.advance(w.cache.config().negative_ttl_default);
    assert_eq!(
        w.deliver("example.org"),
        Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::NoData))
    );
}

#[test]
fn r12_servfail_with_cache_applies_cache() {
    for failure in [
        DnsFailure::ServerFailure,
        DnsFailure::Timeout,
        DnsFailure::Network("down".into()),
    ] {
        let mut w = enforce_world();
        let _ = w.deliver("example.com");
        w.set_txt("example.com", Err(failure.clone()));
        let o = w.recheck("example.com");
        assert_eq!(
            o,
            Outcome::Cached {
                policy: w.cache.peek("example.com").unwrap().clone(),
                reason: CacheReason::DnsFailure(failure)
            }
        );
    }
}

#[test]
fn r12_servfail_without_cache_is_temporary_failure_and_configurable() {
    let mut w = World::new();
    w.servfail("example.com");
    let o = w.deliver("example.com");
    assert_eq!(o, Outcome::TemporaryFailure(DnsFailure::ServerFailure));
    // Default: deliver without MTA-STS (the RFC's literal reading).
    let e = w.cache.evaluate("example.com", &o, ["mail.example.com"]);
    assert_eq!(e.verdict(), Verdict::Deliver);
    assert_eq!(e.candidates()[0].decision(), MxDecision::NoConstraint);
    // Configured to defer.
    let mut config = Config::default();
    config.defaults.dns_temp_failure = DnsTempFailure::Defer;
    let mut w = World::with(config);
    w.servfail("example.com");
    let o = w.deliver("example.com");
    let e = w.cache.evaluate("example.com", &o, ["mail.example.com"]);
    assert_eq!(
        e.verdict(),
        Verdict::Defer(DeferReason::DnsTemporaryFailure)
    );
    assert_eq!(w.cache.stats().decisions.deferred, 1);
}

// ----- B. Fetch -----

#[test]
fn r13_fetch_url_host_in_a_labels_without_root_dot() {
    let mut w = World::new();
    w.publish(
        "xn--bcher-kva.example",
        "1",
        &body("testing", 86400, &["mx.xn--bcher-kva.example"]),
    );
    let o = w.deliver("Bücher.Example.");
    assert!(matches!(o, Outcome::Fetched(_)));
    let log = w.take_log();
    assert!(matches!(&log[0], Io::Txt(q) if q.name == "_mta-sts.xn--bcher-kva.example"));
    match &log[1] {
        Io::Fetch(f) => assert_eq!(
            f.url(),
            "https://mta-sts.xn--bcher-kva.example/.well-known/mta-sts.txt"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn r14_certificate_must_be_valid_for_policy_host() {
    let mut w = enforce_world();
    w.set_fetch(
        "example.com",
        Err(FetchFailure::Certificate(
            mta_sts_core::io::CertificateProblem::Expired,
        )),
    );
    let o = w.deliver("example.com");
    match &o {
        Outcome::NoPolicy(NoPolicyReason::FetchFailed(p)) => assert!(p.is_certificate()),
        other => panic!("{other:?}"),
    }
    assert!(o.fetch_problem().unwrap().is_certificate());
    // The request names the host the certificate (and SNI) must match.
    assert_eq!(fetch_hosts(&w.take_log()), ["mta-sts.example.com"]);
}

#[test]
fn r15_only_200_is_a_policy() {
    for status in [204, 404, 500] {
        let mut w = enforce_world();
        w.set_fetch(
            "example.com",
            Ok(FetchResponse::new(status, Some("text/plain"), ENFORCE)),
        );
        assert_eq!(
            w.deliver("example.com"),
            Outcome::NoPolicy(NoPolicyReason::FetchFailed(FetchProblem::Fetch(
                FetchFailure::Status(status)
            )))
        );
    }
}

#[test]
fn r16_redirect_is_a_failure_and_one_request_only() {
    let mut w = enforce_world();
    w.set_fetch(
        "example.com",
        Ok(FetchResponse::new(301, Some("text/plain"), "")),
    );
    let o = w.deliver("example.com");
    assert_eq!(
        o,
        Outcome::NoPolicy(NoPolicyReason::FetchFailed(FetchProblem::Fetch(
            FetchFailure::Redirect(301)
        )))
    );
    assert_eq!(w.io(), (1, 1));
}

#[test]
fn r17_no_http_caching_refetch_is_a_full_get() {
    let mut w = enforce_world();
    let _ = w.deliver("example.com");
    let first = w.take_log();
    w.advance(DAY + Duration::from_secs(1));
    let _ = w.deliver("example.com");
    let second = w.take_log();
    // The same unconditional request again: no validators exist on the request to send.
    assert_eq!(first[1], second[1]);
}

#[test]
fn r18_content_type_checked_and_lenient_switch_per_domain() {
    let mut w = enforce_world();
    w.set_fetch(
        "example.com",
        Ok(FetchResponse::new(200, Some("text/html"), ENFORCE)),
    );
    assert!(matches!(
        w.deliver("example.com"),
        Outcome::NoPolicy(NoPolicyReason::FetchFailed(FetchProblem::Fetch(
            FetchFailure::ContentType(_)
        )))
    ));
    w.set_fetch(
        "example.com",
        Ok(FetchResponse::new(
            200,
            Some("text/plain; charset=utf-8"),
            ENFORCE,
        )),
    );
    w.advance(Duration::from_secs(301));
    assert!(matches!(w.deliver("example.com"), Outcome::Fetched(_)));

    let mut config = Config::default();
    let mut lenient = config.defaults;
    lenient.content_type = ContentTypeCheck::Lenient;
    config.set_override("broken.example", lenient).unwrap();
    let mut w = World::with(config);
    for d in ["broken.example", "strict.example"] {
        w.set_txt(d, txt_id("1"));
        w.set_fetch(
            d,
            Ok(FetchResponse::new(
                200,
                None,
                body("enforce", 86400, &["mx.example"]),
            )),
        );
    }
    assert!(matches!(w.deliver("broken.example"), Outcome::Fetched(_)));
    assert!(matches!(w.deliver("strict.example"), Outcome::NoPolicy(_)));
    let log = w.take_log();
    let types: Vec<_> = log
        .iter()
        .filter_map(|i| match i {
            Io::Fetch(f) => Some(f.content_type),
            _ => None,
        })
        .collect();
    assert_eq!(
        types,
        [ContentTypeCheck::Lenient, ContentTypeCheck::TextPlain]
    );
}

#[test]
fn r19_fetch_limits_travel_on_the_request() {
    let mut w = enforce_world();
    let _ = w.deliver("example.com");
    match &w.take_log()[1] {
        Io::Fetch(f) => {
            assert_eq!(f.max_body, DEFAULT_MAX_BODY);
            assert_eq!(f.max_body, 65_536);
            assert_eq!(f.timeout, DEFAULT_FETCH_TIMEOUT);
            assert_eq!(f.timeout, Duration::from_secs(60));
            assert_eq!(f.port, 443);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn r19_oversized_body_is_a_failure_even_if_the_adapter_passes_it() {
    let mut w = enforce_world();
    let mut big = ENFORCE.to_owned();
    big.push_str(&format!("x-pad: {}\n", "a".repeat(70 * 1024)));
    w.set_fetch("example.com", ok_policy(&big));
    assert_eq!(
        w.deliver("example.com"),
        Outcome::NoPolicy(NoPolicyReason::FetchFailed(FetchProblem::Fetch(
            FetchFailure::BodyTooLarge {
                limit: DEFAULT_MAX_BODY
            }
        )))
    );
    // The adapter's own verdict (a 61 s stall) is a failure like any other.
    w.set_fetch("example.com", Err(FetchFailure::Timeout));
    w.set_txt("example.com", txt_id("A2"));
    assert!(matches!(
        w.deliver("example.com"),
        Outcome::NoPolicy(NoPolicyReason::FetchFailed(_))
    ));
}

#[test]
fn r19_failed_fetch_same_id_not_retried_for_5_minutes() {
    let mut w = enforce_world();
    w.set_fetch("example.com", Err(FetchFailure::Connect("refused".into())));
    assert!(matches!(
        w.deliver("example.com"),
        Outcome::NoPolicy(NoPolicyReason::FetchFailed(_))
    ));
    assert_eq!(w.io(), (1, 1));
    w.set_fetch("example.com", ok_policy(ENFORCE));
    for _ in 0..4 {
        w.advance(MINUTE);
        let o = w.deliver("example.com");
        assert_eq!(
            o,
            Outcome::NoPolicy(NoPolicyReason::RetryLater {
                retry_at: T0.saturating_add(5 * MINUTE)
            })
        );
    }
    assert_eq!(w.io(), (5, 1), "TXT checked each time, never refetched");
    w.advance(MINUTE - Duration::from_secs(1));
    assert!(matches!(
        w.deliver("example.com"),
        Outcome::NoPolicy(NoPolicyReason::RetryLater { .. })
    ));
    w.advance(Duration::from_secs(1));
    assert!(matches!(w.deliver("example.com"), Outcome::Fetched(_)));
    assert_eq!(w.io(), (7, 2));
}

#[test]
fn r19_new_id_fetched_at_once_after_a_failure() {
    let mut w = enforce_world();
    w.set_fetch("example.com", Err(FetchFailure::Connect("refused".into())));
    let _ = w.deliver("example.com");
    w.advance(MINUTE);
    w.publish("example.com", "B2", ENFORCE);
    assert!(matches!(w.deliver("example.com"), Outcome::Fetched(ref p) if p.id() == "B2"));
    assert_eq!(w.io(), (2, 2));
}

#[test]
fn r20_fetch_failure_without_cache_means_no_policy() {
    let mut w = enforce_world();
    w.set_fetch("example.com", Err(FetchFailure::Connect("refused".into())));
    let o = w.deliver("example.com");
    assert!(matches!(
        o,
        Outcome::NoPolicy(NoPolicyReason::FetchFailed(_))
    ));
    let e = w.cache.evaluate("example.com", &o, ["mx.other.example"]);
    assert_eq!(e.verdict(), Verdict::Deliver);
    assert_eq!(e.candidates()[0].decision(), MxDecision::NoConstraint);
}

#[test]
fn r20_every_kind_of_failure_applies_the_cached_policy() {
    let failures: Vec<mta_sts_core::io::FetchResult> = vec![
        Err(FetchFailure::Resolve("nx".into())),
        Err(FetchFailure::Connect("refused".into())),
        Err(FetchFailure::Certificate(
            mta_sts_core::io::CertificateProblem::UnknownIssuer,
        )),
        Err(FetchFailure::Tls("alert".into())),
        Err(FetchFailure::Timeout),
        Err(FetchFailure::BodyTooLarge { limit: 65_536 }),
        Err(FetchFailure::Protocol("eof".into())),
        Ok(FetchResponse::new(404, Some("text/plain"), "")),
        Ok(FetchResponse::new(302, Some("text/plain"), "")),
        Ok(FetchResponse::new(200, Some("text/html"), ENFORCE)),
        Ok(FetchResponse::new(
            200,
            Some("text/plain"),
            "version: STSv1\nmode: Enforce\n",
        )),
        Ok(FetchResponse::new(
            200,
            Some("text/plain"),
            vec![0xff, 0xfe],
        )),
    ];
    for failure in failures {
        let mut w = enforce_world();
        let _ = w.deliver("example.com");
        w.publish("example.com", "NEW", ENFORCE);
        w.set_fetch("example.com", failure.clone());
        let o = w.recheck("example.com");
        assert!(
            matches!(o, Outcome::Cached { reason: CacheReason::FetchFailed(_), ref policy } if policy.id() == "A1"),
            "{failure:?}: {o:?}"
        );
        assert!(o.fetch_problem().is_some());
    }
}

// ----- F. Application -----

#[test]
fn r36_enforce_skips_non_matching_mx_and_delivers_via_matching() {
    let mut w = enforce_world();
    let o = w.deliver("example.com");
    let e = w.cache.evaluate(
        "example.com",
        &o,
        ["mx10.attacker.example", "mail.example.com"],
    );
    assert_eq!(e.verdict(), Verdict::Deliver);
    let d: Vec<_> = e.candidates().iter().map(|c| c.decision()).collect();
    assert_eq!(d, [MxDecision::Skip, MxDecision::Enforce]);
    assert!(!d[0].may_attempt());
    assert!(d[1].requires_valid_tls());
    let s = w.cache.stats().decisions;
    assert_eq!((s.enforce_skip, s.enforce_match), (1, 1));
}

#[test]
fn r37_testing_delivers_and_reports() {
    let mut w = World::new();
    w.publish(
        "example.com",
        "T",
        &body("testing", 86400, &["mail.example.com"]),
    );
    let o = w.deliver("example.com");
    let e = w
        .cache
        .evaluate("example.com", &o, ["other.example.net", "mail.example.com"]);
    assert_eq!(e.verdict(), Verdict::Deliver);
    let d: Vec<_> = e.candidates().iter().map(|c| c.decision()).collect();
    assert_eq!(
        d,
        [
            MxDecision::Testing {
                host_matches: false
            },
            MxDecision::Testing { host_matches: true }
        ]
    );
    assert!(
        d.iter()
            .all(|d| d.may_attempt() && !d.requires_valid_tls() && d.reports_failures())
    );
    assert_eq!(e.when_all_fail(), WhenAllFail::Usual);
    let s = w.cache.stats().decisions;
    assert_eq!((s.testing_mismatch, s.testing_match), (1, 1));
}

#[test]
fn r38_none_mode_is_cached_but_never_enforced_or_reported() {
    let mut w = World::new();
    w.publish("example.com", "N", &body("none", 86400, &[]));
    let o = w.deliver("example.com");
    assert_eq!(mode_of(&o), Some(Mode::None));
    assert_eq!(o.active_mode(), None);
    let e = w.cache.evaluate("example.com", &o, ["anything.example"]);
    assert_eq!(e.candidates()[0].decision(), MxDecision::NoConstraint);
    assert!(!e.candidates()[0].decision().reports_failures());
    assert_eq!(w.cache.stats().decisions.mode_none, 1);
    // Cached: the next lookup does no I/O.
    w.take_log();
    assert!(reason_of(&w.deliver("example.com")) == Some(&CacheReason::Fresh));
    assert_eq!(w.io(), (0, 0));
}

#[test]
fn r39_all_mx_invalid_defers_and_recheck_with_same_id_does_not_fetch() {
    let mut w = enforce_world();
    let o = w.deliver("example.com");
    let e = w
        .cache
        .evaluate("example.com", &o, ["a.evil.example", "b.evil.example"]);
    assert_eq!(e.verdict(), Verdict::DeferRecheckPolicy);
    assert_eq!(e.when_all_fail(), WhenAllFail::RecheckPolicy);
    assert_eq!(w.cache.stats().decisions.enforce_defer, 1);
    w.take_log();
    let o = w.recheck("example.com");
    assert!(reason_of(&o) == Some(&CacheReason::UnchangedId));
    assert_eq!(
        w.io(),
        (1, 0),
        "TXT re-queried although the policy is fresh; nothing fetched"
    );
}

#[test]
fn r39_recheck_with_new_id_refetches_and_delivery_can_retry() {
    let mut w = enforce_world();
    let o = w.deliver("example.com");
    let hosts = ["mx.new-provider.example"];
    assert_eq!(
        w.cache.evaluate("example.com", &o, hosts).verdict(),
        Verdict::DeferRecheckPolicy
    );
    w.publish(
        "example.com",
        "A2",
        &body("enforce", 86400, &["*.new-provider.example"]),
    );
    let o = w.recheck("example.com");
    assert!(matches!(o, Outcome::Fetched(_)));
    let e = w.cache.evaluate("example.com", &o, hosts);
    assert_eq!(e.verdict(), Verdict::Deliver);
    assert_eq!(e.candidates()[0].decision(), MxDecision::Enforce);
}

#[test]
fn r40_candidates_kept_in_priority_order_not_filtered() {
    let mut w = enforce_world();
    let o = w.deliver("example.com");
    let hosts = [
        "x.evil.example",
        "mail.example.com",
        "y.evil.example",
        "b1.backup.example.com",
    ];
    let e = w.cache.evaluate("example.com", &o, hosts);
    let got: Vec<_> = e
        .candidates()
        .iter()
        .map(|c| (c.host(), c.decision()))
        .collect();
    assert_eq!(
        got,
        [
            ("x.evil.example", MxDecision::Skip),
            ("mail.example.com", MxDecision::Enforce),
            ("y.evil.example", MxDecision::Skip),
            ("b1.backup.example.com", MxDecision::Enforce),
        ]
    );
}

#[test]
fn r33_implicit_mx_is_the_domain_itself() {
    let mut w = World::new();
    w.publish(
        "example.com",
        "1",
        &body("enforce", 86400, &["example.com"]),
    );
    let o = w.deliver("example.com");
    let e = w.cache.evaluate("example.com", &o, ["example.com"]);
    assert_eq!(e.candidates()[0].decision(), MxDecision::Enforce);
}

#[test]
fn r40_evaluation_keeps_its_outcome_and_takes_the_mta_s_own_host_strings() {
    let mut w = enforce_world();
    let outcome = w.deliver("example.com");
    let hosts: Vec<String> = vec!["mail.example.com".into(), "evil.example".into()];
    let e = w.cache.evaluate("example.com", &outcome, &hosts);
    assert_eq!(
        e.outcome(),
        &outcome,
        "the outcome travels with the decision"
    );
    assert_eq!(e.candidates()[1].decision(), MxDecision::Skip);
    let owned = w.cache.evaluate("example.com", &outcome, hosts);
    assert_eq!(owned.candidates()[0].decision(), MxDecision::Enforce);
}

// ----- G. Caching and refresh -----

#[test]
fn r42_expiry_counts_from_last_fetch() {
    let mut w = enforce_world(); // max_age 86400
    let _ = w.deliver("example.com");
    w.take_log();
    w.advance(DAY);
    assert!(reason_of(&w.deliver("example.com")) == Some(&CacheReason::Fresh));
    assert_eq!(w.io(), (0, 0), "still valid at T+86400");
    w.advance(Duration::from_secs(1));
    assert!(matches!(w.deliver("example.com"), Outcome::Fetched(_)));
    assert_eq!(
        w.io(),
        (1, 1),
        "expired at T+86401: refetched although the id is unchanged"
    );
    assert_eq!(
        w.cache.peek("example.com").unwrap().fetched_at(),
        T0.saturating_add(DAY + Duration::from_secs(1))
    );
}

#[test]
fn r42_unchanged_id_never_extends_expiry_without_a_fetch() {
    let mut w = enforce_world();
    let _ = w.deliver("example.com");
    w.advance(DAY + Duration::from_secs(1));
    w.set_fetch("example.com", Err(FetchFailure::Timeout));
    let o = w.deliver("example.com");
    assert!(
        matches!(o, Outcome::NoPolicy(NoPolicyReason::FetchFailed(_))),
        "{o:?}"
    );
    assert_eq!(
        w.cache.peek("example.com").unwrap().fetched_at(),
        T0,
        "not extended"
    );
    assert!(!w.cache.peek("example.com").unwrap().is_fresh(w.now));
}

#[test]
fn r43_unchanged_id_means_no_fetch() {
    let mut w = enforce_world();
    let _ = w.deliver("example.com");
    w.take_log();
    for _ in 0..3 {
        w.advance(HOUR);
        assert!(reason_of(&w.recheck("example.com")) == Some(&CacheReason::UnchangedId));
    }
    assert_eq!(w.io(), (3, 0));
}

#[test]
fn r43_new_id_with_failed_fetch_keeps_cached_policy() {
    let mut w = enforce_world();
    let _ = w.deliver("example.com");
    w.set_txt("example.com", txt_id("A2"));
    w.set_fetch(
        "example.com",
        Ok(FetchResponse::new(404, Some("text/plain"), "")),
    );
    let o = w.recheck("example.com");
    assert!(
        matches!(o, Outcome::Cached { ref policy, reason: CacheReason::FetchFailed(_) } if policy.id() == "A1")
    );
    assert_eq!(w.cache.peek("example.com").unwrap().id(), "A1");
    assert_eq!(mode_of(&w.deliver("example.com")), Some(Mode::Enforce));
}

#[test]
fn r43_new_id_replaces_only_after_successful_fetch_and_parse() {
    let mut w = enforce_world();
    let _ = w.deliver("example.com");
    w.set_txt("example.com", txt_id("A2"));
    w.set_fetch(
        "example.com",
        ok_policy("version: STSv1\nmode: testing\nmax_age: 86400\n"),
    ); // no mx
    let o = w.recheck("example.com");
    assert!(matches!(
        o,
        Outcome::Cached {
            reason: CacheReason::FetchFailed(FetchProblem::Invalid(_)),
            ..
        }
    ));
    assert_eq!(w.cache.peek("example.com").unwrap().id(), "A1");
    w.advance(Duration::from_secs(301));
    w.set_fetch(
        "example.com",
        ok_policy(&body("testing", 86400, &["mail.example.com"])),
    );
    let o = w.recheck("example.com");
    assert!(matches!(o, Outcome::Fetched(ref p) if p.id() == "A2" && p.mode() == Mode::Testing));
    assert_eq!(w.cache.peek("example.com").unwrap().id(), "A2");
}

#[test]
fn r44_proactive_refresh_daily_regardless_of_txt() {
    let mut w = World::new();
    w.publish(
        "example.com",
        "A1",
        &body("enforce", 604_800, &["mail.example.com"]),
    );
    let _ = w.deliver("example.com");
    let due = w.cache.poll_timeout().unwrap();
    assert!(
        due > T0.saturating_add(DAY - Duration::from_secs(8641)) && due <= T0.saturating_add(DAY),
        "{due}"
    );
    // The TXT record is gone, the refresh fetches anyway.
    w.set_txt("example.com", Ok(TxtAnswer::NXDOMAIN));
    w.take_log();
    let refreshed = w.run_until(T0.saturating_add(DAY));
    assert_eq!(refreshed.len(), 1);
    assert!(matches!(refreshed[0], Outcome::Fetched(ref p) if p.id() == "A1"));
    assert_eq!(w.io(), (1, 1));
}

#[test]
fn r44_successful_refresh_resets_expiry() {
    let mut w = World::new();
    w.publish(
        "example.com",
        "A1",
        &body("enforce", 2 * 86_400, &["mail.example.com"]),
    );
    let _ = w.deliver("example.com");
    let before = w.cache.peek("example.com").unwrap().expires_at();
    w.run_until(T0.saturating_add(DAY));
    let after = w.cache.peek("example.com").unwrap().expires_at();
    assert!(after > before);
    assert_eq!(w.cache.stats().refresh_success, 1);
    // Used every day, it never expires although max_age is two days.
    for _ in 0..10 {
        w.advance(DAY);
        w.run_until(w.now);
        assert!(reason_of(&w.deliver("example.com")) == Some(&CacheReason::Fresh));
    }
}

#[test]
fn r44_refresh_jitter_is_seeded_and_spreads() {
    let due = |seed: u64, domain: &str| {
        let mut config = Config::default();
        config.seed = seed;
        let mut w = World::with(config);
        w.publish(domain, "1", &body("enforce", 604_800, &["mx.example"]));
        let _ = w.deliver(domain);
        w.cache.poll_timeout().unwrap()
    };
    assert_eq!(due(7, "a.example"), due(7, "a.example"), "deterministic");
    let spread: std::collections::BTreeSet<_> =
        (0..20).map(|i| due(7, &format!("d{i}.example"))).collect();
    assert!(spread.len() > 10, "{spread:?}");
    assert!(
        spread
            .iter()
            .all(|t| *t <= T0.saturating_add(DAY) && *t >= T0.saturating_add(DAY - DAY / 10))
    );
}

#[test]
fn r45_refresh_failure_counted_and_policy_kept() {
    let mut w = World::new();
    w.publish(
        "example.com",
        "A1",
        &body("enforce", 604_800, &["mail.example.com"]),
    );
    let _ = w.deliver("example.com");
    w.set_fetch("example.com", Err(FetchFailure::Timeout));
    let out = w.run_until(T0.saturating_add(DAY));
    assert!(matches!(
        out[0],
        Outcome::Cached {
            reason: CacheReason::FetchFailed(_),
            ..
        }
    ));
    let s = w.cache.stats();
    assert_eq!((s.refresh_failure, s.fetch_failure), (1, 1));
    assert_eq!(w.cache.peek("example.com").unwrap().fetched_at(), T0);
    // Retried an hour later (default refresh_retry), and succeeds.
    w.set_fetch(
        "example.com",
        ok_policy(&body("enforce", 604_800, &["mail.example.com"])),
    );
    let out = w.run_until(w.now.saturating_add(HOUR));
    assert!(matches!(out[..], [Outcome::Fetched(_)]), "{out:?}");
}

#[test]
fn r45_none_policy_not_refreshed() {
    let mut w = World::new();
    w.publish("example.com", "N", &body("none", 604_800, &[]));
    let _ = w.deliver("example.com");
    assert_eq!(
        w.cache.poll_timeout(),
        Some(T0.saturating_add(Duration::from_secs(604_801)))
    );
    let out = w.run_until(T0.saturating_add(7 * DAY));
    assert!(out.is_empty());
    assert_eq!(
        w.cache.stats().refresh_failure + w.cache.stats().refresh_success,
        0
    );
}

#[test]
fn r46_none_policy_replaces_enforce_then_expires_to_no_policy() {
    let mut w = enforce_world();
    let _ = w.deliver("example.com");
    w.publish("example.com", "REMOVE", &body("none", 600, &[]));
    let o = w.recheck("example.com");
    assert_eq!(mode_of(&o), Some(Mode::None));
    assert_eq!(w.cache.peek("example.com").unwrap().mode(), Mode::None);
    let e = w.cache.evaluate("example.com", &o, ["anything.example"]);
    assert_eq!(e.verdict(), Verdict::Deliver);
    // The publisher removes everything; once the none policy expires: no policy.
    w.set_txt("example.com", Ok(TxtAnswer::NXDOMAIN));
    w.set_fetch("example.com", Err(FetchFailure::Resolve("gone".into())));
    w.run_until(T0.saturating_add(Duration::from_secs(601)));
    assert_eq!(w.cache.len(), 0, "dropped when it expired");
    assert_eq!(
        w.deliver("example.com"),
        Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::NxDomain))
    );
}

fn recheck_world(after: Duration) -> World {
    let mut config = Config::default();
    config.recheck_after = Some(after);
    let mut w = World::with(config);
    w.publish("example.com", "A1", ENFORCE);
    w
}

#[test]
fn r42_recheck_after_checks_the_txt_id_once_per_period_without_extending_expiry() {
    // §5.1 step 1: "Optionally, Sending MTAs may unconditionally check for a new policy".
    let mut w = recheck_world(MINUTE);
    let fetched = w.deliver("example.com");
    let expires = fetched.policy().unwrap().expires_at();
    w.take_log();
    w.advance(Duration::from_secs(59));
    assert_eq!(
        reason_of(&w.deliver("example.com")),
        Some(&CacheReason::Fresh)
    );
    assert_eq!(w.io(), (0, 0), "within the period: no I/O");
    w.advance(Duration::from_secs(1));
    let checked = w.deliver("example.com");
    assert_eq!(reason_of(&checked), Some(&CacheReason::UnchangedId));
    assert_eq!(
        w.io(),
        (1, 0),
        "one TXT query, no fetch for an unchanged id"
    );
    assert_eq!(
        checked.policy().unwrap().expires_at(),
        expires,
        "R42: no extension"
    );
    w.take_log();
    w.advance(Duration::from_secs(30));
    assert_eq!(
        reason_of(&w.deliver("example.com")),
        Some(&CacheReason::Fresh)
    );
    assert_eq!(w.io(), (0, 0), "the period counts from the last check");
}

#[test]
fn r42_recheck_after_fetches_a_new_id_and_a_failed_check_keeps_the_policy() {
    let mut w = recheck_world(MINUTE);
    let _ = w.deliver("example.com");
    w.advance(MINUTE);
    w.publish(
        "example.com",
        "A2",
        &body("enforce", 86_400, &["mx2.example.com"]),
    );
    assert!(matches!(w.deliver("example.com"), Outcome::Fetched(p) if p.id() == "A2"));
    w.take_log();
    w.advance(MINUTE);
    w.servfail("example.com");
    let kept = w.deliver("example.com");
    assert!(
        matches!(reason_of(&kept), Some(CacheReason::DnsFailure(_))),
        "{kept:?}"
    );
    assert_eq!(kept.policy().unwrap().id(), "A2");
    w.take_log();
    w.advance(Duration::from_secs(30));
    assert_eq!(
        reason_of(&w.deliver("example.com")),
        Some(&CacheReason::Fresh)
    );
    assert_eq!(
        w.io(),
        (0, 0),
        "a failed check counts as a check: no storm of queries"
    );
}

#[test]
fn r42_recheck_after_counts_from_the_last_check_after_a_refresh_too() {
    // A check long after a fetch, then a refresh: the next check is due one period after the
    // refresh (which checked the id too), not one period after the old check's offset.
    let mut config = Config::default();
    config.recheck_after = Some(HOUR);
    config.refresh_interval = DAY;
    let mut w = World::with(config);
    w.publish(
        "example.com",
        "A1",
        &body("enforce", 7 * 86_400, &["mail.example.com"]),
    );
    let _ = w.deliver("example.com");
    w.advance(Duration::from_secs(4000));
    assert_eq!(
        reason_of(&w.deliver("example.com")),
        Some(&CacheReason::UnchangedId)
    );
    w.advance(DAY);
    assert!(!w.refresh_due().is_empty(), "the daily refresh ran");
    w.take_log();
    w.advance(Duration::from_secs(3700));
    assert_eq!(
        reason_of(&w.deliver("example.com")),
        Some(&CacheReason::UnchangedId)
    );
    assert_eq!(w.io(), (1, 0), "checked an hour after the refresh");
}

#[test]
fn r42_recheck_after_zero_checks_every_delivery_and_others_do_not_wait_for_it() {
    let mut w = recheck_world(Duration::ZERO);
    let _ = w.deliver("example.com");
    w.take_log();
    let _ = w.deliver("example.com");
    let _ = w.deliver("example.com");
    assert_eq!(w.io(), (2, 0), "a TXT query at every delivery");
    // While one delivery's check is under way, the others get the fresh policy at once.
    let Begin::Started(check) = w.cache.begin("example.com", w.now) else {
        panic!("the due check starts a lookup")
    };
    assert_eq!(check.kind(), LookupKind::Recheck);
    assert!(matches!(
        w.cache.begin("example.com", w.now),
        Begin::Ready(Outcome::Cached {
            reason: CacheReason::Fresh,
            ..
        })
    ));
    // Without the setting, a fresh policy never asks DNS.
    let mut plain = enforce_world();
    let _ = plain.deliver("example.com");
    plain.take_log();
    plain.advance(HOUR);
    let _ = plain.deliver("example.com");
    assert_eq!(plain.io(), (0, 0));
}

// ----- Sender configuration -----

#[test]
fn config_require_defers_without_an_active_policy() {
    let mut config = Config::default();
    let mut require = config.defaults;
    require.usage = StsUsage::Require;
    config.set_override("bank.example", require).unwrap();
    let mut w = World::with(config);
    let o = w.deliver("bank.example");
    let e = w.cache.evaluate("bank.example", &o, ["mx.bank.example"]);
    assert_eq!(e.verdict(), Verdict::Defer(DeferReason::PolicyRequired));
    w.publish("bank.example", "1", &body("none", 86400, &[]));
    let o = w.deliver("bank.example");
    let e = w.cache.evaluate("bank.example", &o, ["mx.bank.example"]);
    assert_eq!(
        e.verdict(),
        Verdict::Defer(DeferReason::PolicyRequired),
        "none is no active policy"
    );
    // The default (optional) is unaffected.
    let o = w.deliver("other.example");
    assert_eq!(
        w.cache
            .evaluate("other.example", &o, ["mx.other.example"])
            .verdict(),
        Verdict::Deliver
    );
}

#[test]
fn config_disable_does_no_io_and_no_constraint() {
    let mut config = Config::default();
    config.defaults.usage = StsUsage::Disable;
    let mut w = World::with(config);
    w.publish("example.com", "A1", ENFORCE);
    let o = w.deliver("example.com");
    assert_eq!(o, Outcome::NoPolicy(NoPolicyReason::Disabled));
    assert_eq!(
        w.recheck("example.com"),
        Outcome::NoPolicy(NoPolicyReason::Disabled)
    );
    assert_eq!(w.io(), (0, 0));
    let e = w.cache.evaluate("example.com", &o, ["evil.example"]);
    assert_eq!(e.candidates()[0].decision(), MxDecision::NoConstraint);
}

// ----- Cache: fast path, coalescing, bounds -----

#[test]
fn cache_fresh_entry_answers_without_io() {
    let mut w = enforce_world();
    let _ = w.deliver("example.com");
    w.take_log();
    for name in ["example.com", "EXAMPLE.com.", "Example.Com"] {
        assert!(matches!(
            w.cache.begin(name, w.now),
            Begin::Ready(Outcome::Cached {
                reason: CacheReason::Fresh,
                ..
            })
        ));
    }
    assert_eq!(w.io(), (0, 0));
    assert_eq!(w.cache.stats().cached, 3);
}

#[test]
fn cache_coalesces_concurrent_lookups_into_one() {
    let mut w = enforce_world();
    let Begin::Started(first) = w.cache.begin("example.com", w.now) else {
        panic!()
    };
    assert!(w.cache.is_in_flight("example.com", w.now));
    let flight = first.flight().expect("a cache lookup has a flight");
    assert_eq!(w.cache.flight("EXAMPLE.com.", w.now), Some(flight));
    for _ in 0..3 {
        assert!(
            matches!(w.cache.begin("Example.com", w.now), Begin::InProgress(f) if f == flight),
            "later callers are told the first caller's flight"
        );
    }
    let r = drive(*first, &mut w.net, w.now);
    let o = w.cache.apply(r, w.now);
    assert!(matches!(o, Outcome::Fetched(_)));
    assert!(!w.cache.is_in_flight("example.com", w.now));
    assert_eq!(w.io(), (1, 1), "one DNS query and one fetch");
    assert!(matches!(
        w.cache.begin("example.com", w.now),
        Begin::Ready(_)
    ));
}

#[test]
fn cache_abandoned_lookup_does_not_block_the_domain() {
    let mut w = enforce_world();
    let Begin::Started(l) = w.cache.begin("example.com", w.now) else {
        panic!()
    };
    drop(l);
    assert!(matches!(
        w.cache.begin("example.com", w.now),
        Begin::InProgress(_)
    ));
    w.advance(5 * MINUTE); // Config::lookup_deadline
    let Begin::Started(newer) = w.cache.begin("example.com", w.now) else {
        panic!("a lookup past the deadline of the dropped one starts")
    };
    let d = PolicyDomain::parse("example.com").unwrap();
    w.cache
        .abandon(&d, newer.flight().expect("a cache lookup has a flight"));
    assert!(matches!(
        w.cache.begin("example.com", w.now),
        Begin::Started(_)
    ));
}

#[test]
fn cache_eviction_order_memos_first_then_least_recently_used() {
    let mut config = Config::default();
    config.capacity = 3;
    let mut w = World::with(config);
    for d in ["a.example", "b.example", "c.example"] {
        w.publish(d, "1", &body("enforce", 604_800, &["mx.example"]));
    }
    w.set_txt("memo.example", txt_id("1")); // fetch fails: only a memo
    let _ = w.deliver("a.example");
    let _ = w.deliver("memo.example");
    let _ = w.deliver("b.example");
    assert_eq!(w.cache.len(), 3);
    w.advance(MINUTE);
    let _ = w.deliver("a.example"); // a is now more recent than b
    let _ = w.deliver("c.example"); // full: the memo goes first
    assert!(w.cache.peek("a.example").is_some() && w.cache.peek("b.example").is_some());
    assert!(w.cache.peek("c.example").is_some());
    w.publish("d.example", "1", &body("enforce", 604_800, &["mx.example"]));
    let _ = w.deliver("d.example"); // full, no memo: least recently used policy (b) goes
    assert!(w.cache.peek("b.example").is_none());
    for d in ["a.example", "c.example", "d.example"] {
        assert!(w.cache.peek(d).is_some(), "{d}");
    }
    assert_eq!(w.cache.stats().evictions, 2);
    assert_eq!(w.cache.len(), 3);
}

#[test]
fn cache_capacity_zero_caches_nothing_but_still_answers() {
    let mut config = Config::default();
    config.capacity = 0;
    let mut w = World::with(config);
    w.publish("example.com", "1", ENFORCE);
    assert!(matches!(w.deliver("example.com"), Outcome::Fetched(_)));
    assert!(matches!(w.deliver("example.com"), Outcome::Fetched(_)));
    assert_eq!(w.cache.len(), 0);
}

#[test]
fn cache_idle_entries_are_not_refreshed_and_dropped_at_expiry() {
    let mut config = Config::default();
    config.idle_after = 2 * DAY;
    let mut w = World::with(config);
    w.publish(
        "example.com",
        "A1",
        &body("enforce", 10 * 86_400, &["mail.example.com"]),
    );
    let _ = w.deliver("example.com");
    let out = w.run_until(T0.saturating_add(9 * DAY));
    assert_eq!(out.len(), 2, "refreshed on days 1 and 2 only: {out:?}");
    assert!(
        w.cache.peek("example.com").is_some(),
        "kept while unexpired"
    );
    w.run_until(T0.saturating_add(13 * DAY));
    assert!(
        w.cache.peek("example.com").is_none(),
        "dropped at expiry, never refreshed again"
    );
}

#[test]
fn cache_poll_refresh_is_a_noop_before_due() {
    let mut w = enforce_world();
    let _ = w.deliver("example.com");
    assert!(w.cache.poll_refresh(w.now).is_none());
    assert!(w.cache.poll_refresh(T0.saturating_add(HOUR)).is_none());
    assert_eq!(w.cache.len(), 1);
}

// ----- Lookup state machine -----

#[test]
fn lookup_standalone_and_handle_misuse_is_an_error() {
    let config = Config::default();
    let d = PolicyDomain::parse("example.com").unwrap();
    let mut l = Lookup::new(d, None, &config, T0);
    assert_eq!(l.kind(), LookupKind::Delivery);
    let Step::Io(Io::Txt(_)) = l.poll() else {
        panic!()
    };
    assert_eq!(l.poll(), l.poll(), "poll is idempotent");
    let wrong = IoResult::Fetch(Err(FetchFailure::Timeout));
    assert_eq!(l.handle(wrong, T0), Err(LookupError::UnexpectedResult));
    l.handle(IoResult::Txt(txt_id("1")), T0).unwrap();
    let Step::Io(Io::Fetch(_)) = l.poll() else {
        panic!()
    };
    l.handle(IoResult::Fetch(ok_policy(ENFORCE)), T0).unwrap();
    let Step::Done(r) = l.poll() else { panic!() };
    assert!(r.fetched());
    assert!(matches!(r.outcome(), Outcome::Fetched(_)));
    assert_eq!(
        l.handle(IoResult::Txt(txt_id("1")), T0),
        Err(LookupError::Finished)
    );
    // A standalone lookup with a fresh policy finishes without I/O.
    let p = r.into_outcome().policy().unwrap().clone();
    let l = Lookup::new(
        PolicyDomain::parse("example.com").unwrap(),
        Some(p),
        &config,
        T0,
    );
    assert!(matches!(l.poll(), Step::Done(_)));
}

// ----- Persistence -----

#[test]
fn snapshot_roundtrip_keeps_policies_ids_and_times() {
    let mut w = World::new();
    w.publish(
        "a.example",
        "A1",
        &body("enforce", 604_800, &["mx.a.example", "*.b.example"]),
    );
    w.publish(
        "b.example",
        "B1",
        &body("testing", 86_400, &["mx.b.example"]),
    );
    let _ = w.deliver("a.example");
    w.advance(MINUTE);
    let _ = w.deliver("b.example");
    let snap = w.cache.export(w.now);
    assert_eq!(snap.entries().len(), 2);
    assert_eq!(snap.entries()[0].domain(), "b.example", "most recent first");
    let mut fresh = PolicyCache::new(Config::default());
    assert_eq!(fresh.import(snap.clone(), w.now).map(|r| r.loaded), Ok(2));
    assert_eq!(fresh.peek("a.example"), w.cache.peek("a.example"));
    assert_eq!(fresh.peek("b.example"), w.cache.peek("b.example"));
    assert_eq!(fresh.export(w.now), snap);
    // Expired entries are skipped on import.
    let mut later = PolicyCache::new(Config::default());
    let report = later.import(snap, w.now.saturating_add(2 * DAY)).unwrap();
    assert_eq!((report.loaded, report.expired, report.skipped), (1, 1, 0));
}

#[cfg(feature = "serde")]
#[test]
fn snapshot_serde_json_roundtrip_and_foreign_json_refused() {
    let mut w = enforce_world();
    let _ = w.deliver("example.com");
    let json = serde_json::to_string(&w.cache.export(w.now)).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    let mut c = PolicyCache::new(Config::default());
    assert_eq!(c.import(back, w.now).map(|r| r.loaded), Ok(1));
    // Foreign or corrupt documents do not even deserialise.
    assert!(
        serde_json::from_str::<Snapshot>(r#"{"format":"x","version":1,"entries":[],"extra":1}"#)
            .is_err()
    );
    assert!(serde_json::from_str::<Snapshot>(r#"{"entries":[]}"#).is_err());
    let foreign: Snapshot =
        serde_json::from_str(r#"{"format":"other-cache","version":1,"entries":[]}"#).unwrap();
    assert_eq!(
        c.import(foreign, w.now).map(|r| r.loaded),
        Err(SnapshotError::Foreign {
            format: "other-cache".into()
        })
    );
    let v2: Snapshot =
        serde_json::from_str(&json.replace("\"version\":1", "\"version\":2")).unwrap();
    assert_eq!(
        c.import(v2, w.now).map(|r| r.loaded),
        Err(SnapshotError::UnsupportedVersion(2))
    );
}

#[test]
fn snapshot_bad_entries_are_skipped_and_the_valid_ones_load() {
    // A damaged cache file never costs the valid policies in it: each bad entry is skipped,
    // with its position and why, and the others load.
    let now = T0;
    let good = SnapshotEntry::new(
        "a.example",
        "A1",
        now,
        now,
        body("enforce", 86400, &["mx.a.example"]),
    );
    let later = |d: &str| SnapshotEntry::new(d, "C1", now, now, good.policy());
    let cases = [
        (
            SnapshotEntry::new("[192.0.2.1]", "A1", now, now, good.policy()),
            "domain",
        ),
        (
            SnapshotEntry::new("b.example", "a-b", now, now, good.policy()),
            "id",
        ),
        (
            SnapshotEntry::new(
                "b.example",
                "B1",
                now,
                now,
                "version: STSv1\nmode: Enforce\n",
            ),
            "policy",
        ),
        (
            // A clock stepped back: the entry would outlive its max_age.
            SnapshotEntry::new(
                "b.example",
                "B1",
                now.saturating_add(DAY),
                now,
                good.policy(),
            ),
            "future",
        ),
        (
            SnapshotEntry::new("A.example.", "A2", now, now, good.policy()),
            "duplicate",
        ),
    ];
    for (bad, what) in cases {
        let mut c = PolicyCache::new(Config::default());
        let snapshot = Snapshot::new(vec![good.clone(), bad, later("c.example")]);
        let report = c
            .import(snapshot, now)
            .expect("a snapshot of our format loads");
        assert_eq!((report.loaded, report.skipped), (2, 1), "{what}");
        let problem = &report.problems[0];
        let ok = match what {
            "domain" => matches!(problem, SnapshotError::InvalidDomain { index: 1, .. }),
            "id" => matches!(problem, SnapshotError::InvalidId { index: 1 }),
            "policy" => matches!(problem, SnapshotError::InvalidPolicy { index: 1, .. }),
            "future" => matches!(problem, SnapshotError::FromTheFuture { index: 1 }),
            _ => matches!(problem, SnapshotError::Duplicate { index: 1 }),
        };
        assert!(ok, "{what}: {problem:?}");
        assert_eq!(c.peek("a.example").map(|p| p.id()), Some("A1"), "{what}");
        assert!(
            c.peek("c.example").is_some(),
            "{what}: the entry after it loads"
        );
    }
}

#[cfg(feature = "serde")]
#[test]
fn snapshot_entries_of_the_wrong_shape_are_counted_not_fatal() {
    let now = T0;
    let policy = body("enforce", 86400, &["mx.a.example"]);
    let entry = |d: &str| SnapshotEntry::new(d, "A1", now, now, policy.as_str());
    let mut json =
        serde_json::to_value(Snapshot::new(vec![entry("a.example"), entry("c.example")])).unwrap();
    // Between the two: an entry with a field of the wrong type, one with a field missing and
    // one that is not an object.
    let entries = json["entries"].as_array_mut().unwrap();
    let mut wrong_type = entries[0].clone();
    wrong_type["fetched_at"] = serde_json::json!("yesterday");
    let mut missing = entries[0].clone();
    missing.as_object_mut().unwrap().remove("policy");
    entries.splice(1..1, [wrong_type, missing, serde_json::json!(42)]);
    let snapshot: Snapshot = serde_json::from_value(json).expect("the document still reads");
    assert_eq!((snapshot.entries().len(), snapshot.malformed()), (2, 3));
    let mut c = PolicyCache::new(Config::default());
    let report = c.import(snapshot, now).unwrap();
    assert_eq!((report.loaded, report.skipped), (2, 3));
    assert_eq!(
        report.problems,
        [1, 2, 3].map(|index| SnapshotError::Malformed { index })
    );
}

#[test]
fn snapshot_problems_listed_are_bounded_all_counted() {
    let now = T0;
    let bad: Vec<_> = (0..100)
        .map(|i| SnapshotEntry::new(format!("d{i}.example"), "bad id!", now, now, ""))
        .collect();
    let mut c = PolicyCache::new(Config::default());
    let report = c.import(Snapshot::new(bad), now).unwrap();
    assert_eq!(report.skipped, 100);
    assert_eq!(report.problems.len(), mta_sts_core::MAX_LISTED_PROBLEMS);
    assert!(c.is_empty());
}

// ----- Observability -----

#[test]
fn stats_count_fetches_by_result_and_cache_size() {
    let mut w = enforce_world();
    let _ = w.deliver("example.com"); // fetch success
    let _ = w.deliver("example.com"); // cached
    w.publish("b.example", "1", ENFORCE);
    w.set_fetch("b.example", Err(FetchFailure::Timeout));
    let _ = w.deliver("b.example"); // fetch failure
    let s = w.cache.stats();
    assert_eq!((s.fetch_success, s.fetch_failure, s.cached), (1, 1, 1));
    assert_eq!(s.entries, 2, "a policy and a failed-fetch memo");
    assert_eq!(s.in_flight, 0);
}

// ----- Long timelines -----

#[test]
fn timeline_weeks_of_refreshes_policy_changes_and_outages() {
    let mut config = Config::default();
    config.seed = 42;
    let mut w = World::with(config);
    let v1 = body("testing", 604_800, &["mx1.example.com"]);
    let v2 = body("enforce", 604_800, &["mx1.example.com", "mx2.example.com"]);
    w.publish("example.com", "v1", &v1);
    let deliver_every_hour = |w: &mut World, hours: u32, expect: Option<Mode>| {
        for _ in 0..hours {
            w.run_until(w.now.saturating_add(HOUR));
            let o = w.deliver("example.com");
            assert_eq!(mode_of(&o), expect, "at {}: {o:?}", w.now);
        }
    };
    // Week 1: steady; about one refresh a day.
    deliver_every_hour(&mut w, 7 * 24, Some(Mode::Testing));
    let s = w.cache.stats();
    assert!((6..=8).contains(&s.refresh_success), "{s:?}");
    // Week 2: the publisher switches to enforce with a new id; picked up by the next refresh.
    w.publish("example.com", "v2", &v2);
    let mut switched = false;
    for _ in 0..25 {
        w.run_until(w.now.saturating_add(HOUR));
        let mode = mode_of(&w.deliver("example.com"));
        switched |= mode == Some(Mode::Enforce);
        assert_eq!(
            mode,
            Some(if switched {
                Mode::Enforce
            } else {
                Mode::Testing
            }),
            "no flapping"
        );
    }
    assert_eq!(mode_of(&w.deliver("example.com")), Some(Mode::Enforce));
    assert_eq!(w.cache.peek("example.com").unwrap().id(), "v2");
    // Weeks 2-3: a ten-day outage of the policy host and DNS: the cached enforce policy is kept
    // while it is valid (max_age one week), then there is none.
    let outage_start = w.now;
    let last_fetch = w.cache.peek("example.com").unwrap().fetched_at();
    w.servfail("example.com");
    w.set_fetch("example.com", Err(FetchFailure::Connect("down".into())));
    let expires = last_fetch.saturating_add(Duration::from_secs(604_800));
    while w.now < outage_start.saturating_add(10 * DAY) {
        w.run_until(w.now.saturating_add(HOUR));
        let o = w.deliver("example.com");
        if w.now <= expires {
            assert_eq!(mode_of(&o), Some(Mode::Enforce), "at {}: {o:?}", w.now);
        } else {
            assert_eq!(
                o,
                Outcome::TemporaryFailure(DnsFailure::ServerFailure),
                "at {}",
                w.now
            );
        }
    }
    assert!(w.cache.stats().refresh_failure >= 6);
    // Week 4: service is back; the policy is fetched again and refreshed daily.
    w.publish("example.com", "v2", &v2);
    deliver_every_hour(&mut w, 7 * 24, Some(Mode::Enforce));
    assert!(w.cache.peek("example.com").unwrap().fetched_at() > w.now.saturating_sub(DAY + HOUR));
    assert_eq!(w.cache.len(), 1);
}
