//! S9: negative answers (NXDOMAIN, NODATA for `_mta-sts.<domain>`) are remembered until their
//! negative TTL (RFC 2308 §5), within the configured bounds, in virtual time.

mod engine_harness;

use core::time::Duration;

use engine_harness::{HOUR, MINUTE, World, body, ok_policy, txt_id};
use mta_sts_core::io::{FetchFailure, TxtAnswer, TxtResult};
use mta_sts_core::{Absent, Config, NoPolicyReason, Outcome, TxtProblem};

const SECOND: Duration = Duration::from_secs(1);

fn nx(secs: Option<u64>) -> TxtResult {
    Ok(TxtAnswer::NxDomain {
        negative_ttl: secs.map(Duration::from_secs),
    })
}

fn nodata(secs: Option<u64>) -> TxtResult {
    Ok(TxtAnswer::NoData {
        negative_ttl: secs.map(Duration::from_secs),
    })
}

fn no_record(problem: TxtProblem) -> Outcome {
    Outcome::NoPolicy(NoPolicyReason::NoRecord(problem))
}

/// Delivers to `domain` and returns the outcome and the TXT queries it made.
fn deliver(w: &mut World, domain: &str) -> (Outcome, usize) {
    let _ = w.take_log();
    let o = w.deliver(domain);
    (o, w.io().0)
}

#[test]
fn s9_negative_answer_cached_until_its_ttl_then_asked_again() {
    for (answer, problem) in [
        (nx(Some(600)), TxtProblem::NxDomain),
        (nodata(Some(600)), TxtProblem::NoData),
    ] {
        let mut w = World::new();
        w.set_txt("example.org", answer);
        assert_eq!(
            deliver(&mut w, "example.org"),
            (no_record(problem.clone()), 1)
        );
        let until = w.now.saturating_add(Duration::from_secs(600));
        let absent = match problem {
            TxtProblem::NxDomain => Absent::NxDomain,
            _ => Absent::NoData,
        };
        assert_eq!(
            w.cache.peek_absent("EXAMPLE.org.", w.now),
            Some((absent, until))
        );
        // Within the TTL: no I/O, the same answer (the name in any form).
        w.advance(Duration::from_secs(599));
        assert_eq!(
            deliver(&mut w, "example.org"),
            (no_record(problem.clone()), 0)
        );
        assert_eq!(
            deliver(&mut w, "Example.ORG."),
            (no_record(problem.clone()), 0)
        );
        assert_eq!(w.cache.stats().negative_hits, 2);
        assert_eq!(w.cache.stats().negative_entries, 1);
        // At the end of the TTL the domain is asked again, and a new record is seen.
        w.advance(SECOND);
        w.publish(
            "example.org",
            "1",
            &body("enforce", 86_400, &["mx.example.org"]),
        );
        let (o, txt) = deliver(&mut w, "example.org");
        assert!(matches!(o, Outcome::Fetched(_)), "{o:?}");
        assert_eq!(txt, 1);
        assert_eq!(w.cache.peek_absent("example.org", w.now), None);
        assert_eq!(w.cache.stats().negative_entries, 0);
    }
}

#[test]
fn s9_negative_ttl_is_capped_and_floored() {
    let mut w = World::new();
    w.set_txt("long.example", nx(Some(7 * 86_400)));
    w.set_txt("zero.example", nodata(Some(0)));
    let _ = deliver(&mut w, "long.example");
    let _ = deliver(&mut w, "zero.example");
    let cap = w.cache.config().negative_ttl_max;
    assert_eq!(cap, HOUR);
    let floor = w.cache.config().negative_ttl_min;
    let until = |d| Some(w.now.saturating_add(d));
    assert_eq!(
        w.cache.peek_absent("long.example", w.now).map(|a| a.1),
        until(cap)
    );
    assert_eq!(
        w.cache.peek_absent("zero.example", w.now).map(|a| a.1),
        until(floor)
    );
    // The floor spares a burst; after it, the domain is asked again.
    assert_eq!(deliver(&mut w, "zero.example").1, 0);
    w.advance(floor);
    assert_eq!(deliver(&mut w, "zero.example").1, 1);
    // The cap: asked again after an hour, not a week.
    w.advance(cap - floor - SECOND);
    assert_eq!(deliver(&mut w, "long.example").1, 0);
    w.advance(SECOND);
    assert_eq!(deliver(&mut w, "long.example").1, 1);

    // A configured cap.
    let mut config = Config::default();
    config.negative_ttl_max = 10 * MINUTE;
    let mut w = World::with(config);
    w.set_txt("long.example", nx(Some(86_400)));
    let _ = deliver(&mut w, "long.example");
    w.advance(10 * MINUTE - SECOND);
    assert_eq!(deliver(&mut w, "long.example").1, 0);
    w.advance(SECOND);
    assert_eq!(deliver(&mut w, "long.example").1, 1);
}

#[test]
fn s9_negative_answer_without_soa_uses_the_default() {
    for answer in [nx(None), nodata(None)] {
        let mut w = World::new();
        w.set_txt("example.org", answer);
        let default = w.cache.config().negative_ttl_default;
        assert_eq!(default, 5 * MINUTE);
        assert_eq!(deliver(&mut w, "example.org").1, 1);
        w.advance(default - SECOND);
        assert_eq!(deliver(&mut w, "example.org").1, 0);
        w.advance(SECOND);
        assert_eq!(deliver(&mut w, "example.org").1, 1);
    }
}

#[test]
fn s9_negative_entries_are_bounded_expiring_first_evicted() {
    let mut config = Config::default();
    config.negative_capacity = 3;
    let mut w = World::with(config);
    // d0 expires first (shortest TTL), then d1, d2, d3: inserting d3 evicts d0.
    for (i, ttl) in [(0, 100), (1, 200), (2, 300), (3, 400)] {
        let d = format!("d{i}.example");
        w.set_txt(&d, nx(Some(ttl)));
        assert_eq!(deliver(&mut w, &d).1, 1);
    }
    assert_eq!(w.cache.stats().negative_entries, 3);
    assert_eq!(w.cache.peek_absent("d0.example", w.now), None);
    for d in ["d1.example", "d2.example", "d3.example"] {
        assert_eq!(deliver(&mut w, d).1, 0, "{d} is remembered");
    }
    assert_eq!(deliver(&mut w, "d0.example").1, 1, "d0 was evicted");
    // Expired entries are dropped as the cache meets them.
    w.advance(HOUR);
    let _ = w.cache.poll_refresh(w.now);
    assert_eq!(w.cache.stats().negative_entries, 0);

    // Capacity 0: negative caching off.
    let mut config = Config::default();
    config.negative_capacity = 0;
    let mut w = World::with(config);
    assert_eq!(deliver(&mut w, "example.org").1, 1);
    assert_eq!(deliver(&mut w, "example.org").1, 1);
    assert_eq!(w.cache.stats().negative_entries, 0);
}

#[test]
fn s9_negative_answer_never_drops_a_fresh_policy() {
    // R11 still holds: with a fresh policy, NXDOMAIN on a re-check keeps it and is not
    // remembered; a peer's negative answer is refused too.
    let mut w = World::new();
    w.publish(
        "example.com",
        "1",
        &body("enforce", 86_400, &["mx.example.com"]),
    );
    assert!(matches!(w.deliver("example.com"), Outcome::Fetched(_)));
    w.set_txt("example.com", nx(Some(3600)));
    let o = w.recheck("example.com");
    assert!(o.policy().is_some(), "{o:?}");
    assert_eq!(w.cache.peek_absent("example.com", w.now), None);
    let until = w.now.saturating_add(HOUR);
    assert!(
        !w.cache
            .adopt_absent("example.com", Absent::NxDomain, until, w.now)
    );
    assert!(w.deliver("example.com").policy().is_some());
}

#[test]
fn s9_a_stored_policy_replaces_a_negative_answer() {
    let mut w = World::new();
    w.set_txt("example.com", nodata(Some(3600)));
    let _ = deliver(&mut w, "example.com");
    // A re-check (before a permanent failure) always asks, and a policy found replaces the
    // negative answer at once.
    w.publish(
        "example.com",
        "1",
        &body("testing", 86_400, &["mx.example.com"]),
    );
    assert!(matches!(w.recheck("example.com"), Outcome::Fetched(_)));
    assert_eq!(w.cache.peek_absent("example.com", w.now), None);
    assert!(w.deliver("example.com").policy().is_some());
}

#[test]
fn s9_failed_fetch_keeps_its_cooldown_not_the_negative_ttl() {
    let mut w = World::new();
    w.set_txt("example.com", txt_id("1"));
    w.set_fetch("example.com", Err(FetchFailure::Timeout));
    let o = w.deliver("example.com");
    assert!(
        matches!(o, Outcome::NoPolicy(NoPolicyReason::FetchFailed(_))),
        "{o:?}"
    );
    assert_eq!(w.cache.peek_absent("example.com", w.now), None);
    assert_eq!(w.cache.stats().negative_entries, 0);
    // R19: the TXT record is still asked at every delivery, the fetch is not retried.
    let _ = w.take_log();
    let o = w.deliver("example.com");
    assert!(
        matches!(o, Outcome::NoPolicy(NoPolicyReason::RetryLater { .. })),
        "{o:?}"
    );
    assert_eq!(w.io(), (1, 0));
    w.set_fetch("example.com", ok_policy(&body("enforce", 86_400, &["mx"])));
    w.advance(w.cache.config().fetch_retry_after);
    assert!(matches!(w.deliver("example.com"), Outcome::Fetched(_)));
}

#[test]
fn s9_adopted_negative_answer_is_used_until_its_time_capped() {
    let mut w = World::new();
    let now = w.now;
    // From a peer: until in ten minutes.
    let until = now.saturating_add(10 * MINUTE);
    assert!(
        w.cache
            .adopt_absent("Peer.Example", Absent::NoData, until, now)
    );
    assert_eq!(
        deliver(&mut w, "peer.example"),
        (no_record(TxtProblem::NoData), 0)
    );
    // A peer's time far in the future is capped like our own answers.
    let far = now.saturating_add(30 * 86_400 * SECOND);
    assert!(
        w.cache
            .adopt_absent("far.example", Absent::NxDomain, far, now)
    );
    let cap = now.saturating_add(w.cache.config().negative_ttl_max);
    assert_eq!(
        w.cache.peek_absent("far.example", now),
        Some((Absent::NxDomain, cap))
    );
    // Refused: already expired, invalid domain, address literal.
    assert!(
        !w.cache
            .adopt_absent("old.example", Absent::NxDomain, now, now)
    );
    assert!(
        !w.cache
            .adopt_absent("not a domain", Absent::NxDomain, until, now)
    );
    assert!(
        !w.cache
            .adopt_absent("[192.0.2.1]", Absent::NxDomain, until, now)
    );
    w.advance(10 * MINUTE);
    assert_eq!(deliver(&mut w, "peer.example").1, 1);
}

#[test]
fn s9_resolution_reports_the_negative_answer_and_its_end() {
    let mut w = World::new();
    w.set_txt("example.org", nx(Some(120)));
    let mta_sts_core::Begin::Started(l) = w.cache.begin("example.org", w.now) else {
        panic!("a lookup starts")
    };
    let r = engine_harness::drive(*l, &mut w.net, w.now);
    let until = w.now.saturating_add(2 * MINUTE);
    assert_eq!(r.absent_until(), Some((Absent::NxDomain, until)));
    let _ = w.cache.apply(r, w.now);
    // A positive answer reports none.
    w.publish("other.example", "1", &body("none", 86_400, &["mx"]));
    let mta_sts_core::Begin::Started(l) = w.cache.begin("other.example", w.now) else {
        panic!("a lookup starts")
    };
    let r = engine_harness::drive(*l, &mut w.net, w.now);
    assert_eq!(r.absent_until(), None);
}
