//! One writer per site. `publish`, `refresh`, `gc`, `bundle` and `root
//! init`/`rotate` hold an exclusive lock on the site for their whole run, so
//! a cron `refresh` never signs a head version that a running `publish` then
//! overwrites with an older one (SPEC.md §2.1). The lock is an advisory
//! `flock` on the site directory itself: nothing is written into the served
//! tree (a lock file would be junk on a CDN and would make two publishes of
//! the same registry differ), and the kernel releases it when the process
//! ends, however it ends, so a killed run never leaves the site locked.
//! A site on a network filesystem without `flock` on directories is refused
//! with an error saying so, never written without the lock.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long a command waits for another one's lock by default.
pub const DEFAULT_WAIT: Duration = Duration::from_mins(30);

/// The held lock; released on drop (or when the process dies).
#[derive(Debug)]
pub struct SiteLock {
    _dir: File,
    path: PathBuf,
}

impl SiteLock {
    /// Take the lock on `site_dir` (created if missing) for `command`,
    /// waiting up to `wait` for another holder. `waiting` is called once
    /// when the lock is busy (the binary prints it, like cargo's "Blocking
    /// waiting for file lock").
    pub fn acquire(
        site_dir: &Path,
        command: &str,
        wait: Duration,
        waiting: &dyn Fn(&str),
    ) -> Result<SiteLock> {
        std::fs::create_dir_all(site_dir)
            .with_context(|| format!("creating {}", site_dir.display()))?;
        let dir = File::open(site_dir)
            .with_context(|| format!("opening the site {} to lock it", site_dir.display()))?;
        let deadline = Instant::now() + wait;
        let mut told = false;
        // Bounded: one 100 ms sleep per turn until the deadline.
        loop {
            match dir.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline {
                        return Err(crate::advise!(
                            "the site {} is still locked by another consentry-publish after waiting {} s (this one: {})",
                            "wait for it to finish, or raise --lock-wait",
                            site_dir.display(),
                            wait.as_secs(),
                            command
                        ));
                    }
                    if !told {
                        waiting(&format!(
                            "Blocking: waiting for another consentry-publish to release the site {} ({command} runs next)",
                            site_dir.display()
                        ));
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| {
                        format!(
                            "locking the site {} (its filesystem must support flock on directories)",
                            site_dir.display()
                        )
                    });
                }
            }
        }
        Ok(SiteLock {
            _dir: dir,
            path: site_dir.to_path_buf(),
        })
    }

    /// The locked site directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_then_gives_up_and_nothing_is_written() {
        let d = tempfile::tempdir().unwrap();
        let first = SiteLock::acquire(d.path(), "publish", DEFAULT_WAIT, &|_| {}).unwrap();
        let told = std::sync::Mutex::new(Vec::new());
        let e = SiteLock::acquire(d.path(), "refresh", Duration::from_millis(300), &|m| {
            told.lock().unwrap().push(m.to_string());
        })
        .unwrap_err();
        assert!(format!("{e}").contains("still locked"), "{e}");
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            0,
            "nothing written"
        );
        assert_eq!(told.lock().unwrap().len(), 1);
        drop(first);
        SiteLock::acquire(d.path(), "refresh", Duration::from_millis(300), &|_| {}).unwrap();
    }
}
