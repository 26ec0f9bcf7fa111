//! `ekvae mpc`: receding-horizon iLQR swing-up on the pendulum, scored on the true environment.
//!
//! Writes into `--out DIR`:
//! - `steps.csv`: one row per step, `episode,t,theta,theta_dot,u,reward,plan_ms,iterations`
//!   (θ, θ̇ are the state *before* action `u` at step `t`; `reward` is that action's reward);
//! - `summary.json`: the resolved settings, `mean_return`, `success_rate`,
//!   `near_upright_fraction`, `plan_ms_median`, `plan_ms_p95` and one entry per episode;
//! - `trajectories.png`: θ(t) (wrapped), θ̇(t), u(t) of every episode;
//! - `swingup.gif`: an animation of one swing-up (the successful episode that started
//!   farthest from upright, else episode 0), one frame per step at the real 50 ms per step;
//! - with a learned model (`--model RUN_DIR`) also `belief.gif`: the same episode's true
//!   frames side by side with the frames the decoder draws from the filter's belief (`H z`).
//!
//! The episode loop, CSV, summary, plots and animations are shared by both models: the true
//! model plans on the state, a learned one ([`crate::learned`]) on the latent its filter
//! estimates from the rendered frames; both are a [`Controller`].
//!
//! Success: |angle_normalize(θ)| < 0.3 rad at each of the last 50 steps. Near-upright
//! fraction: the share of steps with |angle_normalize(θ)| < π/6.

use anyhow::{Context, Result, bail};
use clap::Args;
use ekvae_envs::pendulum::{Pendulum, angle_normalize};
use ekvae_envs::render::render;
use ekvae_envs::{Env, ResetTo};
use ekvae_planner::{
    ControlBounds, Cost, Dynamics, ExactState, Mpc, MpcAgent, MpcConfig, MpcStep, PendulumCost,
    TruePendulum,
};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use serde::Serialize;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

/// Steps per episode (`Pendulum-v1`'s time limit).
const DEFAULT_STEPS: usize = 200;
/// Success: |θ| < this at each of the last `SUCCESS_WINDOW` steps.
const SUCCESS_ANGLE: f64 = 0.3;
const SUCCESS_WINDOW: usize = 50;
/// Near-upright: |θ| < π/6.
const NEAR_UPRIGHT: f64 = PI / 6.0;

/// Which dynamics the planner uses.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// The exact pendulum physics (`--model true`).
    True,
    /// A trained EKVAE run directory (learned-model MPC).
    Run(PathBuf),
}

impl FromStr for ModelSource {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "true" => Ok(Self::True),
            "" => Err("empty model: use `true` or a trained run directory".into()),
            path => Ok(Self::Run(PathBuf::from(path))),
        }
    }
}

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

/// Swing the pendulum up with iLQR-MPC and score it on the environment.
#[derive(Debug, Args)]
pub struct MpcArgs {
    /// Dynamics to plan with: `true` (exact pendulum physics) or a run directory of `ekvae train`
    /// (plan in its latent space from rendered frames, e.g. results/pixmpc-model).
    #[arg(long, default_value = "true")]
    pub model: ModelSource,
    /// Number of episodes.
    #[arg(long, default_value_t = 20)]
    pub episodes: usize,
    /// Seed of the random starting states (Gymnasium's reset distribution) and the planner's random starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Planning horizon in steps (50 ms each) [default: 40 for `--model true`, 30 for a learned
    /// model, whose open-loop predictions drift over long horizons].
    #[arg(long)]
    pub horizon: Option<usize>,
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
    /// Skip the extra multi-start candidate planned over half the horizon (see `MpcConfig::short_horizon_start`).
    #[arg(long)]
    pub no_short_horizon_start: bool,
    /// Weight of the terminal cost relative to one running step's state cost.
    #[arg(long, default_value_t = 1.0)]
    pub terminal_weight: f64,
    /// Steps per episode.
    #[arg(long, default_value_t = DEFAULT_STEPS)]
    pub steps: usize,
    /// Side of the animation frames in pixels.
    #[arg(long, default_value_t = 64)]
    pub gif_size: usize,
    /// Learned model: Jacobians of the latent transition given to iLQR (`exact`: including
    /// the mixing weights' derivative; `local`: F(z,u), B(z,u), the locally-linear model as
    /// its own linearisation).
    #[arg(long, value_enum, default_value_t = crate::learned::Jacobians::Exact)]
    pub jacobians: crate::learned::Jacobians,
    /// Learned model: weight of |z − z_goal|² per step in the latent cost [default: 1].
    #[arg(long)]
    pub state_weight: Option<f64>,
    /// Learned model: weight of u² per step in the latent cost [default: 0.01].
    #[arg(long)]
    pub control_weight: Option<f64>,
    /// Learned model: upright frames filtered (zero torque) to find the goal latent.
    #[arg(long, default_value_t = 20)]
    pub goal_steps: usize,
}

/// The resolved settings, saved in `summary.json`.
#[derive(Debug, Serialize)]
struct Settings {
    model: String,
    episodes: usize,
    seed: u64,
    steps: usize,
    start: Option<[f64; 2]>,
    /// The planning cost's settings (pendulum or latent).
    cost: serde_json::Value,
    /// What else defines the controller (for a learned model: checkpoint, goal, Jacobians).
    #[serde(skip_serializing_if = "Option::is_none")]
    controller: Option<serde_json::Value>,
    mpc: MpcConfig,
}

/// What the episode loop drives: plans a control from the environment's state (the true
/// model uses it directly; a learned model renders it and filters the frame).
pub trait Controller {
    /// Starts a new episode.
    fn reset(&mut self);
    /// The step planned for the environment in `state` = [θ, θ̇].
    fn act(&mut self, state: [f64; 2]) -> ekvae_planner::Result<MpcStep>;
}

impl<D: Dynamics, C: Cost> Controller for MpcAgent<ExactState, D, C> {
    fn reset(&mut self) {
        MpcAgent::reset(self);
    }
    fn act(&mut self, state: [f64; 2]) -> ekvae_planner::Result<MpcStep> {
        MpcAgent::act(self, &state)
    }
}

/// A learned model's extras for the report: its name, the planning cost's and controller's
/// settings, and the decoder that draws a frame from a belief state.
pub struct Report<'a> {
    /// The model as given on the command line.
    pub model: String,
    /// The cost settings for `summary.json`.
    pub cost: serde_json::Value,
    /// Further controller settings for `summary.json`.
    pub controller: Option<serde_json::Value>,
    /// Draws the model's frame (side `belief_frame_size`) of a planner state, for `belief.gif`.
    pub decode: Option<&'a dyn Fn(&[f64]) -> Result<Vec<u8>>>,
    /// Side of the decoded frames.
    pub belief_frame_size: usize,
}

/// One step of one episode (a CSV row).
#[derive(Debug, Clone, Serialize)]
struct StepRow {
    episode: usize,
    t: usize,
    theta: f64,
    theta_dot: f64,
    u: f64,
    reward: f64,
    plan_ms: f64,
    iterations: usize,
}

#[derive(Debug, Serialize)]
struct EpisodeSummary {
    episode: usize,
    start: [f64; 2],
    #[serde(rename = "return")]
    ret: f64,
    success: bool,
    near_upright_fraction: f64,
    /// First step whose |θ| < 0.1, if any.
    first_upright_step: Option<usize>,
    plan_ms_median: f64,
    plan_ms_max: f64,
}

#[derive(Debug, Serialize)]
struct Summary {
    settings: Settings,
    mean_return: f64,
    std_return: f64,
    success_rate: f64,
    near_upright_fraction: f64,
    plan_ms_median: f64,
    plan_ms_p95: f64,
    plan_ms_max: f64,
    episodes: Vec<EpisodeSummary>,
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

/// The checks shared by both models; errors name the flag.
fn check_args(args: &MpcArgs) -> Result<()> {
    if args.episodes == 0 {
        bail!("--episodes must be at least 1");
    }
    if args.steps < SUCCESS_WINDOW {
        bail!(
            "--steps {} is shorter than the {SUCCESS_WINDOW}-step success window; use at least {SUCCESS_WINDOW}",
            args.steps
        );
    }
    if !(16..=1024).contains(&args.gif_size) {
        bail!("--gif-size {} is out of range; use 16 to 1024", args.gif_size);
    }
    if let Some(h) = args.horizon
        && !(1..=MAX_HORIZON).contains(&h)
    {
        bail!(
            "--horizon {h} is out of range; use 1 to {MAX_HORIZON} steps (every control step solves an iLQR problem of that length)"
        );
    }
    // The per-step rows and beliefs are kept for the CSV, the plots and the animations.
    let per_step = std::mem::size_of::<StepRow>() as u64 + 8 * 8;
    let bytes =
        (args.episodes as u64).checked_mul(args.steps as u64).and_then(|n| n.checked_mul(per_step));
    ekvae_envs::fsio::check_memory(bytes, "--episodes × --steps", "lower --episodes or --steps")?;
    Ok(())
}

/// The longest planning horizon `--horizon` accepts.
pub const MAX_HORIZON: usize = 1000;

/// Default horizon of the true-model MPC.
pub const TRUE_HORIZON: usize = 40;
/// Default horizon of the learned-model MPC.
pub const LEARNED_HORIZON: usize = 30;

/// The MPC settings from the flags, with the pendulum's torque limits; `default_horizon`
/// applies when `--horizon` is not given.
pub fn mpc_config(args: &MpcArgs, default_horizon: usize) -> MpcConfig {
    let (lower, upper) = TruePendulum::default().control_limits();
    let mut mpc_cfg = MpcConfig::with_bounds(ControlBounds { lower, upper });
    mpc_cfg.horizon = args.horizon.unwrap_or(default_horizon);
    mpc_cfg.iterations_per_step = args.iterations;
    mpc_cfg.replan_every = (args.replan_every > 0).then_some(args.replan_every);
    mpc_cfg.multistart_iterations = args.multistart_iterations;
    mpc_cfg.random_starts = args.random_starts;
    mpc_cfg.short_horizon_start = !args.no_short_horizon_start;
    mpc_cfg.seed = args.seed;
    mpc_cfg
}

/// Runs `ekvae mpc`.
pub fn run(args: MpcArgs) -> Result<()> {
    check_args(&args)?;
    let dir = match &args.model {
        ModelSource::True => None,
        ModelSource::Run(dir) => Some(dir.clone()),
    };
    if let Some(dir) = dir {
        crate::learned::run_mpc(&args, &dir).map(|_| ())
    } else {
        if args.state_weight.is_some() || args.control_weight.is_some() {
            bail!(
                "--state-weight and --control-weight set the latent cost of a learned model; --model true plans on the Pendulum-v1 cost (see --terminal-weight)"
            );
        }
        let mpc_cfg = mpc_config(&args, TRUE_HORIZON);
        let cost = PendulumCost { w_final: args.terminal_weight, ..PendulumCost::default() };
        cost.check().context("--terminal-weight")?;
        let mpc = Mpc::new(TruePendulum::default(), cost, mpc_cfg.clone())
            .context("invalid MPC settings (check --horizon and the iteration options)")?;
        let mut agent = MpcAgent::new(ExactState, mpc);
        let report = Report {
            model: "true".into(),
            cost: serde_json::json!({
                "w_theta": cost.w_theta,
                "w_theta_dot": cost.w_theta_dot,
                "w_u": cost.w_u,
                "w_final": cost.w_final,
            }),
            controller: None,
            decode: None,
            belief_frame_size: 0,
        };
        execute(&args, mpc_cfg, &mut agent, &report).map(|_| ())
    }
}

/// The headline figures of a finished `ekvae mpc` run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Mean Pendulum-v1 return.
    pub mean_return: f64,
    /// Share of successful episodes.
    pub success_rate: f64,
    /// Share of steps within π/6 of upright.
    pub near_upright_fraction: f64,
    /// Median and 95th percentile of the per-step controller time (ms).
    pub plan_ms_median: f64,
    /// 95th percentile of the per-step controller time (ms).
    pub plan_ms_p95: f64,
}

/// Runs the episodes with `controller` and writes the CSV, summary, plots and animations.
/// `plan_ms` is the controller's whole time per step (for a learned model: rendering,
/// encoding, filtering and planning).
pub fn execute(
    args: &MpcArgs,
    mpc_cfg: MpcConfig,
    controller: &mut dyn Controller,
    report: &Report<'_>,
) -> Result<Outcome> {
    check_args(args)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory {}", args.out.display()))?;

    let bar = ProgressBar::new(args.episodes as u64);
    bar.set_style(
        ProgressStyle::with_template("mpc {bar:30} {pos}/{len} episodes, last return {msg}")
            .expect("valid template"),
    );
    let mut env = Environment::new(args.seed);
    let mut rows: Vec<StepRow> = Vec::with_capacity(args.episodes * args.steps);
    let mut beliefs: Vec<Vec<f64>> = Vec::with_capacity(args.episodes * args.steps);
    let mut episodes = Vec::with_capacity(args.episodes);
    for ep in 0..args.episodes {
        let start = env.reset(args.start);
        controller.reset();
        let mut ret = 0.0;
        let first_row = rows.len();
        for t in 0..args.steps {
            let x = env.state();
            let t0 = Instant::now();
            let plan = controller
                .act(x)
                .with_context(|| format!("planning failed at episode {ep}, step {t}"))?;
            let plan_ms = t0.elapsed().as_secs_f64() * 1e3;
            let reward = env.step(plan.u[0]);
            ret += reward;
            rows.push(StepRow {
                episode: ep,
                t,
                theta: x[0],
                theta_dot: x[1],
                u: plan.u[0],
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
        bar.set_message(format!("{ret:.1}"));
        bar.inc(1);
    }
    bar.finish();

    let n = episodes.len() as f64;
    let mean_return = episodes.iter().map(|e| e.ret).sum::<f64>() / n;
    let std_return =
        (episodes.iter().map(|e| (e.ret - mean_return).powi(2)).sum::<f64>() / n).sqrt();
    let times = sorted(rows.iter().map(|r| r.plan_ms));
    let summary = Summary {
        settings: Settings {
            model: report.model.clone(),
            episodes: args.episodes,
            seed: args.seed,
            steps: args.steps,
            start: args.start,
            cost: report.cost.clone(),
            controller: report.controller.clone(),
            mpc: mpc_cfg,
        },
        mean_return,
        std_return,
        success_rate: episodes.iter().filter(|e| e.success).count() as f64 / n,
        near_upright_fraction: episodes.iter().map(|e| e.near_upright_fraction).sum::<f64>() / n,
        plan_ms_median: quantile(&times, 0.5),
        plan_ms_p95: quantile(&times, 0.95),
        plan_ms_max: *times.last().expect("rows non-empty"),
        episodes,
    };

    write_csv(&args.out.join("steps.csv"), &rows)?;
    let json = serde_json::to_string_pretty(&summary).context("serialising the summary")?;
    ekvae_model::train::write_atomic(&args.out.join("summary.json"), json.as_bytes())?;
    plot_trajectories(&args.out.join("trajectories.png"), &rows, args.episodes, args.steps)?;
    let shown = summary
        .episodes
        .iter()
        .filter(|e| e.success)
        .max_by(|a, b| {
            angle_normalize(a.start[0]).abs().total_cmp(&angle_normalize(b.start[0]).abs())
        })
        .map_or(0, |e| e.episode);
    let thetas: Vec<f64> = rows.iter().filter(|r| r.episode == shown).map(|r| r.theta).collect();
    let size = args.gif_size;
    animate(
        &args.out.join("swingup.gif"),
        (size, size),
        thetas.iter().map(|th| Ok(render(*th, size))),
    )?;
    if let Some(decode) = report.decode {
        let shown_beliefs = rows.iter().zip(&beliefs).filter(|(r, _)| r.episode == shown);
        let s = report.belief_frame_size;
        animate(
            &args.out.join("belief.gif"),
            (2 * size + BELIEF_GAP, size),
            shown_beliefs.map(|(r, z)| {
                let decoded = decode(z)?;
                Ok(side_by_side(&render(r.theta, size), &upscale(&decoded, s, size), size))
            }),
        )?;
    }

    say!(
        "mpc ({}): {} episodes, mean return {:.2} ± {:.2}, success {:.0}%, near-upright {:.1}%, plan ms median {:.4} p95 {:.4} max {:.3}; wrote {}",
        report.model,
        args.episodes,
        summary.mean_return,
        summary.std_return,
        100.0 * summary.success_rate,
        100.0 * summary.near_upright_fraction,
        summary.plan_ms_median,
        summary.plan_ms_p95,
        summary.plan_ms_max,
        args.out.display()
    );
    Ok(Outcome {
        mean_return: summary.mean_return,
        success_rate: summary.success_rate,
        near_upright_fraction: summary.near_upright_fraction,
        plan_ms_median: summary.plan_ms_median,
        plan_ms_p95: summary.plan_ms_p95,
    })
}

/// Pixels between the two halves of `belief.gif` (drawn mid-gray).
const BELIEF_GAP: usize = 2;

/// Nearest-neighbour resize of a square `from × from` frame to `to × to`.
fn upscale(frame: &[u8], from: usize, to: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(to * to);
    for y in 0..to {
        let sy = y * from / to;
        for x in 0..to {
            out.push(frame[sy * from + x * from / to]);
        }
    }
    out
}

/// Two `size × size` frames next to each other with a gray gap: `[size, 2·size + gap]`.
fn side_by_side(left: &[u8], right: &[u8], size: usize) -> Vec<u8> {
    let width = 2 * size + BELIEF_GAP;
    let mut out = Vec::with_capacity(width * size);
    for y in 0..size {
        out.extend_from_slice(&left[y * size..(y + 1) * size]);
        out.extend(std::iter::repeat_n(128u8, BELIEF_GAP));
        out.extend_from_slice(&right[y * size..(y + 1) * size]);
    }
    out
}

fn write_csv(path: &Path, rows: &[StepRow]) -> Result<()> {
    ekvae_envs::dataset::write_atomic(path, |out| {
        let mut w = csv::Writer::from_writer(out);
        for r in rows {
            w.serialize(r).map_err(std::io::Error::other)?;
        }
        w.flush()
    })
    .map_err(anyhow::Error::from)
}

/// One plot panel: axis label, y range, the plotted quantity of a row, and whether it is a
/// wrapped angle (lines break where it jumps between ±π).
type Panel = (&'static str, f64, f64, fn(&StepRow) -> f64, bool);

fn plot_trajectories(path: &Path, rows: &[StepRow], episodes: usize, steps: usize) -> Result<()> {
    crate::figures::bitmap(path, (900, 900), |root| {
        let panels = root.split_evenly((3, 1));
        let series: [Panel; 3] = [
            ("θ (wrapped, rad)", -PI, PI, |r| angle_normalize(r.theta), true),
            ("θ̇ (rad/s)", -8.0, 8.0, |r| r.theta_dot, false),
            ("u (torque)", -2.2, 2.2, |r| r.u, false),
        ];
        for (panel, (label, lo, hi, f, wrapped)) in panels.iter().zip(series) {
            let mut chart = ChartBuilder::on(panel)
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0f64..steps as f64, lo..hi)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            chart
                .configure_mesh()
                .x_desc("step")
                .y_desc(label)
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for ep in 0..episodes {
                let color = Palette99::pick(ep).mix(0.8);
                let pts: Vec<(f64, f64)> =
                    rows.iter().filter(|r| r.episode == ep).map(|r| (r.t as f64, f(r))).collect();
                // Break the line where the wrapped angle jumps between ±π.
                for segment in pts.chunk_by(|a, b| !wrapped || (b.1 - a.1).abs() < PI) {
                    chart
                        .draw_series(LineSeries::new(
                            segment.iter().copied(),
                            color.stroke_width(1),
                        ))
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
            }
        }
        Ok(())
    })
}

/// Writes grayscale frames (`width × height` bytes each, row-major) as an animated GIF, one
/// frame per step at the real 50 ms per step, looping.
fn animate(
    path: &Path,
    (width, height): (usize, usize),
    frames: impl Iterator<Item = Result<Vec<u8>>>,
) -> Result<()> {
    let w = u16::try_from(width).context("frame size too large for a GIF")?;
    let h = u16::try_from(height).context("frame size too large for a GIF")?;
    let palette: Vec<u8> = (0..=255u8).flat_map(|v| [v, v, v]).collect();
    // Frames may fail to draw (a learned decoder); that error is kept apart from I/O errors.
    let mut frame_error = None;
    let written = ekvae_envs::dataset::write_atomic(path, |out| {
        let mut enc = gif::Encoder::new(out, w, h, &palette).map_err(std::io::Error::other)?;
        enc.set_repeat(gif::Repeat::Infinite).map_err(std::io::Error::other)?;
        for pixels in frames {
            let pixels = match pixels {
                Ok(p) => p,
                Err(e) => {
                    frame_error = Some(e);
                    return Err(std::io::Error::other("a frame could not be drawn"));
                }
            };
            let mut frame = gif::Frame::from_indexed_pixels(w, h, &pixels, None);
            frame.delay = 5; // hundredths of a second: dt = 50 ms
            enc.write_frame(&frame).map_err(std::io::Error::other)?;
        }
        enc.into_inner().map(drop).map_err(std::io::Error::other)
    });
    if let Some(e) = frame_error {
        return Err(e);
    }
    // The error names the file.
    written.map_err(anyhow::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_and_model() {
        assert_eq!(parse_start("3.25, 0").unwrap(), [3.25, 0.0]);
        assert_eq!(parse_start("-1,-0.5").unwrap(), [-1.0, -0.5]);
        assert!(parse_start("1").is_err());
        assert!(parse_start("1,2,3").is_err());
        assert!(parse_start("a,0").is_err());
        assert!(parse_start("0,NaN").is_err());
        assert!(parse_start("0,9").is_err());
        assert_eq!("true".parse::<ModelSource>().unwrap(), ModelSource::True);
        assert_eq!("runs/x".parse::<ModelSource>().unwrap(), ModelSource::Run("runs/x".into()));
    }

    #[test]
    fn quantiles_of_sorted_values() {
        let v = sorted([5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.95), 5.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
    }
}
