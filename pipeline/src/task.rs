//! Control tasks on registered systems other than the pendulum (whose swing-up, with its own
//! scores and figures, is [`crate::swingup`]): receding-horizon iLQR on the true physics or on
//! a trained model's latent dynamics from the system's rendered frames, scored on the system.
//!
//! A [`Task`] names the system, the episode length, the seeded starts, the success rule and the
//! true-model controller; [`builtin_task`] has `CartPoleSwingUp-v0`'s. [`run_task`] runs the
//! episodes. On a learned model the cost is `w_s |z − z̄|² + w_u |u|²` around the latent of the
//! system's goal state, rendered and filtered ([`LearnedModel::goal_latent_of`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ekvae_envs::cartpole::{CartPoleSwingUp, PoleDrawing};
use ekvae_envs::system::CartPoleSystem;
use ekvae_envs::{Env, System};
use ekvae_planner::{
    CartPoleCost, ControlBounds, ExactState, Mpc, MpcAgent, MpcConfig, TrueCartPole, WarmStart,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::control::{
    Controller, Jacobians, LatentCostWeights, LatentDynamics, LearnedModel, PixelController,
    PixelFilter, RewardFit, latent_cost,
};
use crate::swingup::{LatentCostKind, MpcOptions, REWARD_EPISODES};
use crate::{Context, Result, invalid};

/// A control task on a system: what an episode is and when it succeeded.
pub trait Task {
    /// The system controlled.
    fn system(&self) -> Arc<dyn System>;
    /// Steps per episode (the environment's time limit).
    fn steps(&self) -> usize;
    /// The start of episode `episode` of a run seeded with `seed`.
    fn start(&self, seed: u64, episode: usize) -> Vec<f64>;
    /// Whether an episode succeeded, from its states before each action (`steps × D`,
    /// row-major) and whether the environment terminated it.
    fn success(&self, states: &[f64], terminated: bool) -> bool;
    /// The success rule, in words (for the summary).
    fn success_rule(&self) -> String;
    /// Default planning horizons: (true model, learned model).
    fn horizons(&self) -> (usize, usize);
    /// The controller planning on the true physics (by default none: such a task is controlled
    /// from pixels only, with [`TaskPlanner::Learned`]).
    fn true_controller(&self, mpc: MpcConfig) -> Result<Box<dyn Controller>> {
        let _ = mpc;
        invalid!(
            "{} has no true-model controller; plan on a learned model (--run DIR)",
            self.system().id()
        )
    }
}

/// `CartPoleSwingUp-v0`: 1000 steps from the package's reset (near hanging at rest, episode
/// `i` seeded with `seed + i`); success: the cart never leaves the track and |θ| < 0.2 rad over
/// the last 500 steps. The true-model planner is `TrueCartPole` with `CartPoleCost`.
/// `CartPoleSwingUpBigPole-v0` is the same task on frames with the pole drawn larger,
/// `CartPoleSwingUpBigPoleGhost-v0` on frames that also draw the next step's pole.
#[derive(Debug, Clone, Copy, Default)]
pub struct CartPoleTask {
    /// How the frames draw the pole (it decides the system's id).
    pub drawing: PoleDrawing,
}

/// [`CartPoleTask`]'s success: |θ| below this over the last [`CARTPOLE_WINDOW`] steps.
pub const CARTPOLE_ANGLE: f64 = 0.2;
/// See [`CARTPOLE_ANGLE`].
pub const CARTPOLE_WINDOW: usize = 500;
/// The default planning horizon on a learned model of `CartPoleSwingUpBigPoleGhost-v0`.
pub const CARTPOLE_GHOST_LEARNED_HORIZON: usize = 10;

impl Task for CartPoleTask {
    fn system(&self) -> Arc<dyn System> {
        Arc::new(CartPoleSystem { drawing: self.drawing, ..CartPoleSystem::default() })
    }
    fn steps(&self) -> usize {
        1000
    }
    fn start(&self, seed: u64, episode: usize) -> Vec<f64> {
        let mut env = CartPoleSwingUp::default();
        env.reset(Some(seed.wrapping_add(episode as u64)));
        env.state().to_vec()
    }
    fn success(&self, states: &[f64], terminated: bool) -> bool {
        let steps = states.len() / 4;
        !terminated
            && steps >= CARTPOLE_WINDOW
            && states[(steps - CARTPOLE_WINDOW) * 4..]
                .chunks_exact(4)
                .all(|s| ekvae_envs::pendulum::angle_normalize(s[2]).abs() < CARTPOLE_ANGLE)
    }
    fn success_rule(&self) -> String {
        format!(
            "the cart never leaves the track and |theta| < {CARTPOLE_ANGLE} rad over the last {CARTPOLE_WINDOW} steps"
        )
    }
    /// 30 steps (3 s) on the true model and on models of the plain and big-pole drawings; 10
    /// steps (1 s) on a model of the ghost drawing, whose recipe swings up and balances from
    /// pixels only at short horizons (results/cartpole, "Horizon 10 on the round-1 models").
    fn horizons(&self) -> (usize, usize) {
        match self.drawing {
            PoleDrawing::BigGhost => (30, CARTPOLE_GHOST_LEARNED_HORIZON),
            PoleDrawing::Physical | PoleDrawing::Big => (30, 30),
        }
    }
    fn true_controller(&self, mpc: MpcConfig) -> Result<Box<dyn Controller>> {
        let mpc = Mpc::new(TrueCartPole::default(), CartPoleCost::default(), mpc)
            .context("invalid MPC settings (check the horizon and the iteration options)")?;
        Ok(Box::new(MpcAgent::new(ExactState, mpc)))
    }
}

/// The built-in task of environment `id` (not the pendulum: see [`crate::swingup`]).
pub fn builtin_task(id: &str) -> Result<Box<dyn Task>> {
    match id {
        CartPoleSystem::ID => Ok(Box::new(CartPoleTask::default())),
        CartPoleSystem::BIG_POLE_ID => Ok(Box::new(CartPoleTask { drawing: PoleDrawing::Big })),
        CartPoleSystem::GHOST_ID => Ok(Box::new(CartPoleTask { drawing: PoleDrawing::BigGhost })),
        _ => invalid!(
            "no control task for '{id}': mpc knows Pendulum-v1, CartPoleSwingUp-v0, CartPoleSwingUpBigPole-v0 and CartPoleSwingUpBigPoleGhost-v0 (a library user adds one by implementing ekvae_pipeline::task::Task)"
        ),
    }
}

/// The episodes and the MPC settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskConfig {
    /// Number of episodes.
    pub episodes: usize,
    /// Seed of the starts and of the planner's random starts.
    pub seed: u64,
    /// Steps per episode; `None`: the task's.
    pub steps: Option<usize>,
    /// Planning horizon; `None`: the task's default for the planner.
    pub horizon: Option<usize>,
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
    /// How the previous plan starts the next solve; `None`: the planner's default
    /// ([`crate::swingup::TRUE_WARM_START`] or [`crate::swingup::LEARNED_WARM_START`]).
    pub warm_start: Option<WarmStart>,
    /// Standard deviation of Gaussian noise added to each planned action before it is applied
    /// (then clipped to the action bounds), for exploration when the episodes are recorded as
    /// data ([`record`]); 0 = none. Seeded by `seed` and the episode, apart from the planner's
    /// random starts.
    pub action_noise: f64,
}

/// What plans.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskPlanner {
    /// The task's true-model controller.
    True,
    /// A trained run, from the system's rendered frames.
    Learned {
        /// The run directory.
        run: PathBuf,
        /// Jacobians given to iLQR.
        jacobians: Jacobians,
        /// The latent cost's weights.
        weights: LatentCostWeights,
        /// Goal frames filtered to find the goal latent.
        goal_steps: usize,
        /// The cost: around the goal latent (`Goal`, with `weights` and `goal_steps`), or
        /// fitted to a dataset's recorded rewards (`Reward`, [`RewardFit`]; of `weights` only
        /// the terminal weight applies).
        cost: LatentCostKind,
        /// With `Reward`: the dataset whose rewards are fitted (default: the run's training
        /// data).
        reward_data: Option<PathBuf>,
    },
}

/// One step (a row of `steps.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskStep {
    /// Episode.
    pub episode: usize,
    /// Step.
    pub t: usize,
    /// The state before the action.
    pub state: Vec<f64>,
    /// The action.
    pub u: Vec<f64>,
    /// Its reward.
    pub reward: f64,
    /// The controller's time (ms).
    pub plan_ms: f64,
    /// iLQR iterations.
    pub iterations: usize,
}

/// One episode's score.
#[derive(Debug, Clone, Serialize)]
pub struct TaskEpisode {
    /// Episode.
    pub episode: usize,
    /// Its start.
    pub start: Vec<f64>,
    /// Its return.
    #[serde(rename = "return")]
    pub ret: f64,
    /// By the task's rule.
    pub success: bool,
    /// The step at which the environment terminated the episode, if it did.
    pub terminated_at: Option<usize>,
    /// Median controller time per step (ms).
    pub plan_ms_median: f64,
    /// Longest controller time (ms).
    pub plan_ms_max: f64,
}

/// The result of [`run_task`]; serialised, the summary (without the steps).
#[derive(Debug, Clone, Serialize)]
pub struct TaskRun {
    /// The environment.
    pub env: String,
    /// `true`, or the run directory.
    pub model: String,
    /// The settings.
    pub config: TaskConfig,
    /// Steps per episode.
    pub steps_per_episode: usize,
    /// The MPC settings.
    pub mpc: MpcConfig,
    /// The controller's description (the learned model's goal latent and weights).
    pub controller: serde_json::Value,
    /// The success rule.
    pub success_rule: String,
    /// Mean return.
    pub mean_return: f64,
    /// Population standard deviation of the returns.
    pub std_return: f64,
    /// Share of successful episodes.
    pub success_rate: f64,
    /// Median controller time per step (ms).
    pub plan_ms_median: f64,
    /// 95th percentile.
    pub plan_ms_p95: f64,
    /// Maximum.
    pub plan_ms_max: f64,
    /// Per episode.
    pub episodes: Vec<TaskEpisode>,
    /// The state coordinates' names.
    pub state_names: Vec<String>,
    /// Every step.
    #[serde(skip)]
    pub steps: Vec<TaskStep>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Runs `config.episodes` episodes of `task` with `planner`; `progress(episode, return)` after
/// each.
pub fn run_task(
    task: &dyn Task,
    config: &TaskConfig,
    planner: &TaskPlanner,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<TaskRun> {
    let system = task.system();
    let steps = config.steps.unwrap_or(task.steps());
    if config.episodes == 0 || steps == 0 {
        invalid!("--episodes and --steps must be at least 1");
    }
    if !(config.action_noise.is_finite() && config.action_noise >= 0.0) {
        invalid!("--action-noise {} must be a finite number ≥ 0", config.action_noise);
    }
    let bytes = (config.episodes as u64)
        .checked_mul(steps as u64)
        .and_then(|n| n.checked_mul(64 + 8 * system.state_names().len() as u64));
    ekvae_envs::fsio::check_memory(bytes, "--episodes × --steps", "lower --episodes or --steps")?;
    let (lower, upper) = system.action_bounds();
    let (true_h, learned_h) = task.horizons();
    let default_h = if *planner == TaskPlanner::True { true_h } else { learned_h };
    let horizon = config.horizon.unwrap_or(default_h);
    let warm_start = config.warm_start.unwrap_or(if *planner == TaskPlanner::True {
        crate::swingup::TRUE_WARM_START
    } else {
        crate::swingup::LEARNED_WARM_START
    });
    if !(1..=crate::swingup::MAX_HORIZON).contains(&horizon) {
        invalid!("--horizon {horizon} is out of range; use 1 to {}", crate::swingup::MAX_HORIZON);
    }
    let mpc = MpcOptions {
        horizon,
        iterations: config.iterations,
        replan_every: config.replan_every,
        multistart_iterations: config.multistart_iterations,
        random_starts: config.random_starts,
        short_horizon_start: config.short_horizon_start,
        warm_start,
        seed: config.seed,
    }
    .config(ControlBounds { lower, upper });
    match planner {
        TaskPlanner::True => {
            let mut controller = task.true_controller(mpc.clone())?;
            let description = serde_json::json!({"planner": "iLQR-MPC on the true physics"});
            episodes(
                task,
                config,
                steps,
                "true".into(),
                mpc,
                description,
                &mut *controller,
                progress,
            )
        }
        TaskPlanner::Learned { run, jacobians, weights, goal_steps, cost, reward_data } => {
            let model = LearnedModel::load_for(run, system.id(), system.action_dim())?;
            let (cost, cost_description) = match cost {
                LatentCostKind::Goal => {
                    let goal = model.goal_latent_of(system.as_ref(), *goal_steps)?;
                    let cost = latent_cost(goal.clone(), *weights, system.action_dim())?;
                    let d = serde_json::json!({
                        "kind": "goal latent",
                        "goal_steps": goal_steps,
                        "goal_latent": goal,
                        "state_weight": weights.state,
                        "control_weight": weights.control,
                        "terminal_weight": weights.terminal,
                    });
                    (cost, d)
                }
                LatentCostKind::Reward => {
                    let (path, data) = crate::train::given_or_recorded_data(
                        reward_data.as_deref(),
                        run,
                        &model.config,
                        "--reward-data",
                    )?;
                    if data.meta.env != system.id() {
                        invalid!(
                            "the reward data {} are of {}, the task is {}",
                            path.display(),
                            data.meta.env,
                            system.id()
                        );
                    }
                    let fit = RewardFit::fit(&model, &data, REWARD_EPISODES)
                        .with_context(|| format!("fitting the reward to {}", path.display()))?;
                    let cost = fit.cost(weights.terminal)?;
                    let d = serde_json::json!({
                        "kind": "learned reward",
                        "data": path.display().to_string(),
                        "terminal_weight": weights.terminal,
                        "fit": fit,
                    });
                    (cost, d)
                }
            };
            let dynamics = LatentDynamics::new(model.plain.clone(), *jacobians);
            let agent_mpc = Mpc::new(dynamics, cost, mpc.clone())
                .context("invalid MPC settings (check the horizon and the iteration options)")?;
            let size = model.image_size();
            let mut controller = PixelController::of_system(
                MpcAgent::new(PixelFilter::new(&model), agent_mpc),
                size,
                system.clone(),
            );
            let description = serde_json::json!({
                "planner": "iLQR-MPC on the learned latent dynamics, from rendered frames",
                "checkpoint_epoch": model.epoch,
                "image_size": size,
                "state_dim": model.plain.state_dim(),
                "jacobians": jacobians,
                "cost": cost_description,
                "estimator": "encoder mean → extended Kalman filter (plain f64)",
            });
            let name = run.display().to_string();
            episodes(task, config, steps, name, mpc, description, &mut controller, progress)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn episodes(
    task: &dyn Task,
    config: &TaskConfig,
    steps: usize,
    model: String,
    mpc: MpcConfig,
    controller_description: serde_json::Value,
    controller: &mut dyn Controller,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<TaskRun> {
    let system = task.system();
    let d = system.state_names().len();
    let (lower, upper) = system.action_bounds();
    let mut rows = Vec::with_capacity(config.episodes * steps);
    let mut episodes = Vec::with_capacity(config.episodes);
    for ep in 0..config.episodes {
        let start = task.start(config.seed, ep);
        let mut noise = ChaCha8Rng::seed_from_u64(config.seed ^ NOISE_STREAM);
        noise.set_stream(ep as u64);
        let mut state = start.clone();
        controller.reset();
        let (mut ret, mut terminated_at) = (0.0, None);
        let mut states = Vec::with_capacity(steps * d);
        let mut times = Vec::with_capacity(steps);
        for t in 0..steps {
            let t0 = Instant::now();
            let plan = controller
                .act(&state)
                .with_context(|| format!("planning failed at episode {ep}, step {t}"))?;
            let plan_ms = t0.elapsed().as_secs_f64() * 1e3;
            times.push(plan_ms);
            states.extend_from_slice(&state);
            let before = state.clone();
            let mut u = plan.u;
            if config.action_noise > 0.0 {
                for (i, u) in u.iter_mut().enumerate() {
                    *u = (*u + config.action_noise * standard_normal(&mut noise))
                        .clamp(lower[i], upper[i]);
                }
            }
            let outcome = system.step(&mut state, &u);
            ret += outcome.reward;
            rows.push(TaskStep {
                episode: ep,
                t,
                state: before,
                u,
                reward: outcome.reward,
                plan_ms,
                iterations: plan.iterations,
            });
            if outcome.terminated {
                terminated_at = Some(t);
                break;
            }
        }
        times.sort_by(f64::total_cmp);
        episodes.push(TaskEpisode {
            episode: ep,
            start,
            ret,
            success: task.success(&states, terminated_at.is_some()),
            terminated_at,
            plan_ms_median: quantile(&times, 0.5),
            plan_ms_max: times.last().copied().unwrap_or(f64::NAN),
        });
        progress(ep, ret);
    }
    let n = episodes.len() as f64;
    let mean_return = episodes.iter().map(|e| e.ret).sum::<f64>() / n;
    let std_return =
        (episodes.iter().map(|e| (e.ret - mean_return).powi(2)).sum::<f64>() / n).sqrt();
    let mut times: Vec<f64> = rows.iter().map(|r| r.plan_ms).collect();
    times.sort_by(f64::total_cmp);
    Ok(TaskRun {
        env: system.id().to_string(),
        model,
        config: config.clone(),
        steps_per_episode: steps,
        mpc,
        controller: controller_description,
        success_rule: task.success_rule(),
        mean_return,
        std_return,
        success_rate: episodes.iter().filter(|e| e.success).count() as f64 / n,
        plan_ms_median: quantile(&times, 0.5),
        plan_ms_p95: quantile(&times, 0.95),
        plan_ms_max: times.last().copied().unwrap_or(f64::NAN),
        episodes,
        state_names: system.state_names(),
        steps: rows,
    })
}

/// Mixed into the seed of the exploration noise, so that its draws are not the planner's.
pub(crate) const NOISE_STREAM: u64 = 0x6e6f_6973_6520_7374;

/// One standard normal draw (Box–Muller on the workspace's portable uniform).
pub(crate) fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - ekvae_envs::space::uniform(rng, 0.0, 1.0); // (0, 1]
    let u2 = ekvae_envs::space::uniform(rng, 0.0, 1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// One recorded step: the state before the action, the applied action and its reward.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedStep {
    /// The state before the action.
    pub state: Vec<f64>,
    /// The applied action.
    pub u: Vec<f64>,
    /// That action's reward.
    pub reward: f64,
}

/// Controlled episodes as a dataset of `system` (on-policy data): each episode is cut into
/// windows of `window` steps (a remainder shorter than a window is left out), with the frames
/// rendered at `size` from the states before each action, the applied actions, the states and
/// the rewards. `policy` and `seeding` describe where the episodes came from (the dataset's
/// metadata), `seed` is their seed. Fails when no episode holds a whole window.
pub fn record_episodes(
    episodes: &[Vec<RecordedStep>],
    system: &dyn System,
    size: usize,
    window: usize,
    policy: String,
    seed: u64,
    seeding: String,
) -> Result<ekvae_envs::Dataset> {
    use ekvae_envs::collect::CollectConfig;
    if window == 0 {
        invalid!("--record-steps must be at least 1");
    }
    if size < ekvae_envs::dataset::MIN_SIZE {
        invalid!("the recorded frames' size {size} is below {}", ekvae_envs::dataset::MIN_SIZE);
    }
    let (d, c) = (system.state_names().len(), system.channels());
    let a = episodes.iter().flatten().next().map_or(0, |s| s.u.len());
    let frame = size * size * c;
    let mut data = ekvae_envs::Dataset {
        images: Vec::new(),
        actions: Vec::new(),
        states: Vec::new(),
        rewards: Vec::new(),
        episodes: 0,
        steps: window,
        size,
        channels: c,
        action_dim: a,
        state_dim: d,
        meta: CollectConfig { episodes: 0, steps: window, size, seed }.meta(system, policy),
    };
    data.meta.seeding = seeding;
    for episode in episodes {
        for chunk in episode.chunks_exact(window) {
            for s in chunk {
                let at = data.images.len();
                data.images.resize(at + frame, 0);
                system.render_into(&s.state, size, &mut data.images[at..]);
                data.actions.extend(s.u.iter().map(|&u| u as f32));
                data.states.extend_from_slice(&s.state);
                data.rewards.push(s.reward as f32);
            }
            data.episodes += 1;
        }
    }
    if data.episodes == 0 {
        invalid!(
            "no episode ran {window} steps, so nothing can be recorded; lower --record-steps or run longer episodes"
        );
    }
    data.meta.episodes = data.episodes;
    data.check()?;
    Ok(data)
}

/// The episodes of `run` as a dataset of `system` ([`record_episodes`]); the steps after the
/// environment terminated an episode are not in the run, so they are left out too.
pub fn record(
    run: &TaskRun,
    system: &dyn System,
    size: usize,
    window: usize,
) -> Result<ekvae_envs::Dataset> {
    let episodes: Vec<Vec<RecordedStep>> = run
        .episodes
        .iter()
        .map(|ep| {
            run.steps
                .iter()
                .filter(|s| s.episode == ep.episode)
                .map(|s| RecordedStep { state: s.state.clone(), u: s.u.clone(), reward: s.reward })
                .collect()
        })
        .collect();
    record_episodes(
        &episodes,
        system,
        size,
        window,
        format!(
            "mpc: {} (horizon {}, action noise {})",
            run.model, run.mpc.horizon, run.config.action_noise
        ),
        run.config.seed,
        format!(
            "{} episodes of `ekvae mpc` from the task's seeded starts (seed {} + episode), each cut into windows of {window} steps",
            run.config.episodes, run.config.seed
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(episodes: usize, steps: usize) -> TaskConfig {
        TaskConfig {
            episodes,
            seed: 0,
            steps: Some(steps),
            horizon: None,
            iterations: 5,
            replan_every: 10,
            multistart_iterations: 50,
            random_starts: 2,
            short_horizon_start: true,
            warm_start: None,
            action_noise: 0.0,
        }
    }

    /// The true-model cart-pole: swung up and balanced (the rule on a shortened episode), with
    /// the starts of the environment's seeded reset.
    #[test]
    fn true_model_swings_the_cartpole_up() {
        let task = CartPoleTask::default();
        let run = run_task(&task, &config(1, 600), &TaskPlanner::True, &mut |_, _| {}).unwrap();
        assert_eq!(run.episodes[0].start, task.start(0, 0));
        assert!(run.episodes[0].success, "{:?}", run.episodes[0]);
        assert!(run.episodes[0].ret > 400.0, "{}", run.episodes[0].ret);
        assert_eq!(run.steps.len(), 600);
        assert!(run.steps.iter().all(|s| s.u[0].abs() <= 1.0));
    }

    /// Under action noise of std 0.1 the true model's default warm start (the plan with its
    /// feedback) swings up and balances; the shifted controls do not (the pole spins).
    #[test]
    fn true_model_balances_the_cartpole_under_action_noise() {
        let task = CartPoleTask::default();
        let noisy = TaskConfig { action_noise: 0.1, ..config(2, 600) };
        let run = run_task(&task, &noisy, &TaskPlanner::True, &mut |_, _| {}).unwrap();
        assert_eq!(run.mpc.warm_start, WarmStart::Feedback);
        assert!(run.episodes.iter().all(|e| e.success), "{:?}", run.episodes);
        let open_loop = TaskConfig { warm_start: Some(WarmStart::Controls), ..noisy };
        let run = run_task(&task, &open_loop, &TaskPlanner::True, &mut |_, _| {}).unwrap();
        assert!(run.episodes.iter().all(|e| !e.success), "{:?}", run.episodes);
    }

    #[test]
    fn the_success_rule_and_bad_settings() {
        let task = CartPoleTask::default();
        let up = vec![0.0; 4 * 600];
        assert!(task.success(&up, false));
        assert!(!task.success(&up, true), "terminated");
        assert!(!task.success(&up[..4 * 400], false), "shorter than the window");
        let mut late_fall = up.clone();
        late_fall[4 * 599 + 2] = 0.3;
        assert!(!task.success(&late_fall, false));
        assert!(run_task(&task, &config(0, 10), &TaskPlanner::True, &mut |_, _| {}).is_err());
        let long = TaskConfig { horizon: Some(0), ..config(1, 10) };
        assert!(run_task(&task, &long, &TaskPlanner::True, &mut |_, _| {}).is_err());
        assert!(builtin_task("Pendulum-v1").is_err() && builtin_task("CartPoleSwingUp-v0").is_ok());
        let big = builtin_task("CartPoleSwingUpBigPole-v0").unwrap();
        assert_eq!(big.system().id(), "CartPoleSwingUpBigPole-v0");
        let ghost = builtin_task("CartPoleSwingUpBigPoleGhost-v0").unwrap();
        assert_eq!(ghost.system().id(), "CartPoleSwingUpBigPoleGhost-v0");
    }
}
