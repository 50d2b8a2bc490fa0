//! `mta-sts report [--json] FILE...`: the TLSRPT reports (RFC 8460) a domain received, read by
//! the core's reader ([`read_report`]: `.json`, `.json.gz`, or a whole mail with the report
//! attached) and summarised per policy domain, with a rollout verdict for a domain whose
//! MTA-STS policy is in mode `testing`.
//!
//! A file that cannot be read, and every warning of the reader, is a problem listed beside the
//! summary; nothing is refused for a warning. A report read twice (the same `organization-name`
//! and `report-id`, e.g. the mail and its attachment saved apart) is counted once. Exit status:
//! 0 when at least one report was read, 1 when none could be.
//!
//! `mta-sts report build` ([`crate::tlsrpt_build`]) writes reports; this module reads them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use mta_sts_core::UnixTime;
use mta_sts_core::tlsrpt::{
    PolicyReport, PolicyType, ReadLimits, Report, format_datetime, parse_datetime, read_report,
};
use serde_json::{Value, json};

use crate::report::{Status, Style};
use crate::tlsrpt_build::BuildArgs;

/// The most distinct failure rows kept over all domains; the failures beyond are counted in the
/// totals only, and a problem says so.
const MAX_FAILURE_ROWS: usize = 100_000;

/// `mta-sts report` arguments: the files to read, or `build`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct ReportArgs {
    #[command(subcommand)]
    command: Option<ReportCommand>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The received reports: `.json`, `.json.gz`, or whole mails (`.eml`) with the report
    /// attached; the format is told from the content.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Build one UTC day's reports from JSON lines of delivery attempts (one per line), with
    /// the library's aggregator: one `.json.gz` per policy domain, named as RFC 8460 §5.1 says.
    Build(BuildArgs),
}

pub(crate) fn run(args: ReportArgs) -> Result<ExitCode, String> {
    if let Some(ReportCommand::Build(build)) = args.command {
        return crate::tlsrpt_build::run(&build);
    }
    let summary = summarise(&args.files, &ReadLimits::default());
    if args.json {
        println!("{}", summary.to_json());
    } else {
        summary.print(Style::stdout());
    }
    Ok(if summary.reports == 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What is wrong with one file: it could not be read, the reader warned, or it repeats a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The file, as given (`None` for a problem of the summary itself).
    file: Option<String>,
    kind: ProblemKind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProblemKind {
    /// Not read at all.
    Unreadable,
    /// Read, with something RFC 8460 asks for done wrong.
    Warning,
    /// The same report as an earlier file: not counted again.
    Duplicate,
    /// A cap of the summary was reached.
    Limit,
}

impl ProblemKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable",
            Self::Warning => "warning",
            Self::Duplicate => "duplicate",
            Self::Limit => "limit",
        }
    }
}

/// One failure row: failures grouped by what the reports say of them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FailureKey {
    result_type: String,
    /// `receiving-mx-hostname`, else `receiving-ip`.
    receiving_mx: Option<String>,
    sending_mta_ip: Option<String>,
    /// `failure-reason-code`.
    reason: Option<String>,
}

/// What stands in the way of `enforce`: one result type at one MX.
#[derive(Debug, Default)]
struct Blocker {
    count: u64,
    organizations: BTreeSet<String>,
}

/// The reports of one policy domain and policy type, added up.
#[derive(Debug, Default)]
struct DomainSummary {
    successful: u64,
    failed: u64,
    failures: BTreeMap<FailureKey, u64>,
    blockers: BTreeMap<(String, Option<String>), Blocker>,
    /// Indexes of the reports that cover the domain.
    reports: BTreeSet<usize>,
    organizations: BTreeSet<String>,
    /// The first day covered.
    since: Option<UnixTime>,
    /// The mode of the policy in the latest report (by its start), if it says one.
    latest: Option<(Option<UnixTime>, Option<String>)>,
}

/// Everything `mta-sts report` prints.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    reports: usize,
    organizations: BTreeSet<String>,
    domains: BTreeMap<(String, String), DomainSummary>,
    problems: Vec<Problem>,
    rows: usize,
    rows_dropped: u64,
}

/// Reads every file and adds up what it reports.
pub(crate) fn summarise(files: &[PathBuf], limits: &ReadLimits) -> Summary {
    let mut summary = Summary::default();
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    for path in files {
        let file = path.display().to_string();
        let read = read_file(path, limits.max_input)
            .and_then(|bytes| read_report(&bytes, limits).map_err(|e| e.to_string()));
        let read = match read {
            Ok(r) => r,
            Err(message) => {
                summary.problem(Some(&file), ProblemKind::Unreadable, message);
                continue;
            }
        };
        for w in &read.warnings {
            summary.problem(Some(&file), ProblemKind::Warning, w.to_string());
        }
        let report = read.report;
        if !report.report_id.is_empty() {
            let key = (report.organization_name.clone(), report.report_id.clone());
            if let Some(first) = seen.get(&key) {
                summary.problem(
                    Some(&file),
                    ProblemKind::Duplicate,
                    format!(
                        "the same report as {first} (organization-name {:?}, report-id {:?}): \
                         counted once",
                        report.organization_name, report.report_id
                    ),
                );
                continue;
            }
            seen.insert(key, file.clone());
        }
        summary.add(&report);
    }
    if summary.rows_dropped > 0 {
        summary.problem(
            None,
            ProblemKind::Limit,
            format!(
                "more than {MAX_FAILURE_ROWS} distinct failure rows: {} failed sessions are \
                 counted in the totals only",
                summary.rows_dropped
            ),
        );
    }
    summary
}

/// The file's bytes, at most `max + 1` of them (the reader refuses more than `max`).
fn read_file(path: &Path, max: usize) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    let cap = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(bytes)
}

/// The name a report's author goes by: `organization-name`, else `contact-info`.
fn organization(report: &Report) -> String {
    let name = report.organization_name.trim();
    if !name.is_empty() {
        return name.to_owned();
    }
    let contact = report.contact_info.trim();
    if contact.is_empty() {
        "(unnamed)".to_owned()
    } else {
        contact.to_owned()
    }
}

/// The `mode:` of an MTA-STS policy as the report quotes it in `policy-string`.
fn policy_mode(policy: &PolicyReport) -> Option<String> {
    policy.policy.policy_string.iter().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "mode").then(|| value.trim().to_owned())
    })
}

fn day(t: UnixTime) -> String {
    let s = format_datetime(t);
    s.get(..10).map_or_else(|| s.clone(), str::to_owned)
}

impl Summary {
    fn problem(&mut self, file: Option<&str>, kind: ProblemKind, message: String) {
        self.problems.push(Problem {
            file: file.map(str::to_owned),
            kind,
            message,
        });
    }

    fn add(&mut self, report: &Report) {
        let index = self.reports;
        self.reports += 1;
        let org = organization(report);
        self.organizations.insert(org.clone());
        let start = parse_datetime(&report.date_range.start_datetime);
        for p in &report.policies {
            let domain = p
                .policy
                .policy_domain
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let key = (domain, p.policy.policy_type.trim().to_owned());
            let d = self.domains.entry(key).or_default();
            d.successful = d
                .successful
                .saturating_add(p.summary.total_successful_session_count);
            d.failed = d
                .failed
                .saturating_add(p.summary.total_failure_session_count);
            d.reports.insert(index);
            d.organizations.insert(org.clone());
            if let Some(t) = start {
                d.since = Some(d.since.map_or(t, |s| s.min(t)));
            }
            let newer = match &d.latest {
                None => true,
                Some((at, _)) => start >= *at,
            };
            if newer {
                d.latest = Some((start, policy_mode(p)));
            }
            for f in &p.failure_details {
                let key = FailureKey {
                    result_type: f.result_type.trim().to_owned(),
                    receiving_mx: f
                        .receiving_mx_hostname
                        .clone()
                        .filter(|s| !s.trim().is_empty())
                        .or_else(|| f.receiving_ip.clone().filter(|s| !s.trim().is_empty())),
                    sending_mta_ip: f.sending_mta_ip.clone().filter(|s| !s.trim().is_empty()),
                    reason: f
                        .failure_reason_code
                        .clone()
                        .filter(|s| !s.trim().is_empty()),
                };
                let blocker = d
                    .blockers
                    .entry((key.result_type.clone(), key.receiving_mx.clone()))
                    .or_default();
                blocker.count = blocker.count.saturating_add(f.failed_session_count);
                blocker.organizations.insert(org.clone());
                if let Some(n) = d.failures.get_mut(&key) {
                    *n = n.saturating_add(f.failed_session_count);
                } else if self.rows < MAX_FAILURE_ROWS {
                    self.rows += 1;
                    d.failures.insert(key, f.failed_session_count);
                } else {
                    self.rows_dropped = self.rows_dropped.saturating_add(f.failed_session_count);
                }
            }
        }
    }

    fn to_json(&self) -> Value {
        let domains: Vec<Value> = self
            .domains
            .iter()
            .map(|((domain, policy_type), d)| {
                let failures: Vec<Value> = d
                    .failures
                    .iter()
                    .map(|(k, count)| {
                        json!({
                            "result_type": k.result_type,
                            "receiving_mx": k.receiving_mx,
                            "sending_mta_ip": k.sending_mta_ip,
                            "count": count,
                            "reason": k.reason,
                        })
                    })
                    .collect();
                json!({
                    "domain": domain,
                    "policy_type": policy_type,
                    "successful": d.successful,
                    "failed": d.failed,
                    "failures": failures,
                    "verdict": verdict(policy_type, d).to_json(),
                })
            })
            .collect();
        let problems: Vec<Value> = self
            .problems
            .iter()
            .map(|p| json!({"file": p.file, "kind": p.kind.as_str(), "message": p.message}))
            .collect();
        json!({
            "reports": self.reports,
            "organizations": self.organizations,
            "domains": domains,
            "problems": problems,
        })
    }

    fn print(&self, style: Style) {
        let orgs: Vec<&str> = self.organizations.iter().map(String::as_str).collect();
        println!(
            "TLSRPT: {} report(s) read from {} organization(s){}",
            self.reports,
            orgs.len(),
            if orgs.is_empty() {
                String::new()
            } else {
                format!(" ({})", orgs.join(", "))
            }
        );
        if !self.problems.is_empty() {
            println!();
            println!("{}", style.heading("Problems"));
            for p in &self.problems {
                let status = match p.kind {
                    ProblemKind::Unreadable => Status::Fail,
                    ProblemKind::Warning | ProblemKind::Limit => Status::Warn,
                    ProblemKind::Duplicate => Status::Info,
                };
                let file = p
                    .file
                    .as_deref()
                    .map_or_else(String::new, |f| format!("{f}: "));
                println!("  {} {file}{}", style.status(status), p.message);
            }
        }
        for ((domain, policy_type), d) in &self.domains {
            let v = verdict(policy_type, d);
            println!();
            let mode = v
                .mode
                .as_deref()
                .map_or_else(String::new, |m| format!(", mode {m}"));
            let domain = if domain.is_empty() {
                "(no policy-domain)"
            } else {
                domain
            };
            let policy_type = if policy_type.is_empty() {
                "no policy-type"
            } else {
                policy_type
            };
            println!(
                "{}",
                style.heading(&format!("{domain} ({policy_type}{mode})"))
            );
            println!(
                "  reports   {} from {}{}",
                d.reports.len(),
                d.organizations
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                d.since
                    .map_or_else(String::new, |t| format!(", since {}", day(t)))
            );
            println!(
                "  sessions  {} successful, {} failed",
                d.successful, d.failed
            );
            for (k, count) in &d.failures {
                let mut line = format!("  failure   {count} × {}", k.result_type);
                if let Some(mx) = &k.receiving_mx {
                    line.push_str(&format!(" at {mx}"));
                }
                if let Some(ip) = &k.sending_mta_ip {
                    line.push_str(&format!(" from {ip}"));
                }
                if let Some(reason) = &k.reason {
                    line.push_str(&format!(" ({reason})"));
                }
                println!("{line}");
            }
            let status = match v.status {
                VerdictStatus::Ready => Status::Pass,
                VerdictStatus::Blocked => Status::Warn,
                _ => Status::Info,
            };
            println!("  {} {}", style.status(status), v.text);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VerdictStatus {
    /// Mode testing (or unknown), failures none: `enforce` is safe as far as reports tell.
    Ready,
    /// Mode testing (or unknown), with failures: they would be refused under `enforce`.
    Blocked,
    /// No session reported at all.
    NoSessions,
    /// Mode enforce already.
    Enforce,
    /// Anything else: mode none, DANE, no policy found.
    NotApplicable,
}

impl VerdictStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Blocked => "blocked",
            Self::NoSessions => "no-sessions",
            Self::Enforce => "enforce",
            Self::NotApplicable => "not-applicable",
        }
    }
}

/// The rollout verdict of one domain and policy type.
#[derive(Debug)]
struct Verdict {
    status: VerdictStatus,
    mode: Option<String>,
    text: String,
    reports: usize,
    organizations: Vec<String>,
    since: Option<String>,
    /// Result type, MX, sessions and organisations of each failure row.
    blockers: Vec<Value>,
}

impl Verdict {
    fn to_json(&self) -> Value {
        json!({
            "status": self.status.as_str(),
            "mode": self.mode,
            "text": self.text,
            "reports": self.reports,
            "organizations": self.organizations,
            "since": self.since,
            "blockers": self.blockers,
        })
    }
}

fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "No failures in N reports from M organizations since DATE", or what stands in the way.
fn verdict(policy_type: &str, d: &DomainSummary) -> Verdict {
    let mode = d.latest.as_ref().and_then(|(_, m)| m.clone());
    let organizations: Vec<String> = d.organizations.iter().cloned().collect();
    let since = d.since.map(day);
    let evidence = format!(
        "{} from {}{}",
        plural(d.reports.len() as u64, "report", "reports"),
        plural(organizations.len() as u64, "organization", "organizations"),
        since
            .as_deref()
            .map_or_else(String::new, |s| format!(" since {s}"))
    );
    let blockers: Vec<Value> = d
        .blockers
        .iter()
        .map(|((result_type, mx), b)| {
            json!({
                "result_type": result_type,
                "receiving_mx": mx,
                "count": b.count,
                "organizations": b.organizations,
            })
        })
        .collect();
    let blocker_text = || {
        let mut parts: Vec<String> = d
            .blockers
            .iter()
            .map(|((result_type, mx), b)| {
                let at = mx
                    .as_deref()
                    .map_or_else(String::new, |m| format!(" at {m}"));
                let orgs: Vec<&str> = b.organizations.iter().map(String::as_str).collect();
                format!(
                    "{result_type}{at} ({}, reported by {})",
                    plural(b.count, "session", "sessions"),
                    orgs.join(", ")
                )
            })
            .collect();
        let listed: u64 = d.blockers.values().map(|b| b.count).sum();
        if d.failed > listed {
            parts.push(format!(
                "{} without failure details",
                plural(d.failed - listed, "failed session", "failed sessions")
            ));
        }
        parts.join("; ")
    };
    let (status, text) = match (policy_type.parse::<PolicyType>(), mode.as_deref()) {
        (Ok(PolicyType::Sts), Some("testing") | None) => {
            let unknown = if mode.is_none() {
                " (the reports do not quote the policy's mode)"
            } else {
                ""
            };
            if d.successful == 0 && d.failed == 0 {
                (
                    VerdictStatus::NoSessions,
                    format!(
                        "no sessions in {evidence}: nothing to judge the rollout by yet{unknown}"
                    ),
                )
            } else if d.failed == 0 {
                (
                    VerdictStatus::Ready,
                    format!(
                        "no failures in {evidence}: ready for mode enforce as far as the reports \
                         tell{unknown}"
                    ),
                )
            } else {
                (
                    VerdictStatus::Blocked,
                    format!(
                        "not ready for mode enforce: {} of {} failed in {evidence}: {}{unknown}",
                        d.failed,
                        plural(d.failed.saturating_add(d.successful), "session", "sessions"),
                        blocker_text()
                    ),
                )
            }
        }
        (Ok(PolicyType::Sts), Some("enforce")) => (
            VerdictStatus::Enforce,
            if d.failed == 0 {
                format!("mode enforce, no failures in {evidence}")
            } else {
                format!(
                    "mode enforce: {} in {evidence}: {}",
                    plural(d.failed, "failed session", "failed sessions"),
                    blocker_text()
                )
            },
        ),
        (Ok(PolicyType::Sts), Some(m)) => (
            VerdictStatus::NotApplicable,
            format!("mode {m}: no rollout under way"),
        ),
        (Ok(PolicyType::Tlsa), _) => (
            VerdictStatus::NotApplicable,
            "DANE (TLSA): no MTA-STS rollout to judge".to_owned(),
        ),
        (Ok(PolicyType::NoPolicyFound), _) => (
            VerdictStatus::NotApplicable,
            "no policy found: these senders applied neither MTA-STS nor DANE".to_owned(),
        ),
        (Err(_), _) => (
            VerdictStatus::NotApplicable,
            format!("unknown policy type {policy_type:?}"),
        ),
    };
    Verdict {
        status,
        mode,
        text,
        reports: d.reports.len(),
        organizations,
        since,
        blockers,
    }
}
