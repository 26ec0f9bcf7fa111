//! `ekvae train`: the command line of [`ekvae_pipeline::train`]: flags into a run config,
//! progress on standard error.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use ekvae_model::backend::device_from_name;
use ekvae_model::train::{EpochRow, Progress, StepStats};
use ekvae_model::{Inference, Objective, ScheduleKind};
use ekvae_pipeline::train::{
    Overrides, Reporter, Restarts, TrainJob, fold_warning, load_dataset, resolve_config, train_run,
};
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
    /// baseline: backward GRU + combiner, same generative model) [default: ekvae].
    #[arg(long)]
    pub model: Option<Inference>,
    /// Objective: `constrained` (min R subject to D ≤ D0, with the λ schedule of --schedule)
    /// or `elbo` (R + D) [default: constrained].
    #[arg(long)]
    pub objective: Option<Objective>,
    /// λ schedule of the constrained objective: `authors` (Klushyn et al.: reconstruction
    /// phase, then D + R/λ with a slow clamped λ update; default) or `fast` (R + λ(D − D0),
    /// λ updated every step; the earlier schedule, with its own ν, EMA and λ_max)
    /// [default: authors].
    #[arg(long)]
    pub schedule: Option<ScheduleKind>,
    /// Number of epochs (with --resume: the new total) [default: 40].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seed of initialisation, minibatches and noise [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// TOML file with any fields of a run's config.toml; flags override it. The image size
    /// and action dimension always follow the data.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Dimension m of the auxiliary observation a_t [default: 2].
    #[arg(long)]
    pub aux_dim: Option<usize>,
    /// Dimension n of the latent state z_t [default: 3].
    #[arg(long)]
    pub state_dim: Option<usize>,
    /// Number K of base matrices of the locally-linear transition [default: 8].
    #[arg(long)]
    pub bases: Option<usize>,
    /// Sequences per minibatch [default: 32].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Length of the training subsequences [default: 32].
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Minibatches per epoch; 0 = one pass over the training episodes [default: 0].
    #[arg(long)]
    pub steps_per_epoch: Option<usize>,
    /// Adam learning rate [default: 0.002].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Target distortion D0 in nats per pixel (constrained objective) [default: 0.05].
    #[arg(long)]
    pub d0: Option<f64>,
    /// Once the rate has entered (authors' schedule), the encoder and decoder learn at
    /// --lr × this factor, the dynamics at --lr; 1 = one learning rate [default: 1].
    #[arg(long)]
    pub ae_lr_factor: Option<f64>,
    /// Cosine learning-rate decay to this fraction of --lr at the last epoch; 1 = constant
    /// [default: 1].
    #[arg(long)]
    pub lr_final_fraction: Option<f64>,
    /// Epochs at the start with the transition's mixing weights frozen uniform (one global
    /// linear model first, as in KVAE's staged training); 0 = never [default: 0].
    #[arg(long)]
    pub freeze_mixing_epochs: Option<usize>,
    /// Compute device: cpu, or cuda / wgpu when compiled with that feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Model selection: train this many candidate seeds (--seed, --seed + 1000, --seed + 2000,
    /// …; as many at a time as there are threads) for --restart-epochs epochs each (in
    /// OUT/restarts/), keep the best — a ring by the fold diagnostic first, then the lowest
    /// validation −ELBO — and continue it to --epochs in OUT. The choice is recorded in
    /// OUT/selection.json. 1 = no selection; at most 1000.
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// Epochs per candidate of --restarts. The default, 20, is where the validation −ELBO
    /// separated the runs that later controlled the pendulum from those that did not, on the
    /// default data (the authors' reconstruction phase ends about epoch 11; before it the
    /// rate is untrained and the −ELBO says nothing about the dynamics).
    #[arg(long, default_value_t = Restarts::default().epochs)]
    pub restart_epochs: usize,
}

impl TrainArgs {
    /// The flags that override the config.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            model: self.model,
            objective: self.objective,
            schedule: self.schedule,
            epochs: self.epochs,
            seed: self.seed,
            aux_dim: self.aux_dim,
            state_dim: self.state_dim,
            bases: self.bases,
            batch: self.batch,
            seq_len: self.seq_len,
            steps_per_epoch: self.steps_per_epoch,
            lr: self.lr,
            d0: self.d0,
            ae_lr_factor: self.ae_lr_factor,
            lr_final_fraction: self.lr_final_fraction,
            freeze_mixing_epochs: self.freeze_mixing_epochs,
        }
    }
}

/// Progress on standard error: a bar per epoch and a line at its end.
pub struct Bar {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Bar {
    /// A bar; `quiet` shows nothing but notes.
    pub fn new(quiet: bool) -> Self {
        Self { bar: None, quiet }
    }
}

impl Reporter for Bar {
    fn progress(&mut self, _what: &std::path::Path) -> &mut dyn Progress {
        self
    }
    fn note(&mut self, message: &str) {
        eprintln!("{message}");
    }
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
    }
    fn step(&mut self, s: &StepStats) {
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

/// Run `ekvae train`.
pub fn run(args: TrainArgs) -> Result<()> {
    let device = device_from_name(&args.device)?;
    let data = load_dataset(&args.data)?;
    let overrides = args.overrides();
    let mut config = if args.resume {
        let mut changed = overrides.set_names();
        changed.retain(|f| *f != "--epochs");
        if args.config.is_some() {
            changed.push("--config");
        }
        if !changed.is_empty() {
            eprintln!(
                "note: --resume continues the run in {} with its recorded config; only --epochs can change, so {} {} ignored",
                args.out.display(),
                changed.join(", "),
                if changed.len() == 1 { "is" } else { "are" }
            );
        }
        // Only the epochs are taken from here.
        let mut c = ekvae_model::rundir::RunDir::new(&args.out).read_config().unwrap_or_default();
        // The run continues on its own data: another file would train a mix that the run's
        // record does not name.
        if !c.data_sha256.is_empty() {
            let bytes = std::fs::read(&args.data)
                .with_context(|| format!("cannot read {}", args.data.display()))?;
            if ekvae_model::rundir::FileDigest::of(&bytes).sha256 != c.data_sha256 {
                bail!(
                    "{}: not the data the run in {} was trained on (its config.toml records {} and its SHA-256); resume with those data, or train a new run on these",
                    args.data.display(),
                    args.out.display(),
                    c.data
                );
            }
        }
        if let Some(e) = args.epochs {
            c.epochs = e;
        }
        c
    } else {
        resolve_config(args.config.as_deref(), &overrides, &data, &args.data)?
    };
    config.commit = crate::writers::COMMIT.to_string();
    if !args.quiet && !args.resume {
        eprintln!(
            "training {} with the {} objective on {} ({} episodes × {} steps, {}×{}) → {}",
            config.model.inference,
            config.objective,
            args.data.display(),
            data.episodes,
            data.steps,
            data.size,
            data.size,
            args.out.display()
        );
    }
    let cfg_d0 = config.lambda.d0;
    let cfg_env = config.env.clone();
    let mut bar = Bar::new(args.quiet);
    let job = TrainJob {
        config,
        data: &data,
        out: args.out.clone(),
        resume: args.resume,
        restarts: Restarts { candidates: args.restarts, epochs: args.restart_epochs },
        device,
    };
    let trained = train_run(job, &mut bar)?;
    let rows = trained.rows;
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
        // Runs with a fold diagnostic (the pendulum, the cart-pole's pole) have a clearance.
        if r.winding.abs() != 1
            && (cfg_env == ekvae_model::train::PENDULUM || !r.clearance.is_nan())
        {
            eprintln!("{}", fold_warning(r.winding, r.clearance));
        }
        if r.phase == ekvae_model::Phase::Reconstruction {
            eprintln!(
                "warning: the distortion never fell below D0 = {cfg_d0} nats/pixel, so the rate (the dynamics) was never trained; raise --d0 or train longer"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use ekvae_model::train::TrainConfig;

    /// The defaults written by hand in `train --help` are the config's real defaults.
    #[test]
    fn help_shows_the_real_defaults() {
        let d = TrainConfig::default();
        let cmd = crate::cli::Cli::command();
        let train = cmd.find_subcommand("train").expect("a train subcommand");
        let help = |long: &str| -> String {
            let arg = train.get_arguments().find(|a| a.get_long() == Some(long)).expect(long);
            arg.get_help().expect("documented").to_string()
        };
        for (flag, value) in [
            ("model", d.model.inference.to_string()),
            ("objective", d.objective.to_string()),
            ("schedule", format!("{:?}", d.lambda.schedule).to_lowercase()),
            ("epochs", d.epochs.to_string()),
            ("seed", d.seed.to_string()),
            ("aux-dim", d.model.aux_dim.to_string()),
            ("state-dim", d.model.state_dim.to_string()),
            ("bases", d.model.num_bases.to_string()),
            ("batch", d.batch_size.to_string()),
            ("seq-len", d.seq_len.to_string()),
            ("steps-per-epoch", d.steps_per_epoch.to_string()),
            ("lr", d.learning_rate.to_string()),
            ("d0", d.lambda.d0.to_string()),
            ("ae-lr-factor", d.ae_lr_factor.to_string()),
            ("lr-final-fraction", d.lr_final_fraction.to_string()),
            ("freeze-mixing-epochs", d.freeze_mixing_epochs.to_string()),
        ] {
            let text = help(flag);
            assert!(text.contains(&format!("[default: {value}]")), "--{flag}: {text}");
        }
    }
}
