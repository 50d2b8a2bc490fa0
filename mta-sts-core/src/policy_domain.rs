//! The Policy Domain (RFC 8461 §3.4): the next-hop domain whose policy applies.

use core::borrow::Borrow;
use core::fmt;

use crate::domain::{self, NameProblem};

/// The longest policy domain: `_mta-sts.` plus the domain must still be a valid DNS name.
const MAX_POLICY_DOMAIN_LEN: usize = domain::MAX_NAME_LEN - "_mta-sts.".len();

/// A Policy Domain, normalised: lowercase A-labels, no root dot.
///
/// It is the domain the message is routed to: the recipient's domain, or the smart host's domain
/// when mail is relayed (R2). Only this exact name is looked up: there is no fallback to a parent
/// domain (R3), and address literals have no policy (R4).
///
/// ```
/// use mta_sts_core::{PolicyDomain, PolicyDomainError};
///
/// let d = PolicyDomain::parse("Bücher.Example.")?;
/// assert_eq!(d.as_str(), "xn--bcher-kva.example");
/// assert_eq!(d.txt_name(), "_mta-sts.xn--bcher-kva.example");
/// assert_eq!(d.policy_host(), "mta-sts.xn--bcher-kva.example");
/// assert_eq!(PolicyDomain::of_address("a@Example.COM")?.as_str(), "example.com");
/// assert_eq!(PolicyDomain::parse("[192.0.2.1]"), Err(PolicyDomainError::AddressLiteral));
/// # Ok::<(), PolicyDomainError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyDomain(Box<str>);

/// Why a string is not a Policy Domain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyDomainError {
    /// An address literal (`[192.0.2.1]`, `[IPv6:…]`) or a bare IP address: no policy (R4).
    AddressLiteral,
    /// Not a valid domain name.
    Invalid(NameProblem),
}

impl fmt::Display for PolicyDomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddressLiteral => f.write_str("an address literal has no MTA-STS policy"),
            Self::Invalid(p) => write!(f, "not a valid policy domain: {p}"),
        }
    }
}

impl std::error::Error for PolicyDomainError {}

impl PolicyDomain {
    /// Normalises a domain: lowercase, one root dot stripped, U-labels converted to A-labels
    /// (IDNA, UTS 46 non-transitional), checked against the RFC 5321 `Domain` rules.
    pub fn parse(input: &str) -> Result<Self, PolicyDomainError> {
        Ok(Self(Self::normalised(input)?.into()))
    }

    /// The domain of an address, `local@domain` (the part after the last `@`); R1.
    pub fn of_address(address: &str) -> Result<Self, PolicyDomainError> {
        let domain = address.rsplit_once('@').map_or(address, |(_, d)| d);
        Self::parse(domain)
    }

    /// Normalises without allocating when the input is already canonical (the cache's fast path).
    pub(crate) fn normalised(input: &str) -> Result<std::borrow::Cow<'_, str>, PolicyDomainError> {
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if domain::is_address(trimmed) {
            return Err(PolicyDomainError::AddressLiteral);
        }
        let n = domain::normalise(input).map_err(|p| match p {
            NameProblem::AddressLiteral => PolicyDomainError::AddressLiteral,
            p => PolicyDomainError::Invalid(p),
        })?;
        if n.name.len() > MAX_POLICY_DOMAIN_LEN {
            return Err(PolicyDomainError::Invalid(NameProblem::NameTooLong));
        }
        Ok(n.name)
    }

    /// Wraps a name that [`PolicyDomain::normalised`] produced.
    pub(crate) fn from_normalised(name: String) -> Self {
        Self(name.into())
    }

    /// The normalised name, e.g. `example.com`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of the TXT record, `_mta-sts.<domain>` (RFC 8461 §3.1).
    pub fn txt_name(&self) -> String {
        format!("_mta-sts.{}", self.0)
    }

    /// The policy host, `mta-sts.<domain>` (RFC 8461 §3.3): the HTTPS host, SNI name and the
    /// name its certificate must be valid for.
    pub fn policy_host(&self) -> String {
        format!("mta-sts.{}", self.0)
    }
}

impl Borrow<str> for PolicyDomain {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for PolicyDomain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PolicyDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyDomain({:?})", &*self.0)
    }
}

impl core::str::FromStr for PolicyDomain {
    type Err = PolicyDomainError;

    /// Same as [`PolicyDomain::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r4_address_literals_are_refused() {
        for a in [
            "[192.0.2.1]",
            "192.0.2.1",
            "[IPv6:2001:db8::1]",
            "2001:db8::1",
            "192.0.2.1.",
        ] {
            assert_eq!(
                PolicyDomain::parse(a),
                Err(PolicyDomainError::AddressLiteral),
                "{a}"
            );
        }
        assert_eq!(
            PolicyDomain::of_address("a@[192.0.2.1]"),
            Err(PolicyDomainError::AddressLiteral)
        );
    }

    #[test]
    fn r13_normalised_for_names() {
        let d = PolicyDomain::parse("EXAMPLE.com.").unwrap();
        assert_eq!(d.as_str(), "example.com");
        assert_eq!(d.txt_name(), "_mta-sts.example.com");
        assert!(PolicyDomain::parse("").is_err());
        assert!(PolicyDomain::parse(".").is_err());
        assert!(PolicyDomain::parse("a..b").is_err());
        let long = ["a"; 123].join(".");
        assert_eq!(long.len(), 245);
        assert!(PolicyDomain::parse(&long).is_err());
        assert!(PolicyDomain::parse(&long[2..]).is_ok());
    }
}
