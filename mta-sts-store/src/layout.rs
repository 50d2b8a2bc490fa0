//! postfix-mta-sts-resolver's JSON form of a policy, as its SQLite (`pol_body`), PostgreSQL
//! (`pol_body`) and Redis (the sorted-set member after 16 random bytes) caches keep it.
//!
//! The peer parses a policy file into a Python dict (`utils.parse_mta_sts_policy`, then
//! `resolver.py` turns `max_age` into an integer) and stores it with Python's default
//! `json.dumps`: `mx` first (a list in file order, `*.` kept, `[]` when there is none), then
//! every other key as a string in file order, `max_age` the only integer; `", "` and `": "`
//! separators; everything outside printable ASCII escaped as `\uXXXX` (lowercase hex, UTF-16
//! surrogate pairs beyond the BMP). [`policy_to_json`] writes exactly that, byte for byte, so
//! both daemons can share one database.
//!
//! Reading is the other way round and every byte is hostile: [`policy_from_json`] bounds the
//! size, checks every type and key, rebuilds the RFC 8461 policy text and has the core parse it,
//! so what comes back is a valid policy in canonical form or a typed [`LayoutError`], never a
//! panic or a policy the peer did not store.
//!
//! ```
//! use mta_sts_store::layout::{policy_from_json, policy_to_json};
//!
//! let text = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n";
//! let json = policy_to_json(text)?;
//! assert_eq!(
//!     json,
//!     r#"{"mx": ["mail.example.com", "*.example.net"], "version": "STSv1", "mode": "enforce", "max_age": 604800}"#
//! );
//! assert_eq!(policy_from_json(&json)?, text);
//! # Ok::<(), mta_sts_store::layout::LayoutError>(())
//! ```

use std::collections::HashSet;
use std::fmt;

use mta_sts_core::{Policy, PolicyError};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The largest JSON text read (bytes). The peer fetches at most 64 KiB of policy and its
/// escaping at most triples it (a 4-byte UTF-8 character becomes a 12-byte surrogate pair).
pub const MAX_JSON_LEN: usize = 192 * 1024;

/// Why a policy or an entry could not be put into or read from the peer's JSON form.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutError {
    /// The JSON text is longer than [`MAX_JSON_LEN`].
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// Not JSON (truncated, malformed, nested too deep).
    Syntax {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the JSON parser said.
        detail: String,
    },
    /// A value of the wrong JSON type.
    WrongType {
        /// Where: `policy`, `policy.mode`, `policy.mx[2]`, `entry[0]`…
        path: String,
        /// What was expected there.
        expected: &'static str,
    },
    /// A required key of the policy object is missing.
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A key appears twice in the policy object.
    DuplicateKey {
        /// The key (shortened if long).
        key: String,
    },
    /// A key or value no policy file line can hold (a line break, a `:` in a key, `max_age` out
    /// of range).
    BadValue {
        /// Where: `policy.max_age`, `policy["x-key"]`…
        path: String,
    },
    /// The policy (the text given, or the one rebuilt from the JSON) is not a valid RFC 8461
    /// policy.
    Policy(PolicyError),
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len } => write!(
                f,
                "the JSON text has {len} bytes, more than the limit of {MAX_JSON_LEN}"
            ),
            Self::Syntax {
                line,
                column,
                detail,
            } => write!(f, "line {line}, column {column}: not JSON: {detail}"),
            Self::WrongType { path, expected } => write!(f, "{path}: expected {expected}"),
            Self::MissingKey { key } => write!(f, "policy: no {key:?} key"),
            Self::DuplicateKey { key } => write!(f, "policy: key {key:?} appears twice"),
            Self::BadValue { path } => write!(
                f,
                "{path}: a value no policy line can hold (line break, ':' in a key, or out of range)"
            ),
            Self::Policy(e) => write!(f, "not a valid policy: {e}"),
        }
    }
}

impl std::error::Error for LayoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Policy(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PolicyError> for LayoutError {
    fn from(e: PolicyError) -> Self {
        Self::Policy(e)
    }
}

/// The peer's JSON form of a policy ([module docs](self)).
///
/// The policy is parsed by the core first (an invalid policy is [`LayoutError::Policy`]); the
/// values written are the core's normalised ones (lowercase `mx` patterns without duplicates,
/// `max_age` clamped), the key order is the file's.
pub fn policy_to_json(policy_text: &str) -> Result<String, LayoutError> {
    let policy = Policy::parse(policy_text)?;
    let mut out = String::with_capacity(policy_text.len() + 32);
    write_policy(&mut out, &policy, policy_text);
    Ok(out)
}

/// The RFC 8461 policy text (canonical: CRLF, version, mode, mx, max_age, extensions) of the
/// peer's JSON form of a policy ([module docs](self)).
///
/// Keys the peer makes of lines that are no field (an empty key from a blank line, a key starting
/// with `#` from a comment line) are skipped, as the core's parser forgives those lines.
pub fn policy_from_json(json: &str) -> Result<String, LayoutError> {
    let value = parse_json(json)?;
    policy_text_of(value, "policy")
}

/// The peer's JSON form of a cache entry: `[policy_id, policy]`, with the policy as
/// [`policy_to_json`] writes it (the Redis member after its 16 random bytes).
///
/// ```
/// use mta_sts_store::layout::{entry_from_json, entry_to_json};
///
/// let text = "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n";
/// let json = entry_to_json("20240101", text)?;
/// assert_eq!(json, r#"["20240101", {"mx": [], "version": "STSv1", "mode": "none", "max_age": 86400}]"#);
/// assert_eq!(entry_from_json(&json)?, ("20240101".to_string(), text.to_string()));
/// # Ok::<(), mta_sts_store::layout::LayoutError>(())
/// ```
pub fn entry_to_json(id: &str, policy_text: &str) -> Result<String, LayoutError> {
    let policy = Policy::parse(policy_text)?;
    let mut out = String::with_capacity(policy_text.len() + id.len() + 40);
    out.push('[');
    write_str(&mut out, id);
    out.push_str(", ");
    write_policy(&mut out, &policy, policy_text);
    out.push(']');
    Ok(out)
}

/// The policy id and RFC 8461 policy text of the peer's `[policy_id, policy]` JSON
/// ([`entry_to_json`]), checked as [`policy_from_json`] checks a policy.
pub fn entry_from_json(json: &str) -> Result<(String, String), LayoutError> {
    let Json::Arr(items) = parse_json(json)? else {
        return Err(wrong("entry", "a list [policy_id, policy]"));
    };
    let [id, policy]: [Json; 2] = items
        .try_into()
        .map_err(|_| wrong("entry", "a list of two items [policy_id, policy]"))?;
    let Json::Str(id) = id else {
        return Err(wrong("entry[0]", "a string (the policy id)"));
    };
    if id.contains(['\r', '\n']) {
        return Err(LayoutError::BadValue {
            path: "entry[0]".into(),
        });
    }
    Ok((id, policy_text_of(policy, "entry[1]")?))
}

// ---- writing -------------------------------------------------------------------------------

fn write_policy(out: &mut String, policy: &Policy, text: &str) {
    out.push_str("{\"mx\": [");
    for (i, mx) in policy.mx().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str(out, mx.as_str());
    }
    out.push(']');
    for key in key_order(policy, text) {
        out.push_str(", ");
        write_str(out, key);
        out.push_str(": ");
        match key {
            "version" => write_str(out, "STSv1"),
            "mode" => write_str(out, policy.mode().as_str()),
            "max_age" => out.push_str(&policy.max_age().to_string()),
            name => {
                // As the peer's dict: the position of the first line, the value of the last.
                let value = policy
                    .extensions()
                    .iter()
                    .rev()
                    .find(|e| e.name() == name)
                    .map_or("", |e| e.value());
                write_str(out, value);
            }
        }
    }
    out.push('}');
}

/// The keys other than `mx`, each once, in the order of their first line in `text`; any the
/// scan did not see (it should see all) after them in canonical order.
fn key_order<'p>(policy: &'p Policy, text: &str) -> Vec<&'p str> {
    let mut known: Vec<&'p str> = vec!["version", "mode", "max_age"];
    for e in policy.extensions() {
        if !known.contains(&e.name()) {
            known.push(e.name());
        }
    }
    let mut order = Vec::with_capacity(known.len());
    for line in text.trim_start_matches('\u{feff}').lines() {
        let Some((key, _)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        if let Some(k) = known.iter().find(|k| **k == key)
            && !order.contains(k)
        {
            order.push(*k);
        }
    }
    for k in known {
        if !order.contains(&k) {
            order.push(k);
        }
    }
    order
}

/// A JSON string as Python's `json.dumps` writes it (`ensure_ascii`): `\"`, `\\`, `\n`, `\r`,
/// `\t`, `\b`, `\f`, every other character outside ' '..='~' as `\uXXXX` in lowercase hex.
fn write_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

// ---- reading -------------------------------------------------------------------------------

/// A JSON value with objects in document order (serde_json's `Value` sorts them).
enum Json {
    Null,
    Bool,
    Int(u64),
    OtherNumber,
    Str(String),
    Arr(Vec<Self>),
    Obj(Vec<(String, Self)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Bool)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Int(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(u64::try_from(v).map_or(Json::OtherNumber, Json::Int))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Json, E> {
        Ok(Json::OtherNumber)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            entries.push((k, v));
        }
        Ok(Json::Obj(entries))
    }
}

fn parse_json(json: &str) -> Result<Json, LayoutError> {
    if json.len() > MAX_JSON_LEN {
        return Err(LayoutError::TooLarge { len: json.len() });
    }
    // serde_json bounds the nesting depth (128) itself.
    serde_json::from_str(json).map_err(|e| LayoutError::Syntax {
        line: e.line(),
        column: e.column(),
        detail: e.to_string(),
    })
}

fn wrong(path: impl Into<String>, expected: &'static str) -> LayoutError {
    LayoutError::WrongType {
        path: path.into(),
        expected,
    }
}

fn short(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn policy_text_of(value: Json, path: &str) -> Result<String, LayoutError> {
    let Json::Obj(entries) = value else {
        return Err(wrong(path, "an object (the policy)"));
    };
    let mut mx: Option<Vec<String>> = None;
    let mut version = None;
    let mut mode = None;
    let mut max_age = None;
    let mut extensions: Vec<(String, String)> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::with_capacity(entries.len());
    for (key, value) in &entries {
        if !seen.insert(key) {
            return Err(LayoutError::DuplicateKey { key: short(key) });
        }
        let at = || format!("{path}[{:?}]", short(key));
        match (key.as_str(), value) {
            ("mx", Json::Arr(items)) => {
                let mut list = Vec::with_capacity(items.len());
                for (n, item) in items.iter().enumerate() {
                    let Json::Str(s) = item else {
                        return Err(wrong(format!("{path}.mx[{n}]"), "a string"));
                    };
                    if s.contains(['\r', '\n']) {
                        return Err(LayoutError::BadValue {
                            path: format!("{path}.mx[{n}]"),
                        });
                    }
                    list.push(s.clone());
                }
                mx = Some(list);
            }
            ("mx", _) => return Err(wrong(format!("{path}.mx"), "a list of strings")),
            ("max_age", Json::Int(n)) => {
                max_age = Some(u32::try_from(*n).map_err(|_| LayoutError::BadValue {
                    path: format!("{path}.max_age"),
                })?);
            }
            ("max_age", _) => {
                return Err(wrong(format!("{path}.max_age"), "an integer"));
            }
            (_, Json::Str(s)) if s.contains(['\r', '\n']) => {
                return Err(LayoutError::BadValue { path: at() });
            }
            ("version", Json::Str(s)) => version = Some(s.as_str()),
            ("mode", Json::Str(s)) => mode = Some(s.as_str()),
            // Lines that are no field, as the peer's parser keeps them: a blank line, a comment.
            ("", Json::Str(_)) => {}
            (k, Json::Str(_)) if k.starts_with('#') => {}
            (k, Json::Str(_)) if k.contains([':', '\r', '\n']) => {
                return Err(LayoutError::BadValue { path: at() });
            }
            (k, Json::Str(s)) => extensions.push((k.to_owned(), s.clone())),
            (_, _) => return Err(wrong(at(), "a string")),
        }
    }
    let mx = mx.ok_or(LayoutError::MissingKey { key: "mx" })?;
    let version = version.ok_or(LayoutError::MissingKey { key: "version" })?;
    let mode = mode.ok_or(LayoutError::MissingKey { key: "mode" })?;
    let max_age = max_age.ok_or(LayoutError::MissingKey { key: "max_age" })?;
    let mut text = format!("version: {version}\r\nmode: {mode}\r\n");
    for m in &mx {
        text.push_str("mx: ");
        text.push_str(m);
        text.push_str("\r\n");
    }
    text.push_str(&format!("max_age: {max_age}\r\n"));
    for (k, v) in &extensions {
        text.push_str(k);
        text.push_str(": ");
        text.push_str(v);
        text.push_str("\r\n");
    }
    // The core decides what the rebuilt text means; its canonical form is what comes back.
    Ok(Policy::parse(&text)?.to_string())
}
