//! The `mta-sts` binary end to end: exit codes, text and JSON outputs.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mta-sts");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).expect("JSON output")
}

#[test]
fn lint_valid_policy_exit_0_json_fields() {
    let o = run(
        &["lint", "--json", "-"],
        Some("version: STSv1\r\nmode: enforce\r\nmx: *.example.com\r\nmax_age: 86400\r\n"),
    );
    assert_eq!(o.status.code(), Some(0));
    let v = json(&o);
    assert_eq!(v["valid"], true);
    assert_eq!(v["mode"], "enforce");
    assert_eq!(v["mx"], serde_json::json!(["*.example.com"]));
    assert_eq!(v["max_age"], 86400);
    assert_eq!(v["errors"], serde_json::json!([]));
}

#[test]
fn lint_strict_by_default_reports_lines_and_exit_1() {
    let body = "version: STSv1\nmode: Enforce\n\nmx: a.example\nmax_age: 1\n";
    let o = run(&["lint", "--json", "-"], Some(body));
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["line"], 2);
    assert_eq!(v["errors"][1]["line"], 3);
    // The default profile forgives the blank line but not the mode.
    let o = run(&["lint", "--profile", "default", "-"], Some(body));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(
            r#"error: line 2: mode must be one of enforce, testing, none; found "Enforce""#
        )
    );
    assert!(stdout(&o).contains("warning: line 3: blank line (ignored)"));
}

#[test]
fn lint_reads_a_file() {
    let path = std::env::temp_dir().join(format!("mta-sts-cli-test-{}.txt", std::process::id()));
    std::fs::write(&path, "version: STSv1\nmode: none\nmax_age: 0\n").unwrap();
    let o = run(&["lint", path.to_str().unwrap()], None);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = run(&["lint", "/nonexistent/policy.txt"], None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn lint_txt_records_json() {
    let o = run(
        &[
            "lint",
            "--txt",
            "--json",
            "v=spf1 -all",
            "v=STSv1; id=20240101;",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0));
    let v = json(&o);
    assert_eq!(v["policy"], true);
    assert_eq!(v["id"], "20240101");
    let o = run(
        &["lint", "--txt", "--json", "v=STSv1; id=1", "v=STSv1; id=2"],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["policy"], false);
    assert_eq!(v["id"], serde_json::Value::Null);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("exactly one")
    );
}

#[test]
fn r31_match_exit_codes() {
    assert_eq!(
        run(&["match", "*.example.com", "mx.example.com"], None)
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        run(&["match", "*.example.com", "a.mx.example.com"], None)
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        run(&["match", "*.example.com", "example.com"], None)
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        run(&["match", "192.0.2.1", "192.0.2.1"], None)
            .status
            .code(),
        Some(1)
    );
    assert_eq!(run(&["match", "only-one-arg"], None).status.code(), Some(2));
}

#[test]
fn generate_prints_a_strictly_valid_policy_and_record() {
    let o = run(
        &[
            "generate",
            "--mode",
            "testing",
            "--mx",
            "mx.example.com",
            "--max-age",
            "604800",
            "--id",
            "abc123",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    let policy: String = out
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("v="))
        .collect::<Vec<_>>()
        .join("\n");
    let p = mta_sts_core::Policy::parse_strict(policy.trim()).unwrap();
    assert_eq!(p.mode(), mta_sts_core::Mode::Testing);
    assert!(out.contains("v=STSv1; id=abc123;"));
}

#[test]
fn generate_default_id_is_a_utc_timestamp() {
    let o = run(&["generate", "--mode", "none", "--max-age", "86400"], None);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    let record = out.lines().find(|l| l.starts_with("v=STSv1")).unwrap();
    let r = mta_sts_core::StsRecord::parse_strict(record).unwrap();
    assert_eq!(r.id().len(), "20261123T161200Z".len(), "{}", r.id());
    assert!(r.id().ends_with('Z') && r.id().as_bytes()[8] == b'T');
}

#[test]
fn generate_refuses_invalid_input() {
    for args in [
        &["generate", "--mode", "enforce", "--max-age", "1"][..],
        &[
            "generate",
            "--mode",
            "enforce",
            "--mx",
            "mx.example.com.",
            "--max-age",
            "1",
        ],
        &[
            "generate",
            "--mode",
            "enforce",
            "--mx",
            "*.*.example.com",
            "--max-age",
            "1",
        ],
        &[
            "generate",
            "--mode",
            "Enforce",
            "--mx",
            "a.example",
            "--max-age",
            "1",
        ],
        &["generate", "--mode", "none", "--max-age", "31557601"],
        &[
            "generate",
            "--mode",
            "none",
            "--max-age",
            "1",
            "--id",
            "a-b",
        ],
    ] {
        assert_eq!(run(args, None).status.code(), Some(2), "{args:?}");
    }
}
