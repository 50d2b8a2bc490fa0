//! Against the Rust peers, same inputs, same run: `cargo bench -p mta-sts-benches --bench peers`.
//!
//! - `mailrs-mta-sts` (policy, TXT record, MX matching; its own published figures: TXT 78 ns,
//!   policy 321 ns, MX 49-100 ns, on its own machine);
//! - `mail-auth`'s MTA-STS TXT record parser: `mail_auth::mta_sts::MtaSts` of mail-auth 0.13, the
//!   same code as 0.15's `MtaStsRecord` (renamed). mail-auth 0.14 and 0.15 need mail-parser 1.0,
//!   which requires rustc 1.98, above this workspace's toolchain.
//!
//! The inputs are mailrs-mta-sts's own bench inputs (its TXT record, its six-line LF policy with
//! three `mx`, its host/pattern pairs), plus our typical four-line CRLF policy. Every function
//! returns the parsed value (or the match), so each side pays for building its result. The
//! parsers do not do the same work: ours checks the whole grammar (every `mx` against the RFC 5321
//! `Domain` rules, the id's characters, extension names) and keeps extensions; mailrs-mta-sts
//! lowercases and keeps what it finds; mail-auth keeps the id. Ratios are read within one group.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mail_auth::common::parse::TxtRecordParser as _;
use mta_sts_benches::POLICY_TYPICAL;
use mta_sts_core::{MxPattern, Policy, StsRecord};

/// mailrs-mta-sts's bench input for its TXT parser.
const TXT: &str = "v=STSv1; id=20200101T000000Z";

/// mailrs-mta-sts's bench input for its policy parser.
const POLICY_3MX: &str = "\
version: STSv1
mode: enforce
mx: mail.example.com
mx: backup.example.com
mx: *.mx.example.net
max_age: 604800
";

fn txt(c: &mut Criterion) {
    // Every parser accepts the input and finds the same id.
    assert_eq!(StsRecord::parse(TXT).unwrap().id(), "20200101T000000Z");
    assert_eq!(
        mailrs_mta_sts::StsRecord::parse(TXT).unwrap().id,
        "20200101T000000Z"
    );
    assert_eq!(
        mail_auth::mta_sts::MtaSts::parse(TXT.as_bytes())
            .unwrap()
            .id,
        "20200101T000000Z"
    );
    let mut g = c.benchmark_group("peers_txt");
    g.bench_function("mta_sts", |b| b.iter(|| StsRecord::parse(black_box(TXT))));
    g.bench_function("mailrs_mta_sts", |b| {
        b.iter(|| mailrs_mta_sts::StsRecord::parse(black_box(TXT)))
    });
    g.bench_function("mail_auth", |b| {
        b.iter(|| mail_auth::mta_sts::MtaSts::parse(black_box(TXT.as_bytes())))
    });
    g.finish();
}

fn policy(c: &mut Criterion) {
    for (name, body) in [("3mx_lf", POLICY_3MX), ("typical_crlf", POLICY_TYPICAL)] {
        let ours = Policy::parse(body).unwrap();
        let theirs = mailrs_mta_sts::Policy::parse(body).unwrap();
        assert_eq!(ours.mx().len(), theirs.mx.len());
        assert_eq!(u64::from(ours.max_age()), theirs.max_age);
        let mut g = c.benchmark_group(format!("peers_policy_{name}"));
        g.bench_function("mta_sts", |b| b.iter(|| Policy::parse(black_box(body))));
        g.bench_function("mailrs_mta_sts", |b| {
            b.iter(|| mailrs_mta_sts::Policy::parse(black_box(body)))
        });
        g.finish();
    }
}

fn mx(c: &mut Criterion) {
    // mailrs-mta-sts's pairs: (host, pattern, expected).
    let cases = [
        ("literal", "mail.example.com", "mail.example.com", true),
        ("wildcard_match", "mx1.example.com", "*.example.com", true),
        (
            "wildcard_no_match",
            "a.b.example.com",
            "*.example.com",
            false,
        ),
    ];
    for (name, host, pattern, want) in cases {
        // Ours matches against a pattern parsed once, when the policy was; theirs takes the
        // pattern as the policy stores it (a string) and normalises both sides on each call.
        let p = MxPattern::parse(pattern).unwrap();
        assert_eq!(p.matches(host), want);
        assert_eq!(mailrs_mta_sts::mx_matches(host, pattern), want);
        let mut g = c.benchmark_group(format!("peers_mx_{name}"));
        g.bench_function("mta_sts", |b| {
            b.iter(|| black_box(&p).matches(black_box(host)))
        });
        g.bench_function("mailrs_mta_sts", |b| {
            b.iter(|| mailrs_mta_sts::mx_matches(black_box(host), black_box(pattern)))
        });
        g.finish();
    }

    // A whole policy against one host: mailrs-mta-sts's `enforce` benches.
    let ours = Policy::parse(POLICY_3MX).unwrap();
    let theirs = mailrs_mta_sts::Policy::parse(POLICY_3MX).unwrap();
    for (name, host, want) in [
        ("first_match", "mail.example.com", true),
        ("last_match", "primary.mx.example.net", true),
        ("no_match", "attacker.com", false),
    ] {
        assert_eq!(ours.matches_mx(host), want);
        assert_eq!(
            mailrs_mta_sts::enforce(&theirs, host) == mailrs_mta_sts::Decision::Allow,
            want
        );
        let mut g = c.benchmark_group(format!("peers_policy_3mx_{name}"));
        g.bench_function("mta_sts", |b| {
            b.iter(|| black_box(&ours).matches_mx(black_box(host)))
        });
        g.bench_function("mailrs_mta_sts", |b| {
            b.iter(|| mailrs_mta_sts::enforce(black_box(&theirs), black_box(host)))
        });
        g.finish();
    }
}

criterion_group!(benches, txt, policy, mx);
criterion_main!(benches);
