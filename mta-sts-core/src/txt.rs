//! The `_mta-sts` TXT record (RFC 8461 §3.1): candidate selection and parsing.

use std::fmt;

use nom::bytes::complete::{tag, take_while};
use nom::character::complete::space0;
use nom::{IResult, Parser as _};

use crate::mx::truncate_for_display;
use crate::policy::{Extension, Profile};

/// The longest policy id (RFC 8461 §3.1: `1*32(ALPHA / DIGIT)`).
pub const MAX_ID_LEN: usize = 32;

/// The `id` of an `_mta-sts` TXT record, stored inline (1 to 32 ASCII letters and digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RecordId {
    len: u8,
    bytes: [u8; MAX_ID_LEN],
}

impl RecordId {
    pub(crate) fn new(s: &str) -> Option<Self> {
        if s.is_empty() || s.len() > MAX_ID_LEN || !s.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let mut bytes = [0; MAX_ID_LEN];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Self {
            len: s.len() as u8,
            bytes,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII letters and digits are ever stored, so this is always valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A valid `_mta-sts` TXT record.
///
/// ```
/// use mta_sts_core::StsRecord;
///
/// // One TXT RRset as received: each record with its character-strings joined.
/// let answer = [&b"v=spf1 -all"[..], b"v=STSv1; id=20240101T000000;"];
/// let record = StsRecord::discover(answer)?;
/// assert_eq!(record.id(), "20240101T000000");
/// # Ok::<(), mta_sts_core::TxtError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct StsRecord {
    id: RecordId,
    extensions: Vec<Extension>,
    warnings: Vec<TxtWarning>,
}

impl fmt::Debug for StsRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StsRecord")
            .field("id", &self.id())
            .field("extensions", &self.extensions)
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl fmt::Display for StsRecord {
    /// The canonical record text, e.g. `v=STSv1; id=20240101;`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v=STSv1; id={};", self.id())?;
        for e in &self.extensions {
            write!(f, " {}={};", e.name(), e.value())?;
        }
        Ok(())
    }
}

/// Where and why a TXT answer gives no policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtError {
    column: Option<usize>,
    kind: TxtErrorKind,
}

impl TxtError {
    fn at(column: Option<usize>, kind: TxtErrorKind) -> Self {
        Self { column, kind }
    }

    /// The 1-based column in the record, where it helps.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// What is wrong.
    pub fn kind(&self) -> &TxtErrorKind {
        &self.kind
    }
}

impl fmt::Display for TxtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "column {c}: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for TxtError {}

/// A layout deviation in a TXT record: a warning under [`Profile::Default`], an error under
/// [`Profile::Strict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TxtLayout {
    /// Spaces or tabs at the end of the record with no `;` after them.
    TrailingWhitespace,
    /// An empty field between delimiters (`;;` or `; ;`).
    EmptyField,
}

impl fmt::Display for TxtLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TrailingWhitespace => "trailing white space at the end of the record",
            Self::EmptyField => "empty field between ';' delimiters",
        })
    }
}

/// The kinds of [`TxtError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxtErrorKind {
    /// No record of the answer begins with `v=STSv1;`.
    NoRecord,
    /// More than one record begins with `v=STSv1;`: no policy (RFC 8461 §3.1).
    MultipleRecords {
        /// How many candidate records there are.
        count: usize,
    },
    /// The record does not begin with `v=STSv1` followed by `;` (optional spaces before it).
    NotStsRecord,
    /// A non-ASCII byte.
    NonAscii,
    /// The record does not follow `v=STSv1 1*(*WSP ";" *WSP name=value) [*WSP ";" *WSP]`.
    Syntax {
        /// What was expected at the column.
        expected: &'static str,
    },
    /// The record has no `id` field.
    MissingId,
    /// An `id` that is not 1 to 32 letters and digits.
    InvalidId {
        /// The value found (shortened if long).
        found: String,
    },
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
    Layout(TxtLayout),
}

impl fmt::Display for TxtErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRecord => f.write_str("no TXT record begins with \"v=STSv1;\""),
            Self::MultipleRecords { count } => write!(
                f,
                "{count} TXT records begin with \"v=STSv1;\"; exactly one is allowed"
            ),
            Self::NotStsRecord => f.write_str("the record does not begin with \"v=STSv1;\""),
            Self::NonAscii => f.write_str("non-ASCII character in the record"),
            Self::Syntax { expected } => write!(f, "expected {expected}"),
            Self::MissingId => f.write_str("the record has no id field"),
            Self::InvalidId { found } => {
                write!(f, "id must be 1 to 32 letters and digits; found {found:?}")
            }
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

/// Something in a TXT record that was forgiven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtWarning {
    column: usize,
    kind: TxtWarningKind,
}

impl TxtWarning {
    /// The 1-based column in the record.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What was forgiven.
    pub fn kind(&self) -> &TxtWarningKind {
        &self.kind
    }
}

impl fmt::Display for TxtWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.kind)
    }
}

/// The kinds of [`TxtWarning`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxtWarningKind {
    /// A layout deviation (an error under [`Profile::Strict`]).
    Layout(TxtLayout),
    /// A repeated `id`: ignored, the first counts.
    DuplicateId {
        /// The ignored value.
        ignored: String,
    },
}

impl fmt::Display for TxtWarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Layout(l) => write!(f, "{l} (ignored)"),
            Self::DuplicateId { ignored } => {
                write!(f, "repeated id {ignored:?} ignored; the first id counts")
            }
        }
    }
}

/// Whether a record is an STS candidate (rule T1): it begins with exactly `v=STSv1`, then optional
/// spaces or tabs, then `;`.
pub(crate) fn is_candidate(record: &[u8]) -> bool {
    match record.strip_prefix(b"v=STSv1") {
        Some(rest) => {
            let rest = rest.trim_ascii_start();
            // trim_ascii_start also removes CR/LF/FF; only SP and HTAB are allowed here.
            let skipped = &record[7..record.len() - rest.len()];
            skipped.iter().all(|&c| c == b' ' || c == b'\t') && rest.first() == Some(&b';')
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

/// `name "=" value`, with the value possibly empty (checked by the caller).
fn field(i: &str) -> IResult<&str, (&str, &str)> {
    (
        take_while(is_name_char),
        tag("="),
        take_while(is_value_char),
    )
        .map(|(name, _, value)| (name, value))
        .parse(i)
}

fn is_ext_name(name: &str) -> bool {
    name.len() <= 32
        && name
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
}

impl StsRecord {
    /// Parses one TXT record (character-strings already joined) with the default profile.
    pub fn parse(record: &str) -> Result<Self, TxtError> {
        Self::parse_with(record, Profile::Default)
    }

    /// Parses one TXT record with the strict profile (layout deviations are errors).
    pub fn parse_strict(record: &str) -> Result<Self, TxtError> {
        Self::parse_with(record, Profile::Strict)
    }

    /// Parses one TXT record given as bytes with the chosen profile.
    pub fn parse_bytes(record: &[u8], profile: Profile) -> Result<Self, TxtError> {
        match std::str::from_utf8(record) {
            Ok(s) => Self::parse_with(s, profile),
            Err(e) => Err(TxtError::at(
                Some(e.valid_up_to() + 1),
                TxtErrorKind::NonAscii,
            )),
        }
    }

    /// Parses one TXT record with the chosen profile.
    pub fn parse_with(record: &str, profile: Profile) -> Result<Self, TxtError> {
        if let Some(at) = record.bytes().position(|c| !c.is_ascii()) {
            return Err(TxtError::at(Some(at + 1), TxtErrorKind::NonAscii));
        }
        if !is_candidate(record.as_bytes()) {
            return Err(TxtError::at(Some(1), TxtErrorKind::NotStsRecord));
        }
        let col = |rest: &str| Some(record.len() - rest.len() + 1);
        let mut warnings = Vec::new();
        let layout = |warnings: &mut Vec<TxtWarning>, rest: &str, l: TxtLayout| match profile {
            Profile::Default => {
                warnings.push(TxtWarning {
                    column: record.len() - rest.len() + 1,
                    kind: TxtWarningKind::Layout(l),
                });
                Ok(())
            }
            Profile::Strict => Err(TxtError::at(col(rest), TxtErrorKind::Layout(l))),
        };
        let mut id: Option<RecordId> = None;
        let mut extensions = Vec::new();
        let mut rest = &record["v=STSv1".len()..];
        loop {
            let (after_ws, ws) = wsp(rest);
            if after_ws.is_empty() {
                if !ws.is_empty() {
                    layout(&mut warnings, rest, TxtLayout::TrailingWhitespace)?;
                }
                break;
            }
            let Some(after_delim) = after_ws.strip_prefix(';') else {
                return Err(TxtError::at(
                    col(after_ws),
                    TxtErrorKind::Syntax { expected: "';'" },
                ));
            };
            let (after_ws, _) = wsp(after_delim);
            if after_ws.is_empty() {
                break; // a trailing delimiter is allowed
            }
            if after_ws.starts_with(';') {
                layout(&mut warnings, after_ws, TxtLayout::EmptyField)?;
                rest = after_ws;
                continue;
            }
            let Ok((after_field, (name, value))) = field(after_ws) else {
                return Err(TxtError::at(
                    col(after_ws),
                    TxtErrorKind::Syntax {
                        expected: "a name=value field",
                    },
                ));
            };
            if name == "id" {
                let Some(this) = RecordId::new(value) else {
                    let found = truncate_for_display(value, 40);
                    return Err(TxtError::at(
                        col(after_ws),
                        TxtErrorKind::InvalidId { found },
                    ));
                };
                match id {
                    None => id = Some(this),
                    Some(_) => warnings.push(TxtWarning {
                        column: record.len() - after_ws.len() + 1,
                        kind: TxtWarningKind::DuplicateId {
                            ignored: value.to_owned(),
                        },
                    }),
                }
            } else if !is_ext_name(name) {
                let name = truncate_for_display(name, 40);
                return Err(TxtError::at(
                    col(after_ws),
                    TxtErrorKind::InvalidExtensionName { name },
                ));
            } else if value.is_empty() {
                let name = name.to_owned();
                return Err(TxtError::at(
                    col(after_ws),
                    TxtErrorKind::EmptyExtensionValue { name },
                ));
            } else {
                extensions.push(Extension::new(name, value));
            }
            rest = after_field;
        }
        let id = id.ok_or(TxtError::at(None, TxtErrorKind::MissingId))?;
        Ok(Self {
            id,
            extensions,
            warnings,
        })
    }

    /// Selects and parses the policy record of a TXT answer with the default profile (RFC 8461
    /// §3.1): records that do not begin with `v=STSv1;` are discarded; if the number left is not
    /// exactly one, or that one is invalid, there is no policy. Each item is one record with its
    /// character-strings already joined without separator.
    pub fn discover<I, R>(records: I) -> Result<Self, TxtError>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[u8]>,
    {
        Self::discover_with(records, Profile::Default)
    }

    /// [`StsRecord::discover`] with the strict profile.
    pub fn discover_strict<I, R>(records: I) -> Result<Self, TxtError>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[u8]>,
    {
        Self::discover_with(records, Profile::Strict)
    }

    /// [`StsRecord::discover`] with the chosen profile.
    pub fn discover_with<I, R>(records: I, profile: Profile) -> Result<Self, TxtError>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[u8]>,
    {
        let (found, count) = select_candidate(records, is_candidate);
        match (found, count) {
            (Some(r), 1) => Self::parse_bytes(r.as_ref(), profile),
            (None, _) => Err(TxtError::at(None, TxtErrorKind::NoRecord)),
            (Some(_), count) => Err(TxtError::at(None, TxtErrorKind::MultipleRecords { count })),
        }
    }

    /// The policy id: compare it only for equality (RFC 8461 §3.1, "no implied ordering").
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    /// The id in its compact inline form.
    pub(crate) fn record_id(&self) -> RecordId {
        self.id
    }

    /// Unknown fields, in the order given.
    pub fn extensions(&self) -> &[Extension] {
        &self.extensions
    }

    /// What was forgiven while parsing.
    pub fn warnings(&self) -> &[TxtWarning] {
        &self.warnings
    }
}

fn wsp(i: &str) -> (&str, &str) {
    let r: IResult<&str, &str> = space0(i);
    r.unwrap_or((i, ""))
}

/// The first of `records` that `is_candidate` keeps, and how many it keeps: the selection of
/// RFC 8461 §3.1 and RFC 8460 §3 (exactly one candidate record, or none is used).
pub(crate) fn select_candidate<I, R>(
    records: I,
    is_candidate: fn(&[u8]) -> bool,
) -> (Option<R>, usize)
where
    I: IntoIterator<Item = R>,
    R: AsRef<[u8]>,
{
    let mut found = None;
    let mut count = 0usize;
    for r in records {
        if is_candidate(r.as_ref()) {
            count += 1;
            if found.is_none() {
                found = Some(r);
            }
        }
    }
    (found, count)
}
