//! `mta-sts cache … --socket PATH`: the same commands on a running daemon, through its admin
//! socket (`admin_socket` in its configuration): one JSON request per line, one JSON reply per
//! line (mta-sts-postfix's admin module). The daemon's entries are in its memory and, with a
//! shared store, in the store: each entry says which (`source`: `memory` or `store`). Output
//! formats are those of the store commands.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use mta_sts_core::UnixTime;
use mta_sts_net::StoredPolicy;
use serde_json::{Value, json};

use super::{Action, CacheError, Entry, confirm, domain_arg, now, print_entry, print_list};

/// The longest reply read (a listing of 100,000 entries with their policies fits).
const MAX_REPLY: u64 = 256 << 20;

/// How long a reply may take: a refresh waits for the daemon's DNS and HTTPS lookups.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether something listens on the admin socket at `path`.
pub(super) fn listening(path: &Path) -> io::Result<()> {
    UnixStream::connect(path).map(drop)
}

/// Whether `e`, from [`listening`], says that no daemon runs (then the store can be used
/// directly); any other error (permission denied) is the operator's to see.
pub(super) fn not_running(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

/// One request to the daemon and its reply (`ok` true), or why not.
fn ask(socket: &Path, request: &Value) -> Result<Value, CacheError> {
    let failed = |e: io::Error| CacheError::Other(format!("{}: {e}", socket.display()));
    let mut stream = UnixStream::connect(socket).map_err(failed)?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(failed)?;
    let mut line = request.to_string().into_bytes();
    line.push(b'\n');
    stream.write_all(&line).map_err(failed)?;
    let mut reply = String::new();
    BufReader::new(stream.take(MAX_REPLY))
        .read_line(&mut reply)
        .map_err(failed)?;
    let reply: Value = serde_json::from_str(&reply).map_err(|e| {
        CacheError::Other(format!(
            "{}: the daemon's reply is not JSON ({e})",
            socket.display()
        ))
    })?;
    if reply["ok"] == json!(true) {
        return Ok(reply);
    }
    let kind = reply["error"]["kind"].as_str().unwrap_or("unknown");
    let message = reply["error"]["message"].as_str().unwrap_or("");
    let text = format!(
        "{}: the daemon refused ({kind}): {message}",
        socket.display()
    );
    Err(match kind {
        "bad_domain" | "bad_request" | "unknown_op" => CacheError::Usage(text),
        _ => CacheError::Other(text),
    })
}

/// An entry of a reply.
fn entry(v: &Value) -> Option<Entry> {
    let stored = StoredPolicy::new(
        v["domain"].as_str()?,
        v["id"].as_str()?,
        UnixTime::from_secs(v["fetched"].as_u64()?),
        v["policy"].as_str()?,
    );
    let mut e = Entry::of(stored);
    e.source = v["source"].as_str().map(str::to_owned);
    Some(e)
}

fn entries(reply: &Value, key: &str) -> Vec<Entry> {
    reply[key]
        .as_array()
        .map(|a| a.iter().filter_map(entry).collect())
        .unwrap_or_default()
}

/// Says on standard error that the daemon could not use its store.
fn store_warning(socket: &Path, reply: &Value) {
    if let Some(e) = reply["store_error"].as_str() {
        eprintln!(
            "mta-sts: cache: {}: the daemon's store failed: {e}",
            socket.display()
        );
    }
}

/// Runs `action` on the daemon behind `socket`.
pub(super) fn run(socket: &Path, action: Action) -> Result<ExitCode, CacheError> {
    let label = format!("daemon:{}", socket.display());
    match action {
        Action::List { json, limit } => {
            let reply = ask(socket, &json!({"op": "list", "limit": limit}))?;
            store_warning(socket, &reply);
            print_list(&entries(&reply, "entries"), &label, "memory", 0, json);
            Ok(ExitCode::SUCCESS)
        }
        Action::Show { domain, json } => {
            let domain = domain_arg(&domain)?;
            let reply = ask(socket, &json!({"op": "show", "domain": domain.as_str()}))?;
            store_warning(socket, &reply);
            let found = entries(&reply, "entries");
            let now = now();
            let Some(first) = found.first() else {
                if json {
                    println!(
                        "{}",
                        json!({"domain": domain.as_str(), "source": "daemon", "error": "no entry"})
                    );
                } else {
                    println!("{}: no entry in {label}", domain.as_str());
                }
                return Ok(ExitCode::from(1));
            };
            if json {
                let mut out = first.json_full("memory", now);
                // The store's entry, when it is another fetch than the one in memory.
                out["others"] = json!(
                    found[1..]
                        .iter()
                        .map(|e| e.json_full("store", now))
                        .collect::<Vec<_>>()
                );
                println!("{out}");
            } else {
                for e in &found {
                    print_entry(e, "memory", now);
                }
            }
            Ok(if first.policy.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Action::Purge { domain, all, yes } => {
            let request = match domain {
                Some(d) => json!({"op": "purge", "domain": domain_arg(&d)?.as_str()}),
                None if all => {
                    let listed = ask(socket, &json!({"op": "list"}))?;
                    let n = entries(&listed, "entries").len();
                    if n == 0 {
                        println!("no entries in {label}");
                        return Ok(ExitCode::from(1));
                    }
                    if !yes && !confirm(&format!("remove all {n} entries of {label}? [y/N] ")) {
                        eprintln!(
                            "mta-sts: cache: nothing removed (not confirmed; --yes does not ask)"
                        );
                        return Ok(ExitCode::from(1));
                    }
                    json!({"op": "purge", "all": true})
                }
                None => return Err(CacheError::Usage("purge needs a DOMAIN or --all".into())),
            };
            let reply = ask(socket, &request)?;
            store_warning(socket, &reply);
            let memory = reply["memory"].as_u64().unwrap_or(0);
            let store = reply["store"].as_u64();
            let what = request["domain"].as_str().unwrap_or("all entries");
            let from_store = match store {
                Some(n) => format!(", {n} from its store"),
                None => String::new(),
            };
            if memory + store.unwrap_or(0) == 0 {
                println!("{what}: no entry in {label}");
                return Ok(ExitCode::from(1));
            }
            println!("{what}: {memory} removed from the daemon's memory{from_store} ({label})");
            Ok(ExitCode::SUCCESS)
        }
        Action::Refresh { domain, json, .. } => {
            let domain = domain_arg(&domain)?;
            let reply = ask(socket, &json!({"op": "refresh", "domain": domain.as_str()}))?;
            let kind = reply["kind"].as_str().unwrap_or("unknown");
            let reason = reply["outcome"].as_str().unwrap_or("");
            let written = entry(&reply["entry"]).filter(|_| reply["fetched"] == json!(true));
            let Some(written) = written else {
                if json {
                    println!(
                        "{}",
                        json!({"domain": domain.as_str(), "outcome": kind, "reason": reason,
                               "written": false})
                    );
                } else {
                    println!(
                        "{}: {kind}: {reason}; the daemon's cache is left as it is",
                        domain.as_str()
                    );
                }
                return Ok(ExitCode::from(1));
            };
            let previous = entry(&reply["previous"]);
            let changed = previous.as_ref().is_none_or(|p| {
                p.id != written.id || p.policy.as_ref().ok().map(|(p, _)| p) != written.parsed()
            });
            let now = now();
            if json {
                let mut out = written.json_full("memory", now);
                out["previous"] = previous
                    .as_ref()
                    .map_or(Value::Null, |p| p.json_full("memory", now));
                out["changed"] = json!(changed);
                println!("{out}");
            } else {
                let what = match (&previous, changed) {
                    (None, _) => "cached (no entry before)",
                    (Some(_), true) => "cached (the policy changed)",
                    (Some(_), false) => "cached (the same policy, fetched again)",
                };
                println!("{}: policy fetched and {what} in {label}", domain.as_str());
                print_entry(&written, "memory", now);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
