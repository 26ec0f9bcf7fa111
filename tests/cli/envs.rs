//! `ekvae collect` and `ekvae inspect` end to end, and numpy reading the dataset file.

use super::{assert_clean_failure, ekvae, stderr};
use ekvae::envs::Dataset;
use std::path::Path;
use std::process::Command;

/// A small collection into `dir/name`, asserting success.
fn collect_small(dir: &Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let out = dir.join(name);
    let mut args = vec![
        "collect",
        "--episodes",
        "5",
        "--steps",
        "7",
        "--size",
        "16",
        "--seed",
        "3",
        "--quiet",
        "--out",
    ];
    args.push(out.to_str().unwrap());
    args.extend_from_slice(extra);
    let o = ekvae(&args);
    assert!(o.status.success(), "collect failed: {}", stderr(&o));
    out
}

#[test]
fn collect_then_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let file = collect_small(dir.path(), "d.npz", &["--policy", "uniform:-1,1"]);
    let d = Dataset::load(&file).unwrap();
    assert_eq!((d.episodes, d.steps, d.size), (5, 7, 16));
    assert_eq!(d.meta.seed, 3);
    assert_eq!(d.meta.policy, "uniform:-1,1");
    assert!(d.actions.iter().all(|&u| (-1.0..1.0).contains(&u)));

    let o = ekvae(&["inspect", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "[5, 7, 16, 16]",
        "[5, 7, 1]",
        "[5, 7, 2]",
        "uniform:-1,1",
        "seed 3",
        "theta_dot",
        "rewards",
    ] {
        assert!(text.contains(needle), "inspect output lacks {needle}:\n{text}");
    }
    let sheet = dir.path().join("d-sheet.png");
    let png = std::fs::read(&sheet).expect("contact sheet next to the file");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let custom = dir.path().join("custom.png");
    let o = ekvae(&[
        "inspect",
        file.to_str().unwrap(),
        "--sheet",
        custom.to_str().unwrap(),
        "--rows",
        "2",
        "--cols",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(custom.exists());
}

#[test]
fn output_identical_with_one_or_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let a = collect_small(dir.path(), "a.npz", &["--threads", "1"]);
    let b = collect_small(dir.path(), "b.npz", &["--threads", "2"]);
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}

#[test]
fn collect_refuses_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.npz");
    let out = out.to_str().unwrap();
    for (args, needle) in [
        (vec!["--steps", "0"], "steps"),
        (vec!["--episodes", "0"], "episodes"),
        (vec!["--size", "7"], "size"),
        (vec!["--policy", "sometimes"], "policy"),
        // The pendulum has no swinging part for the energy cap (the cart-pole's policy).
        (vec!["--policy", "capped:-1,1,0,0,5"], "swinging part"),
        (vec!["--policy", "capped:-1,1,0,0,0"], "CAP must be positive"),
        (vec!["--threads", "0"], "threads"),
        (vec!["--env", "CartPole-v9"], "not registered"),
        (vec!["--env", "cartpole"], "not registered"),
    ] {
        let mut all = vec!["collect", "--out", out];
        all.extend(args);
        assert_clean_failure(&ekvae(&all), needle);
    }
    // Unwritable output: a folder below a regular file, and a folder as the file name.
    let file = dir.path().join("plain");
    std::fs::write(&file, "x").unwrap();
    let below = file.join("x.npz");
    assert_clean_failure(
        &ekvae(&["collect", "--episodes", "1", "--out", below.to_str().unwrap()]),
        "plain",
    );
    assert_clean_failure(
        &ekvae(&["collect", "--episodes", "1", "--out", dir.path().to_str().unwrap()]),
        "directory",
    );
    // clap's own errors (not a number) also fail cleanly.
    let o = ekvae(&["collect", "--episodes", "many"]);
    assert!(!o.status.success() && !stderr(&o).contains("panicked"));
}

/// The cart-pole through the command line: its states, the centring policy, and an inspect
/// that names the coordinates.
#[test]
fn collect_cartpole_then_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let file = collect_small(dir.path(), "cp.npz", &["--env", "CartPoleSwingUp-v0"]);
    let d = Dataset::load(&file).unwrap();
    assert_eq!((d.meta.env.as_str(), d.state_dim, d.action_dim), ("CartPoleSwingUp-v0", 4, 1));
    assert_eq!(d.meta.state_names, ["x", "x_dot", "theta", "theta_dot"]);
    assert_eq!(d.meta.policy, "centring:-1,1,0.2,0.2");
    let o = ekvae(&["inspect", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("CartPoleSwingUp-v0") && text.contains("theta_dot"), "{text}");
}

/// The ghost drawing through the command line: same physics and starts as the plain cart-pole
/// (the same seed gives the same states and actions), other frames, and the file's renderer
/// record says how the ghost is drawn.
#[test]
fn collect_cartpole_ghost_frames() {
    let dir = tempfile::tempdir().unwrap();
    let big = collect_small(dir.path(), "big.npz", &["--env", "CartPoleSwingUpBigPole-v0"]);
    let ghost =
        collect_small(dir.path(), "ghost.npz", &["--env", "CartPoleSwingUpBigPoleGhost-v0"]);
    let (b, g) = (Dataset::load(&big).unwrap(), Dataset::load(&ghost).unwrap());
    assert_eq!(g.meta.env, "CartPoleSwingUpBigPoleGhost-v0");
    assert_eq!((&b.states, &b.actions), (&g.states, &g.actions));
    assert_ne!(b.images, g.images, "the ghost is drawn");
    assert_eq!(g.meta.renderer["ghost"]["shade"], 110, "{:?}", g.meta.renderer);
}

#[test]
fn failed_collect_keeps_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keep.npz");
    std::fs::write(&out, b"precious").unwrap();
    let o = ekvae(&["collect", "--size", "4", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    // A successful run replaces it, and leaves no temporary file behind.
    collect_small(dir.path(), "keep.npz", &[]);
    Dataset::load(&out).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn inspect_refuses_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = collect_small(dir.path(), "good.npz", &[]);
    let bytes = std::fs::read(&good).unwrap();

    let missing = dir.path().join("missing.npz");
    assert_clean_failure(&ekvae(&["inspect", missing.to_str().unwrap()]), "missing.npz");

    let garbage = dir.path().join("garbage.npz");
    std::fs::write(&garbage, "not a zip at all").unwrap();
    assert_clean_failure(&ekvae(&["inspect", garbage.to_str().unwrap()]), "garbage.npz");

    let cut = dir.path().join("cut.npz");
    for at in [0, 10, bytes.len() / 3, bytes.len() / 2, bytes.len() - 30, bytes.len() - 1] {
        std::fs::write(&cut, &bytes[..at]).unwrap();
        assert_clean_failure(&ekvae(&["inspect", cut.to_str().unwrap()]), "cut.npz");
    }

    let flipped = dir.path().join("flipped.npz");
    let mut b = bytes.clone();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    std::fs::write(&flipped, &b).unwrap();
    assert_clean_failure(&ekvae(&["inspect", flipped.to_str().unwrap()]), "flipped.npz");

    assert_clean_failure(&ekvae(&["inspect", good.to_str().unwrap(), "--rows", "0"]), "rows");
}

/// Run python3 with numpy; fails the test (never skips it) if either is missing.
fn python(script: &str, args: &[&str]) -> String {
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 is required for this test (the CI script .ci/run installs numpy with it): cannot run python3");
    assert!(
        o.status.success(),
        "python3 with numpy is required for this test (run `python3 -m pip install numpy`, as .ci/run does); python failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// numpy opens the file as it is, with the documented dtypes and shapes and the same values as
/// Rust; and a file numpy re-saves with `savez_compressed` loads back in Rust.
#[test]
fn numpy_reads_the_dataset_and_writes_one_we_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = collect_small(dir.path(), "d.npz", &[]);
    let d = Dataset::load(&file).unwrap();
    let script = r#"
import json, sys, numpy as np
d = np.load(sys.argv[1])
assert sorted(d.files) == ["actions", "images", "meta", "rewards", "states"], d.files
im, ac, st, rw = d["images"], d["actions"], d["states"], d["rewards"]
assert im.dtype == np.uint8 and im.shape == (5, 7, 16, 16), (im.dtype, im.shape)
assert ac.dtype == np.float32 and ac.shape == (5, 7, 1), (ac.dtype, ac.shape)
assert st.dtype == np.float64 and st.shape == (5, 7, 2), (st.dtype, st.shape)
assert rw.dtype == np.float32 and rw.shape == (5, 7), (rw.dtype, rw.shape)
meta = json.loads(d["meta"].tobytes())
assert meta["format_version"] == 2 and meta["episodes"] == 5 and meta["steps"] == 7 and meta["size"] == 16, meta
assert np.all(np.abs(st[..., 1]) <= 8) and np.all(rw <= 0) and np.all(rw >= -16.2736044)
np.savez_compressed(sys.argv[2], **{k: d[k] for k in d.files})
print(json.dumps({"images_sum": int(im.astype(np.int64).sum()), "theta": repr(float(st[4, 6, 0])),
                  "thdot": repr(float(st[2, 3, 1])), "action": repr(float(ac[1, 2, 0])), "reward": repr(float(rw[3, 4]))}))
"#;
    let resaved = dir.path().join("numpy.npz");
    let out = python(script, &[file.to_str().unwrap(), resaved.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("python printed JSON");
    let sum: u64 = d.images.iter().map(|&x| x as u64).sum();
    assert_eq!(v["images_sum"].as_u64(), Some(sum));
    let num = |k: &str| v[k].as_str().unwrap().parse::<f64>().unwrap();
    assert_eq!(num("theta"), d.state(4, 6)[0]);
    assert_eq!(num("thdot"), d.state(2, 3)[1]);
    assert_eq!(num("action"), d.action(1, 2)[0] as f64);
    assert_eq!(num("reward"), d.rewards[3 * 7 + 4] as f64);
    assert_eq!(Dataset::load(&resaved).unwrap(), d);
}
