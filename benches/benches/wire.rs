//! Wire codec benchmarks, each next to its baseline measured in the same run:
//! - DNS: `DnsQuery::parse` (checks + CNAME chain + TXT joining) against
//!   `hickory_proto::op::Message::from_vec` alone on the same bytes;
//! - HTTP: `ResponseParser` against `httparse::Response::parse` of the head alone.
//!
//! Run: `cargo bench -p mta-sts-benches --bench wire`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::rdata::{CNAME, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use mta_sts_core::io::{PolicyFetch, TxtQuery};
use mta_sts_core::wire::dns::DnsQuery;
use mta_sts_core::wire::http::ResponseParser;

const ID: u16 = 0x2b2b;

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("bench name")
}

/// A realistic `_mta-sts` answer: a CNAME to the provider, its STS record and an SPF record.
fn dns_response() -> Vec<u8> {
    let mut m = Message::response(ID, OpCode::Query);
    m.metadata.recursion_available = true;
    m.add_query(Query::query(name("_mta-sts.example.com."), RecordType::TXT));
    m.add_answer(Record::from_rdata(
        name("_mta-sts.example.com."),
        300,
        RData::CNAME(CNAME(name("_mta-sts.provider.example."))),
    ));
    for strings in [
        &[&b"v=STSv1; "[..], b"id=20240101T000000;"][..],
        &[b"v=spf1 -all"],
    ] {
        m.add_answer(Record::from_rdata(
            name("_mta-sts.provider.example."),
            300,
            RData::TXT(TXT::from_bytes(strings.to_vec())),
        ));
    }
    m.to_vec().expect("encodable")
}

const POLICY: &[u8] = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n\
                        mx: *.backup.example.com\r\nmax_age: 604800\r\n";

fn http_length() -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Mon, 23 Nov 2026 15:54:58 GMT\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\nStrict-Transport-Security: max-age=31536000\r\n\r\n",
        POLICY.len()
    )
    .into_bytes();
    r.extend_from_slice(POLICY);
    r
}

fn http_chunked() -> Vec<u8> {
    let mut r = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Mon, 23 Nov 2026 15:54:58 GMT\r\n\
                  Content-Type: text/plain; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\
                  Connection: close\r\n\r\n"
        .to_vec();
    for part in POLICY.chunks(32) {
        r.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        r.extend_from_slice(part);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"0\r\n\r\n");
    r
}

fn dns(c: &mut Criterion) {
    let bytes = dns_response();
    let query = DnsQuery::txt(&TxtQuery::new("_mta-sts.example.com"), ID).expect("valid");
    assert!(query.parse(&bytes).is_ok());
    let mut g = c.benchmark_group("dns_response");
    g.bench_function("baseline_hickory_message_from_vec", |b| {
        b.iter(|| Message::from_vec(black_box(&bytes)))
    });
    g.bench_function("wire_dns_query_parse", |b| {
        b.iter(|| query.parse(black_box(&bytes)))
    });
    g.finish();
}

fn http(c: &mut Criterion) {
    let fetch = PolicyFetch::new("mta-sts.example.com");
    for (label, bytes) in [
        ("content_length", http_length()),
        ("chunked", http_chunked()),
    ] {
        assert!(ResponseParser::parse(&fetch, &bytes).is_ok());
        let mut g = c.benchmark_group(format!("http_response_{label}"));
        g.bench_function("baseline_httparse_head", |b| {
            b.iter(|| {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut r = httparse::Response::new(&mut headers);
                r.parse(black_box(&bytes)).map(|s| s.is_complete())
            })
        });
        g.bench_function("wire_response_parser_whole", |b| {
            b.iter(|| ResponseParser::parse(&fetch, black_box(&bytes)))
        });
        g.bench_function("wire_response_parser_16_byte_reads", |b| {
            b.iter(|| {
                let mut p = ResponseParser::new(&fetch);
                for piece in black_box(&bytes).chunks(16) {
                    if let mta_sts_core::wire::http::Progress::Complete(r) = p.feed(piece) {
                        return r;
                    }
                }
                p.finish()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, dns, http);
criterion_main!(benches);
