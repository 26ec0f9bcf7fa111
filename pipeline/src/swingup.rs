//! Swing-up episodes: receding-horizon iLQR on the pendulum, planned on the true physics or on
//! a trained model's latent dynamics from rendered frames, scored on the true environment.
//!
//! [`run_swingup`] runs the episodes and returns every step ([`StepRow`]), a summary per
//! episode and over all of them ([`SwingUp`]); writing them (CSV, JSON, plots, animations) is
//! the caller's business.
//!
//! Success: |angle_normalize(θ)| < 0.3 rad at each of the last 50 steps. Near-upright
//! fraction: the share of steps with |angle_normalize(θ)| < π/6.

use std::f64::consts::PI;
use std::path::PathBuf;
use std::time::Instant;

use ekvae_envs::pendulum::{Pendulum, angle_normalize};
use ekvae_envs::{Env, ResetTo};
use ekvae_planner::{
    ControlBounds, ExactState, Mpc, MpcAgent, MpcConfig, PendulumCost, TruePendulum, WarmStart,
};
use serde::{Deserialize, Serialize};

use crate::control::{
    Controller, Jacobians, LatentCostWeights, LatentDynamics, LearnedModel, PixelController,
    PixelFilter, RewardFit, latent_cost,
};
use crate::task::{RecordedStep, record_episodes};
use crate::{Context, Result, invalid};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Steps per episode (`Pendulum-v1`'s time limit).
pub const DEFAULT_STEPS: usize = 200;
/// Success: |θ| < this at each of the last [`SUCCESS_WINDOW`] steps.
pub const SUCCESS_ANGLE: f64 = 0.3;
/// See [`SUCCESS_ANGLE`].
pub const SUCCESS_WINDOW: usize = 50;
/// Near-upright: |θ| < π/6.
pub const NEAR_UPRIGHT: f64 = PI / 6.0;
/// The longest planning horizon accepted.
pub const MAX_HORIZON: usize = 1000;
/// Default horizon of the true-model MPC.
pub const TRUE_HORIZON: usize = 40;
/// Default horizon of the learned-model MPC (open-loop predictions drift over long horizons).
pub const LEARNED_HORIZON: usize = 30;
/// Default warm start of the true-model MPC: the previous plan with its feedback, so a
/// state that departs from the prediction (action noise, a perturbation, the environment's
/// f32 force) does not topple the open-loop rollout of an unstable system. Measured: the
/// cart-pole's true-model MPC balances under action noise of std 0.05–0.1 in 10 of 10 episodes with it and in 0
/// of 10 without; on the noiseless pendulum both give the same trajectories bit for bit.
pub const TRUE_WARM_START: WarmStart = WarmStart::Feedback;
/// Default warm start of the learned-model MPC: the shifted controls. The feedback warm start
/// was measured no better on the learned cart-pole and pendulum models (within the episodes'
/// spread), and this default keeps the published pixel-MPC results reproducible.
pub const LEARNED_WARM_START: WarmStart = WarmStart::Controls;
/// Episodes of the reward data that [`LatentCostKind::Reward`] fits on (the first ones; 10 %
/// of them held out to report the fit's R²).
pub const REWARD_EPISODES: usize = 200;

/// The episodes and the MPC settings shared by both planners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwingUpConfig {
    /// Number of episodes.
    pub episodes: usize,
    /// Seed of the random starting states (Gymnasium's reset distribution, seeded once as
    /// `reset(seed=K)` is) and of the planner's random starts.
    pub seed: u64,
    /// Steps per episode.
    pub steps: usize,
    /// Start every episode from this state `[θ, θ̇]` instead of a random one.
    pub start: Option<[f64; 2]>,
    /// Planning horizon; `None`: [`TRUE_HORIZON`] or [`LEARNED_HORIZON`].
    pub horizon: Option<usize>,
    /// iLQR iterations per control step (warm-started from the shifted previous plan).
    pub iterations: usize,
    /// Re-plan from multiple starts every this many steps; 0 = only at the first step.
    pub replan_every: usize,
    /// iLQR iterations per start when multi-starting.
    pub multistart_iterations: usize,
    /// Random control sequences per multi-start (besides zeros and ±2 constants).
    pub random_starts: usize,
    /// Add the multi-start candidate planned over half the horizon.
    pub short_horizon_start: bool,
    /// How the previous plan starts the next solve; `None`: [`TRUE_WARM_START`] or
    /// [`LEARNED_WARM_START`].
    #[serde(default)]
    pub warm_start: Option<WarmStart>,
    /// Weight of the terminal cost relative to one running step's state cost.
    pub terminal_weight: f64,
    /// Standard deviation (N·m) of Gaussian noise added to each planned torque before it is
    /// applied (then clipped to the torque limits), for exploration when the episodes are
    /// recorded as data ([`record`]); 0 = none. Seeded by `seed` and the episode, apart from
    /// the planner's random starts and the starting states.
    #[serde(default)]
    pub action_noise: f64,
}

impl Default for SwingUpConfig {
    fn default() -> Self {
        Self {
            episodes: 20,
            seed: 0,
            steps: DEFAULT_STEPS,
            start: None,
            horizon: None,
            iterations: 5,
            replan_every: 10,
            multistart_iterations: 50,
            random_starts: 2,
            short_horizon_start: true,
            warm_start: None,
            terminal_weight: 1.0,
            action_noise: 0.0,
        }
    }
}

/// What the planner plans with.
#[derive(Debug, Clone, PartialEq)]
pub enum Planner {
    /// The exact pendulum physics and `Pendulum-v1`'s cost, on the true state.
    True,
    /// A trained run: plan in its latent space from frames rendered at its image size.
    Learned(LearnedPlanner),
}

/// The settings of MPC on a trained model.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedPlanner {
    /// The run directory (made by training).
    pub run: PathBuf,
    /// Jacobians of the latent transition given to iLQR.
    pub jacobians: Jacobians,
    /// Weight of |z − z_goal|² per step in the latent cost.
    pub state_weight: f64,
    /// Weight of u² per step.
    pub control_weight: f64,
    /// Upright frames filtered (zero torque) to find the goal latent.
    pub goal_steps: usize,
    /// Which latent cost the planner minimises.
    pub cost: LatentCostKind,
    /// The data whose recorded rewards [`LatentCostKind::Reward`] is fitted to (default: the
    /// run's training data, as its `config.toml` records it).
    pub reward_data: Option<PathBuf>,
}

/// The cost of MPC on a learned model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LatentCostKind {
    /// `w_s |z − z̄|² + w_u u²` around the latent of rendered upright frames (the default).
    #[default]
    Goal,
    /// A quadratic cost fitted to the dataset's recorded rewards ([`RewardFit`]): no upright
    /// frame and no true state needed.
    Reward,
}

impl LearnedPlanner {
    /// The defaults for the run in `run`.
    pub fn new(run: impl Into<PathBuf>) -> Self {
        let w = LatentCostWeights::default();
        Self {
            run: run.into(),
            jacobians: Jacobians::default(),
            state_weight: w.state,
            control_weight: w.control,
            goal_steps: 20,
            cost: LatentCostKind::default(),
            reward_data: None,
        }
    }
}

impl SwingUpConfig {
    /// Checks the settings before anything runs; the messages name the settings by their
    /// command-line flags.
    pub fn check(&self) -> Result<()> {
        if self.episodes == 0 {
            invalid!("--episodes must be at least 1");
        }
        if self.steps < SUCCESS_WINDOW {
            invalid!(
                "--steps {} is shorter than the {SUCCESS_WINDOW}-step success window; use at least {SUCCESS_WINDOW}",
                self.steps
            );
        }
        if let Some(h) = self.horizon
            && !(1..=MAX_HORIZON).contains(&h)
        {
            invalid!(
                "--horizon {h} is out of range; use 1 to {MAX_HORIZON} steps (every control step solves an iLQR problem of that length)"
            );
        }
        if let Some([th, thd]) = self.start
            && !(th.is_finite() && thd.is_finite() && thd.abs() <= 8.0)
        {
            invalid!("--start {th},{thd} must be finite with |θ̇| ≤ 8");
        }
        if !(self.action_noise.is_finite() && self.action_noise >= 0.0) {
            invalid!("--action-noise {} must be a finite number ≥ 0", self.action_noise);
        }
        // The per-step rows and beliefs are kept for the results.
        let per_step = std::mem::size_of::<StepRow>() as u64 + 8 * 8;
        let bytes = (self.episodes as u64)
            .checked_mul(self.steps as u64)
            .and_then(|n| n.checked_mul(per_step));
        ekvae_envs::fsio::check_memory(
            bytes,
            "--episodes × --steps",
            "lower --episodes or --steps",
        )?;
        Ok(())
    }

    /// The MPC settings, with the pendulum's torque limits; `default_horizon` and
    /// `default_warm_start` apply when none is set.
    pub fn mpc_config(&self, default_horizon: usize, default_warm_start: WarmStart) -> MpcConfig {
        let (lower, upper) = TruePendulum::default().control_limits();
        self.mpc_options(default_horizon, default_warm_start).config(ControlBounds { lower, upper })
    }

    /// The MPC options of these settings, for a system with other control bounds;
    /// `default_horizon` and `default_warm_start` apply when none is set.
    pub fn mpc_options(&self, default_horizon: usize, default_warm_start: WarmStart) -> MpcOptions {
        MpcOptions {
            horizon: self.horizon.unwrap_or(default_horizon),
            iterations: self.iterations,
            replan_every: self.replan_every,
            multistart_iterations: self.multistart_iterations,
            random_starts: self.random_starts,
            short_horizon_start: self.short_horizon_start,
            warm_start: self.warm_start.unwrap_or(default_warm_start),
            seed: self.seed,
        }
    }
}

/// The command line's MPC options, shared by the pendulum's swing-up and [`crate::task`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MpcOptions {
    /// Planning horizon.
    pub horizon: usize,
    /// iLQR iterations per control step.
    pub iterations: usize,
    /// Re-plan from multiple starts every this many steps; 0 = only at the first step.
    pub replan_every: usize,
    /// iLQR iterations per start when multi-starting.
    pub multistart_iterations: usize,
    /// Random control sequences per multi-start.
    pub random_starts: usize,
    /// Add the multi-start candidate planned over half the horizon.
    pub short_horizon_start: bool,
    /// How the previous plan starts the next solve.
    pub warm_start: WarmStart,
    /// Seed of the random starts.
    pub seed: u64,
}

impl MpcOptions {
    /// The planner's settings with these options and control `bounds`.
    pub fn config(&self, bounds: ControlBounds) -> MpcConfig {
        let mut mpc = MpcConfig::with_bounds(bounds);
        mpc.horizon = self.horizon;
        mpc.iterations_per_step = self.iterations;
        mpc.replan_every = (self.replan_every > 0).then_some(self.replan_every);
        mpc.multistart_iterations = self.multistart_iterations;
        mpc.random_starts = self.random_starts;
        mpc.short_horizon_start = self.short_horizon_start;
        mpc.warm_start = self.warm_start;
        mpc.seed = self.seed;
        mpc
    }
}

/// The resolved settings (`settings` in the summary).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// `true`, or the run directory.
    pub model: String,
    /// Episodes.
    pub episodes: usize,
    /// Seed.
    pub seed: u64,
    /// Steps per episode.
    pub steps: usize,
    /// Fixed start, if any.
    pub start: Option<[f64; 2]>,
    /// The planning cost's settings (pendulum or latent).
    pub cost: serde_json::Value,
    /// What else defines the controller (for a learned model: checkpoint, goal, Jacobians).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller: Option<serde_json::Value>,
    /// The MPC settings.
    pub mpc: MpcConfig,
    /// Standard deviation of the noise on the applied torques (0: none).
    pub action_noise: f64,
}

/// One step of one episode (a CSV row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    /// Episode index.
    pub episode: usize,
    /// Step within the episode.
    pub t: usize,
    /// θ before the action.
    pub theta: f64,
    /// θ̇ before the action.
    pub theta_dot: f64,
    /// The applied torque.
    pub u: f64,
    /// That action's reward.
    pub reward: f64,
    /// The controller's whole time for this step (ms; for a learned model rendering,
    /// encoding, filtering and planning).
    pub plan_ms: f64,
    /// iLQR iterations run.
    pub iterations: usize,
}

/// The score of one episode.
#[derive(Debug, Clone, Serialize)]
pub struct EpisodeSummary {
    /// Episode index.
    pub episode: usize,
    /// Its start `[θ, θ̇]`.
    pub start: [f64; 2],
    /// Its `Pendulum-v1` return.
    #[serde(rename = "return")]
    pub ret: f64,
    /// |θ| < 0.3 at each of the last 50 steps.
    pub success: bool,
    /// Share of steps within π/6 of upright.
    pub near_upright_fraction: f64,
    /// First step whose |θ| < 0.1, if any.
    pub first_upright_step: Option<usize>,
    /// Median controller time per step (ms).
    pub plan_ms_median: f64,
    /// Longest controller time of a step (ms).
    pub plan_ms_max: f64,
}

/// The result of [`run_swingup`]; serialised, it is the summary (without the steps).
#[derive(Debug, Clone, Serialize)]
pub struct SwingUp {
    /// The resolved settings.
    pub settings: Settings,
    /// Mean return.
    pub mean_return: f64,
    /// Standard deviation of the returns (population).
    pub std_return: f64,
    /// Share of successful episodes.
    pub success_rate: f64,
    /// Mean near-upright fraction.
    pub near_upright_fraction: f64,
    /// Median controller time per step (ms).
    pub plan_ms_median: f64,
    /// 95th percentile.
    pub plan_ms_p95: f64,
    /// Maximum.
    pub plan_ms_max: f64,
    /// Per episode.
    pub episodes: Vec<EpisodeSummary>,
    /// Every step of every episode.
    #[serde(skip)]
    pub steps: Vec<StepRow>,
    /// The episode worth showing: the successful one that started farthest from upright,
    /// else episode 0.
    #[serde(skip)]
    pub shown_episode: usize,
    /// For a learned model, the frames its decoder draws from the filter's belief (`H z`) at
    /// each step of the shown episode (side [`SwingUp::belief_frame_size`]); else empty.
    #[serde(skip)]
    pub belief_frames: Vec<Vec<u8>>,
    /// Side of the belief frames.
    #[serde(skip)]
    pub belief_frame_size: usize,
}

/// The environment the controller acts on: `ekvae_envs`' `Pendulum-v1`, seeded once on the
/// first random reset as Gymnasium's `reset(seed=K)` is, then drawing further starts from the
/// same generator.
struct Environment {
    env: Pendulum,
    seed: Option<u64>,
}

impl Environment {
    fn new(seed: u64) -> Self {
        Self { env: Pendulum::default(), seed: Some(seed) }
    }
    /// Gymnasium's reset distribution (θ ~ U(−π, π), θ̇ ~ U(−1, 1)), or a given state.
    fn reset(&mut self, start: Option<[f64; 2]>) -> [f64; 2] {
        match start {
            Some(state) => {
                self.env.reset_to(state);
            }
            None => {
                self.env.reset(self.seed.take());
            }
        }
        self.env.state()
    }
    /// The current state `[θ, θ̇]`.
    fn state(&self) -> [f64; 2] {
        self.env.state()
    }
    /// Applies `u` and returns the reward.
    fn step(&mut self, u: f64) -> f64 {
        self.env.step(&[u]).reward
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn sorted(v: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = v.into_iter().collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Runs the episodes with `planner` and scores them; `progress(episode, return)` is called
/// after each episode.
pub fn run_swingup(
    config: &SwingUpConfig,
    planner: &Planner,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<SwingUp> {
    config.check()?;
    match planner {
        Planner::True => {
            let mpc_cfg = config.mpc_config(TRUE_HORIZON, TRUE_WARM_START);
            let cost = PendulumCost { w_final: config.terminal_weight, ..PendulumCost::default() };
            cost.check().context("terminal weight")?;
            let mpc = Mpc::new(TruePendulum::default(), cost, mpc_cfg.clone())
                .context("invalid MPC settings (check the horizon and the iteration options)")?;
            let mut agent = MpcAgent::new(ExactState, mpc);
            let settings = Settings {
                model: "true".into(),
                episodes: config.episodes,
                seed: config.seed,
                steps: config.steps,
                start: config.start,
                cost: serde_json::json!({
                    "w_theta": cost.w_theta,
                    "w_theta_dot": cost.w_theta_dot,
                    "w_u": cost.w_u,
                    "w_final": cost.w_final,
                }),
                controller: None,
                mpc: mpc_cfg,
                action_noise: config.action_noise,
            };
            episodes(config, settings, &mut agent, None, progress)
        }
        Planner::Learned(l) => {
            if l.goal_steps == 0 {
                invalid!("--goal-steps must be at least 1");
            }
            let model = LearnedModel::load(&l.run)?;
            let weights = LatentCostWeights {
                state: l.state_weight,
                control: l.control_weight,
                terminal: config.terminal_weight,
            };
            let (cost, cost_settings) = match l.cost {
                LatentCostKind::Goal => {
                    let goal = model.goal_latent(l.goal_steps)?;
                    let cost = latent_cost(goal.clone(), weights, 1)?;
                    (
                        cost,
                        serde_json::json!({
                            "kind": "latent quadratic",
                            "state_weight": weights.state,
                            "control_weight": weights.control,
                            "terminal_weight": weights.terminal,
                            "goal_latent": goal,
                        }),
                    )
                }
                LatentCostKind::Reward => {
                    let (path, data) = crate::train::given_or_recorded_data(
                        l.reward_data.as_deref(),
                        &l.run,
                        &model.config,
                        "--reward-data",
                    )?;
                    let fit = RewardFit::fit(&model, &data, REWARD_EPISODES)
                        .with_context(|| format!("fitting the reward to {}", path.display()))?;
                    let cost = fit.cost(config.terminal_weight)?;
                    (
                        cost,
                        serde_json::json!({
                            "kind": "learned reward",
                            "data": path.display().to_string(),
                            "terminal_weight": config.terminal_weight,
                            "fit": fit,
                        }),
                    )
                }
            };
            let mpc_cfg = config.mpc_config(LEARNED_HORIZON, LEARNED_WARM_START);
            let dynamics = LatentDynamics::new(model.plain.clone(), l.jacobians);
            let mpc = Mpc::new(dynamics, cost, mpc_cfg.clone())
                .context("invalid MPC settings (check the horizon and the iteration options)")?;
            let size = model.image_size();
            let mut controller =
                PixelController::new(MpcAgent::new(PixelFilter::new(&model), mpc), size);
            let settings = Settings {
                model: l.run.display().to_string(),
                episodes: config.episodes,
                seed: config.seed,
                steps: config.steps,
                start: config.start,
                cost: cost_settings,
                controller: Some(serde_json::json!({
                    "checkpoint_epoch": model.epoch,
                    "image_size": size,
                    "state_dim": model.plain.state_dim(),
                    "aux_dim": model.plain.aux_dim(),
                    "num_bases": model.plain.transition.num_bases(),
                    "jacobians": l.jacobians,
                    "goal_steps": l.goal_steps,
                    "estimator": "encoder mean → extended Kalman filter (plain f64)",
                })),
                mpc: mpc_cfg,
                action_noise: config.action_noise,
            };
            let decode = |z: &[f64]| model.decode(z);
            episodes(config, settings, &mut controller, Some((&decode, size)), progress)
        }
    }
}

/// The episodes of `run` as a `Pendulum-v1` dataset (on-policy data; see
/// [`crate::task::record_episodes`]): windows of `window` steps, frames rendered at `size`, the
/// applied torques, the states `[θ, θ̇]` and the rewards.
pub fn record(run: &SwingUp, size: usize, window: usize) -> Result<ekvae_envs::Dataset> {
    let s = &run.settings;
    let episodes: Vec<Vec<RecordedStep>> = (0..run.episodes.len())
        .map(|ep| {
            run.steps
                .iter()
                .filter(|r| r.episode == ep)
                .map(|r| RecordedStep {
                    state: vec![r.theta, r.theta_dot],
                    u: vec![r.u],
                    reward: r.reward,
                })
                .collect()
        })
        .collect();
    let starts = match s.start {
        Some([th, thd]) => format!("each from the state [{th}, {thd}]"),
        None => format!("from Gymnasium's reset seeded once with {}", s.seed),
    };
    record_episodes(
        &episodes,
        &ekvae_envs::system::PendulumSystem::default(),
        size,
        window,
        format!("mpc: {} (horizon {}, action noise {})", s.model, s.mpc.horizon, s.action_noise),
        s.seed,
        format!(
            "{} episodes of `ekvae mpc` {starts}, each cut into windows of {window} steps",
            s.episodes
        ),
    )
}

/// A decoder of planner states into frames, and the frames' side.
type Decode<'a> = (&'a dyn Fn(&[f64]) -> Result<Vec<u8>>, usize);

/// The episode loop shared by both planners.
fn episodes(
    config: &SwingUpConfig,
    settings: Settings,
    controller: &mut dyn Controller,
    decode: Option<Decode<'_>>,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<SwingUp> {
    let mut env = Environment::new(config.seed);
    let mut rows: Vec<StepRow> = Vec::with_capacity(config.episodes * config.steps);
    let mut beliefs: Vec<Vec<f64>> = Vec::with_capacity(config.episodes * config.steps);
    let mut episodes = Vec::with_capacity(config.episodes);
    let max_torque = ekvae_envs::pendulum::PendulumParams::default().max_torque;
    for ep in 0..config.episodes {
        let start = env.reset(config.start);
        let mut noise = ChaCha8Rng::seed_from_u64(config.seed ^ crate::task::NOISE_STREAM);
        noise.set_stream(ep as u64);
        controller.reset();
        let mut ret = 0.0;
        let first_row = rows.len();
        for t in 0..config.steps {
            let x = env.state();
            let t0 = Instant::now();
            let plan = controller
                .act(&x)
                .with_context(|| format!("planning failed at episode {ep}, step {t}"))?;
            let plan_ms = t0.elapsed().as_secs_f64() * 1e3;
            let mut u = plan.u[0];
            if config.action_noise > 0.0 {
                u = (u + config.action_noise * crate::task::standard_normal(&mut noise))
                    .clamp(-max_torque, max_torque);
            }
            let reward = env.step(u);
            ret += reward;
            rows.push(StepRow {
                episode: ep,
                t,
                theta: x[0],
                theta_dot: x[1],
                u,
                reward,
                plan_ms,
                iterations: plan.iterations,
            });
            beliefs.push(plan.state);
        }
        let ep_rows = &rows[first_row..];
        let angles: Vec<f64> = ep_rows.iter().map(|r| angle_normalize(r.theta).abs()).collect();
        let success = angles[angles.len() - SUCCESS_WINDOW..].iter().all(|a| *a < SUCCESS_ANGLE);
        let near =
            angles.iter().filter(|a| **a < NEAR_UPRIGHT).count() as f64 / angles.len() as f64;
        let times = sorted(ep_rows.iter().map(|r| r.plan_ms));
        episodes.push(EpisodeSummary {
            episode: ep,
            start,
            ret,
            success,
            near_upright_fraction: near,
            first_upright_step: angles.iter().position(|a| *a < 0.1),
            plan_ms_median: quantile(&times, 0.5),
            plan_ms_max: *times.last().expect("steps >= 1"),
        });
        progress(ep, ret);
    }

    let n = episodes.len() as f64;
    let mean_return = episodes.iter().map(|e| e.ret).sum::<f64>() / n;
    let std_return =
        (episodes.iter().map(|e| (e.ret - mean_return).powi(2)).sum::<f64>() / n).sqrt();
    let times = sorted(rows.iter().map(|r| r.plan_ms));
    let shown = episodes
        .iter()
        .filter(|e| e.success)
        .max_by(|a, b| {
            angle_normalize(a.start[0]).abs().total_cmp(&angle_normalize(b.start[0]).abs())
        })
        .map_or(0, |e| e.episode);
    let (belief_frames, belief_frame_size) = match decode {
        Some((decode, size)) => (
            rows.iter()
                .zip(&beliefs)
                .filter(|(r, _)| r.episode == shown)
                .map(|(_, z)| decode(z))
                .collect::<Result<Vec<_>>>()?,
            size,
        ),
        None => (Vec::new(), 0),
    };
    Ok(SwingUp {
        settings,
        mean_return,
        std_return,
        success_rate: episodes.iter().filter(|e| e.success).count() as f64 / n,
        near_upright_fraction: episodes.iter().map(|e| e.near_upright_fraction).sum::<f64>() / n,
        plan_ms_median: quantile(&times, 0.5),
        plan_ms_p95: quantile(&times, 0.95),
        plan_ms_max: *times.last().expect("rows non-empty"),
        episodes,
        steps: rows,
        shown_episode: shown,
        belief_frames,
        belief_frame_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_sorted_values() {
        let v = sorted([5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.95), 5.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    /// Noisy episodes repeat with their seed, and record as windows of the applied torques,
    /// the states and the rendered frames.
    #[test]
    fn noisy_episodes_repeat_and_record() {
        let config = SwingUpConfig {
            episodes: 1,
            steps: 60,
            horizon: Some(15),
            action_noise: 0.5,
            ..SwingUpConfig::default()
        };
        let run = || run_swingup(&config, &Planner::True, &mut |_, _| {}).unwrap();
        let (a, b) = (run(), run());
        let untimed = |s: &SwingUp| -> Vec<StepRow> {
            s.steps.iter().map(|r| StepRow { plan_ms: 0.0, ..r.clone() }).collect()
        };
        assert_eq!(untimed(&a), untimed(&b));
        assert_eq!(a.settings.action_noise, 0.5);
        let data = record(&a, 16, 30).unwrap();
        assert_eq!((data.episodes, data.steps, data.size), (2, 30, 16));
        let r = &a.steps[31];
        assert_eq!(data.state(1, 1), &[r.theta, r.theta_dot]);
        assert_eq!(data.action(1, 1), &[r.u as f32]);
        assert_eq!(data.frame(1, 1), &ekvae_envs::render::render(r.theta, 16)[..]);
        assert!(record(&a, 16, 61).is_err(), "no episode holds a window of 61");
        let bad = SwingUpConfig { action_noise: f64::NAN, ..config };
        assert!(bad.check().is_err());
    }

    #[test]
    fn settings_are_checked_before_anything_runs() {
        let ok = SwingUpConfig::default();
        assert!(ok.check().is_ok());
        for bad in [
            SwingUpConfig { episodes: 0, ..ok.clone() },
            SwingUpConfig { steps: SUCCESS_WINDOW - 1, ..ok.clone() },
            SwingUpConfig { horizon: Some(0), ..ok.clone() },
            SwingUpConfig { horizon: Some(MAX_HORIZON + 1), ..ok.clone() },
            SwingUpConfig { start: Some([0.0, 9.0]), ..ok.clone() },
            SwingUpConfig { start: Some([f64::NAN, 0.0]), ..ok.clone() },
            SwingUpConfig { episodes: usize::MAX / 2, ..ok.clone() },
        ] {
            assert!(run_swingup(&bad, &Planner::True, &mut |_, _| {}).is_err(), "{bad:?}");
        }
    }
}
