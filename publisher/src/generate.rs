//! Deterministic synthetic registries: realistic enough to exercise every rule
//! and to measure size and speed (clustered ISRCs, catalogue-wide prefix
//! declarations by labels and distributors, a long tail of individual
//! declarations, opt-ins among opt-outs, territories, validity windows,
//! revocations, superseded declarations and a few conflicts), and nightly
//! churn on an existing registry.
//!
//! The generator streams [`GenDecl`]s in `seq` order; [`generate_into`] writes
//! them straight into a registry database in one transaction (no CSV round
//! trip), [`generate`] turns them into import rows for the demo's CSV.
//! Declaration ids are registry-assigned: a fixed prefix and the decimal
//! `seq` (`CR-1234`), as a registry that numbers its declarations would.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::rc::Rc;

use anyhow::{Result, anyhow, bail};
use consentry::Scope;
use consentry::declaration::{Action, COLUMNS, Declaration};
use consentry::isrc::{Isrc, KEY_SPACE};
use consentry::model::{Policy, Pref, Use};

use crate::db::Batch;
use crate::registry::{self, Backend};

/// splitmix64: tiny, fast, and the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// Uniform in `(0, 1]`.
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Countries weighted roughly by recorded-music output.
const COUNTRIES: [(&str, u64); 14] = [
    ("US", 30),
    ("GB", 10),
    ("DE", 8),
    ("FR", 6),
    ("JP", 6),
    ("SE", 4),
    ("NL", 4),
    ("BR", 5),
    ("CA", 4),
    ("AU", 3),
    ("KR", 4),
    ("IT", 3),
    ("ES", 3),
    ("MX", 3),
];

const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Keys per registrant (`CC-XXX`) and per registrant-year (`CC-XXX-YY`).
use consentry::isrc::{REGISTRANT_SPAN, REGISTRANT_YEAR_SPAN as YEAR_SPAN};

/// The default declaration id prefix: ids are `CR-{seq}`.
pub const ID_PREFIX: &str = "CR-";

/// One generated row, in import-column order.
pub type Row = [String; 21];

fn empty_row() -> Row {
    std::array::from_fn(|_| String::new())
}

fn col(name: &str) -> usize {
    COLUMNS
        .iter()
        .position(|c| *c == name)
        .unwrap_or_else(|| unreachable!("column {name}"))
}

/// How exact-scope ISRCs are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KeyMode {
    /// Registrant/year runs of a realistic catalogue (the default mix).
    #[default]
    Clustered,
    /// Uniformly random over every valid ISRC (the worst case for key
    /// compression), declared in key order by 8 distributors with the
    /// default mix of preferences; no prefix
    /// declarations and no artists.
    Uniform,
}

/// Generator settings.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Number of exact-scope (per-ISRC) declarations, before supersessions
    /// and artists.
    pub records: u64,
    pub seed: u64,
    /// First sequence number to use.
    pub first_seq: u64,
    /// Prefix of declaration ids (`{prefix}{seq}`).
    pub id_prefix: String,
    pub keys: KeyMode,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            records: 1000,
            seed: 1,
            first_seq: 1,
            id_prefix: ID_PREFIX.into(),
            keys: KeyMode::Clustered,
        }
    }
}

/// One generated declaration, in `seq` order.
#[derive(Debug, Clone)]
pub struct GenDecl {
    pub id: String,
    pub seq: u64,
    pub action: Action,
    pub supersedes: Option<String>,
    pub scope: Scope,
    pub declared_at: i64,
    /// Shared: a label's opt-outs are one policy.
    pub policy: Rc<Policy>,
    /// The id of the declaration generated later that supersedes or revokes
    /// this one (so it is never live).
    pub superseded_by: Option<String>,
}

impl GenDecl {
    pub fn declaration(&self) -> Declaration {
        Declaration {
            id: self.id.clone(),
            seq: self.seq,
            action: self.action,
            supersedes: self.supersedes.clone(),
            scope: self.scope,
            policy: (*self.policy).clone(),
            declared_at: self.declared_at,
        }
    }
}

/// What a generation produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenSummary {
    /// Declarations generated.
    pub declarations: u64,
    /// Of which prefix-scope declarations.
    pub prefixes: u64,
    /// Of which superseding declarations and revocations.
    pub supersessions: u64,
    /// Of which artists' own declarations.
    pub artists: u64,
    /// The next free seq.
    pub next_seq: u64,
}

/// Policies built through the import path's own validation
/// ([`Declaration::from_row`]), once per distinct content.
#[derive(Default)]
struct Policies {
    cache: HashMap<Vec<(usize, String)>, Rc<Policy>>,
}

impl Policies {
    /// The policy of an import row holding `fields` (column index, value).
    fn get(&mut self, fields: Vec<(usize, String)>) -> Rc<Policy> {
        if let Some(p) = self.cache.get(&fields) {
            return p.clone();
        }
        let mut row: std::collections::BTreeMap<String, String> = COLUMNS
            .iter()
            .map(|c| ((*c).to_string(), String::new()))
            .collect();
        for (k, v) in [
            ("declaration_id", "X1"),
            ("action", "declare"),
            ("seq", "1"),
            ("scope", "US-AAA"),
            ("declared_at", "2025-01-01T00:00:00Z"),
        ] {
            row.insert(k.into(), v.into());
        }
        for (c, v) in &fields {
            row.insert(COLUMNS[*c].to_string(), v.clone());
        }
        let d = Declaration::from_row(&row)
            .unwrap_or_else(|e| unreachable!("generated policy is invalid: {e:?}"));
        let p = Rc::new(d.policy);
        self.cache.insert(fields, p.clone());
        p
    }
}

/// A label (or distributor): name, DDEX party id, role.
struct Label {
    name: String,
    id: String,
    role: &'static str,
}

fn labels(n: usize) -> Vec<Label> {
    (0..n)
        .map(|i| Label {
            name: format!("Label {i:04}"),
            id: format!("ddex:PADPIDA{:010}L", 2_000_000 + i),
            role: if i % 7 == 0 {
                "distributor"
            } else if i % 11 == 0 {
                "rights_owner"
            } else {
                "label"
            },
        })
        .collect()
}

fn who(l: &Label) -> Vec<(usize, String)> {
    vec![
        (col("declarant_name"), l.name.clone()),
        (col("declarant_id"), l.id.clone()),
        (col("declarant_role"), l.role.into()),
    ]
}

/// The kind of a label's per-ISRC declaration, drawn per mille.
fn kind_of(p: u64) -> u64 {
    match p {
        0..=549 => 0,   // train-ai n
        550..=849 => 1, // train-ai y
        850..=929 => 2, // train-ai y, train-genai n
        930..=969 => 3, // constrained
        970..=984 => 4, // n in FR BE LU only
        _ => 5,         // n until mid-2026
    }
}

/// The policy of a label's per-ISRC declaration of `kind` (0–5), with
/// `disputed` status when asked.
fn label_policy(pol: &mut Policies, l: &Label, kind: u64, disputed: bool) -> Rc<Policy> {
    let mut f = who(l);
    let mut put = |c: &str, v: &str| f.push((col(c), v.to_string()));
    match kind {
        0 => put("train-ai", "n"),
        1 => put("train-ai", "y"),
        2 => {
            put("train-ai", "y");
            put("train-genai", "n");
        }
        3 => {
            put("train-ai", "c");
            put(
                "policy_url",
                &format!(
                    "https://licensing.example/{}",
                    l.id.trim_start_matches("ddex:")
                ),
            );
        }
        4 => {
            put("train-ai", "n");
            put("territories_include", "FR BE LU");
        }
        _ => {
            put("train-ai", "n");
            put("valid_until", "2026-06-30");
        }
    }
    if disputed {
        put("status", "disputed");
    }
    pol.get(f)
}

/// A revocation's policy for `l`.
fn revoke_policy(pol: &mut Policies, l: &Label) -> Rc<Policy> {
    let mut f = who(l);
    f.push((col("action"), "revoke".into()));
    f.push((col("supersedes"), "X0".into()));
    pol.get(f)
}

/// A declaration that is later superseded or revoked.
struct Target {
    seq: u64,
    key: u64,
    label: usize,
    kind: u64,
}

/// Streams declarations in `seq` order to a sink.
struct Gen<'a> {
    o: &'a GenOptions,
    seq: u64,
    n: u64,
    sink: &'a mut dyn FnMut(GenDecl) -> Result<()>,
}

impl Gen<'_> {
    fn id(&self, seq: u64) -> String {
        format!("{}{seq}", self.o.id_prefix)
    }

    fn emit(
        &mut self,
        scope: Scope,
        action: Action,
        policy: Rc<Policy>,
        supersedes: Option<String>,
        superseded_by: Option<String>,
    ) -> Result<()> {
        let seq = self.seq;
        let d = GenDecl {
            id: self.id(seq),
            seq,
            action,
            supersedes,
            scope,
            // Spread over one year from 2025-01-01.
            declared_at: 1_735_689_600 + (self.n % 1_000_000) as i64 * 31,
            policy,
            superseded_by,
        };
        self.seq += 1;
        self.n += 1;
        (self.sink)(d)
    }
}

fn exact(key: u64) -> Scope {
    Scope::Exact(Isrc::from_key(key).unwrap_or_else(|| unreachable!("key {key} < KEY_SPACE")))
}

/// Generate the registry, streaming each declaration to `sink` in `seq` order.
#[allow(clippy::many_single_char_names)]
pub fn generate_each(
    o: &GenOptions,
    sink: &mut dyn FnMut(GenDecl) -> Result<()>,
) -> Result<GenSummary> {
    let mut rng = Rng::new(o.seed);
    let mut pol = Policies::default();
    let uniform = o.keys == KeyMode::Uniform;
    let n_labels = if uniform {
        8
    } else {
        (o.records / 5_000).clamp(4, 5_000) as usize
    };
    let labels = labels(n_labels);
    let mut g = Gen {
        o,
        seq: o.first_seq,
        n: 0,
        sink,
    };
    let mut summary = GenSummary::default();

    // Registrants: a country, a code and the label that owns the catalogue.
    let mut regs: Vec<(u64, usize)> = Vec::new();
    if !uniform {
        let n_registrants = (o.records / 1_500).clamp(8, 200_000) as usize;
        let total_w: u64 = COUNTRIES.iter().map(|c| c.1).sum();
        let mut seen = HashSet::new();
        // Bounded: there are far more codes than registrants asked for.
        for _ in 0..n_registrants * 100 {
            if regs.len() == n_registrants {
                break;
            }
            let mut w = rng.below(total_w);
            let cc = COUNTRIES
                .iter()
                .find(|(_, cw)| {
                    if w < *cw {
                        true
                    } else {
                        w -= cw;
                        false
                    }
                })
                .map_or("US", |c| c.0);
            let code: String = (0..3).map(|_| char::from(*rng.pick(ALNUM))).collect();
            let lo = Scope::parse(&format!("{cc}-{code}"))
                .map_err(|e| anyhow!("generated registrant: {e}"))?
                .key_range()
                .0;
            if seen.insert(lo) {
                regs.push((lo, rng.below(n_labels as u64) as usize));
            }
        }
        // Catalogue-wide declarations: most labels reserve everything; some
        // allow search only; a few authorize training. One registrant in
        // twenty also opts one year of its catalogue in.
        for &(lo, label) in &regs {
            let kind = rng.below(100);
            let mut f = who(&labels[label]);
            match kind {
                0..=74 => f.push((col("all"), "n".into())),
                75..=89 => {
                    f.push((col("all"), "n".into()));
                    f.push((col("search"), "y".into()));
                }
                _ => f.push((col("train-ai"), "y".into())),
            }
            let p = pol.get(f);
            let scope = Scope::parse(&Isrc::from_key(lo).map_or_else(String::new, |i| {
                let c = i.compact();
                format!("{}-{}", &c[..2], &c[2..5])
            }))
            .map_err(|e| anyhow!("generated scope: {e}"))?;
            g.emit(scope, Action::Declare, p, None, None)?;
            summary.prefixes += 1;
            if rng.below(20) == 0 {
                let yy = 18 + rng.below(9);
                let mut f = who(&labels[label]);
                f.push((col("train-ai"), "y".into()));
                f.push((col("train-genai"), "n".into()));
                let p = pol.get(f);
                let text = Isrc::from_key(lo + yy * YEAR_SPAN).map_or_else(String::new, |i| {
                    let c = i.compact();
                    format!("{}-{}-{}", &c[..2], &c[2..5], &c[5..7])
                });
                let scope = Scope::parse(&text).map_err(|e| anyhow!("generated scope: {e}"))?;
                g.emit(scope, Action::Declare, p, None, None)?;
                summary.prefixes += 1;
            }
        }
    }

    // Individual declarations. One in a hundred is superseded or revoked
    // later; its replacement's seq is known now because the replacements
    // follow the exact declarations directly.
    let super_base = g.seq + o.records;
    let mut targets: Vec<Target> = Vec::new();
    // Albums (runs) an artist may speak for: a reservoir sample.
    let n_albums = if uniform {
        0
    } else {
        (o.records / 2_000).max(1) as usize
    };
    let mut albums: Vec<Vec<u64>> = Vec::new();
    let mut runs_seen = 0u64;
    let mut made = 0u64;
    let mut emit_exact = |g: &mut Gen<'_>, rng: &mut Rng, key: u64, label: usize| -> Result<()> {
        let kind = kind_of(rng.below(1000));
        let disputed = rng.below(97) == 0;
        let p = label_policy(&mut pol, &labels[label], kind, disputed);
        let by = if rng.below(100) == 0 {
            targets.push(Target {
                seq: g.seq,
                key,
                label,
                kind,
            });
            Some(g.id(super_base + targets.len() as u64 - 1))
        } else {
            None
        };
        g.emit(exact(key), Action::Declare, p, None, by)
    };
    if uniform {
        // Sorted uniform sample (Bentley & Saxe): the i-th largest of the
        // remaining values is the running product of U^(1/i).
        let mut m = 1.0f64;
        let mut prev = None;
        for i in (1..=o.records).rev() {
            m *= rng.unit().powf(1.0 / i as f64);
            let key = (((1.0 - m) * KEY_SPACE as f64) as u64).min(KEY_SPACE - 1);
            let key = prev.map_or(key, |p: u64| key.max(p));
            prev = Some(key);
            let label = rng.below(n_labels as u64) as usize;
            emit_exact(&mut g, &mut rng, key, label)?;
        }
        made = o.records;
    }
    let years: Vec<u64> = (18..=26).collect();
    while made < o.records {
        let (reg_lo, label) = regs[rng.below(regs.len() as u64) as usize];
        let yy = *rng.pick(&years);
        let run = 1 + rng.below(40);
        let mut d = rng.below(99_000);
        let mut keys = Vec::new();
        for _ in 0..run {
            if made >= o.records {
                break;
            }
            let key = reg_lo + yy * YEAR_SPAN + d;
            emit_exact(&mut g, &mut rng, key, label)?;
            keys.push(key);
            d += 1 + rng.below(3);
            made += 1;
        }
        // Reservoir sampling of albums.
        runs_seen += 1;
        keys.truncate(10);
        if albums.len() < n_albums {
            albums.push(keys);
        } else {
            let j = rng.below(runs_seen) as usize;
            if j < n_albums {
                albums[j] = keys;
            }
        }
    }

    // Revocations and superseding declarations of the targets, in order.
    for (k, t) in targets.iter().enumerate() {
        debug_assert_eq!(g.seq, super_base + k as u64);
        let l = &labels[t.label];
        let (action, p) = if k % 2 == 0 {
            (Action::Revoke, revoke_policy(&mut pol, l))
        } else {
            // Flip the training preference.
            let kind = u64::from(t.kind == 0);
            (Action::Declare, label_policy(&mut pol, l, kind, false))
        };
        summary.supersessions += 1;
        let target = g.id(t.seq);
        g.emit(exact(t.key), action, p, Some(target), None)?;
    }

    // Artists speaking for themselves on one of their albums: the source of
    // conflicts.
    for (i, album) in albums.iter().enumerate() {
        let mut f = vec![
            (col("declarant_name"), format!("Artist {i:05}")),
            (
                col("declarant_id"),
                format!("isni:{:016}", 1_000_000_000_000_000u64 + i as u64),
            ),
            (col("declarant_role"), "artist".into()),
        ];
        f.push((
            col("train-genai"),
            if i % 2 == 0 { "y" } else { "n" }.into(),
        ));
        let p = pol.get(f);
        for &key in album {
            g.emit(exact(key), Action::Declare, p.clone(), None, None)?;
            summary.artists += 1;
        }
    }
    summary.declarations = g.n;
    summary.next_seq = g.seq;
    Ok(summary)
}

fn letter(code: u8) -> &'static str {
    match Pref::from_code(code) {
        Some(Pref::Allow) => "y",
        Some(Pref::Disallow) => "n",
        Some(Pref::Constrained) => "c",
        Some(Pref::Silent) | None => "",
    }
}

/// The import row of a generated declaration.
pub fn row_of(d: &GenDecl) -> Row {
    let mut r = empty_row();
    let p = &d.policy;
    r[col("declaration_id")].clone_from(&d.id);
    r[col("seq")] = d.seq.to_string();
    r[col("action")] = match d.action {
        Action::Declare => "declare",
        Action::Revoke => "revoke",
    }
    .into();
    r[col("supersedes")] = d.supersedes.clone().unwrap_or_default();
    r[col("scope")] = d.scope.canonical();
    r[col("declarant_name")].clone_from(&p.declarant.name);
    r[col("declarant_id")].clone_from(&p.declarant.id);
    r[col("declarant_role")].clone_from(&p.declarant.role);
    for u in Use::ALL {
        r[col(u.name())] = letter(p.uses[u.index()]).into();
    }
    if let Some(t) = &p.terms {
        r[col("policy_url")].clone_from(&t.url);
        r[col("policy_sha256")] = t.sha256.map(hex::encode).unwrap_or_default();
    }
    if d.action == Action::Declare {
        r[col("territories_include")] = p.include.join(" ");
        r[col("territories_exclude")] = p.exclude.join(" ");
    }
    r[col("valid_from")] = p.from.map(consentry::time::format_date).unwrap_or_default();
    r[col("valid_until")] = p
        .until
        .map(consentry::time::format_date)
        .unwrap_or_default();
    r[col("declared_at")] = consentry::time::format_timestamp(d.declared_at);
    r[col("status")].clone_from(&p.status);
    r
}

/// Generate rows for an import file; returned in sequence order.
pub fn generate(o: &GenOptions) -> Vec<Row> {
    let mut rows = Vec::new();
    let _ = generate_each(o, &mut |d| {
        rows.push(row_of(&d));
        Ok(())
    });
    rows
}

/// Write rows as an import CSV (header included).
pub fn to_csv(rows: &[Row]) -> String {
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .map(|v| {
                if v.contains([',', '"', '\n']) {
                    format!("\"{}\"", v.replace('"', "\"\""))
                } else {
                    v.clone()
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join(","));
    }
    out
}

/// Generate a registry straight into `db` in one transaction (no CSV round
/// trip): declarations that a later generated one supersedes are written as
/// not live, every live one is logged as an insert, so the live set is
/// `resolve` of all declarations and the next publish sees every entry.
/// `first_seq` and the ids continue after what `db` already holds.
pub fn generate_into(db: &mut dyn Backend, o: &GenOptions, recorded_at: i64) -> Result<GenSummary> {
    generate_into_with(db, o, recorded_at, &crate::progress::Silent)
}

/// [`generate_into`], reporting the declarations written to `progress`
/// (out of about `o.records`: supersessions and artists' declarations come on
/// top).
pub fn generate_into_with(
    db: &mut dyn Backend,
    o: &GenOptions,
    recorded_at: i64,
    progress: &dyn crate::progress::Progress,
) -> Result<GenSummary> {
    let first_seq = db.max_seq()? + 1;
    let o = GenOptions {
        first_seq,
        ..o.clone()
    };
    progress.start(
        "generating declarations",
        Some(o.records),
        crate::progress::Unit::Items,
    );
    let mut summary = None;
    let written = db.bulk_insert(recorded_at, &mut |w| {
        summary = Some(generate_each(&o, &mut |d| {
            progress.inc(1);
            w.add(
                &d.id,
                d.seq,
                d.action,
                d.supersedes.as_deref(),
                d.scope,
                d.declared_at,
                &d.policy,
                d.superseded_by.as_deref(),
            )
        })?);
        Ok(())
    });
    progress.finish();
    written?;
    summary.ok_or_else(|| anyhow::anyhow!("the generator wrote nothing"))
}

/// Nightly-churn settings.
#[derive(Debug, Clone)]
pub struct ChurnOptions {
    /// Changes as a fraction of the live exact-scope entries (0.001 = 0.1 %).
    pub fraction: f64,
    pub seed: u64,
    /// Prefix of the new declarations' ids (`{prefix}{seq}`).
    pub id_prefix: String,
}

/// What a churn run applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChurnReport {
    /// New releases: new ISRCs in their registrant's current year.
    pub releases: u64,
    /// Changed preferences superseding a live declaration.
    pub changes: u64,
    pub revocations: u64,
}

impl std::fmt::Display for ChurnReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "churn: {} new releases, {} changed preferences, {} revocations",
            self.releases, self.changes, self.revocations
        )
    }
}

/// Apply `fraction` × live exact entries of changes to `db`, spread over all
/// key ranges (targets and registrants are drawn by uniformly random seq):
/// half new releases in the registrant's current year (the year of
/// `recorded_at`), three in ten changed preferences that supersede a live
/// declaration, two in ten revocations. Deterministic for a seed and a
/// database. Written through the import path's [`registry::apply`], so the change
/// log records every change and the next publish writes a delta layer.
pub fn churn(db: &mut dyn Backend, o: &ChurnOptions, recorded_at: i64) -> Result<ChurnReport> {
    if !(o.fraction > 0.0 && o.fraction <= 1.0) {
        bail!("--churn must be a fraction in (0, 1], e.g. 0.001");
    }
    let yy = {
        let (y, _, _) =
            consentry::time::civil_from_days(i64::from(consentry::time::day_of(recorded_at)));
        (y.rem_euclid(100)) as u64
    };
    registry::write_transaction(db, |db| -> Result<ChurnReport> {
        let live = db.counts()?.exact;
        let max_seq = db.max_seq()?;
        if live == 0 || max_seq == 0 {
            bail!("the registry holds no exact-scope entries to churn");
        }
        let n = ((live as f64 * o.fraction).round() as u64).max(1);
        let mut rng = Rng::new(o.seed ^ 0xC4_0C4_0C4);
        let mut seq = max_seq + 1;
        let mut report = ChurnReport::default();
        let mut adds: Vec<Declaration> = Vec::new();
        let mut targeted: HashSet<String> = HashSet::new();
        let mut next_designation: HashMap<u64, u64> = HashMap::new();
        let mut tries = 0u64;
        while (adds.len() as u64) < n {
            tries += 1;
            if tries > n.saturating_mul(200) + 1000 {
                bail!(
                    "found only {} of {n} live declarations to change; is the registry mostly superseded?",
                    adds.len()
                );
            }
            let Some(t) = db.live_exact_by_seq(1 + rng.below(max_seq))? else {
                continue;
            };
            if t.action == Action::Revoke || targeted.contains(&t.id) {
                continue;
            }
            let Scope::Exact(isrc) = t.scope else {
                continue;
            };
            let id = format!("{}{seq}", o.id_prefix);
            let roll = rng.below(10);
            let d = if roll < 5 {
                // A new release of this registrant in its current year.
                let key = isrc.key();
                let lo = key - key % REGISTRANT_SPAN + yy * YEAR_SPAN;
                let next = match next_designation.get(&lo) {
                    Some(&d) => d,
                    None => db
                        .max_live_exact_key(lo, lo + YEAR_SPAN)?
                        .map_or(lo, |k| k + 1),
                };
                if next >= lo + YEAR_SPAN {
                    continue;
                }
                next_designation.insert(lo, next + 1);
                report.releases += 1;
                let mut policy = t.policy.clone();
                policy.status = "active".into();
                Declaration {
                    id,
                    seq,
                    action: Action::Declare,
                    supersedes: None,
                    scope: exact(next),
                    policy,
                    declared_at: recorded_at,
                }
            } else if roll < 8 {
                // A changed training preference replacing the declaration.
                let mut policy = t.policy.clone();
                let i = Use::TrainAi.index();
                policy.uses[i] = if policy.resolve(Use::TrainAi) == Pref::Disallow {
                    Pref::Allow as u8
                } else {
                    Pref::Disallow as u8
                };
                if !policy.uses.contains(&(Pref::Constrained as u8)) {
                    policy.terms = None;
                }
                policy.status = "active".into();
                targeted.insert(t.id.clone());
                report.changes += 1;
                Declaration {
                    id,
                    seq,
                    action: Action::Declare,
                    supersedes: Some(t.id),
                    scope: t.scope,
                    policy,
                    declared_at: recorded_at,
                }
            } else {
                let mut policy = t.policy.clone();
                policy.from = None;
                policy.until = None;
                policy.uses = [0; 5];
                policy.terms = None;
                policy.revoke = true;
                policy.status = "active".into();
                policy.exclude.clear();
                policy.include.clear();
                targeted.insert(t.id.clone());
                report.revocations += 1;
                Declaration {
                    id,
                    seq,
                    action: Action::Revoke,
                    supersedes: Some(t.id),
                    scope: t.scope,
                    policy,
                    declared_at: recorded_at,
                }
            };
            adds.push(d);
            seq += 1;
        }
        registry::apply(
            db,
            &Batch {
                adds,
                status_updates: Vec::new(),
                recorded_at,
            },
        )?;
        Ok(report)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::import::{ImportOptions, import_files};
    use crate::source::Source;
    use consentry::declaration::{check_relations, resolve};

    const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    fn live_is_resolve(db: &Db) {
        let all = db.all_declarations().unwrap();
        assert!(check_relations(&all).is_empty());
        let expected = resolve(&all);
        let mut live = db.live_prefixes().unwrap();
        live.extend(db.live_exact_records().unwrap());
        live.sort_by(|a, b| {
            (a.scope.key_range().0, a.scope, a.seq).cmp(&(b.scope.key_range().0, b.scope, b.seq))
        });
        assert_eq!(live, expected);
    }

    /// The bulk path writes exactly what importing the same declarations as a
    /// CSV file writes: every table, row for row.
    #[test]
    fn bulk_generation_equals_the_import_path() {
        let dir = tempfile::tempdir().unwrap();
        for keys in [KeyMode::Clustered, KeyMode::Uniform] {
            let o = GenOptions {
                records: 4_000,
                seed: 7,
                keys,
                ..GenOptions::default()
            };
            let mut bulk = Db::create(&dir.path().join(format!("bulk-{keys:?}.db"))).unwrap();
            let s = generate_into(&mut bulk, &o, T0).unwrap();
            assert!(s.declarations > 4_000);
            live_is_resolve(&bulk);

            let csv = dir.path().join(format!("{keys:?}.csv"));
            std::fs::write(&csv, to_csv(&generate(&o))).unwrap();
            let mut imported = Db::create(&dir.path().join(format!("imp-{keys:?}.db"))).unwrap();
            import_files(&mut imported, &[csv], &ImportOptions { recorded_at: T0 }).unwrap();
            assert_eq!(bulk.dump(), imported.dump());
            // Every live exact entry entered the change log once.
            let c = bulk.counts().unwrap();
            assert_eq!(
                bulk.exact_changes(0, bulk.last_change().unwrap())
                    .unwrap()
                    .len() as u64,
                c.exact
            );
            if keys == KeyMode::Uniform {
                assert_eq!(c.prefix, 0);
            } else {
                assert!(c.prefix > 0 && s.artists > 0 && s.supersessions > 0);
            }
        }
    }

    #[test]
    fn generation_is_deterministic_and_continues_after_existing_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let o = GenOptions {
            records: 2_000,
            seed: 3,
            ..GenOptions::default()
        };
        let mut a = Db::create(&dir.path().join("a.db")).unwrap();
        let mut b = Db::create(&dir.path().join("b.db")).unwrap();
        generate_into(&mut a, &o, T0).unwrap();
        generate_into(&mut b, &o, T0).unwrap();
        assert_eq!(a.dump(), b.dump());
        // A second generation into a non-empty registry: seqs and ids go on.
        let before = a.max_seq().unwrap();
        let s = generate_into(&mut a, &GenOptions { seed: 4, ..o }, T0 + 60).unwrap();
        assert_eq!(s.next_seq - 1, a.max_seq().unwrap());
        assert_eq!(s.next_seq - s.declarations, before + 1);
        live_is_resolve(&a);
    }

    #[test]
    fn churn_changes_every_kind_and_the_change_log_follows() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::create(&dir.path().join("c.db")).unwrap();
        generate_into(
            &mut db,
            &GenOptions {
                records: 20_000,
                seed: 5,
                ..GenOptions::default()
            },
            T0,
        )
        .unwrap();
        let mark = db.last_change().unwrap();
        let live_before = db.counts().unwrap().exact;
        let o = ChurnOptions {
            fraction: 0.01,
            seed: 9,
            id_prefix: ID_PREFIX.into(),
        };
        let r = churn(&mut db, &o, T0 + 86_400).unwrap();
        assert_eq!(
            r.releases + r.changes + r.revocations,
            (live_before as f64 * 0.01).round() as u64
        );
        assert!(r.releases > 0 && r.changes > 0 && r.revocations > 0);
        live_is_resolve(&db);
        let changes = db.exact_changes(mark, db.last_change().unwrap()).unwrap();
        let ins = changes
            .iter()
            .filter(|c| !c.existed_before && c.exists_after)
            .count() as u64;
        let del = changes
            .iter()
            .filter(|c| c.existed_before && !c.exists_after)
            .count() as u64;
        // Every churned declaration is a new live entry; changes and
        // revocations also end one.
        assert_eq!(ins, r.releases + r.changes + r.revocations);
        assert_eq!(del, r.changes + r.revocations);
        // New releases are in 2026 (the year of the recorded time).
        let new_keys: Vec<u64> = changes
            .iter()
            .filter(|c| c.exists_after)
            .map(|c| c.scope.key_range().0)
            .collect();
        assert!(
            new_keys
                .iter()
                .any(|k| k % REGISTRANT_SPAN / YEAR_SPAN == 26)
        );
        // Spread over the key space: both halves are touched.
        let mid = new_keys[new_keys.len() / 2];
        assert!(new_keys.first() < Some(&mid) && Some(&mid) < new_keys.last());

        // The same seed on the same database gives the same changes.
        let mut again = Db::create(&dir.path().join("d.db")).unwrap();
        generate_into(
            &mut again,
            &GenOptions {
                records: 20_000,
                seed: 5,
                ..GenOptions::default()
            },
            T0,
        )
        .unwrap();
        assert_eq!(churn(&mut again, &o, T0 + 86_400).unwrap(), r);
        assert_eq!(again.dump(), db.dump());
        assert!(churn(&mut again, &ChurnOptions { fraction: 0.0, ..o }, T0).is_err());
    }
}
