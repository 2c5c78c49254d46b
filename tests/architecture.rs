//! The house's arrows run one way: no module of `src/` reaches (through `use crate::...`,
//! `crate::...` paths or `super::...`) a module that reaches it back. Read from the source text,
//! test modules left out; a cycle is named with its modules.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `src/a/b.rs` → `a::b`, `src/a/mod.rs` → `a`, `src/lib.rs` → `crate`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    if parts.is_empty() {
        "crate".into()
    } else {
        parts.join("::")
    }
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every path after `prefix` in the text: `crate::a::b::C` gives `a::b::C`.
fn paths_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        let tail = &rest[i + prefix.len()..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push(tail[..end].trim_end_matches(':'));
        }
        rest = &tail[end..];
    }
    out
}

/// The longest known module a path names.
fn resolve<'a>(path: &str, modules: &'a BTreeSet<String>) -> Option<&'a String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .find_map(|n| modules.get(&parts[..n].join("::")))
}

#[test]
fn no_module_reaches_back_into_one_that_reaches_it() {
    let src = common::repo().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // Modules declared for tests only (`#[cfg(test)] mod walk_tests;`) may look anywhere.
    let mut test_only: BTreeSet<String> = BTreeSet::new();
    for f in &files {
        let m = module_of(&src, f);
        let text = std::fs::read_to_string(f).unwrap();
        for decl in text.split("#[cfg(test)]\nmod ").skip(1) {
            if let Some(name) = decl.split_once(';').map(|(n, _)| n.trim()) {
                if !name.contains(char::is_whitespace) {
                    test_only.insert(if m == "crate" {
                        name.to_string()
                    } else {
                        format!("{m}::{name}")
                    });
                }
            }
        }
    }
    files.retain(|f| !test_only.contains(&module_of(&src, f)));
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = module_of(&src, f);
        let text = std::fs::read_to_string(f).unwrap();
        // Test modules written inline (`#[cfg(test)] mod tests { ... }`) may look anywhere;
        // a declaration (`mod x;`) is not one.
        let cut = text
            .match_indices("#[cfg(test)]\nmod ")
            .find(|(i, _)| {
                let rest = &text[i + "#[cfg(test)]\nmod ".len()..];
                rest.find('{').unwrap_or(usize::MAX) < rest.find(';').unwrap_or(usize::MAX)
            })
            .map(|(i, _)| i)
            .unwrap_or(text.len());
        let text = &text[..cut];
        let mut refs: Vec<String> = paths_after(text, "crate::")
            .into_iter()
            .map(str::to_string)
            .collect();
        // `use crate::{a, b::C}`
        for group in text.split("use crate::{").skip(1) {
            let inner = group.split('}').next().unwrap_or("");
            refs.extend(
                inner
                    .split(',')
                    .map(|p| p.trim().split("::{").next().unwrap_or("").to_string()),
            );
        }
        // `super::` of `a::b` (a/b.rs or a/b/mod.rs) is `a`; of a top-level module, the crate.
        let parent = m.rsplit_once("::").map(|(p, _)| p.to_string());
        for r in paths_after(text, "super::") {
            refs.push(match &parent {
                Some(p) => format!("{p}::{r}"),
                None => r.to_string(),
            });
        }
        let to: BTreeSet<String> = refs
            .iter()
            .filter_map(|r| resolve(r, &modules))
            .filter(|t| **t != m)
            .cloned()
            .collect();
        edges.insert(m, to);
    }
    // A cycle is a module that reaches itself: a depth-first walk from each.
    let mut cycles = Vec::new();
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                if next == start {
                    let mut c = path.clone();
                    c.push(start.clone());
                    cycles.push(c.join(" -> "));
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    assert!(
        modules.len() > 40 && edges.values().map(BTreeSet::len).sum::<usize>() > 60,
        "the scan read too little to mean anything: {} modules",
        modules.len()
    );
    // The layers of docs/design.md's drawing: a module's layer is one above the highest of
    // the modules it reaches (leaves are 0). `CRI_MIGRATE_PRINT_LAYERS=1` prints them.
    if cycles.is_empty() && std::env::var_os("CRI_MIGRATE_PRINT_LAYERS").is_some() {
        let mut layer: BTreeMap<String, usize> = BTreeMap::new();
        fn depth(
            m: &str,
            edges: &BTreeMap<String, BTreeSet<String>>,
            layer: &mut BTreeMap<String, usize>,
        ) -> usize {
            if let Some(d) = layer.get(m) {
                return *d;
            }
            let d = edges
                .get(m)
                .into_iter()
                .flatten()
                .map(|n| depth(n, edges, layer) + 1)
                .max()
                .unwrap_or(0);
            layer.insert(m.to_string(), d);
            d
        }
        for m in edges.keys() {
            depth(m, &edges, &mut layer);
        }
        let top = layer.values().copied().max().unwrap_or(0);
        for l in (0..=top).rev() {
            let at: Vec<&str> = layer
                .iter()
                .filter(|(_, d)| **d == l)
                .map(|(m, _)| m.as_str())
                .collect();
            println!("layer {l}: {}", at.join(", "));
        }
    }
    assert!(
        cycles.is_empty(),
        "{} module(s) reach back into one that reaches them:\n{}",
        cycles.len(),
        cycles.join("\n")
    );
}
