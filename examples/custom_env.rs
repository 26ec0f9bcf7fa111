//! Bring your own system: a new environment in this one file, registered with one line, run
//! through collect → train → eval → mpc with the library API.
//!
//! The system is `PointMass-v0`: a damped mass on a line, pushed by one force, drawn as a bright
//! square moving left and right. Its identification targets are the position and the velocity.
//! `PointMassColour-v0` is the same mass drawn in colour (three channels): red when it moves
//! right, blue when it moves left, so that one frame shows the velocity's sign.
//!
//! `cargo run --release --example custom_env [OUT_DIR] [--colour]` (about half a minute). The budget (15
//! epochs of 200 short episodes) is far too small to learn the system — the latent does not
//! hold x and the controller rarely centres the mass — the point is the API. The test
//! `tests/custom_env.rs` runs the same code in CI.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ekvae::envs::collect::PolicySpec;
use ekvae::envs::{Outcome, Registry, System};
use ekvae::pipeline::collect::{CollectJob, collect_to};
use ekvae::pipeline::control::{Jacobians, LatentCostWeights};
use ekvae::pipeline::eval::{EvalConfig, Evaluation, evaluate_with};
use ekvae::pipeline::swingup::LatentCostKind;
use ekvae::pipeline::task::{Task, TaskConfig, TaskPlanner, TaskRun, run_task};
use ekvae::pipeline::train::{Overrides, Restarts, Silent, TrainJob, resolve_config, train_run};
use rand_chacha::ChaCha8Rng;

/// A damped point mass: `v' = v + (f − c·v)·dt`, `x' = x + v'·dt`, `f ∈ [−1, 1]`.
#[derive(Debug)]
pub struct PointMass {
    /// Damping c.
    pub damping: f64,
    /// Time step (s).
    pub dt: f64,
    /// Drawn in RGB (`PointMassColour-v0`) instead of grayscale.
    pub colour: bool,
}

impl System for PointMass {
    fn id(&self) -> &str {
        if self.colour { "PointMassColour-v0" } else { "PointMass-v0" }
    }
    fn channels(&self) -> usize {
        if self.colour { 3 } else { 1 }
    }
    fn state_names(&self) -> Vec<String> {
        vec!["x".into(), "v".into()]
    }
    fn action_bounds(&self) -> (Vec<f64>, Vec<f64>) {
        (vec![-1.0], vec![1.0])
    }
    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "damping": self.damping, "dt": self.dt })
    }
    fn renderer(&self) -> serde_json::Value {
        serde_json::json!({
            "view": "x in [-1, 1] across the frame; a square of a fifth of the side",
            "colour": if self.colour { "RGB: red = coverage·(1 + v)/2, green = coverage/2, blue = coverage·(1 − v)/2, v clamped to [-1, 1]" } else { "grayscale coverage" },
        })
    }
    fn seeding(&self) -> String {
        "x ~ U(-0.8, 0.8), v ~ U(-0.5, 0.5), then the policy's draws".into()
    }
    fn check(&self) -> ekvae::envs::Result<()> {
        if self.damping >= 0.0 && self.dt > 0.0 {
            Ok(())
        } else {
            Err(ekvae::envs::Error::InvalidArgument {
                what: "point-mass parameter",
                reason: "damping must be ≥ 0 and dt > 0".into(),
            })
        }
    }
    fn sample_state(&self, rng: &mut ChaCha8Rng, state: &mut [f64]) {
        state[0] = ekvae::envs::space::uniform(rng, -0.8, 0.8);
        state[1] = ekvae::envs::space::uniform(rng, -0.5, 0.5);
    }
    fn step(&self, state: &mut [f64], action: &[f64]) -> Outcome {
        let f = action[0].clamp(-1.0, 1.0);
        state[1] += (f - self.damping * state[1]) * self.dt;
        state[0] += state[1] * self.dt;
        // Walls at ±1: the mass stops there (and stays in view).
        if state[0].abs() > 1.0 {
            state[0] = state[0].clamp(-1.0, 1.0);
            state[1] = 0.0;
        }
        Outcome { reward: -state[0] * state[0], terminated: false }
    }
    fn render_into(&self, state: &[f64], size: usize, out: &mut [u8]) {
        out.fill(0);
        let c = self.channels();
        // The colour of the square (channels last): its velocity's sign, red or blue.
        let v = state[1].clamp(-1.0, 1.0);
        let tint: Vec<f64> =
            if self.colour { vec![(1.0 + v) / 2.0, 0.5, (1.0 - v) / 2.0] } else { vec![1.0] };
        let half = (size as f64 / 10.0).max(1.0);
        let centre = (state[0] + 1.0) * 0.5 * (size as f64 - 2.0 * half) + half;
        for row in 0..size {
            for col in 0..size {
                let (u, v) = (col as f64 + 0.5, row as f64 + 0.5);
                // Coverage of the pixel by the square, from the overlap of intervals.
                let ox = ((u + 0.5).min(centre + half) - (u - 0.5).max(centre - half)).max(0.0);
                let mid = size as f64 / 2.0;
                let oy = ((v + 0.5).min(mid + half) - (v - 0.5).max(mid - half)).max(0.0);
                let cover = (ox * oy).min(1.0);
                for (k, t) in tint.iter().enumerate() {
                    out[(row * size + col) * c + k] = (255.0 * cover * t).round() as u8;
                }
            }
        }
    }
    fn feature_names(&self) -> Vec<String> {
        vec!["x".into(), "v".into()]
    }
    fn features(&self, state: &[f64], out: &mut Vec<f64>) {
        out.extend_from_slice(state);
    }
    fn default_policy(&self) -> PolicySpec {
        PolicySpec::UniformInBounds
    }
    fn goal_state(&self) -> Option<Vec<f64>> {
        Some(vec![0.0, 0.0])
    }
    fn time_limit(&self) -> usize {
        200
    }
}

/// The control task: bring the mass to the centre and hold it there (`colour`: seen in RGB).
pub struct Centre {
    /// The colour drawing.
    pub colour: bool,
}

impl Task for Centre {
    fn system(&self) -> Arc<dyn System> {
        Arc::new(PointMass { damping: 0.5, dt: 0.1, colour: self.colour })
    }
    fn steps(&self) -> usize {
        60
    }
    fn start(&self, seed: u64, episode: usize) -> Vec<f64> {
        // Starts spread over the track, reproducibly.
        vec![0.8 * (((seed as usize + episode) % 5) as f64 / 2.0 - 1.0), 0.0]
    }
    fn success(&self, states: &[f64], terminated: bool) -> bool {
        // |x| < 0.1 over the last 20 steps.
        !terminated
            && states.len() >= 40
            && states[states.len() - 40..].chunks(2).all(|s| s[0].abs() < 0.1)
    }
    fn success_rule(&self) -> String {
        "|x| < 0.1 over the last 20 steps".into()
    }
    fn horizons(&self) -> (usize, usize) {
        (20, 20)
    }
}

/// Collect, train and evaluate on `PointMass-v0` (`colour`: `PointMassColour-v0`) in `out`, with
/// `epochs` epochs, then control it from its frames for `episodes` episodes.
pub fn run(
    out: &Path,
    epochs: usize,
    episodes: usize,
    colour: bool,
) -> Result<(Evaluation, TaskRun), ekvae::pipeline::Error> {
    // The registry line: the workspace's environments plus this one.
    let task = Centre { colour };
    let mut registry = Registry::builtin();
    registry.register(task.system())?;
    let system = registry.get(task.system().id())?;

    // 1. Collect 200 training and 8 test episodes of 40 steps, 16×16 frames.
    let job = |episodes, seed| CollectJob::of(system.clone(), episodes, 40, 16, seed);
    let (train_path, test_path) = (out.join("train.npz"), out.join("test.npz"));
    let train_data = collect_to(&job(200, 0), &train_path, &|_| {})?;
    collect_to(&job(8, 1), &test_path, &|_| {})?;

    // 2. Train a small EKVAE: the data decide image size, action dimension and environment.
    let overrides = Overrides {
        epochs: Some(epochs),
        state_dim: Some(2),
        aux_dim: Some(1),
        batch: Some(16),
        seq_len: Some(20),
        ..Overrides::default()
    };
    let config = resolve_config(None, &overrides, &train_data, &train_path)?;
    let run = out.join("model");
    train_run(
        TrainJob {
            config,
            data: &train_data,
            out: run.clone(),
            resume: run.join("state.json").is_file(),
            restarts: Restarts::default(),
            device: burn::tensor::Device::flex(),
        },
        &mut Silent,
    )?;

    // 3. Evaluate with the registry, so that the system's own targets are scored.
    let config = EvalConfig { horizons: vec![5, 10], ..EvalConfig::new(&run, &test_path) };
    let evaluation = evaluate_with(&config, &registry, &burn::tensor::Device::flex())?;

    // 4. Control it from its frames: iLQR-MPC on the learned latent dynamics, the goal the
    //    latent of the system's goal state.
    let config = TaskConfig {
        episodes,
        seed: 0,
        steps: None,
        horizon: None,
        iterations: 5,
        replan_every: 10,
        multistart_iterations: 20,
        random_starts: 2,
        short_horizon_start: true,
        warm_start: None,
        action_noise: 0.0,
    };
    let planner = TaskPlanner::Learned {
        run,
        jacobians: Jacobians::Exact,
        weights: LatentCostWeights::default(),
        goal_steps: 10,
        cost: LatentCostKind::Goal,
        reward_data: None,
    };
    let control = run_task(&task, &config, &planner, &mut |_, _| {})?;
    Ok((evaluation, control))
}

fn main() -> Result<(), ekvae::pipeline::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let colour = args.iter().any(|a| a == "--colour");
    let out = args
        .iter()
        .find(|a| *a != "--colour")
        .map_or_else(|| PathBuf::from("runs/custom-env"), PathBuf::from);
    let (e, control) = run(&out, 15, 5, colour)?;
    for f in &e.features {
        println!("R²({}) = {:.3} (training fit {:.3})", f.name, f.r2, f.train_r2);
    }
    println!("pixel MSE at h = 10: {:.5}", e.curves.pixel_mse[9]);
    println!(
        "MPC from pixels: {} episodes, mean return {:.2}, success {:.0} % ({}), {:.2} ms per step",
        control.episodes.len(),
        control.mean_return,
        100.0 * control.success_rate,
        control.success_rule,
        control.plan_ms_median
    );
    Ok(())
}
