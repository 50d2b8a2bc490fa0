//! A throwaway PostgreSQL server for the tests: `initdb` into a temporary directory, `postgres`
//! on a free loopback port with its socket directory there, stopped (fast shutdown) on drop.
//!
//! PostgreSQL refuses to run as root: as root (CI), both run as the `postgres` user (Debian's
//! package creates it) through `setpriv`, with the directory handed to that user.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The PostgreSQL programs' directory: `$MTA_STS_PG_BIN`, or the newest
/// `/usr/lib/postgresql/<version>/bin` holding `initdb`.
pub(crate) fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("MTA_STS_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

/// A running server.
#[derive(Debug)]
pub(crate) struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// The user to run as when we are root: (uid, gid).
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
}

impl PgServer {
    /// initdb and start; `None` when PostgreSQL is not installed (the caller decides whether
    /// that is a failure). Panics when it is installed but does not start.
    pub(crate) fn start() -> Option<Self> {
        let bin = bin_dir()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let run_as = if std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(1)
            == 0
        {
            let id = |flag: &str| -> u32 {
                let out = Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .expect("id");
                assert!(
                    out.status.success(),
                    "running as root and no `postgres` user"
                );
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("id's answer")
            };
            let (uid, gid) = (id("-u"), id("-g"));
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
            Some((uid, gid))
        } else {
            None
        };
        let port = free_port();
        let mut server = Self {
            bin,
            dir,
            port,
            run_as,
            child: None,
        };
        let data = server.data_dir();
        let out = server
            .command("initdb")
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        server.run();
        Some(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.run_as {
            None => Command::new(path),
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(path);
                c
            }
        }
    }

    /// Starts `postgres` (again, after [`stop`](Self::stop)) and waits until it accepts
    /// connections.
    pub(crate) fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).expect("log file");
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(self.dir.path().join("postgres.log"), Some(uid), Some(gid))
                .expect("chown log");
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn postgres");
        // setpriv execs postgres: the child's pid is the postmaster's.
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("postgres exited with {status}: {}", self.log());
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-t",
                    "1",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready in 30 s: {}",
                self.log()
            );
            // pg_isready answers at once while the server starts; poll at a short interval.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Stops the server (fast shutdown: SIGINT ends the sessions, then the postmaster) and waits
    /// for it to exit; SIGKILL after 20 s.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let signal = |sig: &str| {
            let _ = Command::new("kill").args([sig, &pid]).status();
        };
        signal("-INT");
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                signal("-KILL");
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The loopback port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// A DSN in the URL form both daemons take.
    pub(crate) fn dsn(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs SQL with `psql` (as the superuser), panicking on failure; returns its output.
    pub(crate) fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port free on 127.0.0.1 (bound and released: the server takes it right after).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
