//! `ekvae train` and `ekvae eval` end to end on a tiny budget, `--resume`, and bad input.

use super::{assert_clean_failure, check_horizon_selection, ekvae, stderr};
use std::path::{Path, PathBuf};
use std::process::Output;

fn collect(dir: &Path, name: &str, size: usize, seed: u64) -> PathBuf {
    collect_with(dir, name, size, seed, &[])
}

/// `collect` of 6 episodes × 12 steps with `extra` flags (e.g. `--env`), asserting success.
fn collect_with(dir: &Path, name: &str, size: usize, seed: u64, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let (size, seed) = (size.to_string(), seed.to_string());
    let mut args = vec!["collect", "--episodes", "6", "--steps", "12", "--size", &size];
    args.extend(["--seed", &seed, "--quiet", "--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let o = ekvae(&args);
    assert!(o.status.success(), "collect failed: {}", stderr(&o));
    out
}

/// `eval --run RUN --data DATA --condition C --horizons H`.
fn eval_with(run: &Path, data: &Path, condition: &str, horizons: &str) -> Output {
    ekvae(&[
        "eval",
        "--run",
        run.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--condition",
        condition,
        "--horizons",
        horizons,
    ])
}

/// A JSON file.
fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A small model so that the test stays fast.
fn tiny_config(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        "epochs = 2\nbatch_size = 4\nseq_len = 8\nsteps_per_epoch = 2\nval_fraction = 0.2\n\
         [model]\nimage_size = 16\nchannels = 4\nhidden = 16\ntransition_hidden = 8\nnum_bases = 2\n",
    )
    .unwrap();
    path
}

fn train(data: &Path, out: &Path, config: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    ekvae(&args)
}

#[test]
fn collect_train_eval_resume() {
    let dir = tempfile::tempdir().unwrap();
    let train_file = collect(dir.path(), "train.npz", 16, 1);
    let test_file = collect(dir.path(), "test.npz", 16, 2);
    let cfg = tiny_config(dir.path());
    let run = dir.path().join("run");

    let o =
        train(&train_file, &run, &cfg, &["--epochs", "1", "--seed", "4", "--objective", "elbo"]);
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("objective = \"elbo\""), "{config}");
    assert!(config.contains("seed = 4"), "{config}");
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(
        metrics.lines().next().unwrap(),
        "epoch,lambda,D,R,neg_elbo,val_neg_elbo,seconds,phase,winding,clearance"
    );
    assert_eq!(metrics.lines().count(), 2);

    // Training into the same directory again without --resume: refused, nothing overwritten.
    let before = std::fs::read(run.join("state.json")).unwrap();
    assert_clean_failure(
        &train(&train_file, &run, &cfg, &["--epochs", "1"]),
        "already holds a run",
    );
    assert_eq!(std::fs::read(run.join("state.json")).unwrap(), before);

    // --resume on other data: refused (the run would train on a mix its record does not name).
    assert_clean_failure(
        &train(&test_file, &run, &cfg, &["--resume", "--epochs", "2"]),
        "not the data the run",
    );
    assert_eq!(std::fs::read(run.join("state.json")).unwrap(), before);
    // --resume continues at the saved epoch.
    let o = train(&train_file, &run, &cfg, &["--resume", "--epochs", "2"]);
    assert!(o.status.success(), "resume failed: {}", stderr(&o));
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let epochs: Vec<&str> = metrics.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(epochs, ["1", "2"]);

    // The default horizons (up to 40 after 10 conditioning frames) do not fit 12-step episodes.
    let eval = |extra: &[&str]| {
        let mut args =
            vec!["eval", "--run", run.to_str().unwrap(), "--data", test_file.to_str().unwrap()];
        args.extend_from_slice(extra);
        ekvae(&args)
    };
    assert_clean_failure(&eval(&[]), "fewer than --condition 10 + the largest horizon 40");
    assert!(!run.join("eval.json").exists());
    let o = eval(&["--condition", "4", "--horizons", "2,5"]);
    assert!(o.status.success(), "eval failed: {}", stderr(&o));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    for key in [
        "r2_cos_sin",
        "r2_theta_dot",
        "pixel_mse_h2",
        "pixel_mse_h5",
        "pixel_mse_last_frame_h5",
        "angle_err_deg_h2",
        "angle_err_deg_h5",
    ] {
        assert!(json[key].as_f64().is_some_and(f64::is_finite), "{key} missing: {json}");
    }
    assert!(json.get("pixel_mse_h10").is_none());
    assert_eq!(json["epoch"], 2);
    assert_eq!(json["model"], "ekvae");
    // 6 test episodes of 12 steps hold one 9-step window each.
    assert_eq!(json["prediction_windows"], 6);
    let curves = std::fs::read_to_string(run.join("prediction.csv")).unwrap();
    assert_eq!(curves.lines().next(), Some("horizon,pixel_mse,pixel_mse_last_frame,angle_err_deg"));
    assert_eq!(curves.lines().count(), 1 + 5);
    for fig in ["latent_space", "prediction_strips", "prediction_error", "training_curves"] {
        let png = std::fs::read(run.join(format!("{fig}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{fig}");
    }
    assert!(String::from_utf8_lossy(&o.stdout).contains("R²(cos θ, sin θ)"));
    assert!(json["commit"].as_str().is_some_and(|c| !c.is_empty()), "no commit: {json}");

    // A second evaluation with other settings into --out leaves the first one as it was.
    let first = std::fs::read(run.join("eval.json")).unwrap();
    let other = dir.path().join("eval-h3");
    let o =
        eval(&["--condition", "3", "--horizons", "3", "--out", other.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "eval --out failed: {}", stderr(&o));
    assert_eq!(std::fs::read(run.join("eval.json")).unwrap(), first);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(other.join("eval.json")).unwrap()).unwrap();
    assert_eq!(json["prediction_condition"], 3);
    for fig in ["latent_space", "prediction_strips", "prediction_error", "training_curves"] {
        assert!(other.join(format!("{fig}.png")).is_file(), "{fig} not in --out");
    }
    assert!(!String::from_utf8_lossy(&o.stdout).contains("prediction h ="), "--quiet");
}

#[test]
fn bad_input_is_a_clear_error_and_overwrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data16 = collect(dir.path(), "d16.npz", 16, 1);
    let data32 = collect(dir.path(), "d32.npz", 32, 1);
    let cfg = tiny_config(dir.path());

    // Images that do not fit the configured model.
    let o = train(&data32, &dir.path().join("r32"), &cfg, &[]);
    assert_clean_failure(&o, "32×32");
    assert!(!dir.path().join("r32").exists());

    // A run directory that does not exist.
    let missing = dir.path().join("nope");
    let o =
        ekvae(&["eval", "--run", missing.to_str().unwrap(), "--data", data16.to_str().unwrap()]);
    assert_clean_failure(&o, "does not exist");

    // A trained run, then test data of the wrong size.
    let run = dir.path().join("run");
    let o = train(&data16, &run, &cfg, &["--epochs", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ekvae(&["eval", "--run", run.to_str().unwrap(), "--data", data32.to_str().unwrap()]);
    assert_clean_failure(&o, "32×32");
    assert!(!run.join("eval.json").exists());

    // A checkpoint from another config (the run's config edited afterwards).
    let config_path = run.join("config.toml");
    let original = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, original.replace("state_dim = 3", "state_dim = 4")).unwrap();
    let o = ekvae(&["eval", "--run", run.to_str().unwrap(), "--data", data16.to_str().unwrap()]);
    assert_clean_failure(&o, "does not match");
    std::fs::write(&config_path, &original).unwrap();

    // A corrupt checkpoint: eval and resume fail cleanly, the checkpoint is left as it is.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    let ckpt = run.join(state["checkpoint"].as_str().unwrap()).join("model.safetensors");
    std::fs::write(&ckpt, b"garbage").unwrap();
    let o = ekvae(&["eval", "--run", run.to_str().unwrap(), "--data", data16.to_str().unwrap()]);
    assert_clean_failure(&o, "model.safetensors");
    let o = train(&data16, &run, &cfg, &["--resume", "--epochs", "2"]);
    assert_clean_failure(&o, "model.safetensors");
    assert_eq!(std::fs::read(&ckpt).unwrap(), b"garbage");
    assert!(!run.join("eval.json").exists());

    // A corrupt dataset file.
    let bad = dir.path().join("bad.npz");
    std::fs::write(&bad, b"PK\x03\x04 truncated").unwrap();
    let o = train(&bad, &dir.path().join("rbad"), &cfg, &[]);
    assert_clean_failure(&o, "bad.npz");
}

/// `train --restarts` killed (SIGKILL) while its candidates train, then run again with the same
/// command, resumes the candidates and ends with the same model as an uninterrupted run; killed
/// while the chosen candidate continues, `--resume` finishes it, again identically.
#[cfg(unix)]
#[test]
fn restarts_killed_and_run_again_give_the_same_model() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = collect(d, "train.npz", 16, 1);
    let cfg = tiny_config(d);
    let flags = ["--seed", "3", "--restarts", "3", "--restart-epochs", "2", "--epochs", "4"];
    let reference = d.join("reference");
    let o = train(&data, &reference, &cfg, &flags);
    assert!(o.status.success(), "{}", stderr(&o));
    let model = |run: &Path| {
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap())
                .unwrap();
        assert_eq!(state["epoch"], 4);
        std::fs::read(run.join(state["checkpoint"].as_str().unwrap()).join("model.safetensors"))
            .unwrap()
    };
    // Run `args` until `stop` holds (then SIGKILL) or the process ends; true if it was killed.
    let run_until = |args: Vec<&str>, stop: &dyn Fn() -> bool| {
        let mut child = super::ekvae_cmd()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if stop() || t.elapsed() > Duration::from_secs(120) {
                child.kill().unwrap();
                child.wait().unwrap();
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let run = d.join("killed");
    let mut args = vec!["train", "--data", data.to_str().unwrap(), "--out", run.to_str().unwrap()];
    args.extend(["--config", cfg.to_str().unwrap(), "--quiet"]);
    args.extend(flags);
    // First kill: as soon as one candidate has finished an epoch.
    let candidates = run.join("restarts");
    let killed = run_until(args.clone(), &|| {
        std::fs::read_dir(&candidates)
            .map(|it| it.flatten().any(|e| e.path().join("state.json").exists()))
            .unwrap_or(false)
    });
    assert!(killed, "the selection finished before the kill");
    assert!(!run.join("state.json").exists());
    // Second attempt, same command: killed once the chosen candidate was copied and continues.
    let killed = run_until(args.clone(), &|| run.join("state.json").exists());
    if killed {
        // Running the same command again is refused with advice; --resume finishes the run.
        let o = super::ekvae(&args);
        assert_clean_failure(&o, "--resume");
        let o = super::ekvae(&[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--quiet",
            "--resume",
            "--epochs",
            "4",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(model(&reference), model(&run));
    assert_eq!(
        std::fs::read(reference.join("selection.json")).unwrap(),
        std::fs::read(run.join("selection.json")).unwrap()
    );
}

#[test]
fn restarts_select_a_seed_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let train_file = collect(dir.path(), "train.npz", 16, 1);
    let test_file = collect(dir.path(), "test.npz", 16, 2);
    let cfg = tiny_config(dir.path());
    let run = dir.path().join("run");
    let o = train(
        &train_file,
        &run,
        &cfg,
        &["--seed", "10", "--restarts", "3", "--restart-epochs", "1"],
    );
    assert!(o.status.success(), "train --restarts failed: {}", stderr(&o));
    assert!(stderr(&o).contains("model selection: seed"), "{}", stderr(&o));
    let sel: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("selection.json")).unwrap())
            .unwrap();
    let seeds: Vec<u64> =
        sel["candidates"].as_array().unwrap().iter().map(|c| c["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, [10, 1010, 2010]);
    // Absurd selections are refused before any work.
    for (flags, needle) in [
        (["--restarts", "0", "--restart-epochs", "1"], "--restarts must be 1 to 1000"),
        (["--restarts", "100000000000", "--restart-epochs", "1"], "--restarts must be 1 to 1000"),
        (["--restarts", "2", "--restart-epochs", "0"], "--restart-epochs must be at least 1"),
    ] {
        let bad = dir.path().join("bad-restarts");
        let o = train(&train_file, &bad, &cfg, &flags);
        assert_clean_failure(&o, needle);
        assert!(!bad.exists(), "{flags:?} created {}", bad.display());
    }
    let chosen = sel["chosen_seed"].as_u64().unwrap();
    // The chosen candidate obeys the rule: no other candidate is a ring with a lower val −ELBO
    // while the chosen one is not, or the same ring status with a lower val −ELBO.
    let key = |c: &serde_json::Value| {
        (c["winding"].as_i64().unwrap().abs() != 1, c["val_neg_elbo"].as_f64().unwrap())
    };
    let best = sel["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .min_by(|a, b| key(a).partial_cmp(&key(b)).unwrap())
        .unwrap();
    assert_eq!(best["seed"].as_u64().unwrap(), chosen);
    // The run trained fully with the chosen seed, and eval reports the selection.
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains(&format!("seed = {chosen}")), "{config}");
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 1 + 2);
    let o = eval_with(&run, &test_file, "2", "1,2");
    assert!(o.status.success(), "eval failed: {}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("selected from 3 candidates"));
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    assert_eq!(eval["selected_from"].as_u64(), Some(3));
    for key in ["winding", "winding_clearance", "r2_cos", "r2_sin"] {
        assert!(eval.get(key).is_some(), "eval.json lacks {key}");
    }
}

/// The cart-pole through the command line on a tiny budget: collect → train → eval → mpc from
/// pixels, its own targets scored; a pendulum model is refused on cart-pole data.
#[test]
fn cartpole_collect_train_eval_mpc() {
    let dir = tempfile::tempdir().unwrap();
    let env = ["--env", "CartPoleSwingUp-v0"];
    let train_file = collect_with(dir.path(), "train.npz", 16, 1, &env);
    let test_file = collect_with(dir.path(), "test.npz", 16, 2, &env);
    let cfg = tiny_config(dir.path());
    let run = dir.path().join("run");
    let o =
        train(&train_file, &run, &cfg, &["--epochs", "1", "--state-dim", "5", "--aux-dim", "3"]);
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("env = \"CartPoleSwingUp-v0\""), "{config}");
    let o = eval_with(&run, &test_file, "4", "2,5");
    assert!(o.status.success(), "eval failed: {}", stderr(&o));
    let json = read_json(&run.join("eval.json"));
    assert_eq!(json["env"], "CartPoleSwingUp-v0");
    for key in ["x", "cos theta", "sin theta", "x_dot", "theta_dot"] {
        assert!(json["r2"][key].is_number(), "eval.json lacks r2.{key}: {json}");
        // The quadratic readout's diagnostic, for every target: its features include the
        // linear ones, so on the training frames it fits at least as well (here, on held-out
        // frames of a one-epoch model, only that it is there and finite).
        let q = &json["r2_quadratic"][key];
        assert!(q.as_f64().is_some_and(f64::is_finite), "eval.json lacks r2_quadratic.{key}");
    }
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("pairwise products"), "{text}");
    assert!(json.get("r2_cos_sin").is_none(), "the pendulum's keys are the pendulum's");
    assert!(json["angle_err_deg_h5"].is_number());
    let out = dir.path().join("mpc");
    let o = ekvae(&[
        "mpc",
        "--run",
        run.to_str().unwrap(),
        "--episodes",
        "1",
        "--steps",
        "20",
        "--gif-size",
        "32",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "mpc failed: {}", stderr(&o));
    let summary = read_json(&out.join("summary.json"));
    assert_eq!(summary["env"], "CartPoleSwingUp-v0");
    assert_eq!(summary["episodes"].as_array().unwrap().len(), 1);

    // Controlled episodes recorded as a dataset (two episodes of 30 steps, each cut into two
    // windows of 12 and a remainder of 6 that is left out), with exploration noise, merged
    // with the random-action data and trained on. The true model plans here: this one-epoch
    // model drives the cart off the track within 10 steps.
    let rec = dir.path().join("rec.npz");
    let mpc_rec = |extra: &[&str]| {
        let out = dir.path().join("mpc-rec");
        let mut args = vec!["mpc", "--env", "CartPoleSwingUp-v0", "--record-size", "16"];
        args.extend(["--episodes", "2"]);
        args.extend(["--steps", "30", "--gif-size", "32", "--quiet"]);
        args.extend(["--out", out.to_str().unwrap(), "--record", rec.to_str().unwrap()]);
        args.extend_from_slice(extra);
        ekvae(&args)
    };
    let o = mpc_rec(&["--record-steps", "12", "--action-noise", "0.5"]);
    assert!(o.status.success(), "mpc --record failed: {}", stderr(&o));
    // The rows of a cart-pole `steps.csv` (episode, t, x, ẋ, θ, θ̇, u0, reward, …) as numbers.
    let rows = |path: &Path| -> Vec<Vec<f64>> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect()
    };
    let steps = rows(&dir.path().join("mpc-rec/steps.csv"));
    let rec_data = ekvae::envs::Dataset::load(&rec).unwrap();
    assert_eq!((rec_data.episodes, rec_data.steps, rec_data.size), (4, 12, 16));
    assert_eq!(rec_data.meta.env, "CartPoleSwingUp-v0");
    assert!(rec_data.meta.policy.contains("action noise 0.5"), "{}", rec_data.meta.policy);
    // Window 3 is episode 1's steps 0..12: states, applied actions and rewards as scored.
    let row = |ep: f64, t: f64| steps.iter().find(|r| r[0] == ep && r[1] == t).unwrap();
    for t in 0..12 {
        let r = row(1.0, t as f64);
        assert_eq!(rec_data.state(2, t), &r[2..6]);
        assert_eq!(rec_data.action(2, t), &[r[6] as f32]);
        assert_eq!(rec_data.rewards[2 * 12 + t], r[7] as f32);
        let mut frame = vec![0; 16 * 16];
        let system = ekvae::envs::system::CartPoleSystem::default();
        ekvae::envs::System::render_into(&system, &r[2..6], 16, &mut frame);
        assert_eq!(rec_data.frame(2, t), &frame[..]);
    }
    // The noise reaches the applied actions: the same episodes without it act otherwise.
    let quiet = dir.path().join("mpc-quiet");
    let o = ekvae(&[
        "mpc",
        "--env",
        "CartPoleSwingUp-v0",
        "--episodes",
        "2",
        "--steps",
        "30",
        "--gif-size",
        "32",
        "--quiet",
        "--out",
        quiet.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "mpc failed: {}", stderr(&o));
    let plain_u: Vec<f64> = rows(&quiet.join("steps.csv")).iter().map(|r| r[6]).collect();
    assert_eq!(plain_u.len(), steps.len());
    let noisy_u: Vec<f64> = steps.iter().map(|r| r[6]).collect();
    let moved = plain_u.iter().zip(&noisy_u).filter(|(a, b)| a != b).count();
    assert!(moved > 10, "only {moved} of {} actions differ from the noiseless run", plain_u.len());
    assert!(
        noisy_u.iter().all(|u| u.abs() <= 1.0),
        "the applied actions are clipped to the bounds"
    );
    let merged = dir.path().join("merged.npz");
    let merge = |extra: &[&str]| {
        let mut args = vec!["merge", train_file.to_str().unwrap(), rec.to_str().unwrap()];
        args.extend(["--out", merged.to_str().unwrap()]);
        args.extend_from_slice(extra);
        ekvae(&args)
    };
    let o = merge(&[]);
    assert!(o.status.success(), "merge failed: {}", stderr(&o));
    let m = ekvae::envs::Dataset::load(&merged).unwrap();
    assert_eq!(m.episodes, 6 + 4);
    assert!(m.meta.seeding.contains("shuffled with seed 0"), "{}", m.meta.seeding);
    assert!(m.meta.policy.contains(" ×6 + mpc"), "{}", m.meta.policy);
    let o = train(
        &merged,
        &dir.path().join("run-merged"),
        &cfg,
        &["--epochs", "1", "--state-dim", "5", "--aux-dim", "3"],
    );
    assert!(o.status.success(), "train on merged data failed: {}", stderr(&o));
    // Bad input: an output that is an input, data of another environment, a window longer
    // than the episodes; nothing written.
    let before = std::fs::read(&train_file).unwrap();
    let o = ekvae(&[
        "merge",
        train_file.to_str().unwrap(),
        rec.to_str().unwrap(),
        "--out",
        train_file.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "is the input");
    assert_eq!(std::fs::read(&train_file).unwrap(), before);
    let pend_other = collect(dir.path(), "pend-other.npz", 16, 9);
    let o = ekvae(&[
        "merge",
        train_file.to_str().unwrap(),
        pend_other.to_str().unwrap(),
        "--out",
        dir.path().join("bad.npz").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "environment");
    assert!(!dir.path().join("bad.npz").exists());
    std::fs::remove_file(&rec).unwrap();
    assert_clean_failure(&mpc_rec(&["--record-steps", "31"]), "no episode ran 31 steps");
    assert!(!rec.exists());
    // A learned model records at its image size; a recording over its training data is refused
    // before any episode runs.
    let own = dir.path().join("mpc-own");
    let record_own = |file: &Path, extra: &[&str]| {
        let mut args = vec!["mpc", "--run", run.to_str().unwrap(), "--episodes", "1"];
        args.extend(["--steps", "8", "--quiet", "--gif-size", "32"]);
        args.extend(["--out", own.to_str().unwrap(), "--record", file.to_str().unwrap()]);
        args.extend_from_slice(extra);
        ekvae(&args)
    };
    let o = record_own(&rec, &["--record-steps", "4"]);
    assert!(o.status.success(), "mpc --run --record failed: {}", stderr(&o));
    assert_eq!(ekvae::envs::Dataset::load(&rec).unwrap().size, 16);
    let o = record_own(&train_file, &[]);
    assert_clean_failure(&o, "is the input");
    assert_eq!(std::fs::read(&train_file).unwrap(), before);

    // A pendulum model evaluated on cart-pole frames of the same size: one clear error.
    let pend = collect(dir.path(), "pend.npz", 16, 3);
    let prun = dir.path().join("prun");
    assert!(train(&pend, &prun, &cfg, &["--epochs", "1"]).status.success());
    assert_clean_failure(&eval_with(&prun, &test_file, "4", "2"), "trained on 'Pendulum-v1' data");
    assert!(!prun.join("eval.json").exists());
}

/// The ghost drawing (`CartPoleSwingUpBigPoleGhost-v0`, the recipe of the cart-pole's best pixel
/// controllers) through collect → train → mpc on a tiny budget: the run records its environment,
/// the controller plans at that environment's default horizon for a learned model (10), its task
/// is that environment (its id decides how the task draws the frames it
/// filters), and the recorded windows are drawn as it draws them: each equals the ghost system's
/// drawing of its state, and some are not the big pole's drawing without the ghost.
#[test]
fn cartpole_ghost_collect_train_mpc() {
    use ekvae::envs::System;
    use ekvae::envs::system::CartPoleSystem;
    let dir = tempfile::tempdir().unwrap();
    let id = CartPoleSystem::GHOST_ID;
    let train_file = collect_with(dir.path(), "train.npz", 16, 1, &["--env", id]);
    let cfg = tiny_config(dir.path());
    let run = dir.path().join("run");
    let o =
        train(&train_file, &run, &cfg, &["--epochs", "1", "--state-dim", "5", "--aux-dim", "3"]);
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    let out = dir.path().join("mpc");
    let rec = dir.path().join("rec.npz");
    let run_arg = run.to_str().unwrap();
    let mut args = vec!["mpc", "--run", run_arg, "--episodes", "1"];
    args.extend(["--steps", "20", "--record-steps", "10", "--gif-size", "32", "--quiet"]);
    args.extend(["--record", rec.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let o = ekvae(&args);
    assert!(o.status.success(), "mpc failed: {}", stderr(&o));
    let summary = read_json(&out.join("summary.json"));
    assert_eq!(summary["env"], id);
    // The ghost drawing's learned-model horizon is the recipe's 10, not the cart-pole's 30.
    assert_eq!(summary["mpc"]["horizon"], 10, "{}", summary["mpc"]);
    let data = ekvae::envs::Dataset::load(&rec).unwrap();
    assert_eq!(data.meta.env, id);
    assert!(data.episodes >= 1 && data.size == 16, "{} windows of {}", data.episodes, data.size);
    let (ghost, big) = (CartPoleSystem::big_pole_ghost(), CartPoleSystem::big_pole());
    let (mut g, mut b) = (vec![0u8; 16 * 16], vec![0u8; 16 * 16]);
    let mut differs = 0;
    for ep in 0..data.episodes {
        for t in 0..data.steps {
            ghost.render_into(data.state(ep, t), 16, &mut g);
            big.render_into(data.state(ep, t), 16, &mut b);
            assert_eq!(data.frame(ep, t), &g[..], "window {ep}, step {t}");
            differs += usize::from(g != b);
        }
    }
    assert!(differs > 0, "the ghost shows in the recorded frames");
    // The horizon chosen on other starts, through the learned task's path.
    let sel = dir.path().join("sel");
    check_horizon_selection(&["mpc", "--run", run_arg, "--steps", "20"], &sel);
}

/// A training and a test dataset of the pendulum (`PREFIX-train.npz`, `PREFIX-test.npz`, 16×16,
/// seeds 1 and 2), each changed by `edit` and saved as `train.npz` and `test.npz`; their paths.
fn edited_pair(dir: &Path, prefix: &str, edit: impl Fn(&mut ekvae::envs::Dataset)) -> [PathBuf; 2] {
    [("train.npz", 1), ("test.npz", 2)].map(|(name, seed)| {
        let full = collect(dir, &format!("{prefix}-{name}"), 16, seed);
        let mut d = ekvae::envs::Dataset::load(&full).unwrap();
        edit(&mut d);
        let path = dir.join(name);
        d.save(&path).unwrap();
        path
    })
}

/// Recorded data (frames and actions only, no environment): trained on and evaluated open loop,
/// and `eval` says that identification was skipped.
#[test]
fn recorded_data_without_states_train_and_eval_open_loop() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let files = edited_pair(dir.path(), "full", |d| {
        d.states.clear();
        d.rewards.clear();
        d.state_dim = 0;
        d.meta = ekvae::envs::DatasetMeta {
            env: String::new(),
            params: serde_json::Value::Null,
            state_names: Vec::new(),
            ..d.meta.clone()
        };
    });
    let run = dir.path().join("run");
    let o = train(&files[0], &run, &cfg, &["--epochs", "1"]);
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    let o = eval_with(&run, &files[1], "4", "2");
    assert!(o.status.success(), "eval failed: {}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("identification skipped"));
    let json = read_json(&run.join("eval.json"));
    assert!(json["pixel_mse_h2"].is_number() && json["angle_err_deg_h2"].is_null(), "{json}");
    assert_eq!(json["r2"], serde_json::json!({}));
}

/// Colour frames (a recorded dataset of three channels: the pendulum's frame, its negative and
/// its half) through train, eval and export: the run reads three channels, the evaluation
/// writes its figures, the export's first convolution takes 3·r² planes; a controller for an
/// environment is refused for a run with none.
#[test]
fn colour_frames_train_eval_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let files = edited_pair(dir.path(), "gray", |d| {
        d.images = d.images.iter().flat_map(|&v| [v, 255 - v, v / 2]).collect();
        d.channels = 3;
        d.meta.env = String::new();
    });
    let run = dir.path().join("run");
    let o = train(&files[0], &run, &cfg, &["--epochs", "1"]);
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("image_channels = 3"), "{config}");
    let o = eval_with(&run, &files[1], "4", "2");
    assert!(o.status.success(), "eval failed: {}", stderr(&o));
    let json = read_json(&run.join("eval.json"));
    assert!(json["pixel_mse_h2"].as_f64().is_some_and(f64::is_finite), "{json}");
    assert!(run.join("prediction_strips.png").is_file());
    let out = dir.path().join("w.safetensors");
    let o = ekvae(&["export", "--pytorch", run.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(o.status.success(), "export failed: {}", stderr(&o));
    // The safetensors header: 8 bytes of length, then JSON naming each tensor's shape.
    let bytes = std::fs::read(&out).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    // 16×16 frames: r = 2, so 3 · 4 = 12 planes in, 12 logit planes out; the config's 4 channels.
    assert_eq!(header["encoder.conv.weight"]["shape"], serde_json::json!([4, 12, 3, 3]));
    assert_eq!(header["decoder.deconv.weight"]["shape"], serde_json::json!([4, 12, 4, 4]));
    // A grayscale run cannot read them; the colour run cannot drive the gray pendulum.
    let gray = dir.path().join("gray-run");
    let o = train(&dir.path().join("gray-train.npz"), &gray, &cfg, &["--epochs", "1"]);
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    assert_clean_failure(&eval_with(&gray, &files[1], "4", "2"), "channel");
    let o = ekvae(
        &["mpc", "--run", run.to_str().unwrap(), "--env", "Pendulum-v1", "--out"]
            .iter()
            .copied()
            .chain([dir.path().join("m").to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert_clean_failure(&o, "recorded");
}

/// A run records its training data by absolute path and SHA-256: `eval` finds them from any
/// folder, and refuses another file put at that path.
#[test]
fn eval_finds_the_runs_own_training_data() {
    let dir = tempfile::tempdir().unwrap();
    collect(dir.path(), "train.npz", 16, 1);
    let test_file = collect(dir.path(), "test.npz", 16, 2);
    tiny_config(dir.path());
    // Trained with a relative --data from the data's folder…
    let o = super::ekvae_cmd()
        .current_dir(dir.path())
        .args(["train", "--data", "train.npz", "--out", "run", "--config", "tiny.toml"])
        .args(["--epochs", "1", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    let run = dir.path().join("run");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let abs = dir.path().join("train.npz").canonicalize().unwrap();
    assert!(config.contains(&format!("data = \"{}\"", abs.display())), "{config}");
    assert!(config.contains("data_sha256 = \""), "{config}");
    // …evaluated from another folder, which holds another train.npz.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    collect(&elsewhere, "train.npz", 16, 5);
    let eval = || {
        super::ekvae_cmd()
            .current_dir(&elsewhere)
            .args(["eval", "--run", run.to_str().unwrap(), "--data", test_file.to_str().unwrap()])
            .args(["--condition", "4", "--horizons", "2", "--quiet"])
            .output()
            .unwrap()
    };
    let o = eval();
    assert!(o.status.success(), "eval failed: {}", stderr(&o));
    assert_eq!(read_json(&run.join("eval.json"))["train_data"], abs.display().to_string());
    // Another dataset at the recorded path: refused, not fitted on.
    std::fs::remove_file(run.join("eval.json")).unwrap();
    std::fs::copy(elsewhere.join("train.npz"), dir.path().join("train.npz")).unwrap();
    assert_clean_failure(&eval(), "is not the file the run");
    assert!(!run.join("eval.json").exists());
}
