//! `ekvae train`: fit an EKVAE world model to a collected dataset.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use ekvae_envs::dataset::Dataset;
use ekvae_model::backend::device_from_name;
use ekvae_model::data::Sequences;
use ekvae_model::rundir::RunDir;
use ekvae_model::train::{EpochRow, Progress, StepStats, TrainConfig, train};
use ekvae_model::{Inference, Objective};
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
    /// Objective: `constrained` (R + λ(D − D0), λ adapted) or `elbo` (R + D).
    #[arg(long)]
    pub objective: Option<Objective>,
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
    /// Compute device: cpu, or cuda / wgpu when compiled with that feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
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
    if let Some(v) = args.d0 {
        cfg.lambda.d0 = v;
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
                "epoch {:>3}  λ {:>8.3}  D {:>8.3}  R {:>8.3}  -ELBO {:>8.3}  val -ELBO {:>8.3}  {:>6.1}s",
                r.epoch, r.lambda, r.distortion, r.rate, r.neg_elbo, r.val_neg_elbo, r.seconds
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
    let mut bar = Bar { bar: None, quiet: args.quiet, sum_loss: 0.0, n: 0 };
    let rows = train(cfg, &seqs, &args.out, args.resume, &device, &mut bar)
        .with_context(|| format!("training into {}", args.out.display()))?;
    if !args.quiet {
        match rows.last() {
            Some(r) => eprintln!(
                "done: epoch {}, validation -ELBO {:.3} nats/frame",
                r.epoch, r.val_neg_elbo
            ),
            None => eprintln!("nothing to do: the run already has all its epochs"),
        }
    }
    Ok(())
}
