//! Training as a library stage: a run's config from the defaults, a user's TOML file and
//! overrides ([`resolve_config`]), and [`train_run`], which trains into a run directory, with
//! optional model selection over seeds ([`Restarts`], recorded in `selection.json`).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use ekvae_envs::Dataset;
use ekvae_model::data::Sequences;
use ekvae_model::rundir::RunDir;
use ekvae_model::train::{EpochRow, Progress, TrainConfig, train};
use ekvae_model::{Inference, LambdaConfig, Objective, ScheduleKind};
use serde::{Deserialize, Serialize};

use crate::{Context, Error, Result, invalid};

/// Load a dataset file; the error names the file.
pub fn load_dataset(path: &Path) -> Result<Dataset> {
    Dataset::load(path).with_context(|| format!("cannot load dataset {}", path.display()))
}

/// Settings that override a config, field by field (`None`: keep). The command line's
/// `train` flags map one to one onto these.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Inference: the EKVAE or the RNN baseline.
    pub model: Option<Inference>,
    /// Objective.
    pub objective: Option<Objective>,
    /// λ schedule; switching schedules switches to that schedule's constants (D0 is kept).
    pub schedule: Option<ScheduleKind>,
    /// Epochs.
    pub epochs: Option<usize>,
    /// Seed of initialisation, minibatches and noise.
    pub seed: Option<u64>,
    /// Dimension m of the auxiliary observation.
    pub aux_dim: Option<usize>,
    /// Dimension n of the latent state.
    pub state_dim: Option<usize>,
    /// Number K of base matrices.
    pub bases: Option<usize>,
    /// Sequences per minibatch.
    pub batch: Option<usize>,
    /// Training subsequence length.
    pub seq_len: Option<usize>,
    /// Minibatches per epoch (0 = one pass).
    pub steps_per_epoch: Option<usize>,
    /// Adam learning rate.
    pub lr: Option<f64>,
    /// Target distortion D0 (nats/pixel).
    pub d0: Option<f64>,
    /// Encoder/decoder learning-rate factor once the rate has entered.
    pub ae_lr_factor: Option<f64>,
    /// Cosine decay to this fraction of the learning rate.
    pub lr_final_fraction: Option<f64>,
    /// Epochs with the mixing weights frozen uniform.
    pub freeze_mixing_epochs: Option<usize>,
}

impl Overrides {
    /// The flags of the settings that are set, by their command-line names (for messages).
    pub fn set_names(&self) -> Vec<&'static str> {
        [
            ("--model", self.model.is_some()),
            ("--objective", self.objective.is_some()),
            ("--schedule", self.schedule.is_some()),
            ("--seed", self.seed.is_some()),
            ("--aux-dim", self.aux_dim.is_some()),
            ("--state-dim", self.state_dim.is_some()),
            ("--bases", self.bases.is_some()),
            ("--batch", self.batch.is_some()),
            ("--seq-len", self.seq_len.is_some()),
            ("--steps-per-epoch", self.steps_per_epoch.is_some()),
            ("--lr", self.lr.is_some()),
            ("--d0", self.d0.is_some()),
            ("--ae-lr-factor", self.ae_lr_factor.is_some()),
            ("--lr-final-fraction", self.lr_final_fraction.is_some()),
            ("--freeze-mixing-epochs", self.freeze_mixing_epochs.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect()
    }

    /// Applies the set fields to `cfg`.
    pub fn apply(&self, cfg: &mut TrainConfig) {
        if let Some(v) = self.model {
            cfg.model.inference = v;
        }
        if let Some(v) = self.objective {
            cfg.objective = v;
        }
        if let Some(v) = self.epochs {
            cfg.epochs = v;
        }
        if let Some(v) = self.seed {
            cfg.seed = v;
            cfg.model.seed = v;
        }
        if let Some(v) = self.aux_dim {
            cfg.model.aux_dim = v;
        }
        if let Some(v) = self.state_dim {
            cfg.model.state_dim = v;
        }
        if let Some(v) = self.bases {
            cfg.model.num_bases = v;
        }
        if let Some(v) = self.batch {
            cfg.batch_size = v;
        }
        if let Some(v) = self.seq_len {
            cfg.seq_len = v;
        }
        if let Some(v) = self.steps_per_epoch {
            cfg.steps_per_epoch = v;
        }
        if let Some(v) = self.lr {
            cfg.learning_rate = v;
        }
        if let Some(v) = self.schedule.filter(|&v| v != cfg.lambda.schedule) {
            let d0 = cfg.lambda.d0;
            cfg.lambda = match v {
                ScheduleKind::Authors => LambdaConfig::default(),
                ScheduleKind::Fast => LambdaConfig::fast(),
            };
            cfg.lambda.d0 = d0;
        }
        if let Some(v) = self.d0 {
            cfg.lambda.d0 = v;
        }
        if let Some(v) = self.ae_lr_factor {
            cfg.ae_lr_factor = v;
        }
        if let Some(v) = self.lr_final_fraction {
            cfg.lr_final_fraction = v;
        }
        if let Some(v) = self.freeze_mixing_epochs {
            cfg.freeze_mixing_epochs = v;
        }
    }
}

/// A run's config: the built-in defaults, or a user's TOML file (any subset of the fields of a
/// run's `config.toml`), then `overrides`. The image size and the action dimension are the
/// data's; a config file that says otherwise is refused. `data_path` is recorded in the
/// config.
pub fn resolve_config(
    config_file: Option<&Path>,
    overrides: &Overrides,
    data: &Dataset,
    data_path: &Path,
) -> Result<TrainConfig> {
    let seqs = Sequences::from(data);
    let mut cfg = match config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::File(format!("cannot read config {}: {e}", path.display())))?;
            let cfg = TrainConfig::from_toml(&text).map_err(|e| {
                Error::File(format!("{}: invalid config: {}", path.display(), e.message()))
            })?;
            // The data decide the image size and channels and the action dimension; a file that names
            // others is for other data.
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                Error::File(format!("{}: invalid config: {}", path.display(), e.message()))
            })?;
            let model = table.get("model").and_then(toml::Value::as_table);
            let named =
                |key: &str| model.and_then(|m| m.get(key)).and_then(toml::Value::as_integer);
            for (key, wanted) in [
                ("image_size", data.size),
                ("image_channels", data.channels),
                ("action_dim", seqs.action_dim),
            ] {
                if let Some(v) = named(key)
                    && v != wanted as i64
                {
                    let (said, has, fix) = if key == "image_size" {
                        (
                            format!("{v}×{v} images"),
                            format!("{wanted}×{wanted} images"),
                            format!("collect with --size {v}"),
                        )
                    } else if key == "image_channels" {
                        (
                            format!("frames of {v} channel(s)"),
                            format!("frames of {wanted} channel(s)"),
                            "use matching data".into(),
                        )
                    } else {
                        (
                            format!("{v}-d actions"),
                            format!("{wanted}-d actions"),
                            "use matching data".into(),
                        )
                    };
                    invalid!(
                        "{}: model.{key} = {v} is for {said} but the data {} have {has}; remove {key} from the config (it follows the data) or {fix}",
                        path.display(),
                        data_path.display()
                    );
                }
            }
            cfg
        }
        None => TrainConfig::default(),
    };
    cfg.model.image_size = data.size;
    cfg.model.image_channels = data.channels;
    cfg.model.action_dim = seqs.action_dim;
    cfg.env = data.meta.env.clone();
    overrides.apply(&mut cfg);
    // Recorded absolute, so that the run finds its data from any folder, with the file's
    // digest, so that another file at that path is noticed.
    cfg.data = std::path::absolute(data_path)
        .unwrap_or_else(|_| data_path.to_path_buf())
        .display()
        .to_string();
    cfg.data_sha256 = std::fs::read(data_path)
        .map(|bytes| ekvae_model::rundir::FileDigest::of(&bytes).sha256)
        .unwrap_or_default();
    cfg.check()?;
    Ok(cfg)
}

/// The data at `given` (a flag's value), else the run's recorded training data
/// ([`recorded_training_data`]), with the path they were read from.
pub fn given_or_recorded_data(
    given: Option<&Path>,
    run: &Path,
    cfg: &TrainConfig,
    flag: &str,
) -> Result<(PathBuf, Dataset)> {
    Ok(match given {
        Some(p) => (p.to_path_buf(), load_dataset(p).with_context(|| format!("loading {flag}"))?),
        None => (PathBuf::from(&cfg.data), recorded_training_data(run, cfg, flag)?),
    })
}

/// The training data a run records (its `config.toml`'s `data`), for a reader that needs them
/// back (evaluation's readout, the reward fit); `flag` is the option that gives them instead.
/// A relative path (runs made before paths were recorded absolute) is resolved against the
/// current folder, as those runs' users did. When the run records the file's SHA-256, a file
/// with another digest is refused: it is not the data the run was trained on.
pub fn recorded_training_data(run: &Path, cfg: &TrainConfig, flag: &str) -> Result<Dataset> {
    if cfg.data.trim().is_empty() {
        invalid!(
            "{}: the run records no training data path; give it with {flag}",
            run.join("config.toml").display()
        );
    }
    let path = PathBuf::from(&cfg.data);
    if !cfg.data_sha256.is_empty() {
        let bytes = std::fs::read(&path).map_err(|e| {
            Error::File(format!(
                "{}: cannot read the run's training data ({e}), recorded in {}; give it with {flag}",
                path.display(),
                run.join("config.toml").display()
            ))
        })?;
        let found = ekvae_model::rundir::FileDigest::of(&bytes).sha256;
        if found != cfg.data_sha256 {
            invalid!(
                "{}: this is not the file the run in {} was trained on (SHA-256 {}…, the run records {}…); give the training data with {flag}",
                path.display(),
                run.display(),
                &found[..12],
                &cfg.data_sha256[..12.min(cfg.data_sha256.len())]
            );
        }
    }
    load_dataset(&path).with_context(|| format!("loading the training data (override with {flag})"))
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

/// Model selection over seeds: train `candidates` seeds for `epochs` each in
/// `OUT/restarts/seed-K/` (as many at a time as there are threads), keep the best — a ring by
/// the fold diagnostic first, then the lowest validation −ELBO — and continue it to the full
/// number of epochs in `OUT`. Candidate `i` has seed `seed + i ·` [`CANDIDATE_SEED_STRIDE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restarts {
    /// Number of candidate seeds (1 = no selection).
    pub candidates: usize,
    /// Epochs per candidate.
    pub epochs: usize,
}

/// The distance between the seeds of two successive candidates of [`Restarts`]: candidate `i`
/// of a run with seed `s` has seed `s + 1000 i`, so runs with neighbouring seeds (a grid's
/// seeds 0–9) do not share candidates.
pub const CANDIDATE_SEED_STRIDE: u64 = 1000;

/// The most candidates [`Restarts`] accepts (each is a training run of its own).
pub const MAX_CANDIDATES: usize = 1000;

impl Default for Restarts {
    /// No selection; 20 candidate epochs when enabled. Measured on the default data (16×16,
    /// seeds 0–9 and 100–104 of the default recipe): by epoch 20 the validation −ELBO of every
    /// run whose model later controlled the pendulum (≤ 11.15 nats/frame) was below that of
    /// every run that did not (≥ 11.48); at epoch 15, shortly after the authors'
    /// reconstruction phase ends (about epoch 11), the two groups still overlapped.
    fn default() -> Self {
        Self { candidates: 1, epochs: 20 }
    }
}

/// One candidate of [`Restarts`], as recorded in `selection.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Its seed.
    pub seed: u64,
    /// Validation −ELBO (nats/frame) after the candidate epochs.
    pub val_neg_elbo: f64,
    /// Fold diagnostic after the candidate epochs.
    pub winding: i32,
}

/// `selection.json`: how the run's seed was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// How many candidates the run in `run` was selected from (1 without a selection record).
pub fn selected_from(run: &Path) -> Result<usize> {
    let path = run.join(SELECTION_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let s: Selection = serde_json::from_str(&text).map_err(|e| {
                Error::File(format!("{}: not a selection record: {e}", path.display()))
            })?;
            Ok(s.candidates.len())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(1),
        Err(e) => Err(Error::File(format!("cannot read {}: {e}", path.display()))),
    }
}

/// What [`train_run`] reports on the way.
pub trait Reporter {
    /// The progress of the training of `what` (a candidate's directory, or the run).
    fn progress(&mut self, what: &Path) -> &mut dyn Progress;
    /// A line worth telling the user (a candidate starting, the selection made).
    fn note(&mut self, message: &str);
}

/// A [`Reporter`] that reports nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start_epoch(&mut self, _: usize, _: usize, _: usize) {}
    fn step(&mut self, _: &ekvae_model::train::StepStats) {}
    fn end_epoch(&mut self, _: &EpochRow) {}
}

impl Reporter for Silent {
    fn progress(&mut self, _: &Path) -> &mut dyn Progress {
        self
    }
    fn note(&mut self, _: &str) {}
}

/// A training job: a resolved config, its data, and where it goes.
#[derive(Debug)]
pub struct TrainJob<'a> {
    /// The run's config (see [`resolve_config`]; with `resume`, the run's own is used and only
    /// its `epochs` is taken from here).
    pub config: TrainConfig,
    /// The training data.
    pub data: &'a Dataset,
    /// The run directory.
    pub out: PathBuf,
    /// Continue the run in `out` (only the number of epochs may change).
    pub resume: bool,
    /// Model selection over seeds (not with `resume`).
    pub restarts: Restarts,
    /// The compute device.
    pub device: Device,
}

/// What [`train_run`] did.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The config trained with.
    pub config: TrainConfig,
    /// The rows of the epochs trained now (empty if the run already had all its epochs).
    pub rows: Vec<EpochRow>,
    /// The selection, when [`Restarts::candidates`] > 1.
    pub selection: Option<Selection>,
}

/// Trains `job`: checks the bounds, selects a seed if asked, trains into `job.out` (resuming
/// bit for bit with `job.resume`), and records the selection in `selection.json`.
pub fn train_run(job: TrainJob<'_>, reporter: &mut dyn Reporter) -> Result<Trained> {
    let seqs = Sequences::from(job.data);
    let run = RunDir::new(&job.out);
    let mut cfg = if job.resume {
        // The run directory's owner says first whether there is anything to resume.
        run.plan(true)?;
        let mut c = run.read_config()?;
        c.epochs = job.config.epochs;
        c
    } else {
        job.config
    };
    let val_episodes = job.data.episodes
        - ekvae_envs::dataset::validation_split(job.data.episodes, cfg.val_fraction);
    ekvae_envs::fsio::check_memory(
        step_memory_bytes(&cfg, job.data.steps, val_episodes),
        "one training step (--batch × --seq-len frames) or a validation chunk",
        "lower --batch or --seq-len",
    )?;
    if job.restarts.candidates == 0 || job.restarts.candidates > MAX_CANDIDATES {
        invalid!("--restarts must be 1 to {MAX_CANDIDATES} (got {})", job.restarts.candidates);
    }
    if job.restarts.candidates > 1 && job.restarts.epochs == 0 {
        invalid!("--restart-epochs must be at least 1");
    }
    let mut selection = None;
    if job.restarts.candidates > 1 {
        if job.resume {
            invalid!(
                "--restarts selects a seed for a new run; --resume continues one (drop --restarts)"
            );
        }
        if run.read_state().is_ok() {
            invalid!(
                "{} already holds a trained run; use --resume to continue it (without --restarts) or choose another --out",
                job.out.display()
            );
        }
        let s = select_seed(&cfg, &seqs, &job.out, job.restarts, &job.device, reporter)?;
        cfg.seed = s.chosen_seed;
        cfg.model.seed = s.chosen_seed;
        std::fs::create_dir_all(&job.out)
            .map_err(|e| Error::File(format!("cannot create {}: {e}", job.out.display())))?;
        let json = serde_json::to_string_pretty(&s).expect("a selection serialises");
        ekvae_model::rundir::write_atomic(&job.out.join(SELECTION_FILE), json.as_bytes())?;
        reporter.note(&format!(
            "model selection: seed {} chosen from {} candidates ({} epochs each; {}); recorded in {}; continuing it to epoch {}",
            s.chosen_seed,
            s.candidates.len(),
            s.candidate_epochs,
            s.rule,
            job.out.join(SELECTION_FILE).display(),
            cfg.epochs
        ));
        // The chosen candidate continues from its checkpoint: the same model, bit for bit, as
        // training its seed from scratch (training is deterministic), without the repeat.
        let chosen = candidate_dir(&job.out, s.chosen_seed);
        RunDir::new(&chosen)
            .copy_to(&run)
            .with_context(|| format!("continuing the chosen candidate {}", chosen.display()))?;
        selection = Some(s);
    }
    let resume = job.resume || selection.is_some();
    let rows =
        train(cfg.clone(), &seqs, &job.out, resume, &job.device, reporter.progress(&job.out))
            .with_context(|| format!("training into {}", job.out.display()))?;
    Ok(Trained { config: cfg, rows, selection })
}

/// Where candidate `seed` of a selection in `out` trains.
fn candidate_dir(out: &Path, seed: u64) -> PathBuf {
    out.join("restarts").join(format!("seed-{seed}"))
}

/// Trains the candidates of `cfg` under `out/restarts/` (resuming any that were interrupted),
/// as many at a time as the thread pool has threads (one thread each; a run's result does not
/// depend on its thread count), and returns the selection.
fn select_seed(
    cfg: &TrainConfig,
    seqs: &Sequences,
    out: &Path,
    restarts: Restarts,
    device: &Device,
    reporter: &mut dyn Reporter,
) -> Result<Selection> {
    let epochs = restarts.epochs.min(cfg.epochs);
    let n = restarts.candidates;
    let seeds: Vec<u64> =
        (0..n as u64).map(|i| cfg.seed.wrapping_add(i * CANDIDATE_SEED_STRIDE)).collect();
    let todo: Vec<usize> = (0..n)
        .filter(|&i| {
            let run = RunDir::new(candidate_dir(out, seeds[i]));
            !run.read_state().map(|s| s.epoch >= epochs).unwrap_or(false)
        })
        .collect();
    let workers = rayon::current_num_threads().clamp(1, todo.len().max(1));
    if !todo.is_empty() {
        reporter.note(&format!(
            "model selection: training {} of {n} candidates ({epochs} epochs each, {workers} at a time)",
            todo.len()
        ));
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<()>)>();
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..workers {
            let (tx, next, todo, seeds) = (tx.clone(), &next, &todo, &seeds);
            scope.spawn(move || {
                let pool = match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send((usize::MAX, Err(Error::Invalid(e.to_string()))));
                        return;
                    }
                };
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(&i) = todo.get(k) else { break };
                    let result =
                        pool.install(|| train_candidate(cfg, seqs, out, seeds[i], epochs, device));
                    let failed = result.is_err();
                    if tx.send((i, result)).is_err() || failed {
                        // Stop the other workers after their current candidate.
                        next.store(todo.len(), std::sync::atomic::Ordering::SeqCst);
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut first_error = None;
        for (i, result) in rx {
            match result {
                Ok(()) => reporter.note(&format!(
                    "candidate {}/{n} (seed {}) trained",
                    i.saturating_add(1),
                    seeds.get(i).copied().unwrap_or_default()
                )),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    })?;
    let mut candidates = Vec::new();
    for &seed in &seeds {
        let dir = candidate_dir(out, seed);
        let rows = ekvae_model::rundir::read_metrics(&RunDir::new(&dir).metrics_path())?;
        let Some(last) = rows.iter().find(|r| r.epoch == epochs) else {
            invalid!("{}: no row for epoch {epochs} in metrics.csv", dir.display())
        };
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

/// Trains (or resumes) one candidate of a selection for `epochs` epochs, without progress.
fn train_candidate(
    cfg: &TrainConfig,
    seqs: &Sequences,
    out: &Path,
    seed: u64,
    epochs: usize,
    device: &Device,
) -> Result<()> {
    let dir = candidate_dir(out, seed);
    let mut c = cfg.clone();
    c.seed = seed;
    c.model.seed = seed;
    c.epochs = epochs;
    let run = RunDir::new(&dir);
    let resume = run.read_state().is_ok();
    if !resume && run.holds_run() {
        // Stopped inside its first epoch: nothing to keep.
        std::fs::remove_dir_all(&dir)
            .map_err(|e| Error::File(format!("cannot remove {}: {e}", dir.display())))?;
    }
    train(c, seqs, &dir, resume, device, &mut Silent)
        .with_context(|| format!("training candidate {}", dir.display()))?;
    Ok(())
}

/// The warning printed when the fold diagnostic finds no ring.
pub fn fold_warning(winding: i32, clearance: f64) -> String {
    format!(
        "warning: the latent is folded (fold diagnostic: winding {winding}, clearance {clearance:.2}; a latent that holds the angle has |winding| = 1): a controller on this model will not work; retrain with another --seed or use --restarts"
    )
}
