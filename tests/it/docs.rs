//! What docs/operations.md tells an operator to look for exists: every log text it quotes in its "how to
//! tell" column is one the code writes, and every metric it names is one the code exposes. (An audit found
//! quoted warnings and timings that matched nothing the binaries printed.)

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The daemons' sources with each format placeholder (`{what}`, `{:.1}`) written as the docs write an
/// elided part, `...`, and string continuations (`\` then the next line's indentation) joined.
fn code_text() -> String {
    let mut files = Vec::new();
    sources(&workspace().join("crates"), &mut files);
    let mut text = String::new();
    for file in files.iter().filter(|f| f.components().any(|c| c.as_os_str() == "src")) {
        let code = std::fs::read_to_string(file).expect("read source");
        let mut lines = code.lines().peekable();
        while let Some(line) = lines.next() {
            let mut line = line.to_string();
            while line.ends_with('\\') {
                line.pop();
                line.push_str(lines.next().unwrap_or_default().trim_start());
            }
            text.push_str(&line);
            text.push('\n');
        }
    }
    elide_placeholders(&text)
}

fn elide_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) if !rest[open + 1..open + close].contains(['\n', ' ', '"']) => {
                out.push_str("...");
                rest = &rest[open + close + 1..];
            }
            _ => {
                out.push('{');
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The backticked phrases of the last column of each failure row.
fn quoted_signs(doc: &str) -> Vec<String> {
    let mut signs = Vec::new();
    for row in doc.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| failure")) {
        let Some(last) = row.trim_end_matches('|').rsplit(" | ").next() else { continue };
        signs.extend(last.split('`').skip(1).step_by(2).map(str::to_string));
    }
    signs
}

#[test]
fn every_log_text_and_metric_operations_md_quotes_exists() {
    let doc = std::fs::read_to_string(workspace().join("docs/operations.md")).expect("docs/operations.md");
    let code = code_text();
    let signs = quoted_signs(&doc);
    assert!(signs.len() >= 20, "the table's signs were not found: {signs:?}");
    let mut missing = Vec::new();
    for sign in &signs {
        let name: String = sign.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if name.starts_with("dnsd_") || name.starts_with("registrar_") {
            // A metric: counters are written without `_total` in the code (the encoder adds it).
            let base = name.strip_suffix("_total").unwrap_or(&name);
            if !code.contains(&format!("\"{base}\"")) {
                missing.push(sign.clone());
            }
        } else if sign.contains(' ')
            && !sign.starts_with('/')
            && !sign.starts_with("registrar ")
            && !sign.starts_with("etcdctl ")
        {
            // A log text: each part between elisions is written by the code as it stands.
            let parts = sign.split("...").map(str::trim).filter(|p| p.len() >= 4);
            if !parts.clone().all(|part| code.contains(part)) {
                missing.push(sign.clone());
            }
        }
    }
    assert!(missing.is_empty(), "docs/operations.md quotes what no binary writes: {missing:#?}");
}
