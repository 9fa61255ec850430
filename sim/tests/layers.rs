//! The simulator's import graph runs one way: each module of `sim/src/` uses only modules of
//! lower layers (the order `lib.rs` lists them in), and inside a directory module (`state`,
//! `state::oracle`, `faulty`, `workload`) the files use each other without cycles. A
//! directory module's own file (`mod.rs`) is its face: it and its files may use each other,
//! as in the library (`tests/layers.rs` of the workspace root, whose approach this copies).
//! Read from the source text, so a new `use` that points up fails here, not in review. Test
//! code (`#[cfg(test)]` modules and files) is free to use anything; `main.rs` is the binary's
//! crate and uses the library from outside.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Bottom to top. A module may use the modules of the layers below its own, not its own layer
/// nor any above. `lib` (the crate root) sits on top.
const LAYERS: &[&[&str]] = &[
    &["rng", "msg", "reasons", "edges", "fingerprint"],
    &["keys", "attack"],
    &["scenario"],
    &["schedule"],
    &["log"],
    &["state"],
    &["faulty", "chaos"],
    &["engine"],
    &["workload"],
    &["rogue"],
    &["runner", "timeline", "stress"],
    &["shrink", "suite", "fuzz"],
    &["sweep", "real", "soak", "app"],
    &["lib"],
];

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer of sim/tests/layers.rs"))
}

/// A simulator source file: its path under `src/` as components (`["state", "streams"]`) and
/// its non-test code with comment lines removed.
struct File {
    path: PathBuf,
    parts: Vec<String>,
    code: Vec<(usize, String)>,
}

fn files() -> Vec<File> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    paths.retain(|p| p != &src.join("main.rs"));
    // Children declared test-only: `#[cfg(test)]` then `mod name;` on the next line.
    let mut test_only = BTreeSet::new();
    for path in &paths {
        let text = fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for w in lines.windows(2) {
            if w[0].trim() == "#[cfg(test)]"
                && let Some(name) = declared_mod(w[1])
            {
                let base = if path.ends_with("mod.rs") || path.ends_with("lib.rs") {
                    path.parent().unwrap().to_path_buf()
                } else {
                    path.with_extension("")
                };
                test_only.insert(base.join(format!("{name}.rs")));
                test_only.insert(base.join(name));
            }
        }
    }
    let out: Vec<File> = paths
        .into_iter()
        .filter(|p| !p.ancestors().any(|a| test_only.contains(a)))
        .map(|p| read(&src, p))
        .collect();
    assert!(
        out.len() > 25,
        "found only {} files under {src:?}",
        out.len()
    );
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn read(src: &Path, path: PathBuf) -> File {
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let rel = path.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    let mut code = Vec::new();
    let mut in_tests = false;
    for (i, w) in lines.iter().enumerate() {
        // An inline `#[cfg(test)] mod tests { .. }` runs to the end of the file, by the house
        // convention; everything after it is test code.
        if w.trim() == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|n| n.trim_start().starts_with("mod ") && n.ends_with('{'))
        {
            in_tests = true;
        }
        if in_tests || w.trim_start().starts_with("//") {
            continue;
        }
        code.push((i + 1, w.to_string()));
    }
    File { path, parts, code }
}

fn declared_mod(line: &str) -> Option<&str> {
    let t = line.trim();
    let t = t.strip_prefix("pub(crate) ").unwrap_or(t);
    let t = t.strip_prefix("pub ").unwrap_or(t);
    t.strip_prefix("mod ")?.strip_suffix(';')
}

/// The first path segment of every `crate::` path on `line` (`crate::a::B` → `a`,
/// `crate::{a, b::c}` → `a`, `b`), skipping `$crate::` in macros.
fn crate_uses(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let before = &rest[..i];
        let after = &rest[i + "crate::".len()..];
        rest = after;
        if before.ends_with('$') || before.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(first_ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            if !item.trim().is_empty() {
                out.push(first_ident(&item));
            }
        } else {
            out.push(first_ident(after));
        }
    }
    out
}

fn first_ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn modules_use_only_lower_layers() {
    let mut bad = Vec::new();
    for f in files() {
        let module = f.parts[0].as_str();
        if module == "lib" {
            continue;
        }
        let own = layer(module);
        for (n, line) in &f.code {
            for used in crate_uses(line) {
                if used.is_empty() || used == module || used == "self" {
                    continue;
                }
                if used.starts_with(char::is_uppercase) {
                    bad.push(format!(
                        "{}:{n}: `crate::{used}` is a crate-root re-export; use the defining \
                         module's path so the layers can be checked",
                        f.path.display()
                    ));
                } else if layer(&used) >= own {
                    bad.push(format!(
                        "{}:{n}: `{module}` (layer {own}) uses `{used}` (layer {})",
                        f.path.display(),
                        layer(&used)
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports against the layers:\n{}",
        bad.join("\n")
    );
}

#[test]
fn files_of_a_module_use_each_other_without_cycles() {
    let files = files();
    // directory module (`state::oracle`) -> (its file or subdirectory -> siblings it uses)
    let mut graphs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in files.iter().filter(|f| f.parts.len() >= 2) {
        let (parent, me) = f.parts.split_at(f.parts.len() - 1);
        graphs
            .entry(parent.join("::"))
            .or_default()
            .entry(me[0].clone())
            .or_default();
    }
    for f in files.iter().filter(|f| f.parts.len() >= 2) {
        let (parent, me) = f.parts.split_at(f.parts.len() - 1);
        let (parent, me) = (parent.join("::"), &me[0]);
        let siblings: BTreeSet<String> = graphs[&parent].keys().cloned().collect();
        let prefix = format!("crate::{parent}::");
        for (_, line) in &f.code {
            for pat in [prefix.as_str(), "super::"] {
                let mut rest = line.as_str();
                while let Some(i) = rest.find(pat) {
                    rest = &rest[i + pat.len()..];
                    let used = first_ident(rest);
                    if &used != me && siblings.contains(&used) {
                        let uses = graphs.get_mut(&parent).unwrap().get_mut(me).unwrap();
                        uses.insert(used);
                    }
                }
            }
        }
    }
    for dir in ["state", "state::oracle", "faulty", "workload", "app"] {
        assert!(graphs.contains_key(dir), "no directory module `{dir}`");
    }
    for (module, g) in &graphs {
        if let Some(cycle) = find_cycle(g) {
            panic!("the files of `{module}` use each other in a cycle: {cycle:?}");
        }
    }
}

fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        n: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| s == n) {
            let mut c = stack[pos..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, m, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(c) = visit(g, n, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_checker_sees_a_cycle_and_a_use_upwards() {
    assert_eq!(crate_uses("use crate::session::{A, B};"), ["session"]);
    assert_eq!(
        crate_uses("use crate::{error::X, session::Y, Z};"),
        ["error", "session", "Z"]
    );
    assert!(crate_uses("$crate::Message").is_empty());
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("b".into()).or_default().insert("a".into());
    assert!(find_cycle(&g).is_some());
    assert!(layer("log") < layer("state"));
    assert!(layer("state") < layer("workload"));
    assert!(layer("workload") < layer("runner"));
}
