//! `ekvae train`: fit an EKVAE world model to a collected dataset.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use ekvae_envs::dataset::Dataset;
use ekvae_model::backend::device_from_name;
use ekvae_model::data::Sequences;
use ekvae_model::rundir::RunDir;
use ekvae_model::train::{EpochRow, Progress, StepStats, TrainConfig, train};
use ekvae_model::{Inference, LambdaConfig, Objective, ScheduleKind};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `ekvae train`. Precedence: built-in defaults < `--config` file < flags.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training dataset (.npz written by `ekvae collect`).
    #[arg(long)]
    pub data: PathBuf,
    /// Run directory for config.toml, metrics.csv, checkpoints (must not hold a run unless --resume).
    #[arg(long)]
    pub out: PathBuf,
    /// Model: `ekvae` (extended Kalman smoother inference) or `rnn` (the RNN-inference
    /// baseline: backward GRU + combiner, same generative model). Default: ekvae.
    #[arg(long)]
    pub model: Option<Inference>,
    /// Objective: `constrained` (min R subject to D ≤ D0, with the λ schedule of --schedule)
    /// or `elbo` (R + D).
    #[arg(long)]
    pub objective: Option<Objective>,
    /// λ schedule of the constrained objective: `authors` (Klushyn et al.: reconstruction
    /// phase, then D + R/λ with a slow clamped λ update; default) or `fast` (R + λ(D − D0),
    /// λ updated every step; the earlier schedule, with its own ν, EMA and λ_max).
    #[arg(long)]
    pub schedule: Option<ScheduleKind>,
    /// Number of epochs (with --resume: the new total).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seed of initialisation, minibatches and noise.
    #[arg(long)]
    pub seed: Option<u64>,
    /// TOML file with any fields of the run config (see a run's config.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Dimension m of the auxiliary observation a_t.
    #[arg(long)]
    pub aux_dim: Option<usize>,
    /// Dimension n of the latent state z_t.
    #[arg(long)]
    pub state_dim: Option<usize>,
    /// Number K of base matrices of the locally-linear transition.
    #[arg(long)]
    pub bases: Option<usize>,
    /// Sequences per minibatch.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Length of the training subsequences.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Minibatches per epoch (0 = one pass over the training episodes).
    #[arg(long)]
    pub steps_per_epoch: Option<usize>,
    /// Adam learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Target distortion D0 in nats per pixel (constrained objective).
    #[arg(long)]
    pub d0: Option<f64>,
    /// Once the rate has entered (authors' schedule), the encoder and decoder learn at
    /// --lr × this factor, the dynamics at --lr (1 = one learning rate).
    #[arg(long)]
    pub ae_lr_factor: Option<f64>,
    /// Cosine learning-rate decay to this fraction of --lr at the last epoch (1 = constant).
    #[arg(long)]
    pub lr_final_fraction: Option<f64>,
    /// Epochs at the start with the transition's mixing weights frozen uniform (one global
    /// linear model first, as in KVAE's staged training); 0 = never.
    #[arg(long)]
    pub freeze_mixing_epochs: Option<usize>,
    /// Compute device: cpu, or cuda / wgpu when compiled with that feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Model selection: train this many candidate seeds (--seed, --seed + 1, …) for
    /// --restart-epochs epochs each (in OUT/restarts/), keep the best — a ring by the fold
    /// diagnostic first, then the lowest validation −ELBO — and train it fully into OUT.
    /// The choice is recorded in OUT/selection.json. 1 = no selection.
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// Epochs per candidate of --restarts. The default, 15, is past the end of the authors'
    /// reconstruction phase (about epoch 11 on the default data), before which the rate is
    /// untrained and the validation −ELBO says nothing about the dynamics.
    #[arg(long, default_value_t = 15)]
    pub restart_epochs: usize,
}

/// One candidate of `--restarts`, as recorded in `selection.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Candidate {
    /// Its seed.
    pub seed: u64,
    /// Validation −ELBO (nats/frame) after the candidate epochs.
    pub val_neg_elbo: f64,
    /// Fold diagnostic after the candidate epochs.
    pub winding: i32,
}

/// `selection.json`: how the run's seed was chosen by `--restarts`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    /// The rule.
    pub rule: String,
    /// Epochs each candidate was trained for.
    pub candidate_epochs: usize,
    /// Every candidate.
    pub candidates: Vec<Candidate>,
    /// The seed trained fully.
    pub chosen_seed: u64,
}

/// The file name of the selection record in a run directory.
pub const SELECTION_FILE: &str = "selection.json";

/// Train the `--restarts` candidates of `cfg` under `out/restarts/` (resuming any that were
/// interrupted) and return the selection.
fn select_seed(
    args: &TrainArgs,
    cfg: &TrainConfig,
    seqs: &Sequences,
    device: &burn::tensor::Device,
) -> Result<Selection> {
    let epochs = args.restart_epochs.min(cfg.epochs);
    let mut candidates = Vec::new();
    for i in 0..args.restarts as u64 {
        let seed = cfg.seed + i;
        let dir = args.out.join("restarts").join(format!("seed-{seed}"));
        let mut c = cfg.clone();
        c.seed = seed;
        c.model.seed = seed;
        c.epochs = epochs;
        let run = ekvae_model::train::RunDir::new(&dir);
        let done = run.read_state().map(|s| s.epoch >= epochs).unwrap_or(false);
        if !done {
            if !args.quiet {
                eprintln!("candidate {}/{}: seed {seed}, {epochs} epochs", i + 1, args.restarts);
            }
            let resume = run.read_state().is_ok();
            if !resume && run.holds_run() {
                // Stopped inside its first epoch: nothing to keep.
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
            let mut bar = Bar { bar: None, quiet: args.quiet, sum_loss: 0.0, n: 0 };
            train(c, seqs, &dir, resume, device, &mut bar)
                .with_context(|| format!("training candidate {}", dir.display()))?;
        }
        let rows = crate::figures::read_metrics(&run.metrics_path())?;
        let last = rows.last().with_context(|| format!("{}: no epochs", dir.display()))?;
        candidates.push(Candidate { seed, val_neg_elbo: last.val_neg_elbo, winding: last.winding });
    }
    let best = candidates
        .iter()
        .min_by(|a, b| {
            (a.winding.abs() != 1)
                .cmp(&(b.winding.abs() != 1))
                .then(a.val_neg_elbo.total_cmp(&b.val_neg_elbo))
        })
        .expect("at least one candidate");
    Ok(Selection {
        rule:
            "a ring by the fold diagnostic (|winding| = 1) first, then the lowest validation −ELBO"
                .into(),
        candidate_epochs: epochs,
        chosen_seed: best.seed,
        candidates,
    })
}

/// Load a dataset file with a one-line error naming the file.
pub fn load_dataset(path: &Path) -> Result<Dataset> {
    Dataset::load(path).with_context(|| format!("cannot load dataset {}", path.display()))
}

/// A model-side view of a dataset.
pub fn sequences(d: &Dataset) -> Sequences<'_> {
    Sequences {
        images: &d.images,
        actions: &d.actions,
        states: &d.states,
        episodes: d.episodes,
        steps: d.steps,
        size: d.size,
        action_dim: if d.episodes * d.steps == 0 {
            1
        } else {
            d.actions.len() / (d.episodes * d.steps)
        },
    }
}

/// Resolve the config from defaults, the --config file and the flags.
pub fn resolve_config(args: &TrainArgs, data: &Dataset) -> Result<TrainConfig> {
    let mut cfg = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            TrainConfig::from_toml(&text).map_err(|e| {
                anyhow::anyhow!("{}: invalid config: {}", path.display(), e.message())
            })?
        }
        None => {
            let mut c = TrainConfig::default();
            // Without a config file the image size follows the data.
            c.model.image_size = data.size;
            c
        }
    };
    if let Some(v) = args.model {
        cfg.model.inference = v;
    }
    if let Some(v) = args.objective {
        cfg.objective = v;
    }
    if let Some(v) = args.epochs {
        cfg.epochs = v;
    }
    if let Some(v) = args.seed {
        cfg.seed = v;
        cfg.model.seed = v;
    }
    if let Some(v) = args.aux_dim {
        cfg.model.aux_dim = v;
    }
    if let Some(v) = args.state_dim {
        cfg.model.state_dim = v;
    }
    if let Some(v) = args.bases {
        cfg.model.num_bases = v;
    }
    if let Some(v) = args.batch {
        cfg.batch_size = v;
    }
    if let Some(v) = args.seq_len {
        cfg.seq_len = v;
    }
    if let Some(v) = args.steps_per_epoch {
        cfg.steps_per_epoch = v;
    }
    if let Some(v) = args.lr {
        cfg.learning_rate = v;
    }
    // Switching schedules switches to that schedule's defaults; D0 is kept.
    if let Some(v) = args.schedule.filter(|&v| v != cfg.lambda.schedule) {
        let d0 = cfg.lambda.d0;
        cfg.lambda = match v {
            ScheduleKind::Authors => LambdaConfig::default(),
            ScheduleKind::Fast => LambdaConfig::fast(),
        };
        cfg.lambda.d0 = d0;
    }
    if let Some(v) = args.d0 {
        cfg.lambda.d0 = v;
    }
    if let Some(v) = args.ae_lr_factor {
        cfg.ae_lr_factor = v;
    }
    if let Some(v) = args.lr_final_fraction {
        cfg.lr_final_fraction = v;
    }
    if let Some(v) = args.freeze_mixing_epochs {
        cfg.freeze_mixing_epochs = v;
    }
    cfg.data = args.data.display().to_string();
    cfg.check()?;
    Ok(cfg)
}

struct Bar {
    bar: Option<ProgressBar>,
    quiet: bool,
    sum_loss: f64,
    n: usize,
}

impl Progress for Bar {
    fn start_epoch(&mut self, epoch: usize, epochs: usize, steps: usize) {
        if self.quiet {
            return;
        }
        let bar = ProgressBar::new(steps as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {elapsed}<{eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        self.bar = Some(bar);
        self.sum_loss = 0.0;
        self.n = 0;
    }
    fn step(&mut self, s: &StepStats) {
        self.sum_loss += s.loss;
        self.n += 1;
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "λ {:.2} D {:.2} R {:.2} |g| {:.1}",
                s.lambda, s.distortion, s.rate, s.grad_norm
            ));
            bar.inc(1);
        }
    }
    fn notice(&mut self, message: &str) {
        eprintln!("note: {message}");
    }
    fn end_epoch(&mut self, r: &EpochRow) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !self.quiet {
            eprintln!(
                "epoch {:>3}  λ {:>8.3}  D {:>8.3}  R {:>8.3}  -ELBO {:>8.3}  val -ELBO {:>8.3}  winding {:>2}  {:>6.1}s{}",
                r.epoch,
                r.lambda,
                r.distortion,
                r.rate,
                r.neg_elbo,
                r.val_neg_elbo,
                r.winding,
                r.seconds,
                if r.phase == ekvae_model::Phase::Reconstruction {
                    "  (reconstruction)"
                } else {
                    ""
                }
            );
        }
    }
}

/// A rough lower bound of the memory one training step (or one validation chunk of 64 whole
/// episodes) needs: per frame the input, the encoder/decoder activations on the 8×8 grid and
/// their gradients.
pub fn step_memory_bytes(cfg: &TrainConfig, steps: usize, val_episodes: usize) -> Option<u64> {
    let m = &cfg.model;
    let s2 = m.image_size.checked_mul(m.image_size)? as u64;
    let per_frame = 4 * 3 * (8 * s2 + 6 * 64 * m.channels as u64 + 4 * m.hidden as u64);
    let train = (cfg.batch_size as u64).checked_mul(cfg.seq_len as u64)?.checked_mul(per_frame)?;
    let val = (val_episodes.min(64) as u64).checked_mul(steps as u64)?.checked_mul(per_frame)?;
    Some(train.max(val))
}

/// Run `ekvae train`.
pub fn run(args: TrainArgs) -> Result<()> {
    let device = device_from_name(&args.device)?;
    let data = load_dataset(&args.data)?;
    let seqs = sequences(&data);
    let cfg = if args.resume {
        let changed: Vec<&str> = [
            ("--model", args.model.is_some()),
            ("--objective", args.objective.is_some()),
            ("--seed", args.seed.is_some()),
            ("--config", args.config.is_some()),
            ("--aux-dim", args.aux_dim.is_some()),
            ("--state-dim", args.state_dim.is_some()),
            ("--bases", args.bases.is_some()),
            ("--batch", args.batch.is_some()),
            ("--seq-len", args.seq_len.is_some()),
            ("--steps-per-epoch", args.steps_per_epoch.is_some()),
            ("--lr", args.lr.is_some()),
            ("--d0", args.d0.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        if !changed.is_empty() {
            eprintln!(
                "note: --resume continues the run in {} with its recorded config; only --epochs can change, so {} {} ignored",
                args.out.display(),
                changed.join(", "),
                if changed.len() == 1 { "is" } else { "are" }
            );
        }
        let run = RunDir::new(&args.out);
        // The run directory's owner says first whether there is anything to resume.
        run.plan(true)?;
        let mut c = run.read_config()?;
        if let Some(e) = args.epochs {
            c.epochs = e;
        }
        c
    } else {
        resolve_config(&args, &data)?
    };
    // Bounds before allocation.
    let val_episodes = (cfg.val_fraction * data.episodes as f64).ceil() as usize;
    ekvae_envs::fsio::check_memory(
        step_memory_bytes(&cfg, data.steps, val_episodes),
        "one training step (--batch × --seq-len frames) or a validation chunk",
        "lower --batch or --seq-len",
    )?;
    if args.restarts == 0 {
        bail!("--restarts must be at least 1");
    }
    let mut cfg = cfg;
    if args.restarts > 1 && !args.resume {
        if ekvae_model::train::RunDir::new(&args.out).read_state().is_ok() {
            bail!(
                "{} already holds a trained run; use --resume to continue it (without --restarts) or choose another --out",
                args.out.display()
            );
        }
        let selection = select_seed(&args, &cfg, &seqs, &device)?;
        cfg.seed = selection.chosen_seed;
        cfg.model.seed = selection.chosen_seed;
        let json = serde_json::to_string_pretty(&selection)?;
        ekvae_model::train::write_atomic(&args.out.join(SELECTION_FILE), json.as_bytes())?;
        eprintln!(
            "model selection: seed {} chosen from {} candidates ({} epochs each; {}); recorded in {}",
            selection.chosen_seed,
            selection.candidates.len(),
            selection.candidate_epochs,
            selection.rule,
            args.out.join(SELECTION_FILE).display()
        );
    }
    if !args.quiet {
        eprintln!(
            "training {} with the {} objective on {} ({} episodes × {} steps, {}×{}) → {}",
            cfg.model.inference,
            cfg.objective,
            args.data.display(),
            data.episodes,
            data.steps,
            data.size,
            data.size,
            args.out.display()
        );
    }
    let cfg_d0 = cfg.lambda.d0;
    let mut bar = Bar { bar: None, quiet: args.quiet, sum_loss: 0.0, n: 0 };
    let rows = train(cfg, &seqs, &args.out, args.resume, &device, &mut bar)
        .with_context(|| format!("training into {}", args.out.display()))?;
    if !args.quiet {
        match rows.last() {
            Some(r) => eprintln!(
                "done: epoch {}, validation -ELBO {:.3} nats/frame, winding {}",
                r.epoch, r.val_neg_elbo, r.winding
            ),
            None => eprintln!("nothing to do: the run already has all its epochs"),
        }
    }
    // The warnings are printed even with --quiet: a folded model is not usable for control.
    if let Some(r) = rows.last() {
        if r.winding.abs() != 1 {
            eprintln!("{}", fold_warning(r.winding, r.clearance));
        }
        if r.phase == ekvae_model::Phase::Reconstruction {
            eprintln!(
                "warning: the distortion never fell below D0 = {} nats/pixel, so the rate (the dynamics) was never trained; raise --d0 or train longer",
                cfg_d0
            );
        }
    }
    Ok(())
}

/// The warning printed by `train` and `eval` when the fold diagnostic finds no ring.
pub fn fold_warning(winding: i32, clearance: f64) -> String {
    format!(
        "warning: the latent is folded (fold diagnostic: winding {winding}, clearance {clearance:.2}; a latent that holds the angle has |winding| = 1): a controller on this model will not work; retrain with another --seed or use --restarts"
    )
}
