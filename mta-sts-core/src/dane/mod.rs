//! DANE for SMTP (RFC 7672) as far as MTA-STS needs it: which destinations DANE governs, so that
//! MTA-STS never overrides it (RFC 8461 §2).

mod tlsa;

pub use tlsa::{MAX_TLSA_RECORDS, Tlsa, TlsaProblem, USAGE_DANE_EE, USAGE_DANE_TA};
