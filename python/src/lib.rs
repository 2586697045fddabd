//! `consentry._consentry`: the Python extension module behind the
//! `consentry` package (python/consentry/). It wraps the verifier library and
//! re-implements nothing: opening a store is `Store::open` + `Store::reader`
//! (which is `Store::current`: root chain, head, manifest, expiry and clock
//! floor) exactly as `consentry check` does; one question is
//! `Reader::answer_input` (the CLI's one-question path); a batch is
//! `Reader::decide_inputs` (parse, sort, dedupe, `Reader::decide_batch`);
//! `sync`, `verify` and `status` are the library calls the CLI makes.
//!
//! A `Reader` keeps its verified index blocks cached in `RefCell`s (it is
//! `Send`, not `Sync`), so each Python `Store` holds its `Store` and `Reader`
//! behind a mutex: a call runs on the caller's thread with the GIL released
//! (`Python::detach`), so other Python threads run while Rust answers, one
//! call at a time per store, and the cache lasts from one call to the next.
//! (A worker thread per store, as before, cost ~40 µs of thread hand-off on
//! every call: `is_allowed` in a loop ran at 16 k/s.) Arrow input is read in place through the Arrow
//! C Data Interface (`arrow-pyarrow`): no string is copied into Python
//! objects.

// pyo3's #[pymodule], #[pyclass] and #[pymethods] expand to the unsafe FFI
// glue of a CPython extension; this crate writes no `unsafe` of its own.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int8Type;
use arrow_array::{
    Array, ArrayRef, BooleanArray, DictionaryArray, PrimitiveArray, RecordBatch, StringArray,
    make_array,
};
use arrow_buffer::BooleanBuffer;
use arrow_data::ArrayData;
use arrow_pyarrow::PyArrowType;
use arrow_schema::{DataType, Field, Schema};
use consentry::error::Family;
use consentry::error::reject;
use consentry::model::{Decision, Reason, Use, parse_territory};
use consentry::store::{IndexCheck, Reader, Reporter, Snapshot, Store};
use consentry::sync::{SyncOptions, SyncReport};
use consentry::verify::{self, Expiry};
use consentry::{Code, Rejection};
use pyo3::exceptions::{PyException, PyRuntimeError, PyTypeError, PyUserWarning, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

// ---- exceptions: one class per SPEC.md §9 code, generated from `Code` ------

/// The exception classes, built once at import from [`Code::ALL`].
struct Errors {
    base: Py<PyType>,
    by_code: HashMap<&'static str, Py<PyType>>,
    /// Code → class name.
    names: HashMap<&'static str, String>,
    invalid_isrc: Py<PyType>,
    /// Class name → class, for the Python package to re-export.
    all: Vec<(String, Py<PyType>)>,
}

static ERRORS: PyOnceLock<Errors> = PyOnceLock::new();

/// `hash_mismatch` → `HashMismatchError`; `io_error` → `IoError`.
fn class_name(wire: &str) -> String {
    let mut s: String = wire
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    if !s.ends_with("Error") {
        s.push_str("Error");
    }
    s
}

fn family_class_name(f: Family) -> &'static str {
    match f {
        Family::Verification => "VerificationError",
        Family::Transport => "TransportError",
        Family::Store => "StoreError",
    }
}

fn family_doc(f: Family) -> &'static str {
    match f {
        Family::Verification => {
            "A signed document or data file failed verification (SPEC.md §7 steps 1-9, §9 first table)."
        }
        Family::Transport => "A source could not be read (SPEC.md §9, transport codes).",
        Family::Store => "The store, its inputs or its use (SPEC.md §9, store codes).",
    }
}

fn new_class<'py>(
    py: Python<'py>,
    name: &str,
    bases: &[Bound<'py, PyAny>],
    doc: &str,
    code: Option<&str>,
    family: Option<&str>,
) -> PyResult<Bound<'py, PyType>> {
    let ns = PyDict::new(py);
    ns.set_item("__module__", "consentry")?;
    ns.set_item("__doc__", doc)?;
    ns.set_item("code", code)?;
    ns.set_item("family", family)?;
    ns.set_item("hint", py.None())?;
    ns.set_item("file", py.None())?;
    ns.set_item("detail", py.None())?;
    let bases = PyTuple::new(py, bases)?;
    let cls = py
        .import("builtins")?
        .getattr("type")?
        .call1((name, bases, ns))?;
    Ok(cls.cast_into::<PyType>()?)
}

fn build_errors(py: Python<'_>) -> PyResult<Errors> {
    let mut all = Vec::new();
    let base = new_class(
        py,
        "ConsentryError",
        &[py.get_type::<PyException>().into_any()],
        "Base of every consentry error. Attributes: code (the SPEC.md §9 wire string, e.g. \"expired\"), family (\"verification\", \"transport\" or \"store\"), hint (what to do, or None), file (what was refused), detail (why).",
        None,
        None,
    )?;
    all.push(("ConsentryError".to_string(), base.clone().unbind()));
    let mut families = HashMap::new();
    for f in Family::ALL {
        let cls = new_class(
            py,
            family_class_name(f),
            std::slice::from_ref(base.as_any()),
            family_doc(f),
            None,
            Some(f.name()),
        )?;
        all.push((family_class_name(f).to_string(), cls.clone().unbind()));
        families.insert(f, cls);
    }
    let value_error = py.get_type::<PyValueError>().into_any();
    let builtins = py.import("builtins")?;
    let mut by_code = HashMap::new();
    let mut names = HashMap::new();
    for &c in Code::ALL {
        let fam = &families[&c.family()];
        let mut bases = vec![fam.clone().into_any()];
        // Bad arguments are also ValueErrors, as Python callers expect.
        if matches!(c, Code::BadInput | Code::Usage) {
            bases.push(value_error.clone());
        }
        let mut name = class_name(c.as_str());
        // Never shadow a builtin (`broken_pipe` → ConsentryBrokenPipeError).
        if builtins.hasattr(name.as_str())? {
            name = format!("Consentry{name}");
        }
        let cls = new_class(
            py,
            &name,
            &bases,
            &format!("consentry error code `{}`.", c.as_str()),
            Some(c.as_str()),
            Some(c.family().name()),
        )?;
        all.push((name.clone(), cls.clone().unbind()));
        names.insert(c.as_str(), name);
        by_code.insert(c.as_str(), cls.unbind());
    }
    let bad_input = by_code[Code::BadInput.as_str()].bind(py).clone().into_any();
    let invalid_isrc = new_class(
        py,
        "InvalidIsrcError",
        &[bad_input],
        "A string that is not an ISRC, given where one is required (normalize_isrc). Lookups never raise it: they answer unknown / invalid_isrc.",
        Some(Code::BadInput.as_str()),
        Some(Family::Store.name()),
    )?;
    all.push((
        "InvalidIsrcError".to_string(),
        invalid_isrc.clone().unbind(),
    ));
    Ok(Errors {
        base: base.unbind(),
        by_code,
        names,
        invalid_isrc: invalid_isrc.unbind(),
        all,
    })
}

fn errors(py: Python<'_>) -> PyResult<&Errors> {
    ERRORS.get_or_try_init(py, || build_errors(py))
}

/// An instance of `cls` carrying a rejection's fields.
fn raise(py: Python<'_>, cls: &Py<PyType>, e: &Rejection, hint: Option<&str>) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let msg = format!("{}: {} ({})", e.code, e.detail, e.file);
        let inst = cls.bind(py).call1((msg,))?;
        inst.setattr("code", e.code.as_str())?;
        inst.setattr("family", e.code.family().name())?;
        inst.setattr("hint", hint)?;
        inst.setattr("file", &e.file)?;
        inst.setattr("detail", &e.detail)?;
        Ok(PyErr::from_value(inst))
    };
    make().unwrap_or_else(|err| err)
}

/// The Python exception for a rejection; `store` decides the hint for a
/// damaged data file (in the store: sync repairs it; at a source: try
/// another), as the CLI's `hint:` line does.
fn to_py(py: Python<'_>, e: &Rejection, store: Option<&Path>) -> PyErr {
    let hint = e
        .code
        .hint(store.is_some_and(|s| Path::new(&e.file).starts_with(s)));
    match errors(py) {
        Ok(errs) => {
            let cls = errs.by_code.get(e.code.as_str()).unwrap_or(&errs.base);
            raise(py, cls, e, hint)
        }
        Err(err) => err,
    }
}

// ---- time and question parameters, as the CLI parses them -----------------

fn clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn usage(what: &str, detail: impl Into<String>) -> Rejection {
    reject(what, Code::Usage, detail)
}

/// `use`, `territory` and `at` of a question, parsed as `consentry check`
/// parses `--use`, `--territory` and `--at` (`at` defaults to the day of `now`).
fn params(
    use_: &str,
    territory: Option<&str>,
    at: Option<&str>,
    now: i64,
) -> Result<(Use, Option<String>, consentry::time::Day), Rejection> {
    let u = Use::parse(consentry::text::trim(use_)).map_err(|e| usage("use", e))?;
    let t = territory
        .map(parse_territory)
        .transpose()
        .map_err(|e| usage("territory", e))?;
    let day = match at {
        Some(a) => consentry::time::day_of(
            consentry::time::parse_timestamp(consentry::text::trim(a))
                .map_err(|e| usage("at", e))?,
        ),
        None => consentry::time::day_of(now),
    };
    Ok((u, t, day))
}

// ---- the snapshot an answer comes from -------------------------------------

/// What `Store.snapshot` shows.
#[derive(Debug, Clone)]
struct Meta {
    version: u64,
    manifest_sha256: String,
    expired: bool,
    root_version: u64,
    head_version: u64,
    created: u64,
    root_expires: u64,
    head_expires: u64,
    manifest_expires: u64,
    entries: u64,
}

impl Meta {
    fn of(s: &Snapshot) -> Meta {
        let info = s.info();
        Meta {
            version: info.version,
            manifest_sha256: info.manifest_sha256,
            expired: info.expired,
            root_version: s.root.version,
            head_version: s.head.version,
            created: s.manifest.created,
            root_expires: s.root.expires,
            head_expires: s.head.expires,
            manifest_expires: s.manifest.expires,
            entries: s.manifest.entries,
        }
    }

    /// When the first of root, head and manifest expires: from then on
    /// answers are refused unless expired snapshots are allowed.
    fn expires(&self) -> u64 {
        self.root_expires
            .min(self.head_expires)
            .min(self.manifest_expires)
    }
}

/// [`Meta::expires`] of a snapshot.
fn earliest_expiry(s: &Snapshot) -> u64 {
    s.root.expires.min(s.head.expires).min(s.manifest.expires)
}

impl Meta {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let ts = |t: u64| consentry::time::format_timestamp(t as i64);
        let d = PyDict::new(py);
        d.set_item("version", self.version)?;
        d.set_item("manifest_sha256", &self.manifest_sha256)?;
        d.set_item("expired", self.expired)?;
        d.set_item("root_version", self.root_version)?;
        d.set_item("head_version", self.head_version)?;
        d.set_item("created", ts(self.created))?;
        d.set_item("created_unix", self.created)?;
        d.set_item("expires", ts(self.expires()))?;
        d.set_item("expires_unix", self.expires())?;
        d.set_item("root_expires", ts(self.root_expires))?;
        d.set_item("head_expires", ts(self.head_expires))?;
        d.set_item("manifest_expires", ts(self.manifest_expires))?;
        d.set_item("entries", self.entries)?;
        Ok(d)
    }
}

// ---- the store and its reader ------------------------------------------------

/// The reader a store holds, or why it has none.
type Slot = Result<Reader, Rejection>;

/// What a call works on: the store and its reader slot (which a call may
/// replace, e.g. after a sync).
struct Open {
    store: Store,
    slot: Slot,
}

/// Warnings the library reports (e.g. a missing index answered from a
/// temporary copy), handed to Python's `warnings` after each call.
#[derive(Debug, Default)]
struct Collect(Mutex<Vec<String>>);

impl Collect {
    /// Hand the warnings collected so far to Python's `warnings`.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let msgs: Vec<String> = match self.0.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => Vec::new(),
        };
        let cat = py.get_type::<PyUserWarning>();
        for m in msgs {
            let c = CString::new(m.replace('\0', " ")).unwrap_or_default();
            PyErr::warn(py, &cat, &c, 1)?;
        }
        Ok(())
    }
}

impl Reporter for Collect {
    fn warn(&self, msg: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push(msg.to_string());
        }
    }
}

/// The reader in `slot`, opened again at `now` when there is none yet or
/// when the snapshot it answers from has expired since (then the library
/// refuses it with `expired`, unless expired snapshots are allowed): a
/// long-lived `Store` never answers from a snapshot the CLI would refuse.
fn fresh<'a>(
    store: &Store,
    slot: &'a mut Slot,
    now: i64,
    expiry: Expiry,
) -> Result<&'a Reader, Rejection> {
    let stale = match &*slot {
        Ok(r) => expiry == Expiry::Enforce && verify::is_expired(earliest_expiry(r.snap()), now),
        Err(_) => true,
    };
    if stale {
        *slot = store.reader(now, expiry);
    }
    slot.as_ref().map_err(Clone::clone)
}

/// The strings of one Arrow array, read in place (nulls are `None`).
fn strings(a: &dyn Array) -> Box<dyn Iterator<Item = Option<&str>> + '_> {
    match a.data_type() {
        DataType::Utf8 => Box::new(a.as_string::<i32>().iter()),
        DataType::LargeUtf8 => Box::new(a.as_string::<i64>().iter()),
        DataType::Utf8View => Box::new(a.as_string_view().iter()),
        // A column of nulls only (`pa.array([None])`); `accepts` refuses
        // every other type before a job starts.
        _ => Box::new(std::iter::repeat_n(None, a.len())),
    }
}

/// Decide every string of `arrays` in one batch (`Reader::decide_inputs`).
/// A single array, the common case, is read through its own iterator type
/// so the per-row loop is not a virtual call.
fn decide_arrays(
    r: &Reader,
    arrays: &[ArrayRef],
    u: Use,
    t: Option<&str>,
    day: consentry::time::Day,
) -> Result<Decided, Rejection> {
    let [a] = arrays else {
        let inputs = arrays.iter().flat_map(|a| strings(a.as_ref()));
        return r.decide_inputs(inputs, u, t, day);
    };
    match a.data_type() {
        DataType::Utf8 => r.decide_inputs(a.as_string::<i32>().iter(), u, t, day),
        DataType::LargeUtf8 => r.decide_inputs(a.as_string::<i64>().iter(), u, t, day),
        DataType::Utf8View => r.decide_inputs(a.as_string_view().iter(), u, t, day),
        _ => r.decide_inputs(std::iter::repeat_n(None, a.len()), u, t, day),
    }
}

/// An answer column (decision or reason): dictionary-encoded strings, one
/// byte per row, the dictionary being every value of the enum in its
/// declaration order (`names`, indexed by `index`) — the same in every
/// batch, so chunks concatenate without unifying. A column of 10^6 plain
/// strings took a tenth of `check_arrow`'s time to write; this takes a
/// hundredth. pandas reads it as a category, polars as Categorical, DuckDB
/// and `datasets` as strings.
fn enum_column<T>(
    rows: &[T],
    names: &[&'static str],
    index: impl Fn(&T) -> usize,
) -> Result<ArrayRef, Rejection> {
    let keys: Vec<i8> = rows
        .iter()
        .map(|r| i8::try_from(index(r)).unwrap_or(i8::MAX))
        .collect();
    let values: ArrayRef = Arc::new(StringArray::from(names.to_vec()));
    // Checked, never assumed: a key outside the dictionary is an error.
    let dict = DictionaryArray::<Int8Type>::try_new(PrimitiveArray::<Int8Type>::from(keys), values)
        .map_err(|e| reject("arrow", Code::BadInput, e.to_string()))?;
    Ok(Arc::new(dict))
}

/// The type of [`enum_column`].
fn enum_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8))
}

/// The arrays handed over from Python, each a string array (or all nulls).
fn string_arrays(chunks: Vec<PyArrowType<ArrayData>>) -> PyResult<Vec<ArrayRef>> {
    let arrays: Vec<ArrayRef> = chunks.into_iter().map(|c| make_array(c.0)).collect();
    for a in &arrays {
        if !accepts(a.data_type()) {
            return Err(PyTypeError::new_err(format!(
                "ISRCs must be an Arrow string, large_string or string_view array, not {}",
                a.data_type()
            )));
        }
    }
    Ok(arrays)
}

fn accepts(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

type Decided = Vec<(Decision, Reason)>;

/// A store opened from Python: the store and its reader behind a lock
/// (calls run on the caller's thread with the GIL released, one at a time
/// per store), the time rule and the last snapshot seen.
#[pyclass(module = "consentry._consentry", name = "_Engine", frozen)]
struct Engine {
    open: Mutex<Open>,
    dir: PathBuf,
    /// `now=` given at open: every call uses it (as `--now` does); else the
    /// system clock at each call.
    pinned_now: Option<i64>,
    expiry: Expiry,
    warnings: Arc<Collect>,
    /// The process that opened the store: a fork() child may have copied
    /// the lock while another thread held it, and would wait for ever.
    pid: u32,
}

impl Engine {
    fn start(
        py: Python<'_>,
        dir: PathBuf,
        now: Option<i64>,
        allow_expired: bool,
        require_snapshot: bool,
    ) -> PyResult<Engine> {
        let expiry = if allow_expired {
            Expiry::AllowExpired
        } else {
            Expiry::Enforce
        };
        let warnings = Arc::new(Collect::default());
        let (d, w) = (dir.clone(), warnings.clone());
        let opened_at = now.unwrap_or_else(clock);
        let opened = py.detach(move || -> Result<Open, Rejection> {
            let store = Store::open(&d)?.with_reporter(w);
            let slot = store.reader(opened_at, expiry);
            match &slot {
                Err(e) if require_snapshot => Err(e.clone()),
                _ => Ok(Open { store, slot }),
            }
        });
        let flush = |py| Collect::flush(&warnings, py);
        match opened {
            Ok(open) => {
                let engine = Engine {
                    open: Mutex::new(open),
                    dir,
                    pinned_now: now,
                    expiry,
                    warnings: warnings.clone(),
                    pid: std::process::id(),
                };
                flush(py)?;
                Ok(engine)
            }
            Err(e) => {
                flush(py)?;
                Err(to_py(py, &e, Some(&dir)))
            }
        }
    }

    fn now(&self) -> i64 {
        self.pinned_now.unwrap_or_else(clock)
    }

    /// Run `f` on the store with the GIL released; its error as the typed
    /// Python exception.
    fn call<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Store, &mut Slot) -> Result<R, Rejection> + Send,
    ) -> PyResult<R> {
        if std::process::id() != self.pid {
            return Err(PyRuntimeError::new_err(
                "this consentry Store was opened in the parent of a fork(): open it again in this process (Store.open, or pickle it: it reopens where it is unpickled)",
            ));
        }
        let open = &self.open;
        let got = py.detach(move || {
            let mut g = open.lock().ok()?;
            let Open { store, slot } = &mut *g;
            Some(f(store, slot))
        });
        Collect::flush(&self.warnings, py)?;
        match got {
            Some(Ok(r)) => Ok(r),
            Some(Err(e)) => Err(to_py(py, &e, Some(&self.dir))),
            None => Err(PyRuntimeError::new_err(
                "an earlier call on this store panicked inside consentry (please report it): open the store again",
            )),
        }
    }

    /// Run `f` with the current reader (opened again if it expired).
    fn read<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Reader) -> Result<R, Rejection> + Send,
    ) -> PyResult<R> {
        let (now, expiry) = (self.now(), self.expiry);
        self.call(py, move |store, slot| f(fresh(store, slot, now, expiry)?))
    }

    /// Decide `inputs` (`None` = missing) with one use, territory and day.
    fn decide(
        &self,
        py: Python<'_>,
        inputs: Vec<Option<String>>,
        use_: &str,
        territory: Option<&str>,
        at: Option<&str>,
    ) -> PyResult<(Decided, Meta)> {
        let (u, t, day) =
            params(use_, territory, at, self.now()).map_err(|e| to_py(py, &e, None))?;
        self.read(py, move |r| {
            let d = r.decide_inputs(inputs.iter().map(Option::as_deref), u, t.as_deref(), day)?;
            Ok((d, Meta::of(r.snap())))
        })
    }
}

fn sync_dict<'py>(py: Python<'py>, r: &SyncReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("from_version", r.from)?;
    d.set_item("to_version", r.to)?;
    d.set_item("head_version", r.head_version)?;
    d.set_item("mode", r.mode.name())?;
    d.set_item("roots_added", r.roots_added.clone())?;
    d.set_item("files_fetched", r.files_fetched)?;
    d.set_item("bytes_fetched", r.bytes_fetched)?;
    d.set_item("files_reused", r.files_reused)?;
    d.set_item("files_derived", r.files_derived)?;
    d.set_item("layers_applied", r.layers_applied)?;
    d.set_item("files_pruned", r.files_pruned)?;
    d.set_item("manifest_sha256", &r.manifest_sha256)?;
    Ok(d)
}

#[pymethods]
impl Engine {
    /// Open a store: `Store::open`, then the verified current snapshot
    /// (`require_snapshot`: refuse a store that has none, or whose snapshot
    /// does not verify at `now`).
    #[staticmethod]
    #[pyo3(signature = (path, now, allow_expired, require_snapshot))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        now: Option<i64>,
        allow_expired: bool,
        require_snapshot: bool,
    ) -> PyResult<Engine> {
        Engine::start(py, path, now, allow_expired, require_snapshot)
    }

    /// `consentry init --root FILE [--force]`: pin `root` (the bytes of a
    /// root file obtained out of band) in a new store.
    #[staticmethod]
    #[pyo3(signature = (path, root, force, now, allow_expired))]
    fn init(
        py: Python<'_>,
        path: PathBuf,
        root: Vec<u8>,
        force: bool,
        now: Option<i64>,
        allow_expired: bool,
    ) -> PyResult<Engine> {
        let p = path.clone();
        py.detach(move || Store::init(&p, &root, force).map(|_| ()))
            .map_err(|e| to_py(py, &e, Some(&path)))?;
        Engine::start(py, path, now, allow_expired, false)
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.dir.clone()
    }

    #[getter]
    fn allow_expired(&self) -> bool {
        self.expiry == Expiry::AllowExpired
    }

    #[getter]
    fn pinned_now(&self) -> Option<i64> {
        self.pinned_now
    }

    /// The verified snapshot answers come from (see `Meta::to_dict`).
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.read(py, |r| Ok(Meta::of(r.snap())))?;
        m.to_dict(py)
    }

    /// One question, as `consentry check ISRC --json` answers it: input,
    /// isrc (compact, or None), use, territory, at, decision, reason,
    /// decided_by, terms_url, terms_sha256 (the terms of a constrained
    /// answer), snapshot.
    #[pyo3(signature = (input, use_, territory, at))]
    fn check<'py>(
        &self,
        py: Python<'py>,
        input: &str,
        use_: &str,
        territory: Option<&str>,
        at: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (use_, territory, day) =
            params(use_, territory, at, self.now()).map_err(|e| to_py(py, &e, None))?;
        let input = consentry::text::trim(input).to_string();
        let asked = territory.clone();
        let (answer, meta, input) = self.read(py, move |r| {
            let answer = r.answer_input(&input, use_, asked.as_deref(), day)?;
            Ok((answer, Meta::of(r.snap()), input))
        })?;
        let d = PyDict::new(py);
        d.set_item(
            "isrc",
            consentry::Isrc::parse(&input)
                .ok()
                .map(consentry::Isrc::compact),
        )?;
        d.set_item("input", input)?;
        d.set_item("use", use_.name())?;
        d.set_item("territory", territory)?;
        d.set_item("at", consentry::time::format_date(day))?;
        d.set_item("decision", answer.decision.name())?;
        d.set_item("reason", answer.reason.name())?;
        let terms_url: Vec<&str> = answer.terms.iter().map(|t| t.url.as_str()).collect();
        let terms_sha256: Vec<Option<String>> = answer
            .terms
            .iter()
            .map(|t| t.sha256.map(hex::encode))
            .collect();
        d.set_item("terms_url", terms_url)?;
        d.set_item("terms_sha256", terms_sha256)?;
        d.set_item("decided_by", answer.decided_by)?;
        d.set_item("snapshot", meta.to_dict(py)?)?;
        Ok(d)
    }

    /// Decisions and reasons for many inputs (`None` = missing: invalid).
    #[pyo3(signature = (inputs, use_, territory, at))]
    fn decide_many(
        &self,
        py: Python<'_>,
        inputs: Vec<Option<String>>,
        use_: &str,
        territory: Option<&str>,
        at: Option<&str>,
    ) -> PyResult<Vec<(&'static str, &'static str)>> {
        let (d, _) = self.decide(py, inputs, use_, territory, at)?;
        Ok(d.into_iter().map(|(a, b)| (a.name(), b.name())).collect())
    }

    /// Arrow batch: one output RecordBatch (isrc, decision, reason) per input
    /// array (utf8, large_utf8, utf8_view or null), the isrc column being the
    /// input array itself. All arrays are decided in one sorted batch
    /// (`Reader::decide_inputs`) with the GIL released; the input buffers are
    /// read in place. With `decided_by`, each row is answered by
    /// `Reader::answer_input` (the one-question path, slower) and a
    /// `decided_by` column (list of declaration ids) is added.
    #[pyo3(signature = (chunks, use_, territory, at, decided_by=false))]
    fn decide_arrow<'py>(
        &self,
        py: Python<'py>,
        chunks: Vec<PyArrowType<ArrayData>>,
        use_: &str,
        territory: Option<&str>,
        at: Option<&str>,
        decided_by: bool,
    ) -> PyResult<(Vec<PyArrowType<RecordBatch>>, Bound<'py, PyDict>)> {
        let arrays = string_arrays(chunks)?;
        let (u, t, day) =
            params(use_, territory, at, self.now()).map_err(|e| to_py(py, &e, None))?;
        let (batches, m) = self.read(py, move |r| {
            let (decided, ids) = if decided_by {
                let inputs = arrays.iter().flat_map(|a| strings(a.as_ref()));
                let mut d = Vec::new();
                let mut ids = Vec::new();
                for s in inputs {
                    let a = match s {
                        Some(s) => r.answer_input(s, u, t.as_deref(), day)?,
                        None => consentry::lookup::Answer::invalid_isrc(),
                    };
                    d.push((a.decision, a.reason));
                    ids.push(a.decided_by);
                }
                (d, Some(ids))
            } else {
                (decide_arrays(r, &arrays, u, t.as_deref(), day)?, None)
            };
            let mut out = Vec::with_capacity(arrays.len());
            let mut at_row = 0usize;
            for a in arrays {
                let end = (at_row + a.len()).min(decided.len());
                let mine = &decided[at_row..end];
                let decision =
                    enum_column(mine, &Decision::ALL.map(Decision::name), |d| d.0 as usize)?;
                let reason = enum_column(mine, &Reason::ALL.map(Reason::name), |d| d.1 as usize)?;
                let mut fields = vec![
                    Field::new("isrc", a.data_type().clone(), true),
                    Field::new("decision", enum_type(), false),
                    Field::new("reason", enum_type(), false),
                ];
                let mut columns: Vec<ArrayRef> = vec![a, decision, reason];
                if let Some(ids) = &ids {
                    let mut b = ListBuilder::new(StringBuilder::new());
                    for row in &ids[at_row..end] {
                        for id in row {
                            b.values().append_value(id);
                        }
                        b.append(true);
                    }
                    let list = b.finish();
                    fields.push(Field::new("decided_by", list.data_type().clone(), false));
                    columns.push(Arc::new(list));
                }
                at_row = end;
                let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
                    .map_err(|e| reject("arrow", Code::BadInput, e.to_string()))?;
                out.push(PyArrowType(batch));
            }
            Ok((out, Meta::of(r.snap())))
        })?;
        Ok((batches, m.to_dict(py)?))
    }

    /// One boolean array per input array, True only where the decision is
    /// `allow` (nulls and non-ISRCs are False): the batch of `decide_arrow`
    /// without its text columns, for `allowed_mask` (a table filter needs
    /// nothing else).
    #[pyo3(signature = (chunks, use_, territory, at))]
    fn allowed_arrow(
        &self,
        py: Python<'_>,
        chunks: Vec<PyArrowType<ArrayData>>,
        use_: &str,
        territory: Option<&str>,
        at: Option<&str>,
    ) -> PyResult<Vec<PyArrowType<ArrayData>>> {
        let arrays = string_arrays(chunks)?;
        let (u, t, day) =
            params(use_, territory, at, self.now()).map_err(|e| to_py(py, &e, None))?;
        self.read(py, move |r| {
            let decided = decide_arrays(r, &arrays, u, t.as_deref(), day)?;
            let mut out = Vec::with_capacity(arrays.len());
            let mut at_row = 0usize;
            for a in &arrays {
                let end = (at_row + a.len()).min(decided.len());
                let mine = &decided[at_row..end];
                let bits =
                    BooleanBuffer::collect_bool(mine.len(), |i| mine[i].0 == Decision::Allow);
                out.push(PyArrowType(BooleanArray::new(bits, None).into_data()));
                at_row = end;
            }
            Ok(out)
        })
    }

    /// `consentry sync SOURCE`: an http(s) URL or a directory; then answer
    /// from the new snapshot.
    #[pyo3(signature = (source, timeout=None, keep_history=None))]
    fn sync<'py>(
        &self,
        py: Python<'py>,
        source: String,
        timeout: Option<f64>,
        keep_history: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut timeouts = consentry::fetch::Timeouts::default();
        if let Some(s) = timeout {
            if !(s.is_finite() && s >= 1.0) {
                return Err(to_py(
                    py,
                    &usage("timeout", "must be at least 1 second"),
                    None,
                ));
            }
            timeouts.overall = std::time::Duration::from_secs_f64(s);
        }
        let (now, expiry) = (self.now(), self.expiry);
        let rep = self.call(py, move |store, slot| {
            let fetch = consentry::http::open_source(&source, timeouts)?;
            let opts = SyncOptions {
                now,
                expiry,
                keep_history,
            };
            let rep = consentry::sync::sync(store, &*fetch, &opts)?;
            *slot = store.reader(now, expiry);
            Ok(rep)
        })?;
        sync_dict(py, &rep)
    }

    /// Answer from the store's current snapshot again (after another
    /// process synced it).
    fn reload<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (now, expiry) = (self.now(), self.expiry);
        let m = self.call(py, move |store, slot| {
            *slot = store.reader(now, expiry);
            slot.as_ref()
                .map(|r| Meta::of(r.snap()))
                .map_err(Clone::clone)
        })?;
        m.to_dict(py)
    }

    /// `consentry verify` (never writes; `repair=True` is `verify --repair`).
    #[pyo3(signature = (repair=false))]
    fn verify<'py>(&self, py: Python<'py>, repair: bool) -> PyResult<Bound<'py, PyDict>> {
        let (now, expiry) = (self.now(), self.expiry);
        let v = self.call(py, move |store, _| {
            if repair {
                store.verify_and_repair(now, expiry)
            } else {
                store.verify(now, expiry)
            }
        })?;
        let (state, why) = match &v.index {
            IndexCheck::Intact => ("intact", None),
            IndexCheck::Missing => ("missing", None),
            IndexCheck::Corrupt(w) => ("corrupt", Some(w.clone())),
            IndexCheck::Built => ("built", None),
            IndexCheck::Rebuilt(w) => ("rebuilt", Some(w.clone())),
        };
        let d = PyDict::new(py);
        d.set_item("root_version", v.root_version)?;
        d.set_item("version", v.version)?;
        d.set_item("manifest_sha256", &v.manifest_sha256)?;
        d.set_item("files_checked", v.files_checked)?;
        d.set_item("bytes_checked", v.bytes_checked)?;
        d.set_item("entries", v.entries)?;
        d.set_item("index", state)?;
        d.set_item("index_problem", why)?;
        d.set_item("expired", v.expired)?;
        d.set_item(
            "ok",
            v.index == IndexCheck::Intact
                || matches!(v.index, IndexCheck::Built | IndexCheck::Rebuilt(_)),
        )?;
        Ok(d)
    }

    /// `consentry status --json`, as a JSON string.
    fn status_json(&self, py: Python<'_>) -> PyResult<String> {
        let now = self.now();
        self.call(py, move |store, _| {
            let s = store.status(now)?;
            serde_json::to_string(&s).map_err(|e| reject("status", Code::IoError, e.to_string()))
        })
    }
}

// ---- module functions ------------------------------------------------------

/// An ISRC in its compact form (`GB-NWR-25-00017` → `GBNWR2500017`), as
/// lookups normalize it (SPEC.md §3.1); InvalidIsrcError if it is not one.
#[pyfunction]
fn normalize_isrc(py: Python<'_>, s: &str) -> PyResult<String> {
    match consentry::Isrc::parse(s) {
        Ok(i) => Ok(i.compact()),
        Err(e) => {
            let errs = errors(py)?;
            let r = reject(s, Code::BadInput, e.to_string());
            Err(raise(py, &errs.invalid_isrc, &r, None))
        }
    }
}

/// A time as `--now`/`--at` take it (RFC 3339 or YYYY-MM-DD), in Unix seconds.
#[pyfunction]
fn parse_time(py: Python<'_>, s: &str) -> PyResult<i64> {
    consentry::time::parse_timestamp(consentry::text::trim(s))
        .map_err(|e| to_py(py, &usage("time", e), None))
}

/// Every error code: (wire string, family, exception class name, hint for a
/// store file, hint for a source file).
type CodeRow = (
    &'static str,
    &'static str,
    String,
    Option<&'static str>,
    Option<&'static str>,
);

#[pyfunction]
fn codes(py: Python<'_>) -> PyResult<Vec<CodeRow>> {
    let errs = errors(py)?;
    Ok(Code::ALL
        .iter()
        .map(|c| {
            (
                c.as_str(),
                c.family().name(),
                errs.names.get(c.as_str()).cloned().unwrap_or_default(),
                c.hint(true),
                c.hint(false),
            )
        })
        .collect())
}

/// The exception classes: name → class.
#[pyfunction]
fn error_classes(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    for (name, cls) in &errors(py)?.all {
        d.set_item(name, cls.bind(py))?;
    }
    Ok(d)
}

/// The names the lookup rule answers with: (uses, decisions, reasons).
#[pyfunction]
fn vocabulary() -> (Vec<&'static str>, Vec<&'static str>, Vec<&'static str>) {
    let uses = Use::ALL.map(Use::name).to_vec();
    let decisions = Decision::ALL.map(Decision::name).to_vec();
    let reasons = Reason::ALL.map(Reason::name).to_vec();
    (uses, decisions, reasons)
}

#[pymodule]
fn _consentry(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors(m.py())?;
    m.add_class::<Engine>()?;
    m.add_function(wrap_pyfunction!(normalize_isrc, m)?)?;
    m.add_function(wrap_pyfunction!(parse_time, m)?)?;
    m.add_function(wrap_pyfunction!(codes, m)?)?;
    m.add_function(wrap_pyfunction!(error_classes, m)?)?;
    m.add_function(wrap_pyfunction!(vocabulary, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
