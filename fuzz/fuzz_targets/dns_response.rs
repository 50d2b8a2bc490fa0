//! A DNS response from a hostile server: parsed against TXT, A and AAAA queries, through TCP
//! framing and the exchange driver. Nothing may panic, and a TXT answer never holds more bytes
//! than the message.
//!
//! The query id is taken from the input's first two bytes, so that every input passes the id
//! check and the fuzzer spends its time on the rest of the message. Seeds: `fuzz/seeds/dns_response`.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mta_sts_core::io::TxtAnswer;
use mta_sts_core::wire::dns::{DnsAnswer, DnsQuery, QueryType, TcpFramer};
use mta_sts_core::wire::exchange::{Exchange, ExchangeConfig, ExchangeStep, Transport};

fuzz_target!(|data: &[u8]| {
    let id = match data {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    for (name, qtype) in [
        ("_mta-sts.example.com", QueryType::Txt),
        ("mta-sts.example.com", QueryType::A),
        ("mta-sts.example.com", QueryType::Aaaa),
        ("example.com", QueryType::Mx),
    ] {
        let Ok(query) = DnsQuery::new(name, qtype, id) else {
            return;
        };
        match query.parse(data) {
            Ok(DnsAnswer::Txt(TxtAnswer::Records(records))) => {
                let total: usize = records.iter().map(Vec::len).sum();
                assert!(total <= data.len(), "TXT answer larger than the message");
            }
            Ok(DnsAnswer::Mx(mx)) => {
                // Each MX record takes at least 2 (preference) + 1 (name) bytes of RDATA.
                assert!(mx.records().len() * 3 <= data.len(), "more MX records than the message holds");
            }
            _ => {}
        }
    }

    // The same bytes as a TCP stream, in two reads.
    let mut framer = TcpFramer::new();
    let half = data.len() / 2;
    framer.push(&data[..half]);
    if let Some(message) = framer.push(&data[half..]) {
        assert!(message.len() <= data.len());
    }

    // Through the driver: every datagram answers the current attempt; the exchange must end
    // within its plan.
    let Ok(query) = DnsQuery::new("_mta-sts.example.com", QueryType::Txt, id) else {
        return;
    };
    let servers = vec![
        "192.0.2.1:53".parse().unwrap(),
        "192.0.2.2:53".parse().unwrap(),
    ];
    let mut ex = Exchange::new(query, servers, ExchangeConfig::default(), Duration::ZERO);
    let mut now = Duration::ZERO;
    for _ in 0..64 {
        match ex.poll(now) {
            ExchangeStep::Send(t) => {
                ex.sent(now);
                match t.transport() {
                    Transport::Udp => ex.received(now, data),
                    _ => ex.received(now, &framed(data)),
                }
            }
            ExchangeStep::Wait(deadline) => {
                now = deadline;
                ex.timed_out(now);
            }
            ExchangeStep::Done(_) => return,
        }
    }
    panic!("the exchange did not end within 64 steps");
});

fn framed(msg: &[u8]) -> Vec<u8> {
    let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
    let mut f = len.to_be_bytes().to_vec();
    f.extend_from_slice(msg);
    f
}
