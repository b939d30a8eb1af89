//! `--version` of both binaries has the layout of the official exporters' (prometheus/common's version
//! template), compared line by line with what Debian's node_exporter prints on this machine.

use std::process::Command;

use promsd_tests::{output_of, require, workspace_bin};

/// A `--version` text's shape: the first line's words around its values, and for each indented line its
/// key and the column its value starts at; plus the values, by key.
#[derive(Debug)]
struct Shape {
    first: String,
    keys: Vec<(String, usize)>,
    values: Vec<(String, String)>,
}

fn shape(program: &str, text: &str) -> Shape {
    let mut lines = text.lines();
    let first = lines.next().expect("a first line");
    let rest = first.strip_prefix(program).unwrap_or_else(|| panic!("{first:?} starts with {program}"));
    // `, version 1.5.0 (branch: B, revision: R)` without its values.
    let words: Vec<String> = rest
        .split(' ')
        .enumerate()
        .map(|(i, word)| match i {
            // The value, keeping the punctuation after it.
            2 | 4 | 6 => format!("VALUE{}", word.trim_start_matches(|c: char| c != ',' && c != ')')),
            _ => word.to_owned(),
        })
        .collect();
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    for line in lines {
        assert!(line.starts_with("  ") && !line.starts_with("   "), "{line:?} is indented by two spaces");
        let (key, value) = line.trim_start().split_once(':').unwrap_or_else(|| panic!("{line:?} has a key"));
        let column = line.len() - value.trim_start().len();
        keys.push((key.to_owned(), column));
        values.push((key.to_owned(), value.trim().to_owned()));
    }
    Shape { first: words.join(" "), keys, values }
}

#[test]
fn version_has_node_exporters_layout() {
    require("prometheus-node-exporter");
    let node = output_of(Command::new("prometheus-node-exporter").arg("--version")).expect("node_exporter --version");
    let node = shape("node_exporter", &node);
    assert_eq!(node.first, ", version VALUE (branch: VALUE, revision: VALUE)", "{node:?}");
    for program in ["dnsd", "registrar"] {
        let text = output_of(Command::new(workspace_bin(program)).arg("--version")).expect("--version");
        assert!(text.ends_with('\n') && !text.ends_with("\n\n"), "{text:?}");
        let ours = shape(program, &text);
        assert_eq!(ours.first, node.first, "{text}");
        // node_exporter 1.5 has no `tags:` line; later versions add one, promsd has none.
        let node_keys: Vec<(String, usize)> = node.keys.iter().filter(|(k, _)| k != "tags").cloned().collect();
        assert_eq!(ours.keys.len(), node_keys.len(), "{text}");
        for ((ours, our_column), (theirs, their_column)) in ours.keys.iter().zip(&node_keys) {
            assert_eq!(ours.replace("rustc", "go"), *theirs, "{text}");
            assert_eq!(our_column, their_column, "{ours}'s value is aligned as {theirs}'s: {text}");
        }
        let value = |shape: &Shape, key: &str| {
            shape.values.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).expect("the key")
        };
        assert_eq!(value(&ours, "platform"), value(&node, "platform"), "the same machine");
        let date = |d: String| d.chars().map(|c| if c.is_ascii_digit() { '0' } else { c }).collect::<String>();
        assert_eq!(date(value(&ours, "build date")), date(value(&node, "build date")), "promu's date format");
        assert!(text.starts_with(&format!("{program}, version {} (", env!("CARGO_PKG_VERSION"))), "{text}");

        // -V stays clap's short line.
        let short = output_of(Command::new(workspace_bin(program)).arg("-V")).expect("-V");
        assert_eq!(short, format!("{program} {}\n", env!("CARGO_PKG_VERSION")));
    }
}
