//! Progress of long commands (`generate`, `publish`, `import`), reported by
//! the library to whatever the caller passes: the binary draws indicatif bars
//! on a terminal (never otherwise, never with `-q`); tests and library users
//! pass [`Silent`].

/// What a count counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Declarations, files, ranges: plain numbers.
    Items,
    /// Bytes read or written.
    Bytes,
}

/// A receiver of progress. Called from worker threads too.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// A new phase named `what` (e.g. "writing files"), of `total` units when
    /// known; it ends the previous phase.
    fn start(&self, what: &str, total: Option<u64>, unit: Unit);
    /// `n` more units of the current phase are done.
    fn inc(&self, n: u64);
    /// The current phase is done.
    fn finish(&self);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _what: &str, _total: Option<u64>, _unit: Unit) {}
    fn inc(&self, _n: u64) {}
    fn finish(&self) {}
}

/// A reader that reports the bytes read through it.
#[derive(Debug)]
pub struct CountingReader<'a, R> {
    pub inner: R,
    pub progress: &'a dyn Progress,
}

impl<R: std::io::Read> std::io::Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}
