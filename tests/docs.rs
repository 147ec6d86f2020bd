//! The documentation stays true: docs/cli.md is what clap prints (regenerate it with
//! `TREADC_BLESS_DOCS=1 cargo test --test docs`), and every link in README.md and docs/ stays
//! inside the repository and resolves.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The subcommands `treadc --help` lists (without `help`).
fn subcommands() -> Vec<String> {
    let o = treadc(&["--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

/// docs/cli.md as it should read: every command's `--help`, in `treadc --help`'s order.
fn cli_reference() -> String {
    let mut md = String::from(
        "# Command-line reference\n\nGenerated from `treadc --help` and `treadc COMMAND --help` \
         (a test checks it is current; regenerate with `TREADC_BLESS_DOCS=1 cargo test --test \
         docs`). Shell completions: `treadc completions bash|zsh|fish`; man pages: `treadc man`.\n",
    );
    let mut commands = vec![None];
    commands.extend(subcommands().into_iter().map(Some));
    for c in commands {
        let mut args: Vec<&str> = c.iter().map(String::as_str).collect();
        args.push("--help");
        let o = treadc(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let title = c.map_or("treadc".to_string(), |c| format!("treadc {c}"));
        md.push_str(&format!("\n## `{title}`\n\n```text\n{}```\n", stdout(&o)));
    }
    md
}

#[test]
fn cli_reference_is_current() {
    let path = root().join("docs/cli.md");
    let want = cli_reference();
    if std::env::var_os("TREADC_BLESS_DOCS").is_some() {
        std::fs::write(&path, &want).expect("write docs/cli.md");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/cli.md differs from what clap prints: regenerate it with \
         `TREADC_BLESS_DOCS=1 cargo test --test docs` and review the diff"
    );
}

/// README.md, ARCHITECTURE.md and every Markdown file under docs/.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    let mut dirs = vec![root().join("docs")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("docs/ is listable") {
            let p = e.expect("a docs entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// The targets of the inline links `[text](target)` and images in `text`, outside code.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Inline code spans hold commands, not links.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let end = after.find(')').unwrap_or(after.len());
            out.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings.
fn anchors(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut in_fence = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn every_link_in_the_docs_stays_in_the_repository_and_resolves() {
    let mut bad = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("a readable Markdown file");
        let name = rel(&file);
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                bad.push(format!("{name}: {target} leaves the repository"));
                continue;
            }
            let (path, frag) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().expect("a file's folder").join(path)
            };
            let inside = resolved
                .canonicalize()
                .map(|p| p.starts_with(root().canonicalize().expect("the root")));
            match inside {
                Err(_) => bad.push(format!("{name}: {target} does not exist")),
                Ok(false) => bad.push(format!("{name}: {target} leaves the repository")),
                Ok(true) => {
                    let md = resolved.extension().is_some_and(|x| x == "md");
                    if !frag.is_empty() && md && !anchors(&resolved).contains(&frag.to_string()) {
                        bad.push(format!("{name}: {target} names no heading there"));
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn the_link_checker_sees_links_and_skips_code() {
    let text = "see [a](docs/a.md#x-y) and ![i](img.png)\n`[no](code)`\n```\n[no](fence)\n```\n";
    assert_eq!(link_targets(text), ["docs/a.md#x-y", "img.png"]);
    assert_eq!(
        anchor("Where to route: `treadc plan`"),
        "where-to-route-treadc-plan"
    );
}
