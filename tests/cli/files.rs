//! Run directories and files with one owner, as a hostile user would try them. Each case has a
//! test here (or in `model/tests/rundir.rs` / the crates' unit tests, as noted), plus the
//! kill-storm test of `train`.

use super::{assert_clean_failure, ekvae, ekvae_cmd, stderr};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A pid above any kernel's pid_max: a process that never runs.
const DEAD_PID: u32 = 2_000_000_000;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn collect(dir: &Path, name: &str, episodes: usize, steps: usize, size: usize) -> PathBuf {
    let out = dir.join(name);
    let o = ekvae(&[
        "collect",
        "--episodes",
        &episodes.to_string(),
        "--steps",
        &steps.to_string(),
        "--size",
        &size.to_string(),
        "--seed",
        "1",
        "--quiet",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "collect failed: {}", stderr(&o));
    out
}

/// A tiny model on 8×8 frames.
fn tiny_config(dir: &Path, epochs: usize) -> PathBuf {
    let path = dir.join(format!("tiny{epochs}.toml"));
    fs::write(
        &path,
        format!(
            "epochs = {epochs}\nbatch_size = 4\nseq_len = 8\nsteps_per_epoch = 3\nval_fraction = 0.25\n\
             [model]\nimage_size = 8\nchannels = 4\nhidden = 16\ntransition_hidden = 8\nnum_bases = 2\nstate_dim = 2\nrnn_hidden = 8\n"
        ),
    )
    .unwrap();
    path
}

fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--data", s(data), "--out", s(out), "--quiet"];
    args.extend_from_slice(extra);
    ekvae(&args)
}

fn checkpoint_file(run: &Path, file: &str) -> PathBuf {
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    run.join(state["checkpoint"].as_str().unwrap()).join(file)
}

/// Every path under `dir` whose name marks a temporary file or folder.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp") {
                found.push(e.path());
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    found
}

/// `metrics.csv` without the wall-clock column.
fn metrics_without_seconds(run: &Path) -> Vec<String> {
    let text = fs::read_to_string(run.join("metrics.csv")).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "seconds").unwrap();
    text.lines()
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| *i != col)
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

fn eval(run: &Path, data: &Path) -> Output {
    ekvae(&["eval", "--run", s(run), "--data", s(data), "--condition", "4", "--horizons", "2,4"])
}

/// One error line on stderr (besides informational lines that do not look like a dump).
fn assert_one_line(o: &Output, needle: &str) {
    assert_clean_failure(o, needle);
    let err = stderr(o);
    let errors = err
        .lines()
        .filter(|l| !l.starts_with("training ") && !l.starts_with("collecting "))
        .count();
    assert_eq!(errors, 1, "more than one line: {err}");
}

/// Cases 1–4, 6, 11 and the smaller items on one trained run.
#[test]
fn damaged_foreign_empty_and_unfinished_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = collect(d, "d.npz", 8, 16, 8);
    let cfg = tiny_config(d, 1);
    let run = d.join("run");
    let o = train(&data, &run, &["--config", s(&cfg)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rnn = d.join("rnn");
    let o = train(&data, &rnn, &["--config", s(&cfg), "--model", "rnn"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(eval(&run, &data).status.success());

    // Smaller item: every file 0644, model.safetensors included.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [
            checkpoint_file(&run, "model.safetensors"),
            run.join("state.json"),
            run.join("eval.json"),
        ] {
            let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{} is {mode:o}", f.display());
        }
    }

    // 1. 16 bytes flipped inside model.safetensors: eval, mpc and train --resume refuse.
    let model = checkpoint_file(&run, "model.safetensors");
    let good = fs::read(&model).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid..mid + 16].iter_mut().for_each(|b| *b ^= 0x5a);
    fs::write(&model, &bad).unwrap();
    assert_one_line(&eval(&run, &data), "model.safetensors");
    let o = ekvae(&[
        "mpc",
        "--run",
        s(&run),
        "--episodes",
        "1",
        "--steps",
        "50",
        "--out",
        s(&d.join("m")),
    ]);
    assert_one_line(&o, "damaged");
    assert_one_line(&train(&data, &run, &["--resume", "--epochs", "2"]), "damaged");
    assert_eq!(fs::read(&model).unwrap(), bad, "the damaged file is left as it is");
    fs::write(&model, &good).unwrap();

    // 2. An optimizer state from another model (--model rnn) is refused by train --resume.
    let optim = checkpoint_file(&run, "optimizer.bpk");
    let own = fs::read(&optim).unwrap();
    fs::copy(checkpoint_file(&rnn, "optimizer.bpk"), &optim).unwrap();
    assert_one_line(&train(&data, &run, &["--resume", "--epochs", "2"]), "optimizer.bpk");
    fs::write(&optim, &own).unwrap();

    // 3. A config.toml from another model: one line naming config.toml, no loader dump.
    let config = run.join("config.toml");
    let original = fs::read_to_string(&config).unwrap();
    fs::copy(rnn.join("config.toml"), &config).unwrap();
    let o = eval(&run, &data);
    assert_one_line(&o, "config.toml");
    assert!(stderr(&o).contains("inference") && !stderr(&o).contains("corrupt"), "{}", stderr(&o));
    assert_one_line(&train(&data, &run, &["--resume", "--epochs", "2"]), "does not match");

    // 4. An empty config.toml is an error, not all defaults.
    fs::write(&config, "").unwrap();
    assert_one_line(&train(&data, &run, &["--resume", "--epochs", "2"]), "incomplete run config");
    assert_one_line(&eval(&run, &data), "incomplete run config");
    fs::write(&config, &original).unwrap();

    // --resume changes only --epochs; other flags are said to be ignored (not silently).
    let o = train(&data, &run, &["--resume", "--lr", "0.1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("only --epochs can change, so --lr is ignored"), "{}", stderr(&o));

    // Smaller item: eval fails on a bad metrics.csv before writing anything.
    for f in ["eval.json", "prediction.csv", "latent_space.png", "training_curves.png"] {
        let _ = fs::remove_file(run.join(f));
    }
    let metrics = fs::read_to_string(run.join("metrics.csv")).unwrap();
    fs::write(run.join("metrics.csv"), metrics.replace("\n1,", "\nx,")).unwrap();
    assert_one_line(&eval(&run, &data), "metrics.csv");
    for f in ["eval.json", "prediction.csv", "latent_space.png", "training_curves.png"] {
        assert!(!run.join(f).exists(), "{f} written before the failure");
    }
    fs::write(run.join("metrics.csv"), &metrics).unwrap();

    // 12. Stale temporary files of dead processes are removed by the next run.
    let stale_dir = run.join(format!("checkpoints/.epoch-0002.tmp-{DEAD_PID}"));
    fs::create_dir_all(&stale_dir).unwrap();
    fs::write(stale_dir.join("model.safetensors"), b"half").unwrap();
    fs::write(run.join(format!(".metrics.csv.tmp-{DEAD_PID}-abcdef")), b"half").unwrap();
    let o = train(&data, &run, &["--resume", "--epochs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(temp_files(&run), Vec::<PathBuf>::new());
    let collected = d.join("c.npz");
    fs::write(d.join(format!(".c.npz.tmp-{DEAD_PID}-xyzxyz")), b"half").unwrap();
    collect(d, "c.npz", 2, 8, 8);
    assert!(collected.exists());
    assert_eq!(temp_files(d), Vec::<PathBuf>::new());

    // 6. A run stopped inside its first epoch (what a kill leaves) is no dead end.
    let fresh = d.join("fresh");
    let o = train(&data, &fresh, &["--config", s(&cfg)]);
    assert!(o.status.success());
    fs::remove_file(fresh.join("state.json")).unwrap();
    fs::remove_dir_all(fresh.join("checkpoints")).unwrap();
    let o = train(&data, &fresh, &["--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("never finished an epoch"), "{}", stderr(&o));
    fs::remove_file(fresh.join("state.json")).unwrap();
    let o = train(&data, &fresh, &["--config", s(&cfg)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("starting it again from scratch"), "{}", stderr(&o));
    // With a finished epoch, plain train is still refused (nothing overwritten).
    let before = fs::read(fresh.join("state.json")).unwrap();
    assert_one_line(&train(&data, &fresh, &["--config", s(&cfg)]), "already holds a run");
    assert_eq!(fs::read(fresh.join("state.json")).unwrap(), before);
    // Resuming what is not a run says so.
    assert_one_line(&train(&data, &d.join("none"), &["--resume"]), "does not exist");
    assert!(!d.join("none").exists());

    // 11. The NaN guard covers validation; the message says truthfully what is kept.
    let wild = d.join("wild");
    let o =
        train(&data, &wild, &["--config", s(&tiny_config(d, 3)), "--model", "rnn", "--lr", "1e30"]);
    if !o.status.success() {
        let err = stderr(&o);
        assert!(!err.contains("the last good checkpoint is kept"), "{err}");
        if err.contains("no epoch finished") {
            assert!(!wild.join("state.json").exists(), "{err}");
        }
        if let Ok(state) = fs::read_to_string(wild.join("state.json")) {
            let v: serde_json::Value = serde_json::from_str(&state).unwrap();
            assert!(err.contains(&format!("epoch {}) is kept", v["epoch"])), "{err}");
            // The kept checkpoint is usable.
            assert!(eval(&wild, &data).status.success());
        }
    }
}

/// 7. Bounds before allocation; smaller item: collect only makes sizes the model trains on.
#[test]
fn sizes_are_bounded_before_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = Instant::now();
    let o = ekvae(&[
        "collect",
        "--episodes",
        "40",
        "--steps",
        "40",
        "--size",
        "100000",
        "--out",
        s(&d.join("x.npz")),
    ]);
    assert_one_line(&o, "lower --episodes, --steps or --size");
    assert!(t.elapsed() < Duration::from_secs(5), "refused only after {:?}", t.elapsed());
    assert!(!d.join("x.npz").exists());
    assert_one_line(
        &ekvae(&["collect", "--size", "12", "--out", s(&d.join("y.npz"))]),
        "multiple of 8",
    );
    let data = collect(d, "d.npz", 4, 12, 8);
    let o =
        train(&data, &d.join("r"), &["--config", s(&tiny_config(d, 1)), "--batch", "100000000"]);
    assert_one_line(&o, "lower --batch");
    assert!(!d.join("r").exists());
    let o = ekvae(&["mpc", "--horizon", "100000", "--out", s(&d.join("m"))]);
    assert_one_line(&o, "--horizon 100000");
    let o = ekvae(&[
        "mpc",
        "--steps",
        "4000000000000",
        "--episodes",
        "1000000",
        "--out",
        s(&d.join("m")),
    ]);
    assert_one_line(&o, "lower --episodes or --steps");
    // Smaller item: the size-mismatch hint names only flags that exist.
    let cfg16 = d.join("c16.toml");
    fs::write(&cfg16, "[model]\nimage_size = 16\n").unwrap();
    let o = train(&data, &d.join("r2"), &["--config", s(&cfg16)]);
    assert_one_line(&o, "collect with --size 16");
    assert!(!stderr(&o).contains("--image-size"));
}

/// 8, 9: never write over an input or a non-regular file; symlinks are refused.
#[cfg(unix)]
#[test]
fn outputs_never_replace_inputs_or_special_files() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = collect(d, "d.npz", 2, 8, 8);
    let bytes = fs::read(&data).unwrap();
    // 8. inspect X.npz --sheet X.npz
    assert_one_line(&ekvae(&["inspect", s(&data), "--sheet", s(&data)]), "is the input");
    let dotted = d.join(".").join("d.npz");
    assert_one_line(&ekvae(&["inspect", s(&data), "--sheet", s(&dotted)]), "is the input");
    assert_eq!(fs::read(&data).unwrap(), bytes);
    // 9. A FIFO, a device node, a directory or a symlink at --out.
    let fifo = d.join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let link = d.join("link.npz");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    for (out, needle) in [
        (fifo.clone(), "FIFO"),
        (PathBuf::from("/dev/null"), "a device"),
        (link.clone(), "symbolic link"),
        (d.to_path_buf(), "directory"),
    ] {
        let o =
            ekvae(&["collect", "--episodes", "1", "--steps", "2", "--size", "8", "--out", s(&out)]);
        assert_one_line(&o, needle);
        let o = ekvae(&["inspect", s(&data), "--sheet", s(&out)]);
        assert_one_line(&o, needle);
    }
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(fs::read(&data).unwrap(), bytes);
    // An output inside a folder reached through a link is fine (only the last component counts).
    let linked_dir = d.join("linked");
    std::os::unix::fs::symlink(d, &linked_dir).unwrap();
    let o = ekvae(&["inspect", s(&data), "--sheet", s(&linked_dir.join("sheet.png"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.join("sheet.png").is_file());
}

/// 10. A closed stdout ends the program quietly.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let data = collect(dir.path(), "d.npz", 2, 8, 8);
    for args in [
        vec!["inspect", s(&data)],
        vec!["--help"],
        vec!["mpc", "--episodes", "1", "--steps", "50", "--out", s(&dir.path().join("m"))],
    ] {
        let mut child =
            ekvae_cmd().args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take()); // the reader is gone before the first line
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        let code = o.status.code();
        assert!(code == Some(0) || code == Some(141), "{args:?}: exit {code:?}: {err}");
    }
    // inspect still wrote its sheet.
    assert!(dir.path().join("d-sheet.png").is_file());
}

/// 13 and the zip writer's stray line: a full disk (a file-size limit) leaves no partial or
/// temporary file and prints one error line.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_leaves_no_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let limited = |args: &str| {
        // SIGXFSZ ignored: a write past the limit fails with EFBIG, as on a full disk.
        Command::new("bash")
            .arg("-c")
            .arg(format!("trap '' XFSZ; ulimit -f 8; exec \"$0\" {args}"))
            .arg(env!("CARGO_BIN_EXE_ekvae"))
            .output()
            .unwrap()
    };
    // 8 KiB: steps.csv and summary.json fit, trajectories.png does not.
    let out = d.join("m");
    let o = limited(&format!("mpc --episodes 1 --steps 50 --out {}", s(&out)));
    assert_clean_failure(&o, "trajectories.png");
    assert!(!out.join("trajectories.png").exists());
    assert!(out.join("summary.json").is_file());
    assert_eq!(temp_files(d), Vec::<PathBuf>::new());
    let npz = d.join("big.npz");
    fs::write(&npz, b"precious").unwrap();
    let o =
        limited(&format!("collect --episodes 40 --steps 40 --size 16 --quiet --out {}", s(&npz)));
    assert_clean_failure(&o, "big.npz");
    let err = stderr(&o);
    assert_eq!(
        err.lines().filter(|l| !l.starts_with("collecting ")).count(),
        1,
        "stray lines: {err}"
    );
    assert_eq!(fs::read(&npz).unwrap(), b"precious");
    assert_eq!(temp_files(d), Vec::<PathBuf>::new());
}

/// Hints name only flags that exist: every `--flag` in a message of the crates is a flag of
/// some subcommand (or of cargo, in the few build hints).
#[test]
fn hints_name_only_existing_flags() {
    let mut known: Vec<String> =
        vec!["--help".into(), "--version".into(), "--features".into(), "--release".into()];
    for sub in ["collect", "inspect", "train", "eval", "mpc", "reproduce", "demo", "export"] {
        let o = ekvae(&[sub, "--help"]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        known.extend(
            text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .filter(|w| w.starts_with("--"))
                .map(str::to_string),
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut unknown = Vec::new();
    for dir in ["model/src", "experiments/src", "envs/src"] {
        for e in fs::read_dir(root.join(dir)).unwrap().flatten() {
            if !e.file_type().unwrap().is_file() {
                continue;
            }
            let text = fs::read_to_string(e.path()).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") || code.starts_with("#[arg") || !code.contains('"') {
                    continue;
                }
                for w in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
                    if w.starts_with("--")
                        && w.len() > 2
                        && w.as_bytes()[2].is_ascii_lowercase()
                        && !known.iter().any(|k| k == w)
                    {
                        unknown.push(format!("{}:{}: {w}", e.path().display(), i + 1));
                    }
                }
            }
        }
    }
    assert!(unknown.is_empty(), "flags that no subcommand has: {unknown:#?}");
}

/// The kill storm: `train` killed (SIGKILL) again and again and resumed until it finishes
/// gives the same final weights, optimizer state, state.json and metrics (all but the wall
/// time) as an uninterrupted run, and leaves no temporary file.
#[cfg(unix)]
#[test]
fn kill_storm_train_resumes_to_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = collect(d, "d.npz", 8, 16, 8);
    let cfg = tiny_config(d, 8);
    // Epochs long enough (tens of ms) that the kill points below, in fractions of an epoch,
    // stand out from the timing noise of process start-up.
    let text =
        fs::read_to_string(&cfg).unwrap().replace("steps_per_epoch = 3", "steps_per_epoch = 30");
    fs::write(&cfg, text).unwrap();
    let reference = d.join("reference");
    let started = Instant::now();
    let o = train(&data, &reference, &["--config", s(&cfg)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let one_run = started.elapsed();
    // Start-up: a resume that finds nothing to do.
    let t = Instant::now();
    assert!(train(&data, &reference, &["--resume"]).status.success());
    let startup = t.elapsed();
    let epoch = one_run.saturating_sub(startup) / 8;

    let storm = d.join("storm");
    let (mut kills, mut attempts) = (0usize, 0);
    let mut killed_at = std::collections::BTreeSet::new();
    // Kill points in epochs after start-up (negative: during start-up); each resumed attempt
    // makes at most about one epoch of progress before its kill, so most kills land mid-run.
    const AT: [f64; 14] = [0.5, 1.3, -0.5, 0.8, 1.1, 0.2, 1.5, 0.9, -0.2, 1.2, 0.3, 1.4, 0.7, 1.05];
    loop {
        attempts += 1;
        assert!(attempts < 100, "the storm did not finish");
        let resume = storm.join("config.toml").exists();
        let mut cmd = ekvae_cmd();
        cmd.args(["train", "--data", s(&data), "--out", s(&storm), "--quiet"]);
        if resume {
            cmd.arg("--resume");
        } else {
            cmd.args(["--config", s(&cfg)]);
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let delay = match AT.get(attempts - 1) {
            Some(&x) => Duration::from_secs_f64(
                (startup.as_secs_f64() + x * epoch.as_secs_f64()).max(0.005),
            ),
            None => Duration::from_secs(60),
        };
        let t = Instant::now();
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if t.elapsed() >= delay {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        match finished {
            Some(status) => {
                let o = child.wait_with_output().unwrap();
                assert!(status.success(), "attempt {attempts}: {}", stderr(&o));
                let state: serde_json::Value =
                    serde_json::from_str(&fs::read_to_string(storm.join("state.json")).unwrap())
                        .unwrap();
                if state["epoch"] == 8 {
                    break;
                }
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                let epoch = fs::read_to_string(storm.join("state.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .and_then(|v| v["epoch"].as_u64())
                    .unwrap_or(0);
                killed_at.insert(epoch);
            }
        }
    }
    assert!(kills >= 5, "only {kills} kills landed (start-up {startup:?}, epoch {epoch:?})");
    assert!(killed_at.len() >= 3, "kills landed after epochs {killed_at:?} only");
    for f in ["model.safetensors", "optimizer.bpk"] {
        assert_eq!(
            fs::read(checkpoint_file(&reference, f)).unwrap(),
            fs::read(checkpoint_file(&storm, f)).unwrap(),
            "{f} differs after {kills} kills"
        );
    }
    assert_eq!(
        fs::read(reference.join("state.json")).unwrap(),
        fs::read(storm.join("state.json")).unwrap()
    );
    assert_eq!(metrics_without_seconds(&reference), metrics_without_seconds(&storm));
    assert_eq!(
        temp_files(&storm),
        Vec::<PathBuf>::new(),
        "temporary files left after {kills} kills"
    );
    eprintln!(
        "kill storm: {kills} kills in {attempts} attempts (after epochs {killed_at:?}), {:?} in all",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(60), "the storm took {:?}", started.elapsed());
}
