//! The project's conformance vectors (`tests/vectors/public.json`, copied from the shared
//! vectors; the rules are in `tests/vectors/README.md`), checked under both profiles.

use mta_sts_core::{MxPattern, Policy, Profile, StsRecord};
use serde_json::Value;

fn vectors() -> Value {
    let text = include_str!("vectors/public.json");
    serde_json::from_str(text).expect("public.json is valid JSON")
}

fn cases<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key]
        .as_array()
        .map(Vec::as_slice)
        .expect("array of vectors")
}

#[test]
fn vectors_policies_both_profiles() {
    let v = vectors();
    let mut failures = Vec::new();
    let all = cases(&v, "policies");
    assert!(all.len() >= 40, "expected the full policy vector set");
    for case in all {
        let name = case["name"].as_str().unwrap();
        let body = case["input"]["body"].as_str().unwrap();
        let want = &case["expect"]["default"];
        let got = Policy::parse(body);
        match (&got, want["valid"].as_bool().unwrap()) {
            (Ok(p), true) => {
                let mx: Vec<&str> = p.mx().iter().map(|m| m.as_str()).collect();
                let want_mx: Vec<&str> = want["mx"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap())
                    .collect();
                if p.mode().as_str() != want["mode"].as_str().unwrap()
                    || mx != want_mx
                    || u64::from(p.max_age()) != want["max_age"].as_u64().unwrap()
                    || p.warnings().is_empty() == want["warned"].as_bool().unwrap()
                {
                    failures.push(format!("{name} (default): got {p:?}, want {want}"));
                }
                // Default-profile output round-trips through the canonical text.
                assert_eq!(Policy::parse(&p.to_string()).as_ref(), Ok(p), "{name}");
            }
            (Err(_), false) => {}
            (got, _) => failures.push(format!("{name} (default): got {got:?}, want {want}")),
        }
        let strict = Policy::parse_strict(body);
        let want_strict = case["expect"]["strict"]["valid"].as_bool().unwrap();
        if strict.is_ok() != want_strict {
            failures.push(format!(
                "{name} (strict): got {strict:?}, want valid={want_strict}"
            ));
        }
        // "When strict accepts, its output equals the default output."
        if let (Ok(s), Ok(d)) = (&strict, &got) {
            assert_eq!(s, d, "{name}");
        }
        // The lint reports the same verdict as the parser, for both profiles.
        for profile in [Profile::Default, Profile::Strict] {
            let report = Policy::lint(body.as_bytes(), profile);
            let parsed = Policy::parse_bytes(body.as_bytes(), profile);
            assert_eq!(
                report.policy.is_some(),
                parsed.is_ok(),
                "{name} {profile:?}"
            );
            if let Err(e) = parsed {
                assert_eq!(report.errors.first(), Some(&e), "{name} {profile:?}");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn vectors_txt_both_profiles() {
    let v = vectors();
    let mut failures = Vec::new();
    let all = cases(&v, "txt");
    assert!(all.len() >= 40, "expected the full TXT vector set");
    for case in all {
        let name = case["name"].as_str().unwrap();
        let records: Vec<Vec<u8>> = case["input"]["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|s| s.as_str().unwrap().bytes())
                    .collect()
            })
            .collect();
        let want = &case["expect"]["default"];
        match (
            StsRecord::discover(&records),
            want["policy"].as_bool().unwrap(),
        ) {
            (Ok(r), true) => {
                if r.id() != want["id"].as_str().unwrap()
                    || r.warnings().is_empty() == want["warned"].as_bool().unwrap()
                {
                    failures.push(format!("{name} (default): got {r:?}, want {want}"));
                }
            }
            (Err(_), false) => {}
            (got, _) => failures.push(format!("{name} (default): got {got:?}, want {want}")),
        }
        let strict = StsRecord::discover_strict(&records);
        let want_strict = case["expect"]["strict"]["policy"].as_bool().unwrap();
        if strict.is_ok() != want_strict {
            failures.push(format!(
                "{name} (strict): got {strict:?}, want {want_strict}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn vectors_mx_match() {
    let v = vectors();
    let mut failures = Vec::new();
    let all = cases(&v, "mx_match");
    assert!(all.len() >= 20, "expected the full MX vector set");
    for case in all {
        let name = case["name"].as_str().unwrap();
        let pattern = case["input"]["pattern"].as_str().unwrap();
        let host = case["input"]["host"].as_str().unwrap();
        let want = case["expect"]["match"].as_bool().unwrap();
        // M2: a pattern P6 would drop never matches.
        let got = MxPattern::parse(pattern).is_ok_and(|p| p.matches(host));
        if got != want {
            failures.push(format!(
                "{name}: {pattern:?} vs {host:?}: got {got}, want {want}"
            ));
        }
        // The same through a policy carrying the pattern.
        let body = format!(
            "version: STSv1\nmode: enforce\nmx: {pattern}\nmx: unrelated.invalid\nmax_age: 1\n"
        );
        let via_policy = Policy::parse(&body).is_ok_and(|p| p.matches_mx(host));
        if via_policy != want {
            failures.push(format!("{name} via policy: got {via_policy}, want {want}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
