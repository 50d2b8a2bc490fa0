//! Domain names: normalisation (case, root dot, IDNA) and the RFC 5321 `Domain` rules.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest name in presentation form without the root dot (RFC 1035: 255 octets on the wire).
pub(crate) const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035).
pub(crate) const MAX_LABEL_LEN: usize = 63;

/// Why a string is not an RFC 5321 `Domain` (LDH labels, A-labels only).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name starts with a dot (e.g. the draft syntax `.example.com`).
    LeadingDot,
    /// Two dots in a row, or a trailing dot where none is allowed.
    EmptyLabel,
    /// A label is longer than 63 characters.
    LabelTooLong,
    /// The name is longer than 253 characters.
    NameTooLong,
    /// A character that is not a letter, digit, hyphen or dot.
    BadCharacter(char),
    /// A `*` that is not the whole leftmost label followed by a dot.
    MisplacedWildcard,
    /// A label starts or ends with a hyphen.
    HyphenAtLabelEdge,
    /// An IP address or an address literal such as `[192.0.2.1]`.
    AddressLiteral,
    /// A non-ASCII name that IDNA (UTS 46) cannot convert to A-labels.
    Idna,
    /// A trailing (root) dot: an error only in the strict profile.
    TrailingDot,
    /// A U-label (non-ASCII name) where A-labels are required: an error only in the strict profile.
    NotAscii,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the name is empty"),
            Self::LeadingDot => f.write_str("the name starts with a dot"),
            Self::EmptyLabel => f.write_str("the name has an empty label (two dots in a row)"),
            Self::LabelTooLong => f.write_str("a label is longer than 63 characters"),
            Self::NameTooLong => f.write_str("the name is longer than 253 characters"),
            Self::BadCharacter(c) => {
                write!(
                    f,
                    "{c:?} is not allowed (only letters, digits, hyphens and dots)"
                )
            }
            Self::MisplacedWildcard => {
                f.write_str("a wildcard must be the whole leftmost label, as in *.example.com")
            }
            Self::HyphenAtLabelEdge => f.write_str("a label starts or ends with a hyphen"),
            Self::AddressLiteral => f.write_str("an IP address is not a host name"),
            Self::Idna => f.write_str("the internationalised name cannot be converted to A-labels"),
            Self::TrailingDot => f.write_str("the name ends with a dot"),
            Self::NotAscii => f.write_str("the name must be written in A-labels (xn--…)"),
        }
    }
}

/// True when `s` is an IPv4 or IPv6 address, or a bracketed address literal.
pub(crate) fn is_address(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        None => false,
        Some(b'[') => true,
        _ => {
            // Cheap pre-checks keep the common path (host names) free of full parses.
            (b.last().is_some_and(u8::is_ascii_digit) && s.parse::<Ipv4Addr>().is_ok())
                || (s.contains(':') && s.parse::<Ipv6Addr>().is_ok())
        }
    }
}

/// Checks an ASCII name (lowercase or not, no root dot) against the RFC 5321 `Domain` rules
/// (LDH labels). Addresses are the caller's concern: see [`normalise`].
pub(crate) fn check_ldh(name: &str) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameProblem::NameTooLong);
    }
    if name.starts_with('.') {
        return Err(NameProblem::LeadingDot);
    }
    for label in name.split('.') {
        let bytes = label.as_bytes();
        if bytes.is_empty() {
            return Err(NameProblem::EmptyLabel);
        }
        if bytes.len() > MAX_LABEL_LEN {
            return Err(NameProblem::LabelTooLong);
        }
        if bytes
            .iter()
            .any(|c| !(c.is_ascii_alphanumeric() || *c == b'-'))
        {
            // The slow path, only for a bad name: report the whole offending character.
            let c = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'));
            return Err(match c {
                Some('*') => NameProblem::MisplacedWildcard,
                Some(c) => NameProblem::BadCharacter(c),
                None => NameProblem::BadCharacter('?'),
            });
        }
        if bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
            return Err(NameProblem::HyphenAtLabelEdge);
        }
    }
    Ok(())
}

/// A name after normalisation, with what had to be done to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Normalised<'a> {
    /// Lowercase A-labels, no root dot.
    pub(crate) name: Cow<'a, str>,
    /// One trailing (root) dot was removed.
    pub(crate) stripped_dot: bool,
    /// The input had non-ASCII characters, converted with IDNA to A-labels.
    pub(crate) converted: bool,
}

/// Lowercases, strips one root dot, converts U-labels to A-labels (UTS 46, non-transitional) and
/// checks the RFC 5321 rules; an IP address or address literal is refused. Allocates only when
/// the input is not already canonical.
pub(crate) fn normalise(input: &str) -> Result<Normalised<'_>, NameProblem> {
    if is_address(input.strip_suffix('.').unwrap_or(input)) {
        return Err(NameProblem::AddressLiteral);
    }
    normalise_labels(input)
}

/// [`normalise`] without the address check: for the part of a wildcard pattern after `*.`,
/// where `*.192.0.2.1` names hosts such as `a.192.0.2.1`, not an address.
pub(crate) fn normalise_labels(input: &str) -> Result<Normalised<'_>, NameProblem> {
    let (body, stripped_dot) = match input.strip_suffix('.') {
        Some(rest) if !rest.is_empty() => (rest, true),
        _ => (input, false),
    };
    if body.is_ascii() {
        check_ldh(body)?;
        let name = if body.bytes().any(|c| c.is_ascii_uppercase()) {
            Cow::Owned(body.to_ascii_lowercase())
        } else {
            Cow::Borrowed(body)
        };
        return Ok(Normalised {
            name,
            stripped_dot,
            converted: false,
        });
    }
    if body.len() > 4 * MAX_NAME_LEN {
        return Err(NameProblem::NameTooLong);
    }
    let ascii = idna::domain_to_ascii_cow(body.as_bytes(), idna::AsciiDenyList::STD3)
        .map_err(|_| NameProblem::Idna)?;
    check_ldh(&ascii)?;
    Ok(Normalised {
        name: Cow::Owned(ascii.into_owned()),
        stripped_dot,
        converted: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_ascii_borrows_when_canonical() {
        let n = normalise("mail.example.com").unwrap();
        assert!(matches!(n.name, Cow::Borrowed(_)));
        assert!(!n.stripped_dot && !n.converted);
    }

    #[test]
    fn r32_normalise_case_and_root_dot() {
        let n = normalise("MAIL.Example.COM.").unwrap();
        assert_eq!(n.name, "mail.example.com");
        assert!(n.stripped_dot);
    }

    #[test]
    fn r28_ulabel_becomes_alabel_nontransitional() {
        assert_eq!(
            normalise("bücher.example").unwrap().name,
            "xn--bcher-kva.example"
        );
        assert_eq!(
            normalise("straße.example").unwrap().name,
            "xn--strae-oqa.example"
        );
        assert!(normalise("straße.example").unwrap().converted);
    }

    #[test]
    fn ldh_rules() {
        assert_eq!(check_ldh(""), Err(NameProblem::Empty));
        assert_eq!(check_ldh(".example.com"), Err(NameProblem::LeadingDot));
        assert_eq!(check_ldh("a..b"), Err(NameProblem::EmptyLabel));
        assert_eq!(check_ldh("a.b."), Err(NameProblem::EmptyLabel));
        assert_eq!(check_ldh("-a.b"), Err(NameProblem::HyphenAtLabelEdge));
        assert_eq!(check_ldh("a-.b"), Err(NameProblem::HyphenAtLabelEdge));
        assert_eq!(check_ldh("a*.b"), Err(NameProblem::MisplacedWildcard));
        assert_eq!(check_ldh("_mx.b"), Err(NameProblem::BadCharacter('_')));
        assert_eq!(normalise("192.0.2.1"), Err(NameProblem::AddressLiteral));
        assert_eq!(normalise("192.0.2.1."), Err(NameProblem::AddressLiteral));
        assert_eq!(normalise("[192.0.2.1]"), Err(NameProblem::AddressLiteral));
        assert_eq!(normalise_labels("192.0.2.1").unwrap().name, "192.0.2.1");
        assert_eq!(check_ldh(&"a".repeat(64)), Err(NameProblem::LabelTooLong));
        assert_eq!(
            check_ldh(&["a"; 128].join(".")),
            Err(NameProblem::NameTooLong)
        );
        assert_eq!(check_ldh(&["a"; 127].join(".")), Ok(()));
        assert_eq!(check_ldh("localhost"), Ok(()));
        assert_eq!(check_ldh("1.2.3"), Ok(()));
        assert_eq!(check_ldh("xn--bcher-kva.example"), Ok(()));
    }

    #[test]
    fn r4_addresses_detected() {
        assert!(is_address("192.0.2.1"));
        assert!(is_address("2001:db8::25"));
        assert!(is_address("[IPv6:2001:db8::25]"));
        assert!(!is_address("mail.example.com"));
        assert!(!is_address("1.2.3"));
        assert!(!is_address(""));
    }
}
