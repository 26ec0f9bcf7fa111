//! `ekvae demo`: the whole pipeline on built-in defaults — collect training and test rollouts,
//! train an EKVAE (constrained objective), evaluate its latent space, and swing the pendulum up
//! from pixels with MPC on the learned model — then print a short summary.
//!
//! Every stage calls the same function as its subcommand (`collect`, `train`, `eval`, `mpc`)
//! with the arguments printed before it runs, so each stage can be rerun by hand. Rerunning
//! the demo into the same folder reuses the datasets and continues training from the last
//! checkpoint (`ekvae train --resume`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use crate::collect::CollectArgs;
use crate::eval::EvalArgs;
use crate::learned::Jacobians;
use crate::mpc::{ModelSource, MpcArgs};
use crate::train::TrainArgs;

/// Run the full pipeline: collect → train → eval → pixel swing-up.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for everything (datasets, the run, eval and MPC outputs).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// A first look in a few minutes: less data, fewer epochs, fewer MPC episodes.
    #[arg(long)]
    pub quick: bool,
    /// Seed of data collection (test data use seed + 1), training and MPC.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Override the number of training epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override the number of MPC episodes (random starts).
    #[arg(long)]
    pub episodes: Option<usize>,
}

/// The built-in sizes of one demo.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Training episodes collected.
    pub train_episodes: usize,
    /// Test episodes collected.
    pub test_episodes: usize,
    /// Steps per collected episode.
    pub steps: usize,
    /// Image side.
    pub size: usize,
    /// Training epochs.
    pub epochs: usize,
    /// MPC episodes (random starts).
    pub mpc_episodes: usize,
}

impl Plan {
    /// The full demo (`quick = false`) or the quick look.
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                train_episodes: 300,
                test_episodes: 50,
                steps: 100,
                size: 16,
                epochs: 15,
                mpc_episodes: 5,
            }
        } else {
            Self {
                train_episodes: 500,
                test_episodes: 100,
                steps: 100,
                size: 16,
                epochs: 40,
                mpc_episodes: 20,
            }
        }
    }
}

/// The model and training settings of the demo (and of `results/pixmpc-model`): the TOML
/// the demo writes as `demo-config.toml` and passes to `ekvae train --config`.
pub const DEMO_TRAIN_CONFIG: &str = include_str!("../../results/pixmpc-model/train-config.toml");

fn stage(name: &str, command: &str) {
    eprintln!("\n== {name}: {command}");
}

/// Runs `ekvae demo`.
pub fn run(args: DemoArgs) -> Result<()> {
    let plan = Plan::new(args.quick);
    let epochs = args.epochs.unwrap_or(plan.epochs);
    let mpc_episodes = args.episodes.unwrap_or(plan.mpc_episodes);
    if epochs == 0 || mpc_episodes == 0 {
        anyhow::bail!("--epochs and --episodes must be at least 1");
    }
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let t_all = Instant::now();

    let train_data = out.join("train.npz");
    let test_data = out.join("test.npz");
    for (path, episodes, seed) in [
        (&train_data, plan.train_episodes, args.seed),
        (&test_data, plan.test_episodes, args.seed + 1),
    ] {
        if path.is_file() {
            eprintln!("\n== collect: reusing {}", path.display());
            continue;
        }
        stage(
            "collect",
            &format!(
                "ekvae collect --episodes {episodes} --steps {} --size {} --seed {seed} --out {}",
                plan.steps,
                plan.size,
                path.display()
            ),
        );
        crate::collect::run(CollectArgs {
            episodes,
            steps: plan.steps,
            size: plan.size,
            seed,
            out: path.clone(),
            policy: "uniform".into(),
            threads: None,
            quiet: false,
        })?;
    }

    let run_dir = out.join("model");
    let config = out.join("demo-config.toml");
    ekvae_model::train::write_atomic(&config, DEMO_TRAIN_CONFIG.as_bytes())
        .with_context(|| format!("cannot write {}", config.display()))?;
    let resume = ekvae_model::train::RunDir::new(&run_dir).state_path().is_file();
    stage(
        "train",
        &format!(
            "ekvae train --data {} --config {} --epochs {epochs} --seed {} --out {}{}",
            train_data.display(),
            config.display(),
            args.seed,
            run_dir.display(),
            if resume { " --resume" } else { "" }
        ),
    );
    let t_train = Instant::now();
    crate::train::run(TrainArgs {
        data: train_data.clone(),
        out: run_dir.clone(),
        model: None,
        objective: None,
        schedule: None,
        epochs: Some(epochs),
        seed: Some(args.seed),
        config: Some(config.clone()),
        resume,
        aux_dim: None,
        state_dim: None,
        bases: None,
        batch: None,
        seq_len: None,
        steps_per_epoch: None,
        lr: None,
        d0: None,
        freeze_mixing_epochs: None,
        lr_final_fraction: None,
        ae_lr_factor: None,
        device: "cpu".into(),
        quiet: false,
        restarts: 1,
        restart_epochs: 15,
    })?;
    let train_s = t_train.elapsed().as_secs_f64();

    stage(
        "eval",
        &format!("ekvae eval --run {} --data {}", run_dir.display(), test_data.display()),
    );
    crate::eval::run(EvalArgs {
        train_data: Some(train_data.clone()),
        ..EvalArgs::new(run_dir.clone(), test_data.clone())
    })?;
    let r2 = read_r2(&run_dir.join("eval.json"));

    let mpc_out = out.join("mpc");
    stage(
        "mpc",
        &format!(
            "ekvae mpc --model {} --episodes {mpc_episodes} --seed {} --out {}",
            run_dir.display(),
            args.seed,
            mpc_out.display()
        ),
    );
    let mpc = crate::learned::run_mpc(
        &mpc_args(run_dir.clone(), mpc_episodes, args.seed, mpc_out.clone()),
        &run_dir,
    )?;

    say!(
        "\nekvae demo{} finished in {:.1} min ({})",
        if args.quick { " --quick" } else { "" },
        t_all.elapsed().as_secs_f64() / 60.0,
        out.display()
    );
    say!(
        "  data    {} training + {} test episodes × {} steps, {}×{} frames",
        plan.train_episodes,
        plan.test_episodes,
        plan.steps,
        plan.size,
        plan.size
    );
    say!(
        "  train   {epochs} epochs (constrained objective) in {:.1} min → {}",
        train_s / 60.0,
        run_dir.display()
    );
    match r2 {
        Some((cs, td)) => {
            say!("  eval    R²(cos θ, sin θ) = {cs:.3}, R²(θ̇) = {td:.3} on the test episodes")
        }
        None => say!("  eval    see {}", run_dir.join("eval.json").display()),
    }
    say!(
        "  mpc     {mpc_episodes} random starts: success {:.0}%, mean return {:.1}, near upright {:.0}% of steps, {:.2} ms/step median ({:.2} p95)",
        100.0 * mpc.success_rate,
        mpc.mean_return,
        100.0 * mpc.near_upright_fraction,
        mpc.plan_ms_median,
        mpc.plan_ms_p95
    );
    say!(
        "  see     {}/{{summary.json, swingup.gif, belief.gif, trajectories.png}}",
        mpc_out.display()
    );
    Ok(())
}

/// `ekvae mpc --model RUN --episodes N --seed K --out OUT` with every other flag at its default.
pub fn mpc_args(run: PathBuf, episodes: usize, seed: u64, out: PathBuf) -> MpcArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        mpc: MpcArgs,
    }
    let w = Wrapper::parse_from(["mpc", "--out", "."]);
    MpcArgs {
        model: ModelSource::Run(run),
        episodes,
        seed,
        out,
        jacobians: Jacobians::Exact,
        ..w.mpc
    }
}

fn read_r2(path: &Path) -> Option<(f64, f64)> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some((v["r2_cos_sin"].as_f64()?, v["r2_theta_dot"].as_f64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The MPC stage gets the subcommand's defaults, so the demo plans exactly as
    /// `ekvae mpc --model RUN` does.
    #[test]
    fn demo_mpc_uses_the_subcommand_defaults() {
        let a = mpc_args("r".into(), 3, 7, "o".into());
        assert_eq!(a.model, ModelSource::Run("r".into()));
        assert_eq!((a.episodes, a.seed, a.horizon, a.steps, a.goal_steps), (3, 7, None, 200, 20));
        assert_eq!(a.start, None);
    }

    #[test]
    fn built_in_config_parses_and_quick_is_smaller() {
        let cfg = ekvae_model::train::TrainConfig::from_toml(DEMO_TRAIN_CONFIG).unwrap();
        cfg.check().unwrap();
        assert_eq!(cfg.model.image_size, Plan::new(false).size);
        let (q, f) = (Plan::new(true), Plan::new(false));
        assert!(
            q.train_episodes < f.train_episodes
                && q.epochs < f.epochs
                && q.mpc_episodes < f.mpc_episodes
        );
    }
}
