//! DANE for SMTP (RFC 7672) as far as MTA-STS needs it: which destinations DANE governs, so that
//! MTA-STS never overrides it (RFC 8461 §2).
//!
//! [`DaneLookup`] asks the DNSSEC queries that decide a destination's [`DaneState`];
//! [`DaneCache`] keeps the states by the TTLs of their answers; [`DaneState::precedence`] and
//! [`Evaluation::with_dane`](crate::Evaluation::with_dane) say what decides the delivery.

mod cache;
mod lookup;
mod state;
mod tlsa;

pub use cache::{DaneBegin, DaneCache};
pub use lookup::{
    DaneConfig, DaneLookup, DaneLookupError, DaneQueryId, DaneResolution, DaneStep, MAX_DANE_HOSTS,
};
pub use state::{
    DaneAbsent, DaneHost, DaneHosts, DaneIndeterminate, DaneState, HostCoverage, NotCoveredReason,
    Precedence, SkipReason,
};
pub use tlsa::{MAX_TLSA_RECORDS, Tlsa, TlsaProblem, USAGE_DANE_EE, USAGE_DANE_TA};
