//! REQUIREMENTS.md and the workspace's test names agree:
//!
//! - every function named `r<digits>_…` or `d<digits>_…` names an ID the document defines (a
//!   heading `#### R<n> …` or `#### D<n> …`);
//! - every function the document lists (written `` `fn name` ``) exists, in the file named at
//!   the start of its line when there is one (`` - `path/to/file.rs`: `fn name`, … ``);
//! - every matrix row it lists (`` `"domain"` `` after a file) appears in that file.
//!
//! So a test named after an unknown ID, or a renamed, moved or deleted test that the document
//! still lists, fails here with its name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `*.rs` file under `dir`, relative to `root`, with `/` separators. Skips `target/`,
/// `fuzz/target/` and hidden directories (`.git`).
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        let path = entry.path();
        let rel = relative(root, &path);
        let file_type = entry.file_type().expect("file type");
        if file_type.is_dir() {
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !(hidden || rel == "target" || rel == "fuzz/target") {
                rust_files(root, &path, out);
            }
        } else if file_type.is_file() && rel.ends_with(".rs") {
            out.push(rel);
        }
    }
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).expect("under the root");
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && !s.starts_with(|c: char| c.is_ascii_digit()) && s.chars().all(is_ident_char)
}

/// The names declared with `fn name` in Rust source (in items, proptest! blocks, anywhere).
fn fn_names(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = source;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find("fn ") {
        let prev = rest[..at].chars().next_back().or(before);
        let after = &rest[at + 3..];
        if !prev.is_some_and(is_ident_char) {
            let name: String = after
                .trim_start()
                .chars()
                .take_while(|&c| is_ident_char(c))
                .collect();
            if is_ident(&name) {
                names.push(name);
            }
        }
        before = Some(' ');
        rest = after;
    }
    names
}

/// The ID kinds: `R` for RFC 8461 requirements, `D` for DANE precedence (section I).
const KINDS: [char; 5] = ['R', 'D', 'T', 'S', 'P'];

/// A requirement ID: its kind (`R` or `D`) and number.
type Id = (char, u32);

/// The ID a requirement-named function names: `r31_x` gives R31, `d4_x` gives D4.
fn named_id(name: &str) -> Option<Id> {
    let mut chars = name.chars();
    let kind = chars.next()?.to_ascii_uppercase();
    if !KINDS.contains(&kind) || name.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    let digits = chars.as_str();
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    if end == 0 || !digits[end..].starts_with('_') {
        return None;
    }
    Some((kind, digits[..end].parse().ok()?))
}

/// The IDs the document defines: headings whose text starts with `R<n>` or `D<n>`.
fn defined_ids(doc: &str) -> Result<BTreeSet<Id>, Vec<String>> {
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for (i, line) in doc.lines().enumerate() {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let text = heading.trim_start_matches('#').trim_start();
        let Some(kind) = text.chars().next().filter(|c| KINDS.contains(c)) else {
            continue;
        };
        let digits = &text[1..];
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        if let Ok(n) = digits[..end].parse::<u32>()
            && !ids.insert((kind, n))
        {
            problems.push(format!(
                "REQUIREMENTS.md line {}: {kind}{n} is defined twice",
                i + 1
            ));
        }
    }
    if problems.is_empty() {
        Ok(ids)
    } else {
        Err(problems)
    }
}

/// The backticked spans of a line: `` a `b` c `d` `` gives `["b", "d"]`.
fn spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

#[test]
fn requirements_document_and_test_names_agree() {
    let root = workspace_root();
    let doc = fs::read_to_string(root.join("REQUIREMENTS.md"))
        .expect("REQUIREMENTS.md at the workspace root");

    let mut files = Vec::new();
    rust_files(&root, &root, &mut files);
    files.sort();
    let mut sources = BTreeMap::new();
    let mut where_fn: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let source = fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for name in fn_names(&source) {
            where_fn.entry(name).or_default().insert(file.clone());
        }
        sources.insert(file.clone(), source);
    }

    let mut problems = Vec::new();
    let ids = defined_ids(&doc).unwrap_or_else(|p| {
        problems.extend(p);
        BTreeSet::new()
    });
    assert!(
        KINDS.iter().all(|k| ids.iter().any(|(kind, _)| kind == k)),
        "REQUIREMENTS.md defines no requirement of some kind (no heading `#### R<n> …` or \
         `#### D<n> …`)"
    );

    // (a) Every function named after a requirement names a defined one.
    for (name, in_files) in &where_fn {
        if let Some((kind, n)) = named_id(name)
            && !ids.contains(&(kind, n))
        {
            for file in in_files {
                problems.push(format!(
                    "{file}: `{name}` is named after {kind}{n}, which REQUIREMENTS.md does not \
                     define"
                ));
            }
        }
    }

    // (b) Everything the document lists exists where it says.
    let mut in_code_block = false;
    for (i, line) in doc.lines().enumerate() {
        let at = format!("REQUIREMENTS.md line {}", i + 1);
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        let spans = spans(line);
        // A reference line: `- `path.rs`: `fn a`, `fn b`` or `- `path.rs`: `"row"``.
        let file = match spans.first() {
            Some(first) if line.trim_start().starts_with("- `") && first.ends_with(".rs") => {
                Some(*first)
            }
            _ => None,
        };
        if let Some(file) = file {
            let Some(source) = sources.get(file) else {
                problems.push(format!("{at}: no file {file} in the workspace"));
                continue;
            };
            for span in &spans[1..] {
                if let Some(name) = span.strip_prefix("fn ").filter(|n| is_ident(n)) {
                    let found = where_fn.get(name);
                    if !found.is_some_and(|f| f.contains(file)) {
                        let elsewhere = match found {
                            Some(f) => format!(
                                "it is in {}",
                                f.iter().cloned().collect::<Vec<_>>().join(", ")
                            ),
                            None => "no `fn` has that name anywhere in the workspace".into(),
                        };
                        problems.push(format!("{at}: `fn {name}` is not in {file} ({elsewhere})"));
                    }
                } else if span.len() >= 2 && span.starts_with('"') && span.ends_with('"') {
                    if !source.contains(span) {
                        problems.push(format!("{at}: {span} does not appear in {file}"));
                    }
                } else {
                    problems.push(format!(
                        "{at}: `{span}` after {file}: list tests as `fn name` and matrix rows \
                         as `\"domain\"`"
                    ));
                }
            }
        } else {
            for span in spans {
                if let Some(name) = span.strip_prefix("fn ").filter(|n| is_ident(n))
                    && !where_fn.contains_key(name)
                {
                    problems.push(format!(
                        "{at}: `fn {name}`: no `fn` has that name anywhere in the workspace"
                    ));
                }
            }
        }
    }

    assert!(
        problems.is_empty(),
        "REQUIREMENTS.md and the test names disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_readers_of_source_and_document_work() {
    // Built with concat! so that this file does not itself declare a requirement-named `fn`.
    let source = concat!(
        "fn a() {}\n    async fn r",
        "12_b() {}\n    fn  c(\nlet f = fnx; defn d\n"
    );
    assert_eq!(fn_names(source), ["a", "r12_b", "c"]);
    assert_eq!(named_id("r31_wildcard"), Some(('R', 31)));
    assert_eq!(named_id("d4_tlsa"), Some(('D', 4)));
    for not_named in [
        "r_x", "rx_1", "r31", "r31x_y", "run", "d_x", "d4", "dane_x", "D4_x", "R3_x", "x4_y",
    ] {
        assert_eq!(named_id(not_named), None, "{not_named}");
    }
    assert_eq!(
        spans("- `a.rs`: `fn b`, `\"c.test\"` and text"),
        ["a.rs", "fn b", "\"c.test\""]
    );
    let ids = defined_ids(
        "# Title\n#### R1 · x\ntext R2\n### R10 y\n## 1.3 for R47\n### D. MX\n#### D3 · z\n",
    )
    .unwrap();
    assert_eq!(ids, BTreeSet::from([('R', 1), ('R', 10), ('D', 3)]));
    assert!(defined_ids("#### R3 a\n#### R3 b\n").is_err());
    assert!(defined_ids("#### D3 a\n#### D3 b\n").is_err());
    assert!(defined_ids("#### R3 a\n#### D3 b\n").is_ok());
}
