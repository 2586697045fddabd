//! `consentry`: parse the command line, call the library, map the outcome to
//! an exit code (0 success, 1 a test answered "no", 2 error).

use clap::Parser;

// A batch `check` allocates per row and per index chunk; the system
// allocator spent a third of such a run in malloc and page clearing.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = consentry::cli::Cli::parse();
    std::process::exit(consentry::cli::main_exit(&cli));
}
