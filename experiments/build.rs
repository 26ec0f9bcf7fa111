//! Records the git commit the binary is built from (`EKVAE_GIT_COMMIT`), so that tables and
//! summaries name the code that produced them rather than whatever is checked out later.

use std::path::Path;
use std::process::Command;

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(root).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).parent().expect("experiments/ sits in the workspace root");
    // Rerun when a commit is made or checked out, or when any crate's source changes (for the
    // "uncommitted changes" flag).
    for p in [".git/HEAD", ".git/index", ".git/refs/heads"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    for p in [
        "envs/src",
        "model/src",
        "planner/src",
        "pipeline/src",
        "experiments/src",
        "src",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let commit = match git(root, &["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => {
            let dirty = git(root, &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{c} with uncommitted changes") } else { c }
        }
        None => "unknown (not built from a git checkout)".to_string(),
    };
    println!("cargo:rustc-env=EKVAE_GIT_COMMIT={commit}");
}
