//! Sans-IO MTA-STS (RFC 8461).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod io;
#[cfg(feature = "wire")]
pub mod wire;
