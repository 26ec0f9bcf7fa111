//! The whole pipeline through the library API, no command line: collect a small pendulum
//! dataset, train a tiny EKVAE, evaluate it, and run pixel MPC episodes on it.
//!
//! `cargo run --release --example pipeline [OUT_DIR]` (about half a minute; the model is far too
//! small and short-trained to swing the pendulum up: the point is the API). Build it with
//! `cargo build --release --examples`; CI builds it with the tests.

use std::path::PathBuf;

use ekvae::model::train::TrainConfig;
use ekvae::pipeline::collect::{CollectJob, collect_to};
use ekvae::pipeline::eval::{EvalConfig, evaluate};
use ekvae::pipeline::swingup::{LearnedPlanner, Planner, SwingUpConfig, run_swingup};
use ekvae::pipeline::train::{Restarts, Silent, TrainJob, train_run};

fn main() -> Result<(), ekvae::pipeline::Error> {
    let out = std::env::args().nth(1).map_or_else(|| PathBuf::from("runs/example"), PathBuf::from);
    let device = burn::tensor::Device::flex();

    // 1. Collect: 48 training and 8 test episodes of 60 steps, 16×16 frames.
    let job = |episodes, seed| CollectJob::uniform(episodes, 60, 16, seed);
    let train_data = collect_to(&job(48, 0), &out.join("train.npz"), &|_| {})?;
    collect_to(&job(8, 1), &out.join("test.npz"), &|_| {})?;

    // 2. Train a small EKVAE for 2 epochs (the defaults otherwise).
    let mut config =
        TrainConfig { epochs: 2, steps_per_epoch: 4, batch_size: 8, ..TrainConfig::default() };
    (config.model.image_size, config.model.channels, config.model.hidden) = (16, 8, 32);
    config.data = out.join("train.npz").display().to_string();
    let run = out.join("model");
    let trained = train_run(
        TrainJob {
            config,
            data: &train_data,
            out: run.clone(),
            resume: run.join("state.json").is_file(),
            restarts: Restarts::default(),
            device: device.clone(),
        },
        &mut Silent,
    )?;
    println!("trained {} epochs into {}", trained.rows.len(), run.display());

    // 3. Evaluate: identification R², open-loop prediction, fold diagnostic.
    let e = evaluate(&EvalConfig::new(&run, out.join("test.npz")), &device)?;
    let (ident, fold) = e.pendulum()?;
    println!(
        "R²(cos θ, sin θ) = {:.3}, R²(θ̇) = {:.3}, winding {}, pixel MSE at h = 10: {:.4}",
        ident.r2_cos_sin, ident.r2_theta_dot, fold.winding, e.curves.pixel_mse[9]
    );

    // 4. Swing up from pixels: 2 short episodes of MPC on the learned latent dynamics.
    let config = SwingUpConfig { episodes: 2, steps: 60, ..SwingUpConfig::default() };
    let result =
        run_swingup(&config, &Planner::Learned(LearnedPlanner::new(&run)), &mut |ep, ret| {
            println!("episode {ep}: return {ret:.1}");
        })?;
    println!(
        "mean return {:.1}, success {:.0} %, {:.2} ms per step (median)",
        result.mean_return,
        100.0 * result.success_rate,
        result.plan_ms_median
    );
    Ok(())
}
