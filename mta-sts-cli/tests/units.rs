//! The systemd units in contrib/ (REQUIREMENTS.md P3) pass `systemd-analyze verify`, with
//! ExecStart pointed at the binary under test and the man pages `mta-sts generate-assets`
//! writes (their Documentation= lines are checked too); and they say what the package needs:
//! Type=notify, the system user, a reload by SIGHUP, the socket of Debian's
//! postfix-mta-sts-resolver (127.0.0.1:8461, the configuration's default).
//!
//! Needs systemd-analyze (Debian package systemd): skipped without it, unless
//! `MTA_STS_REQUIRE_SYSTEMD_ANALYZE=1` or `CI` (then it fails).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_mta-sts");

fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(contrib(name)).unwrap_or_else(|e| panic!("read contrib/{name}: {e}"))
}

fn systemd_analyze_or_skip() -> bool {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !mta_sts_testkit::must_not_skip("MTA_STS_REQUIRE_SYSTEMD_ANALYZE"),
            "systemd-analyze is missing and MTA_STS_REQUIRE_SYSTEMD_ANALYZE=1 (or CI): install \
             Debian's systemd package"
        );
        eprintln!("skipped: systemd-analyze (Debian package systemd) is not installed");
    }
    found
}

/// A scratch directory with the units (ExecStart on the binary under test) and the man pages.
fn staged(name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("units-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(BIN)
        .arg("generate-assets")
        .arg(&dir)
        .output()
        .expect("run mta-sts generate-assets");
    assert!(out.status.success(), "{out:?}");
    for unit in ["mta-sts-daemon.service", "mta-sts-daemon.socket"] {
        let text = read(unit).replace("ExecStart=/usr/bin/mta-sts ", &format!("ExecStart={BIN} "));
        std::fs::write(dir.join(unit), edit(text)).unwrap();
    }
    dir
}

fn verify(dir: &Path) -> Output {
    Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("mta-sts-daemon.service"))
        .arg(dir.join("mta-sts-daemon.socket"))
        .env("MANPATH", dir.join("man"))
        .current_dir(dir)
        .output()
        .expect("run systemd-analyze verify")
}

#[test]
fn p3_units_pass_systemd_analyze_verify() {
    if !systemd_analyze_or_skip() {
        return;
    }
    let dir = staged("ok", |t| t);
    let out = verify(&dir);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The check can fail: a unit systemd cannot parse is reported (verify warns on stderr,
    // with status 0 for some mistakes), and so is a missing man page.
    let broken = staged("broken", |t| t.replace("Type=notify", "Type=notifyy"));
    let out = verify(&broken);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("notifyy"), "{stderr}");
    std::fs::remove_file(broken.join("man/man1/mta-sts-daemon.1")).unwrap();
    let out = verify(&broken);
    assert!(!out.status.success(), "{out:?}");
}

#[test]
fn p3_units_run_the_notify_daemon_as_its_user_on_resolvers_socket() {
    let service = read("mta-sts-daemon.service");
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/mta-sts daemon --config /etc/mta-sts-daemon.yml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=_mta-sts",
        "Group=_mta-sts",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/mta-sts/ -/var/spool/postfix/run/mta-sts",
        "NoNewPrivileges=yes",
        "WantedBy=multi-user.target",
    ] {
        assert!(service.lines().any(|l| l == line), "{line} in the service");
    }
    let socket = read("mta-sts-daemon.socket");
    for line in [
        "ListenStream=127.0.0.1:8461",
        "Service=mta-sts-daemon.service",
        "Accept=no",
    ] {
        assert!(socket.lines().any(|l| l == line), "{line} in the socket");
    }
    // The socket is the one the default configuration listens on.
    let cfg = mta_sts_postfix::config::parse("").expect("the defaults");
    assert_eq!(cfg.listen.to_string(), "tcp 127.0.0.1:8461");
}
