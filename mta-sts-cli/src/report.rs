//! Output shared by `check`, `query` and `demo`: status words with colour on a terminal only,
//! progress on a terminal only, and the engine's outcomes in words.

use std::fmt;
use std::io::{IsTerminal, Write};

use mta_sts_core::Outcome;

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
        Outcome::TemporaryFailure(_) | Outcome::StoreUnavailable(_) => "temporary-failure",
        Outcome::Internal(_) => "internal-error",
        _ => "no-policy",
    }
}

/// Why the engine reached this outcome, in one sentence, shown beside [`outcome_kind`]: the
/// outcome's own text (its `Display`) for a policy, the reason's for no policy, and which lookup
/// failed for a temporary failure.
pub(crate) fn outcome_reason(outcome: &Outcome) -> String {
    match outcome {
        Outcome::NoPolicy(reason) => reason.to_string(),
        Outcome::TemporaryFailure(e) => format!("the TXT lookup failed: {e}"),
        _ => outcome.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use mta_sts_core::io::{DnsFailure, FetchFailure};
    use mta_sts_core::{
        CacheReason, CachedPolicy, Config, FetchProblem, NoPolicyReason, PolicyCache, Snapshot,
        SnapshotEntry, TxtProblem, UnixTime,
    };

    use super::*;

    fn cached(id: &str, now: UnixTime) -> CachedPolicy {
        let body = "version: STSv1\r\nmode: enforce\r\nmx: mx.example\r\nmax_age: 86400\r\n";
        let entry = SnapshotEntry::new("example.com", id, now, now, body);
        let mut cache = PolicyCache::new(Config::default());
        cache.import(Snapshot::new(vec![entry]), now).unwrap();
        cache.peek("example.com").unwrap().clone()
    }

    /// The texts of `query`, `check` and `demo` (the README quotes some): the core's, without
    /// its lead for no policy; which lookup failed for a temporary failure.
    #[test]
    fn outcome_reasons_as_printed() {
        let now = UnixTime::from_secs(1_767_225_600);
        let p = cached("20260102", now);
        let http_503 = || FetchProblem::Fetch(FetchFailure::Status(503));
        let cases = [
            (Outcome::Fetched(p), "policy fetched (TXT id 20260102)"),
            (
                Outcome::NoPolicy(NoPolicyReason::NoRecord(TxtProblem::NxDomain)),
                "no _mta-sts record (NXDOMAIN)",
            ),
            (
                Outcome::NoPolicy(NoPolicyReason::FetchFailed(http_503())),
                "the TXT record announces a policy but the fetch failed: policy host answered \
                 HTTP 503, not 200; senders deliver as though the domain had none",
            ),
            (
                Outcome::TemporaryFailure(DnsFailure::Timeout),
                "the TXT lookup failed: DNS lookup timed out",
            ),
        ];
        for (outcome, text) in cases {
            assert_eq!(outcome_reason(&outcome), text);
        }
    }

    /// Retry times read as they did when this module wrote them with humantime.
    #[test]
    fn retry_times_in_rfc_3339_as_before() {
        let now = UnixTime::from_secs(1_767_225_600);
        let p = cached("20260102", now);
        let times = (0..2_000u64).map(|i| i * 126_230_401 + i % 86_400);
        for retry_at in times.map(UnixTime::from_secs) {
            let when = humantime::format_rfc3339_seconds(retry_at.into());
            let reason = CacheReason::RetryLater { retry_at };
            let outcome = Outcome::Cached {
                policy: p.clone(),
                reason,
            };
            assert_eq!(
                outcome_reason(&outcome),
                format!(
                    "cached policy (TXT id 20260102) applied: the new policy failed recently \
                     and is not fetched again before {when}"
                )
            );
            let outcome = Outcome::NoPolicy(NoPolicyReason::RetryLater { retry_at });
            assert_eq!(
                outcome_reason(&outcome),
                format!("the policy fetch failed recently and is not tried again before {when}")
            );
        }
    }
}
