//! No import circles: no two source files of the workspace import each other, directly or
//! through a loop (test code aside). A file "imports" another when its non-test code names an
//! item through a path (`use super::x::Y`, `crate::a::b()`, `child::f()` from a parent module)
//! that resolves into that file. A parent module's `mod child;` and its re-exports are
//! declarations, not imports of the child's users; a child naming `super::Item` defined in
//! its parent's file is an import of that file.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates' source folders, relative to the repository root.
const CRATES: [&str; 4] = ["compiler/src", "onnx/src", "runtime/src", "src"];

/// A source file's module path inside its crate (`["lower", "fused"]` for `lower/fused/mod.rs`).
type ModPath = Vec<String>;

/// One crate's files by module path.
struct Crate {
    files: BTreeMap<ModPath, PathBuf>,
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let mut files = BTreeMap::new();
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).expect("readable source folder") {
                let p = e.expect("dir entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let rel = p.strip_prefix(src).expect("under src").with_extension("");
                    let mut m: ModPath = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    if matches!(m.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                        m.pop();
                    }
                    files.insert(m, p);
                }
            }
        }
        Crate { files }
    }

    /// The file a path from module `at` ends in: the longest prefix of the absolute path that
    /// is a file.
    fn resolve(&self, at: &ModPath, path: &[String]) -> Option<ModPath> {
        let mut full: ModPath = match path.first().map(String::as_str) {
            Some("crate") => vec![],
            Some("self") => at.clone(),
            Some("super") => at.clone(),
            _ => return None,
        };
        let mut rest = if path[0] == "crate" || path[0] == "self" {
            &path[1..]
        } else {
            path
        };
        while rest.first().is_some_and(|s| s == "super") {
            full.pop();
            rest = &rest[1..];
        }
        full.extend(rest.iter().cloned());
        (0..=full.len())
            .rev()
            .map(|n| full[..n].to_vec())
            .find(|p| self.files.contains_key(p))
    }
}

/// `text` without test items (`#[cfg(test)]` and the item after it) and comments.
fn non_test_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("#[cfg(test)]") {
            i += 1;
            let mut depth = 0i64;
            let mut opened = false;
            while i < lines.len() {
                let l = lines[i];
                depth += l.matches('{').count() as i64 - l.matches('}').count() as i64;
                opened |= l.contains('{');
                i += 1;
                if (!opened && l.trim_end().ends_with(';')) || (opened && depth <= 0) {
                    break;
                }
            }
            continue;
        }
        let code = match lines[i].find("//") {
            Some(at) => &lines[i][..at],
            None => lines[i],
        };
        out.push_str(code);
        out.push('\n');
        i += 1;
    }
    out
}

/// The paths a `use` tree names (`a::{b, c::{d as e}}` → `a::b`, `a::c::d`).
fn expand_use(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or("").replace(' ', "");
        return vec![path.split("::").map(str::to_string).collect()];
    };
    let prefix: Vec<String> = tree[..open]
        .trim_end_matches(':')
        .split("::")
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_string())
        .collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut parts, mut depth, mut cur) = (vec![], 0, String::new());
    for ch in inner.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    parts.push(cur);
    let mut out = vec![];
    for p in parts.iter().filter(|p| !p.trim().is_empty()) {
        for tail in expand_use(p) {
            let mut full = prefix.clone();
            full.extend(tail.into_iter().filter(|s| s != "self"));
            out.push(full);
        }
    }
    out
}

/// Whether the character before byte `start` of `code` is `:` or a word character: then a path
/// that seems to start at `start` is the tail of a longer one.
fn continues_a_path(code: &str, start: usize) -> bool {
    code[..start]
        .chars()
        .next_back()
        .is_some_and(|c| c == ':' || c == '_' || c.is_alphanumeric())
}

/// The paths `code` (of a module whose child modules are `children`) names through `crate`,
/// `super`, `self` or a child module.
fn named_paths(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut paths = vec![];
    for stmt in code.split(';') {
        if let Some(at) = stmt.find("use ") {
            if !continues_a_path(stmt, at) {
                paths.extend(expand_use(&stmt[at + 4..]));
            }
        }
    }
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let word_start = i;
        while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
            i += 1;
        }
        if i == word_start {
            i += 1;
            continue;
        }
        let word = &code[word_start..i];
        let starts = matches!(word, "crate" | "super" | "self") || children.contains(word);
        if !starts || continues_a_path(code, word_start) || !code[i..].starts_with("::") {
            continue;
        }
        let mut path = vec![word.to_string()];
        let mut j = i;
        while code[j..].starts_with("::") {
            let s = j + 2;
            let mut e = s;
            while e < bytes.len() && (bytes[e] == b'_' || bytes[e].is_ascii_alphanumeric()) {
                e += 1;
            }
            if e == s {
                break;
            }
            path.push(code[s..e].to_string());
            j = e;
        }
        if children.contains(word) {
            path.insert(0, "self".into());
        }
        paths.push(path);
        i = j;
    }
    paths
}

/// Every file's imports of other files in `krate`.
fn imports(krate: &Crate) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut edges = BTreeMap::new();
    for (m, file) in &krate.files {
        if file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("tests"))
        {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("readable source");
        let code = non_test_code(&text);
        let children: BTreeSet<String> = krate
            .files
            .keys()
            .filter(|k| k.len() == m.len() + 1 && k.starts_with(m))
            .map(|k| k[m.len()].clone())
            .collect();
        let to: BTreeSet<ModPath> = named_paths(&code, &children)
            .iter()
            .filter_map(|p| krate.resolve(m, p))
            .filter(|t| t != m)
            .collect();
        edges.insert(m.clone(), to);
    }
    edges
}

/// The first loop in `edges` (a file list whose last imports its first), if any.
fn first_loop(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Option<Vec<ModPath>> {
    // 0 unvisited, 1 on the current path, 2 done.
    fn visit(
        v: &ModPath,
        edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        state: &mut BTreeMap<ModPath, u8>,
        path: &mut Vec<ModPath>,
    ) -> Option<Vec<ModPath>> {
        state.insert(v.clone(), 1);
        path.push(v.clone());
        for w in edges.get(v).into_iter().flatten() {
            match state.get(w).copied().unwrap_or(0) {
                1 => {
                    let at = path.iter().position(|p| p == w).expect("on the path");
                    return Some(path[at..].to_vec());
                }
                0 => {
                    if let Some(l) = visit(w, edges, state, path) {
                        return Some(l);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(v.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for v in edges.keys() {
        if state.get(v).copied().unwrap_or(0) == 0 {
            if let Some(l) = visit(v, edges, &mut state, &mut vec![]) {
                return Some(l);
            }
        }
    }
    None
}

/// The first import circle of the crate in `src`, as its files.
fn circle_in(src: &Path) -> Option<Vec<PathBuf>> {
    let krate = Crate::read(src);
    first_loop(&imports(&krate)).map(|l| l.iter().map(|m| krate.files[m].clone()).collect())
}

#[test]
fn no_source_file_imports_itself_through_others() {
    for c in CRATES {
        let src = common::root().join(c);
        if let Some(files) = circle_in(&src) {
            let names: Vec<String> = files.iter().map(|f| common::rel(f)).collect();
            panic!(
                "import circle in {c}: {} (and back to the first)",
                names.join(" → ")
            );
        }
    }
}

/// The checker itself finds circles through a parent module's items, through a `use` tree and
/// through an inline path, and ignores test code, comments and parents' declarations.
#[test]
fn the_checker_finds_circles_and_only_those() {
    let dir = common::temp_dir("imports");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(p, text).expect("write");
    };
    // Declarations and re-exports only: no circle.
    write("lib.rs", "mod a;\nmod b;\npub use a::A;\n");
    write("a.rs", "use crate::b::B;\npub struct A(B);\n");
    write(
        "b.rs",
        "pub struct B;\n// use super::a::A;\n#[cfg(test)]\nmod tests {\n    use super::super::a::A;\n}\n",
    );
    assert_eq!(circle_in(dir.path()), None);
    // b now names a's item inline: a → b → a.
    write("b.rs", "pub struct B;\nfn f() -> crate::a::A { todo!() }\n");
    let l = circle_in(dir.path()).expect("a circle");
    assert_eq!(l.len(), 2, "{l:?}");
    // A child using an item defined in its parent's file, whose code calls the child.
    write("b.rs", "pub struct B;\n");
    write("m/mod.rs", "mod k;\npub struct P;\npub fn g() { k::h() }\n");
    write(
        "m/k.rs",
        "use super::{P, other::{Q as R}};\npub fn h() {}\n",
    );
    write("lib.rs", "mod a;\nmod b;\nmod m;\n");
    let l = circle_in(dir.path()).expect("a circle");
    assert!(l.iter().any(|f| f.ends_with("m/mod.rs")), "{l:?}");
}
