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

/// Byte classes for [`ldh_prefix`].
const BAD: u8 = 0;
/// A lowercase letter, a digit or a hyphen.
const LDH: u8 = 1;
const UPPER: u8 = 2;
const DOT: u8 = 3;
static CLASS: [u8; 256] = {
    let mut t = [BAD; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => LDH,
            b'A'..=b'Z' => UPPER,
            b'.' => DOT,
            _ => BAD,
        };
        c += 1;
    }
    t
};

/// One pass over a name (no root dot) that says whether [`check_ldh`] accepts it, and if so
/// whether it has upper-case letters: `None` when it does not (then [`check_ldh`] tells why).
fn scan_ldh(name: &[u8]) -> Option<bool> {
    match ldh_prefix(name) {
        Some((len, upper)) if len == name.len() => Some(upper),
        _ => None,
    }
}

/// The LDH name at the start of `b`, up to its first byte that is not a letter, digit, hyphen or
/// dot: its length and whether it has upper-case letters, when [`check_ldh`] accepts it; `None`
/// when it does not.
pub(crate) fn ldh_prefix(b: &[u8]) -> Option<(usize, bool)> {
    // A label is [start, end): non-empty, at most 63 bytes, no hyphen at either end.
    let label_ok = |start: usize, end: usize| {
        end > start && end - start <= MAX_LABEL_LEN && b[start] != b'-' && b[end - 1] != b'-'
    };
    let class = |i: usize| b.get(i).map(|&c| CLASS[usize::from(c)]);
    let (mut start, mut upper, mut i) = (0, false, 0);
    loop {
        // Lowercase letters, digits and hyphens, the usual bytes, in a loop of their own.
        while class(i) == Some(LDH) {
            i += 1;
        }
        match class(i) {
            Some(UPPER) => upper = true,
            Some(DOT) if label_ok(start, i) => start = i + 1,
            Some(DOT) => return None,
            _ => break,
        }
        i += 1;
    }
    (i <= MAX_NAME_LEN && label_ok(start, i)).then_some((i, upper))
}

/// Checks an ASCII name (lowercase or not, no root dot) against the RFC 5321 `Domain` rules
/// (LDH labels). Addresses are the caller's concern: see [`normalise`].
pub(crate) fn check_ldh(name: &str) -> Result<(), NameProblem> {
    if scan_ldh(name.as_bytes()).is_some() {
        return Ok(());
    }
    // A bad name: the label by label checks below name the first problem.
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
    // A valid LDH name is an address only if it is all digits and dots (IPv4): a name whose last
    // character is a letter or hyphen needs no address check.
    let body = input.strip_suffix('.').unwrap_or(input);
    if !body.as_bytes().last().is_some_and(u8::is_ascii_digit)
        && let Some(n) = normalise_fast(input)
    {
        return Ok(n);
    }
    if is_address(input.strip_suffix('.').unwrap_or(input)) {
        return Err(NameProblem::AddressLiteral);
    }
    normalise_labels(input)
}

/// One trailing (root) dot removed, unless it is the whole name.
fn split_root_dot(input: &str) -> (&str, bool) {
    match input.strip_suffix('.') {
        Some(rest) if !rest.is_empty() => (rest, true),
        _ => (input, false),
    }
}

/// [`normalise_labels`] for a valid ASCII name, in one pass; `None` for anything else.
fn normalise_fast(input: &str) -> Option<Normalised<'_>> {
    let (body, stripped_dot) = split_root_dot(input);
    let upper = scan_ldh(body.as_bytes())?;
    let name = if upper {
        Cow::Owned(body.to_ascii_lowercase())
    } else {
        Cow::Borrowed(body)
    };
    Some(Normalised {
        name,
        stripped_dot,
        converted: false,
    })
}

/// [`normalise`] without the address check: for the part of a wildcard pattern after `*.`,
/// where `*.192.0.2.1` names hosts such as `a.192.0.2.1`, not an address.
pub(crate) fn normalise_labels(input: &str) -> Result<Normalised<'_>, NameProblem> {
    if let Some(n) = normalise_fast(input) {
        return Ok(n);
    }
    let (body, stripped_dot) = split_root_dot(input);
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
