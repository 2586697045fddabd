//! Durable writes: the one way the store, the index, sync's staging and the
//! publisher's site put bytes on disk. Each write either lands whole and
//! fsynced under its final name or leaves only a `.tmp-*` file that the next
//! writer removes (`leftovers`), so a kill at any point never leaves a
//! half-written file where a reader looks (SPEC.md §2.1, §7 step 10).
//!
//! A module of its own so that `store`, `index` and `sync` all depend on it
//! rather than on each other.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Code, Rejection, reject};
use crate::fetch::io_error;

/// Site files are world-readable: a store or site is a mirror.
const SITE_FILE_MODE: u32 = 0o644;

/// Write `bytes` to `path` atomically: temp file in the same directory, fsync,
/// rename, fsync the directory. Files are world-readable (a store is a mirror).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Rejection> {
    write_atomic_with(path, Some(SITE_FILE_MODE), |f| {
        let mut f = f;
        f.write_all(bytes)
    })
}

/// [`write_atomic`] for a file produced by `fill` (which writes into the open
/// temporary file, buffering as it likes); `mode` sets the permissions, `None`
/// keeps the temporary file's private ones (the local index is not served).
pub fn write_atomic_with(
    path: &Path,
    mode: Option<u32>,
    fill: impl FnOnce(&File) -> io::Result<()>,
) -> Result<(), Rejection> {
    let loc = path.display().to_string();
    let dir = path
        .parent()
        .ok_or_else(|| reject(&loc, Code::IoError, "has no parent directory"))?;
    // A bare file name (`out.cbor`) lives in the working directory.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::create_dir_all(dir).map_err(|e| io_error(&dir.display().to_string(), &e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| io_error(&dir.display().to_string(), &e))?;
    fill(tmp.as_file()).map_err(|e| io_error(&loc, &e))?;
    if let Some(mode) = mode {
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_error(&loc, &e))?;
    }
    tmp.as_file().sync_all().map_err(|e| io_error(&loc, &e))?;
    tmp.persist(path).map_err(|e| io_error(&loc, &e.error))?;
    sync_dir(dir)
}

/// Create `path` (which must not exist) holding `bytes`, fsynced: sync's
/// staging directory is fresh, so an existing file there is a bug or an
/// attack, never something to overwrite.
pub fn create_new(path: &Path, bytes: &[u8]) -> Result<(), Rejection> {
    let loc = path.display().to_string();
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| io_error(&d.display().to_string(), &e))?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(SITE_FILE_MODE)
        .open(path)
        .map_err(|e| io_error(&loc, &e))?;
    f.write_all(bytes).map_err(|e| io_error(&loc, &e))?;
    f.sync_all().map_err(|e| io_error(&loc, &e))
}

/// Move the fsynced file `src` to `dst` (same file system) and fsync `dst`'s
/// directory so the rename survives a crash.
pub fn rename_durably(src: &Path, dst: &Path) -> Result<(), Rejection> {
    let parent = dst.parent();
    if let Some(d) = parent {
        std::fs::create_dir_all(d).map_err(|e| io_error(&d.display().to_string(), &e))?;
    }
    std::fs::rename(src, dst).map_err(|e| io_error(&dst.display().to_string(), &e))?;
    match parent {
        Some(d) => sync_dir(d),
        None => Ok(()),
    }
}

/// fsync a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), Rejection> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(&dir.display().to_string(), &e))
}
