//! `mta-sts check <domain>`: everything an operator checks by hand with dig, curl and openssl
//! s_client, in one report with a line per check and the fix when one is obvious.
//!
//! The core decides every verdict: the engine ([`PolicyCache`], [`Lookup`]) is driven with the
//! raw answers this command obtains itself, so "what a sender decides" is exactly what the
//! library decides; the TXT records are judged by [`StsRecord::discover_with`], the policy by
//! [`Policy::lint`] (strict profile), the HTTP head by [`PolicyFetch::check_head`], each MX by
//! [`Policy::check_mx`] / [`PolicyCache::evaluate`], certificates by webpki (as the adapters).
//! What the engine does not keep (the records seen, status, headers, certificates, the SMTP
//! dialogue) is collected here with the core's wire codecs and rustls.
//!
//! The DANE state (RFC 7672 §2.2) is the client's ([`mta_sts_blocking::Client::dane`], with DANE
//! on, through the same resolvers): the DNSSEC-validated MX, address and TLSA records, a line per
//! MX host with its coverage, and which mechanism decides ([`crate::query::precedence_text`],
//! shared with `query`). DANE lines never fail the check (exit 1 stays for MTA-STS problems): an
//! absent state is a fact, an indeterminate one a warning (the failing answer may come from the
//! resolver on this side as well as from the domain's zone), unusable TLSA records a warning.
//!
//! The TLSRPT record (RFC 8460 §3, `_smtp._tls.<domain>`) is checked beside the MTA-STS ones
//! ([`crate::tlsrpt_check`]): its absence is a warning, a record senders ignore a failure.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Args;
use mta_sts_core::io::{
    ContentTypeCheck, FetchFailure, FetchResult, Io, PolicyFetch, TxtAnswer, TxtResult,
};
use mta_sts_core::wire::dns::{DnsAnswer, MxAnswer, QueryType};
use mta_sts_core::{
    Begin, Config, DaneConfig, DaneHost, DaneState, Evaluation, HostCoverage, IoResult, Lookup,
    Mode, MxDecision, NoPolicyReason, Outcome, Policy, PolicyCache, PolicyDomain, PolicyReport,
    Precedence, Profile, Step, StsRecord, TxtErrorKind, UnixTime, Verdict,
};
use serde_json::{Value, json};

use crate::net::{self, NetArgs};
use crate::probe::{self, Probe, ProbeResult};
use crate::query;
use crate::report::{self, Progress, Status, Style};
use crate::tls::{CertInfo, Tls};
use crate::tlsrpt_check::{self, TlsRptCheck};
use mta_sts_blocking::{BlockingRuntime, StubResolver, block_on};
use mta_sts_net::FetchTrace;

/// Below this many days before expiry, a certificate gets a warning.
const RENEW_DAYS: i64 = 14;
/// Below this `max_age` (one day), a warning: RFC 8461 §3.2 recommends weeks.
const SHORT_MAX_AGE: u32 = 86_400;

/// `mta-sts check` arguments.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The policy domain, e.g. example.com (the part after @ of the recipients).
    domain: String,
    /// Check these MX hosts (repeat, in priority order) instead of the domain's MX records.
    #[arg(long = "mx", value_name = "HOST")]
    mx: Vec<String>,
    /// Do not connect to the MX hosts (no STARTTLS probe on port 25).
    #[arg(long)]
    no_tls_probe: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Do not look up the DANE state (DNSSEC-validated MX, address and TLSA records).
    #[arg(long)]
    no_dane: bool,
    #[command(flatten)]
    net: NetArgs,
}

/// One line of the report.
#[derive(Debug, Clone)]
struct Line {
    section: &'static str,
    status: Status,
    message: String,
    fix: Option<String>,
}

/// What the policy fetch saw.
#[derive(Debug, Default)]
struct FetchSeen {
    url: String,
    addr: Option<SocketAddr>,
    tls_version: Option<String>,
    cert: Option<CertInfo>,
    cert_problem: Option<String>,
    status: Option<u16>,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
}

/// One MX host under check.
#[derive(Debug)]
struct MxSeen {
    preference: Option<u16>,
    host: String,
    probe: Option<Probe>,
}

/// Everything the check collected.
#[derive(Debug)]
struct Check {
    domain: PolicyDomain,
    txt: Option<TxtResult>,
    fetch: Option<(FetchSeen, FetchResult)>,
    /// The fetch was made for diagnosis only: the engine did not ask for it.
    fetch_diagnostic: bool,
    outcome: Outcome,
    lint: Option<PolicyReport>,
    mx_lookup: Option<Result<MxAnswer, String>>,
    mx: Vec<MxSeen>,
    evaluation: Evaluation,
    /// The DANE state of the domain; `None` with `--no-dane`.
    dane: Option<DaneState>,
    /// The MX hosts were given with `--mx` (DANE still looks at the domain's own MX records).
    mx_given: bool,
    /// The `_smtp._tls` record and its `rua` URIs.
    tlsrpt: TlsRptCheck,
    lines: Vec<Line>,
}

pub(crate) fn run(args: CheckArgs) -> Result<ExitCode, String> {
    let domain = PolicyDomain::parse(&args.domain).map_err(|e| {
        format!(
            "{:?} is not a policy domain ({e}): give a domain name such as example.com",
            args.domain
        )
    })?;
    for host in &args.mx {
        if host.parse::<std::net::IpAddr>().is_ok() || host.trim().is_empty() {
            return Err(format!(
                "--mx {host:?}: give an MX host name, not an address"
            ));
        }
    }
    let resolvers = args.net.resolvers()?;
    args.net.trust_anchors()?;
    let tls = Tls::new(args.net.root_store()?)?;
    let dane = if args.no_dane {
        None
    } else {
        Some(dane_client(&args.net, &resolvers)?)
    };
    let progress = Progress::new(args.json);
    let check = collect(&args, &domain, &resolvers, &tls, dane.as_ref(), &progress);
    progress.clear();
    let healthy = !check.lines.iter().any(|l| l.status == Status::Fail);
    if args.json {
        println!("{}", to_json(&check, healthy));
    } else {
        print_text(&check, healthy, Style::stdout());
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The client that decides the DANE state: DANE on, the command's resolvers, each DNSSEC query
/// within the step timeout.
fn dane_client(
    net: &NetArgs,
    resolvers: &[SocketAddr],
) -> Result<mta_sts_blocking::Client, String> {
    let mut dane = DaneConfig::default();
    dane.dns_timeout = net.step_timeout();
    mta_sts_blocking::Client::builder()
        .resolvers(resolvers.iter().copied())
        .dane(true)
        .dane_config(dane)
        .build()
        .map_err(|e| e.to_string())
}

/// Drives the engine with real answers, then looks at the MX hosts and the DANE state.
fn collect(
    args: &CheckArgs,
    domain: &PolicyDomain,
    resolvers: &[SocketAddr],
    tls: &Tls,
    dane_client: Option<&mta_sts_blocking::Client>,
    progress: &Progress,
) -> Check {
    let step = args.net.step_timeout();
    let mut config = Config::default();
    config.https_port = args.net.https_port;
    config.dns_timeout = step;
    config.fetch_timeout = step;
    let mut cache = PolicyCache::new(config.clone());
    let now = || UnixTime::from(SystemTime::now());
    let mut txt = None;
    let mut fetch = None;
    let outcome = match cache.begin(domain.as_str(), now()) {
        Begin::Started(lookup) => drive(
            &mut cache, *lookup, resolvers, tls, progress, &mut txt, &mut fetch,
        ),
        Begin::Ready(o) => o,
        // A fresh cache has nothing under way.
        _ => Outcome::NoPolicy(NoPolicyReason::Disabled),
    };
    // Without a usable TXT record the engine fetches nothing; look at the policy host anyway, to
    // tell "nothing set up" from "the TXT record is missing".
    let fetch_diagnostic = fetch.is_none();
    if fetch.is_none() {
        let mut f = PolicyFetch::new(domain.policy_host());
        f.port = config.https_port;
        f.timeout = config.fetch_timeout;
        f.max_body = config.max_body;
        progress.step(format!("fetching {}", f.url()));
        fetch = Some(fetch_policy(resolvers, tls, &f));
    }
    let lint = fetch
        .as_ref()
        .and_then(|(seen, _)| seen.body.as_deref())
        .map(|body| Policy::lint(body, Profile::Strict));

    let (mx_lookup, mx) = if args.mx.is_empty() {
        progress.step(format!("looking up the MX records of {domain}"));
        let answer = net::lookup(resolvers, domain.as_str(), QueryType::Mx, step)
            .and_then(DnsAnswer::into_mx)
            .map_err(|e| e.to_string());
        let hosts: Vec<MxSeen> = match &answer {
            Ok(MxAnswer::Records(r)) if !r.is_empty() => r
                .iter()
                .map(|(p, h)| MxSeen {
                    preference: Some(*p),
                    host: h.clone(),
                    probe: None,
                })
                .collect(),
            // No MX record: the domain itself is the implicit MX (RFC 5321 §5.1, R33).
            Ok(_) => vec![MxSeen {
                preference: None,
                host: domain.as_str().to_owned(),
                probe: None,
            }],
            Err(_) => Vec::new(),
        };
        (Some(answer), hosts)
    } else {
        let hosts = args
            .mx
            .iter()
            .map(|h| MxSeen {
                preference: None,
                host: h.trim_end_matches('.').to_owned(),
                probe: None,
            })
            .collect();
        (None, hosts)
    };
    let evaluation = cache.evaluate(
        domain.as_str(),
        &outcome,
        mx.iter().map(|m| m.host.as_str()),
    );
    let dane = dane_client.and_then(|c| {
        progress.step(format!(
            "looking up the DANE state of {domain} (DNSSEC: MX, A/AAAA, TLSA)"
        ));
        c.dane(domain.as_str())
    });
    let mut check = Check {
        domain: domain.clone(),
        txt,
        fetch,
        fetch_diagnostic,
        outcome,
        lint,
        mx_lookup,
        mx,
        evaluation,
        dane,
        mx_given: !args.mx.is_empty(),
        tlsrpt: TlsRptCheck::default(),
        lines: Vec::new(),
    };
    progress.step(format!(
        "looking up the TLSRPT record of {domain} (_smtp._tls, RFC 8460)"
    ));
    let testing = effective_policy(&check).is_some_and(|p| p.mode() == Mode::Testing);
    check.tlsrpt = tlsrpt_check::check(domain, resolvers, step, testing);
    if !args.no_tls_probe {
        for m in &mut check.mx {
            if m.host == "." {
                continue;
            }
            progress.step(format!("probing {}:{}", m.host, args.net.smtp_port));
            m.probe = Some(probe::probe(
                resolvers,
                tls,
                &m.host,
                args.net.smtp_port,
                step,
            ));
        }
    }
    check.lines = judge(&check, args.no_tls_probe);
    check
}

/// Runs one lookup of the engine, answering its requests with real I/O and keeping what was
/// seen.
fn drive(
    cache: &mut PolicyCache,
    mut lookup: Lookup,
    resolvers: &[SocketAddr],
    tls: &Tls,
    progress: &Progress,
    txt: &mut Option<TxtResult>,
    fetch: &mut Option<(FetchSeen, FetchResult)>,
) -> Outcome {
    // A lookup makes at most two requests (a TXT query, then a fetch), and every result moves
    // it on: the loop ends by construction (the core's `lookup` fuzz target checks it).
    loop {
        let result = match lookup.poll() {
            Step::Done(resolution) => {
                return cache.apply(resolution, UnixTime::from(SystemTime::now()));
            }
            Step::Io(Io::Txt(q)) => {
                progress.step(format!("looking up the TXT records of {}", q.name));
                let r = net::lookup(resolvers, &q.name, QueryType::Txt, q.timeout)
                    .and_then(DnsAnswer::into_txt);
                *txt = Some(r.clone());
                IoResult::Txt(r)
            }
            Step::Io(Io::Fetch(f)) => {
                progress.step(format!("fetching {}", f.url()));
                let (seen, r) = fetch_policy(resolvers, tls, &f);
                *fetch = Some((seen, r.clone()));
                IoResult::Fetch(r)
            }
        };
        if let Err(e) = lookup.handle(result, UnixTime::from(SystemTime::now())) {
            // Cannot happen: every result answers its request. A bug, reported as one.
            return Outcome::Internal(e);
        }
    }
}

/// The HTTPS GET of the policy, as the adapters make it, keeping the details. The response is
/// read with a lenient Content-Type check so that the body can be linted whatever its type; the
/// verdict is the request's own [`PolicyFetch::check_head`].
fn fetch_policy(
    resolvers: &[SocketAddr],
    tls: &Tls,
    fetch: &PolicyFetch,
) -> (FetchSeen, FetchResult) {
    let mut seen = FetchSeen {
        url: fetch.url(),
        ..FetchSeen::default()
    };
    let result = fetch_into(resolvers, tls, fetch, &mut seen);
    (seen, result)
}

fn fetch_into(
    resolvers: &[SocketAddr],
    tls: &Tls,
    fetch: &PolicyFetch,
    seen: &mut FetchSeen,
) -> FetchResult {
    // The fetch of the clients (the blocking runtime's), with a verifier that keeps the
    // certificate it is shown, read whatever the Content-Type so that the body can be linted.
    let (config, recording) = tls
        .config(&[b"http/1.1"])
        .map_err(|e| FetchFailure::Tls(e.to_string()))?;
    let mut lenient = fetch.clone();
    lenient.content_type = ContentTypeCheck::Lenient;
    let resolver = StubResolver::new(BlockingRuntime, resolvers.to_vec());
    let mut trace = FetchTrace::default();
    let fetched = block_on(mta_sts_net::fetch_policy_traced(
        &BlockingRuntime,
        &resolver,
        &config,
        &lenient,
        &mut trace,
    ));
    seen.addr = trace.addr;
    seen.tls_version = trace.tls_version.map(crate::tls::version_name);
    seen.cert = recording.certificate();
    match fetched {
        Ok(response) => {
            seen.status = Some(response.status);
            seen.content_type.clone_from(&response.content_type);
            seen.body = Some(response.body.clone());
            fetch
                .check_head(response.status, response.content_type.as_deref())
                .map(|()| response)
        }
        Err(e) => {
            if let FetchFailure::Status(s) | FetchFailure::Redirect(s) = e {
                seen.status = Some(s);
            }
            // Connected, but no TLS session: the handshake failed; say why, for operators.
            if seen.addr.is_some() && seen.tls_version.is_none() {
                let host = &fetch.host;
                seen.cert_problem = Some(crate::tls::explain(&e, &e, host, seen.cert.as_ref()));
            }
            Err(e)
        }
    }
}

/// The policy senders apply (the engine's), or else the published one as the default profile
/// reads it (when the TXT record is missing, to still check the MX hosts against it).
fn effective_policy(check: &Check) -> Option<Policy> {
    if let Some(p) = check.outcome.policy() {
        return Some(p.policy().clone());
    }
    let body = check.fetch.as_ref()?.0.body.as_deref()?;
    Policy::parse_bytes(body, Profile::Default).ok()
}

/// Every line of the report, from what was collected.
fn judge(check: &Check, no_probe: bool) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut add = |section, status, message: String, fix: Option<String>| {
        lines.push(Line {
            section,
            status,
            message,
            fix,
        });
    };
    let d = check.domain.as_str();
    let txt_name = check.domain.txt_name();
    let policy_url = check.fetch.as_ref().map_or_else(
        || format!("https://mta-sts.{d}/.well-known/mta-sts.txt"),
        |f| f.0.url.clone(),
    );

    // ----- TXT -----
    let published_ok = check.fetch.as_ref().is_some_and(|(_, r)| r.is_ok());
    let mut txt_id = None;
    match &check.txt {
        None => {}
        Some(Err(e)) => add(
            "txt",
            Status::Fail,
            format!("TXT lookup of {txt_name} failed: {e}"),
            Some("check the domain's DNS servers (or the server given with --resolver)".into()),
        ),
        Some(Ok(TxtAnswer::Records(records))) => {
            for r in records {
                add(
                    "txt",
                    Status::Info,
                    format!("TXT {txt_name}: {:?}", String::from_utf8_lossy(r)),
                    None,
                );
            }
            match StsRecord::discover_with(records, Profile::Strict) {
                Ok(rec) => {
                    txt_id = Some(rec.id().to_owned());
                    add(
                        "txt",
                        Status::Pass,
                        format!("one valid STS record, id {}", rec.id()),
                        None,
                    );
                    for w in rec.warnings() {
                        add("txt", Status::Warn, format!("TXT record: {w}"), None);
                    }
                }
                Err(e) => {
                    let senders_accept = StsRecord::discover_with(records, Profile::Default).ok();
                    let fix = match e.kind() {
                        TxtErrorKind::MultipleRecords { count } => format!(
                            "keep exactly one record beginning with \"v=STSv1;\" at {txt_name}: \
                             with {count}, senders ignore them all"
                        ),
                        TxtErrorKind::NoRecord => format!(
                            "publish \"v=STSv1; id=<1 to 32 letters and digits>;\" at {txt_name}"
                        ),
                        _ => format!(
                            "publish exactly \"v=STSv1; id=<1 to 32 letters and digits>;\" at \
                             {txt_name}"
                        ),
                    };
                    let note = match &senders_accept {
                        Some(r) => {
                            txt_id = Some(r.id().to_owned());
                            format!(" (senders still accept it, id {})", r.id())
                        }
                        None => " (senders see no policy)".to_owned(),
                    };
                    add(
                        "txt",
                        Status::Fail,
                        format!("TXT record: {e}{note}"),
                        Some(fix),
                    );
                }
            }
        }
        Some(Ok(_)) => {
            let fix = if published_ok {
                format!(
                    "publish \"v=STSv1; id=<id>;\" at {txt_name}: a policy is served at {policy_url} \
                     but senders never fetch it without the TXT record"
                )
            } else {
                "MTA-STS is not set up: publish a policy and its TXT record (`mta-sts generate` \
                 prints both)"
                    .to_owned()
            };
            add(
                "txt",
                Status::Fail,
                format!("no TXT record at {txt_name}"),
                Some(fix),
            );
        }
    }

    // ----- policy fetch -----
    if let Some((seen, result)) = &check.fetch {
        let host = format!("mta-sts.{d}");
        let announced = txt_id.is_some();
        if let Some(addr) = seen.addr {
            add(
                "fetch",
                Status::Info,
                format!(
                    "{} via {addr}{}",
                    seen.url,
                    seen.tls_version
                        .as_ref()
                        .map_or_else(String::new, |v| format!(", {v}"))
                ),
                None,
            );
        }
        if let Some(cert) = &seen.cert {
            let status = if seen.cert_problem.is_some() {
                Status::Info
            } else {
                Status::Pass
            };
            add(
                "fetch",
                status,
                format!("certificate: {}", cert.summary()),
                None,
            );
            if seen.cert_problem.is_none() && cert.days_left() < RENEW_DAYS {
                add(
                    "fetch",
                    Status::Warn,
                    format!(
                        "the certificate of {host} expires in {} days",
                        cert.days_left()
                    ),
                    Some(format!("renew the certificate of {host}")),
                );
            }
        }
        let fail = |problem: &FetchFailure| -> (String, String) {
            let publish = if announced {
                format!(
                    "publish the policy at {}, or remove the TXT record at {txt_name} if MTA-STS \
                     is not wanted",
                    seen.url
                )
            } else {
                format!("publish the policy at {}", seen.url)
            };
            match problem {
                FetchFailure::Resolve(e) => (
                    format!("the policy host does not resolve: {e}"),
                    format!("add an A or AAAA record for {host}"),
                ),
                FetchFailure::Connect(e) => (
                    format!("cannot connect to the policy host: {e}"),
                    format!("serve HTTPS on {host} port 443"),
                ),
                FetchFailure::Certificate(_) | FetchFailure::Tls(_) => (
                    seen.cert_problem
                        .clone()
                        .unwrap_or_else(|| problem.to_string()),
                    format!(
                        "install a certificate for {host} from a public CA (its subjectAltName \
                         must name {host}; TLS 1.2 or newer)"
                    ),
                ),
                FetchFailure::Status(s) => (
                    if announced {
                        format!(
                            "the TXT record announces a policy but {} answers HTTP {s}",
                            seen.url
                        )
                    } else {
                        format!("{} answers HTTP {s}, not 200", seen.url)
                    },
                    publish,
                ),
                FetchFailure::Redirect(s) => (
                    format!(
                        "{} answers {s}, a redirect: senders never follow redirects",
                        seen.url
                    ),
                    format!("serve the policy itself at {}", seen.url),
                ),
                FetchFailure::ContentType(ct) => (
                    match ct {
                        Some(ct) => format!("the policy is served as {ct:?}, not text/plain"),
                        None => "the policy is served without a Content-Type".to_owned(),
                    },
                    "serve /.well-known/mta-sts.txt with Content-Type: text/plain".into(),
                ),
                FetchFailure::BodyTooLarge { limit } => (
                    problem.to_string(),
                    format!("keep the policy under {limit} bytes"),
                ),
                other => (
                    other.to_string(),
                    format!("make {} answer 200 with the policy", seen.url),
                ),
            }
        };
        match result {
            Ok(r) => add(
                "fetch",
                Status::Pass,
                format!(
                    "HTTP {}, Content-Type {}, {} bytes",
                    r.status,
                    r.content_type.as_deref().unwrap_or("(none)"),
                    r.body.len()
                ),
                None,
            ),
            // Nothing published and no TXT record: one failure (the TXT one) says it all.
            Err(FetchFailure::Status(404)) if check.fetch_diagnostic && !announced => add(
                "fetch",
                Status::Info,
                format!("no policy at {} (HTTP 404)", seen.url),
                None,
            ),
            Err(problem) => {
                let (message, fix) = fail(problem);
                let status = if check.fetch_diagnostic && !announced {
                    Status::Info
                } else {
                    Status::Fail
                };
                add("fetch", status, message, Some(fix));
            }
        }
    }

    // ----- policy -----
    if let Some(report) = &check.lint {
        let senders_accept = effective_policy(check).is_some();
        match &report.policy {
            Some(p) => {
                let mx: Vec<&str> = p.mx().iter().map(|m| m.as_str()).collect();
                add(
                    "policy",
                    Status::Pass,
                    format!(
                        "policy valid (strict profile): mode {}, max_age {} s, mx [{}]",
                        p.mode(),
                        p.max_age(),
                        mx.join(", ")
                    ),
                    None,
                );
            }
            None => add(
                "policy",
                Status::Fail,
                format!(
                    "policy invalid (strict profile): {} error(s){}",
                    report.errors.len(),
                    if senders_accept {
                        "; this library's senders still accept it, stricter ones may not"
                    } else {
                        "; senders ignore it"
                    }
                ),
                Some(
                    "correct the lines below, then publish a new TXT id so that senders refetch"
                        .into(),
                ),
            ),
        }
        for e in &report.errors {
            add("policy", Status::Fail, format!("policy {e}"), None);
        }
        for w in &report.warnings {
            add("policy", Status::Warn, format!("policy {w}"), None);
        }
    }
    let policy = effective_policy(check);
    if let Some(p) = &policy {
        match p.mode() {
            Mode::Testing => add(
                "policy",
                Status::Warn,
                "mode testing: senders report TLS failures but still deliver without TLS".into(),
                Some("switch to mode enforce once the TLS reports are clean (and publish a new TXT id)".into()),
            ),
            Mode::None => add(
                "policy",
                Status::Warn,
                "mode none: the policy is being withdrawn, senders apply no MTA-STS".into(),
                None,
            ),
            _ => {}
        }
        if p.max_age() < SHORT_MAX_AGE {
            add(
                "policy",
                Status::Warn,
                format!(
                    "max_age {} s is under a day; RFC 8461 recommends weeks",
                    p.max_age()
                ),
                Some("raise max_age (e.g. 604800, a week) once the policy is stable".into()),
            );
        }
    }

    // ----- MX records -----
    match &check.mx_lookup {
        Some(Err(e)) => add(
            "mx",
            Status::Fail,
            format!("MX lookup of {d} failed: {e}"),
            Some("check the domain's DNS servers".into()),
        ),
        Some(Ok(MxAnswer::Records(r))) if !r.is_empty() => {}
        Some(Ok(_)) => add(
            "mx",
            Status::Info,
            format!("{d} has no MX record: its implicit MX is {d} itself (RFC 5321 §5.1)"),
            None,
        ),
        None => add("mx", Status::Info, "MX hosts given with --mx".into(), None),
    }
    for m in &check.mx {
        let pref = m.preference.map_or_else(String::new, |p| format!("{p} "));
        if m.host == "." {
            add(
                "mx",
                Status::Warn,
                format!("MX {pref}. (null MX, RFC 7505): {d} accepts no mail"),
                None,
            );
            continue;
        }
        match &policy {
            Some(p) => match p.mx().iter().find(|pat| pat.matches(&m.host)) {
                Some(pat) => add(
                    "mx",
                    Status::Pass,
                    format!("MX {pref}{} matches mx: {pat}", m.host),
                    None,
                ),
                None if p.mode() == Mode::None => add(
                    "mx",
                    Status::Info,
                    format!("MX {pref}{} (mode none: nothing to match)", m.host),
                    None,
                ),
                None => add(
                    "mx",
                    Status::Fail,
                    format!("MX {pref}{} matches no mx pattern of the policy", m.host),
                    Some(format!(
                        "add \"mx: {}\" (or a wildcard such as \"mx: *.{}\") to the policy and \
                         publish a new TXT id",
                        m.host,
                        m.host
                            .split_once('.')
                            .map_or(m.host.as_str(), |(_, rest)| rest)
                    )),
                ),
            },
            None => add("mx", Status::Info, format!("MX {pref}{}", m.host), None),
        }
    }
    if let Some(p) = &policy {
        for pat in p.mx() {
            if !check.mx.iter().any(|m| pat.matches(&m.host)) && !check.mx.is_empty() {
                add(
                    "mx",
                    Status::Info,
                    format!("pattern mx: {pat} matches none of these MX hosts"),
                    None,
                );
            }
        }
    }

    // ----- STARTTLS -----
    for m in &check.mx {
        let Some(probe) = &m.probe else { continue };
        let at = probe
            .addr
            .map_or_else(|| m.host.clone(), |a| format!("{} ({a})", m.host));
        let cert_fix = format!(
            "install a certificate for {} from a public CA on the MX (its subjectAltName must name \
             {})",
            m.host, m.host
        );
        match &probe.result {
            ProbeResult::Valid { version, cert } => {
                let cert_text = cert
                    .as_ref()
                    .map_or_else(String::new, |c| format!("; certificate {}", c.summary()));
                add(
                    "starttls",
                    Status::Pass,
                    format!("{at}: STARTTLS, {version}, certificate valid for {}{cert_text}", m.host),
                    None,
                );
                if let Some(c) = cert
                    && c.days_left() < RENEW_DAYS
                {
                    add(
                        "starttls",
                        Status::Warn,
                        format!("the certificate of {} expires in {} days", m.host, c.days_left()),
                        Some(format!("renew the certificate of {}", m.host)),
                    );
                }
            }
            ProbeResult::Unresolved(e) => add(
                "starttls",
                Status::Fail,
                format!("{at}: the MX host does not resolve: {e}"),
                Some(format!("add an A or AAAA record for {}, or remove its MX record", m.host)),
            ),
            ProbeResult::Unreachable(e) => add(
                "starttls",
                Status::Fail,
                format!("{at}: cannot connect to the SMTP port: {e}"),
                Some(
                    "make the MX reachable on port 25 (if outbound port 25 is blocked where you run \
                     this, use --no-tls-probe)"
                        .into(),
                ),
            ),
            ProbeResult::Smtp(e) => add(
                "starttls",
                Status::Fail,
                format!("{at}: SMTP: {e}"),
                Some("make the MX answer SMTP (RFC 5321) with STARTTLS".into()),
            ),
            ProbeResult::NoStarttls => add(
                "starttls",
                Status::Fail,
                format!("{at}: STARTTLS is not offered in the EHLO reply"),
                Some(format!("enable STARTTLS on {} with a certificate for its name", m.host)),
            ),
            ProbeResult::StarttlsRefused(reply) => add(
                "starttls",
                Status::Fail,
                format!("{at}: STARTTLS offered but answered {reply}"),
                Some(format!("fix the TLS set-up of {}", m.host)),
            ),
            ProbeResult::Tls { why, cert } => {
                if let Some(c) = cert {
                    add("starttls", Status::Info, format!("{at}: certificate {}", c.summary()), None);
                }
                add("starttls", Status::Fail, format!("{at}: STARTTLS: {why}"), Some(cert_fix));
            }
        }
    }

    // ----- DANE -----
    for (status, message, fix) in dane_lines(check) {
        add("dane", status, message, fix);
    }

    // ----- decisions -----
    let mode = check.evaluation.mode();
    for c in check.evaluation.candidates() {
        let host = c.host();
        if host == "." {
            continue;
        }
        let tls_ok = check
            .mx
            .iter()
            .find(|m| m.host == host)
            .and_then(|m| m.probe.as_ref())
            .map(|p| matches!(p.result, ProbeResult::Valid { .. }));
        let (status, text) = match (c.decision(), tls_ok) {
            (MxDecision::Enforce, Some(true)) => (
                Status::Pass,
                "senders deliver here over STARTTLS (certificate valid for the MX)",
            ),
            (MxDecision::Enforce, Some(false)) => (
                Status::Fail,
                "senders treat it as unreachable: no valid STARTTLS (mode enforce)",
            ),
            (MxDecision::Enforce, None) => (
                Status::Pass,
                "senders deliver here only over STARTTLS with a certificate valid for the MX \
                 (not probed)",
            ),
            (MxDecision::Skip, _) => (
                Status::Fail,
                "senders never deliver here: it matches no mx pattern (mode enforce)",
            ),
            (MxDecision::Testing { host_matches }, tls) => {
                if !host_matches || tls == Some(false) {
                    (
                        Status::Warn,
                        "senders deliver, and report the failure (mode testing)",
                    )
                } else {
                    (
                        Status::Pass,
                        "senders deliver; failures would be reported (mode testing)",
                    )
                }
            }
            _ => (
                Status::Info,
                "senders deliver as usual: no MTA-STS constraint",
            ),
        };
        add("decision", status, format!("{host}: {text}"), None);
    }
    // (Without any MX host, e.g. when the MX lookup failed, there is nothing to decide.)
    if check.evaluation.verdict() == Verdict::DeferRecheckPolicy && !check.mx.is_empty() {
        add(
            "decision",
            Status::Fail,
            format!(
                "no MX of {d} may be used under the policy: enforcing senders defer all mail to {d}"
            ),
            Some("list the MX hosts in the policy's mx lines and publish a new TXT id".into()),
        );
    }
    // DANE-aware senders do not apply the MTA-STS decisions above to what DANE covers.
    if let Some(dane) = &check.dane
        && matches!(
            dane.precedence(&check.outcome),
            Precedence::DaneOnly | Precedence::Dane | Precedence::Defer
        )
    {
        add(
            "decision",
            Status::Info,
            format!(
                "senders that implement DANE: {} (the lines above are for senders without DANE)",
                query::precedence_text(dane, &check.outcome)
            ),
            None,
        );
    }
    if mode.is_none() {
        add(
            "decision",
            Status::Info,
            format!(
                "what senders decide: {}",
                report::outcome_reason(&check.outcome)
            ),
            None,
        );
    }
    // ----- TLSRPT -----
    for (status, message, fix) in check.tlsrpt.lines() {
        add("tlsrpt", *status, message.clone(), fix.clone());
    }
    if no_probe {
        add(
            "starttls",
            Status::Info,
            "STARTTLS not probed (--no-tls-probe)".into(),
            None,
        );
    }
    lines
}

const SECTIONS: [(&str, &str); 8] = [
    ("txt", "TXT record"),
    ("fetch", "Policy fetch"),
    ("policy", "Policy"),
    ("mx", "MX hosts"),
    ("starttls", "STARTTLS"),
    ("dane", "DANE (RFC 7672)"),
    ("decision", "Delivery decisions"),
    ("tlsrpt", "TLSRPT (RFC 8460)"),
];

/// The TLSA records of a host in presentation format, each prefixed `TLSA`, comma-separated.
fn tlsa_list(records: &[mta_sts_core::Tlsa]) -> String {
    records
        .iter()
        .map(|t| format!("TLSA {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The line of one MX host: its DANE coverage, with the records or why there are none.
fn dane_host_line(h: &DaneHost) -> (Status, String, Option<String>) {
    let name = h.name();
    match h.coverage() {
        HostCoverage::Usable(t) => (
            Status::Pass,
            format!("MX {name}: {}, authenticated", tlsa_list(t)),
            None,
        ),
        HostCoverage::Unusable(t) => {
            let problems: Vec<String> = t
                .iter()
                .filter_map(|x| x.usability().err().map(|p| p.to_string()))
                .collect();
            (
                Status::Warn,
                format!(
                    "MX {name}: {}, authenticated, none usable ({})",
                    tlsa_list(t),
                    problems.join("; ")
                ),
                Some(format!(
                    "publish at _25._tcp.{name} TLSA records of usage DANE-TA(2) or DANE-EE(3), \
                     selector 0 or 1, matching type 0, 1 or 2 (RFC 7672 §3.1), e.g. \
                     \"3 1 1 <SHA-256 of the MX's public key>\""
                )),
            )
        }
        HostCoverage::NotCovered(r) => (
            Status::Info,
            format!("MX {name}: not covered by DANE ({r})"),
            None,
        ),
        HostCoverage::Skipped(r) => (Status::Info, format!("MX {name}: skipped ({r})"), None),
        #[allow(unreachable_patterns)]
        _ => (Status::Info, h.to_string(), None),
    }
}

/// The lines of the DANE section: the state, one line per MX host, and what decides.
fn dane_lines(check: &Check) -> Vec<(Status, String, Option<String>)> {
    let d = check.domain.as_str();
    let Some(dane) = &check.dane else {
        return vec![(Status::Info, "DANE not checked (--no-dane)".into(), None)];
    };
    let mut lines = Vec::new();
    if check.mx_given {
        lines.push((
            Status::Info,
            format!("the DANE state is decided from the MX records of {d}, not the --mx hosts"),
            None,
        ));
    }
    let state = match dane {
        DaneState::Mandatory(_) => (
            Status::Pass,
            "DANE mandatory: every MX host has usable, authenticated TLSA records".to_owned(),
            None,
        ),
        DaneState::Opportunistic(_) => (
            Status::Pass,
            "DANE opportunistic: some MX hosts have usable, authenticated TLSA records".to_owned(),
            None,
        ),
        DaneState::UnusableOnly(_) => (
            Status::Warn,
            format!("DANE absent: {}", dane.reason()),
            None,
        ),
        DaneState::Indeterminate(_) => (
            Status::Warn,
            format!("DANE indeterminate: {}", dane.reason()),
            Some(
                "a validating resolver must answer the DNSSEC queries (MX, A/AAAA, TLSA \
                 _25._tcp.<mx>) of the domain; SERVFAIL from a validating resolver usually means \
                 bogus DNSSEC: check the zone's signatures and DS records (e.g. with delv or \
                 dnsviz.net)"
                    .into(),
            ),
        ),
        _ => (
            Status::Info,
            format!("DANE {}: {}", dane.name(), dane.reason()),
            None,
        ),
    };
    lines.push(state);
    for h in dane.hosts() {
        lines.push(dane_host_line(h));
    }
    if let Some(n) = dane.dane_hosts().map(mta_sts_core::DaneHosts::omitted)
        && n > 0
    {
        lines.push((
            Status::Info,
            format!("{n} more MX targets skipped, not listed"),
            None,
        ));
    }
    let status = match dane.precedence(&check.outcome) {
        Precedence::DaneOnly | Precedence::Dane => Status::Pass,
        Precedence::Defer | Precedence::TlsRequired => Status::Warn,
        _ => Status::Info,
    };
    lines.push((
        status,
        format!("decides: {}", query::precedence_text(dane, &check.outcome)),
        None,
    ));
    lines
}

/// The `"dane"` member of `check --json`: `query --json`'s (state, reason, tls_required,
/// decides) and the MX hosts with their coverage and TLSA records (presentation format).
fn dane_json(dane: Option<&DaneState>, outcome: &Outcome) -> Value {
    let mut out = query::dane_json(dane, outcome);
    let hosts: Vec<Value> = dane
        .map(DaneState::hosts)
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let (coverage, tlsa, reason): (&str, &[mta_sts_core::Tlsa], Option<String>) =
                match h.coverage() {
                    HostCoverage::Usable(t) => ("usable", t, None),
                    HostCoverage::Unusable(t) => {
                        let problems: Vec<String> = t
                            .iter()
                            .filter_map(|x| x.usability().err().map(|p| p.to_string()))
                            .collect();
                        ("unusable", t, Some(problems.join("; ")))
                    }
                    HostCoverage::NotCovered(r) => ("not-covered", &[], Some(r.to_string())),
                    HostCoverage::Skipped(r) => ("skipped", &[], Some(r.to_string())),
                    #[allow(unreachable_patterns)]
                    _ => ("unknown", &[], None),
                };
            json!({
                "name": h.name(),
                "coverage": coverage,
                "tlsa": tlsa.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "reason": reason,
            })
        })
        .collect();
    out["hosts"] = Value::Array(hosts);
    out
}

fn print_text(check: &Check, healthy: bool, style: Style) {
    println!("MTA-STS check of {}", check.domain);
    for (key, title) in SECTIONS {
        let lines: Vec<&Line> = check.lines.iter().filter(|l| l.section == key).collect();
        if lines.is_empty() {
            continue;
        }
        println!();
        println!("{}", style.heading(title));
        for l in lines {
            println!("  {} {}", style.status(l.status), l.message);
            if let Some(fix) = &l.fix {
                println!("       fix: {fix}");
            }
        }
    }
    println!();
    let problems = check
        .lines
        .iter()
        .filter(|l| l.status == Status::Fail)
        .count();
    if healthy {
        println!("{}", style.heading("healthy: no problem found"));
    } else {
        println!("{}", style.heading(&format!("{problems} problem(s) found")));
    }
}

fn cert_json(c: &CertInfo) -> Value {
    json!({
        "subject": c.subject,
        "issuer": c.issuer,
        "names": c.names,
        "not_after": c.expiry(),
    })
}

fn to_json(check: &Check, healthy: bool) -> Value {
    let txt = check.txt.as_ref().map(|t| {
        let (records, error): (Vec<String>, Option<String>) = match t {
            Ok(TxtAnswer::Records(r)) => (
                r.iter()
                    .map(|x| String::from_utf8_lossy(x).into_owned())
                    .collect(),
                None,
            ),
            Ok(TxtAnswer::NxDomain { .. }) => (Vec::new(), Some("NXDOMAIN".into())),
            Ok(_) => (Vec::new(), Some("no TXT record".into())),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        let id = match t {
            Ok(TxtAnswer::Records(r)) => StsRecord::discover_with(r, Profile::Default)
                .ok()
                .map(|r| r.id().to_owned()),
            _ => None,
        };
        json!({"name": check.domain.txt_name(), "records": records, "id": id, "error": error})
    });
    let fetch = check.fetch.as_ref().map(|(seen, result)| {
        json!({
            "url": seen.url,
            "address": seen.addr.map(|a| a.to_string()),
            "tls_version": seen.tls_version,
            "status": seen.status,
            "content_type": seen.content_type,
            "size": seen.body.as_ref().map(Vec::len),
            "certificate": seen.cert.as_ref().map(cert_json),
            "error": result.as_ref().err().map(|e| seen.cert_problem.clone().unwrap_or_else(|| e.to_string())),
        })
    });
    let policy = check.lint.as_ref().map(|r| {
        let p = r.policy.as_ref();
        json!({
            "valid": p.is_some(),
            "mode": p.map(|p| p.mode().as_str()),
            "mx": p.map(|p| p.mx().iter().map(|m| m.as_str()).collect::<Vec<_>>()),
            "max_age": p.map(Policy::max_age),
            "errors": r.errors.iter().map(|e| json!({"line": e.line(), "message": e.kind().to_string()})).collect::<Vec<_>>(),
            "warnings": r.warnings.iter().map(|w| json!({"line": w.line(), "message": w.kind().to_string()})).collect::<Vec<_>>(),
        })
    });
    let mx: Vec<Value> = check
        .evaluation
        .candidates()
        .iter()
        .zip(&check.mx)
        .map(|(c, m)| {
            let decision = match c.decision() {
                MxDecision::Enforce => "enforce",
                MxDecision::Skip => "skip",
                MxDecision::Testing { .. } => "testing",
                _ => "none",
            };
            let probe = m.probe.as_ref().map(|p| {
                let (starttls, version, cert, error) = match &p.result {
                    ProbeResult::Valid { version, cert } => {
                        (Some(true), Some(version.clone()), cert.as_ref(), None)
                    }
                    ProbeResult::NoStarttls => (
                        Some(false),
                        None,
                        None,
                        Some("STARTTLS not offered".to_owned()),
                    ),
                    ProbeResult::StarttlsRefused(r) => (
                        Some(true),
                        None,
                        None,
                        Some(format!("STARTTLS answered {r}")),
                    ),
                    ProbeResult::Tls { why, cert } => {
                        (Some(true), None, cert.as_ref(), Some(why.clone()))
                    }
                    ProbeResult::Unresolved(e)
                    | ProbeResult::Unreachable(e)
                    | ProbeResult::Smtp(e) => (None, None, None, Some(e.clone())),
                };
                json!({
                    "address": p.addr.map(|a| a.to_string()),
                    "starttls": starttls,
                    "tls_version": version,
                    "certificate": cert.map(cert_json),
                    "error": error,
                })
            });
            json!({
                "host": m.host,
                "preference": m.preference,
                "decision": decision,
                "probe": probe,
            })
        })
        .collect();
    let checks: Vec<Value> = check
        .lines
        .iter()
        .map(|l| json!({"section": l.section, "status": l.status.as_str().to_ascii_lowercase(), "message": l.message, "fix": l.fix}))
        .collect();
    json!({
        "domain": check.domain.as_str(),
        "healthy": healthy,
        "outcome": report::outcome_kind(&check.outcome),
        "reason": report::outcome_reason(&check.outcome),
        "txt": txt,
        "fetch": fetch,
        "policy": policy,
        "mx": mx,
        "dane": dane_json(check.dane.as_ref(), &check.outcome),
        "tlsrpt": check.tlsrpt.to_json(),
        "checks": checks,
    })
}
