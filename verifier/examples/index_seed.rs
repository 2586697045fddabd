//! Write the `index` fuzz target's seed (the index file of its fixed state)
//! to the path given: `cargo run -p consentry --example index_seed -- FILE`.
//! `fuzz/seed.py` runs it.

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: index_seed FILE");
        std::process::exit(2);
    };
    if let Err(e) = std::fs::write(&path, consentry::fuzzing::index_seed()) {
        eprintln!(
            "error: cannot write {}: {e}",
            std::path::Path::new(&path).display()
        );
        std::process::exit(2);
    }
}
