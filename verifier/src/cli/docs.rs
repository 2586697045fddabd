//! `consentry completions` and `consentry man`: generated from the same clap
//! definitions as `--help`, so they cannot drift from the flags.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, w};
use crate::error::Rejection;
use crate::fetch::io_error;

/// Print a shell completion script
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell
    #[arg(value_enum)]
    shell: Shell,
}

/// Write man pages into a directory
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory for consentry.1 and consentry-SUBCOMMAND.1 (created if missing)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub(super) fn completions(
    args: &CompletionsArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "consentry", &mut buf);
    w(stdout, &String::from_utf8_lossy(&buf))?;
    Ok(0)
}

pub(super) fn man(args: &ManArgs, stdout: &mut dyn Write) -> Result<i32, Rejection> {
    let dir = &args.out;
    let loc = dir.display().to_string();
    std::fs::create_dir_all(dir).map_err(|e| io_error(&loc, &e))?;
    let cmd = Cli::command();
    let mut written = Vec::new();
    let mut page = |name: String, c: clap::Command| -> Result<(), Rejection> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c)
            .title(name.clone())
            .render(&mut buf)
            .map_err(|e| io_error(&loc, &e))?;
        let path = dir.join(format!("{name}.1"));
        crate::fsio::write_atomic(&path, &buf)?;
        written.push(path.display().to_string());
        Ok(())
    };
    page("consentry".into(), cmd.clone())?;
    for sub in cmd.get_subcommands() {
        page(format!("consentry-{}", sub.get_name()), sub.clone())?;
    }
    w(stdout, &format!("{}\n", written.join("\n")))?;
    Ok(0)
}
