//! The policy file (RFC 8461 §3.2): parser, canonical printer and builder.
//!
//! The rules, with their two profiles, are those of the project's conformance vectors
//! (`tests/vectors/README.md`): a *layout* deviation (blank line, comment line, white space
//! before a key or before `:`, a byte order mark) is forgiven with a warning by
//! [`Profile::Default`] and is an error under [`Profile::Strict`]; a *content* deviation (unknown
//! mode, malformed `max_age`, missing field…) is an error in both.

use std::fmt;
use std::str::FromStr;

use nom::bytes::complete::{take_till, take_while1};
use nom::character::complete::{char, space0};
use nom::{IResult, Parser as _};

use crate::domain::NameProblem;
use crate::mx::{HostKey, MxPattern, MxPatternError, ascii_host, truncate_for_display};

mod fast;

/// The largest `max_age` (RFC 8461 §3.2): 31557600 seconds, about a year. Larger values are clamped.
pub const MAX_AGE_LIMIT: u32 = 31_557_600;

/// At most this many errors are collected by [`Policy::lint`] (input is hostile: bound the report).
const MAX_REPORTED: usize = 100;

/// Which rules a parser applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// For delivery decisions: layout deviations are forgiven with a warning, malformed `mx`
    /// entries are normalised or dropped with a warning.
    #[default]
    Default,
    /// For linting a published policy: every deviation is an error.
    Strict,
}

/// The policy mode (RFC 8461 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Deliver only to MX hosts that match the policy, over TLS with a valid certificate.
    Enforce,
    /// Deliver as if there were no policy, but report failures (TLSRPT).
    Testing,
    /// Treat the domain as having no active policy.
    None,
}

impl Mode {
    /// The mode as written in a policy: `enforce`, `testing` or `none`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Testing => "testing",
            Self::None => "none",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "enforce" => Some(Self::Enforce),
            "testing" => Some(Self::Testing),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = PolicyError;

    /// Parses `enforce`, `testing` or `none` (case-sensitive, like the policy file).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| PolicyError::at(None, None, PolicyErrorKind::invalid_mode(s)))
    }
}

/// A field of the policy file that the RFC defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `version`
    Version,
    /// `mode`
    Mode,
    /// `mx`
    Mx,
    /// `max_age`
    MaxAge,
}

impl Field {
    /// The key as written in a policy.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Version => "version",
            Self::Mode => "mode",
            Self::Mx => "mx",
            Self::MaxAge => "max_age",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        match key {
            "version" => Some(Self::Version),
            "mode" => Some(Self::Mode),
            "mx" => Some(Self::Mx),
            "max_age" => Some(Self::MaxAge),
            _ => None,
        }
    }

    fn resembling(key: &str) -> Option<Self> {
        [Self::Version, Self::Mode, Self::Mx, Self::MaxAge]
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(key))
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A layout deviation: a warning under [`Profile::Default`], an error under [`Profile::Strict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layout {
    /// The body starts with a UTF-8 byte order mark.
    ByteOrderMark,
    /// An empty line, or one of only spaces and tabs.
    BlankLine,
    /// A line whose first character other than space or tab is `#`.
    CommentLine,
    /// Spaces or tabs before the key.
    WhitespaceBeforeKey,
    /// Spaces or tabs between the key and `:`.
    WhitespaceBeforeColon,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ByteOrderMark => "byte order mark at the start of the policy",
            Self::BlankLine => "blank line",
            Self::CommentLine => "comment line (the policy format has no comments)",
            Self::WhitespaceBeforeKey => "white space before the key",
            Self::WhitespaceBeforeColon => "white space between the key and ':'",
        })
    }
}

/// An unknown `key: value` line, kept for display.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Extension {
    name: Box<str>,
    value: Box<str>,
}

impl Extension {
    pub(crate) fn new(name: &str, value: &str) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The key.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value (leading and trailing white space removed).
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// Something in a policy that was forgiven or normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWarning {
    line: usize,
    kind: PolicyWarningKind,
}

impl PolicyWarning {
    /// The 1-based line number.
    pub fn line(&self) -> usize {
        self.line
    }

    /// What was forgiven.
    pub fn kind(&self) -> &PolicyWarningKind {
        &self.kind
    }
}

impl fmt::Display for PolicyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

/// The kinds of [`PolicyWarning`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyWarningKind {
    /// A layout deviation (an error under [`Profile::Strict`]).
    Layout(Layout),
    /// An unknown key that differs from a known one only in letter case; keys are case-sensitive,
    /// so it was ignored as an extension.
    KeyCase {
        /// The key as written.
        key: String,
        /// The known key it resembles.
        known: Field,
    },
    /// A repeated `version`, `mode` or `max_age`: ignored, the first occurrence counts.
    DuplicateField {
        /// The repeated field.
        field: Field,
        /// The line of the occurrence that counts.
        first_line: usize,
    },
    /// `max_age` above 31557600 seconds, clamped to it.
    MaxAgeClamped {
        /// The value as written.
        value: u64,
    },
    /// An `mx` value with a trailing dot, which was stripped (an error under
    /// [`Profile::Strict`]).
    MxTrailingDot {
        /// The value as written.
        value: String,
    },
    /// An `mx` value in U-labels, converted to A-labels (an error under [`Profile::Strict`]).
    MxConverted {
        /// The value as written.
        value: String,
        /// The pattern it became.
        pattern: MxPattern,
    },
    /// An `mx` value that is not `["*."] Domain`, dropped (an error under [`Profile::Strict`]).
    MxDropped(MxPatternError),
    /// An `mx` pattern listed more than once (after normalisation); kept once.
    MxDuplicate {
        /// The repeated pattern.
        pattern: MxPattern,
    },
}

impl fmt::Display for PolicyWarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Layout(l) => write!(f, "{l} (ignored)"),
            Self::KeyCase { key, known } => write!(
                f,
                "unknown key {key:?} ignored; keys are case-sensitive, did you mean {known:?}?",
                known = known.as_str()
            ),
            Self::DuplicateField { field, first_line } => write!(
                f,
                "repeated {field} ignored; the one on line {first_line} counts"
            ),
            Self::MaxAgeClamped { value } => {
                write!(
                    f,
                    "max_age {value} is above {MAX_AGE_LIMIT}; clamped to {MAX_AGE_LIMIT}"
                )
            }
            Self::MxTrailingDot { value } => {
                write!(f, "mx {value:?} ends with a dot; the dot was removed")
            }
            Self::MxConverted { value, pattern } => {
                write!(
                    f,
                    "mx {value:?} is not in A-labels; read as {pattern:?}",
                    pattern = pattern.as_str()
                )
            }
            Self::MxDropped(e) => write!(f, "{e}; the entry was ignored"),
            Self::MxDuplicate { pattern } => {
                write!(f, "mx {:?} is listed more than once", pattern.as_str())
            }
        }
    }
}

/// Why a policy is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    line: Option<usize>,
    column: Option<usize>,
    kind: PolicyErrorKind,
}

impl PolicyError {
    fn at(line: Option<usize>, column: Option<usize>, kind: PolicyErrorKind) -> Self {
        Self { line, column, kind }
    }

    /// The 1-based line, when the error is on one line.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The 1-based column (in characters), where it helps.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// What is wrong.
    pub fn kind(&self) -> &PolicyErrorKind {
        &self.kind
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The column is shown where the line alone does not say where to look.
        let positional = matches!(
            self.kind,
            PolicyErrorKind::BareCr | PolicyErrorKind::InvalidUtf8
        );
        match (self.line, self.column) {
            (Some(l), Some(c)) if positional => write!(f, "line {l}, column {c}: {}", self.kind),
            (Some(l), _) => write!(f, "line {l}: {}", self.kind),
            _ => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for PolicyError {}

/// The kinds of [`PolicyError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The body is not valid UTF-8.
    InvalidUtf8,
    /// A carriage return that is not directly followed by a line feed.
    BareCr,
    /// A layout deviation, under [`Profile::Strict`].
    Layout(Layout),
    /// A non-blank line without `:`.
    MissingColon,
    /// A key that is not a valid extension name (`(ALPHA/DIGIT) *31(ALPHA/DIGIT/"_"/"-"/".")`).
    InvalidKey {
        /// The key as written (shortened if long).
        key: String,
    },
    /// An extension value that is empty or contains a control character.
    InvalidExtensionValue {
        /// The key of the line.
        key: String,
    },
    /// `version` is not exactly `STSv1`.
    InvalidVersion {
        /// The value found.
        found: String,
    },
    /// `mode` is not exactly `enforce`, `testing` or `none`.
    InvalidMode {
        /// The value found.
        found: String,
    },
    /// `max_age` is not 1 to 10 ASCII digits.
    InvalidMaxAge {
        /// The value found.
        found: String,
    },
    /// An `mx` value that is not `["*."] Domain` in A-labels without a trailing dot, under
    /// [`Profile::Strict`].
    InvalidMx(MxPatternError),
    /// A required field is missing.
    MissingField(Field),
    /// Mode `enforce` or `testing` without any valid `mx`.
    NoMx {
        /// The mode of the policy.
        mode: Mode,
    },
}

impl PolicyErrorKind {
    fn invalid_mode(found: &str) -> Self {
        Self::InvalidMode {
            found: truncate_for_display(found, 80),
        }
    }
}

impl fmt::Display for PolicyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUtf8 => f.write_str("the policy is not valid UTF-8"),
            Self::BareCr => f.write_str("carriage return not followed by a line feed"),
            Self::Layout(l) => write!(f, "{l} is not allowed"),
            Self::MissingColon => f.write_str("expected \"key: value\", found no ':'"),
            Self::InvalidKey { key } => write!(
                f,
                "{key:?} is not a valid key (a letter or digit, then up to 31 letters, digits, \
                 '_', '-' or '.')"
            ),
            Self::InvalidExtensionValue { key } => {
                write!(
                    f,
                    "the value of {key:?} is empty or contains a control character"
                )
            }
            Self::InvalidVersion { found } => {
                write!(f, "version must be STSv1; found {found:?}")
            }
            Self::InvalidMode { found } => {
                write!(
                    f,
                    "mode must be one of enforce, testing, none; found {found:?}"
                )
            }
            Self::InvalidMaxAge { found } => write!(
                f,
                "max_age must be a number of seconds (1 to 10 digits, at most {MAX_AGE_LIMIT}); \
                 found {found:?}"
            ),
            Self::InvalidMx(e) => write!(f, "{e}"),
            Self::MissingField(field) => write!(f, "the policy has no {field} field"),
            Self::NoMx { mode } => {
                write!(
                    f,
                    "a policy in mode {mode} needs at least one valid mx entry"
                )
            }
        }
    }
}

/// A parsed MTA-STS policy (RFC 8461 §3.2).
///
/// ```
/// use mta_sts_core::{Mode, Policy};
///
/// let policy = Policy::parse(
///     "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
/// )?;
/// assert_eq!(policy.mode(), Mode::Enforce);
/// assert_eq!(policy.max_age(), 604800);
/// assert!(policy.matches_mx("mail.example.com"));
/// assert!(policy.matches_mx("mx2.example.net"));
/// assert!(!policy.matches_mx("mail.example.org"));
/// assert!(policy.warnings().is_empty());
/// # Ok::<(), mta_sts_core::PolicyError>(())
/// ```
///
/// Equality compares mode, mx patterns, max_age and extensions, not warnings: a policy equals the
/// one parsed back from its [`Display`](fmt::Display) text.
#[derive(Clone)]
pub struct Policy {
    mode: Mode,
    max_age: u32,
    /// Boxed slices, no capacity slack: policies are cached by the million.
    mx: Box<[MxPattern]>,
    /// Rare: `None` when there are neither extensions nor warnings.
    extra: Option<Box<Extra>>,
}

/// The rarely present parts of a [`Policy`].
#[derive(Clone)]
struct Extra {
    extensions: Box<[Extension]>,
    warnings: Box<[PolicyWarning]>,
}

impl Extra {
    fn boxed(extensions: Vec<Extension>, warnings: Vec<PolicyWarning>) -> Option<Box<Self>> {
        if extensions.is_empty() && warnings.is_empty() {
            return None;
        }
        Some(Box::new(Self {
            extensions: extensions.into_boxed_slice(),
            warnings: warnings.into_boxed_slice(),
        }))
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("mode", &self.mode)
            .field("max_age", &self.max_age)
            .field("mx", &self.mx)
            .field("extensions", &self.extensions())
            .field("warnings", &self.warnings())
            .finish()
    }
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.mode == other.mode
            && self.max_age == other.max_age
            && self.mx == other.mx
            && self.extensions() == other.extensions()
    }
}

impl Eq for Policy {}

/// Every error and warning of a policy, for linting (see [`Policy::lint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyReport {
    /// The policy, when it is valid under the profile used.
    pub policy: Option<Policy>,
    /// The errors, in order (at most 100).
    pub errors: Vec<PolicyError>,
    /// The warnings, in order.
    pub warnings: Vec<PolicyWarning>,
}

impl Policy {
    /// Parses a policy body with the default profile (for delivery decisions).
    pub fn parse(body: &str) -> Result<Self, PolicyError> {
        Self::parse_str_with(body, Profile::Default)
    }

    /// Parses a policy body with the strict profile (every deviation is an error).
    pub fn parse_strict(body: &str) -> Result<Self, PolicyError> {
        Self::parse_str_with(body, Profile::Strict)
    }

    /// Parses a policy body as received (bytes, which must be UTF-8) with the given profile.
    pub fn parse_bytes(body: &[u8], profile: Profile) -> Result<Self, PolicyError> {
        let text = utf8(body)?;
        Self::parse_str_with(text, profile)
    }

    fn parse_str_with(body: &str, profile: Profile) -> Result<Self, PolicyError> {
        // The usual policy in one pass; anything else, with its errors and warnings, below.
        // What the fast path accepts has no warnings, so both profiles read it alike.
        match fast::parse(body) {
            Some(policy) => Ok(policy),
            None => Self::parse_full_path(body, profile),
        }
    }

    /// [`Policy::parse_str_with`] without its fast path: the full parser alone. For the
    /// differential fuzz target and tests (they check that both paths agree); not a stable API.
    #[doc(hidden)]
    pub fn parse_full_path(body: &str, profile: Profile) -> Result<Self, PolicyError> {
        let mut p = PolicyParser::new(profile, false);
        p.run(body);
        p.finish().map_err(|mut errors| errors.swap_remove(0))
    }

    /// The fast path of [`Policy::parse`] alone: `Some` only for a body of the usual form, which
    /// the full parser ([`Policy::parse_full_path`]) must read to the same policy, without
    /// warnings, under either profile. For the differential fuzz target and tests; not a stable
    /// API.
    #[doc(hidden)]
    pub fn parse_fast_path(body: &str) -> Option<Self> {
        fast::parse(body)
    }

    /// Checks a policy body and reports every error and warning, for operators.
    ///
    /// ```
    /// use mta_sts_core::{Policy, Profile};
    ///
    /// let report = Policy::lint(b"version: STSv1\nmode: Enforce\n\nmax_age: 86400\n", Profile::Strict);
    /// assert!(report.policy.is_none());
    /// let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
    /// assert_eq!(errors[0], r#"line 2: mode must be one of enforce, testing, none; found "Enforce""#);
    /// assert_eq!(errors[1], "line 3: blank line is not allowed");
    /// ```
    pub fn lint(body: &[u8], profile: Profile) -> PolicyReport {
        let text = match utf8(body) {
            Ok(t) => t,
            Err(e) => {
                return PolicyReport {
                    policy: None,
                    errors: vec![e],
                    warnings: Vec::new(),
                };
            }
        };
        let mut p = PolicyParser::new(profile, true);
        p.run(text);
        let warnings = p.warnings.clone();
        match p.finish() {
            Ok(policy) => PolicyReport {
                policy: Some(policy),
                errors: Vec::new(),
                warnings,
            },
            Err(errors) => PolicyReport {
                policy: None,
                errors,
                warnings,
            },
        }
    }

    /// A builder for publishers: it cannot produce an invalid policy.
    pub fn builder(mode: Mode) -> PolicyBuilder {
        PolicyBuilder::new(mode)
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `max_age` in seconds, after clamping to 31557600.
    pub fn max_age(&self) -> u32 {
        self.max_age
    }

    /// The `mx` patterns, normalised, in the order given, without duplicates.
    pub fn mx(&self) -> &[MxPattern] {
        &self.mx
    }

    /// The unknown fields, in the order given.
    pub fn extensions(&self) -> &[Extension] {
        self.extra.as_deref().map_or(&[], |e| &e.extensions)
    }

    /// What was forgiven or normalised while parsing.
    pub fn warnings(&self) -> &[PolicyWarning] {
        self.extra.as_deref().map_or(&[], |e| &e.warnings)
    }

    /// Whether an MX host name matches one of the policy's patterns (RFC 8461 §4.1). The host is
    /// compared case-insensitively, without its root dot, in A-labels; an IP address never
    /// matches. This says nothing about the mode: see [`Policy::mode`].
    pub fn matches_mx(&self, host: &str) -> bool {
        if let Some(h) = ascii_host(host) {
            return self.mx.iter().any(|p| p.matches_ascii(h));
        }
        match HostKey::new(host) {
            Some(key) => self.mx.iter().any(|p| p.matches_key(&key)),
            None => false,
        }
    }
}

fn utf8(body: &[u8]) -> Result<&str, PolicyError> {
    std::str::from_utf8(body).map_err(|e| {
        let good = &body[..e.valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // `good` is valid UTF-8, so this never fails; count characters for the column.
        let column = std::str::from_utf8(&good[line_start..]).map_or(1, |s| s.chars().count() + 1);
        PolicyError::at(Some(line), Some(column), PolicyErrorKind::InvalidUtf8)
    })
}

impl FromStr for Policy {
    type Err = PolicyError;

    /// Same as [`Policy::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Policy {
    /// The canonical policy text: one field per line, CRLF, in the order version, mode, mx (each),
    /// max_age, then any extensions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "version: STSv1\r\nmode: {}\r\n", self.mode)?;
        for mx in &self.mx {
            write!(f, "mx: {mx}\r\n")?;
        }
        write!(f, "max_age: {}\r\n", self.max_age)?;
        for e in self.extensions() {
            write!(f, "{}: {}\r\n", e.name, e.value)?;
        }
        Ok(())
    }
}

/// Builds a valid policy for publishing (see [`Policy::builder`]).
///
/// ```
/// use mta_sts_core::{Mode, MxPattern, Policy};
///
/// let policy = Policy::builder(Mode::Enforce)
///     .mx(MxPattern::parse("mail.example.com")?)
///     .mx(MxPattern::parse("*.backup.example.com")?)
///     .max_age(86400)
///     .build()?;
/// assert_eq!(
///     policy.to_string(),
///     "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.backup.example.com\r\nmax_age: 86400\r\n"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PolicyBuilder {
    mode: Mode,
    mx: Vec<MxPattern>,
    max_age: u32,
}

/// Why a [`PolicyBuilder`] refused to build.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyBuildError {
    /// Mode `enforce` or `testing` needs at least one `mx`.
    NoMx {
        /// The mode asked for.
        mode: Mode,
    },
    /// `max_age` above 31557600 seconds.
    MaxAgeTooLarge {
        /// The value asked for.
        max_age: u32,
    },
}

impl fmt::Display for PolicyBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoMx { mode } => write!(f, "a policy in mode {mode} needs at least one mx"),
            Self::MaxAgeTooLarge { max_age } => {
                write!(
                    f,
                    "max_age {max_age} is above the limit of {MAX_AGE_LIMIT} seconds"
                )
            }
        }
    }
}

impl std::error::Error for PolicyBuildError {}

impl PolicyBuilder {
    /// A builder for a policy in `mode`, with no mx yet and `max_age` one week (604800 s).
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            mx: Vec::new(),
            max_age: 604_800,
        }
    }

    /// Adds an mx pattern (a repeated pattern is kept once).
    #[must_use]
    pub fn mx(mut self, pattern: MxPattern) -> Self {
        if !self.mx.contains(&pattern) {
            self.mx.push(pattern);
        }
        self
    }

    /// Sets `max_age` in seconds (at most 31557600).
    #[must_use]
    pub fn max_age(mut self, seconds: u32) -> Self {
        self.max_age = seconds;
        self
    }

    /// The policy, or why it would be invalid.
    pub fn build(self) -> Result<Policy, PolicyBuildError> {
        if self.max_age > MAX_AGE_LIMIT {
            return Err(PolicyBuildError::MaxAgeTooLarge {
                max_age: self.max_age,
            });
        }
        if self.mode != Mode::None && self.mx.is_empty() {
            return Err(PolicyBuildError::NoMx { mode: self.mode });
        }
        Ok(Policy {
            mode: self.mode,
            max_age: self.max_age,
            mx: self.mx.into_boxed_slice(),
            extra: None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The parser.

/// One `key: value` line split by the grammar, with its layout deviations.
struct Line<'a, C> {
    key: &'a str,
    value: &'a str,
    /// Column (1-based, characters) where the key starts.
    key_column: usize,
    /// Column (1-based, characters) where the value starts, computed on demand.
    value_column: C,
    ws_before_key: bool,
    ws_before_colon: bool,
}

fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `*WSP key *WSP ":" *WSP value *WSP`; `None` when there is no `:`.
fn split_line(line: &str) -> Option<Line<'_, impl Fn() -> usize + '_>> {
    let parsed: IResult<&str, (&str, &str, char, &str)> =
        (space0, take_till(|c| c == ':'), char(':'), space0).parse(line);
    let (rest, (lead, key_raw, _, gap)) = parsed.ok()?;
    let key = key_raw.trim_end_matches(is_wsp);
    let before_value = lead.len() + key_raw.len() + 1 + gap.len();
    // Computed only when an error needs it: counting characters costs a scan of the line.
    let value_column = move || line[..before_value].chars().count() + 1;
    Some(Line {
        key,
        value: rest.trim_end_matches(is_wsp),
        key_column: lead.len() + 1,
        value_column,
        ws_before_key: !lead.is_empty(),
        ws_before_colon: key.len() != key_raw.len(),
    })
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

/// The usual line: a key of name characters from the first column, `:`, `*WSP value *WSP`.
/// `None` for anything else (left to [`split_line`] and the layout checks); where both apply
/// they split alike.
fn split_plain(line: &str) -> Option<Line<'_, impl Fn() -> usize + '_>> {
    type Split<'a> = IResult<&'a [u8], (&'a [u8], char, &'a [u8])>;
    let parsed: Split<'_> = (take_while1(is_name_byte), char(':'), space0).parse(line.as_bytes());
    let (rest, (key, _, gap)) = parsed.ok()?;
    let end = rest.len()
        - rest
            .iter()
            .rev()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
    let before_value = key.len() + 1 + gap.len();
    // All ASCII up to the value: its column is its byte offset.
    let value_column = move || before_value + 1;
    Some(Line {
        key: &line[..key.len()],
        value: &line[before_value..before_value + end],
        key_column: 1,
        value_column,
        ws_before_key: false,
        ws_before_colon: false,
    })
}

/// The position of the first CR or LF, eight bytes at a time (lines are short: `memchr`'s
/// set-up would cost more than the search).
fn find_cr_or_lf(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(word);
        // Exact for the first match (borrows only run towards higher bytes).
        let hit = has_zero(x ^ (ONES * u64::from(b'\n'))) | has_zero(x ^ (ONES * u64::from(b'\r')));
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .map(|j| i + j)
}

/// `(ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`
fn is_ext_name(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// `sts-policy-ext-value`: non-empty, no control characters (HTAB included); inner spaces and
/// non-ASCII UTF-8 allowed. Leading and trailing white space was already removed.
fn is_ext_value(value: &str) -> bool {
    !value.is_empty() && !value.bytes().any(|c| c < 0x20 || c == 0x7f)
}

/// `1*10DIGIT`
fn parse_max_age(value: &str) -> Option<u64> {
    let digits = value.as_bytes();
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    // At most ten digits: no overflow in a u64.
    digits.iter().try_fold(0, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

/// The mx patterns found so far: the first few on the stack, so that the policy's slice is
/// allocated once, at its size.
struct MxList {
    head: [Option<MxPattern>; 4],
    head_len: usize,
    tail: Vec<MxPattern>,
}

impl MxList {
    fn new() -> Self {
        Self {
            head: [None, None, None, None],
            head_len: 0,
            tail: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.head_len == 0
    }

    fn contains(&self, p: &MxPattern) -> bool {
        self.head[..self.head_len]
            .iter()
            .any(|h| h.as_ref() == Some(p))
            || self.tail.contains(p)
    }

    fn push(&mut self, p: MxPattern) {
        match self.head.get_mut(self.head_len) {
            Some(slot) => {
                *slot = Some(p);
                self.head_len += 1;
            }
            None => self.tail.push(p),
        }
    }

    fn into_boxed_slice(self) -> Box<[MxPattern]> {
        let mut all = Vec::with_capacity(self.head_len + self.tail.len());
        for p in self.head.into_iter().take(self.head_len).flatten() {
            all.push(p);
        }
        all.extend(self.tail);
        all.into_boxed_slice()
    }
}

struct PolicyParser {
    profile: Profile,
    collect_all: bool,
    version: Option<usize>,
    mode: Option<(usize, Option<Mode>)>,
    max_age: Option<(usize, Option<u32>)>,
    mx: MxList,
    extensions: Vec<Extension>,
    warnings: Vec<PolicyWarning>,
    errors: Vec<PolicyError>,
}

impl PolicyParser {
    fn new(profile: Profile, collect_all: bool) -> Self {
        Self {
            profile,
            collect_all,
            version: None,
            mode: None,
            max_age: None,
            mx: MxList::new(),
            extensions: Vec::new(),
            warnings: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Records an error; false when parsing should stop.
    fn error(&mut self, line: Option<usize>, column: Option<usize>, kind: PolicyErrorKind) -> bool {
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(PolicyError::at(line, column, kind));
        }
        self.collect_all
    }

    fn warn(&mut self, line: usize, kind: PolicyWarningKind) {
        if self.warnings.len() < MAX_REPORTED {
            self.warnings.push(PolicyWarning { line, kind });
        }
    }

    /// A layout deviation: a warning or, under the strict profile, an error.
    fn layout(&mut self, line: usize, layout: Layout) -> bool {
        match self.profile {
            Profile::Default => {
                self.warn(line, PolicyWarningKind::Layout(layout));
                true
            }
            Profile::Strict => self.error(Some(line), None, PolicyErrorKind::Layout(layout)),
        }
    }

    fn run(&mut self, body: &str) {
        let body = match body.strip_prefix('\u{feff}') {
            Some(rest) => {
                if !self.layout(1, Layout::ByteOrderMark) {
                    return;
                }
                rest
            }
            None => body,
        };
        // Lines end with LF; the last line's terminator is optional. One pass over the bytes
        // finds each line's end and its first CR (short lines make memchr's set-up the larger
        // cost).
        let (body, final_lf) = match body.strip_suffix('\n') {
            Some(body) => (body, true),
            None => (body, false),
        };
        let bytes = body.as_bytes();
        let mut start = 0;
        let mut n = 0;
        loop {
            n += 1;
            let rest = &bytes[start..];
            // The line ends at the first LF; its first CR, if before that, is noted.
            let (len, first_cr) = match find_cr_or_lf(rest) {
                None => (rest.len(), None),
                Some(i) if rest[i] == b'\n' => (i, None),
                Some(i) => {
                    let lf = rest[i..].iter().position(|&c| c == b'\n');
                    (lf.map_or(rest.len(), |j| i + j), Some(i))
                }
            };
            let end = start + len;
            // Every line but an unterminated last one ends with LF.
            let has_lf = end < bytes.len() || final_lf;
            if !self.line(n, &body[start..end], first_cr, has_lf) {
                return;
            }
            if end >= bytes.len() {
                return;
            }
            start = end + 1;
        }
    }

    /// Parses one line; false when parsing should stop.
    /// `first_cr` is the byte offset of the line's first CR, if any; `has_lf` is false for a last
    /// line without a terminator.
    fn line(&mut self, n: usize, raw: &str, first_cr: Option<usize>, has_lf: bool) -> bool {
        let line = match first_cr {
            None => raw,
            // A CR directly before the LF is part of the terminator (`sts-policy-term = LF /
            // CRLF`); one at the very end of the body, with no LF after it, is a bare CR.
            Some(at) if at + 1 == raw.len() && has_lf => &raw[..at],
            Some(at) => {
                let column = raw[..at].chars().count() + 1;
                return self.error(Some(n), Some(column), PolicyErrorKind::BareCr);
            }
        };
        // The usual line, `key: value` from the first column, is split in one pass.
        if let Some(l) = split_plain(line) {
            return self.field(n, l);
        }
        let content = line.trim_start_matches(is_wsp);
        if content.trim_end_matches(is_wsp).is_empty() {
            return self.layout(n, Layout::BlankLine);
        }
        if content.starts_with('#') {
            return self.layout(n, Layout::CommentLine);
        }
        let Some(l) = split_line(line) else {
            return self.error(Some(n), None, PolicyErrorKind::MissingColon);
        };
        if l.ws_before_key && !self.layout(n, Layout::WhitespaceBeforeKey) {
            return false;
        }
        if l.ws_before_colon && !self.layout(n, Layout::WhitespaceBeforeColon) {
            return false;
        }
        self.field(n, l)
    }

    /// Handles the field of a split line; false when parsing should stop.
    fn field(&mut self, n: usize, l: Line<'_, impl Fn() -> usize>) -> bool {
        let col = || Some((l.value_column)());
        match Field::from_key(l.key) {
            Some(Field::Version) => {
                if let Some(first_line) = self.version {
                    self.warn(
                        n,
                        PolicyWarningKind::DuplicateField {
                            field: Field::Version,
                            first_line,
                        },
                    );
                    return true;
                }
                self.version = Some(n);
                if l.value != "STSv1" {
                    let found = truncate_for_display(l.value, 80);
                    return self.error(Some(n), col(), PolicyErrorKind::InvalidVersion { found });
                }
            }
            Some(Field::Mode) => {
                if let Some((first_line, _)) = self.mode {
                    self.warn(
                        n,
                        PolicyWarningKind::DuplicateField {
                            field: Field::Mode,
                            first_line,
                        },
                    );
                    return true;
                }
                let mode = Mode::parse(l.value);
                self.mode = Some((n, mode));
                if mode.is_none() {
                    return self.error(Some(n), col(), PolicyErrorKind::invalid_mode(l.value));
                }
            }
            Some(Field::MaxAge) => {
                if let Some((first_line, _)) = self.max_age {
                    self.warn(
                        n,
                        PolicyWarningKind::DuplicateField {
                            field: Field::MaxAge,
                            first_line,
                        },
                    );
                    return true;
                }
                let Some(value) = parse_max_age(l.value) else {
                    self.max_age = Some((n, None));
                    let found = truncate_for_display(l.value, 80);
                    return self.error(Some(n), col(), PolicyErrorKind::InvalidMaxAge { found });
                };
                if value > u64::from(MAX_AGE_LIMIT) {
                    self.warn(n, PolicyWarningKind::MaxAgeClamped { value });
                }
                // Clamped, so the conversion cannot fail.
                let clamped =
                    u32::try_from(value.min(u64::from(MAX_AGE_LIMIT))).unwrap_or(MAX_AGE_LIMIT);
                self.max_age = Some((n, Some(clamped)));
            }
            Some(Field::Mx) => return self.mx_line(n, l.value, &l.value_column),
            None => {
                if !is_ext_name(l.key) {
                    let key = truncate_for_display(l.key, 40);
                    return self.error(
                        Some(n),
                        Some(l.key_column),
                        PolicyErrorKind::InvalidKey { key },
                    );
                }
                if !is_ext_value(l.value) {
                    let key = l.key.to_owned();
                    return self.error(
                        Some(n),
                        col(),
                        PolicyErrorKind::InvalidExtensionValue { key },
                    );
                }
                if let Some(known) = Field::resembling(l.key) {
                    self.warn(
                        n,
                        PolicyWarningKind::KeyCase {
                            key: l.key.to_owned(),
                            known,
                        },
                    );
                }
                self.extensions.push(Extension::new(l.key, l.value));
            }
        }
        true
    }

    fn mx_line(&mut self, n: usize, value: &str, column: &dyn Fn() -> usize) -> bool {
        let col = || Some(column());
        let pattern = match MxPattern::parse_fixing(value) {
            Ok((pattern, fixes)) => match self.profile {
                Profile::Strict if fixes.stripped_dot || fixes.converted => {
                    let problem = if fixes.stripped_dot {
                        NameProblem::TrailingDot
                    } else {
                        NameProblem::NotAscii
                    };
                    let e = MxPatternError::new(value, problem);
                    return self.error(Some(n), col(), PolicyErrorKind::InvalidMx(e));
                }
                _ => {
                    if fixes.stripped_dot {
                        self.warn(
                            n,
                            PolicyWarningKind::MxTrailingDot {
                                value: truncate_for_display(value, 80),
                            },
                        );
                    }
                    if fixes.converted {
                        let value = truncate_for_display(value, 80);
                        self.warn(
                            n,
                            PolicyWarningKind::MxConverted {
                                value,
                                pattern: pattern.clone(),
                            },
                        );
                    }
                    pattern
                }
            },
            Err(e) => {
                return match self.profile {
                    Profile::Strict => self.error(Some(n), col(), PolicyErrorKind::InvalidMx(e)),
                    Profile::Default => {
                        self.warn(n, PolicyWarningKind::MxDropped(e));
                        true
                    }
                };
            }
        };
        if self.mx.contains(&pattern) {
            self.warn(n, PolicyWarningKind::MxDuplicate { pattern });
        } else {
            self.mx.push(pattern);
        }
        true
    }

    fn finish(mut self) -> Result<Policy, Vec<PolicyError>> {
        let stop = |p: &Self| !p.errors.is_empty() && !p.collect_all;
        if stop(&self) {
            return Err(self.errors);
        }
        if self.version.is_none() {
            self.error(None, None, PolicyErrorKind::MissingField(Field::Version));
        }
        if self.mode.is_none() && !stop(&self) {
            self.error(None, None, PolicyErrorKind::MissingField(Field::Mode));
        }
        if self.max_age.is_none() && !stop(&self) {
            self.error(None, None, PolicyErrorKind::MissingField(Field::MaxAge));
        }
        if let Some((_, Some(mode))) = self.mode
            && mode != Mode::None
            && self.mx.is_empty()
            && !stop(&self)
        {
            self.error(None, None, PolicyErrorKind::NoMx { mode });
        }
        match (self.errors.is_empty(), self.mode, self.max_age) {
            (true, Some((_, Some(mode))), Some((_, Some(max_age)))) => Ok(Policy {
                mode,
                max_age,
                mx: self.mx.into_boxed_slice(),
                extra: Extra::boxed(self.extensions, self.warnings),
            }),
            _ => Err(self.errors),
        }
    }
}
