//! The cache file: a snapshot of the policies written atomically, and read back so that a
//! damaged file never costs the valid policies in it and never stops an MTA from starting.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mta_sts_core::{ImportReport, PolicyCache, Snapshot, SnapshotError, UnixTime};

/// Why a cache snapshot file could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum PersistError {
    /// Reading or writing the file failed.
    Io(io::Error),
    /// The file is not a snapshot (not JSON of the right shape).
    Format(String),
    /// The snapshot was refused by the cache (foreign, corrupt or from a newer version).
    Snapshot(SnapshotError),
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cache file: {e}"),
            Self::Format(d) => write!(f, "cache file is not an mta-sts snapshot: {d}"),
            Self::Snapshot(e) => write!(f, "cache file refused: {e}"),
        }
    }
}

impl std::error::Error for PersistError {}

/// The largest cache file read (256 MiB: a full cache of 100,000 policies of a kilobyte each
/// fits); a longer one is not a cache file of ours.
pub const MAX_CACHE_FILE: u64 = 256 << 20;

/// Reads a snapshot file written by [`save_snapshot`]; `Ok(None)` when the file does not exist.
/// Entries of the wrong shape are left out and counted ([`Snapshot::malformed`]); a file that
/// is not such a document (not JSON, truncated, longer than [`MAX_CACHE_FILE`]) is an error.
pub fn load_snapshot(path: &Path) -> Result<Option<Snapshot>, PersistError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PersistError::Io(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_CACHE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(PersistError::Io)?;
    if bytes.len() as u64 > MAX_CACHE_FILE {
        return Err(PersistError::Format(format!(
            "longer than {MAX_CACHE_FILE} bytes"
        )));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| PersistError::Format(e.to_string()))
}

/// Writes a snapshot atomically: to a temporary file beside `path`, flushed to disk, then renamed
/// over `path`, so that a crash leaves either the old file or the new one, never half of one.
pub fn save_snapshot(path: &Path, snapshot: &Snapshot) -> Result<(), PersistError> {
    let json = serde_json::to_vec(snapshot).map_err(|e| PersistError::Format(e.to_string()))?;
    write_atomically(path, &json).map_err(PersistError::Io)
}

/// Writes `bytes` to `path` atomically: to a temporary file beside it, flushed to disk, then
/// renamed over `path`. The temporary file is removed if anything fails.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // Unique per process and per call: two threads of one process saving at once must not
    // write into the same temporary file.
    static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = temporary(path, &n.to_string());
    let write = || -> io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// What [`load_state_file`] found and did with a state file other than the cache's (the TLSRPT
/// aggregate and outbox): the value restored from it, if any, and the same problems as a
/// [`CacheFileReport`].
#[derive(Debug)]
pub(crate) struct StateFileReport<T> {
    /// What `restore` made of the file; `None` without a usable file.
    pub(crate) loaded: Option<T>,
    /// The file could not be used: why, and where it was moved.
    pub(crate) set_aside: Option<(String, Option<PathBuf>)>,
    /// The file exists but could not be read.
    pub(crate) unreadable: Option<io::Error>,
    /// Temporary files of interrupted saves that were removed.
    pub(crate) stale_temporaries: usize,
    /// Why the file cannot be written, if a trial write beside it failed.
    pub(crate) not_writable: Option<io::Error>,
}

/// Loads a state file the way [`load_cache_file`] loads the cache file: stale temporary files
/// removed, a file of at most `max` bytes handed to `restore`, a file `restore` refuses (or a
/// longer one) set aside, an unreadable one reported, a trial write beside it.
pub(crate) fn load_state_file<T>(
    path: &Path,
    now: UnixTime,
    max: u64,
    restore: impl FnOnce(&[u8]) -> Result<T, String>,
) -> StateFileReport<T> {
    let mut report = StateFileReport {
        loaded: None,
        set_aside: None,
        unreadable: None,
        stale_temporaries: remove_stale_temporaries(path),
        not_writable: None,
    };
    let read = std::fs::File::open(path).and_then(|file| {
        let mut bytes = Vec::new();
        file.take(max + 1).read_to_end(&mut bytes)?;
        Ok(bytes)
    });
    let whole_problem = match read {
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            report.unreadable = Some(e);
            None
        }
        Ok(bytes) if bytes.len() as u64 > max => Some(format!("longer than {max} bytes")),
        Ok(bytes) => match restore(&bytes) {
            Ok(value) => {
                report.loaded = Some(value);
                None
            }
            Err(why) => Some(why),
        },
    };
    if let Some(why) = whole_problem {
        report.set_aside = Some((why, set_aside(path, now).ok()));
    }
    report.not_writable = trial_write(path).err();
    report
}

impl<T> fmt::Display for StateFileReport<T> {
    /// The problems in one line for the log (empty when there is none).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some((why, aside)) = &self.set_aside {
            parts.push(match aside {
                Some(p) => format!("the file is unusable ({why}), moved to {}", p.display()),
                None => format!("the file is unusable ({why}) and could not be moved"),
            });
        }
        if let Some(e) = &self.unreadable {
            parts.push(format!("the file cannot be read ({e})"));
        }
        if self.stale_temporaries > 0 {
            parts.push(format!(
                "{} temporary files of interrupted saves removed",
                self.stale_temporaries
            ));
        }
        if let Some(e) = &self.not_writable {
            parts.push(format!("the file cannot be written ({e})"));
        }
        f.write_str(&parts.join("; "))
    }
}

impl<T> StateFileReport<T> {
    /// Whether anything is worth a warning.
    pub(crate) fn has_problems(&self) -> bool {
        self.set_aside.is_some() || self.unreadable.is_some() || self.not_writable.is_some()
    }
}

/// What [`load_cache_file`] found and did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct CacheFileReport {
    /// What the import did with the file's entries (all zero without a file).
    pub import: ImportReport,
    /// The file could not be used whole (not a snapshot, truncated, of another program or
    /// version): why, and where it was moved, so that the cache starts empty and the next save
    /// does not overwrite it. `None` for the place when it could not be moved either.
    pub set_aside: Option<(String, Option<PathBuf>)>,
    /// The file exists but could not be read (permissions): the cache starts empty.
    pub unreadable: Option<io::Error>,
    /// Temporary files of interrupted saves that were removed.
    pub stale_temporaries: usize,
    /// Why the file cannot be written, if a trial write beside it failed: policies learned now
    /// will not survive a restart.
    pub not_writable: Option<io::Error>,
}

/// Loads the cache file at `path` into `cache`, at `now`, the way that never stops an MTA from
/// starting, and says what it did (the caller logs it; the counters are exported through the
/// `metrics` facade: `mta_sts_cache_file_entries_skipped_total`, `mta_sts_cache_file_set_aside_total`):
///
/// - temporary files of saves that were interrupted (a crash, `kill -9`) are removed;
/// - every valid entry loads; an entry that is wrong is skipped and counted
///   ([`PolicyCache::import`]);
/// - a file that cannot be used whole (not JSON, truncated, another program's or another
///   version's) is renamed to `<path>.unreadable-<unix time>` (never over another file) and the
///   cache starts empty;
/// - a file that cannot be read (permissions) leaves the cache empty;
/// - a trial write beside the file tells at once whether saving will work.
pub fn load_cache_file(path: &Path, cache: &mut PolicyCache, now: UnixTime) -> CacheFileReport {
    let mut report = CacheFileReport {
        stale_temporaries: remove_stale_temporaries(path),
        ..CacheFileReport::default()
    };
    let whole_problem = match load_snapshot(path) {
        Ok(None) => None,
        Ok(Some(snapshot)) => match cache.import(snapshot, now) {
            Ok(import) => {
                report.import = import;
                None
            }
            Err(e) => Some(e.to_string()),
        },
        Err(PersistError::Io(e)) => {
            report.unreadable = Some(e);
            None
        }
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = whole_problem {
        report.set_aside = Some((why, set_aside(path, now).ok()));
        metrics::counter!("mta_sts_cache_file_set_aside_total").increment(1);
    }
    metrics::counter!("mta_sts_cache_file_entries_skipped_total")
        .increment(report.import.skipped as u64);
    report.not_writable = trial_write(path).err();
    report
}

/// The name of a save's temporary file: beside `path`, `<name>.tmp<pid>-<n>`.
fn temporary(path: &Path, tag: &str) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}-{tag}", std::process::id()));
    PathBuf::from(tmp)
}

/// Removes the temporary files of interrupted saves of `path`: those of processes that no
/// longer run (where the system says which run: `/proc`), else those older than ten minutes (a
/// save takes milliseconds). Returns how many were removed.
fn remove_stale_temporaries(path: &Path) -> usize {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return 0;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.tmp", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let proc_fs = Path::new("/proc/self").exists();
    let mut removed = 0;
    for entry in entries.flatten().take(100_000) {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let abandoned = if proc_fs {
            pid == std::process::id() || !Path::new("/proc").join(pid.to_string()).exists()
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(600))
        };
        if abandoned && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Renames an unusable cache file out of the way: `<path>.unreadable-<now>`, or with `-<n>`
/// appended when that name is taken (a hard link then an unlink, so nothing is overwritten).
fn set_aside(path: &Path, now: UnixTime) -> io::Result<PathBuf> {
    for n in 0..100 {
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".unreadable-{}", now.as_secs()));
        if n > 0 {
            aside.push(format!("-{n}"));
        }
        let aside = PathBuf::from(aside);
        match std::fs::hard_link(path, &aside) {
            Ok(()) => {
                std::fs::remove_file(path)?;
                return Ok(aside);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => {
                // No hard links here (another file system kind): rename, unless taken.
                if aside.exists() {
                    continue;
                }
                std::fs::rename(path, &aside)?;
                return Ok(aside);
            }
        }
    }
    Err(io::Error::other("no free name to set the cache file aside"))
}

/// Writes and removes a small file beside `path`, as a save would: whether saving will work.
fn trial_write(path: &Path) -> io::Result<()> {
    let tmp = temporary(path, "trial");
    let written = std::fs::File::create(&tmp).and_then(|mut f| f.write_all(b"{}"));
    let _ = std::fs::remove_file(&tmp);
    written
}

impl fmt::Display for CacheFileReport {
    /// One line for the log: what loaded and what did not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.import;
        write!(f, "{} policies loaded", i.loaded)?;
        if i.skipped > 0 {
            write!(f, ", {} entries skipped", i.skipped)?;
            let problems: Vec<String> = i.problems.iter().map(ToString::to_string).collect();
            write!(f, " ({})", problems.join("; "))?;
        }
        if i.expired > 0 {
            write!(f, ", {} expired", i.expired)?;
        }
        if i.not_loaded > 0 {
            write!(
                f,
                ", {} not loaded (over capacity or older than cached)",
                i.not_loaded
            )?;
        }
        if let Some((why, aside)) = &self.set_aside {
            match aside {
                Some(p) => write!(
                    f,
                    "; the file is unusable ({why}), moved to {}",
                    p.display()
                )?,
                None => write!(f, "; the file is unusable ({why}) and could not be moved")?,
            }
        }
        if let Some(e) = &self.unreadable {
            write!(f, "; the file cannot be read ({e})")?;
        }
        if self.stale_temporaries > 0 {
            write!(
                f,
                "; {} temporary files of interrupted saves removed",
                self.stale_temporaries
            )?;
        }
        if let Some(e) = &self.not_writable {
            write!(
                f,
                "; the file cannot be written ({e}): policies will not survive a restart"
            )?;
        }
        Ok(())
    }
}

impl CacheFileReport {
    /// Whether anything is worth a warning: entries skipped, a file set aside or unreadable, a
    /// file that cannot be written.
    pub fn has_problems(&self) -> bool {
        self.import.skipped > 0
            || self.set_aside.is_some()
            || self.unreadable.is_some()
            || self.not_writable.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_file_round_trip_atomic() {
        use mta_sts_core::{Begin, Config};
        let dir = std::env::temp_dir().join(format!("mta-sts-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cache.json");
        assert!(load_snapshot(&path).unwrap().is_none());
        let cache = PolicyCache::new(Config::default());
        let now = UnixTime::from_secs(1_700_000_000);
        save_snapshot(&path, &cache.export(now)).unwrap();
        let loaded = load_snapshot(&path).unwrap().unwrap();
        let mut again = PolicyCache::new(Config::default());
        assert_eq!(again.import(loaded, now).unwrap().loaded, 0);
        assert!(matches!(again.begin("example.com", now), Begin::Started(_)));
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(load_snapshot(&path), Err(PersistError::Format(_))));
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const NOW: UnixTime = UnixTime::from_secs(1_700_000_000);

    /// A directory of its own for one test.
    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("mta-sts-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entry(domain: &str, fetched_at: UnixTime, policy: &str) -> mta_sts_core::SnapshotEntry {
        mta_sts_core::SnapshotEntry::new(domain, "1", fetched_at, fetched_at, policy)
    }

    const POLICY: &str = "version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: 604800\n";

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_file_that_cannot_be_used_whole_is_moved_aside_and_the_cache_starts_empty() {
        let dir = dir("aside");
        let path = dir.join("cache.json");
        let good =
            serde_json::to_vec(&Snapshot::new(vec![entry("a.example", NOW, POLICY)])).unwrap();
        let foreign = br#"{"format":"postfix-mta-sts-resolver","version":1,"entries":[]}"#;
        let newer = String::from_utf8(good.clone())
            .unwrap()
            .replace("\"version\":1", "\"version\":2");
        let cases: [(&str, &[u8]); 5] = [
            ("empty", b""),
            ("truncated", &good[..good.len() / 2]),
            ("random", &[0x9c, 0xff, 0x00, 0x13, 0x37, 0x42]),
            ("foreign", foreign),
            ("newer", newer.as_bytes()),
        ];
        for (what, bytes) in cases {
            std::fs::write(&path, bytes).unwrap();
            let mut cache = PolicyCache::new(mta_sts_core::Config::default());
            let report = load_cache_file(&path, &mut cache, NOW);
            let (why, aside) = report.set_aside.clone().expect(what);
            let aside = aside.expect("moved");
            assert!(!why.is_empty(), "{what}");
            assert!(cache.is_empty(), "{what}");
            assert!(
                !path.exists(),
                "{what}: the next save will not overwrite it"
            );
            assert_eq!(
                std::fs::read(&aside).unwrap(),
                bytes,
                "{what}: kept as it was"
            );
            assert!(
                report.has_problems() && report.to_string().contains("unusable"),
                "{what}"
            );
        }
        // Five set aside in the same second: five names, none overwritten.
        assert_eq!(names(&dir).len(), 5, "{:?}", names(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_bad_entry_of_fifty_costs_only_itself() {
        let dir = dir("entries");
        let path = dir.join("cache.json");
        let mut entries: Vec<_> = (0..50)
            .map(|i| entry(&format!("d{i}.example"), NOW, POLICY))
            .collect();
        entries[10] = entry(
            "d10.example",
            NOW.saturating_add(Duration::from_secs(3600)),
            POLICY,
        );
        entries[20] = entry("d20.example", NOW, "version: STSv1\nmode: Enforce\n");
        entries[30] = entry("[192.0.2.1]", NOW, POLICY);
        entries[40] = entry("d0.example", NOW, POLICY);
        save_snapshot(&path, &Snapshot::new(entries)).unwrap();
        let mut cache = PolicyCache::new(mta_sts_core::Config::default());
        let report = load_cache_file(&path, &mut cache, NOW);
        assert_eq!((report.import.loaded, report.import.skipped), (46, 4));
        assert!(report.set_aside.is_none() && path.exists());
        assert_eq!(cache.len(), 46);
        assert!(report.has_problems());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_files_of_interrupted_saves_are_removed_and_nothing_else() {
        let dir = dir("temporaries");
        let path = dir.join("cache.json");
        let dead = "cache.json.tmp4194303-3"; // a pid above every pid_max: no such process
        let ours = format!("cache.json.tmp{}-7", std::process::id());
        for name in [
            dead,
            &ours,
            "cache.json.tmpx",
            "cache.json.tmp1-",
            "other.json.tmp99999-1",
        ] {
            std::fs::write(dir.join(name), b"{").unwrap();
        }
        let mut cache = PolicyCache::new(mta_sts_core::Config::default());
        let report = load_cache_file(&path, &mut cache, NOW);
        assert_eq!(report.stale_temporaries, 2);
        assert_eq!(
            names(&dir),
            [
                "cache.json.tmp1-",
                "cache.json.tmpx",
                "other.json.tmp99999-1"
            ]
        );
        assert!(!report.has_problems(), "{report}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cache_file_that_cannot_be_written_is_reported_at_once() {
        let missing = std::env::temp_dir()
            .join("mta-sts-no-such-dir")
            .join("cache.json");
        let mut cache = PolicyCache::new(mta_sts_core::Config::default());
        let report = load_cache_file(&missing, &mut cache, NOW);
        assert!(report.not_writable.is_some());
        assert!(
            report.to_string().contains("will not survive a restart"),
            "{report}"
        );
        let dir = dir("writable");
        let report = load_cache_file(&dir.join("cache.json"), &mut cache, NOW);
        assert!(report.not_writable.is_none() && !report.has_problems());
        assert!(names(&dir).is_empty(), "the trial file is gone");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
