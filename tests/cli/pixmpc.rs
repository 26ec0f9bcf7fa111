//! `ekvae mpc --run RUN_DIR` end to end on a tiny trained run: collect a few short
//! episodes, train one small epoch, then one short pixel-MPC episode; and bad input.

use super::{ekvae_cmd, read_steps_csv};
use std::path::Path;
use std::process::Command;

fn ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A tiny EKVAE run (8×8 frames, small networks, two minibatches) in `dir/run`.
fn tiny_run(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data.npz");
    ok(ekvae_cmd()
        .args([
            "collect",
            "--episodes",
            "4",
            "--steps",
            "12",
            "--size",
            "8",
            "--seed",
            "1",
            "--quiet",
            "--out",
        ])
        .arg(&data));
    let config = dir.join("tiny.toml");
    std::fs::write(
        &config,
        "epochs = 1\nbatch_size = 2\nseq_len = 8\nsteps_per_epoch = 2\nval_fraction = 0.25\n\
         [model]\nimage_size = 8\nstate_dim = 3\naux_dim = 2\nnum_bases = 2\nchannels = 4\nhidden = 8\ntransition_hidden = 4\n",
    )
    .unwrap();
    let run = dir.join("run");
    ok(ekvae_cmd()
        .args(["train", "--quiet", "--data"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&run));
    run
}

#[test]
fn pixel_mpc_on_a_tiny_run_writes_all_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let out = dir.path().join("mpc");
    ok(ekvae_cmd()
        .args(["mpc", "--run"])
        .arg(&run)
        .args([
            "--episodes",
            "2",
            "--steps",
            "50",
            "--horizon",
            "10",
            "--seed",
            "2",
            "--gif-size",
            "16",
        ])
        .args([
            // No --jacobians: the default is the exact Jacobians (checked in summary.json).
            "--state-weight",
            "2",
            "--control-weight",
            "0.05",
            "--goal-steps",
            "5",
            "--out",
        ])
        .arg(&out));

    let rows = read_steps_csv(&out.join("steps.csv"));
    assert_eq!(rows.len(), 100);
    for r in &rows {
        assert!((-2.0..=2.0).contains(&r[4]), "torque {} out of range", r[4]);
        assert!(r[5] <= 0.0 && r[6] >= 0.0 && r[7] >= 1.0);
    }

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for key in
        ["mean_return", "success_rate", "near_upright_fraction", "plan_ms_median", "plan_ms_p95"]
    {
        assert!(summary[key].is_number(), "summary lacks {key}");
    }
    let settings = &summary["settings"];
    assert_eq!(settings["cost"]["state_weight"].as_f64(), Some(2.0));
    assert_eq!(settings["cost"]["control_weight"].as_f64(), Some(0.05));
    assert_eq!(settings["cost"]["goal_latent"].as_array().unwrap().len(), 3);
    assert_eq!(settings["controller"]["jacobians"].as_str(), Some("exact"));
    assert_eq!(summary["episodes"].as_array().unwrap().len(), 2);

    // belief.gif: true frame | gap | decoded belief, one frame per step of the shown episode.
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::Indexed);
    let mut dec = opts.read_info(std::fs::File::open(out.join("belief.gif")).unwrap()).unwrap();
    assert_eq!((dec.width(), dec.height()), (2 * 16 + 2, 16));
    let mut frames = 0;
    while let Some(f) = dec.read_next_frame().unwrap() {
        assert_eq!(f.buffer.len(), 34 * 16);
        assert!(
            f.buffer.chunks(34).all(|row| row[16] == 128 && row[17] == 128),
            "gap column missing"
        );
        frames += 1;
    }
    assert_eq!(frames, 50);
    assert!(out.join("swingup.gif").is_file() && out.join("trajectories.png").is_file());

    // The cost fitted to the training data's rewards: recorded in summary.json.
    let out_r = dir.path().join("mpc-reward");
    ok(ekvae_cmd()
        .args(["mpc", "--cost", "reward", "--episodes", "1", "--steps", "50", "--horizon", "10"])
        .args(["--quiet", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&out_r));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_r.join("summary.json")).unwrap())
            .unwrap();
    let cost = &summary["settings"]["cost"];
    assert_eq!(cost["kind"].as_str(), Some("learned reward"), "{cost}");
    assert_eq!(cost["fit"]["goal"].as_array().unwrap().len(), 3);
    assert_eq!(cost["fit"]["state_weight"].as_array().unwrap().len(), 9);
    assert!(
        cost["fit"]["r2_held_out"].is_number()
            && cost["fit"]["control_weight"].as_f64() > Some(0.0)
    );
    assert_eq!(read_steps_csv(&out_r.join("steps.csv")).len(), 50);
    // Reward data of another image size.
    let other = dir.path().join("other.npz");
    ok(ekvae_cmd()
        .args(["collect", "--episodes", "2", "--steps", "12", "--size", "16", "--quiet", "--out"])
        .arg(&other));

    // Bad input: latent-cost flags with the true model, a bad weight, a run without checkpoint,
    // goal-cost weights with the reward cost, reward data with the goal cost or of another size.
    for (args, needle) in [
        (
            vec!["--run", run.to_str().unwrap(), "--cost", "reward", "--state-weight", "1"],
            "--cost reward",
        ),
        (
            vec!["--run", run.to_str().unwrap(), "--reward-data", other.to_str().unwrap()],
            "--cost reward",
        ),
        (
            vec![
                "--run",
                run.to_str().unwrap(),
                "--cost",
                "reward",
                "--reward-data",
                other.to_str().unwrap(),
            ],
            "16×16",
        ),
        (vec!["--state-weight", "1"], "learned model"),
        (vec!["--run", run.to_str().unwrap(), "--control-weight", "0"], "control > 0"),
        (vec!["--run", run.to_str().unwrap(), "--goal-steps", "0"], "--goal-steps"),
        (vec!["--run", dir.path().to_str().unwrap()], "config.toml"),
    ] {
        let o = ekvae_cmd()
            .arg("mpc")
            .args(&args)
            .arg("--out")
            .arg(dir.path().join("bad"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: stderr lacks `{needle}`: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
}

/// `ekvae demo` rejects bad sizes before doing any work.
#[test]
fn demo_rejects_zero_epochs_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o =
        ekvae_cmd().args(["demo", "--quick", "--epochs", "0", "--out"]).arg(&out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("--epochs"), "{stderr}");
    assert!(!out.exists(), "demo created its folder before failing");
}
