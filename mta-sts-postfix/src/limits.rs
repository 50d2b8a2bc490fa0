//! The open-file limit (`RLIMIT_NOFILE`): raised to the hard limit at start-up, as most servers
//! do (the soft limit is often 1024, too few for `max_connections`), and the connections served
//! at once kept within it, so that accepting never runs out of files and lookups always have
//! sockets.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::Error;

/// Files the daemon needs besides connections and lookups: standard streams, the runtime's
/// event queue and wakers, listeners, the metrics listener and its clients, the cache file.
const BASE_FILES: u64 = 64;

/// The open-file limit before and after start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenFiles {
    /// The soft limit the daemon was started with.
    pub(crate) was: u64,
    /// The soft limit now: the hard limit, unless raising failed.
    pub(crate) now: u64,
}

/// Raises the soft limit on open files to the hard limit.
pub(crate) fn raise_open_files() -> OpenFiles {
    let limit = getrlimit(Resource::Nofile);
    let was = limit.current.unwrap_or(u64::MAX);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if was >= hard {
        return OpenFiles { was, now: was };
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => OpenFiles { was, now: hard },
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit from {was} to {hard}: {e}");
            OpenFiles { was, now: was }
        }
    }
}

/// Files kept for everything but connections: [`BASE_FILES`], and for each lookup that may be
/// under way (`concurrency_limit`) a DNS socket and an HTTPS one.
pub(crate) fn reserved_files(concurrency_limit: usize) -> u64 {
    BASE_FILES + 2 * concurrency_limit as u64
}

/// The connections served at once: `max_connections`, or fewer when the open-file limit
/// cannot hold them beside the reserved files. An error when it cannot hold even one.
pub(crate) fn connection_limit(
    max_connections: usize,
    concurrency_limit: usize,
    open_files: u64,
) -> Result<usize, Error> {
    let reserved = reserved_files(concurrency_limit);
    let room = open_files.saturating_sub(reserved);
    if room == 0 {
        return Err(Error::OpenFiles {
            limit: open_files,
            reserved,
        });
    }
    Ok(usize::try_from(room).map_or(max_connections, |room| room.min(max_connections)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_connections_stands_when_the_limit_holds_it() {
        assert_eq!(connection_limit(10_000, 100, 1 << 20).ok(), Some(10_000));
        assert_eq!(
            connection_limit(10_000, 100, 10_000 + 264).ok(),
            Some(10_000)
        );
    }

    #[test]
    fn a_low_limit_lowers_the_connections_and_keeps_files_for_lookups() {
        assert_eq!(reserved_files(100), 264);
        assert_eq!(connection_limit(10_000, 100, 1024).ok(), Some(1024 - 264));
        assert_eq!(connection_limit(10_000, 10, 1024).ok(), Some(1024 - 84));
    }

    #[test]
    fn a_limit_without_room_for_one_connection_is_an_error() {
        let e = connection_limit(10_000, 100, 264).unwrap_err().to_string();
        assert!(e.contains("(264) leaves no room"), "{e}");
        assert!(connection_limit(10_000, 100, 265).is_ok());
    }

    #[test]
    fn raising_gives_the_hard_limit() {
        let got = raise_open_files();
        let hard = getrlimit(Resource::Nofile).maximum.unwrap_or(u64::MAX);
        assert_eq!(got.now, hard);
        assert!(got.was <= got.now);
    }
}
