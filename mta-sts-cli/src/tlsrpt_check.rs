//! The TLSRPT part of `mta-sts check`: the `_smtp._tls.<domain>` record (RFC 8460 §3), as an
//! operator checks it with dig: found, parsed (strict profile, and whether senders, who read it
//! with the default profile, accept it), and each `rua` URI usable: an `https:` host that
//! resolves, a `mailto:` domain that accepts mail (an MX record, or an address as its implicit
//! MX). The lookups go through the same resolvers as the rest of `check`.
//!
//! No record is a warning (the domain receives no reports), not a failure of the check; a
//! record senders ignore (invalid, or more than one) and a record none of whose URIs can
//! receive reports are failures.

use std::net::SocketAddr;
use std::time::Duration;

use mta_sts_core::io::TxtAnswer;
use mta_sts_core::tlsrpt::{ReportUri, TlsRptErrorKind, TlsRptRecord, record_name};
use mta_sts_core::wire::dns::{DnsAnswer, MxAnswer, QueryType};
use mta_sts_core::{PolicyDomain, Profile};
use serde_json::{Value, json};

use crate::net;
use crate::report::Status;

/// A line of the check: status, message, fix.
pub(crate) type Line = (Status, String, Option<String>);

/// One `rua` URI and whether reports can reach it.
#[derive(Debug)]
struct Rua {
    uri: ReportUri,
    usable: bool,
    detail: String,
}

/// An error or warning of the JSON output: its column in the record, if it has one.
#[derive(Debug)]
struct Item {
    column: Option<usize>,
    message: String,
}

/// What the TLSRPT check found.
#[derive(Debug, Default)]
pub(crate) struct TlsRptCheck {
    /// The record as published (the first that begins with `v=TLSRPTv1`).
    record: Option<String>,
    rua: Vec<Rua>,
    errors: Vec<Item>,
    warnings: Vec<Item>,
    lines: Vec<Line>,
}

/// Looks up and judges the TLSRPT record of `domain`. `testing`: the policy's mode is testing
/// (reports are then how the operator learns whether `enforce` is safe).
pub(crate) fn check(
    domain: &PolicyDomain,
    resolvers: &[SocketAddr],
    timeout: Duration,
    testing: bool,
) -> TlsRptCheck {
    let name = record_name(domain.as_str());
    let answer =
        net::lookup(resolvers, &name, QueryType::Txt, timeout).and_then(DnsAnswer::into_txt);
    let mut c = TlsRptCheck::default();
    let publish = format!(
        "publish \"v=TLSRPTv1; rua=mailto:tlsrpt@{d}\" (or an https: URL) at {name}",
        d = domain.as_str()
    );
    let records = match answer {
        Err(e) => {
            let message = format!("TXT lookup of {name} failed: {e}");
            c.warn(None, message.clone());
            c.lines.push((
                Status::Warn,
                message,
                Some("check the domain's DNS servers (or the server given with --resolver)".into()),
            ));
            return c;
        }
        Ok(TxtAnswer::Records(r)) => r,
        Ok(_) => Vec::new(),
    };
    // Looser than the senders' rule (`TlsRptRecord::is_candidate`: `v=TLSRPTv1` then `;`), so
    // that a near miss such as `v=TLSRPTv1 rua=…` is shown as a record senders ignore, with
    // why, rather than as no record at all.
    let candidates: Vec<&Vec<u8>> = records
        .iter()
        .filter(|r| r.starts_with(b"v=TLSRPTv1"))
        .collect();
    if candidates.is_empty() {
        let message = format!(
            "no TLSRPT record at {name}: {} receives no TLS reports{}",
            domain.as_str(),
            if testing {
                " (in mode testing, the reports tell whether enforce is safe)"
            } else {
                ""
            }
        );
        c.warn(None, message.clone());
        c.lines.push((Status::Warn, message, Some(publish)));
        return c;
    }
    c.record = Some(String::from_utf8_lossy(candidates[0]).into_owned());
    for r in &candidates {
        c.lines.push((
            Status::Info,
            format!("TXT {name}: {:?}", String::from_utf8_lossy(r)),
            None,
        ));
    }
    let strict = TlsRptRecord::discover_with(&records, Profile::Strict);
    let record = match TlsRptRecord::discover_with(&records, Profile::Default) {
        Ok(r) => r,
        Err(e) => {
            let fix = match e.kind() {
                TlsRptErrorKind::MultipleRecords(_) => {
                    format!("keep exactly one record beginning with \"v=TLSRPTv1\" at {name}")
                }
                _ => publish,
            };
            let message = format!("TLSRPT record: {e} (senders send no reports)");
            c.errors.push(Item {
                column: e.column(),
                message: e.to_string(),
            });
            c.lines.push((Status::Fail, message, Some(fix)));
            return c;
        }
    };
    match &strict {
        Ok(_) => c.lines.push((
            Status::Pass,
            format!("one valid TLSRPT record: rua {}", rua_list(&record)),
            None,
        )),
        Err(e) => {
            c.warn(e.column(), e.to_string());
            c.lines.push((
                Status::Warn,
                format!(
                    "TLSRPT record (strict profile): {e} (senders still accept it: rua {})",
                    rua_list(&record)
                ),
                Some(format!(
                    "publish it exactly as RFC 8460 §3 writes it at {name}"
                )),
            ));
        }
    }
    for w in record.warnings() {
        c.warn(Some(w.column()), w.kind().to_string());
        c.lines
            .push((Status::Warn, format!("TLSRPT record: {w}"), None));
    }
    for uri in record.rua() {
        let rua = judge_uri(uri, resolvers, timeout);
        let status = if rua.usable {
            Status::Pass
        } else {
            c.warn(None, format!("rua {uri}: {}", rua.detail));
            Status::Warn
        };
        c.lines
            .push((status, format!("rua {uri}: {}", rua.detail), None));
        c.rua.push(rua);
    }
    if !c.rua.iter().any(|r| r.usable) {
        let message = "no rua URI of the TLSRPT record can receive reports".to_owned();
        c.errors.push(Item {
            column: None,
            message: message.clone(),
        });
        c.lines.push((
            Status::Fail,
            message,
            Some("give a mailto: address of a domain that accepts mail, or an https: URL whose host resolves".into()),
        ));
    }
    c
}

fn rua_list(record: &TlsRptRecord) -> String {
    record
        .rua()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether reports can reach `uri`: its host resolves (`https:`), its domain accepts mail
/// (`mailto:`).
fn judge_uri(uri: &ReportUri, resolvers: &[SocketAddr], timeout: Duration) -> Rua {
    let addresses = |host: &str| net::addresses(resolvers, host, timeout);
    let list = |a: &[std::net::IpAddr]| {
        a.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (usable, detail) = match uri {
        ReportUri::Https { host, .. } => match addresses(host) {
            Ok(a) => (true, format!("{host} resolves to {}", list(&a))),
            Err(e) => (
                false,
                format!("the host does not resolve ({e}): reports cannot be posted"),
            ),
        },
        ReportUri::Mailto(address) => {
            let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
            let mx =
                net::lookup(resolvers, domain, QueryType::Mx, timeout).and_then(DnsAnswer::into_mx);
            match mx {
                Ok(MxAnswer::Records(r)) if r.iter().any(|(_, h)| h == ".") => (
                    false,
                    format!("{domain} has a null MX (RFC 7505): it accepts no mail"),
                ),
                Ok(MxAnswer::Records(r)) if !r.is_empty() => {
                    let hosts: Vec<String> = r.iter().map(|(p, h)| format!("{p} {h}")).collect();
                    (true, format!("{domain} has MX {}", hosts.join(", ")))
                }
                Ok(_) => match addresses(domain) {
                    Ok(a) => (
                        true,
                        format!(
                            "{domain} has no MX record; its address {} is its implicit MX",
                            list(&a)
                        ),
                    ),
                    Err(_) => (
                        false,
                        format!("{domain} has neither an MX record nor an address: reports bounce"),
                    ),
                },
                Err(e) => (false, format!("MX lookup of {domain} failed: {e}")),
            }
        }
    };
    Rua {
        uri: uri.clone(),
        usable,
        detail,
    }
}

impl TlsRptCheck {
    fn warn(&mut self, column: Option<usize>, message: String) {
        self.warnings.push(Item { column, message });
    }

    /// The lines of the check's `tlsrpt` section.
    pub(crate) fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// The `"tlsrpt"` member of `check --json`.
    pub(crate) fn to_json(&self) -> Value {
        let items = |v: &[Item]| -> Vec<Value> {
            v.iter()
                .map(|i| json!({"column": i.column, "message": i.message}))
                .collect()
        };
        let rua: Vec<Value> = self
            .rua
            .iter()
            .map(|r| {
                let (scheme, host) = match &r.uri {
                    ReportUri::Https { host, .. } => ("https", host.as_str()),
                    ReportUri::Mailto(a) => ("mailto", a.rsplit_once('@').map_or("", |(_, d)| d)),
                };
                json!({
                    "uri": r.uri.to_string(),
                    "scheme": scheme,
                    "host": host,
                    "usable": r.usable,
                    "detail": r.detail,
                })
            })
            .collect();
        json!({
            "record": self.record,
            "rua": rua,
            "errors": items(&self.errors),
            "warnings": items(&self.warnings),
        })
    }
}
