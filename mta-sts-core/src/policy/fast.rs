//! The fast path of the policy parser: one pass over the usual well-formed policy.
//!
//! It accepts only a policy that the full parser ([`super::PolicyParser`]) accepts without a
//! warning, under either profile: every line `key:` from the first column with a key the RFC
//! defines (each of `version`, `mode` and `max_age` once), LF or CRLF line ends, `mx` values
//! already normalised (lowercase LDH labels, no root dot, no repeats). It builds the same policy.
//! On anything else it gives up (`None`), and the full parser, which has the errors, warnings
//! and their positions, reads the body from the start.

use super::{MAX_AGE_LIMIT, Mode, Policy, parse_max_age};
use crate::domain::ldh_prefix;
use crate::mx::MxPattern;

/// Parses `body` if it is a policy of the usual form; `None` for anything else.
pub(super) fn parse(body: &str) -> Option<Policy> {
    let b = body.as_bytes();
    let mut version = false;
    let mut mode = None;
    let mut max_age = None;
    let mut mx = Spans::new();
    let mut i = 0;
    while let Some(line) = b.get(i..).filter(|l| !l.is_empty()) {
        i = match line {
            [b'm', b'x', b':', ..] => {
                let value = skip_wsp(b, i + 3);
                let wildcard = b.get(value..value + 2) == Some(b"*.");
                let name = if wildcard { value + 2 } else { value };
                let (len, upper) = ldh_prefix(b.get(name..)?)?;
                let end = name + len;
                // Upper case is lowercased, a name ending in a digit may be an IPv4 address:
                // both are left to the full parser.
                if upper || (!wildcard && b.get(end - 1).is_none_or(u8::is_ascii_digit)) {
                    return None;
                }
                // A repeated pattern is a warning.
                if !mx.push(b, value, end) {
                    return None;
                }
                end_of_line(b, end)?
            }
            [b'v', b'e', b'r', b's', b'i', b'o', b'n', b':', ..] if !version => {
                version = true;
                let value = skip_wsp(b, i + 8);
                if b.get(value..value + 5) != Some(b"STSv1") {
                    return None;
                }
                end_of_line(b, value + 5)?
            }
            [b'm', b'o', b'd', b'e', b':', ..] if mode.is_none() => {
                let value = skip_wsp(b, i + 5);
                let m = match b.get(value) {
                    Some(b'e') => Mode::Enforce,
                    Some(b't') => Mode::Testing,
                    _ => Mode::None,
                };
                let end = value + m.as_str().len();
                if b.get(value..end) != Some(m.as_str().as_bytes()) {
                    return None;
                }
                mode = Some(m);
                end_of_line(b, end)?
            }
            [b'm', b'a', b'x', b'_', b'a', b'g', b'e', b':', ..] if max_age.is_none() => {
                let value = skip_wsp(b, i + 8);
                let end = value
                    + b.get(value..)?
                        .iter()
                        .take_while(|c| c.is_ascii_digit())
                        .count();
                // `1*10DIGIT` as the full parser reads it; a larger value is clamped, with a
                // warning.
                let seconds = parse_max_age(body.get(value..end)?)
                    .and_then(|s| u32::try_from(s).ok())
                    .filter(|&s| s <= MAX_AGE_LIMIT)?;
                max_age = Some(seconds);
                end_of_line(b, end)?
            }
            _ => return None,
        };
    }
    let (mode, max_age) = (mode?, max_age?);
    if !version || (mode != Mode::None && mx.len == 0) {
        return None;
    }
    Some(Policy {
        mode,
        max_age,
        mx: mx.patterns(body)?,
        extra: None,
    })
}

/// The first byte at or after `i` that is not a space or a tab.
fn skip_wsp(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

/// After a value ending before `i`: spaces and tabs, then LF, CRLF or the end of the body. The
/// start of the next line, or `None` when something else follows (a bare CR, even the body's
/// last byte, is an error the full parser reports).
fn end_of_line(b: &[u8], i: usize) -> Option<usize> {
    let i = skip_wsp(b, i);
    match b.get(i..) {
        Some([]) => Some(i),
        Some([b'\n', ..]) => Some(i + 1),
        Some([b'\r', b'\n', ..]) => Some(i + 2),
        _ => None,
    }
}

/// The most `mx` values kept on the stack; more go to a vector.
const HEAD: usize = 8;

/// Where the `mx` values are in the body (`[start, end)`), in order, without repeats.
struct Spans {
    head: [(usize, usize); HEAD],
    len: usize,
    tail: Vec<(usize, usize)>,
}

impl Spans {
    fn new() -> Self {
        Self {
            head: [(0, 0); HEAD],
            len: 0,
            tail: Vec::new(),
        }
    }

    fn head(&self) -> &[(usize, usize)] {
        &self.head[..self.len.min(HEAD)]
    }

    /// Adds `b[start..end]`; false when the same text is already there.
    fn push(&mut self, b: &[u8], start: usize, end: usize) -> bool {
        let text = &b[start..end];
        let same = |&(s, e): &(usize, usize)| e - s == text.len() && b[s..e] == *text;
        if self.head().iter().any(same) || self.tail.iter().any(same) {
            return false;
        }
        match self.head.get_mut(self.len) {
            Some(slot) => *slot = (start, end),
            None => self.tail.push((start, end)),
        }
        self.len += 1;
        true
    }

    /// The patterns, in one allocation of their size.
    fn patterns(&self, body: &str) -> Option<Box<[MxPattern]>> {
        let mut all = Vec::with_capacity(self.len);
        for &(s, e) in self.head().iter().chain(&self.tail) {
            all.push(MxPattern::from_normalised(body.get(s..e)?));
        }
        Some(all.into_boxed_slice())
    }
}
