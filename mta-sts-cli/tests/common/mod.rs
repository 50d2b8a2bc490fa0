//! Running the `mta-sts` binary against a loopback testkit world.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use mta_sts_testkit::World;

/// The binary's output, with its exit code.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// Whether a report line has this status and contains `text`.
    pub fn has_line(&self, status: &str, text: &str) -> bool {
        self.stdout
            .lines()
            .any(|l| l.trim_start().starts_with(status) && l.contains(text))
    }

    /// Whether a `fix:` line contains `text`.
    pub fn has_fix(&self, text: &str) -> bool {
        self.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("fix:") && l.contains(text))
    }
}

pub fn run(args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(args)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run mta-sts");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

/// Each argument list is a usage error: exit 2 with a message on standard error.
pub fn assert_usage_errors(cases: &[&[&str]]) {
    for args in cases {
        let r = run(args);
        assert_eq!(r.code, Some(2), "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(!r.stderr.is_empty(), "{args:?}: an error message");
    }
}

/// The world's CA as a PEM file (removed on drop).
pub struct CaFile(pub PathBuf);

impl Drop for CaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub fn ca_file(world: &World) -> CaFile {
    let path = std::env::temp_dir().join(format!(
        "mta-sts-cli-ca-{}-{}.pem",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, world.ca_pem()).expect("write the CA file");
    CaFile(path)
}

/// Runs `command domain extra...` pointed at the world (resolver, CA, ports, a short timeout).
pub fn run_in(world: &World, command: &str, domain: &str, extra: &[&str]) -> Run {
    let ca = ca_file(world);
    let resolver = world.dns_addr().to_string();
    let https = world.https_port().to_string();
    let smtp = world.smtp_port().to_string();
    let mut args = vec![
        command,
        domain,
        "--resolver",
        &resolver,
        "--ca-file",
        ca.0.to_str().expect("UTF-8 temp path"),
        "--https-port",
        &https,
        "--smtp-port",
        &smtp,
        "--timeout",
        "5",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory whose name says `what` it is for.
    pub fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "mta-sts-cli-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        Self(dir)
    }

    /// The path of `name` in it, as a string for the command line.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    /// The files in its subdirectory `under` (`""` for itself), sorted.
    pub fn files(&self, under: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.0.join(under))
            .expect("read the directory")
            .map(|e| e.expect("directory entry").path())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
