//! `mta-sts daemon` and configuration files it cannot use, at start and on SIGHUP: an empty file,
//! a missing one, one nested too deep. Synchronisation is on the daemon's log lines, never on
//! sleeps.

mod daemon_support;

use daemon_support::{Daemon, ENFORCE_REPLY, ask_one, scratch_dir, world, write_config};

const TCP: &str = "port: 0\ndefault_zone:\n  timeout: 2\n";

/// How many times the daemon has said it listens, in the lines seen so far.
fn listening_lines(d: &Daemon) -> usize {
    d.lines
        .iter()
        .filter(|l| l.contains("listening on "))
        .count()
}

#[test]
fn sighup_with_an_empty_file_keeps_the_running_configuration_and_logs_why() {
    let world = world();
    let dir = scratch_dir("reload-empty");
    let mut d = Daemon::start(&world, &dir, TCP);
    let addr = d.addr();
    assert_eq!(ask_one(addr, "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(listening_lines(&d), 1);
    let file = d.config.display().to_string();

    for empty in ["", "\n  \n", "# port: 0\n# host: 127.0.0.1\n", "---\n"] {
        let line = d.reload(empty);
        assert!(line.contains("reload failed"), "{empty:?}: {line}");
        assert!(
            line.contains(&file) && line.contains("empty"),
            "{empty:?}: {line}"
        );
        // Not rebound (to the default address or any other): the original listener answers.
        assert_eq!(listening_lines(&d), 1, "{:?}", d.lines);
        assert_eq!(ask_one(addr, "postfix enforce.test"), ENFORCE_REPLY);
    }

    // A usable file is taken again afterwards.
    let line = d.reload("port: 0\ndefault_zone:\n  timeout: 2\n  strict_testing: true\n");
    assert!(line.contains("configuration reloaded"), "{line}");
}

#[test]
fn sighup_with_a_deeply_nested_file_is_refused_at_once_and_the_daemon_answers_on() {
    let world = world();
    let dir = scratch_dir("reload-deep");
    let mut d = Daemon::start(&world, &dir, TCP);
    let addr = d.addr();
    // 150 KB, 30,000 flow mappings deep: the YAML parser took 14 s over it (44 s unoptimised),
    // with the daemon's main loop blocked.
    let deep = format!(
        "port: 0\nx: {}{}\n",
        "{a: ".repeat(30_000),
        "}".repeat(30_000)
    );
    let started = std::time::Instant::now();
    let line = d.reload(&deep);
    assert!(line.contains("reload failed"), "{line}");
    assert!(
        line.contains("nested more than 64 levels deep (at line 2)"),
        "{line}"
    );
    // A bound against the parser's time coming back, not a measurement.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(listening_lines(&d), 1, "{:?}", d.lines);
    assert_eq!(ask_one(addr, "postfix enforce.test"), ENFORCE_REPLY);
}

#[test]
fn an_empty_file_at_start_exits_2_and_names_the_file() {
    let world = world();
    let dir = scratch_dir("start-empty");
    let config = write_config(&dir, "# nothing but a comment\n");
    let mut d = Daemon::spawn(&world, &dir, &config);
    // The first line that tells: a daemon that started on the defaults would run on (and be
    // killed when `d` drops), so it fails here rather than hang in `wait`.
    let first = d.wait_for(|l| l.contains("listening on") || l.contains("empty"));
    let file = config.display().to_string();
    assert!(
        first
            .as_deref()
            .is_some_and(|l| l.contains(&file) && l.contains("empty")),
        "{first:?} in {:?}",
        d.lines
    );
    let (status, lines) = d.wait();
    assert_eq!(status.code(), Some(2), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("listening on")),
        "{lines:?}"
    );
}

#[test]
fn a_missing_file_at_start_exits_2_and_names_the_file() {
    let world = world();
    let dir = scratch_dir("start-missing");
    let config = dir.join("absent.yml");
    let (status, lines) = Daemon::spawn(&world, &dir, &config).wait();
    assert_eq!(status.code(), Some(2), "{lines:?}");
    let want = format!("cannot read {}", config.display());
    assert!(lines.iter().any(|l| l.contains(&want)), "{lines:?}");
}
