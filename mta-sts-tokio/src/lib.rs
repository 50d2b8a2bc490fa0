//! MTA-STS (RFC 8461) for tokio-based mail servers.
//!
//! This crate will carry out the DNS and HTTPS requests that `mta-sts-core` emits, using
//! tokio's sockets and timers, rustls and webpki-roots. It holds only its documentation for now.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
