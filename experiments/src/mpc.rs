//! `ekvae mpc`: the command line of the swing-up ([`ekvae_pipeline::swingup`]) and its
//! writers.
//!
//! Writes into `--out DIR`:
//! - `steps.csv`: one row per step, `episode,t,theta,theta_dot,u,reward,plan_ms,iterations`
//!   (θ, θ̇ are the state *before* action `u` at step `t`; `reward` is that action's reward);
//! - with `--select-horizon`, `selection.csv`: `horizon,seed,episodes,success_rate,mean_return,
//!   std_return,chosen`, one row per candidate scored on the selection starts;
//! - `summary.json`: the resolved settings, `mean_return`, `success_rate`,
//!   `near_upright_fraction`, `plan_ms_median`, `plan_ms_p95`, one entry per episode and the
//!   commit the binary was built from;
//! - `trajectories.png`: θ(t) (wrapped), θ̇(t), u(t) of every episode;
//! - `swingup.gif`: an animation of one swing-up (the successful episode that started
//!   farthest from upright, else episode 0), one frame per step at the real 50 ms per step;
//! - with a learned model (`--run DIR`) also `belief.gif`: the same episode's true frames
//!   side by side with the frames the decoder draws from the filter's belief (`H z`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use ekvae_envs::render::render;
use ekvae_pipeline::control::{Jacobians, LatentCostWeights};
use ekvae_pipeline::select::{HorizonScore, Selection, check_selection, select_horizon};
use ekvae_pipeline::swingup::{
    DEFAULT_STEPS, LatentCostKind, LearnedPlanner, Planner, StepRow, SwingUp, SwingUpConfig,
    run_swingup,
};
use ekvae_pipeline::task::{TaskConfig, TaskPlanner, TaskRun, builtin_task, run_task};
use ekvae_planner::WarmStart;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::figures::{animate, side_by_side, trajectories, upscale};

fn parse_start(s: &str) -> std::result::Result<[f64; 2], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [th, thd] = parts.as_slice() else {
        return Err(format!("expected THETA,THETADOT (two numbers, e.g. 3.14159,0), got `{s}`"));
    };
    let parse = |v: &str, what: &str| {
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("{what} `{v}` is not a finite number (expected THETA,THETADOT)"))
    };
    let (th, thd) = (parse(th, "THETA")?, parse(thd, "THETADOT")?);
    if thd.abs() > 8.0 {
        return Err(format!("THETADOT {thd} is outside the pendulum's speed limit [-8, 8]"));
    }
    Ok([th, thd])
}

/// Which Jacobians iLQR gets on a learned model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JacobiansArg {
    /// The exact derivatives of the transition mean, including the mixing weights'.
    Exact,
    /// F(z,u), B(z,u): the locally-linear model as its own linearisation.
    Local,
}

impl From<JacobiansArg> for Jacobians {
    fn from(j: JacobiansArg) -> Self {
        match j {
            JacobiansArg::Exact => Jacobians::Exact,
            JacobiansArg::Local => Jacobians::Local,
        }
    }
}

/// How the previous step's plan starts the next solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WarmStartArg {
    /// The previous controls shifted by a step, rolled out open loop.
    Controls,
    /// The previous plan shifted by a step with its feedback gains, rolled out closed loop
    /// from the new state.
    Feedback,
}

impl From<WarmStartArg> for WarmStart {
    fn from(w: WarmStartArg) -> Self {
        match w {
            WarmStartArg::Controls => WarmStart::Controls,
            WarmStartArg::Feedback => WarmStart::Feedback,
        }
    }
}

/// Which cost MPC plans on with a learned model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CostArg {
    /// |z − z_goal|² around the latent of rendered upright frames.
    Goal,
    /// A quadratic cost fitted to the recorded rewards of the training data.
    Reward,
}

/// Swing the pendulum (or another registered system) up with iLQR-MPC and score it on the
/// environment.
#[derive(Debug, Args)]
pub struct MpcArgs {
    /// The environment: `Pendulum-v1`, `CartPoleSwingUp-v0`, `CartPoleSwingUpBigPole-v0` or
    /// `CartPoleSwingUpBigPoleGhost-v0` [default: the run's, else Pendulum-v1]. The cart-pole
    /// writes `steps.csv`, `summary.json` and `swingup.gif`.
    #[arg(long)]
    pub env: Option<String>,
    /// Plan on the trained model in this run directory (in its latent space, from rendered
    /// frames, e.g. results/pixmpc-model); without it, on the exact pendulum physics.
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// Number of episodes.
    #[arg(long, default_value_t = 20)]
    pub episodes: usize,
    /// Seed of the random starting states (Gymnasium's reset distribution) and the planner's random starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Planning horizon in steps of the environment's time step [default: the pendulum's 40
    /// (2 s) on the true model and 30 on a learned one, whose open-loop predictions drift over
    /// long horizons; the cart-pole's 30 (3 s), and 10 on a learned model of
    /// `CartPoleSwingUpBigPoleGhost-v0`].
    #[arg(long)]
    pub horizon: Option<usize>,
    /// Choose the planning horizon among these (e.g. `8,9,10,12`) before the evaluation: each
    /// plans --select-episodes episodes from the starts of --select-seed, and the one with the
    /// highest success rate (then the highest mean return, then the shortest) plans the
    /// evaluation's episodes. Writes `selection.csv`; the summary's horizon is the chosen one.
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "horizon",
        requires = "select_seed",
        value_name = "H,H"
    )]
    pub select_horizon: Option<Vec<usize>>,
    /// With --select-horizon: the seed of the selection starts. Their seeds (this …
    /// this + --select-episodes − 1) must not overlap the evaluation's (--seed …).
    #[arg(long, requires = "select_horizon")]
    pub select_seed: Option<u64>,
    /// With --select-horizon: episodes per candidate [default: --episodes].
    #[arg(long, requires = "select_horizon")]
    pub select_episodes: Option<usize>,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Start every episode from this state instead of a random one, e.g. `--start 3.14159,0` (hanging at rest).
    #[arg(long, value_parser = parse_start, allow_hyphen_values = true)]
    pub start: Option<[f64; 2]>,
    /// iLQR iterations per control step (warm-started from the shifted previous plan).
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
    /// Re-plan from multiple starts every this many steps; 0 = only at the first step.
    #[arg(long, default_value_t = 10)]
    pub replan_every: usize,
    /// iLQR iterations per start when multi-starting.
    #[arg(long, default_value_t = 50)]
    pub multistart_iterations: usize,
    /// Random control sequences per multi-start (besides zeros and ±2 constants).
    #[arg(long, default_value_t = 2)]
    pub random_starts: usize,
    /// Skip the extra multi-start candidate planned over half the horizon.
    #[arg(long)]
    pub no_short_horizon_start: bool,
    /// How the previous step's plan starts the next solve: its controls shifted by a step
    /// (open loop), or the plan with its feedback gains rolled out from the new state (closed
    /// loop; robust when the state differs from the prediction, as with noise or a filter).
    /// [default: feedback on the true model, controls on a learned one, where feedback was
    /// measured no better].
    #[arg(long, value_enum)]
    pub warm_start: Option<WarmStartArg>,
    /// Weight of the terminal cost relative to one running step's state cost.
    #[arg(long, default_value_t = 1.0)]
    pub terminal_weight: f64,
    /// Steps per episode [default: the environment's time limit: 200 for the pendulum, 1000
    /// for the cart-pole].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Side of the animation frames in pixels.
    #[arg(long, default_value_t = 64)]
    pub gif_size: usize,
    /// Learned model: Jacobians of the latent transition given to iLQR.
    #[arg(long, value_enum, default_value_t = JacobiansArg::Exact)]
    pub jacobians: JacobiansArg,
    /// Learned model: weight of |z − z_goal|² per step in the latent cost [default: 1].
    #[arg(long)]
    pub state_weight: Option<f64>,
    /// Learned model: weight of u² per step in the latent cost [default: 0.01].
    #[arg(long)]
    pub control_weight: Option<f64>,
    /// Learned model: upright frames filtered (zero torque) to find the goal latent.
    #[arg(long, default_value_t = 20)]
    pub goal_steps: usize,
    /// Learned model: the cost planned on. `goal`: |z − z_goal|² around the latent of rendered
    /// upright frames (--state-weight, --control-weight, --goal-steps); `reward`: a quadratic
    /// cost fitted to the recorded rewards of the run's training data (no true state, no
    /// upright frame; see --reward-data)
    #[arg(long, value_enum, default_value_t = CostArg::Goal)]
    pub cost: CostArg,
    /// Learned model with --cost reward: the dataset whose rewards the cost is fitted to
    /// [default: the run's training data, as its config.toml records it]
    #[arg(long)]
    pub reward_data: Option<PathBuf>,
    /// Also write the episodes as a dataset (.npz) of the environment, on-policy data to train
    /// on (e.g. merged with random-action data by `ekvae merge`): each episode cut into windows
    /// of --record-steps, frames rendered at the run's image size (--record-size without a run).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// With --record: steps per recorded episode (each controlled episode gives
    /// ⌊steps / this⌋ of them).
    #[arg(long, default_value_t = 100, requires = "record")]
    pub record_steps: usize,
    /// With --record: side of the recorded frames [default: the run's image size].
    #[arg(long, requires = "record")]
    pub record_size: Option<usize>,
    /// Standard deviation of Gaussian noise added to each planned action before it is applied
    /// (clipped to the action bounds; the pendulum's torque in N·m, the cart-pole's action in
    /// units of its bound 1), for exploration when recording; scored as applied.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub action_noise: f64,
    /// No progress bar (the result line is still printed).
    #[arg(long)]
    pub quiet: bool,
}

impl MpcArgs {
    /// The library's settings.
    pub fn config(&self) -> SwingUpConfig {
        SwingUpConfig {
            episodes: self.episodes,
            seed: self.seed,
            steps: self.steps.unwrap_or(DEFAULT_STEPS),
            start: self.start,
            horizon: self.horizon,
            iterations: self.iterations,
            replan_every: self.replan_every,
            multistart_iterations: self.multistart_iterations,
            random_starts: self.random_starts,
            short_horizon_start: !self.no_short_horizon_start,
            warm_start: self.warm_start.map(Into::into),
            terminal_weight: self.terminal_weight,
            action_noise: self.action_noise,
        }
    }

    /// The learned model's cost flags agree with `--cost`: the goal cost's weights are not
    /// given with `--cost reward`, nor `--reward-data` with `--cost goal`.
    fn check_cost_flags(&self) -> Result<()> {
        if self.cost == CostArg::Reward
            && (self.state_weight.is_some() || self.control_weight.is_some())
        {
            bail!(
                "--state-weight and --control-weight set the goal cost; --cost reward takes its weights from the fitted rewards (drop them, or use --cost goal)"
            );
        }
        if self.cost == CostArg::Goal && self.reward_data.is_some() {
            bail!("--reward-data is for --cost reward");
        }
        Ok(())
    }

    /// The planner, with the flags' checks.
    pub fn planner(&self) -> Result<Planner> {
        match &self.run {
            None => {
                if self.state_weight.is_some() || self.control_weight.is_some() {
                    bail!(
                        "--state-weight and --control-weight set the latent cost of a learned model (--run DIR); the true model plans on the Pendulum-v1 cost (see --terminal-weight)"
                    );
                }
                Ok(Planner::True)
            }
            Some(dir) => {
                let d = LatentCostWeights::default();
                self.check_cost_flags()?;
                Ok(Planner::Learned(LearnedPlanner {
                    run: dir.clone(),
                    jacobians: self.jacobians.into(),
                    state_weight: self.state_weight.unwrap_or(d.state),
                    control_weight: self.control_weight.unwrap_or(d.control),
                    goal_steps: self.goal_steps,
                    cost: match self.cost {
                        CostArg::Goal => LatentCostKind::Goal,
                        CostArg::Reward => LatentCostKind::Reward,
                    },
                    reward_data: self.reward_data.clone(),
                }))
            }
        }
    }
}

/// Creates the output folder and the episodes' progress bar (hidden with --quiet).
fn output_and_bar(args: &MpcArgs) -> Result<ProgressBar> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory {}", args.out.display()))?;
    let bar = if args.quiet {
        ProgressBar::with_draw_target(Some(args.episodes as u64), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(args.episodes as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("mpc {bar:30} {pos}/{len} episodes, last return {msg}")
            .expect("valid template"),
    );
    Ok(bar)
}

/// The environment `ekvae mpc` controls: `--env`, else the run's, else the pendulum.
pub fn environment(args: &MpcArgs) -> Result<String> {
    let from_run = match &args.run {
        Some(dir) => {
            let run = ekvae_model::rundir::RunDir::new(dir);
            Some(run.open().with_context(|| format!("--run {}", dir.display()))?.0.env)
        }
        None => None,
    };
    Ok(match (&args.env, from_run) {
        (Some(env), _) => env.clone(),
        (None, Some(env)) => env,
        (None, None) => ekvae_model::train::PENDULUM.to_string(),
    })
}

/// `--select-horizon` and its seed and episodes, checked.
struct SelectionFlags {
    candidates: Vec<usize>,
    seed: u64,
    episodes: usize,
}

/// `--select-horizon`'s flags, checked before any episode runs (`None` without the flag).
fn selection_flags(args: &MpcArgs) -> Result<Option<SelectionFlags>> {
    let Some(candidates) = &args.select_horizon else {
        return Ok(None);
    };
    let seed = args.select_seed.context("--select-horizon needs --select-seed")?;
    let episodes = args.select_episodes.unwrap_or(args.episodes);
    check_selection(candidates, seed, episodes, args.seed, args.episodes)?;
    Ok(Some(SelectionFlags { candidates: candidates.clone(), seed, episodes }))
}

/// A selection made, with the starts it was made on.
struct Chosen {
    selection: Selection,
    flags: SelectionFlags,
}

/// Runs the selection of `flags` (if any) with `run(horizon, seed, episodes)` → (success rate,
/// mean return, std of the returns), one line per candidate; `context` names the planner in an
/// error.
fn run_selection(
    flags: Option<SelectionFlags>,
    context: &str,
    run: &mut dyn FnMut(usize, u64, usize) -> ekvae_pipeline::Result<(f64, f64, f64)>,
) -> Result<Option<Chosen>> {
    let Some(flags) = flags else {
        return Ok(None);
    };
    let (seed, episodes) = (flags.seed, flags.episodes);
    let mut score = |horizon| {
        let (success_rate, mean_return, std_return) = run(horizon, seed, episodes)?;
        Ok(HorizonScore { horizon, success_rate, mean_return, std_return })
    };
    let selection = select_horizon(&flags.candidates, &mut score, &mut |s| {
        say!(
            "select horizon {}: {episodes} episodes from seed {seed}, success {:.0}%, mean return {:.2} ± {:.2}",
            s.horizon,
            100.0 * s.success_rate,
            s.mean_return,
            s.std_return
        )
    })
    .with_context(|| format!("{context}: --select-horizon"))?;
    say!("selected horizon {}", selection.horizon);
    Ok(Some(Chosen { selection, flags }))
}

/// One row of `selection.csv`.
#[derive(serde::Serialize)]
struct SelectionRow {
    horizon: usize,
    seed: u64,
    episodes: usize,
    success_rate: f64,
    mean_return: f64,
    std_return: f64,
    chosen: bool,
}

/// Writes `selection.csv` into `out` (with a selection): one row per candidate, the chosen one
/// marked.
fn write_selection(out: &Path, chosen: Option<&Chosen>) -> Result<()> {
    let Some(Chosen { selection, flags }) = chosen else {
        return Ok(());
    };
    let rows: Vec<SelectionRow> = selection
        .scores
        .iter()
        .map(|s| SelectionRow {
            horizon: s.horizon,
            seed: flags.seed,
            episodes: flags.episodes,
            success_rate: s.success_rate,
            mean_return: s.mean_return,
            std_return: s.std_return,
            chosen: s.horizon == selection.horizon,
        })
        .collect();
    crate::writers::write_csv(&out.join("selection.csv"), &rows)
}

/// Checks `--record` before any episode runs: the frames' size (`--record-size`, else the
/// run's image size), `--record-steps`, the memory of `steps` frames per episode, that the file
/// is not the run's training data, and that it can be written. Returns the path and the size.
fn prepare_record(
    args: &MpcArgs,
    steps: usize,
    channels: usize,
) -> Result<Option<(PathBuf, usize)>> {
    let Some(path) = &args.record else {
        return Ok(None);
    };
    let run_config = match &args.run {
        Some(dir) => Some(
            ekvae_model::rundir::RunDir::new(dir)
                .open()
                .with_context(|| format!("--run {}", dir.display()))?
                .0,
        ),
        None => None,
    };
    let size = match (args.record_size, &run_config) {
        (Some(s), _) => s,
        (None, Some(cfg)) => cfg.model.image_size,
        (None, None) => bail!("--record without --run needs --record-size (the frames' side)"),
    };
    if !(ekvae_envs::dataset::MIN_SIZE..=1024).contains(&size) {
        bail!(
            "--record-size {size} is out of range; use {} to 1024",
            ekvae_envs::dataset::MIN_SIZE
        );
    }
    if args.record_steps == 0 {
        bail!("--record-steps must be at least 1");
    }
    let bytes = (args.episodes as u64)
        .checked_mul(steps as u64)
        .and_then(|n| n.checked_mul((size * size * channels) as u64));
    ekvae_envs::fsio::check_memory(
        bytes,
        "the recorded frames (--episodes × steps × --record-size²)",
        "lower --episodes, --steps or --record-size",
    )?;
    if let Some(cfg) = &run_config {
        ekvae_envs::fsio::check_distinct(path, &[Path::new(&cfg.data)])?;
    }
    ekvae_pipeline::collect::prepare_output(path)?;
    Ok(Some((path.clone(), size)))
}

/// Saves the recorded dataset and says so.
fn save_record(data: &ekvae_envs::Dataset, path: &Path, size: usize) -> Result<()> {
    data.save(path).with_context(|| format!("saving {}", path.display()))?;
    say!(
        "recorded {} episodes × {} steps ({}×{} frames) into {}",
        data.episodes,
        data.steps,
        size,
        size,
        path.display()
    );
    Ok(())
}

/// What a failed run names: the run directory, or the true model of `env` (of the pendulum:
/// "true model").
fn planner_context(args: &MpcArgs, env: &str) -> String {
    match &args.run {
        Some(dir) => format!("--run {}", dir.display()),
        None if env == ekvae_model::train::PENDULUM => "true model".into(),
        None => format!("true model of {env}"),
    }
}

/// Runs `ekvae mpc` on a system other than the pendulum ([`ekvae_pipeline::task`]).
pub fn run_task_cli(args: &MpcArgs, env: &str) -> Result<TaskRun> {
    ekvae_envs::Registry::builtin().get(env)?;
    let task = builtin_task(env)?;
    if args.start.is_some() {
        bail!(
            "--start THETA,THETADOT is the pendulum's; {env} episodes start from its own seeded reset"
        );
    }
    if args.run.is_none() && (args.cost != CostArg::Goal || args.reward_data.is_some()) {
        bail!("--cost reward and --reward-data are for a learned model (--run DIR)");
    }
    args.check_cost_flags()?;
    if args.run.is_none() && (args.state_weight.is_some() || args.control_weight.is_some()) {
        bail!(
            "--state-weight and --control-weight set the latent cost of a learned model (--run DIR)"
        );
    }
    let selection = selection_flags(args)?;
    let mut config = TaskConfig {
        episodes: args.episodes,
        seed: args.seed,
        steps: args.steps,
        horizon: args.horizon,
        iterations: args.iterations,
        replan_every: args.replan_every,
        multistart_iterations: args.multistart_iterations,
        random_starts: args.random_starts,
        short_horizon_start: !args.no_short_horizon_start,
        warm_start: args.warm_start.map(Into::into),
        action_noise: args.action_noise,
    };
    // The recording's size and file are checked before any episode runs.
    let steps = args.steps.unwrap_or(task.steps());
    let record = prepare_record(args, steps, task.system().channels())?;
    let planner = match &args.run {
        None => TaskPlanner::True,
        Some(dir) => {
            let d = LatentCostWeights::default();
            TaskPlanner::Learned {
                run: dir.clone(),
                jacobians: args.jacobians.into(),
                weights: LatentCostWeights {
                    state: args.state_weight.unwrap_or(d.state),
                    control: args.control_weight.unwrap_or(d.control),
                    terminal: args.terminal_weight,
                },
                goal_steps: args.goal_steps,
                cost: match args.cost {
                    CostArg::Goal => LatentCostKind::Goal,
                    CostArg::Reward => LatentCostKind::Reward,
                },
                reward_data: args.reward_data.clone(),
            }
        }
    };
    let context = planner_context(args, env);
    let chosen = run_selection(selection, &context, &mut |horizon, seed, episodes| {
        let c = TaskConfig { horizon: Some(horizon), seed, episodes, ..config.clone() };
        let r = run_task(task.as_ref(), &c, &planner, &mut |_, _| {})?;
        Ok((r.success_rate, r.mean_return, r.std_return))
    })?;
    if let Some(c) = &chosen {
        config.horizon = Some(c.selection.horizon);
    }
    let bar = output_and_bar(args)?;
    write_selection(&args.out, chosen.as_ref())?;
    let result = run_task(task.as_ref(), &config, &planner, &mut |_, ret| {
        bar.set_message(format!("{ret:.1}"));
        bar.inc(1);
    })
    .context(context)?;
    bar.finish();
    write_task(&args.out, &result, task.system().as_ref(), args.gif_size)?;
    if let Some((path, size)) = &record {
        let data = ekvae_pipeline::task::record(
            &result,
            task.system().as_ref(),
            *size,
            args.record_steps,
        )?;
        save_record(&data, path, *size)?;
    }
    say!(
        "mpc {env} ({}): {} episodes, mean return {:.2} ± {:.2}, success {:.0}%, plan ms median {:.4} p95 {:.4} max {:.3}; wrote {}",
        result.model,
        args.episodes,
        result.mean_return,
        result.std_return,
        100.0 * result.success_rate,
        result.plan_ms_median,
        result.plan_ms_p95,
        result.plan_ms_max,
        args.out.display()
    );
    Ok(result)
}

/// Writes `steps.csv` (`episode,t,` the state by name, `u0…,reward,plan_ms,iterations`),
/// `summary.json` and `swingup.gif` (the first successful episode, else episode 0) into `out`.
pub fn write_task(
    out: &Path,
    result: &TaskRun,
    system: &dyn ekvae_envs::System,
    gif_size: usize,
) -> Result<()> {
    let m = result.steps.first().map_or(0, |s| s.u.len());
    let mut header = vec!["episode".to_string(), "t".to_string()];
    header.extend(result.state_names.iter().cloned());
    header.extend((0..m).map(|i| format!("u{i}")));
    header.extend(["reward", "plan_ms", "iterations"].map(String::from));
    let rows: Vec<Vec<String>> = result
        .steps
        .iter()
        .map(|s| {
            let mut r = vec![s.episode.to_string(), s.t.to_string()];
            r.extend(s.state.iter().map(|v| v.to_string()));
            r.extend(s.u.iter().map(|v| v.to_string()));
            r.extend([s.reward.to_string(), s.plan_ms.to_string(), s.iterations.to_string()]);
            r
        })
        .collect();
    crate::writers::write_csv_rows(&out.join("steps.csv"), &header, &rows)?;
    crate::writers::write_json(&out.join("summary.json"), result)?;
    let shown = result.episodes.iter().find(|e| e.success).map_or(0, |e| e.episode);
    let size = gif_size;
    animate(
        &out.join("swingup.gif"),
        (size, size),
        result.steps.iter().filter(|s| s.episode == shown).map(|s| {
            let mut frame = vec![0; size * size];
            system.render_into(&s.state, size, &mut frame);
            Ok(frame)
        }),
    )?;
    Ok(())
}

/// Runs `ekvae mpc`; returns the result (the demo reads its figures).
pub fn run(args: MpcArgs) -> Result<SwingUp> {
    if !(16..=1024).contains(&args.gif_size) {
        bail!("--gif-size {} is out of range; use 16 to 1024", args.gif_size);
    }
    let env = environment(&args)?;
    if env != ekvae_model::train::PENDULUM {
        bail!(
            "this is the pendulum's swing-up; {env} is controlled by run_task_cli (as `ekvae mpc --env {env}` does)"
        );
    }
    let mut config = args.config();
    // Everything is checked before the output folder is made.
    config.check()?;
    let planner = args.planner()?;
    let selection = selection_flags(&args)?;
    let record = prepare_record(&args, config.steps, 1)?;
    let context = planner_context(&args, &env);
    let chosen = run_selection(selection, &context, &mut |horizon, seed, episodes| {
        let c = SwingUpConfig { horizon: Some(horizon), seed, episodes, ..config.clone() };
        let r = run_swingup(&c, &planner, &mut |_, _| {})?;
        Ok((r.success_rate, r.mean_return, r.std_return))
    })?;
    if let Some(c) = &chosen {
        config.horizon = Some(c.selection.horizon);
    }
    let bar = output_and_bar(&args)?;
    write_selection(&args.out, chosen.as_ref())?;
    let result = run_swingup(&config, &planner, &mut |_, ret| {
        bar.set_message(format!("{ret:.1}"));
        bar.inc(1);
    })
    .context(context)?;
    bar.finish();
    write_swingup(&args.out, &result, args.gif_size)?;
    if let Some((path, size)) = &record {
        let data = ekvae_pipeline::swingup::record(&result, *size, args.record_steps)?;
        save_record(&data, path, *size)?;
    }
    say!(
        "mpc ({}): {} episodes, mean return {:.2} ± {:.2}, success {:.0}%, near-upright {:.1}%, plan ms median {:.4} p95 {:.4} max {:.3}; wrote {}",
        result.settings.model,
        args.episodes,
        result.mean_return,
        result.std_return,
        100.0 * result.success_rate,
        100.0 * result.near_upright_fraction,
        result.plan_ms_median,
        result.plan_ms_p95,
        result.plan_ms_max,
        args.out.display()
    );
    Ok(result)
}

/// Writes `steps.csv`, `summary.json`, `trajectories.png`, `swingup.gif` and, for a learned
/// model, `belief.gif` into `out`.
pub fn write_swingup(out: &Path, result: &SwingUp, gif_size: usize) -> Result<()> {
    crate::writers::write_csv(&out.join("steps.csv"), &result.steps)?;
    crate::writers::write_json(&out.join("summary.json"), result)?;
    let episodes = result.episodes.len();
    let steps = result.settings.steps;
    trajectories(&out.join("trajectories.png"), &result.steps, episodes, steps)?;
    let shown: Vec<&StepRow> =
        result.steps.iter().filter(|r| r.episode == result.shown_episode).collect();
    let size = gif_size;
    animate(
        &out.join("swingup.gif"),
        (size, size),
        shown.iter().map(|r| Ok(render(r.theta, size))),
    )?;
    if !result.belief_frames.is_empty() {
        let s = result.belief_frame_size;
        animate(
            &out.join("belief.gif"),
            (2 * size + crate::figures::BELIEF_GAP, size),
            shown.iter().zip(&result.belief_frames).map(|(r, decoded)| {
                Ok(side_by_side(&render(r.theta, size), &upscale(decoded, s, size), size))
            }),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start() {
        assert_eq!(parse_start("3.25, 0").unwrap(), [3.25, 0.0]);
        assert_eq!(parse_start("-1,-0.5").unwrap(), [-1.0, -0.5]);
        assert!(parse_start("1").is_err());
        assert!(parse_start("1,2,3").is_err());
        assert!(parse_start("a,0").is_err());
        assert!(parse_start("0,NaN").is_err());
        assert!(parse_start("0,9").is_err());
    }
}
