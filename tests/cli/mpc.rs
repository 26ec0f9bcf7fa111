//! `ekvae mpc` end to end: one short episode from hanging at rest, and bad input.

use super::{check_horizon_selection, ekvae_cmd, read_steps_csv};

#[test]
fn one_short_episode_writes_csv_summary_plot_and_animation() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let status = ekvae_cmd()
        .args(["mpc", "--episodes", "1", "--seed", "3", "--horizon", "30", "--steps", "60"])
        .args(["--start", "3.141592653589793,0", "--gif-size", "32", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "stderr: {}", String::from_utf8_lossy(&status.stderr));

    let rows = read_steps_csv(&out.join("steps.csv"));
    assert_eq!(rows.len(), 60);
    assert_eq!(&rows[0][..4], &[0.0, 0.0, std::f64::consts::PI, 0.0]);
    for (t, r) in rows.iter().enumerate() {
        assert_eq!(r[1], t as f64);
        assert!((-2.0..=2.0).contains(&r[4]), "torque {} out of range", r[4]);
        assert!(r[5] <= 0.0 && r[6] >= 0.0 && r[7] >= 1.0);
    }
    // The reward is Pendulum-v1's of (state, action): check one row by hand.
    let r = &rows[5];
    let th = ekvae::numerics::angle_normalize(r[2]);
    assert!((r[5] + th * th + 0.1 * r[3] * r[3] + 0.001 * r[4] * r[4]).abs() < 1e-9);

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for key in
        ["mean_return", "success_rate", "near_upright_fraction", "plan_ms_median", "plan_ms_p95"]
    {
        assert!(summary[key].is_number(), "summary lacks {key}");
    }
    let episodes = summary["episodes"].as_array().unwrap();
    assert_eq!(episodes.len(), 1);
    let ret: f64 = rows.iter().map(|r| r[5]).sum();
    assert!((episodes[0]["return"].as_f64().unwrap() - ret).abs() < 1e-6);
    assert_eq!(summary["mean_return"].as_f64().unwrap(), episodes[0]["return"].as_f64().unwrap());
    // 60 steps from hanging cannot hold the last 50 upright.
    assert_eq!(summary["success_rate"].as_f64().unwrap(), 0.0);

    let png = std::fs::read(out.join("trajectories.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // One 32×32 frame per step; the first shows the rod hanging down (θ = π).
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::Indexed);
    let mut dec = opts.read_info(std::fs::File::open(out.join("swingup.gif")).unwrap()).unwrap();
    let first = dec.read_next_frame().unwrap().unwrap().buffer.to_vec();
    assert_eq!(first.len(), 32 * 32);
    assert!(first[28 * 32 + 16] > 200 && first[4 * 32 + 16] < 50, "frame 0 is not hanging down");
    let mut frames = 1;
    while dec.read_next_frame().unwrap().is_some() {
        frames += 1;
    }
    assert_eq!(frames, 60);
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
}

/// The pendulum's episodes recorded as a dataset, with noise on the torques: each window holds
/// the rows of `steps.csv` (states, applied torques, rewards) and the frames of the renderer;
/// the noise changes the torques against the same episodes without it.
#[test]
fn pendulum_episodes_recorded_with_action_noise() {
    let dir = tempfile::tempdir().unwrap();
    let run = |noise: &str, out: &str| {
        let o = ekvae_cmd()
            .args(["mpc", "--episodes", "2", "--seed", "3", "--horizon", "20", "--steps", "60"])
            .args(["--action-noise", noise, "--record-size", "16", "--record-steps", "25"])
            .args(["--gif-size", "16", "--quiet", "--record"])
            .arg(dir.path().join(format!("{out}.npz")))
            .arg("--out")
            .arg(dir.path().join(out))
            .output()
            .unwrap();
        assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
        let rows = read_steps_csv(&dir.path().join(out).join("steps.csv"));
        (rows, ekvae::envs::Dataset::load(&dir.path().join(format!("{out}.npz"))).unwrap())
    };
    let (rows, data) = run("0.5", "noisy");
    // Two windows of 25 per 60-step episode; the last 10 steps of each are left out.
    assert_eq!((data.episodes, data.steps, data.size, data.state_dim), (4, 25, 16, 2));
    assert_eq!(data.meta.env, "Pendulum-v1");
    assert!(data.meta.policy.contains("action noise 0.5"), "{}", data.meta.policy);
    for (w, (ep, t0)) in [(0, 0), (0, 25), (1, 0), (1, 25)].into_iter().enumerate() {
        for t in 0..25 {
            let r = &rows[ep * 60 + t0 + t];
            assert_eq!((r[0], r[1]), (ep as f64, (t0 + t) as f64));
            assert_eq!(data.state(w, t), &r[2..4]);
            assert_eq!(data.action(w, t), &[r[4] as f32]);
            assert_eq!(data.rewards[w * 25 + t], r[5] as f32);
            assert_eq!(data.frame(w, t), &ekvae::envs::render::render(r[2], 16)[..]);
        }
    }
    assert!(rows.iter().all(|r| (-2.0..=2.0).contains(&r[4])));
    let (quiet, _) = run("0", "quiet");
    let changed = rows.iter().zip(&quiet).filter(|(a, b)| a[4] != b[4]).count();
    assert!(changed > 60, "the noise changed only {changed} of 120 torques");
}

/// `--select-horizon` on the true pendulum: each candidate scored as its own run scores it on
/// the selection starts, the best by the rule plans the evaluation.
#[test]
fn pendulum_horizon_selection() {
    let dir = tempfile::tempdir().unwrap();
    check_horizon_selection(&["mpc", "--steps", "60"], &dir.path().join("sel"));
}

#[test]
fn bad_arguments_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["--start", "1"], "THETA,THETADOT"),
        (vec!["--start", "0,nan"], "not a finite number"),
        (vec!["--run", "no/such/run"], "run directory does not exist"),
        (vec!["--horizon", "0"], "horizon"),
        (vec!["--episodes", "0"], "--episodes"),
        (vec!["--record", "rec.npz"], "needs --record-size"),
        (vec!["--record", "rec.npz", "--record-size", "4"], "out of range"),
        (vec!["--action-noise", "-0.1"], "--action-noise"),
        (vec!["--action-noise", "inf"], "--action-noise"),
        (vec!["--select-horizon", "8"], "--select-seed"),
        (vec!["--select-seed", "100"], "--select-horizon"),
        (vec!["--select-horizon", "8", "--select-seed", "100", "--horizon", "8"], "cannot be used"),
        (vec!["--select-horizon", "8,x", "--select-seed", "100"], "invalid digit"),
        (vec!["--select-horizon", "8,10,8", "--select-seed", "100"], "lists 8 twice"),
        (vec!["--select-horizon", "0,8", "--select-seed", "100"], "out of range"),
        (
            vec!["--select-horizon", "8", "--select-seed", "100", "--select-episodes", "0"],
            "--select-episodes",
        ),
        (vec!["--select-horizon", "8", "--select-seed", "10"], "overlap"),
    ] {
        let out = ekvae_cmd().arg("mpc").args(&args).arg("--out").arg(dir.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: stderr lacks `{needle}`: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
}

/// The cart-pole on its true physics through the command line: `--env` picks the task, the
/// CSV names its state, and the pendulum's own flags are refused for it.
#[test]
fn cartpole_true_model_and_its_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cp");
    let o = ekvae_cmd()
        .args(["mpc", "--env", "CartPoleSwingUp-v0", "--episodes", "1", "--steps", "600"])
        .args(["--gif-size", "32", "--quiet", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("steps.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("episode,t,x,x_dot,theta,theta_dot,u0,reward,plan_ms,iterations")
    );
    assert_eq!(lines.count(), 600);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["env"], "CartPoleSwingUp-v0");
    assert_eq!(summary["success_rate"].as_f64(), Some(1.0), "{summary}");
    assert_eq!(summary["mpc"]["warm_start"], "feedback", "the true model's default");
    assert!(out.join("swingup.gif").is_file());
    for (args, needle) in [
        (vec!["--env", "CartPoleSwingUp-v0", "--start", "3.14,0"], "--start"),
        (vec!["--env", "CartPoleSwingUp-v0", "--cost", "reward"], "for a learned model"),
        (vec!["--env", "Acrobot-v1"], "not registered"),
        (vec!["--env", "CartPoleSwingUp-v0", "--record", "r.npz"], "needs --record-size"),
        (
            vec!["--env", "CartPoleSwingUp-v0", "--record", "r.npz", "--record-size", "4"],
            "out of range",
        ),
        (vec!["--env", "CartPoleSwingUp-v0", "--action-noise", "-1"], "--action-noise"),
    ] {
        let o = ekvae_cmd()
            .arg("mpc")
            .args(&args)
            .arg("--out")
            .arg(dir.path().join("x"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(needle) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    // A pendulum model cannot control the cart-pole.
    let run = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/pixmpc-model");
    let o = ekvae_cmd()
        .args(["mpc", "--env", "CartPoleSwingUp-v0", "--episodes", "1", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(dir.path().join("y"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("not CartPoleSwingUp-v0"), "{err}");
}
