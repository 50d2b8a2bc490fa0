//! `mta-sts generate-assets DIR` (hidden): the man pages and shell completions the Debian
//! package ships, generated from this binary's own command-line definition so that they always
//! match it. Run after the build and before `cargo deb --no-build` (README, .ci/run).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;

/// `mta-sts generate-assets` options.
#[derive(Debug, clap::Args)]
pub(crate) struct AssetsArgs {
    /// The directory to write into: `man/man1/` (mta-sts.1 and one page per command, e.g.
    /// mta-sts-daemon.1; `man/` can be a MANPATH entry) and `completions/` (mta-sts.bash,
    /// _mta-sts for zsh, mta-sts.fish).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// Writes the pages and completions for `cmd` (the whole `mta-sts` command).
pub(crate) fn run(args: &AssetsArgs, cmd: clap::Command) -> Result<ExitCode, String> {
    let man = args.dir.join("man").join("man1");
    let completions = args.dir.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    clap_mangen::generate_to(cmd.clone(), &man)
        .map_err(|e| format!("cannot write the man pages in {}: {e}", man.display()))?;
    let mut cmd = cmd;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "mta-sts", &completions).map_err(|e| {
            format!(
                "cannot write the {shell} completions in {}: {e}",
                completions.display()
            )
        })?;
    }
    println!("{}", count(&man) + count(&completions));
    Ok(ExitCode::SUCCESS)
}

/// How many files `dir` holds (the count printed, for the build log).
fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}
