//! Wire codecs (cargo feature `wire`, on by default): the core's semantic I/O requests turned
//! into bytes, and bytes back into results, so that adapters only move bytes.
//!
//! - [`dns`]: a [`TxtQuery`](crate::io::TxtQuery) (or an A/AAAA lookup) as a DNS query message,
//!   and the response parsed into a [`TxtAnswer`](crate::io::TxtAnswer) or addresses, with TCP
//!   length framing.
//! - [`exchange`]: the driver of one DNS lookup over a server list (UDP, retry, TCP after
//!   truncation, timeouts), sans-IO.
//! - [`http`]: a [`PolicyFetch`](crate::io::PolicyFetch) as HTTP/1.1 request bytes, and an
//!   incremental response parser that yields a [`FetchResult`](crate::io::FetchResult).
//!
//! Every parser here faces the open internet: inputs are untrusted, sizes are capped while
//! reading, and no input makes them panic (proptests, and the `dns_response` and
//! `http_response` fuzz targets in `fuzz/`).
//!
//! ```
//! use mta_sts_core::io::{PolicyFetch, TxtQuery};
//! use mta_sts_core::wire::{dns::DnsQuery, http};
//!
//! let query = DnsQuery::txt(&TxtQuery::new("_mta-sts.example.com"), 0x0102)?;
//! assert_eq!(&query.bytes()[..2], &[1, 2]);
//! let get = http::request(&PolicyFetch::new("mta-sts.example.com"))?;
//! assert!(get.ends_with(b"\r\n\r\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod dns;
pub mod exchange;
pub mod http;
