//! MX host patterns (RFC 8461 §4.1) and their matching.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::domain::{self, NameProblem};

/// An `mx` pattern of a policy: an exact host name (`mail.example.com`) or a wildcard that stands
/// for exactly one leftmost label (`*.example.com`).
///
/// A pattern is always stored normalised: lowercase A-labels, no root dot. Its [`Display`]
/// gives that text.
///
/// ```
/// use mta_sts_core::MxPattern;
///
/// let p = MxPattern::parse("*.example.com")?;
/// assert!(p.matches("mx1.example.com"));
/// assert!(p.matches("MX1.EXAMPLE.COM."));      // case-insensitive, root dot ignored
/// assert!(!p.matches("example.com"));           // never the bare parent
/// assert!(!p.matches("a.mx1.example.com"));     // never two labels
/// # Ok::<(), mta_sts_core::MxPatternError>(())
/// ```
///
/// [`Display`]: fmt::Display
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MxPattern {
    /// The normalised pattern text, including the `*.` of a wildcard.
    text: Box<str>,
}

/// Why a string is not a valid `mx` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxPatternError {
    value: String,
    problem: NameProblem,
}

impl MxPatternError {
    pub(crate) fn new(value: &str, problem: NameProblem) -> Self {
        // Keep the operator-facing copy of hostile input short.
        let value = truncate_for_display(value, 80);
        Self { value, problem }
    }

    /// The offending value (shortened if very long).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &NameProblem {
        &self.problem
    }
}

impl fmt::Display for MxPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid mx pattern {:?}: {}", self.value, self.problem)
    }
}

impl std::error::Error for MxPatternError {}

/// Copies at most `max` characters of `s`, marking a cut with `…`.
pub(crate) fn truncate_for_display(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

/// How a pattern was normalised (for the policy parser's warnings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PatternFixes {
    pub(crate) stripped_dot: bool,
    pub(crate) converted: bool,
}

impl MxPattern {
    /// Parses a pattern as the default profile stores it: `["*."] Domain`, lowercased, with one
    /// trailing dot stripped and U-labels converted to A-labels (UTS 46, non-transitional).
    ///
    /// Rejected: IP addresses and address literals, `*` anywhere but as the whole leftmost label,
    /// `.example.com`, a bare `*`, spaces, commas, empty or over-long labels and names.
    pub fn parse(s: &str) -> Result<Self, MxPatternError> {
        Self::parse_fixing(s).map(|(p, _)| p)
    }

    /// Parses a pattern with the strict (lint) rules: as [`MxPattern::parse`], but a trailing dot
    /// or a non-ASCII name is an error rather than normalised. Upper case is still accepted.
    pub fn parse_strict(s: &str) -> Result<Self, MxPatternError> {
        let (p, fixes) = Self::parse_fixing(s)?;
        if fixes.stripped_dot {
            return Err(MxPatternError::new(s, NameProblem::TrailingDot));
        }
        if fixes.converted {
            return Err(MxPatternError::new(s, NameProblem::NotAscii));
        }
        Ok(p)
    }

    pub(crate) fn parse_fixing(s: &str) -> Result<(Self, PatternFixes), MxPatternError> {
        let (wildcard, rest) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let n = if wildcard {
            domain::normalise_labels(rest)
        } else {
            domain::normalise(rest)
        };
        let n = n.map_err(|p| MxPatternError::new(s, p))?;
        let fixes = PatternFixes {
            stripped_dot: n.stripped_dot,
            converted: n.converted,
        };
        let text: Box<str> = match (wildcard, n.name) {
            (false, Cow::Borrowed(b)) if b.len() == s.len() => s.into(),
            (false, name) => name.into(),
            (true, name) => {
                let mut t = String::with_capacity(name.len() + 2);
                t.push_str("*.");
                t.push_str(&name);
                t.into()
            }
        };
        Ok((Self { text }, fixes))
    }

    /// The normalised pattern text, e.g. `*.example.com`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for a `*.` pattern.
    pub fn is_wildcard(&self) -> bool {
        self.text.starts_with("*.")
    }

    /// Whether `host` (an MX record's host name, RFC 8461 §4.1) matches this pattern.
    ///
    /// The host is compared case-insensitively, one root dot is ignored and U-labels are converted
    /// to A-labels. An IP address, with or without brackets, never matches.
    pub fn matches(&self, host: &str) -> bool {
        HostKey::new(host).is_some_and(|h| self.matches_key(&h))
    }

    pub(crate) fn matches_key(&self, host: &HostKey<'_>) -> bool {
        let host = host.0.as_ref();
        match self.text.strip_prefix("*.") {
            None => host.eq_ignore_ascii_case(&self.text),
            Some(parent) => match host.split_once('.') {
                Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(parent),
                None => false,
            },
        }
    }
}

/// A host name prepared for matching: root dot stripped, A-labels; letter case left as is (the
/// comparison ignores it). `None` for hosts that can never match.
#[derive(Debug)]
pub(crate) struct HostKey<'a>(Cow<'a, str>);

impl<'a> HostKey<'a> {
    pub(crate) fn new(host: &'a str) -> Option<Self> {
        let host = match host.strip_suffix('.') {
            Some(h) => h,
            None => host,
        };
        if host.is_empty() || domain::is_address(host) {
            return None;
        }
        if host.is_ascii() {
            return Some(Self(Cow::Borrowed(host)));
        }
        if host.len() > 4 * domain::MAX_NAME_LEN {
            return None;
        }
        idna::domain_to_ascii_cow(host.as_bytes(), idna::AsciiDenyList::EMPTY)
            .ok()
            .map(|a| Self(Cow::Owned(a.into_owned())))
    }
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MxPattern({:?})", &*self.text)
    }
}

impl FromStr for MxPattern {
    type Err = MxPatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, h: &str) -> bool {
        MxPattern::parse(p).unwrap().matches(h)
    }

    #[test]
    fn r31_wildcard_matches_one_label() {
        assert!(m("*.example.com", "mail.example.com"));
        assert!(!m("*.example.com", "example.com"));
        assert!(!m("*.example.com", "foo.bar.example.com"));
        assert!(!m("*.example.com", ".example.com"));
    }

    #[test]
    fn r32_case_insensitive_and_root_dot() {
        assert!(m("mail.example.com", "MAIL.Example.COM."));
        assert!(m("MAIL.EXAMPLE.COM.", "mail.example.com"));
        assert!(m("*.example.com", "MX.EXAMPLE.COM."));
        assert!(!m("mail.example.com", "mail.example.com.."));
    }

    #[test]
    fn r30_exact_pattern_is_not_a_suffix() {
        assert!(!m("mail.example.com", "evil-mail.example.com"));
        assert!(!m("example.com", "mail.example.com"));
        assert!(!m("mail.example.com", ""));
    }

    #[test]
    fn r28_alabel_wildcard_matches_alabel_host() {
        assert!(m("*.xn--bcher-kva.example", "m.xn--bcher-kva.example"));
        assert!(m("*.bücher.example", "m.xn--bcher-kva.example"));
        assert!(m("*.xn--bcher-kva.example", "M.Bücher.example."));
    }

    #[test]
    fn r33_implicit_mx_is_the_domain_itself() {
        // With no MX records the domain is its own MX (RFC 5321 §5.1): plain matching applies.
        assert!(m("example.com", "example.com"));
    }

    #[test]
    fn ip_hosts_and_patterns_never_match() {
        assert!(MxPattern::parse("192.0.2.1").is_err());
        assert!(MxPattern::parse("[192.0.2.1]").is_err());
        // A wildcard over numeric labels names hosts, never an address.
        assert!(!m("*.0.2.1", "192.0.2.1"));
        assert!(m("*.192.0.2.1", "a.192.0.2.1"));
        assert!(!m("*.example.com", "[192.0.2.1]"));
    }

    #[test]
    fn invalid_patterns_rejected_with_reason() {
        let cases = [
            ("*", NameProblem::MisplacedWildcard),
            ("*.*.example.com", NameProblem::MisplacedWildcard),
            ("a*.example.com", NameProblem::MisplacedWildcard),
            ("abc.*.com", NameProblem::MisplacedWildcard),
            (".example.com", NameProblem::LeadingDot),
            ("", NameProblem::Empty),
            (
                "a.example.com, b.example.com",
                NameProblem::BadCharacter(','),
            ),
            ("mail_1.example.com", NameProblem::BadCharacter('_')),
            ("mail..example.com", NameProblem::EmptyLabel),
        ];
        for (p, want) in cases {
            let e = MxPattern::parse(p).unwrap_err();
            assert_eq!(e.problem(), &want, "{p}");
        }
    }

    #[test]
    fn strict_rejects_trailing_dot_and_ulabel() {
        assert_eq!(
            MxPattern::parse_strict("mail.example.com.")
                .unwrap_err()
                .problem(),
            &NameProblem::TrailingDot
        );
        assert_eq!(
            MxPattern::parse_strict("bücher.example")
                .unwrap_err()
                .problem(),
            &NameProblem::NotAscii
        );
        assert_eq!(
            MxPattern::parse_strict("MAIL.example.com")
                .unwrap()
                .as_str(),
            "mail.example.com"
        );
    }

    #[test]
    fn display_is_normalised_text() {
        assert_eq!(
            MxPattern::parse("*.Example.COM.").unwrap().to_string(),
            "*.example.com"
        );
        assert!(MxPattern::parse("*.example.com").unwrap().is_wildcard());
        assert_eq!(
            "m.example".parse::<MxPattern>().unwrap().as_str(),
            "m.example"
        );
    }
}
