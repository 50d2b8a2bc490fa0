//! Socket activation (REQUIREMENTS.md P2): `mta-sts daemon` serves the TCP and unix listeners
//! it is passed (`LISTEN_FDS`, `LISTEN_PID`, descriptors 3 and 4) in place of the file's
//! `host`/`port`/`path`, keeps them across a reload and leaves the unix socket file, which is
//! the service manager's, in place.
//!
//! The listeners are bound here and inherited by the child: bash moves them to descriptors 3
//! and 4 and sets `LISTEN_PID=$$` (its pid, which `exec` keeps) as systemd does. Their
//! close-on-exec flag is cleared for that, so this file holds one test: no other test's child
//! may inherit them.

mod daemon_support;

use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixListener;
use std::process::Command;

use daemon_support::{
    BIN, Daemon, ENFORCE_REPLY, ask_one, ask_unix, scratch_dir, world, write_config,
};

fn inheritable(fd: impl AsFd) {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).expect("clear FD_CLOEXEC");
}

#[test]
fn p2_serves_passed_tcp_and_unix_listeners_in_place_of_the_configured_ones() {
    let world = world();
    let dir = scratch_dir("p2-activation");
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind TCP");
    let tcp_addr = tcp.local_addr().unwrap();
    let sock = dir.join("activated.sock");
    let unix = UnixListener::bind(&sock).expect("bind the unix socket");
    inheritable(&tcp);
    inheritable(&unix);
    let (a, b) = (tcp.as_raw_fd(), unix.as_raw_fd());
    assert!(
        a < 100 && b < 100,
        "the wrapper uses descriptors 100 and 101"
    );

    // The file's own listener cannot be bound (a regular file where its socket would be): the
    // daemon starts only if it does not try.
    let occupied = dir.join("occupied");
    std::fs::write(&occupied, "").unwrap();
    let yaml = format!("path: {}\n", occupied.display());
    let config = write_config(&dir, &yaml);

    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS=2 exec \"$0\" \"$@\" 100<&{a} 101<&{b} {a}<&- {b}<&- \
             3<&100 4<&101 100<&- 101<&-"
        ))
        .arg(BIN);
    let mut d = Daemon::spawn_command(command, &world, &dir, &config).started();
    // The child has its copies; the test's are closed so that only the daemon accepts.
    drop((tcp, unix));
    d.wait_for(|l| l.contains(&format!("listening on unix {}", sock.display())))
        .unwrap_or_else(|| panic!("the unix listener in {:?}", d.lines));
    assert!(
        d.lines
            .iter()
            .any(|l| l.contains("serving 2 sockets passed by the service manager")),
        "{:?}",
        d.lines
    );
    assert_eq!(d.addr(), tcp_addr);
    assert_eq!(ask_one(tcp_addr, "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(ask_unix(&sock, &["postfix enforce.test"]), [ENFORCE_REPLY]);

    // A reload that changes the listen keys keeps the passed sockets (and says so).
    let outcome = d.reload("port: 0\n");
    assert!(outcome.contains("configuration reloaded"), "{outcome}");
    assert!(
        d.lines
            .iter()
            .any(|l| l.contains("change the .socket unit instead")),
        "{:?}",
        d.lines
    );
    assert_eq!(ask_one(tcp_addr, "postfix enforce.test"), ENFORCE_REPLY);
    assert_eq!(ask_unix(&sock, &["postfix enforce.test"]), [ENFORCE_REPLY]);

    // SIGTERM: a clean exit; the unix socket file is the service manager's and stays.
    d.signal("TERM");
    let (status, lines) = d.wait();
    assert!(status.success(), "{status:?} {lines:?}");
    assert!(sock.exists(), "the passed unix socket file was removed");
}
