//! Argument parsing (clap derive) and dispatch. The `///` comments are the `--help` text.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// ekvae: learn a deep state-space model (EKVAE: a VAE per frame + an extended Kalman smoother
/// over locally-linear latent dynamics) of a pendulum from its pixels, check what its latent
/// holds, and swing the real pendulum up from its images with iLQR-MPC on the learned dynamics.
///
/// The pipeline, in order: collect → (inspect, merge) → train → eval → mpc; `reproduce` runs the
/// prediction-accuracy grid and `demo` runs everything on built-in defaults. Every command
/// writes CSV/JSON records and figures; `ekvae COMMAND --help` shows each flag with its default.
#[derive(Debug, Parser)]
#[command(name = "ekvae", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Collect random-action pendulum rollouts (frames, actions, states, rewards) into a .npz.
    Collect(crate::collect::CollectArgs),
    /// Describe a dataset file and write a contact sheet of its frames.
    Inspect(crate::inspect::InspectArgs),
    /// Merge datasets of one environment into one file (episodes shuffled, seeded).
    Merge(crate::merge::MergeArgs),
    /// Train an EKVAE world model (or the RNN-inference baseline, --model rnn) on a collected dataset.
    Train(crate::train::TrainArgs),
    /// Evaluate a trained run: identification (R²), open-loop prediction errors per horizon, figures.
    Eval(crate::eval::EvalArgs),
    /// Swing the pendulum up with iLQR-MPC on the true physics or, with --run, from pixels on a trained model; score it.
    Mpc(crate::mpc::MpcArgs),
    /// The prediction-accuracy table: train and evaluate {EKVAE, RNN} × {constrained, ELBO} × seeds, write table.md/table.csv.
    Reproduce(crate::reproduce::ReproduceArgs),
    /// The whole pipeline on built-in defaults: collect → train → eval → swing up from pixels.
    Demo(crate::demo::DemoArgs),
    /// Export a trained run's weights: `--pytorch RUN OUT` writes a PyTorch state_dict (safetensors).
    Export(crate::export::ExportArgs),
}

/// Parse the command line, run the subcommand, print any error as one line and exit non-zero.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Collect(args) => crate::collect::run(args),
        Command::Inspect(args) => crate::inspect::run(args),
        Command::Merge(args) => crate::merge::run(args),
        Command::Train(args) => crate::train::run(args),
        Command::Eval(args) => crate::eval::run(args),
        Command::Mpc(args) => {
            let env = crate::mpc::environment(&args)?;
            if env == ekvae_model::train::PENDULUM {
                crate::mpc::run(args).map(drop)
            } else {
                crate::mpc::run_task_cli(&args, &env).map(drop)
            }
        }
        Command::Reproduce(args) => crate::reproduce::run(args),
        Command::Demo(args) => crate::demo::run(args),
        Command::Export(args) => crate::export::run(args),
    }
}
