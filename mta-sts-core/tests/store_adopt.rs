//! Adoption of entries of a shared policy store (issue 16, S1): the core decides what a stored
//! entry may be used for.

use std::time::Duration;

use mta_sts_core::{AdoptError, Begin, CacheReason, Config, Outcome, PolicyCache, UnixTime};

const TEXT: &str = "version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: 86400\n";
const T: UnixTime = UnixTime::from_secs(1_700_000_000);

fn later(secs: u64) -> UnixTime {
    T.saturating_add(Duration::from_secs(secs))
}

#[test]
fn s1_adopted_entry_answers_as_a_fresh_cached_policy() {
    let mut cache = PolicyCache::new(Config::default());
    let p = cache
        .adopt("Example.NET", "20260101", T, TEXT, later(60))
        .unwrap();
    assert_eq!((p.id(), p.fetched_at()), ("20260101", T));
    let Begin::Ready(Outcome::Cached { policy, reason }) = cache.begin("example.net", later(60))
    else {
        panic!("an adopted policy answers without a lookup")
    };
    assert_eq!(reason, CacheReason::Fresh);
    assert_eq!(policy, p);
    // What the client writes back is the same entry, canonical text and all.
    let e = cache.store_entry("example.net").unwrap();
    assert_eq!(
        (e.domain(), e.id(), e.fetched_at()),
        ("example.net", "20260101", T)
    );
    assert_eq!(e.policy(), p.policy().to_string());
    assert!(cache.store_entry("other.example").is_none());
}

#[test]
fn s1_expired_future_and_hostile_entries_are_refused() {
    let mut cache = PolicyCache::new(Config::default());
    assert_eq!(
        cache.adopt("example.net", "1", T, TEXT, later(86_401)),
        Err(AdoptError::Expired)
    );
    assert_eq!(
        cache.adopt("example.net", "1", later(301), TEXT, T),
        Err(AdoptError::FromTheFuture)
    );
    assert!(
        cache.adopt("example.net", "1", later(300), TEXT, T).is_ok(),
        "clock skew allowed"
    );
    let mut cache = PolicyCache::new(Config::default());
    for (domain, id, text) in [
        ("example.net", "1", "[\"1\", {\"mx\": [\"x\"]}]"),
        ("example.net", "1", ""),
        ("example.net", "not an id!", TEXT),
        ("[127.0.0.1]", "1", TEXT),
        ("example.net", "1", &"mx: a\n".repeat(100_000)),
    ] {
        let r = cache.adopt(domain, id, T, text, T);
        assert!(
            matches!(
                r,
                Err(AdoptError::InvalidPolicy(_)
                    | AdoptError::InvalidId
                    | AdoptError::InvalidDomain(_))
            ),
            "{domain} {id}: {r:?}"
        );
    }
    assert!(cache.is_empty(), "nothing refused is cached");
}

#[test]
fn s1_a_stored_entry_never_replaces_a_newer_local_policy() {
    let mut cache = PolicyCache::new(Config::default());
    cache
        .adopt("example.net", "2", later(100), TEXT, later(100))
        .unwrap();
    assert_eq!(
        cache.adopt("example.net", "1", T, TEXT, later(100)),
        Err(AdoptError::NotNewer)
    );
    assert_eq!(cache.peek("example.net").unwrap().id(), "2");
    // A newer entry replaces an older one.
    cache
        .adopt("example.net", "3", later(200), TEXT, later(200))
        .unwrap();
    assert_eq!(cache.peek("example.net").unwrap().id(), "3");
}

#[test]
fn s2_store_unavailable_defers_whatever_the_settings() {
    use mta_sts_core::{DeferReason, DnsTempFailure, DomainSettings, Evaluation, Verdict};
    let outcome = Outcome::StoreUnavailable("timed out".into());
    for dns in [DnsTempFailure::Defer, DnsTempFailure::DeliverWithoutSts] {
        let mut settings = DomainSettings::default();
        settings.dns_temp_failure = dns;
        let e = Evaluation::new(&outcome, &settings, ["mx.example.net"]);
        assert_eq!(e.verdict(), Verdict::Defer(DeferReason::StoreUnavailable));
    }
    assert_eq!(
        outcome.to_string(),
        "temporary failure: policy store: timed out"
    );
}
