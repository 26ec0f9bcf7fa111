//! `ekvae demo`: the whole pipeline on built-in defaults — collect training and test rollouts,
//! train an EKVAE (constrained objective), evaluate its latent space, and swing the pendulum up
//! from pixels with MPC on the learned model — then print a short summary.
//!
//! Every stage calls the same library function as its subcommand (`collect`, `train`, `eval`,
//! `mpc`; see `ekvae_pipeline`) and writes the same files; the equivalent command is printed
//! before it runs, so each stage can be rerun by hand. Rerunning the demo into the same folder
//! reuses the datasets and continues training from the last checkpoint (`ekvae train
//! --resume`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use ekvae_pipeline::collect::{CollectJob, collect_to};
use ekvae_pipeline::eval::{EvalConfig, evaluate};
use ekvae_pipeline::swingup::{LearnedPlanner, Planner, SwingUpConfig, run_swingup};
use ekvae_pipeline::train::{
    Overrides, Restarts, TrainJob, load_dataset, resolve_config, train_run,
};

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
    /// No progress bars or per-stage commands; only the summary.
    #[arg(long)]
    pub quiet: bool,
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

fn stage(quiet: bool, name: &str, command: &str) {
    if !quiet {
        eprintln!("\n== {name}: {command}");
    }
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
            stage(args.quiet, "collect", &format!("reusing {}", path.display()));
            continue;
        }
        stage(
            args.quiet,
            "collect",
            &format!(
                "ekvae collect --episodes {episodes} --steps {} --size {} --seed {seed} --out {}",
                plan.steps,
                plan.size,
                path.display()
            ),
        );
        let job = CollectJob::uniform(episodes, plan.steps, plan.size, seed);
        collect_to(&job, path, &|_| {})?;
    }

    let run_dir = out.join("model");
    let config = out.join("demo-config.toml");
    ekvae_model::train::write_atomic(&config, DEMO_TRAIN_CONFIG.as_bytes())
        .with_context(|| format!("cannot write {}", config.display()))?;
    let resume = ekvae_model::train::RunDir::new(&run_dir).state_path().is_file();
    stage(
        args.quiet,
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
    let data = load_dataset(&train_data)?;
    let overrides =
        Overrides { epochs: Some(epochs), seed: Some(args.seed), ..Overrides::default() };
    let mut train_config = resolve_config(Some(&config), &overrides, &data, &train_data)?;
    train_config.commit = crate::writers::COMMIT.to_string();
    let mut bar = crate::train::Bar::new(args.quiet);
    train_run(
        TrainJob {
            config: train_config,
            data: &data,
            out: run_dir.clone(),
            resume,
            restarts: Restarts::default(),
            device: burn::tensor::Device::flex(),
        },
        &mut bar,
    )?;
    drop(data);
    let train_s = t_train.elapsed().as_secs_f64();

    stage(
        args.quiet,
        "eval",
        &format!(
            "ekvae eval --run {} --data {} --train-data {}",
            run_dir.display(),
            test_data.display(),
            train_data.display()
        ),
    );
    let eval_config = EvalConfig {
        train_data: Some(train_data.clone()),
        ..EvalConfig::new(run_dir.clone(), test_data.clone())
    };
    let evaluation = evaluate(&eval_config, &burn::tensor::Device::flex())?;
    crate::eval::write_evaluation(&run_dir, &evaluation)?;
    let (ident, fold) = evaluation.pendulum()?;
    let (r2, winding) = ((ident.r2_cos_sin, ident.r2_theta_dot), fold.winding);
    drop(evaluation);

    let mpc_out = out.join("mpc");
    stage(
        args.quiet,
        "mpc",
        &format!(
            "ekvae mpc --run {} --episodes {mpc_episodes} --seed {} --out {}",
            run_dir.display(),
            args.seed,
            mpc_out.display()
        ),
    );
    let mpc_config =
        SwingUpConfig { episodes: mpc_episodes, seed: args.seed, ..SwingUpConfig::default() };
    let mpc =
        run_swingup(&mpc_config, &Planner::Learned(LearnedPlanner::new(&run_dir)), &mut |_, _| {})?;
    std::fs::create_dir_all(&mpc_out)
        .with_context(|| format!("cannot create {}", mpc_out.display()))?;
    crate::mpc::write_swingup(&mpc_out, &mpc, 64)?;

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
    say!(
        "  eval    R²(cos θ, sin θ) = {:.3}, R²(θ̇) = {:.3} on the test episodes; fold diagnostic: winding {winding}",
        r2.0,
        r2.1
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The MPC stage gets the subcommand's defaults, so the demo plans exactly as
    /// `ekvae mpc --run RUN` does.
    #[test]
    fn demo_mpc_uses_the_subcommand_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            mpc: crate::mpc::MpcArgs,
        }
        let w = Wrapper::parse_from(["mpc", "--out", ".", "--run", "r"]);
        assert_eq!(
            w.mpc.config(),
            SwingUpConfig { episodes: 20, seed: 0, ..SwingUpConfig::default() }
        );
        assert_eq!(w.mpc.planner().unwrap(), Planner::Learned(LearnedPlanner::new("r")));
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
