//! Deterministic synthetic registries: realistic enough to exercise every rule
//! and to measure size and speed (clustered ISRCs, catalogue-wide prefix
//! declarations by labels and distributors, a long tail of individual
//! declarations, opt-ins among opt-outs, territories, validity windows,
//! revocations, superseded declarations and a few conflicts).

use std::fmt::Write as _;

use consentry::declaration::COLUMNS;

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

/// Generator settings.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Approximate number of exact-scope (per-ISRC) declarations.
    pub records: u64,
    pub seed: u64,
    /// First sequence number to use.
    pub first_seq: u64,
    /// Prefix of declaration ids.
    pub id_prefix: String,
}

/// A registrant: a country, a code and how many recordings it has per year.
struct Registrant {
    cc: &'static str,
    code: String,
    label: usize,
}

/// Generate rows; returned in sequence order.
pub fn generate(o: &GenOptions) -> Vec<Row> {
    let mut rng = Rng::new(o.seed);
    let n_labels = (o.records / 5_000).clamp(4, 5_000) as usize;
    let n_registrants = (o.records / 1_500).clamp(8, 200_000) as usize;
    let total_w: u64 = COUNTRIES.iter().map(|c| c.1).sum();
    let mut regs: Vec<Registrant> = Vec::with_capacity(n_registrants);
    let mut seen = std::collections::HashSet::new();
    while regs.len() < n_registrants {
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
        if seen.insert((cc, code.clone())) {
            let label = rng.below(n_labels as u64) as usize;
            regs.push(Registrant { cc, code, label });
        }
    }
    let labels: Vec<(String, String, &str)> = (0..n_labels)
        .map(|i| {
            let role = if i % 7 == 0 {
                "distributor"
            } else if i % 11 == 0 {
                "rights_owner"
            } else {
                "label"
            };
            (
                format!("Label {i:04}"),
                format!("ddex:PADPIDA{:010}L", 2_000_000 + i),
                role,
            )
        })
        .collect();
    let mut rows: Vec<Row> = Vec::new();
    let mut seq = o.first_seq;
    let mut declared_at = 1_735_689_600i64; // 2025-01-01
    let mut next = |rows: &mut Vec<Row>, f: &mut dyn FnMut(&mut Row)| {
        let mut r = empty_row();
        r[col("declaration_id")] = format!("{}{seq}", o.id_prefix);
        r[col("seq")] = seq.to_string();
        r[col("action")] = "declare".into();
        r[col("declared_at")] = consentry::time::format_timestamp(declared_at);
        r[col("status")] = "active".into();
        r[col("territories_include")] = "WW".into();
        f(&mut r);
        rows.push(r);
        seq += 1;
        declared_at += 37;
    };

    // Catalogue-wide declarations: most labels reserve everything; some allow
    // search only; a few authorize training.
    for reg in &regs {
        let (name, id, role) = &labels[reg.label];
        let kind = rng.below(100);
        next(&mut rows, &mut |r| {
            r[col("scope")] = format!("{}-{}", reg.cc, reg.code);
            r[col("declarant_name")].clone_from(name);
            r[col("declarant_id")].clone_from(id);
            r[col("declarant_role")] = (*role).into();
            match kind {
                0..=74 => r[col("all")] = "n".into(),
                75..=89 => {
                    r[col("all")] = "n".into();
                    r[col("search")] = "y".into();
                }
                _ => r[col("train-ai")] = "y".into(),
            }
        });
    }
    // Individual declarations on clustered ISRCs.
    let years = ["18", "19", "20", "21", "22", "23", "24", "25", "26"];
    let mut made = 0u64;
    let mut exact: Vec<(String, usize)> = Vec::new();
    while made < o.records {
        let reg = rng.below(regs.len() as u64) as usize;
        let yy = *rng.pick(&years);
        let run = 1 + rng.below(40);
        let start = rng.below(99_000);
        for k in 0..run {
            if made >= o.records {
                break;
            }
            let isrc = format!(
                "{}{}{yy}{:05}",
                regs[reg].cc,
                regs[reg].code,
                start + k * (1 + rng.below(3))
            );
            let (name, id, role) = &labels[regs[reg].label];
            let p = rng.below(1000);
            next(&mut rows, &mut |r| {
                r[col("scope")].clone_from(&isrc);
                r[col("declarant_name")].clone_from(name);
                r[col("declarant_id")].clone_from(id);
                r[col("declarant_role")] = (*role).into();
                match p {
                    0..=549 => r[col("train-ai")] = "n".into(),
                    550..=849 => r[col("train-ai")] = "y".into(),
                    850..=929 => {
                        r[col("train-ai")] = "y".into();
                        r[col("train-genai")] = "n".into();
                    }
                    930..=969 => {
                        r[col("train-ai")] = "c".into();
                        r[col("policy_url")] = format!(
                            "https://licensing.example/{}",
                            id.trim_start_matches("ddex:")
                        );
                    }
                    970..=984 => {
                        r[col("train-ai")] = "n".into();
                        r[col("territories_include")] = "FR BE LU".into();
                    }
                    _ => {
                        r[col("train-ai")] = "n".into();
                        r[col("valid_until")] = "2026-06-30".into();
                    }
                }
                if p.is_multiple_of(97) {
                    r[col("status")] = "disputed".into();
                }
            });
            exact.push((isrc, regs[reg].label));
            made += 1;
        }
    }
    // Artists speaking for themselves: the source of conflicts.
    let n_artist = (exact.len() / 200).max(1);
    for i in 0..n_artist {
        let (isrc, _) = exact[rng.below(exact.len() as u64) as usize].clone();
        next(&mut rows, &mut |r| {
            r[col("scope")].clone_from(&isrc);
            r[col("declarant_name")] = format!("Artist {i:05}");
            r[col("declarant_id")] = format!("isni:{:016}", 1_000_000_000_000_000u64 + i as u64);
            r[col("declarant_role")] = "artist".into();
            r[col("train-genai")] = if i % 2 == 0 { "y" } else { "n" }.into();
        });
    }
    // Revocations and superseding declarations of earlier individual ones.
    let first_exact = regs.len();
    let mut targeted = std::collections::HashSet::new();
    for i in 0..(exact.len() / 100).max(1) {
        let t = first_exact + rng.below(exact.len() as u64) as usize;
        if !targeted.insert(t) {
            continue;
        }
        let target = rows[t].clone();
        let revoke = i % 2 == 0;
        next(&mut rows, &mut |r| {
            for c in ["scope", "declarant_name", "declarant_id", "declarant_role"] {
                r[col(c)].clone_from(&target[col(c)]);
            }
            r[col("supersedes")].clone_from(&target[col("declaration_id")]);
            if revoke {
                r[col("action")] = "revoke".into();
                r[col("territories_include")].clear();
            } else {
                r[col("train-ai")] = if target[col("train-ai")] == "n" {
                    "y"
                } else {
                    "n"
                }
                .into();
            }
        });
    }
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
