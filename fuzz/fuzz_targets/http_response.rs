//! An HTTP response from a hostile policy host: the parse result must not depend on how the
//! bytes were split into reads, a body never exceeds the cap, and nothing may panic.
//!
//! The first input byte chooses the read size; the rest is the response. Seeds:
//! `fuzz/seeds/http_response`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_core::io::PolicyFetch;
use mta_sts_core::wire::http::{Progress, ResponseParser};

const CAP: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Some((&split, response)) = data.split_first() else {
        return;
    };
    let mut fetch = PolicyFetch::new("mta-sts.example.com");
    fetch.max_body = CAP;

    let whole = ResponseParser::parse(&fetch, response);
    if let Ok(r) = &whole {
        assert!(r.body.len() <= CAP, "body over the cap");
        assert_eq!(r.status, 200);
    }

    let mut parser = ResponseParser::new(&fetch);
    let step = usize::from(split % 32) + 1;
    let mut pieces = response.chunks(step);
    let split_result = loop {
        match pieces.next() {
            Some(piece) => {
                if let Progress::Complete(r) = parser.feed(piece) {
                    break r;
                }
            }
            None => break parser.finish(),
        }
    };
    assert_eq!(whole, split_result, "result depends on read boundaries");
});
