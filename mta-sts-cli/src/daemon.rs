//! `mta-sts daemon`: the command line of mta-sts-postfix's Postfix socketmap policy daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use mta_sts_postfix::config::{DEFAULT_CONFIG_PATH, parse_resolver};
use mta_sts_postfix::{LogLevel, Options};

/// `mta-sts daemon` options.
#[derive(Debug, clap::Args)]
pub(crate) struct DaemonArgs {
    /// The configuration file, in postfix-mta-sts-resolver's format (mta-sts-daemon.yml).
    #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// A DNS server to ask, instead of those of /etc/resolv.conf (repeatable; overrides the
    /// `resolvers` key).
    #[arg(long = "resolver", value_name = "IP:PORT", value_parser = parse_resolver)]
    resolvers: Vec<SocketAddr>,
    /// Extra trust anchors (PEM) for policy hosts (overrides the `ca_file` key).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// The HTTPS port of policy hosts, for test worlds only (overrides the `https_port` key).
    #[arg(long, value_name = "N")]
    https_port: Option<u16>,
    /// Log level.
    #[arg(short, long, value_enum, default_value_t = Verbosity::Info)]
    verbosity: Verbosity,
}

/// postfix-mta-sts-resolver's log levels.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Verbosity {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
    Crit,
}

impl From<Verbosity> for LogLevel {
    fn from(v: Verbosity) -> Self {
        match v {
            Verbosity::Debug => Self::Debug,
            Verbosity::Info => Self::Info,
            Verbosity::Warn => Self::Warn,
            Verbosity::Error => Self::Error,
            Verbosity::Fatal => Self::Fatal,
            Verbosity::Crit => Self::Crit,
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT. Exit status 0 after a clean shutdown, 1 when it
/// could not start, 2 for an unusable configuration.
pub(crate) fn run(args: DaemonArgs) -> ExitCode {
    mta_sts_postfix::run(&Options {
        config: args.config,
        resolvers: args.resolvers,
        ca_file: args.ca_file,
        https_port: args.https_port,
        log_level: args.verbosity.into(),
        clock: None,
    })
}
