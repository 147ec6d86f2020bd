//! `treadc completions` and `treadc man`: shell completion scripts and man pages generated from
//! the clap definitions in `args.rs`, so they never drift from the flags.

use std::io::Write;

use clap::CommandFactory;

use crate::args::{Cli, CompletionsArgs, ManArgs};
use crate::failure::Failure;

/// Prints the completion script for the asked shell.
pub(crate) fn run_completions(args: CompletionsArgs) -> Result<(), Failure> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "treadc", &mut out);
    out.flush()
        .map_err(|e| Failure::Other(format!("cannot write the completion script: {e}")))
}

/// Prints treadc.1, or writes every page (treadc.1, treadc-SUBCOMMAND.1) into `--out-dir`.
pub(crate) fn run_man(args: ManArgs) -> Result<(), Failure> {
    let cmd = Cli::command();
    match args.out_dir {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .and_then(|()| out.flush())
                .map_err(|e| Failure::Other(format!("cannot write the man page: {e}")))
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(cmd, &dir))
                .map_err(|e| {
                    Failure::Other(format!(
                        "cannot write the man pages to {}: {e}",
                        dir.display()
                    ))
                })?;
            eprintln!("wrote the man pages to {}", dir.display());
            Ok(())
        }
    }
}
