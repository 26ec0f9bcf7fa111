//! The `custom_env` example end to end on its tiny budget: a system defined in one file and
//! registered with one line goes through collect → train → eval → mpc, and its own
//! identification targets are scored.

#[path = "../examples/custom_env.rs"]
#[allow(dead_code)]
mod custom_env;

#[test]
fn a_users_environment_runs_through_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let (e, control) = custom_env::run(dir.path(), 2, 1, false).unwrap();
    // The control loop ran on the user's system from its frames (2 epochs cannot control it:
    // the point is the API).
    assert_eq!((control.env.as_str(), control.steps.len()), ("PointMass-v0", 60));
    assert!(control.steps.iter().all(|s| s.u[0].is_finite() && s.state.len() == 2));
    assert_eq!(e.env, "PointMass-v0");
    let names: Vec<&str> = e.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["x", "v"]);
    assert!(e.features.iter().all(|f| f.r2.is_finite() && f.train_r2.is_finite()));
    // No pendulum here: no pendulum scores, no fold diagnostic, no angle.
    assert!(e.identification.is_none() && e.fold.is_none());
    assert!(e.curves.angle_error_deg.iter().all(|a| a.is_nan()));
    assert!(e.curves.pixel_mse.iter().all(|m| m.is_finite()));
    // The dataset names the environment and its state; the run records the environment.
    let d = ekvae::envs::Dataset::load(&dir.path().join("train.npz")).unwrap();
    assert_eq!((d.meta.env.as_str(), d.state_dim), ("PointMass-v0", 2));
    let config = std::fs::read_to_string(dir.path().join("model/config.toml")).unwrap();
    assert!(config.contains("env = \"PointMass-v0\""), "{config}");
    // An unknown id is one clear error naming the known ones.
    let e = ekvae::envs::Registry::builtin().get("PointMass-v0").unwrap_err().to_string();
    assert!(e.contains("not registered") && e.contains("CartPoleSwingUp-v0"), "{e}");
}

/// The same in colour: `PointMassColour-v0` draws three channels (the velocity's sign in the
/// hue). The dataset holds them, the model reads them (its config says so), the evaluation's
/// predicted frames and the controller's filtered frames go through the three-channel encoder
/// and decoder.
#[test]
fn a_users_colour_environment_runs_through_the_pipeline() {
    use ekvae::envs::System;
    let dir = tempfile::tempdir().unwrap();
    let (e, control) = custom_env::run(dir.path(), 2, 1, true).unwrap();
    assert_eq!((control.env.as_str(), control.steps.len()), ("PointMassColour-v0", 60));
    assert!(control.steps.iter().all(|s| s.u[0].is_finite()));
    assert!(e.features.iter().all(|f| f.r2.is_finite() && f.train_r2.is_finite()));
    assert!(e.curves.pixel_mse.iter().all(|m| m.is_finite()));
    let d = ekvae::envs::Dataset::load(&dir.path().join("train.npz")).unwrap();
    assert_eq!((d.meta.env.as_str(), d.channels), ("PointMassColour-v0", 3));
    // The frames are the renderer's, channels last: red and blue differ where the mass moves.
    let system = custom_env::PointMass { damping: 0.5, dt: 0.1, colour: true };
    let mut frame = vec![0u8; 16 * 16 * 3];
    system.render_into(d.state(3, 5), 16, &mut frame);
    assert_eq!(d.frame(3, 5), &frame[..]);
    let config = std::fs::read_to_string(dir.path().join("model/config.toml")).unwrap();
    assert!(config.contains("image_channels = 3"), "{config}");
    // The model and the renderer agree on the channels, and a grayscale model of the same
    // size refuses the colour data with one line.
    let gray_run = dir.path().join("gray");
    let (_, _) = custom_env::run(&gray_run, 1, 1, false).unwrap();
    let config =
        ekvae::pipeline::eval::EvalConfig::new(gray_run.join("model"), dir.path().join("test.npz"));
    let err = ekvae::pipeline::eval::evaluate(&config, &burn::tensor::Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains("channel") && !err.contains('\n'), "{err}");
}
