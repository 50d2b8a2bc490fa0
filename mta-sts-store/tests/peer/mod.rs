//! postfix-mta-sts-resolver 1.5.1 (the peer) in its venv: its interpreter is
//! `$MTA_STS_RESOLVER_PYTHON` (`.ci/run` sets it, and `MTA_STS_REQUIRE_RESOLVER=1`).

#![allow(dead_code)]

use std::io::Write as _;
use std::process::{Command, Stdio};

/// The peer's interpreter, or `None` when it is not installed here (the test then returns;
/// under CI or with `MTA_STS_REQUIRE_RESOLVER=1` it fails instead).
pub(crate) fn python() -> Option<String> {
    match std::env::var("MTA_STS_RESOLVER_PYTHON") {
        Ok(p) if std::path::Path::new(&p).exists() => Some(p),
        _ => {
            assert!(
                !mta_sts_testkit::must_not_skip("MTA_STS_REQUIRE_RESOLVER"),
                "MTA_STS_RESOLVER_PYTHON is not set to postfix-mta-sts-resolver's interpreter"
            );
            eprintln!("skipped: MTA_STS_RESOLVER_PYTHON not set");
            None
        }
    }
}

/// Runs `script` in the peer's interpreter with `input` on stdin; its stdout. Panics (the test
/// fails) when the script fails.
pub(crate) fn run(python: &str, script: &str, input: &str) -> String {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the peer's python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "peer script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
