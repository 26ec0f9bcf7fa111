//! `ekvae reproduce`: the prediction-accuracy table (`docs/design.md`, section 5). Trains the
//! grid EKVAE × 20 seeds and RNN baseline × 10 seeds, each × {constrained, ELBO}, on one
//! dataset with equal budgets (same epochs, minibatches and sequence length; the RNN has its
//! own D0 and learning rate in the plan), evaluates every run, and writes `table.md` /
//! `table.csv` (per arm: successful runs with a 95 % Wilson interval, Fisher's exact test of
//! the objectives, every metric as mean ± std and median over all and over successful runs),
//! `runs.csv` (every run, with its success) and figures.
//!
//! # Layout of `--out DIR`
//! - `plan.json`: the grid and budgets; a rerun with other settings is refused;
//! - `data/train.npz`, `data/test.npz`: collected once (seeds 0 and 1);
//! - `runs/{model}-{objective}-s{seed}/`: a training run (`ekvae train` layout) with its
//!   `eval.json`, `prediction.csv` and figures;
//! - `table.md`, `table.csv`, `runs.csv`, `prediction_error.png`, `training_curves.png`.
//!
//! # Resuming
//! Runs go seed by seed. A run whose `eval.json` evaluates the plan's last epoch is done, with
//! or without its checkpoints (so a grid whose small files are committed run by run resumes
//! from what is committed; its `config.toml` must match the plan); one with a checkpoint
//! continues from it (bit-for-bit as `ekvae train --resume`); so an interrupted `reproduce`
//! started again with the same command continues where it stopped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use ekvae_model::train::{EpochRow, Progress, RunDir, StepStats, TrainConfig, train, write_atomic};
use ekvae_model::{Inference, Objective};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::collect::CollectArgs;
use crate::eval::{
    DEFAULT_CONDITION, DEFAULT_HORIZONS, EvalArgs, prediction_keys, read_prediction_csv,
};
use crate::figures::{Curve, color, error_vs_horizon, read_metrics, training_curves};
use crate::train::{load_dataset, sequences};

/// Arguments of `ekvae reproduce`.
#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// Output folder (data, runs, table.md, table.csv, figures). Started again with the same
    /// command, it resumes.
    #[arg(long, default_value = "runs/reproduce")]
    pub out: PathBuf,
    /// A tiny grid (2 seeds, 2 epochs of 3 minibatches, 24 short episodes) that runs in
    /// seconds: for tests, not for conclusions.
    #[arg(long)]
    pub quick: bool,
    /// Seeds per configuration (default 5; 2 with --quick).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Epochs per run (default 40; 2 with --quick).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Compute device: cpu, or cuda / wgpu when compiled with that feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bar (the per-run summary lines are still printed).
    #[arg(long)]
    pub quiet: bool,
}

/// The grid and its budgets; `plan.json` in the output folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Seeds 0 … seeds − 1 of the EKVAE configurations.
    pub seeds: usize,
    /// Seeds 0 … rnn_seeds − 1 of the RNN-baseline configurations.
    pub rnn_seeds: usize,
    /// Target distortion D0 (nats/pixel) of the RNN baseline's constrained objective.
    pub rnn_d0: f64,
    /// Adam learning rate of the RNN baseline.
    pub rnn_learning_rate: f64,
    /// Training episodes (seed 0) and test episodes (seed 1).
    pub train_episodes: usize,
    /// See `train_episodes`.
    pub test_episodes: usize,
    /// Steps per episode.
    pub steps: usize,
    /// Image side.
    pub size: usize,
    /// Epochs per run.
    pub epochs: usize,
    /// Minibatches per epoch (0 = one pass).
    pub steps_per_epoch: usize,
    /// Sequences per minibatch.
    pub batch_size: usize,
    /// Training subsequence length.
    pub seq_len: usize,
    /// Frames conditioned on before prediction.
    pub condition: usize,
    /// Reported prediction horizons.
    pub horizons: Vec<usize>,
}

impl Plan {
    /// The default grid (about an hour on 2 cores) or the `--quick` one.
    pub fn new(quick: bool, seeds: Option<usize>, epochs: Option<usize>) -> Self {
        let base = if quick {
            let d = TrainConfig::default();
            Self {
                seeds: 2,
                rnn_seeds: 2,
                rnn_d0: d.lambda.d0,
                rnn_learning_rate: d.learning_rate,
                train_episodes: 24,
                test_episodes: 6,
                steps: 60,
                size: 16,
                epochs: 2,
                steps_per_epoch: 3,
                batch_size: 8,
                seq_len: 16,
                condition: DEFAULT_CONDITION,
                horizons: DEFAULT_HORIZONS.to_vec(),
            }
        } else {
            let d = TrainConfig::default();
            Self {
                seeds: 20,
                rnn_seeds: 10,
                rnn_d0: d.lambda.d0,
                rnn_learning_rate: d.learning_rate,
                train_episodes: 500,
                test_episodes: 100,
                steps: 100,
                size: 16,
                epochs: d.epochs,
                steps_per_epoch: d.steps_per_epoch,
                batch_size: d.batch_size,
                seq_len: d.seq_len,
                condition: DEFAULT_CONDITION,
                horizons: DEFAULT_HORIZONS.to_vec(),
            }
        };
        // --seeds N sets the EKVAE arms to N seeds and the RNN arms to half as many (at least 1),
        // the ratio of the default grid.
        let (seeds, rnn_seeds) = match seeds {
            Some(n) if !quick => (n, n.div_ceil(2)),
            Some(n) => (n, n),
            None => (base.seeds, base.rnn_seeds),
        };
        Self { seeds, rnn_seeds, epochs: epochs.unwrap_or(base.epochs), ..base }
    }

    /// Seeds of a model's arms.
    pub fn seeds_for(&self, model: Inference) -> usize {
        match model {
            Inference::Kalman => self.seeds,
            Inference::Rnn => self.rnn_seeds,
        }
    }

    /// The runs in the order they are trained: seed by seed, each seed over the
    /// configurations that have it.
    pub fn runs(&self) -> Vec<RunSpec> {
        (0..self.seeds.max(self.rnn_seeds) as u64)
            .flat_map(|seed| {
                CONFIGS
                    .iter()
                    .filter(move |&&(model, _)| seed < self.seeds_for(model) as u64)
                    .map(move |&(model, objective)| RunSpec { model, objective, seed })
            })
            .collect()
    }
}

/// The four configurations, in table order.
pub const CONFIGS: [(Inference, Objective); 4] = [
    (Inference::Kalman, Objective::Constrained),
    (Inference::Kalman, Objective::Elbo),
    (Inference::Rnn, Objective::Constrained),
    (Inference::Rnn, Objective::Elbo),
];

/// The file that marks a run that failed numerically (its error message).
const FAILED: &str = "failed.txt";

/// The training config of a grid cell.
fn fresh_config(plan: &Plan, spec: &RunSpec, train_path: &Path) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.model.image_size = plan.size;
    c.model.inference = spec.model;
    c.model.seed = spec.seed;
    c.seed = spec.seed;
    c.objective = spec.objective;
    c.epochs = plan.epochs;
    c.steps_per_epoch = plan.steps_per_epoch;
    c.batch_size = plan.batch_size;
    c.seq_len = plan.seq_len;
    if spec.model == Inference::Rnn {
        c.lambda.d0 = plan.rnn_d0;
        c.learning_rate = plan.rnn_learning_rate;
    }
    c.data = train_path.display().to_string();
    c
}

/// The thresholds of a successful run: the latent holds the angle and the velocity.
pub const SUCCESS_R2_ANGLE: f64 = 0.95;
/// See [`SUCCESS_R2_ANGLE`].
pub const SUCCESS_R2_VELOCITY: f64 = 0.90;

/// Whether a run's metrics make it a success: R²(cos θ, sin θ) ≥ 0.95, R²(θ̇) ≥ 0.90 and
/// |winding| = 1.
pub fn is_success(r2_angle: f64, r2_velocity: f64, winding: f64) -> bool {
    r2_angle >= SUCCESS_R2_ANGLE && r2_velocity >= SUCCESS_R2_VELOCITY && winding.abs() == 1.0
}

/// Whether `dir/eval.json` is an evaluation of the finished run with every metric of the plan.
fn evaluated(dir: &Path, plan: &Plan) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("eval.json")) else { return false };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
    json.get("epoch").and_then(serde_json::Value::as_u64) == Some(plan.epochs as u64)
        && json.get("prediction_condition").and_then(serde_json::Value::as_u64)
            == Some(plan.condition as u64)
        && json.get("winding").is_some()
        && plan.horizons.iter().all(|&h| prediction_keys(h).iter().all(|k| json.get(k).is_some()))
}

/// Refuse a run folder whose config is not the one this grid gives it (the data path may be
/// spelled differently; the data themselves are checked when collected).
fn check_config(run: &RunDir, fresh: &TrainConfig, dir: &Path) -> Result<()> {
    let mut old = run.read_config()?;
    old.epochs = fresh.epochs;
    old.data.clone_from(&fresh.data);
    if &old != fresh {
        bail!(
            "{} holds a run with another config than this grid gives it (see its config.toml); remove it or use another --out",
            dir.display()
        );
    }
    Ok(())
}

/// Whether an error is the model's numerical failure (a NaN/inf loss or gradient, a lost
/// positive definiteness): a result of that run, not a fault of the machine or the files.
fn is_numerical_failure(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<ekvae_model::Error>(),
            Some(
                ekvae_model::Error::NonFinite { .. }
                    | ekvae_model::Error::NotPositiveDefinite { .. }
                    | ekvae_model::Error::Numerical(_)
            )
        )
    })
}

/// One cell of the grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSpec {
    /// Inference (model).
    pub model: Inference,
    /// Objective.
    pub objective: Objective,
    /// Seed of initialisation, minibatches and noise.
    pub seed: u64,
}

impl RunSpec {
    /// The run folder's name, `{model}-{objective}-s{seed}`.
    pub fn name(&self) -> String {
        format!("{}-{}-s{}", self.model, self.objective, self.seed)
    }
}

/// The metrics of the table: (column key, eval.json key or metrics.csv field, header, digits).
fn metric_columns(horizons: &[usize]) -> Vec<(String, String, usize)> {
    let mut cols = vec![
        ("r2_cos_sin".to_string(), "R² cos,sin θ".to_string(), 4),
        ("r2_theta_dot".into(), "R² θ̇".into(), 4),
        ("winding".into(), "winding".into(), 1),
        ("val_neg_elbo".into(), "val −ELBO (nats/frame)".into(), 2),
        ("final_lambda".into(), "final λ".into(), 2),
        ("train_seconds".into(), "train time (s)".into(), 0),
    ];
    for &h in horizons {
        let [mse, _, _] = prediction_keys(h);
        cols.push((mse, format!("pixel MSE h={h}"), 5));
    }
    for &h in horizons {
        let [_, _, angle] = prediction_keys(h);
        cols.push((angle, format!("angle err h={h} (°)"), 1));
    }
    cols
}

/// Read one finished run's metrics (eval.json and metrics.csv) as key → value.
fn run_metrics(dir: &Path, plan: &Plan) -> Result<Vec<(String, f64)>> {
    let horizons = &plan.horizons;
    let path = dir.join("eval.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let rows = read_metrics(&dir.join("metrics.csv"))?;
    let last =
        rows.last().with_context(|| format!("{}: no epochs in metrics.csv", dir.display()))?;
    let mut out = Vec::new();
    for (key, _, _) in metric_columns(horizons) {
        let v = match key.as_str() {
            "val_neg_elbo" => last.val_neg_elbo,
            "final_lambda" => last.lambda,
            "train_seconds" => rows.iter().map(|r| r.seconds).sum(),
            k => json.get(k).and_then(serde_json::Value::as_f64).with_context(|| {
                format!("{}: no number {k:?}; evaluate the run again", path.display())
            })?,
        };
        out.push((key, v));
    }
    for &h in horizons {
        let [_, last_key, _] = prediction_keys(h);
        let v = json.get(&last_key).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
        out.push((last_key, v));
    }
    Ok(out)
}

pub use ekvae_model::stats::mean_std;
use ekvae_model::stats::{Z95, fisher_exact, median, wilson_interval};

fn fmt_mean_std((m, s): (f64, f64), digits: usize) -> String {
    if s.is_nan() { format!("{m:.digits$}") } else { format!("{m:.digits$} ± {s:.digits$}") }
}

/// What is recorded about the software and machine in the table.
fn provenance() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown".to_string(), |s| s.trim().to_string());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map_or("unknown".to_string(), |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0));
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("PRETTY_NAME="))
                .map(|l| l.trim_start_matches("PRETTY_NAME=").trim_matches('"').to_string())
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    vec![
        ("command".into(), format!("`{}`", std::env::args().collect::<Vec<_>>().join(" "))),
        (
            "version".into(),
            format!(
                "ekvae {}, built from commit {}",
                env!("CARGO_PKG_VERSION"),
                env!("EKVAE_GIT_COMMIT")
            ),
        ),
        (
            "machine".into(),
            format!(
                "{cpu}, {cores} logical CPUs, {} rayon threads, {mem}, {os}",
                rayon::current_num_threads()
            ),
        ),
    ]
}

/// A grid-level progress bar: one tick per epoch of any run.
struct GridBar {
    bar: ProgressBar,
    prefix: String,
}

impl Progress for GridBar {
    fn start_epoch(&mut self, epoch: usize, epochs: usize, _steps: usize) {
        self.bar.set_message(format!("{} epoch {epoch}/{epochs}", self.prefix));
    }
    fn step(&mut self, _stats: &StepStats) {}
    fn end_epoch(&mut self, _row: &EpochRow) {
        self.bar.inc(1);
    }
}

fn collect_if_missing(path: &Path, episodes: usize, plan: &Plan, seed: u64) -> Result<()> {
    if path.is_file() {
        let d = load_dataset(path)?;
        let m = &d.meta;
        if (m.episodes, m.steps, m.size, m.seed) != (episodes, plan.steps, plan.size, seed) {
            bail!(
                "{} holds {} episodes × {} steps at {}×{} (seed {}), not what the plan needs ({episodes} × {} at {}, seed {seed}); remove it or use another --out",
                path.display(),
                m.episodes,
                m.steps,
                m.size,
                m.size,
                m.seed,
                plan.steps,
                plan.size
            );
        }
        return Ok(());
    }
    crate::collect::run(CollectArgs {
        episodes,
        steps: plan.steps,
        size: plan.size,
        seed,
        out: path.to_path_buf(),
        policy: "uniform".into(),
        threads: None,
        quiet: true,
    })
}

/// Run `ekvae reproduce`.
pub fn run(args: ReproduceArgs) -> Result<()> {
    let started = Instant::now();
    let plan = Plan::new(args.quick, args.seeds, args.epochs);
    if plan.seeds == 0 || plan.epochs == 0 {
        bail!("--seeds and --epochs must be at least 1");
    }
    let device = ekvae_model::backend::device_from_name(&args.device)?;
    let out = &args.out;
    std::fs::create_dir_all(out.join("data"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let plan_path = out.join("plan.json");
    if plan_path.is_file() {
        let text = std::fs::read_to_string(&plan_path)
            .with_context(|| format!("cannot read {}", plan_path.display()))?;
        let old: Plan = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a reproduce plan", plan_path.display()))?;
        if old != plan {
            bail!(
                "{} was started with another grid ({}); rerun with the same flags to resume, or choose another --out",
                out.display(),
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
    } else {
        write_atomic(&plan_path, serde_json::to_string_pretty(&plan)?.as_bytes())?;
    }

    let train_path = out.join("data/train.npz");
    let test_path = out.join("data/test.npz");
    collect_if_missing(&train_path, plan.train_episodes, &plan, 0)?;
    collect_if_missing(&test_path, plan.test_episodes, &plan, 1)?;
    let train_data = load_dataset(&train_path)?;
    let seqs = sequences(&train_data);

    let runs = plan.runs();
    let bar = if args.quiet {
        ProgressBar::with_draw_target(
            Some((runs.len() * plan.epochs) as u64),
            ProgressDrawTarget::hidden(),
        )
    } else {
        ProgressBar::new((runs.len() * plan.epochs) as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("grid [{bar:30}] {pos}/{len} epochs {elapsed}<{eta}  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    eprintln!(
        "reproduce: {} runs (EKVAE × {} seeds, RNN × {} seeds, each × constrained/ELBO), {} epochs each, {} train / {} test episodes of {} steps at {}×{} → {}",
        runs.len(),
        plan.seeds,
        plan.rnn_seeds,
        plan.epochs,
        plan.train_episodes,
        plan.test_episodes,
        plan.steps,
        plan.size,
        plan.size,
        out.display()
    );
    let mut failed = 0usize;
    for (i, spec) in runs.iter().enumerate() {
        let dir = out.join("runs").join(spec.name());
        let run = RunDir::new(&dir);
        let fresh = fresh_config(&plan, spec, &train_path);
        let done_epochs = run.read_state().map(|s| s.epoch).unwrap_or(0);
        let failure_path = dir.join(FAILED);
        if failure_path.is_file() {
            failed += 1;
            bar.inc(plan.epochs as u64);
            bar.suspend(|| {
                eprintln!(
                    "== {} ({}/{}): skipped, it failed before (see {}; delete that file to retry)",
                    spec.name(),
                    i + 1,
                    runs.len(),
                    failure_path.display()
                )
            });
            continue;
        }
        // A run evaluated at the plan's last epoch is done, with or without its checkpoint
        // (committed grids keep only the small files).
        if evaluated(&dir, &plan) {
            check_config(&run, &fresh, &dir)?;
            bar.inc(plan.epochs as u64);
            continue;
        }
        bar.inc(done_epochs.min(plan.epochs) as u64);
        let resume = run.state_path().is_file();
        if resume {
            // Never mix budgets: the run must have been made by this grid.
            check_config(&run, &fresh, &dir)?;
        }
        // A run stopped before its first checkpoint is restarted by `train` itself (the run
        // directory's owner decides that).
        let mut progress = GridBar {
            bar: bar.clone(),
            prefix: format!("run {}/{} {}", i + 1, runs.len(), spec.name()),
        };
        let outcome = train(fresh, &seqs, &dir, resume, &device, &mut progress)
            .map_err(anyhow::Error::from)
            .and_then(|_| {
                bar.suspend(|| -> Result<()> {
                    let mut eval = EvalArgs::new(dir.clone(), test_path.clone());
                    eval.train_data = Some(train_path.clone());
                    eval.condition = plan.condition;
                    eval.horizons = plan.horizons.clone();
                    eval.device = args.device.clone();
                    eprintln!("== {} ({}/{})", spec.name(), i + 1, runs.len());
                    crate::eval::run(eval)
                })
            });
        if let Err(e) = outcome {
            // A model that diverges is a result (counted in the table); anything else (I/O,
            // bad files) stops the grid.
            if !is_numerical_failure(&e) {
                return Err(e.context(format!("run {}", dir.display())));
            }
            failed += 1;
            write_atomic(&failure_path, format!("{e:#}\n").as_bytes())?;
            bar.suspend(|| {
                eprintln!(
                    "== {}: FAILED ({e:#}); recorded in {}",
                    spec.name(),
                    failure_path.display()
                )
            });
        }
    }
    if failed > 0 {
        eprintln!(
            "{failed} of {} runs failed numerically; the table counts them per configuration",
            runs.len()
        );
    }
    bar.finish_and_clear();
    write_table(out, &plan, started.elapsed().as_secs_f64())?;
    eprintln!("wrote {} and {}", out.join("table.md").display(), out.join("table.csv").display());
    Ok(())
}

/// The runs of one arm (a model × objective cell of the grid), read back from disk.
struct Arm {
    model: Inference,
    objective: Objective,
    /// Seeds attempted.
    seeds: usize,
    /// Runs that failed numerically (counted as unsuccessful).
    failed: usize,
    /// Per finished run: its metric values (in `metric_columns` order) and whether it succeeded.
    runs: Vec<(Vec<f64>, bool)>,
}

impl Arm {
    fn successes(&self) -> usize {
        self.runs.iter().filter(|r| r.1).count()
    }
    /// Values of metric `i` over all finished runs, or over the successful ones only.
    fn values(&self, i: usize, successful_only: bool) -> Vec<f64> {
        self.runs.iter().filter(|r| r.1 || !successful_only).map(|r| r.0[i]).collect()
    }
}

fn fmt_summary(v: &[f64], digits: usize) -> String {
    if v.is_empty() {
        return "—".into();
    }
    format!("{} ({:.digits$})", fmt_mean_std(mean_std(v), digits), median(v))
}

/// Aggregate the finished runs into table.md, table.csv, runs.csv and the grid figures.
pub fn write_table(out: &Path, plan: &Plan, wall_seconds: f64) -> Result<()> {
    let cols = metric_columns(&plan.horizons);
    let col = |key: &str| cols.iter().position(|c| c.0 == key).expect("a metric column");
    let (i_ang, i_vel, i_wind) = (col("r2_cos_sin"), col("r2_theta_dot"), col("winding"));
    let mut runs_csv = String::from("model,objective,seed,success");
    for (key, _, _) in &cols {
        runs_csv.push(',');
        runs_csv.push_str(key);
    }
    runs_csv.push('\n');
    let mut table_csv = String::from(
        "model,objective,seeds,failed,successes,success_rate,success_wilson_lo,success_wilson_hi",
    );
    for (key, _, _) in &cols {
        for stat in ["mean", "std", "median", "ok_mean", "ok_std", "ok_median"] {
            table_csv.push_str(&format!(",{key}_{stat}"));
        }
    }
    table_csv.push('\n');
    let mut arms: Vec<Arm> = Vec::new();
    let mut baseline: Vec<Vec<f64>> = vec![Vec::new(); plan.horizons.len()];
    let mut pixel_curves = Vec::new();
    let mut angle_curves = Vec::new();
    let mut train_curves = Vec::new();
    let mut first_ok: Option<PathBuf> = None;
    for (ci, &(model, objective)) in CONFIGS.iter().enumerate() {
        let label = format!("{model} {objective}");
        let mut arm =
            Arm { model, objective, seeds: plan.seeds_for(model), failed: 0, runs: vec![] };
        let mut curves: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
        let mut histories: Vec<Vec<EpochRow>> = Vec::new();
        for seed in 0..arm.seeds as u64 {
            let spec = RunSpec { model, objective, seed };
            let dir = out.join("runs").join(spec.name());
            if dir.join(FAILED).is_file() {
                arm.failed += 1;
                continue;
            }
            let values = run_metrics(&dir, plan)?;
            if first_ok.is_none() {
                first_ok = Some(dir.clone());
            }
            let metrics: Vec<f64> = values.iter().take(cols.len()).map(|(_, v)| *v).collect();
            let ok = is_success(metrics[i_ang], metrics[i_vel], metrics[i_wind]);
            runs_csv.push_str(&format!("{model},{objective},{seed},{}", u8::from(ok)));
            for v in &metrics {
                runs_csv.push_str(&format!(",{v}"));
            }
            runs_csv.push('\n');
            for (h, (_, v)) in values.iter().skip(cols.len()).enumerate() {
                baseline[h].push(*v);
            }
            arm.runs.push((metrics, ok));
            let c = read_prediction_csv(&dir.join("prediction.csv"))?;
            curves.push((c.pixel_mse, c.angle_error_deg));
            histories.push(read_metrics(&dir.join("metrics.csv"))?);
        }
        let k = arm.successes();
        let (lo, hi) = wilson_interval(k, arm.seeds, Z95);
        table_csv.push_str(&format!(
            "{model},{objective},{},{},{k},{},{lo},{hi}",
            arm.seeds - arm.failed,
            arm.failed,
            k as f64 / arm.seeds as f64
        ));
        for i in 0..cols.len() {
            for only_ok in [false, true] {
                let v = arm.values(i, only_ok);
                let (m, sd) = mean_std(&v);
                table_csv.push_str(&format!(",{m},{sd},{}", median(&v)));
            }
        }
        table_csv.push('\n');
        let (pixel, angle): (Vec<Vec<f64>>, Vec<Vec<f64>>) = curves.into_iter().unzip();
        let (pm, ps) = mean_std_band(&pixel);
        let (am, as_) = mean_std_band(&angle);
        pixel_curves.push(Curve {
            label: label.clone(),
            ys: pm,
            band: Some(ps),
            color: color(ci),
            thin: false,
        });
        angle_curves.push(Curve {
            label: label.clone(),
            ys: am,
            band: Some(as_),
            color: color(ci),
            thin: false,
        });
        train_curves.push((label, mean_history(&histories)));
        arms.push(arm);
    }
    // The held-last-frame baseline does not depend on the model: one curve from the first run.
    let first = first_ok.context("every run of the grid failed; nothing to tabulate")?;
    let last_frame = read_prediction_csv(&first.join("prediction.csv"))?.pixel_mse_last_frame;
    let windows = std::fs::read_to_string(first.join("eval.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|j| j.get("prediction_windows").and_then(serde_json::Value::as_u64))
        .context("no prediction_windows in the first run's eval.json")?;
    pixel_curves.push(Curve {
        label: "last conditioned frame held".into(),
        ys: last_frame,
        band: None,
        color: plotters::style::RGBColor(120, 120, 120),
        thin: true,
    });
    error_vs_horizon(&out.join("prediction_error.png"), &pixel_curves, &angle_curves)?;
    training_curves(&out.join("training_curves.png"), &train_curves)?;

    let total_train_seconds: f64 =
        arms.iter().flat_map(|a| a.values(col("train_seconds"), false)).sum();
    let mut md = String::from("# Prediction-accuracy table (`ekvae reproduce`)\n\n");
    for (k, v) in provenance() {
        md.push_str(&format!("- {k}: {v}\n"));
    }
    md.push_str(&format!(
        "- grid: EKVAE × {} seeds and RNN baseline × {} seeds (its D0 {} nats/pixel, learning rate {}), each × {{constrained, ELBO}}; every run {} epochs of {} minibatches of {} × {}-step windows; data {} train / {} test episodes × {} steps at {}×{} (collect seeds 0 / 1)\n- prediction: condition on {} frames, roll the transition mean forward under the recorded actions; errors at h steps after the last conditioned frame, mean over {} test windows\n- a run is a success when R²(cos θ, sin θ) ≥ {SUCCESS_R2_ANGLE}, R²(θ̇) ≥ {SUCCESS_R2_VELOCITY} and the fold diagnostic finds a ring (|winding| = 1); runs that failed numerically count as unsuccessful\n- training time: {:.1} min summed over the runs (see the train time column); wall time of the invocation that wrote this table: {:.1} min (finished runs are not retrained when resumed)\n- values: mean ± sample standard deviation (median) over runs\n\n",
        plan.seeds,
        plan.rnn_seeds,
        plan.rnn_d0,
        plan.rnn_learning_rate,
        plan.epochs,
        if plan.steps_per_epoch == 0 { "one pass".to_string() } else { plan.steps_per_epoch.to_string() },
        plan.batch_size,
        plan.seq_len,
        plan.train_episodes,
        plan.test_episodes,
        plan.steps,
        plan.size,
        plan.size,
        plan.condition,
        windows,
        total_train_seconds / 60.0,
        wall_seconds / 60.0
    ));
    md.push_str("## Successful runs\n\n| model | objective | successes | rate (95 % Wilson interval) |\n|---|---|---:|---|\n");
    for a in &arms {
        let k = a.successes();
        let (lo, hi) = wilson_interval(k, a.seeds, Z95);
        let failed = if a.failed > 0 { format!(" ({} failed)", a.failed) } else { String::new() };
        md.push_str(&format!(
            "| {} | {} | {k}/{}{failed} | {:.0} % ({:.0}–{:.0} %) |\n",
            a.model,
            a.objective,
            a.seeds,
            100.0 * k as f64 / a.seeds as f64,
            100.0 * lo,
            100.0 * hi
        ));
    }
    md.push('\n');
    for model in [Inference::Kalman, Inference::Rnn] {
        let arm = |o| arms.iter().find(|a| a.model == model && a.objective == o).expect("an arm");
        let (c, e) = (arm(Objective::Constrained), arm(Objective::Elbo));
        let (kc, ke) = (c.successes(), e.successes());
        md.push_str(&format!(
            "Fisher exact test, {model}, constrained against ELBO: {kc}/{} against {ke}/{}, two-sided p = {:.3}\n\n",
            c.seeds,
            e.seeds,
            fisher_exact(kc, c.seeds - kc, ke, e.seeds - ke)
        ));
    }
    let split = cols.iter().position(|c| c.0.starts_with("pixel_mse_h")).unwrap_or(cols.len());
    for (title, range, only_ok) in [
        ("Identification and fit, all runs", 0..split, false),
        ("Open-loop prediction, all runs", split..cols.len(), false),
        ("Identification and fit, successful runs only", 0..split, true),
        ("Open-loop prediction, successful runs only", split..cols.len(), true),
    ] {
        md.push_str(&format!("## {title}\n\n| model | objective | runs |"));
        for (_, header, _) in &cols[range.clone()] {
            md.push_str(&format!(" {header} |"));
        }
        md.push_str("\n|---|---|---:|");
        md.push_str(&"---:|".repeat(range.len()));
        md.push('\n');
        for a in &arms {
            let n = if only_ok { a.successes() } else { a.runs.len() };
            md.push_str(&format!("| {} | {} | {n} |", a.model, a.objective));
            for i in range.clone() {
                md.push_str(&format!(" {} |", fmt_summary(&a.values(i, only_ok), cols[i].2)));
            }
            md.push('\n');
        }
        if range.start == split && !only_ok {
            md.push_str("| last frame held | — | — |");
            for (h, _) in plan.horizons.iter().enumerate() {
                md.push_str(&format!(" {:.5} |", mean_std(&baseline[h]).0));
            }
            md.push_str(&" — |".repeat(plan.horizons.len()));
            md.push('\n');
        }
        md.push('\n');
    }
    md.push_str("Figures: `prediction_error.png` (mean ± std band over seeds), `training_curves.png` (mean over seeds); per run: `runs/*/prediction_strips.png`, `latent_space.png`, `training_curves.png`.\n");
    write_atomic(&out.join("table.md"), md.as_bytes())?;
    write_atomic(&out.join("table.csv"), table_csv.as_bytes())?;
    write_atomic(&out.join("runs.csv"), runs_csv.as_bytes())?;
    Ok(())
}

/// Per index, the mean and standard deviation (0 for one curve) over curves, as long as the
/// shortest curve.
fn mean_std_band(curves: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let len = curves.iter().map(Vec::len).min().unwrap_or(0);
    (0..len)
        .map(|h| mean_std(&curves.iter().map(|c| c[h]).collect::<Vec<_>>()))
        .map(|(m, s)| (m, if s.is_nan() { 0.0 } else { s }))
        .unzip()
}

/// The mean over seeds of the per-epoch rows (as many epochs as the shortest history).
fn mean_history(histories: &[Vec<EpochRow>]) -> Vec<EpochRow> {
    let len = histories.iter().map(Vec::len).min().unwrap_or(0);
    let n = histories.len() as f64;
    (0..len)
        .map(|e| {
            let avg = |f: fn(&EpochRow) -> f64| histories.iter().map(|h| f(&h[e])).sum::<f64>() / n;
            EpochRow {
                epoch: e + 1,
                lambda: avg(|r| r.lambda),
                distortion: avg(|r| r.distortion),
                rate: avg(|r| r.rate),
                neg_elbo: avg(|r| r.neg_elbo),
                val_neg_elbo: avg(|r| r.val_neg_elbo),
                seconds: avg(|r| r.seconds),
                // Phase and winding are per run, not averaged: the first run's phase, and the
                // winding left at 0 (the table reports each run's winding).
                phase: histories[0][e].phase,
                winding: 0,
                clearance: avg(|r| r.clearance),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        // By hand: mean 5, squared deviations 9+1+1+9 = 20, /(n−1)=3 → std √(20/3).
        let (m, s) = mean_std(&[2.0, 4.0, 6.0, 8.0]);
        assert_eq!(m, 5.0);
        assert!((s - (20.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!(mean_std(&[1.0]).1.is_nan());
        assert!(mean_std(&[]).0.is_nan());
    }

    #[test]
    fn the_grid_goes_seed_by_seed_with_unique_names() {
        // --seeds 3: the EKVAE arms get 3 seeds, the RNN arms ⌈3/2⌉ = 2.
        let plan = Plan::new(false, Some(3), None);
        let runs = plan.runs();
        assert_eq!(runs.len(), 3 * 2 + 2 * 2);
        assert_eq!(runs[8].name(), "ekvae-constrained-s2");
        assert_eq!(runs[9].name(), "ekvae-elbo-s2");
        assert_eq!(runs[0].name(), "ekvae-constrained-s0");
        assert_eq!(runs[3].name(), "rnn-elbo-s0");
        assert_eq!(runs[4].name(), "ekvae-constrained-s1");
        let mut names: Vec<String> = runs.iter().map(RunSpec::name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 10);
        // The default grid: EKVAE × 20 seeds, RNN × 10 seeds, each × 2 objectives.
        assert_eq!(Plan::new(false, None, None).runs().len(), 20 * 2 + 10 * 2);
    }
}
