//! The real client: Postfix's `postmap -q <domain> socketmap:inet:127.0.0.1:<port>:<name>` asks
//! `mta-sts daemon` about the domains of a testkit world.
//!
//! DANE first (REQUIREMENTS.md D11): postmap gets `dane-only`, `dane` and `encrypt` as the TLS
//! security level, and a lookup error for an indeterminate DANE state.
//!
//! Needs Postfix's `postmap`. Without it the test is skipped with a message, unless
//! `MTA_STS_REQUIRE_POSTMAP=1` (set by `.ci/run`, which installs Debian's postfix), where it
//! fails.

mod daemon_support;

use daemon_support::{
    Daemon, dane_world, postfix_conf, postmap, postmap_or_skip, scratch_dir, world,
};

#[test]
fn postmap_gets_the_tls_policy_of_enforce_testing_none_no_policy_and_failing_domains() {
    if !postmap_or_skip() {
        return;
    }
    let world = world();
    let dir = scratch_dir("postmap");
    let conf = postfix_conf(&dir);
    let d = Daemon::start(
        &world,
        &dir,
        "port: 0\ndefault_zone:\n  timeout: 2\nzones:\n  strict:\n    strict_testing: true\n  defer:\n    defer_on_dns_failure: true\n",
    );
    let addr = d.addr();

    // Found: postmap prints the value and exits 0.
    for (name, key, want) in [
        (
            "postfix",
            "enforce.test",
            "secure match=mx1.enforce.test:.pool.enforce.test servername=hostname",
        ),
        (
            "strict",
            "testing.test",
            "secure match=mx.testing.test servername=hostname",
        ),
    ] {
        let out = postmap(&conf, addr, name, key);
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).trim_end()
            ),
            (Some(0), want),
            "postmap -q {key} ({name}): stderr {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // NOTFOUND: postmap prints nothing and exits 1, without an error.
    for key in [
        "testing.test",
        "none.test",
        "nopolicy.test",
        "servfail.test",
        "httpsdown.test",
    ] {
        let out = postmap(&conf, addr, "postfix", key);
        assert_eq!(out.status.code(), Some(1), "postmap -q {key}");
        assert!(out.stdout.is_empty(), "postmap -q {key}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("fatal") && !stderr.contains("error"),
            "postmap -q {key}: {stderr}"
        );
    }

    // TEMP: Postfix sees a lookup error (it would defer the mail).
    let out = postmap(&conf, addr, "defer", "servfail.test");
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SERVFAIL"), "{stderr}");
}

#[test]
fn d11_postmap_gets_dane_only_dane_and_a_temporary_failure_for_an_indeterminate_state() {
    if !postmap_or_skip() {
        return;
    }
    let world = dane_world();
    let dir = scratch_dir("postmap-dane");
    let conf = postfix_conf(&dir);
    let d = Daemon::start(&world, &dir, "port: 0\ndefault_zone:\n  timeout: 5\n");
    let addr = d.addr();

    // Found: postmap prints the TLS security level and exits 0.
    for (key, want) in [
        ("mandatory.test", "dane-only"),
        ("opportunistic.test", "dane"),
        ("unusable.test", "encrypt"),
    ] {
        let out = postmap(&conf, addr, "postfix", key);
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).trim_end()
            ),
            (Some(0), want),
            "postmap -q {key}: stderr {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // TEMP: Postfix sees a lookup error (it would defer the mail), with the reason, never the
    // domain's MTA-STS policy.
    for (key, query) in [
        ("bogustlsa.test", "TLSA _25._tcp.mx.bogustlsa.test"),
        ("mxservfail.test", "MX mxservfail.test"),
    ] {
        let out = postmap(&conf, addr, "postfix", key);
        assert_ne!(out.status.code(), Some(0), "postmap -q {key}: {out:?}");
        assert!(out.stdout.is_empty(), "postmap -q {key}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("DANE state of {key} is indeterminate: {query}")),
            "postmap -q {key}: {stderr}"
        );
    }
}
