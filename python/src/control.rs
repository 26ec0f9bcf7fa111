//! The pixel MPC controller of `ekvae mpc --run RUN_DIR`, from the library pipeline
//! (`ekvae_pipeline::control`), with its options parsed by the command line's own flag
//! definitions (`ekvae_experiments::mpc::MpcArgs`), so the defaults are the CLI's.

use anyhow::{Context, Result, bail};
use clap::Parser;
use ekvae_experiments::mpc::MpcArgs;
use ekvae_model::Ekvae;
use ekvae_model::train::TrainConfig;
use ekvae_pipeline::control::{
    LatentCostWeights, LatentDynamics, LearnedModel, PixelFilter, latent_cost,
};
use ekvae_pipeline::swingup::{LEARNED_HORIZON, LEARNED_WARM_START, MAX_HORIZON};
use ekvae_planner::{ControlBounds, Mpc, MpcAgent, QuadraticCost};

/// The controller's options, named as the flags of `ekvae mpc` (without `--`, `_` for `-`).
pub const OPTIONS: [&str; 13] = [
    "horizon",
    "iterations",
    "replan_every",
    "multistart_iterations",
    "random_starts",
    "no_short_horizon_start",
    "warm_start",
    "terminal_weight",
    "jacobians",
    "state_weight",
    "control_weight",
    "goal_steps",
    "seed",
];

/// `ekvae mpc`'s flags, parsed by its own clap definition (so the defaults are the CLI's).
#[derive(Debug, Parser)]
#[command(no_binary_name = true, name = "controller")]
struct Flags {
    #[command(flatten)]
    args: MpcArgs,
}

/// One filter-then-plan agent: the pixel filter (encoder + EKF) and MPC on the latent dynamics.
type Agent<'a> = MpcAgent<PixelFilter<'a>, LatentDynamics, QuadraticCost>;

self_cell::self_cell!(
    /// The learned model and the agent that borrows it.
    struct Cell {
        owner: LearnedModel,
        #[not_covariant]
        dependent: Agent,
    }
);

/// The pixel MPC of `ekvae mpc --run RUN_DIR`, driven one frame at a time.
pub struct Controller {
    cell: Cell,
    goal: Vec<f64>,
    horizon: usize,
    image_size: usize,
    image_channels: usize,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").field("horizon", &self.horizon).finish_non_exhaustive()
    }
}

/// What one control step returns.
#[derive(Debug, Clone)]
pub struct Action {
    /// The torque to apply.
    pub u: f64,
    /// The filtered latent the plan started from.
    pub state: Vec<f64>,
    /// iLQR iterations spent.
    pub iterations: usize,
}

impl Controller {
    /// Builds the controller of `ekvae mpc --run DIR` with `flags` (pairs of `ekvae mpc`
    /// flag names and values, e.g. `("horizon", "40")`; a value of `None` is a switch) for the
    /// trained `model` of a run.
    pub fn new(
        model: Ekvae,
        config: TrainConfig,
        epoch: usize,
        dir: &str,
        flags: &[(String, Option<String>)],
    ) -> Result<Self> {
        let mut argv: Vec<String> = vec!["--run".into(), dir.into(), "--out".into(), "-".into()];
        for (name, value) in flags {
            if !OPTIONS.contains(&name.as_str()) {
                bail!("unknown controller option {name:?}; use {}", OPTIONS.join(", "));
            }
            argv.push(format!("--{}", name.replace('_', "-")));
            argv.extend(value.clone());
        }
        let args = Flags::try_parse_from(&argv)
            .map_err(|e| {
                // clap's message on one line, without its usage and help hints.
                let text = e.to_string();
                let lines: Vec<&str> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| {
                        !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more")
                    })
                    .filter(|l| !l.starts_with("tip:"))
                    .collect();
                anyhow::anyhow!("{}", lines.join("; ").trim_start_matches("error: "))
            })?
            .args;
        if let Some(h) = args.horizon
            && !(1..=MAX_HORIZON).contains(&h)
        {
            bail!(
                "--horizon {h} is out of range; use 1 to {MAX_HORIZON} steps (every control step solves an iLQR problem of that length)"
            );
        }
        // The run's environment gives the goal frame and the default horizon.
        if config.env.is_empty() {
            bail!(
                "--run {dir}: the model was trained on recorded data with no environment, so there is no goal frame to control to"
            );
        }
        let system = ekvae_envs::Registry::builtin()
            .get(&config.env)
            .with_context(|| format!("--run {dir}"))?;
        let default_horizon = if config.env == ekvae_model::train::PENDULUM {
            LEARNED_HORIZON
        } else {
            ekvae_pipeline::task::builtin_task(&config.env)?.horizons().1
        };
        if model.action_dim() != 1 || system.action_dim() != 1 {
            bail!(
                "--run {dir}: the model takes {}-dimensional actions and {} has {}; the controller returns one action",
                model.action_dim(),
                config.env,
                system.action_dim()
            );
        }
        let learned = LearnedModel::from_model(model, config, epoch)?;
        let defaults = LatentCostWeights::default();
        let weights = LatentCostWeights {
            state: args.state_weight.unwrap_or(defaults.state),
            control: args.control_weight.unwrap_or(defaults.control),
            terminal: args.terminal_weight,
        };
        let goal = learned.goal_latent_of(system.as_ref(), args.goal_steps)?;
        let cost = latent_cost(goal.clone(), weights, 1)
            .context("--state-weight/--control-weight/--terminal-weight")?;
        // The system's control bounds (the pendulum's torque ±2, the cart-pole's ±1).
        let (lower, upper) = system.action_bounds();
        let mpc_cfg = args
            .config()
            .mpc_options(default_horizon, LEARNED_WARM_START)
            .config(ControlBounds { lower, upper });
        let horizon = mpc_cfg.horizon;
        let dynamics = LatentDynamics::new(learned.plain.clone(), args.jacobians.into());
        let mpc = Mpc::new(dynamics, cost, mpc_cfg)
            .context("invalid MPC settings (check --horizon and the iteration options)")?;
        let (image_size, image_channels) = (learned.image_size(), learned.image_channels());
        let cell = Cell::new(learned, |m| MpcAgent::new(PixelFilter::new(m), mpc));
        Ok(Self { cell, goal, horizon, image_size, image_channels })
    }

    /// Filters `frame` (`S·S` bytes; the previous torque is the one this controller returned)
    /// and plans the next torque.
    pub fn act(&mut self, frame: &[u8]) -> Result<Action> {
        let step = self.cell.with_dependent_mut(|_, agent| agent.act(frame))?;
        Ok(Action { u: step.u[0], state: step.state, iterations: step.iterations })
    }

    /// Starts a new episode (the filter returns to the prior; the warm start is dropped).
    pub fn reset(&mut self) {
        self.cell.with_dependent_mut(|_, agent| agent.reset());
    }

    /// The filter's belief (mean `[n]`, covariance `[n, n]` row-major) after the last frame.
    pub fn belief(&self) -> Option<(Vec<f64>, Vec<f64>)> {
        self.cell.with_dependent(|_, agent| {
            agent.estimator.belief().map(|b| (b.mean.clone(), b.cov.clone()))
        })
    }

    /// The goal latent (the pendulum upright at rest).
    pub fn goal(&self) -> &[f64] {
        &self.goal
    }

    /// The planning horizon in steps.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// The side of the frames the controller takes.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// Channels C per pixel of the frames the model reads (1: grayscale).
    pub fn image_channels(&self) -> usize {
        self.image_channels
    }
}
