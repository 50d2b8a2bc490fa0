//! The Debian package (REQUIREMENTS.md P4, P5): `dpkg -i` installs it (exit 0, also without
//! systemd as PID 1), with the binary, the service unit, the default /etc/mta-sts-daemon.yml as
//! a conffile, the system user `_mta-sts` and /var/lib/mta-sts, the man pages and the bash, zsh
//! and fish completions; the installed daemon, run as that user on a copy of the installed
//! configuration (its sqlite cache in /var/lib/mta-sts, port 0, pointed at a testkit world),
//! answers Postfix's `postmap -q`; `dpkg --purge` removes it all.
//!
//! It changes the system, so it runs only when `MTA_STS_DEB` names the .deb (`.ci/run` builds
//! it with `cargo deb`), as root, with Postfix's postmap. Without `MTA_STS_DEB` it is skipped,
//! unless `MTA_STS_REQUIRE_DEB=1` or `CI` (the project's CI, `.ci/run`, builds the package
//! before the tests), where it fails.

mod daemon_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use daemon_support::{Daemon, postfix_conf, postmap, postmap_available, wait_until, world};

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn contrib(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn deb_or_skip() -> Option<PathBuf> {
    match std::env::var_os("MTA_STS_DEB") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            assert!(
                !mta_sts_testkit::must_not_skip("MTA_STS_REQUIRE_DEB"),
                "MTA_STS_REQUIRE_DEB=1 (or CI) but MTA_STS_DEB does not name the package: build it with \
                 `cargo deb -p mta-sts-cli` (see .ci/run)"
            );
            eprintln!("skipped: MTA_STS_DEB does not name a .deb to install");
            None
        }
    }
}

#[test]
fn p4_dpkg_installs_the_package_and_its_daemon_answers_postmap() {
    let Some(deb) = deb_or_skip() else {
        return;
    };
    assert!(deb.is_file(), "{} is not a file", deb.display());
    assert!(
        rustix::process::geteuid().is_root(),
        "installing the package needs root"
    );
    assert!(postmap_available(), "postmap is missing: install postfix");
    let deb = deb.to_str().expect("a UTF-8 path");

    // Installs, whether or not systemd runs (its postinst helpers skip what needs it).
    ok("dpkg", &["-i", deb]);
    assert_eq!(
        ok("dpkg-query", &["-W", "-f=${Status}", "mta-sts"]),
        "install ok installed"
    );
    let conffiles = ok("dpkg-query", &["-W", "-f=${Conffiles}", "mta-sts"]);
    assert!(conffiles.contains("/etc/mta-sts-daemon.yml"), "{conffiles}");
    assert_eq!(
        std::fs::read_to_string("/etc/mta-sts-daemon.yml").unwrap(),
        contrib("mta-sts-daemon.yml")
    );
    assert_eq!(
        std::fs::read_to_string("/usr/lib/systemd/system/mta-sts-daemon.service").unwrap(),
        contrib("mta-sts-daemon.service")
    );
    // P5: the man pages (the command and each subcommand) and the shell completions.
    for file in [
        "/usr/share/man/man1/mta-sts.1",
        "/usr/share/man/man1/mta-sts-daemon.1",
        "/usr/share/man/man1/mta-sts-check.1",
        "/usr/share/man/man1/mta-sts-cache-list.1",
        "/usr/share/bash-completion/completions/mta-sts",
        "/usr/share/zsh/vendor-completions/_mta-sts",
        "/usr/share/fish/vendor_completions.d/mta-sts.fish",
        "/usr/share/doc/mta-sts/examples/mta-sts-daemon.socket",
    ] {
        assert!(Path::new(file).is_file(), "{file} is not installed");
    }
    assert!(
        !Path::new("/usr/share/man/man1/mta-sts-generate-assets.1").exists(),
        "the hidden packaging command has no page"
    );
    let passwd = ok("getent", &["passwd", "_mta-sts"]);
    let uid: u32 = passwd.split(':').nth(2).unwrap().parse().unwrap();
    assert!(
        passwd.trim_end().ends_with(":/usr/sbin/nologin"),
        "{passwd}"
    );
    let varlib = std::fs::metadata("/var/lib/mta-sts").expect("/var/lib/mta-sts");
    assert!(varlib.is_dir());
    assert_eq!(varlib.uid(), uid);

    // The installed daemon, as the service runs it (its user, the installed configuration and
    // its sqlite cache), on port 0 and pointed at a testkit world.
    let world = world();
    let dir = std::env::temp_dir().join(format!("mta-sts-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.join("mta-sts-daemon.yml");
    let installed = std::fs::read_to_string("/etc/mta-sts-daemon.yml").unwrap();
    std::fs::write(&config, format!("{installed}port: 0\n")).unwrap();
    // setpriv execs the daemon (runuser would stay its parent and take the signals).
    let mut command = Command::new("setpriv");
    command.args([
        "--reuid=_mta-sts",
        "--regid=_mta-sts",
        "--init-groups",
        "/usr/bin/mta-sts",
    ]);
    let d = Daemon::spawn_command(command, &world, &dir, &config).started();
    let conf = postfix_conf(&dir);
    let out = postmap(&conf, d.addr(), "postfix", "enforce.test");
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim_end()
        ),
        (
            Some(0),
            "secure match=mx1.enforce.test:.pool.enforce.test servername=hostname"
        ),
        "postmap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = postmap(&conf, d.addr(), "postfix", "nopolicy.test");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // The default configuration's cache is the sqlite file, written by the service's user.
    let db = Path::new("/var/lib/mta-sts/cache.db");
    wait_until("the sqlite cache", Duration::from_secs(30), || db.exists());
    assert_eq!(std::fs::metadata(db).unwrap().uid(), uid);
    d.signal("TERM");
    let (status, lines) = d.wait();
    assert!(status.success(), "{status:?} {lines:?}");
    let _ = std::fs::remove_dir_all(&dir);

    // Purged: the files, the configuration and the cache go.
    ok("dpkg", &["--purge", "mta-sts"]);
    for gone in [
        "/usr/bin/mta-sts",
        "/etc/mta-sts-daemon.yml",
        "/usr/lib/systemd/system/mta-sts-daemon.service",
        "/usr/share/man/man1/mta-sts.1",
        "/var/lib/mta-sts",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after the purge");
    }
}
