//! `consentry-publish`: parse arguments, run, map errors to exit code 2.

use clap::Parser;

fn main() {
    let cli = consentry_publish::cli::Cli::parse();
    if let Err(e) = consentry_publish::cli::run(cli) {
        if e.downcast_ref::<consentry_publish::cli::StdoutClosed>()
            .is_some()
        {
            std::process::exit(consentry_publish::cli::EXIT_BROKEN_PIPE);
        }
        consentry_publish::cli::report_error(&e);
        std::process::exit(2);
    }
}
