//! `ekvae export --pytorch RUN OUT` on the committed run, and its refusals.

use super::{assert_clean_failure, ekvae, ekvae_cmd};
use std::path::Path;

fn committed_run() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results/pixmpc-model")
}

#[test]
fn exports_the_committed_run_atomically_into_a_new_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sub/weights.safetensors");
    let o =
        ekvae_cmd().args(["export", "--pytorch"]).arg(committed_run()).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("exported 23 tensors"));
    let bytes = std::fs::read(&out).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
    assert!(header.contains("\"encoder.hidden.weight\"") && header.contains("\"format\":\"pt\""));
    // Only the file itself: no temporary left beside it.
    let names: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1);
    // The same weights give the same bytes.
    let again = dir.path().join("again.safetensors");
    let o = ekvae_cmd()
        .args(["export", "--pytorch"])
        .arg(committed_run())
        .arg(&again)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(std::fs::read(&again).unwrap(), bytes);
}

#[test]
fn refuses_bad_runs_and_arguments_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.safetensors");
    let out_s = out.to_str().unwrap();
    let run = committed_run();
    let run_s = run.to_str().unwrap();
    assert_clean_failure(&ekvae(&["export", run_s, out_s]), "--pytorch");
    let missing = dir.path().join("nope");
    assert_clean_failure(
        &ekvae(&["export", "--pytorch", missing.to_str().unwrap(), out_s]),
        "run directory does not exist",
    );
    assert_clean_failure(
        &ekvae(&["export", "--pytorch", dir.path().to_str().unwrap(), out_s]),
        "config.toml",
    );
    // The output may not replace the run's own files (on a copy of the run).
    let copy = dir.path().join("copy");
    copy_dir(&run, &copy);
    let config = copy.join("config.toml");
    let before = std::fs::read(&config).unwrap();
    assert_clean_failure(
        &ekvae(&["export", "--pytorch", copy.to_str().unwrap(), config.to_str().unwrap()]),
        "config.toml",
    );
    assert_eq!(std::fs::read(&config).unwrap(), before);
    assert!(!out.exists());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
