//! Shared policy stores for a fleet of MTAs: the [`PolicyStore`](mta_sts_net::PolicyStore)
//! seam of `mta-sts-net` over Redis (and Redis Sentinel), SQLite and PostgreSQL, each in the
//! layout postfix-mta-sts-resolver 1.5 uses, so that both daemons can share one database during a
//! migration and its existing cache files are read and written as they are.
//!
//! - [`layout`]: postfix-mta-sts-resolver's JSON form of a policy (`pol_body`, the Redis member),
//!   to and from the RFC 8461 policy text.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod layout;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// The examples of the crate's README.md (its page on the registry), run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
