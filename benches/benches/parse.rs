//! Parsing and matching: `cargo bench -p mta-sts-benches --bench parse`.
//!
//! Each group has a `baseline` that does the least work imaginable on the same input (splitting
//! lines, comparing strings), so the figures read as ratios measured in the same run.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mta_sts_benches::{POLICY_TYPICAL, TXT_RECORD, naive_split, policy_20_mx};
use mta_sts_core::{MxPattern, Policy, StsRecord};

fn policy(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_typical");
    g.bench_function("baseline_split", |b| {
        b.iter(|| naive_split(black_box(POLICY_TYPICAL)))
    });
    g.bench_function("parse", |b| {
        b.iter(|| Policy::parse(black_box(POLICY_TYPICAL)))
    });
    g.finish();

    let big = policy_20_mx();
    let mut g = c.benchmark_group("policy_20_mx");
    g.bench_function("baseline_split", |b| {
        b.iter(|| naive_split(black_box(&big)))
    });
    g.bench_function("parse", |b| b.iter(|| Policy::parse(black_box(&big))));
    g.finish();
}

fn txt(c: &mut Criterion) {
    let mut g = c.benchmark_group("txt_record");
    g.bench_function("baseline_split", |b| {
        b.iter(|| {
            black_box(TXT_RECORD)
                .split(';')
                .map(str::len)
                .sum::<usize>()
        })
    });
    g.bench_function("parse", |b| {
        b.iter(|| StsRecord::parse(black_box(TXT_RECORD)))
    });
    let answer = [
        &b"v=spf1 include:_spf.example.com -all"[..],
        TXT_RECORD.as_bytes(),
    ];
    g.bench_function("discover_2_records", |b| {
        b.iter(|| StsRecord::discover(black_box(answer)))
    });
    g.finish();
}

fn mx(c: &mut Criterion) {
    let exact = MxPattern::parse("mail.example.com").unwrap();
    let wild = MxPattern::parse("*.example.com").unwrap();
    let mut g = c.benchmark_group("mx_match");
    g.bench_function("baseline_eq_ignore_case", |b| {
        b.iter(|| black_box("MAIL.example.com").eq_ignore_ascii_case(black_box("mail.example.com")))
    });
    g.bench_function("exact", |b| {
        b.iter(|| black_box(&exact).matches(black_box("MAIL.example.com")))
    });
    g.bench_function("wildcard", |b| {
        b.iter(|| black_box(&wild).matches(black_box("mx1.example.com.")))
    });
    g.bench_function("wildcard_miss_depth", |b| {
        b.iter(|| black_box(&wild).matches(black_box("a.mx1.example.com")))
    });
    let big = Policy::parse(&policy_20_mx()).unwrap();
    g.bench_function("policy_20_mx_last", |b| {
        b.iter(|| black_box(&big).matches_mx(black_box("host.pool19.example.net")))
    });
    g.finish();
}

criterion_group!(benches, policy, txt, mx);
criterion_main!(benches);
