//! The layout of `src/`, checked.
//!
//! This file owns the one rule of roster's layout: a module imports only from floors below
//! it, and modules on the same floor do not import each other. It reads the source as text
//! (std only, no roster API), so it sees every `crate::…` and `super::…` path, including
//! those in `#[cfg(test)]` code. The layout drifted into one loop once; with this test, an
//! import that runs up or sideways fails the day it is written, so it cannot drift again.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The floors, bottom up: each top-level module of `src/` and its floor. This mirrors the
/// Layout in `src/lib.rs`; change both together. A module that is not here fails the test,
/// so a new module has to be given a floor before it can land.
#[rustfmt::skip]
const FLOORS: &[(&str, u32)] = &[
    ("domain", 1), ("metrics", 1), ("schema", 1),
    ("config", 2), ("error", 2),
    ("db", 3),
    ("models", 4),
    ("broker", 5), ("events", 5), ("access", 5),
    ("jobs", 6),
    ("kinds", 7),
    ("routes", 8),
    ("live", 9),
    ("startup", 10),
    ("cli", 11),
];

// Imports that break the rule, as (importing module, imported module): none is tolerated.
// Should a move ever need one for a step, list it here; an entry that no longer occurs
// fails the test too, so a fixed edge cannot come back.
#[rustfmt::skip]
const KNOWN: &[(&str, &str)] = &[];

/// The crate root declares the modules; it is not on a floor.
const ROOTS: &[&str] = &["lib.rs", "main.rs"];

#[test]
fn every_module_imports_only_from_floors_below_it() {
    let mut problems: Vec<String> = modules()
        .into_iter()
        .filter(|m| floor(m).is_none())
        .map(|m| format!("src/{m}: module `{m}` has no floor in FLOORS"))
        .collect();
    let mut seen = BTreeSet::new();
    for (file, line, from, to) in edges() {
        let (a, b) = match (floor(&from), floor(&to)) {
            (Some(a), Some(b)) if b >= a => (a, b),
            _ => continue,
        };
        if !known(&from, &to) {
            problems.push(format!(
                "src/{file}: {from} (floor {a}) imports crate::{to} (floor {b}) at line {line}"
            ));
        }
        seen.insert((from, to));
    }
    for (from, to) in KNOWN {
        if !seen.contains(&(from.to_string(), to.to_string())) {
            let gone = format!("KNOWN ({from:?}, {to:?}) no longer occurs: remove it");
            problems.push(gone);
        }
    }
    assert!(
        problems.is_empty(),
        "the one rule: a module imports only from floors below it, and modules on the same \
         floor do not import each other (see the Layout in src/lib.rs, and FLOORS and KNOWN \
         in tests/architecture.rs):\n{}\n",
        problems.join("\n")
    );
}

#[test]
fn the_modules_import_each_other_without_a_cycle() {
    let modules = modules();
    let mut graph = Graph::new();
    for (_, _, from, to) in edges() {
        if modules.contains(&to) && !known(&from, &to) {
            graph.entry(from).or_default().insert(to);
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        let cycle = cycle.join(" -> ");
        panic!("the modules import each other in a cycle: {cycle}");
    }
}

fn floor(module: &str) -> Option<u32> {
    FLOORS.iter().find(|f| f.0 == module).map(|f| f.1)
}

fn known(from: &str, to: &str) -> bool {
    KNOWN.contains(&(from, to))
}

/// A file under `src/`: its name there, the module path it defines (`jobs/mod.rs` is
/// `[jobs]`, `jobs/worker.rs` is `[jobs, worker]`: what `super::` climbs), and its text.
type File = (String, Vec<String>, String);

fn files() -> Vec<File> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    let mut files = Vec::new();
    for path in paths {
        let name = path.strip_prefix(&src).expect("under src/");
        let name = name.to_string_lossy().replace('\\', "/");
        if !ROOTS.contains(&name.as_str()) {
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("src/{name}: {e}"));
            files.push((name.clone(), module_path(&name), text));
        }
    }
    files
}

fn walk(dir: &Path, paths: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(&path, paths);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            paths.push(path);
        }
    }
}

fn module_path(name: &str) -> Vec<String> {
    let name = name.trim_end_matches(".rs");
    let mut path: Vec<String> = name.split('/').map(str::to_owned).collect();
    if path.len() > 1 && path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

fn modules() -> BTreeSet<String> {
    files().into_iter().map(|f| f.1[0].clone()).collect()
}

/// One top-level module naming another: (file, line, importing module, imported module).
type Edge = (String, usize, String, String);

/// Every edge in `src/`, in file and line order.
fn edges() -> Vec<Edge> {
    let mut edges = Vec::new();
    for (file, path, text) in files() {
        for (to, line) in imports(&text, &path) {
            if to != path[0] {
                edges.push((file.clone(), line, path[0].clone(), to));
            }
        }
    }
    edges.sort();
    edges
}

/// Each top-level module that `text` names, with its line: through `crate::`, or through
/// as many `super::` as it takes to reach the crate root from the file's module `path`.
fn imports(text: &str, path: &[String]) -> Vec<(String, usize)> {
    let tokens = tokens(text);
    let is = |i: usize, s: &str| tokens.get(i).is_some_and(|t| t.0 == s);
    let (mut found, mut depth, mut inline) = (Vec::new(), 0, Vec::new());
    for i in 0..tokens.len() {
        match tokens[i].0.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
            }
            // An inline `mod x {` is one more level for `super::` to climb.
            "mod" if is(i + 2, "{") => inline.push(depth),
            "crate" if is(i + 1, "::") => heads(&tokens, i + 2, &mut found),
            "super" if is(i + 1, "::") && (i == 0 || !is(i - 1, "::")) => {
                let mut j = i;
                while is(j, "super") && is(j + 1, "::") {
                    j += 2;
                }
                // Fewer stay inside the file's own top-level module.
                if (j - i) / 2 == path.len() + inline.len() {
                    heads(&tokens, j, &mut found);
                }
            }
            _ => {}
        }
    }
    found
}

/// The first segment of a path that continues from the crate root at `at`: one name, or the
/// first name of each entry of a `{…}` group.
fn heads(tokens: &[(String, usize)], at: usize, found: &mut Vec<(String, usize)>) {
    let (mut depth, mut head) = (0, true);
    for (text, line) in tokens.iter().skip(at) {
        match text.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            "," if depth == 1 => head = true,
            _ if head => {
                let name = text.starts_with(|c: char| c.is_alphabetic() || c == '_');
                if name && text != "self" {
                    found.push((text.clone(), *line));
                }
                head = false;
            }
            _ => {}
        }
        if depth == 0 {
            break;
        }
    }
}

/// The tokens of `text` with their lines: names, `::` and single characters. Comments and
/// string and char literals are left out, so a path quoted in a message or a comment is not
/// taken for an import. A number comes out as a name that starts with a digit.
fn tokens(text: &str) -> Vec<(String, usize)> {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let word = |i: usize| at(i).is_alphanumeric() || at(i) == '_';
    let find = |from: usize, end: &dyn Fn(usize) -> bool| (from..c.len()).find(|&j| end(j));
    let find = |from, end: &dyn Fn(usize) -> bool| find(from, end).unwrap_or(c.len());
    let (mut tokens, mut line, mut i) = (Vec::new(), 1, 0);
    while i < c.len() {
        let start = i;
        // `r"…"`, `r#"…"#` or `br"…"`, at the start of a word.
        let r = i + usize::from(at(i) == 'b');
        let hashes = find(r + 1, &|j| c[j] != '#').saturating_sub(r + 1);
        let raw = at(r) == 'r' && at(r + 1 + hashes) == '"' && (i == 0 || !word(i - 1));
        // Where this token ends, and whether it is code.
        let (end, code) = match (at(i), at(i + 1)) {
            ('/', '/') => (find(i, &|j| c[j] == '\n'), false),
            ('/', '*') => {
                let (mut depth, mut j) = (0, i);
                while j < c.len() {
                    match (c[j], at(j + 1)) {
                        ('/', '*') => (depth, j) = (depth + 1, j + 2),
                        ('*', '/') => (depth, j) = (depth - 1, j + 2),
                        _ => j += 1,
                    }
                    if depth == 0 {
                        break;
                    }
                }
                (j, false)
            }
            _ if raw => {
                let close = |j: usize| c[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#');
                (find(r + 2 + hashes, &close) + 1 + hashes, false)
            }
            ('"', _) => {
                let mut j = i + 1;
                while j < c.len() && c[j] != '"' {
                    j += if c[j] == '\\' { 2 } else { 1 };
                }
                (j + 1, false)
            }
            ('\'', '\\') => (find(i + 3, &|j| c[j] == '\'') + 1, false),
            ('\'', _) if at(i + 2) == '\'' => (i + 3, false),
            (':', ':') => (i + 2, true),
            _ if word(i) => (find(i, &|j| !word(j)), true),
            // Punctuation, or the quote of a lifetime.
            (ch, _) => (i + 1, !ch.is_whitespace()),
        };
        i = end.min(c.len());
        if code {
            tokens.push((c[start..i].iter().collect(), line));
        }
        line += c[start..i].iter().filter(|&&ch| ch == '\n').count();
    }
    tokens
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// A cycle in `graph`: the modules along it, the first repeated at the end.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    // Peel off the modules that lead nowhere; whatever is left leads back into itself.
    let mut left = graph.clone();
    let leads = |left: &Graph, n: &str| left[n].iter().find(|m| left.contains_key(*m)).cloned();
    while let Some(n) = left.keys().find(|n| leads(&left, n).is_none()).cloned() {
        left.remove(&n);
    }
    let mut path = vec![left.keys().next()?.clone()];
    loop {
        let next = leads(&left, path.last()?)?;
        if let Some(k) = path.iter().position(|n| *n == next) {
            path.push(next);
            return Some(path.split_off(k));
        }
        path.push(next);
    }
}

mod the_import_parser {
    use super::*;

    /// What `text` imports, as `module:line`, if it were the file `name` under `src/`.
    fn found(text: &str, name: &str) -> Vec<String> {
        let imports = imports(text, &module_path(name));
        let found = imports.into_iter().map(|(m, line)| format!("{m}:{line}"));
        found.collect()
    }

    #[test]
    fn a_grouped_use_names_every_module_it_imports() {
        let text = "use crate::{\n    config::Settings,\n    db::{self, Pool},\n    self,\n};";
        assert_eq!(found(text, "startup.rs"), ["config:2", "db:3"]);
    }

    #[test]
    fn an_inline_path_is_an_import() {
        let text = "fn f() {\n    match crate::limits::short_of_disk(&dir, 1) {}\n}";
        assert_eq!(found(text, "jobs/accept.rs"), ["limits:2"]);
    }

    #[test]
    fn a_path_in_a_comment_is_not_an_import() {
        let text = "// crate::a\n/// crate::b\n//! crate::c\n/* crate::d /* */ crate::e */\n\
                    use crate::f;";
        assert_eq!(found(text, "x.rs"), ["f:5"]);
    }

    #[test]
    fn a_path_in_a_string_is_not_an_import() {
        let text = r##"f("crate::a \" crate::b", r#"crate::c"#, '"', '\''); crate::d::g()"##;
        assert_eq!(found(text, "x.rs"), ["d:1"]);
    }

    #[test]
    fn a_lifetime_is_not_taken_for_a_char() {
        let text = "fn f<'a>(x: &'a str) -> &'a str { crate::d::g(x) }";
        assert_eq!(found(text, "x.rs"), ["d:1"]);
    }

    #[test]
    fn super_is_an_import_only_when_it_reaches_the_crate_root() {
        let text = "use super::Kind;\nuse super::super::events::Event;\nmod t { use super::*; }";
        assert_eq!(found(text, "jobs/worker.rs"), ["events:2"]);
        let text = "use super::config::Settings;";
        assert_eq!(found(text, "jobs/mod.rs"), ["config:1"]);
        assert!(found("use super::super::Job;", "models/job/pg.rs").is_empty());
        let text = "use super::super::super::{db::Pool, models::Job};";
        assert_eq!(found(text, "models/job/pg.rs"), ["db:1", "models:1"]);
        assert!(found("mod tests { use super::*; }", "config.rs").is_empty());
    }
}
