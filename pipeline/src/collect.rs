//! Collecting a dataset as a library stage: [`collect_to`] checks the settings and the output
//! before the work, collects with [`ekvae_envs::collect::collect`] and saves atomically.

use std::path::Path;
use std::sync::Arc;

use ekvae_envs::collect::{CollectConfig, PolicySpec, collect};
use ekvae_envs::system::PendulumSystem;
use ekvae_envs::{Dataset, System};

use crate::{Context, Error, Result, invalid};

/// The model trains on images whose side is a multiple of this.
pub const MODEL_SIZE_STEP: usize = 8;

/// A collection: system, episodes, policy and worker threads.
#[derive(Debug, Clone)]
pub struct CollectJob {
    /// The environment (from a [`ekvae_envs::Registry`]).
    pub system: Arc<dyn System>,
    /// Episodes, steps, image size, seed.
    pub config: CollectConfig,
    /// The behaviour policy.
    pub policy: PolicySpec,
    /// Worker threads (`None`: rayon's default).
    pub threads: Option<usize>,
}

impl CollectJob {
    /// Random-action episodes (i.i.d. U(−2, 2) torques) of the default pendulum, on all
    /// cores: the datasets of training and evaluation.
    pub fn uniform(episodes: usize, steps: usize, size: usize, seed: u64) -> Self {
        Self::of(Arc::new(PendulumSystem::default()), episodes, steps, size, seed)
    }

    /// Episodes of `system` under its default policy, on all cores.
    pub fn of(
        system: Arc<dyn System>,
        episodes: usize,
        steps: usize,
        size: usize,
        seed: u64,
    ) -> Self {
        Self {
            system,
            config: CollectConfig { episodes, steps, size, seed },
            policy: PolicySpec::default(),
            threads: None,
        }
    }

    /// Checks the settings and the memory the dataset needs, before any work.
    pub fn check(&self) -> Result<()> {
        let cfg = &self.config;
        cfg.check(self.system.as_ref())?;
        if !cfg.size.is_multiple_of(MODEL_SIZE_STEP) {
            invalid!(
                "invalid --size {}: the model trains on images whose side is a multiple of {MODEL_SIZE_STEP} (8, 16, 24, 32, …); use one of those",
                cfg.size
            );
        }
        // Bounds before allocation: the whole dataset is built in memory before it is written.
        let bytes = cfg
            .total_image_bytes(self.system.channels())
            .and_then(|b| {
                let per_step =
                    8 + 4 * self.system.action_dim() + 8 * self.system.state_names().len();
                b.checked_add(cfg.episodes.checked_mul(cfg.steps)?.checked_mul(per_step)?)
            })
            .map(|b| b as u64);
        ekvae_envs::fsio::check_memory(
            bytes,
            "this dataset (--episodes × --steps × --size²)",
            "lower --episodes, --steps or --size",
        )?;
        if self.threads == Some(0) {
            invalid!("invalid --threads: must be at least 1");
        }
        Ok(())
    }

    /// Collects in memory; `progress(k)` is called as k more episodes finish.
    pub fn run(&self, progress: &(dyn Fn(usize) + Sync)) -> Result<Dataset> {
        self.check()?;
        let work = || collect(&self.config, self.system.as_ref(), &self.policy, progress);
        Ok(match self.threads {
            Some(n) => rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| Error::invalid(format!("cannot start the worker threads: {e}")))?
                .install(work),
            None => work(),
        }?)
    }
}

/// Checks that `out` can be written (its folder is created), before any work.
pub fn prepare_output(out: &Path) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if dir.exists() && !dir.is_dir() {
            invalid!("{}: not a folder, so {} cannot be written", dir.display(), out.display());
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::File(format!("{}: cannot create the output folder: {e}", dir.display()))
        })?;
    }
    ekvae_envs::dataset::check_writable(out)?;
    Ok(())
}

/// Checks, collects and saves `job` to `out` (atomically); returns the dataset.
pub fn collect_to(
    job: &CollectJob,
    out: &Path,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Dataset> {
    job.check()?;
    prepare_output(out)?;
    let data = job.run(progress)?;
    data.save(out).with_context(|| format!("saving {}", out.display()))?;
    Ok(data)
}

/// Episode order of a merge: shuffled with this seed (so that the validation split, which
/// takes the last episodes, is a random split of the merged data), or kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOrder {
    /// A seeded Fisher–Yates shuffle of the episodes.
    Shuffled(u64),
    /// The inputs' episodes one after the other.
    Kept,
}

/// Loads the datasets `inputs`, merges their episodes into one ([`Dataset::concat`]: one
/// environment, one shape) in `order`, and saves the result to `out` atomically; `out` may not
/// be one of the inputs. Returns the merged dataset.
pub fn merge_to(inputs: &[&Path], out: &Path, order: MergeOrder) -> Result<Dataset> {
    if inputs.len() < 2 {
        invalid!("give at least two datasets to merge");
    }
    ekvae_envs::fsio::check_distinct(out, inputs)?;
    prepare_output(out)?;
    let parts = inputs.iter().map(|p| crate::train::load_dataset(p)).collect::<Result<Vec<_>>>()?;
    let refs: Vec<&Dataset> = parts.iter().collect();
    let merged = Dataset::concat(&refs).map_err(|e| {
        let names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        Error::invalid(format!("{} (parts in order: {})", e, names.join(", ")))
    })?;
    let mut merged = match order {
        MergeOrder::Kept => merged,
        MergeOrder::Shuffled(seed) => {
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
            let mut idx: Vec<usize> = (0..merged.episodes).collect();
            for i in (1..idx.len()).rev() {
                let j = (ekvae_envs::space::uniform(&mut rng, 0.0, (i + 1) as f64) as usize).min(i);
                idx.swap(i, j);
            }
            let mut m = merged.select(&idx)?;
            m.meta.seeding = format!("{} (episodes shuffled with seed {seed})", m.meta.seeding);
            m
        }
    };
    merged.meta.generator = format!("ekvae-envs {} (merge)", env!("CARGO_PKG_VERSION"));
    merged.save(out).with_context(|| format!("saving {}", out.display()))?;
    Ok(merged)
}
