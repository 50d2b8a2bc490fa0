//! The `_smtp._tls.<domain>` TXT record (RFC 8460 §3): candidate selection and parsing.
//!
//! ```text
//! tlsrpt-record     = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
//! field-delim       = *WSP ";" *WSP
//! tlsrpt-version    = %s"v=TLSRPTv1"
//! tlsrpt-rua        = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
//! tlsrpt-extension  = tlsrpt-ext-name "=" tlsrpt-ext-value
//! ```
//!
//! Decisions beyond the ABNF, the same under both profiles unless said:
//!
//! - Only `mailto:` and `https:` URIs are usable (§3). Under [`Profile::Default`] a URI of another
//!   scheme is skipped with a warning as long as one usable URI remains; under
//!   [`Profile::Strict`] it is an error.
//! - `mailto:` needs one addr-spec with `@`; its domain is stored in lowercase A-labels, the
//!   local part as written (percent-decoded). Header fields (`?subject=…`) are dropped with a
//!   warning. Address literals (`user@[192.0.2.1]`) are refused.
//! - `https:` needs a host name: no userinfo, no IP address or literal (a report POST to an
//!   address chosen by the record's publisher is a request forgery risk, and no real publisher
//!   uses one), port 1–65535 (443 when absent). U-labels become A-labels (UTS 46).
//! - Limits: a record longer than [`MAX_RECORD_LEN`] bytes or with more than [`MAX_URIS`] URIs is
//!   refused.
//! - A repeated `v` field is refused; a repeated `rua` field is merged with a warning (the ABNF
//!   allows it; strict refuses it).
//! - Columns are 1-based character columns.

use std::cell::Cell;
use std::fmt;

use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::space0;
use nom::{IResult, Parser as _};

use crate::domain::{self, NameProblem};
use crate::mx::truncate_for_display;
use crate::policy::{Extension, Profile};

/// The longest record accepted, in bytes (character-strings joined). RFC 8460 records are short:
/// a dozen URIs fit in well under this.
pub const MAX_RECORD_LEN: usize = 4096;

/// The most `rua` URIs a record may list (all `rua` fields together, skipped ones included).
pub const MAX_URIS: usize = 16;

/// The longest local part of a `mailto:` address (RFC 5321 §4.5.3.1.1), in bytes.
const MAX_LOCAL_LEN: usize = 64;

/// The DNS name of the TLSRPT record of `domain`: `_smtp._tls.<domain>` (one trailing dot of
/// `domain` removed, no dot added).
///
/// ```
/// use mta_sts_core::tlsrpt::record_name;
///
/// assert_eq!(record_name("example.com"), "_smtp._tls.example.com");
/// assert_eq!(record_name("example.com."), "_smtp._tls.example.com");
/// ```
pub fn record_name(domain: &str) -> String {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    format!("_smtp._tls.{d}")
}

/// Where aggregate reports go (`rua`): the two schemes RFC 8460 §3 defines.
///
/// RFC 8460 defines exactly these two schemes, so the enum is exhaustive: a third would be a new
/// RFC.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReportUri {
    /// `mailto:` with the address: the percent-decoded addr-spec, its domain in lowercase
    /// A-labels; header fields dropped with a warning.
    Mailto(String),
    /// `https:` URL as written (host in lowercase A-labels, raw non-ASCII percent-encoded,
    /// fragment removed), with its host, port (443 if absent) and path with query (`/` if
    /// empty).
    Https {
        /// The URL to POST to, e.g. `https://reporting.example.com/v1/tlsrpt`.
        url: String,
        /// The host name, lowercase A-labels, no trailing dot.
        host: String,
        /// The port: as written, else 443.
        port: u16,
        /// The path and query, starting with `/`.
        path: String,
    },
}

impl ReportUri {
    /// The URL for `https:`; the address for `mailto:` (without the scheme: [`fmt::Display`]
    /// writes the whole `mailto:` URI).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Mailto(address) => address,
            Self::Https { url, .. } => url,
        }
    }
}

impl fmt::Display for ReportUri {
    /// The URI as it can appear in a record: `mailto:` with the address percent-encoded where
    /// needed, or the `https:` URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mailto(address) => {
                f.write_str("mailto:")?;
                for b in address.bytes() {
                    if b.is_ascii_alphanumeric() || b"-._~@+'*$&=/".contains(&b) {
                        write!(f, "{}", char::from(b))?;
                    } else {
                        write!(f, "%{b:02X}")?;
                    }
                }
                Ok(())
            }
            Self::Https { url, .. } => f.write_str(url),
        }
    }
}

/// A valid `_smtp._tls` TXT record.
///
/// ```
/// use mta_sts_core::tlsrpt::{ReportUri, TlsRptRecord};
///
/// // One TXT RRset as received: each record with its character-strings joined.
/// let answer = [&b"v=spf1 -all"[..], b"v=TLSRPTv1; rua=mailto:tlsrpt@example.com"];
/// let record = TlsRptRecord::discover(answer)?;
/// assert_eq!(record.rua(), [ReportUri::Mailto("tlsrpt@example.com".into())]);
/// # Ok::<(), mta_sts_core::tlsrpt::TlsRptError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRptRecord {
    rua: Vec<ReportUri>,
    extensions: Vec<Extension>,
    warnings: Vec<TlsRptWarning>,
}

impl fmt::Display for TlsRptRecord {
    /// The canonical record text, e.g. `v=TLSRPTv1; rua=mailto:tlsrpt@example.com`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v=TLSRPTv1; rua=")?;
        for (i, uri) in self.rua.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{uri}")?;
        }
        for e in &self.extensions {
            write!(f, "; {}={}", e.name(), e.value())?;
        }
        Ok(())
    }
}

/// Where and why a TXT answer gives no TLSRPT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRptError {
    column: Option<usize>,
    kind: TlsRptErrorKind,
}

impl TlsRptError {
    fn at(column: Option<usize>, kind: TlsRptErrorKind) -> Self {
        Self { column, kind }
    }

    /// The 1-based character column in the record, where it helps.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// What is wrong.
    pub fn kind(&self) -> &TlsRptErrorKind {
        &self.kind
    }
}

impl fmt::Display for TlsRptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "column {c}: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for TlsRptError {}

/// A deviation from the ABNF that [`Profile::Default`] forgives with a warning and
/// [`Profile::Strict`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsRptLayout {
    /// Spaces or tabs at the end of the record with no `;` after them.
    TrailingWhitespace,
    /// An empty field between delimiters (`;;` or `; ;`).
    EmptyField,
    /// An empty URI in the `rua` list (`,,` or a trailing `,`).
    EmptyUri,
    /// Spaces or tabs between `rua=` and the first URI.
    SpaceAfterEquals,
    /// `rua` written in another letter case (`RUA=`): the name is case-sensitive.
    RuaCase,
    /// A second `rua` field: its URIs are added to the first's.
    DuplicateRua,
    /// A DMARC-style size limit after a URI (`!10m`): TLSRPT has none; it is ignored.
    SizeLimit,
    /// Raw non-ASCII characters in a URI (an IRI rather than a URI).
    NonAsciiUri,
}

impl fmt::Display for TlsRptLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TrailingWhitespace => "trailing white space at the end of the record",
            Self::EmptyField => "empty field between ';' delimiters",
            Self::EmptyUri => "empty URI in the rua list",
            Self::SpaceAfterEquals => "white space after \"rua=\"",
            Self::RuaCase => "\"rua\" in another letter case",
            Self::DuplicateRua => "a second rua field",
            Self::SizeLimit => "a DMARC-style size limit ('!') after a URI",
            Self::NonAsciiUri => "non-ASCII characters in a URI",
        })
    }
}

/// Why a `rua` URI is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UriProblem {
    /// No `scheme:` at the start.
    NoScheme,
    /// A character a URI cannot contain (RFC 3986), or a `!` that is not a size limit (RFC 8460
    /// §3: `!` must be percent-encoded).
    BadCharacter(char),
    /// A `%` not followed by two hex digits, or an encoded text that is not UTF-8.
    BadPercentEncoding,
    /// `mailto:` with no address.
    MissingAddress,
    /// `mailto:` address without `@`.
    MissingAt,
    /// `mailto:` with several addresses (`%2C`-separated): one per URI.
    MultipleAddresses,
    /// A local part that is neither a dot-atom nor a quoted string of at most 64 bytes.
    BadLocalPart,
    /// `https:` with no `//host`.
    MissingHost,
    /// `https://user@host`: credentials in the URI are refused.
    Userinfo,
    /// An IP address or address literal as the `https:` host or `mailto:` domain.
    IpLiteral,
    /// A port that is not 1 to 65535.
    BadPort,
    /// A host (or `mailto:` domain) that is not a domain name.
    BadHost(NameProblem),
}

impl fmt::Display for UriProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoScheme => f.write_str("no scheme (\"mailto:\" or \"https:\")"),
            Self::BadCharacter(c) => write!(f, "{c:?} is not allowed in a URI (percent-encode it)"),
            Self::BadPercentEncoding => f.write_str("bad percent-encoding"),
            Self::MissingAddress => f.write_str("mailto: without an address"),
            Self::MissingAt => f.write_str("the mailto: address has no '@'"),
            Self::MultipleAddresses => f.write_str("one address per mailto: URI"),
            Self::BadLocalPart => f.write_str("the mailto: address has a bad local part"),
            Self::MissingHost => f.write_str("https: without a host (\"https://host/...\")"),
            Self::Userinfo => f.write_str("user information in an https: URI"),
            Self::IpLiteral => f.write_str("an IP address is not allowed as the host"),
            Self::BadPort => f.write_str("the port is not 1 to 65535"),
            Self::BadHost(p) => write!(f, "bad host name: {p}"),
        }
    }
}

/// The kinds of [`TlsRptError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsRptErrorKind {
    /// No record of the answer begins with `v=TLSRPTv1;`: the domain does not implement TLSRPT.
    NoRecord,
    /// More than one record begins with `v=TLSRPTv1;` (RFC 8460 §3: then the domain does not
    /// implement TLSRPT); the count.
    MultipleRecords(usize),
    /// The record does not begin with `v=TLSRPTv1` followed by `;`, white space or its end.
    BadVersion,
    /// A non-ASCII character outside a URI (or in a URI, under [`Profile::Strict`]), or a byte
    /// sequence that is not UTF-8.
    NonAscii,
    /// The record is longer than [`MAX_RECORD_LEN`] bytes.
    TooLong {
        /// The limit.
        max: usize,
    },
    /// The record lists more than [`MAX_URIS`] URIs.
    TooManyUris {
        /// The limit.
        max: usize,
    },
    /// The record does not follow the ABNF.
    Syntax {
        /// What was expected at the column.
        expected: &'static str,
    },
    /// The record has no `rua` field.
    MissingRua,
    /// A `rua` field with no URI.
    EmptyRua,
    /// A URI scheme other than `mailto` and `https` (the scheme, lowercase), under
    /// [`Profile::Strict`], or under [`Profile::Default`] when no usable URI remains.
    UnsupportedScheme(String),
    /// A `mailto:` or `https:` URI that cannot be used.
    BadUri(UriProblem),
    /// A second `v` field.
    DuplicateVersion,
    /// An extension name that is not `(ALPHA/DIGIT) *31(ALPHA/DIGIT/"_"/"-"/".")`.
    InvalidExtensionName {
        /// The name found (shortened if long).
        name: String,
    },
    /// An extension with an empty value.
    EmptyExtensionValue {
        /// The extension's name.
        name: String,
    },
    /// A layout deviation, under [`Profile::Strict`].
    Layout(TlsRptLayout),
}

impl fmt::Display for TlsRptErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRecord => f.write_str("no TXT record begins with \"v=TLSRPTv1;\""),
            Self::MultipleRecords(count) => write!(
                f,
                "{count} TXT records begin with \"v=TLSRPTv1;\"; exactly one is allowed"
            ),
            Self::BadVersion => f.write_str("the record does not begin with \"v=TLSRPTv1;\""),
            Self::NonAscii => f.write_str("non-ASCII character in the record"),
            Self::TooLong { max } => write!(f, "the record is longer than {max} bytes"),
            Self::TooManyUris { max } => write!(f, "more than {max} rua URIs"),
            Self::Syntax { expected } => write!(f, "expected {expected}"),
            Self::MissingRua => f.write_str("the record has no rua field"),
            Self::EmptyRua => f.write_str("the rua field lists no URI"),
            Self::UnsupportedScheme(s) => {
                write!(
                    f,
                    "URI scheme {s:?} is not supported (only mailto and https)"
                )
            }
            Self::BadUri(p) => write!(f, "unusable rua URI: {p}"),
            Self::DuplicateVersion => f.write_str("a second v field"),
            Self::InvalidExtensionName { name } => write!(
                f,
                "{name:?} is not a valid field name (a letter or digit, then up to 31 letters, \
                 digits, '_', '-' or '.')"
            ),
            Self::EmptyExtensionValue { name } => write!(f, "field {name:?} has an empty value"),
            Self::Layout(l) => write!(f, "{l} is not allowed"),
        }
    }
}

/// Something in a TLSRPT record that was forgiven or dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRptWarning {
    column: usize,
    kind: TlsRptWarningKind,
}

impl TlsRptWarning {
    /// The 1-based character column in the record.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What was forgiven.
    pub fn kind(&self) -> &TlsRptWarningKind {
        &self.kind
    }
}

impl fmt::Display for TlsRptWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.kind)
    }
}

/// The kinds of [`TlsRptWarning`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsRptWarningKind {
    /// A layout deviation (an error under [`Profile::Strict`]).
    Layout(TlsRptLayout),
    /// A URI of a scheme other than `mailto` and `https`, skipped (an error under
    /// [`Profile::Strict`]).
    UnsupportedScheme {
        /// The URI (shortened if long).
        uri: String,
    },
    /// `mailto:` header fields (`?subject=…`), dropped.
    HfieldsDropped {
        /// The dropped text after `?` (shortened if long).
        ignored: String,
    },
    /// A fragment (`#…`), dropped.
    FragmentDropped {
        /// The dropped text after `#` (shortened if long).
        ignored: String,
    },
}

impl fmt::Display for TlsRptWarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Layout(l) => write!(f, "{l} (ignored)"),
            Self::UnsupportedScheme { uri } => {
                write!(f, "{uri:?} skipped: only mailto and https are supported")
            }
            Self::HfieldsDropped { ignored } => {
                write!(f, "mailto: header fields {ignored:?} dropped")
            }
            Self::FragmentDropped { ignored } => write!(f, "fragment {ignored:?} dropped"),
        }
    }
}

/// Whether a record is a TLSRPT candidate (RFC 8460 §3): it begins with exactly `v=TLSRPTv1`,
/// then optional spaces or tabs, then `;`. See [`TlsRptRecord::is_candidate`].
fn is_candidate(record: &[u8]) -> bool {
    match record.strip_prefix(b"v=TLSRPTv1") {
        Some(rest) => {
            let after = rest
                .iter()
                .position(|&c| c != b' ' && c != b'\t')
                .map(|i| rest[i]);
            after == Some(b';')
        }
        None => false,
    }
}

fn is_value_char(c: char) -> bool {
    // %x21-3A / %x3C / %x3E-7E: visible ASCII except ";" and "=".
    matches!(c, '\x21'..='\x3a' | '\x3c' | '\x3e'..='\x7e')
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn is_ext_name(name: &str) -> bool {
    name.len() <= 32
        && name
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
}

/// `name "="`.
fn field_name(i: &str) -> IResult<&str, &str> {
    (take_while1(is_name_char), tag("="))
        .map(|(name, _)| name)
        .parse(i)
}

/// Characters RFC 3986 allows in a URI, besides `%` escapes (`,` and `;` delimit URIs here).
fn is_uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+=".contains(c)
}

fn wsp(i: &str) -> (&str, &str) {
    let r: IResult<&str, &str> = space0(i);
    r.unwrap_or((i, ""))
}

/// Percent-decodes `s` (escapes already checked) into UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `s` with every non-ASCII character percent-encoded (UTF-8).
fn encode_non_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for b in c.encode_utf8(&mut [0; 4]).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// The length of a DMARC-style size suffix at the end of `uri` (`!` 1*DIGIT [k/m/g/t]), if any.
fn size_suffix_len(uri: &str) -> Option<usize> {
    let at = uri.rfind('!')?;
    let tail = &uri[at + 1..];
    let digits = tail.strip_suffix(['k', 'm', 'g', 't', 'K', 'M', 'G', 'T']);
    let digits = digits.unwrap_or(tail);
    (!digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())).then_some(uri.len() - at)
}

/// Whether `local` is a dot-atom or a quoted string (RFC 5322, with RFC 6532 UTF-8).
fn is_local_part(local: &str) -> bool {
    if local.is_empty() || local.len() > MAX_LOCAL_LEN {
        return false;
    }
    if let Some(inner) = local
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .filter(|_| local.len() >= 2)
    {
        let mut escaped = false;
        for c in inner.chars() {
            if c.is_control() {
                return false;
            }
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => return false,
                _ => {}
            }
        }
        return !escaped;
    }
    !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| {
            c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) || !c.is_ascii()
        })
}

/// The parse of one record.
struct Parser<'a> {
    record: &'a str,
    /// The record is ASCII: a byte offset is a character column.
    ascii: bool,
    /// The last byte offset turned into a column, and its column.
    last_col: Cell<(usize, usize)>,
    profile: Profile,
    warnings: Vec<TlsRptWarning>,
    rua: Vec<ReportUri>,
    rua_fields: usize,
    uri_count: usize,
    /// The first URI of an unsupported scheme: its column and scheme.
    skipped: Option<(usize, String)>,
}

impl<'a> Parser<'a> {
    /// The 1-based character column where `at` (a slice of the record) begins.
    fn col(&self, at: &str) -> usize {
        let off = (at.as_ptr() as usize).wrapping_sub(self.record.as_ptr() as usize);
        if self.ascii {
            return off + 1;
        }
        // Columns are asked for mostly in increasing order: count on from the last one.
        let (last_off, last_col) = self.last_col.get();
        let (from, base) = if off >= last_off {
            (last_off, last_col)
        } else {
            (0, 1)
        };
        let col = match self.record.get(from..off) {
            Some(between) => base + between.chars().count(),
            None => off + 1,
        };
        self.last_col.set((off, col));
        col
    }

    fn err(&self, at: &str, kind: TlsRptErrorKind) -> TlsRptError {
        TlsRptError::at(Some(self.col(at)), kind)
    }

    fn warn(&mut self, at: &str, kind: TlsRptWarningKind) {
        let column = self.col(at);
        self.warnings.push(TlsRptWarning { column, kind });
    }

    fn layout(&mut self, rest: &str, l: TlsRptLayout) -> Result<(), TlsRptError> {
        match self.profile {
            Profile::Default => {
                self.warn(rest, TlsRptWarningKind::Layout(l));
                Ok(())
            }
            Profile::Strict => Err(self.err(rest, TlsRptErrorKind::Layout(l))),
        }
    }

    /// A syntax error at `rest`, or [`TlsRptErrorKind::NonAscii`] if a non-ASCII character is
    /// what stopped the parse.
    fn syntax(&self, rest: &str, expected: &'static str) -> TlsRptError {
        match rest.chars().next() {
            Some(c) if !c.is_ascii() => self.err(rest, TlsRptErrorKind::NonAscii),
            _ => self.err(rest, TlsRptErrorKind::Syntax { expected }),
        }
    }

    fn run(mut self) -> Result<TlsRptRecord, TlsRptError> {
        let record = self.record;
        if record.len() > MAX_RECORD_LEN {
            return Err(TlsRptError::at(
                None,
                TlsRptErrorKind::TooLong {
                    max: MAX_RECORD_LEN,
                },
            ));
        }
        let mut rest = match record.strip_prefix("v=TLSRPTv1") {
            Some(r) if matches!(r.chars().next(), None | Some(' ' | '\t' | ';')) => r,
            _ => return Err(TlsRptError::at(Some(1), TlsRptErrorKind::BadVersion)),
        };
        let mut extensions = Vec::new();
        loop {
            let (after_ws, ws) = wsp(rest);
            if after_ws.is_empty() {
                if !ws.is_empty() {
                    self.layout(rest, TlsRptLayout::TrailingWhitespace)?;
                }
                break;
            }
            let Some(after_delim) = after_ws.strip_prefix(';') else {
                return Err(self.syntax(after_ws, "';'"));
            };
            let (after_ws, _) = wsp(after_delim);
            if after_ws.is_empty() {
                break; // a trailing delimiter is allowed
            }
            if after_ws.starts_with(';') {
                self.layout(after_ws, TlsRptLayout::EmptyField)?;
                rest = after_ws;
                continue;
            }
            let Ok((value, name)) = field_name(after_ws) else {
                return Err(self.syntax(after_ws, "a name=value field"));
            };
            if name.eq_ignore_ascii_case("rua") {
                if name != "rua" {
                    self.layout(after_ws, TlsRptLayout::RuaCase)?;
                }
                if self.rua_fields > 0 {
                    self.layout(after_ws, TlsRptLayout::DuplicateRua)?;
                }
                self.rua_fields += 1;
                rest = self.rua_list(after_ws, value)?;
                continue;
            }
            if name == "v" {
                return Err(self.err(after_ws, TlsRptErrorKind::DuplicateVersion));
            }
            if !is_ext_name(name) {
                let name = truncate_for_display(name, 40);
                return Err(self.err(after_ws, TlsRptErrorKind::InvalidExtensionName { name }));
            }
            let r: IResult<&str, &str> = take_while(is_value_char)(value);
            let (after_value, v) = r.unwrap_or((value, ""));
            if v.is_empty() {
                if after_value.chars().next().is_some_and(|c| !c.is_ascii()) {
                    return Err(self.err(after_value, TlsRptErrorKind::NonAscii));
                }
                let name = name.to_owned();
                return Err(self.err(after_ws, TlsRptErrorKind::EmptyExtensionValue { name }));
            }
            extensions.push(Extension::new(name, v));
            rest = after_value;
        }
        if self.rua.is_empty() {
            return Err(match self.skipped {
                Some((column, scheme)) => {
                    TlsRptError::at(Some(column), TlsRptErrorKind::UnsupportedScheme(scheme))
                }
                None => TlsRptError::at(None, TlsRptErrorKind::MissingRua),
            });
        }
        Ok(TlsRptRecord {
            rua: self.rua,
            extensions,
            warnings: self.warnings,
        })
    }

    /// The URI list after `rua=` (`field` is where the field begins); returns the rest of the
    /// record after the last URI.
    fn rua_list(&mut self, field: &'a str, value: &'a str) -> Result<&'a str, TlsRptError> {
        let (mut cur, ws) = wsp(value);
        if !ws.is_empty() {
            self.layout(value, TlsRptLayout::SpaceAfterEquals)?;
        }
        let mut found = 0usize;
        let mut after_comma = false;
        loop {
            let r: IResult<&str, &str> =
                take_while(|c: char| !matches!(c, ',' | ';' | ' ' | '\t'))(cur);
            let (after_tok, tok) = r.unwrap_or((cur, ""));
            let (after_ws, _) = wsp(after_tok);
            if tok.is_empty() {
                if after_ws.starts_with(',') || after_comma {
                    self.layout(cur, TlsRptLayout::EmptyUri)?;
                }
            } else {
                found += 1;
                self.uri_count += 1;
                if self.uri_count > MAX_URIS {
                    return Err(self.err(tok, TlsRptErrorKind::TooManyUris { max: MAX_URIS }));
                }
                self.uri(tok)?;
            }
            match after_ws.strip_prefix(',') {
                Some(next) => {
                    cur = wsp(next).0;
                    after_comma = true;
                }
                None => {
                    if found == 0 {
                        return Err(self.err(field, TlsRptErrorKind::EmptyRua));
                    }
                    return Ok(after_tok);
                }
            }
        }
    }

    /// One URI of the `rua` list (no `,`, `;` or white space in it).
    fn uri(&mut self, tok: &'a str) -> Result<(), TlsRptError> {
        let bad = |p: &Self, at: &str, problem| Err(p.err(at, TlsRptErrorKind::BadUri(problem)));
        if let Some(at) = tok.find(|c: char| !c.is_ascii()) {
            match self.profile {
                Profile::Default => {
                    self.warn(tok, TlsRptWarningKind::Layout(TlsRptLayout::NonAsciiUri))
                }
                Profile::Strict => return Err(self.err(&tok[at..], TlsRptErrorKind::NonAscii)),
            }
        }
        let mut uri = tok;
        if uri.contains('!')
            && let Some(n) = size_suffix_len(uri)
        {
            let suffix = &uri[uri.len() - n..];
            self.layout(suffix, TlsRptLayout::SizeLimit)?;
            uri = &uri[..uri.len() - n];
        }
        // Characters and escapes.
        let mut chars = uri.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '%' {
                let hex = uri.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())) {
                    return bad(self, &uri[i..], UriProblem::BadPercentEncoding);
                }
                chars.next();
                chars.next();
            } else if c.is_ascii() && !is_uri_char(c) || c == '!' {
                return bad(self, &uri[i..], UriProblem::BadCharacter(c));
            }
        }
        let scheme_len = uri
            .find(':')
            .filter(|&n| {
                let s = &uri[..n];
                s.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
                    && s.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
            })
            .ok_or_else(|| self.err(tok, TlsRptErrorKind::BadUri(UriProblem::NoScheme)))?;
        let scheme = uri[..scheme_len].to_ascii_lowercase();
        let body = &uri[scheme_len + 1..];
        // The fragment is never used.
        let body = match body.split_once('#') {
            Some((b, frag)) => {
                let ignored = truncate_for_display(frag, 40);
                let at = &body[b.len()..];
                self.warn(at, TlsRptWarningKind::FragmentDropped { ignored });
                b
            }
            None => body,
        };
        let parsed = match scheme.as_str() {
            "mailto" => self.mailto(tok, body)?,
            "https" => self.https(tok, body)?,
            _ => {
                if self.profile == Profile::Strict {
                    return Err(self.err(tok, TlsRptErrorKind::UnsupportedScheme(scheme)));
                }
                let column = self.col(tok);
                self.skipped.get_or_insert((column, scheme));
                let uri = truncate_for_display(tok, 60);
                self.warn(tok, TlsRptWarningKind::UnsupportedScheme { uri });
                return Ok(());
            }
        };
        self.rua.push(parsed);
        Ok(())
    }

    fn mailto(&mut self, tok: &'a str, body: &'a str) -> Result<ReportUri, TlsRptError> {
        let bad = |p: &Self, problem| p.err(tok, TlsRptErrorKind::BadUri(problem));
        let to = match body.split_once('?') {
            Some((to, hfields)) => {
                let ignored = truncate_for_display(hfields, 40);
                self.warn(
                    &body[to.len()..],
                    TlsRptWarningKind::HfieldsDropped { ignored },
                );
                to
            }
            None => body,
        };
        if to.is_empty() {
            return Err(bad(self, UriProblem::MissingAddress));
        }
        let address =
            percent_decode(to).ok_or_else(|| bad(self, UriProblem::BadPercentEncoding))?;
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Err(bad(self, UriProblem::MissingAt));
        };
        if domain.contains(',') || (!local.starts_with('"') && local.contains(',')) {
            return Err(bad(self, UriProblem::MultipleAddresses));
        }
        if !is_local_part(local) {
            return Err(bad(self, UriProblem::BadLocalPart));
        }
        let domain = match domain::normalise(domain) {
            Ok(n) => n.name,
            Err(NameProblem::AddressLiteral) => return Err(bad(self, UriProblem::IpLiteral)),
            Err(p) => return Err(bad(self, UriProblem::BadHost(p))),
        };
        Ok(ReportUri::Mailto(format!("{local}@{domain}")))
    }

    fn https(&mut self, tok: &'a str, body: &'a str) -> Result<ReportUri, TlsRptError> {
        let bad = |p: &Self, problem| p.err(tok, TlsRptErrorKind::BadUri(problem));
        let Some(rest) = body.strip_prefix("//") else {
            return Err(bad(self, UriProblem::MissingHost));
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad(self, UriProblem::Userinfo));
        }
        if authority.starts_with('[') {
            return Err(bad(self, UriProblem::IpLiteral));
        }
        let (host, port_text) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let port = match port_text {
            None | Some("") => 443,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()) => n,
                _ => return Err(bad(self, UriProblem::BadPort)),
            },
        };
        let host = percent_decode(host).ok_or_else(|| bad(self, UriProblem::BadPercentEncoding))?;
        if host.is_empty() {
            return Err(bad(self, UriProblem::MissingHost));
        }
        let host = match domain::normalise(&host) {
            Ok(n) => n.name.into_owned(),
            Err(NameProblem::AddressLiteral) => return Err(bad(self, UriProblem::IpLiteral)),
            Err(p) => return Err(bad(self, UriProblem::BadHost(p))),
        };
        // Raw non-ASCII (an IRI, warned about already) is sent percent-encoded.
        let path = encode_non_ascii(path);
        let url = match port_text {
            Some(p) if !p.is_empty() => format!("https://{host}:{p}{path}"),
            _ => format!("https://{host}{path}"),
        };
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        Ok(ReportUri::Https {
            url,
            host,
            port,
            path,
        })
    }
}

impl TlsRptRecord {
    /// Parses one TXT record (character-strings already joined) with the default profile.
    ///
    /// ```
    /// use mta_sts_core::tlsrpt::{ReportUri, TlsRptRecord};
    ///
    /// let r = TlsRptRecord::parse("v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt")?;
    /// let ReportUri::Https { host, port, path, .. } = &r.rua()[0] else { unreachable!() };
    /// assert_eq!((host.as_str(), *port, path.as_str()), ("reporting.example.com", 443, "/v1/tlsrpt"));
    /// # Ok::<(), mta_sts_core::tlsrpt::TlsRptError>(())
    /// ```
    pub fn parse(record: &str) -> Result<Self, TlsRptError> {
        Self::parse_with(record, Profile::Default)
    }

    /// Parses one TXT record with the strict profile (every deviation from the ABNF and every
    /// URI that is not `mailto:` or `https:` is an error).
    pub fn parse_strict(record: &str) -> Result<Self, TlsRptError> {
        Self::parse_with(record, Profile::Strict)
    }

    /// Parses one TXT record given as bytes with the chosen profile.
    pub fn parse_bytes(record: &[u8], profile: Profile) -> Result<Self, TlsRptError> {
        match std::str::from_utf8(record) {
            Ok(s) => Self::parse_with(s, profile),
            Err(e) => {
                let valid = &record[..e.valid_up_to()];
                let column = std::str::from_utf8(valid).map_or(1, |s| s.chars().count() + 1);
                Err(TlsRptError::at(Some(column), TlsRptErrorKind::NonAscii))
            }
        }
    }

    /// Parses one TXT record with the chosen profile.
    pub fn parse_with(record: &str, profile: Profile) -> Result<Self, TlsRptError> {
        Parser {
            record,
            ascii: record.is_ascii(),
            last_col: Cell::new((0, 1)),
            profile,
            warnings: Vec::new(),
            rua: Vec::new(),
            rua_fields: 0,
            uri_count: 0,
            skipped: None,
        }
        .run()
    }

    /// Whether a TXT record (its character-strings joined) is a TLSRPT candidate, the records
    /// [`discover`](Self::discover) keeps (RFC 8460 §3): it begins with exactly `v=TLSRPTv1`,
    /// then optional spaces or tabs, then `;`.
    ///
    /// ```
    /// use mta_sts_core::tlsrpt::TlsRptRecord;
    /// assert!(TlsRptRecord::is_candidate(b"v=TLSRPTv1; rua=mailto:r@example.com"));
    /// assert!(!TlsRptRecord::is_candidate(b"v=TLSRPTv10; rua=mailto:r@example.com"));
    /// assert!(!TlsRptRecord::is_candidate(b"v=spf1 -all"));
    /// ```
    pub fn is_candidate(record: &[u8]) -> bool {
        is_candidate(record)
    }

    /// Selects and parses the TLSRPT record of a TXT answer with the default profile (RFC 8460
    /// §3): records that do not begin with `v=TLSRPTv1;` are discarded; if the number left is
    /// not exactly one, or that one is invalid, the domain does not implement TLSRPT. Each item
    /// is one record with its character-strings already joined without separator.
    pub fn discover<I, R>(records: I) -> Result<Self, TlsRptError>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[u8]>,
    {
        Self::discover_with(records, Profile::Default)
    }

    /// [`TlsRptRecord::discover`] with the strict profile.
    pub fn discover_strict<I, R>(records: I) -> Result<Self, TlsRptError>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[u8]>,
    {
        Self::discover_with(records, Profile::Strict)
    }

    /// [`TlsRptRecord::discover`] with the chosen profile.
    pub fn discover_with<I, R>(records: I, profile: Profile) -> Result<Self, TlsRptError>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[u8]>,
    {
        let (found, count) = crate::txt::select_candidate(records, is_candidate);
        match (found, count) {
            (Some(r), 1) => Self::parse_bytes(r.as_ref(), profile),
            (None, _) => Err(TlsRptError::at(None, TlsRptErrorKind::NoRecord)),
            (Some(_), count) => Err(TlsRptError::at(
                None,
                TlsRptErrorKind::MultipleRecords(count),
            )),
        }
    }

    /// Where to send aggregate reports, in the order given: at least one.
    pub fn rua(&self) -> &[ReportUri] {
        &self.rua
    }

    /// Unknown fields, in the order given (RFC 8460 §3: ignored).
    pub fn extensions(&self) -> &[Extension] {
        &self.extensions
    }

    /// What was forgiven or dropped while parsing.
    pub fn warnings(&self) -> &[TlsRptWarning] {
        &self.warnings
    }
}
