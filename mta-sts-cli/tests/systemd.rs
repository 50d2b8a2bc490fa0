//! `mta-sts daemon` under systemd (REQUIREMENTS.md P1, P2): readiness notifications on a real
//! notify socket (a unix datagram socket the test binds, `NOTIFY_SOCKET` naming it), and the
//! socket-activation cases that need no inherited listener (tests/systemd_activation.rs passes
//! real ones).

mod daemon_support;

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::Command;

use daemon_support::{
    BIN, Daemon, ENFORCE_REPLY, LOG_WAIT, ask_one, ask_unix, scratch_dir, world, write_config,
};

/// The next notification: its `KEY=VALUE` lines.
fn next(socket: &UnixDatagram) -> Vec<String> {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the wait bound");
    String::from_utf8(buf[..n].to_vec())
        .expect("a UTF-8 notification")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn has(lines: &[String], line: &str) -> bool {
    lines.iter().any(|l| l == line)
}

fn notify_socket(dir: &Path) -> (UnixDatagram, String) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket.set_read_timeout(Some(LOG_WAIT)).unwrap();
    (socket, path.to_str().expect("a UTF-8 path").to_owned())
}

fn yaml_unix(path: &Path) -> String {
    format!("path: {}\n", path.display())
}

#[test]
fn p1_ready_once_listening_reloading_and_ready_around_sighup_stopping_on_sigterm() {
    let world = world();
    let dir = scratch_dir("p1-notify");
    let (notify, notify_path) = notify_socket(&dir);
    let sock = dir.join("daemon.sock");
    let config = write_config(&dir, &yaml_unix(&sock));
    let mut command = Command::new(BIN);
    command.env("NOTIFY_SOCKET", &notify_path);
    let d = Daemon::spawn_command(command, &world, &dir, &config);

    // READY=1 comes once the socket listens: a connection made right after it is answered.
    let ready = next(&notify);
    assert!(has(&ready, "READY=1"), "{ready:?}");
    assert!(has(&ready, "STATUS=serving"), "{ready:?}");
    UnixStream::connect(&sock).expect("the socket listens when READY=1 arrives");
    assert_eq!(ask_unix(&sock, &["postfix enforce.test"]), [ENFORCE_REPLY]);

    // A reload: RELOADING=1 with the monotonic time of its start, then READY=1.
    std::fs::write(&config, format!("{}cache_grace: 120\n", yaml_unix(&sock))).unwrap();
    d.signal("HUP");
    let reloading = next(&notify);
    assert!(has(&reloading, "RELOADING=1"), "{reloading:?}");
    let usec: u64 = reloading
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number of microseconds");
    assert!(usec > 0);
    let ready = next(&notify);
    assert!(has(&ready, "READY=1"), "{ready:?}");
    assert!(
        has(&ready, "STATUS=serving (configuration reloaded)"),
        "{ready:?}"
    );

    // A reload that fails keeps serving: still RELOADING=1 then READY=1, the status says why.
    std::fs::write(&config, "port: [not a port\n").unwrap();
    d.signal("HUP");
    assert!(has(&next(&notify), "RELOADING=1"));
    let ready = next(&notify);
    assert!(has(&ready, "READY=1"), "{ready:?}");
    assert!(
        ready
            .iter()
            .any(|l| l.starts_with("STATUS=") && l.contains("reload failed")),
        "{ready:?}"
    );
    assert_eq!(ask_unix(&sock, &["postfix enforce.test"]), [ENFORCE_REPLY]);

    // SIGTERM: STOPPING=1, then a clean exit.
    d.signal("TERM");
    let stopping = next(&notify);
    assert!(has(&stopping, "STOPPING=1"), "{stopping:?}");
    let (status, lines) = d.wait();
    assert!(status.success(), "{status:?} {lines:?}");
}

#[cfg(target_os = "linux")]
#[test]
fn p1_notifications_reach_an_abstract_notify_socket() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;

    let world = world();
    let dir = scratch_dir("p1-abstract");
    let name = format!("mta-sts-p1-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let notify = UnixDatagram::bind_addr(&addr).expect("bind an abstract notify socket");
    notify.set_read_timeout(Some(LOG_WAIT)).unwrap();
    let config = write_config(&dir, "port: 0\n");
    let mut command = Command::new(BIN);
    command.env("NOTIFY_SOCKET", format!("@{name}"));
    let d = Daemon::spawn_command(command, &world, &dir, &config);
    assert!(has(&next(&notify), "READY=1"));
    let d = d.started();
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
    d.signal("TERM");
    assert!(has(&next(&notify), "STOPPING=1"));
    assert!(d.wait().0.success());
}

#[test]
fn p1_a_daemon_that_cannot_start_says_why_and_never_ready() {
    let world = world();
    let dir = scratch_dir("p1-fail");
    let (notify, notify_path) = notify_socket(&dir);
    // A regular file where the unix socket should be: the bind fails.
    let occupied = dir.join("occupied");
    std::fs::write(&occupied, "").unwrap();
    let config = write_config(&dir, &yaml_unix(&occupied));
    let mut command = Command::new(BIN);
    command.env("NOTIFY_SOCKET", &notify_path);
    let d = Daemon::spawn_command(command, &world, &dir, &config);
    let status = next(&notify);
    assert!(!has(&status, "READY=1"), "{status:?}");
    assert!(
        status
            .iter()
            .any(|l| l.starts_with("STATUS=cannot listen on unix")),
        "{status:?}"
    );
    let (exit, _) = d.wait();
    assert_eq!(exit.code(), Some(1));
}

#[test]
fn p2_listen_fds_for_another_process_are_ignored() {
    // LISTEN_PID names another process: the sockets are not ours, the file's listener is used.
    let world = world();
    let dir = scratch_dir("p2-other-pid");
    let config = write_config(&dir, "port: 0\n");
    let mut command = Command::new(BIN);
    command.env("LISTEN_FDS", "1").env("LISTEN_PID", "1");
    let d = Daemon::spawn_command(command, &world, &dir, &config).started();
    assert!(
        !d.lines
            .iter()
            .any(|l| l.contains("passed by the service manager")),
        "{:?}",
        d.lines
    );
    assert_eq!(ask_one(d.addr(), "postfix enforce.test"), ENFORCE_REPLY);
}

#[test]
fn p2_a_passed_descriptor_that_is_not_a_listening_socket_stops_the_start() {
    let world = world();
    let dir = scratch_dir("p2-not-a-socket");
    let config = write_config(&dir, "port: 0\n");
    // bash gives the daemon its own pid in LISTEN_PID ($$ survives exec) and /dev/null as
    // descriptor 3.
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\" 3</dev/null")
        .arg(BIN);
    let d = Daemon::spawn_command(command, &world, &dir, &config);
    let (status, lines) = d.wait();
    assert_eq!(status.code(), Some(1), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains(
            "socket 0 passed by the service manager (LISTEN_FDS, descriptor 3) cannot be served"
        )),
        "{lines:?}"
    );
}
