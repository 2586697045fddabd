//! `consentry`: parse the command line, call the library, map the outcome to
//! an exit code (0 success, 1 a test answered "no", 2 error).

use clap::Parser;

fn main() {
    let cli = consentry::cli::Cli::parse();
    std::process::exit(consentry::cli::main_exit(&cli));
}
