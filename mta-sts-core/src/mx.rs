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
#[derive(Clone)]
pub struct MxPattern {
    /// The normalised pattern text, including the `*.` of a wildcard: always ASCII.
    text: Text,
}

/// Longest pattern stored inline: the type is then 32 bytes, the size of a `Box<str>` and its
/// heap copy of a typical name, without the allocation.
const INLINE: usize = 30;

/// The text of a pattern: inline when short (almost always), else on the heap.
#[derive(Clone)]
enum Text {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Text {
    fn new(s: &str) -> Self {
        match s.len() {
            len if len <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..len].copy_from_slice(s.as_bytes());
                Self::Inline {
                    len: len as u8,
                    bytes,
                }
            }
            _ => Self::Heap(s.into()),
        }
    }

    fn wildcard(parent: &str) -> Self {
        let len = parent.len() + 2;
        if len <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..2].copy_from_slice(b"*.");
            bytes[2..len].copy_from_slice(parent.as_bytes());
            return Self::Inline {
                len: len as u8,
                bytes,
            };
        }
        let mut t = String::with_capacity(len);
        t.push_str("*.");
        t.push_str(parent);
        Self::Heap(t.into())
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(s) => s.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Only ASCII is ever stored, so this never fails.
            Self::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            Self::Heap(s) => s,
        }
    }
}

impl PartialEq for MxPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text.as_bytes() == other.text.as_bytes()
    }
}

impl Eq for MxPattern {}

impl std::hash::Hash for MxPattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for MxPattern {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MxPattern {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.as_bytes().cmp(other.text.as_bytes())
    }
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
        let text = if wildcard {
            Text::wildcard(&n.name)
        } else {
            Text::new(&n.name)
        };
        Ok((Self { text }, fixes))
    }

    /// A pattern from text the caller has checked is already normalised (`["*."]` and lowercase
    /// LDH labels, no root dot, not an address): the policy parser's fast path.
    pub(crate) fn from_normalised(text: &str) -> Self {
        Self {
            text: Text::new(text),
        }
    }

    /// The normalised pattern text, e.g. `*.example.com`.
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// True for a `*.` pattern.
    pub fn is_wildcard(&self) -> bool {
        self.text.as_bytes().starts_with(b"*.")
    }

    /// Whether `host` (an MX record's host name, RFC 8461 §4.1) matches this pattern.
    ///
    /// The host is compared case-insensitively, one root dot is ignored and U-labels are converted
    /// to A-labels. An IP address, with or without brackets, never matches.
    pub fn matches(&self, host: &str) -> bool {
        let h = host.strip_suffix('.').unwrap_or(host);
        // Bytes decide, unless the host has non-ASCII characters (to convert to A-labels). A
        // byte match of the lowercase ASCII text implies ASCII there.
        match self.matches_bytes(h.as_bytes()) {
            Some(true) => true,
            _ if h.is_ascii() => false,
            _ => HostKey::new(host).is_some_and(|h| self.matches_key(&h)),
        }
    }

    /// [`MxPattern::matches`] for an ASCII host without its root dot ([`ascii_host`]).
    pub(crate) fn matches_ascii(&self, host: &str) -> bool {
        self.matches_bytes(host.as_bytes()) == Some(true)
    }

    pub(crate) fn matches_key(&self, host: &HostKey<'_>) -> bool {
        self.matches_bytes(host.0.as_bytes()) == Some(true)
    }

    /// The comparison of a host without its root dot, by bytes: `None` when a wildcard's label
    /// has non-ASCII characters (the host must be converted to A-labels first). An address never
    /// matches.
    fn matches_bytes(&self, host: &[u8]) -> Option<bool> {
        let text = self.text.as_bytes();
        let Some(parent) = text.strip_prefix(b"*.") else {
            // An exact pattern is never an address, and has no `[` or `:`: neither has a host
            // equal to it.
            return Some(eq_lowercase(host, text));
        };
        // `label "." parent`: the first dot of the host is where the parent starts.
        let Some(at) = host.len().checked_sub(parent.len() + 1) else {
            return Some(false);
        };
        if at == 0 || host[at] != b'.' || !eq_lowercase(&host[at + 1..], parent) {
            return Some(false);
        }
        let label = &host[..at];
        let mut address = label[0] == b'[' || parent.last().is_some_and(u8::is_ascii_digit);
        for &c in label {
            match c {
                b'.' => return Some(false),
                b':' => address = true,
                0x80.. => return None,
                _ => {}
            }
        }
        // The host is ASCII here.
        Some(!(address && std::str::from_utf8(host).is_ok_and(domain::is_address)))
    }
}

/// `host.eq_ignore_ascii_case(lower)` for an ASCII `host` and a lowercase `lower` (a pattern is
/// stored lowercase), eight bytes at a time.
fn eq_lowercase(host: &[u8], lower: &[u8]) -> bool {
    /// Sets bit 5 of each upper-case letter of eight ASCII bytes.
    fn fold(x: u64) -> u64 {
        const ONES: u64 = 0x0101_0101_0101_0101;
        // Bit 7 of a byte: at least 'A', then above 'Z' (no carries: every byte is below 0x80).
        let at_least_a = x.wrapping_add(ONES * (0x80 - u64::from(b'A')));
        let above_z = x.wrapping_add(ONES * (0x80 - u64::from(b'Z') - 1));
        let upper = at_least_a & !above_z & (ONES * 0x80);
        x | (upper >> 2)
    }
    if host.len() != lower.len() {
        return false;
    }
    let (h8, l8) = (host.chunks_exact(8), lower.chunks_exact(8));
    let (h_rest, l_rest) = (h8.remainder(), l8.remainder());
    for (h, l) in h8.zip(l8) {
        let (Ok(h), Ok(l)) = (<[u8; 8]>::try_from(h), <[u8; 8]>::try_from(l)) else {
            return false;
        };
        if fold(u64::from_le_bytes(h)) != u64::from_le_bytes(l) {
            return false;
        }
    }
    h_rest
        .iter()
        .zip(l_rest)
        .all(|(h, l)| h.to_ascii_lowercase() == *l)
}

/// An ASCII host without its root dot, ready for byte comparison; `None` for a host that needs
/// [`HostKey::new`] (non-ASCII, to be converted to A-labels).
pub(crate) fn ascii_host(host: &str) -> Option<&str> {
    let h = host.strip_suffix('.').unwrap_or(host);
    h.is_ascii().then_some(h)
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
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MxPattern({:?})", self.as_str())
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
    use crate::Policy;

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
    fn byte_matching_agrees_with_a_label_conversion() {
        // A non-ASCII label is converted first: a full-width full stop is a dot.
        assert!(!m("*.example.com", "a\u{ff0e}b.example.com"));
        assert!(m("*.example.com", "\u{fc}.example.com"));
        assert!(m("*.example.com", "\u{fc}.EXAMPLE.com."));
        assert!(m("mail.example.com", "MAIL.EXAMPLE.COM"));
        assert!(m("*.example.com", "AbCdEfGhIjK.eXaMpLe.CoM"));
        assert!(!m("*.example.com", "[x.example.com"));
        assert!(!m("*.example.com", ".example.com."));
        assert!(!m("*.example.com", "example.com"));
        assert!(!m("mail.example.com", "mail.example.com\u{fc}"));
        let p = Policy::parse("version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 1\n")
            .unwrap();
        assert!(p.matches_mx("\u{fc}.example.com"));
        assert!(!p.matches_mx("a\u{ff0e}b.example.com"));
        assert!(p.matches_mx("MX.example.com."));
    }

    #[test]
    fn long_patterns_are_stored_on_the_heap() {
        let long = format!("*.{}.example.com", "a".repeat(40));
        let p = MxPattern::parse(&long).unwrap();
        assert_eq!(p.as_str(), long);
        assert!(p.matches(&format!("mx.{}.example.com", "A".repeat(40))));
        assert!(p > MxPattern::parse("*.a.example.com").unwrap());
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
