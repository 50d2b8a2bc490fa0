//! Output shared by `check`, `query` and `demo`: status words with colour on a terminal only,
//! progress on a terminal only, and the engine's outcomes in words.

use std::fmt;
use std::io::{IsTerminal, Write};

use mta_sts_core::{CacheReason, NoPolicyReason, Outcome};

/// The status of one line of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// The check passed.
    Pass,
    /// Not a failure, but worth a look (e.g. mode testing).
    Warn,
    /// A problem: the command exits 1.
    Fail,
    /// A fact, no verdict.
    Info,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
            Self::Info => "info",
        }
    }

    /// The ANSI colour code of the word.
    fn colour(self) -> &'static str {
        match self {
            Self::Pass => "32",
            Self::Warn => "33",
            Self::Fail => "1;31",
            Self::Info => "2",
        }
    }
}

/// How to write to standard output: with colour only on a terminal (and never with `NO_COLOR`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    colour: bool,
}

impl Style {
    pub(crate) fn stdout() -> Self {
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            colour: std::io::stdout().is_terminal() && !no_colour,
        }
    }

    /// The status word, padded to 4 columns, coloured on a terminal.
    pub(crate) fn status(self, s: Status) -> String {
        self.paint(s.colour(), &format!("{:<4}", s.as_str()))
    }

    /// A section heading (bold on a terminal).
    pub(crate) fn heading(self, text: &str) -> String {
        self.paint("1", text)
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// One-line progress on standard error, only when it is a terminal; erased when done.
#[derive(Debug)]
pub(crate) struct Progress {
    on: bool,
}

impl Progress {
    /// Progress that shows only on a terminal, and never with `--json`.
    pub(crate) fn new(json: bool) -> Self {
        Self {
            on: !json && std::io::stderr().is_terminal(),
        }
    }

    pub(crate) fn step(&self, what: impl fmt::Display) {
        if self.on {
            let mut e = std::io::stderr();
            let _ = write!(e, "\r\x1b[K{what}…");
            let _ = e.flush();
        }
    }

    pub(crate) fn clear(&self) {
        if self.on {
            let mut e = std::io::stderr();
            let _ = write!(e, "\r\x1b[K");
            let _ = e.flush();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The outcome's kind as in `query --json`: `policy`, `no-policy` or `temporary-failure`.
pub(crate) fn outcome_kind(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Fetched(_) | Outcome::Cached { .. } => "policy",
        Outcome::TemporaryFailure(_) => "temporary-failure",
        Outcome::Internal(_) => "internal-error",
        _ => "no-policy",
    }
}

/// Why the engine reached this outcome, in one sentence.
pub(crate) fn outcome_reason(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Fetched(p) => format!("policy fetched (TXT id {})", p.id()),
        Outcome::Cached { policy, reason } => {
            let id = policy.id();
            match reason {
                CacheReason::Fresh => format!("cached policy (TXT id {id}) is still fresh"),
                CacheReason::UnchangedId => {
                    format!("TXT id {id} unchanged: the cached policy stays")
                }
                CacheReason::TxtUnusable(p) => format!(
                    "cached policy (TXT id {id}) applied: {p}, which does not evict the cache"
                ),
                CacheReason::DnsFailure(e) => {
                    format!("cached policy (TXT id {id}) applied: the TXT lookup failed: {e}")
                }
                CacheReason::FetchFailed(p) => format!(
                    "cached policy (TXT id {id}) applied: fetching the new policy failed: {p}"
                ),
                CacheReason::RetryLater { retry_at } => format!(
                    "cached policy (TXT id {id}) applied: the new policy failed recently and is \
                     not fetched again before {}",
                    humantime::format_rfc3339_seconds((*retry_at).into())
                ),
                _ => format!("cached policy (TXT id {id}) applied"),
            }
        }
        Outcome::NoPolicy(reason) => match reason {
            NoPolicyReason::Disabled => "MTA-STS is disabled for this domain".to_owned(),
            NoPolicyReason::AddressLiteral => "an address literal has no policy".to_owned(),
            NoPolicyReason::InvalidDomain(e) => e.to_string(),
            NoPolicyReason::NoRecord(p) => p.to_string(),
            NoPolicyReason::FetchFailed(p) => format!(
                "the TXT record announces a policy but the fetch failed: {p}; senders deliver as \
                 though the domain had none"
            ),
            NoPolicyReason::RetryLater { retry_at } => format!(
                "the policy fetch failed recently and is not tried again before {}",
                humantime::format_rfc3339_seconds((*retry_at).into())
            ),
            _ => "no policy".to_owned(),
        },
        Outcome::TemporaryFailure(e) => format!("the TXT lookup failed: {e}"),
        Outcome::Internal(e) => format!("internal error (a bug, please report it): {e}"),
        _ => "unknown outcome".to_owned(),
    }
}
