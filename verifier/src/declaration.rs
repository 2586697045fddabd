//! Declarations as the registry records them, validated from import rows, and
//! their resolution into the live entries a snapshot publishes.
//!
//! Rows arrive as flat `column → text` maps (CSV columns; JSONL is flattened to
//! the same names by the importer), so both formats share one validator and one
//! set of error messages.

use std::collections::{BTreeMap, HashMap};

use crate::isrc::Scope;
use crate::model::{
    Declarant, Policy, Pref, ROLES, Terms, Use, check_name, check_party_id, check_terms_url,
    is_id_text, is_territory,
};
use crate::time::{parse_date, parse_timestamp};

/// Longest declaration id, declarant name or party id accepted (an id's length
/// is one byte in the state encoding, SPEC.md §6).
pub use crate::model::MAX_TEXT;

/// The import columns, in the order of the example CSV.
pub const COLUMNS: [&str; 21] = [
    "declaration_id",
    "seq",
    "action",
    "supersedes",
    "scope",
    "declarant_name",
    "declarant_id",
    "declarant_role",
    "all",
    "train-ai",
    "train-genai",
    "ai-use",
    "search",
    "policy_url",
    "policy_sha256",
    "territories_include",
    "territories_exclude",
    "valid_from",
    "valid_until",
    "declared_at",
    "status",
];

/// Columns that must be present and non-empty in every row.
pub const REQUIRED: [&str; 8] = [
    "declaration_id",
    "seq",
    "action",
    "scope",
    "declarant_name",
    "declarant_id",
    "declarant_role",
    "declared_at",
];

/// `declare` or `revoke`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Declare,
    Revoke,
}

/// One validated declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    pub id: String,
    pub seq: u64,
    pub action: Action,
    pub supersedes: Option<String>,
    pub scope: Scope,
    pub policy: Policy,
    /// When the declarant made it (Unix seconds). Kept in the registry database,
    /// not in snapshots.
    pub declared_at: i64,
}

/// A problem with one field of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn territories(raw: &str, allow_ww: bool) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for code in raw.split([' ', ',']).filter(|c| !c.is_empty()) {
        let up = code.to_ascii_uppercase();
        if !(is_territory(&up) || allow_ww && up == "WW") {
            return Err(format!(
                "{code:?} is not an ISO 3166-1 alpha-2 code{}",
                if allow_ww { " or WW" } else { "" }
            ));
        }
        out.push(up);
    }
    out.sort();
    out.dedup();
    if out.len() > 1 && out.iter().any(|c| c == "WW") {
        return Err("WW (worldwide) must stand alone".into());
    }
    Ok(out)
}

impl Declaration {
    /// Validate one import row. Every problem is reported, not just the first.
    pub fn from_row(row: &BTreeMap<String, String>) -> Result<Declaration, Vec<FieldError>> {
        let mut errs: Vec<FieldError> = Vec::new();
        let mut err = |field: &str, message: String| {
            errs.push(FieldError {
                field: field.to_string(),
                message,
            });
        };
        let get = |k: &str| row.get(k).map_or("", |v| crate::text::trim(v));
        for k in row.keys() {
            if !COLUMNS.contains(&k.as_str()) {
                err(
                    k,
                    format!(
                        "unknown column {k:?}; the columns are {}",
                        COLUMNS.join(", ")
                    ),
                );
            }
        }
        for k in REQUIRED {
            if get(k).is_empty() {
                err(k, "is required and empty".into());
            }
        }

        let id = get("declaration_id").to_string();
        if !id.is_empty() && !is_id_text(&id) {
            err(
                "declaration_id",
                format!("must be 1-{MAX_TEXT} printable ASCII characters without spaces"),
            );
        }
        let seq = match get("seq").parse::<u64>() {
            Ok(0) => {
                err("seq", "must be 1 or more".into());
                0
            }
            Ok(n) => n,
            Err(_) if get("seq").is_empty() => 0,
            Err(_) => {
                err("seq", format!("{:?} is not a whole number", get("seq")));
                0
            }
        };
        let action = match get("action") {
            "declare" | "" => Action::Declare,
            "revoke" => Action::Revoke,
            other => {
                err("action", format!("{other:?} is not declare or revoke"));
                Action::Declare
            }
        };
        let supersedes = Some(get("supersedes").to_string()).filter(|s| !s.is_empty());
        if supersedes.as_deref().is_some_and(|s| !is_id_text(s)) {
            err("supersedes", "is not a declaration id".into());
        }
        if action == Action::Revoke && supersedes.is_none() {
            err(
                "supersedes",
                "a revocation must name the declaration it revokes".into(),
            );
        }
        if supersedes.as_deref() == Some(id.as_str()) {
            err("supersedes", "a declaration cannot supersede itself".into());
        }
        let scope = match Scope::parse(get("scope")) {
            Ok(s) => Some(s),
            Err(e) => {
                if !get("scope").is_empty() {
                    err("scope", e.to_string());
                }
                None
            }
        };
        let name = get("declarant_name").to_string();
        if !name.is_empty()
            && let Err(e) = check_name(&name)
        {
            err("declarant_name", e);
        }
        let party = get("declarant_id").to_string();
        if !party.is_empty()
            && let Err(e) = check_party_id(&party)
        {
            err("declarant_id", e);
        }
        let role = get("declarant_role").to_string();
        if !role.is_empty() && !ROLES.contains(&role.as_str()) {
            err(
                "declarant_role",
                format!("{role:?} is not one of {}", ROLES.join(", ")),
            );
        }
        let mut uses = [0u8; 5];
        for u in Use::ALL {
            match Pref::from_letter(get(u.name())) {
                Ok(p) => uses[u.index()] = p as u8,
                Err(e) => err(u.name(), e),
            }
        }
        let url = get("policy_url");
        let sha = get("policy_sha256");
        let mut terms = None;
        if !url.is_empty() {
            if let Err(e) = check_terms_url(url) {
                err("policy_url", e);
            }
            let mut digest = None;
            if !sha.is_empty() {
                match hex::decode(sha) {
                    Ok(b) if b.len() == 32 => digest = b.try_into().ok(),
                    _ => err("policy_sha256", "must be 64 hexadecimal characters".into()),
                }
            }
            terms = Some(Terms {
                url: url.to_string(),
                sha256: digest,
            });
        } else if !sha.is_empty() {
            err("policy_sha256", "given without policy_url".into());
        }
        if uses.contains(&(Pref::Constrained as u8)) && url.is_empty() {
            err(
                "policy_url",
                "a `c` (constrained) preference needs the URL of its terms".into(),
            );
        }
        let mut include = territories(get("territories_include"), true).unwrap_or_else(|e| {
            err("territories_include", e);
            Vec::new()
        });
        let exclude = territories(get("territories_exclude"), false).unwrap_or_else(|e| {
            err("territories_exclude", e);
            Vec::new()
        });
        let date = |k: &str, errs: &mut dyn FnMut(&str, String)| {
            let v = get(k);
            if v.is_empty() {
                None
            } else {
                parse_date(v).map_err(|e| errs(k, e)).ok()
            }
        };
        let from = date("valid_from", &mut err);
        let until = date("valid_until", &mut err);
        if let (Some(f), Some(u)) = (from, until)
            && f > u
        {
            err("valid_until", "is before valid_from".into());
        }
        let declared_at = match get("declared_at") {
            "" => 0,
            v => parse_timestamp(v).unwrap_or_else(|e| {
                err("declared_at", e);
                0
            }),
        };
        let status = match get("status") {
            "" | "active" => "active",
            "disputed" => "disputed",
            other => {
                err("status", format!("{other:?} is not active or disputed"));
                "active"
            }
        };
        if action == Action::Revoke {
            for u in Use::ALL {
                if !get(u.name()).is_empty() {
                    err(u.name(), "a revocation carries no preferences".into());
                }
            }
            for k in [
                "policy_url",
                "territories_include",
                "territories_exclude",
                "valid_from",
                "valid_until",
            ] {
                if !get(k).is_empty() {
                    err(
                        k,
                        "a revocation carries no terms, territories or validity".into(),
                    );
                }
            }
            include.clear();
        } else if include.is_empty() {
            // No territory named: the declaration applies worldwide.
            include.push("WW".into());
        }
        let revoke = action == Action::Revoke;
        if !errs.is_empty() {
            return Err(errs);
        }
        let Some(scope) = scope else {
            return Err(vec![FieldError {
                field: "scope".into(),
                message: "is required".into(),
            }]);
        };
        let policy = Policy {
            from: if revoke { None } else { from },
            uses,
            terms: if revoke { None } else { terms },
            until: if revoke { None } else { until },
            revoke,
            status: status.into(),
            exclude: if revoke { Vec::new() } else { exclude },
            include,
            declarant: Declarant {
                id: party,
                name,
                role,
            },
        };
        // The rules above are the snapshot's rules (SPEC.md §3.2) spelled per
        // column; this is the guard that an import never records a policy
        // that a verifier refuses.
        if let Err(e) = policy.validate() {
            return Err(vec![FieldError {
                field: "(row)".into(),
                message: format!("would publish an invalid policy: {e}"),
            }]);
        }
        Ok(Declaration {
            id,
            seq,
            action,
            supersedes,
            scope,
            policy,
            declared_at,
        })
    }
}

/// A live entry, owned: what a snapshot publishes for one declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub scope: Scope,
    pub seq: u64,
    pub id: String,
    pub policy: Policy,
}

impl Record {
    pub fn entry(&self) -> crate::model::Entry<'_> {
        crate::model::Entry {
            scope: self.scope,
            seq: self.seq,
            id: &self.id,
            policy: &self.policy,
        }
    }
}

/// Check the rules that relate declarations to each other (SPEC.md §3.3) and
/// return the problems as `(declaration id, message)`.
pub fn check_relations(decls: &[Declaration]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut by_id: HashMap<&str, &Declaration> = HashMap::new();
    let mut by_seq: HashMap<u64, &str> = HashMap::new();
    for d in decls {
        if by_id.insert(&d.id, d).is_some() {
            problems.push((d.id.clone(), "declaration_id: appears twice".to_string()));
        }
        if let Some(other) = by_seq.insert(d.seq, &d.id)
            && other != d.id
        {
            problems.push((
                d.id.clone(),
                format!("seq: {} is also the seq of {other}", d.seq),
            ));
        }
    }
    let mut targeted: HashMap<&str, &str> = HashMap::new();
    for d in decls {
        let Some(t) = d.supersedes.as_deref() else {
            continue;
        };
        let Some(target) = by_id.get(t) else {
            problems.push((
                d.id.clone(),
                format!("supersedes: no declaration {t:?} exists"),
            ));
            continue;
        };
        if target.seq >= d.seq {
            problems.push((d.id.clone(), format!("supersedes: {t} has a higher seq ({}); a declaration can only replace an earlier one", target.seq)));
        }
        if target.policy.declarant.id != d.policy.declarant.id {
            problems.push((
                d.id.clone(),
                format!(
                    "supersedes: {t} belongs to another declarant ({})",
                    target.policy.declarant.id
                ),
            ));
        }
        if target.action == Action::Revoke {
            problems.push((
                d.id.clone(),
                format!("supersedes: {t} is a revocation and cannot be replaced"),
            ));
        }
        if d.action == Action::Revoke && target.scope != d.scope {
            problems.push((
                d.id.clone(),
                format!(
                    "scope: a revocation must have the scope of {t} ({})",
                    target.scope
                ),
            ));
        }
        if let Some(prev) = targeted.insert(t, &d.id) {
            problems.push((
                d.id.clone(),
                format!("supersedes: {t} is already superseded by {prev}"),
            ));
        }
    }
    problems
}

/// Resolve declarations into the live entries: superseded and revoked
/// declarations are removed, revocations stay. Sorted by (scope, seq).
/// Call [`check_relations`] first; this function assumes they hold.
pub fn resolve(decls: &[Declaration]) -> Vec<Record> {
    let targeted: std::collections::HashSet<&str> = decls
        .iter()
        .filter_map(|d| d.supersedes.as_deref())
        .collect();
    let mut out: Vec<Record> = decls
        .iter()
        .filter(|d| !targeted.contains(d.id.as_str()))
        .map(|d| Record {
            scope: d.scope,
            seq: d.seq,
            id: d.id.clone(),
            policy: d.policy.clone(),
        })
        .collect();
    out.sort_by(|a, b| {
        (a.scope.key_range().0, a.scope, a.seq).cmp(&(b.scope.key_range().0, b.scope, b.seq))
    });
    out
}

/// Flatten one JSONL object into the CSV column names: `declarant{name,id,role}`
/// → `declarant_*`, `preferences{use}` → the use columns, `policy{url,sha256}` →
/// `policy_*`, `territories{include[],exclude[]}` → space-separated codes.
/// Numbers become their decimal text; anything else unexpected is an error
/// naming the field.
pub fn row_from_json(v: &serde_json::Value) -> Result<BTreeMap<String, String>, Vec<FieldError>> {
    use serde_json::Value;
    let mut row = BTreeMap::new();
    let mut errs = Vec::new();
    let mut err = |f: &str, m: &str| {
        errs.push(FieldError {
            field: f.to_string(),
            message: m.to_string(),
        });
    };
    let Value::Object(obj) = v else {
        return Err(vec![FieldError {
            field: "(line)".into(),
            message: "must be a JSON object".into(),
        }]);
    };
    let scalar = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) if n.is_u64() => Some(n.to_string()),
            Value::Null => Some(String::new()),
            _ => None,
        }
    };
    let nested_of = |flat: &str| -> Option<&str> {
        if flat.starts_with("declarant_") {
            Some("declarant")
        } else if flat.starts_with("policy_") {
            Some("policy")
        } else if flat.starts_with("territories_") {
            Some("territories")
        } else if ["all", "train-ai", "train-genai", "ai-use", "search"].contains(&flat) {
            Some("preferences")
        } else {
            None
        }
    };
    for k in obj.keys() {
        if let Some(parent) = nested_of(k)
            && obj.contains_key(parent)
        {
            err(
                k,
                &format!("given both flat and inside \"{parent}\"; use one"),
            );
        }
    }
    for (k, val) in obj {
        let nested: Option<(&str, &[&str])> = match k.as_str() {
            "declarant" => Some(("declarant_", &["name", "id", "role"])),
            "preferences" => Some(("", &["all", "train-ai", "train-genai", "ai-use", "search"])),
            "policy" => Some(("policy_", &["url", "sha256"])),
            "territories" => Some(("territories_", &["include", "exclude"])),
            _ => None,
        };
        match nested {
            Some((prefix, allowed)) => {
                let Value::Object(inner) = val else {
                    err(k, "must be an object");
                    continue;
                };
                for (ik, iv) in inner {
                    let field = format!("{k}.{ik}");
                    if !allowed.contains(&ik.as_str()) {
                        err(
                            &field,
                            &format!("unknown field; expected one of {}", allowed.join(", ")),
                        );
                        continue;
                    }
                    let text = if k == "territories" {
                        match iv {
                            Value::Array(a) if a.iter().all(Value::is_string) => Some(
                                a.iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(" "),
                            ),
                            _ => None,
                        }
                    } else {
                        scalar(iv)
                    };
                    match text {
                        Some(t) => {
                            row.insert(format!("{prefix}{ik}"), t);
                        }
                        None => err(
                            &field,
                            if k == "territories" {
                                "must be an array of codes"
                            } else {
                                "must be a string"
                            },
                        ),
                    }
                }
            }
            None => match scalar(val) {
                Some(t) => {
                    row.insert(k.clone(), t);
                }
                None => err(k, "must be a string or a whole number"),
            },
        }
    }
    if errs.is_empty() { Ok(row) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut r: BTreeMap<String, String> = [
            ("declaration_id", "X1"),
            ("seq", "101"),
            ("action", "declare"),
            ("scope", "GBNWR2600001"),
            ("declarant_name", "Northwind Records"),
            ("declarant_id", "ddex:PADPIDA2014021201U"),
            ("declarant_role", "label"),
            ("train-ai", "n"),
            ("declared_at", "2026-01-01T00:00:00Z"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
        for (k, v) in overrides {
            r.insert((*k).to_string(), (*v).to_string());
        }
        r
    }

    /// The fields a row is refused for (empty when accepted).
    fn refused(overrides: &[(&str, &str)]) -> Vec<String> {
        match Declaration::from_row(&row(overrides)) {
            Ok(d) => {
                assert!(d.policy.validate().is_ok(), "accepted an invalid policy");
                Vec::new()
            }
            Err(e) => e.into_iter().map(|f| f.field).collect(),
        }
    }

    #[test]
    fn text_bounds_are_255_bytes_on_both_sides() {
        let id255 = "I".repeat(255);
        let id256 = "I".repeat(256);
        assert!(refused(&[("declaration_id", &id255)]).is_empty());
        assert_eq!(refused(&[("declaration_id", &id256)]), ["declaration_id"]);
        assert!(refused(&[("supersedes", &id255)]).is_empty());
        assert!(refused(&[("supersedes", &id256)]).contains(&"supersedes".to_string()));
        // A name is counted in bytes, not characters: 51 × "é€" is 255 bytes.
        let name255 = "é€".repeat(51); // 5 bytes each
        assert_eq!(name255.len(), 255);
        assert!(refused(&[("declarant_name", &name255)]).is_empty());
        let name256 = format!("{name255}x");
        assert_eq!(refused(&[("declarant_name", &name256)]), ["declarant_name"]);
        let party255 = format!("isni:{}", "0".repeat(250));
        assert!(refused(&[("declarant_id", &party255)]).is_empty());
        let party256 = format!("isni:{}", "0".repeat(251));
        assert_eq!(refused(&[("declarant_id", &party256)]), ["declarant_id"]);
    }

    #[test]
    fn party_ids_names_and_urls_follow_the_snapshot_rules() {
        for bad in [
            "PADPIDA1",
            "ddex:",
            "DDEX:PADPIDA1",
            "ddex:PAD PIDA",
            "ddex:PADÖ",
        ] {
            assert_eq!(refused(&[("declarant_id", bad)]), ["declarant_id"], "{bad}");
        }
        for ok in ["ddex:P", "ipi:00052210040", "isni:0000000121032683"] {
            assert!(refused(&[("declarant_id", ok)]).is_empty(), "{ok}");
        }
        assert_eq!(
            refused(&[("declarant_name", "Bad\u{7}Name")]),
            ["declarant_name"]
        );
        assert_eq!(
            refused(&[("declarant_name", "Bad\u{85}Name")]),
            ["declarant_name"]
        );
        assert!(refused(&[("declarant_name", "Klang\u{a0}GmbH")]).is_empty());
        let url2048 = format!("https://t.example/{}", "a".repeat(2048 - 18));
        assert_eq!(url2048.len(), 2048);
        assert!(refused(&[("policy_url", &url2048)]).is_empty());
        let url2049 = format!("{url2048}a");
        assert_eq!(refused(&[("policy_url", &url2049)]), ["policy_url"]);
        for bad in [
            "ftp://t.example/x",
            "HTTPS://t.example/x",
            "https://t.example/a b",
            "https://t.example/\u{e9}",
            "https://t.example/\u{a0}",
        ] {
            assert_eq!(refused(&[("policy_url", bad)]), ["policy_url"], "{bad}");
        }
        assert!(refused(&[("policy_url", "http://t.example/%C3%A9")]).is_empty());
    }

    #[test]
    fn values_are_trimmed_of_ascii_whitespace_only() {
        let d = Declaration::from_row(&row(&[
            ("scope", " \tgb-nwr-26-00001\r\n"),
            ("declarant_name", "  Northwind\u{a0} "),
        ]))
        .unwrap();
        assert_eq!(d.policy.declarant.name, "Northwind\u{a0}");
        assert_eq!(refused(&[("scope", "GBNWR2600001\u{a0}")]), ["scope"]);
        assert_eq!(
            refused(&[("declaration_id", "\u{3000}X1")]),
            ["declaration_id"]
        );
    }

    #[test]
    fn validity_dates_are_1970_to_9999() {
        assert!(refused(&[("valid_from", "1970-01-01"), ("valid_until", "9999-12-31")]).is_empty());
        assert_eq!(refused(&[("valid_from", "1969-12-31")]), ["valid_from"]);
        assert_eq!(refused(&[("valid_until", "10000-01-01")]), ["valid_until"]);
        let d = Declaration::from_row(&row(&[("valid_until", "9999-12-31")])).unwrap();
        assert_eq!(d.policy.until, Some(crate::model::MAX_DAY));
    }
}
