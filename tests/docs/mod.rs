//! The repository is self-contained: every relative link and every backticked repository path
//! in the Markdown documents and in the comments of the Rust sources resolves to a file or
//! folder of this checkout, and nothing points outside it (a parent folder's `shared`), to the
//! retired per-crate notes files or to issue numbers. Reads files only; no model is trained.

use std::fs;
use std::path::{Path, PathBuf};

/// The checkout's root (the root package's manifest folder).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` whose name ends with `ext`, skipping build outputs and hidden folders.
fn files_with_ext(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if !(name.starts_with('.') || name == "target" || name == "runs") {
                files_with_ext(&path, ext, out);
            }
        } else if name.ends_with(ext) {
            out.push(path);
        }
    }
}

/// A piece of documentation: where it comes from and its text.
struct Doc {
    /// `file:line` of the first line, for messages.
    origin: String,
    /// The folder relative links are resolved against.
    base: PathBuf,
    /// The text (Markdown, or the comment text of a block of Rust comment lines).
    text: String,
}

/// The Markdown documents: README.md, ARCHITECTURE.md, docs/**/*.md, results/**/*.md, with
/// fenced code blocks blanked (they hold commands and output, not references).
fn markdown_docs(root: &Path) -> Vec<Doc> {
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    files_with_ext(&root.join("docs"), ".md", &mut files);
    files_with_ext(&root.join("results"), ".md", &mut files);
    files
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let mut fenced = false;
            let lines: Vec<&str> = text
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with("```") {
                        fenced = !fenced;
                        return "";
                    }
                    if fenced { "" } else { l }
                })
                .collect();
            Doc {
                origin: rel(root, &path),
                base: path.parent().unwrap().to_path_buf(),
                text: lines.join("\n"),
            }
        })
        .collect()
}

/// The comments of the workspace's Rust sources (`//`, `///`, `//!`), one [`Doc`] per block of
/// consecutive comment lines, and the `#` comments of the Cargo manifests.
fn comment_docs(root: &Path) -> Vec<Doc> {
    let mut files = Vec::new();
    // The root package's folders and every workspace crate (a top-level folder with a
    // Cargo.toml), so a new crate is checked without being listed here.
    let mut dirs: Vec<PathBuf> =
        ["src", "tests", "examples"].iter().map(|d| root.join(d)).collect();
    for entry in fs::read_dir(root).expect("the repository root is readable") {
        let path = entry.expect("a directory entry").path();
        if path.join("Cargo.toml").is_file() {
            dirs.push(path);
        }
    }
    for dir in dirs {
        files_with_ext(&dir, ".rs", &mut files);
        files_with_ext(&dir, "Cargo.toml", &mut files);
    }
    files.push(root.join("Cargo.toml"));
    let mut docs = Vec::new();
    for path in files {
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let marker = if path.extension().is_some_and(|e| e == "toml") { "#" } else { "//" };
        let mut block: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            let comment = line.find(marker).map(|at| &line[at..]).filter(|c| {
                // A comment starts the line, or follows code after whitespace (not `://` of a URL).
                let before = &line[..line.len() - c.len()];
                before.trim().is_empty() || before.ends_with(char::is_whitespace)
            });
            match comment {
                Some(c) => {
                    let c = c.trim_start_matches(['/', '!', '#']);
                    let b = block.get_or_insert_with(|| (i + 1, String::new()));
                    b.1.push_str(c);
                    b.1.push('\n');
                }
                None => {
                    if let Some((line_no, text)) = block.take() {
                        docs.push(Doc {
                            origin: format!("{}:{line_no}", rel(root, &path)),
                            base: root.to_path_buf(),
                            text,
                        });
                    }
                }
            }
        }
        if let Some((line_no, text)) = block {
            docs.push(Doc {
                origin: format!("{}:{line_no}", rel(root, &path)),
                base: root.into(),
                text,
            });
        }
    }
    docs
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

/// The targets of Markdown links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        match after.find(')') {
            Some(end) => {
                out.push(after[..end].trim().to_string());
                rest = &after[end..];
            }
            None => break,
        }
    }
    out
}

/// The contents of inline code spans `` `…` `` in `text`.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Whether a link target points into the checkout (not a URL, an anchor or a Rust item path).
fn is_relative_file_link(target: &str) -> bool {
    !(target.is_empty()
        || target.starts_with('#')
        || target.contains("://")
        || target.starts_with("mailto:")
        || target.contains("::")
        || target.contains(char::is_whitespace)
        || (!target.contains('/') && !target.contains('.')))
}

/// The words of a code span that name a path of this repository: they begin with one of the
/// checkout's top-level folders or name a root document (an upper-case name ending in `.md`).
/// Placeholders (`{model}`, `NNNN`, `*`, `…`) and line suffixes (`:42`) are left out.
fn repo_paths(span: &str, top_level: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for word in span.split(|c: char| c.is_whitespace() || c == '=' || c == ',') {
        let word = word.trim_matches(|c: char| matches!(c, '.' | ':' | ';' | ')' | '(' | '"'));
        if word.is_empty()
            || ["{", "}", "*", "<", ">", "…", "NNNN", "XXX", "$", "|"]
                .iter()
                .any(|p| word.contains(p))
        {
            continue;
        }
        let word = word.split_once(".rs:").map_or(word.to_string(), |(p, _)| format!("{p}.rs"));
        let word = word.split('#').next().unwrap_or_default().trim_end_matches('/').to_string();
        let first = word.split('/').next().unwrap_or_default();
        let root_doc = !word.contains('/')
            && word.ends_with(".md")
            && word[..word.len() - 3]
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '-' || c == '_');
        if (word.contains('/') && top_level.iter().any(|t| t == first)) || root_doc {
            out.push(word);
        }
    }
    out
}

/// What is wrong with the references of `docs` (one line per problem).
fn problems(root: &Path, docs: &[Doc]) -> Vec<String> {
    let top_level: Vec<String> = fs::read_dir(root)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n != "target" && n != "runs" && n != ".git")
        .collect();
    let mut out = Vec::new();
    for doc in docs {
        for (needle, why) in [
            (OUTSIDE, "points outside the repository"),
            ("NOTES-", "names a NOTES-*.md file (retired; use docs/)"),
        ] {
            if doc.text.contains(needle) {
                out.push(format!("{}: {why} ({needle:?})", doc.origin));
            }
        }
        let lower = doc.text.to_lowercase();
        for (at, _) in lower.match_indices("issue") {
            let tail = lower[at + 5..].trim_start_matches(['s', ' ', '#']);
            if tail.starts_with(|c: char| c.is_ascii_digit()) {
                let cited: String = lower[at..].chars().take(12).collect();
                out.push(format!("{}: cites an issue number ({cited:?})", doc.origin));
            }
        }
        for target in link_targets(&doc.text) {
            if is_relative_file_link(&target) {
                let path = target.split('#').next().unwrap_or_default();
                if !doc.base.join(path).exists() {
                    out.push(format!("{}: link to {target:?} does not resolve", doc.origin));
                }
            }
        }
        // Paths in code spans, and Markdown file names anywhere in the text.
        let mut paths: Vec<String> =
            code_spans(&doc.text).into_iter().flat_map(|s| repo_paths(s, &top_level)).collect();
        let words = doc.text.split(|c: char| c.is_whitespace() || "()[]`\"',;".contains(c));
        paths.extend(
            words
                .filter(|w| w.trim_end_matches(['.', ':']).ends_with(".md"))
                .flat_map(|w| repo_paths(w, &top_level)),
        );
        paths.sort();
        paths.dedup();
        for path in paths {
            if !root.join(&path).exists() {
                out.push(format!("{}: `{path}` does not exist in the repository", doc.origin));
            }
        }
    }
    out
}

#[test]
fn every_doc_reference_resolves() {
    let root = root();
    let mut docs = markdown_docs(&root);
    docs.extend(comment_docs(&root));
    assert!(docs.len() > 100, "found only {} documents and comment blocks", docs.len());
    let problems = problems(&root, &docs);
    assert!(problems.is_empty(), "dangling references:\n{}", problems.join("\n"));
}

/// The parent folder's shared directory, spelled so that this file does not itself point there.
const OUTSIDE: &str = concat!("..", "/", "shared");

#[test]
fn the_checker_finds_dangling_references() {
    let root = root();
    let doc = |text: &str| Doc { origin: "test".into(), base: root.clone(), text: text.into() };
    let outside = format!("The spec is `{OUTSIDE}/DESIGN.md`.");
    let bad = [
        "See [the design](docs/no-such-design.md).",
        outside.as_str(),
        "Measured, see `model/NOTES-FOR-README.md`.",
        "Details in `docs/missing.md` and `DESIGN.md`.",
        "Issue 4's timing target.",
        "Source: `model/src/nope.rs:12`.",
        "The RNN baseline (DESIGN.md, \"Baseline\"); measured, see docs/gone.md.",
    ];
    for text in bad {
        assert!(!problems(&root, &[doc(text)]).is_empty(), "not flagged: {text}");
    }
    let good = [
        "See [the design](docs/design.md#objective), [burn](https://burn.dev) and [`Ekvae`](crate::Ekvae).",
        "`model/src/kalman.rs:120`, `results/pixmpc-model`, `runs/demo/`, `checkpoints/epoch-NNNN/`.",
        "`ekvae mpc --run results/pixmpc-model --out runs/x`; `table.md`; `results/reproduce/runs/{model}-s{seed}/`.",
    ];
    for text in good {
        let p = problems(&root, &[doc(text)]);
        assert!(p.is_empty(), "wrongly flagged: {text}: {p:?}");
    }
}
