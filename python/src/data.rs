//! Datasets: `collect` (what `ekvae collect` does, in memory), `load_dataset` and
//! `save_dataset` (the `.npz` of `ekvae_envs::dataset`), as dicts of numpy arrays.

use std::path::PathBuf;

use ekvae_envs::collect::{CollectConfig, PolicySpec};
use ekvae_envs::dataset::{DatasetMeta, FORMAT_VERSION};
use ekvae_envs::{Dataset, Registry};
use ekvae_pipeline::collect::CollectJob;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{array, data, exact, shape};
use crate::errors::{IntoPy, to_py, value_error};

/// The dataset as `{"images", "actions", "states", "rewards", "meta"}`, the arrays of the `.npz`
/// with their dtypes and shapes (`states` and `rewards` only when the dataset has them); the
/// buffers move into numpy without a copy.
fn to_dict<'py>(py: Python<'py>, d: Dataset) -> PyResult<Bound<'py, PyDict>> {
    let (n, t, s, c) = (d.episodes, d.steps, d.size, d.channels);
    let meta = serde_json::to_vec(&d.file_meta()).map_err(to_py)?;
    let out = PyDict::new(py);
    let meta_len = meta.len();
    let image_shape = if c == 1 { vec![n, t, s, s] } else { vec![n, t, s, s, c] };
    out.set_item("images", array(py, d.images, &image_shape)?)?;
    out.set_item("actions", array(py, d.actions, &[n, t, d.action_dim])?)?;
    if d.state_dim > 0 {
        out.set_item("states", array(py, d.states, &[n, t, d.state_dim])?)?;
    }
    if !d.rewards.is_empty() {
        out.set_item("rewards", array(py, d.rewards, &[n, t])?)?;
    }
    out.set_item("meta", array(py, meta, &[meta_len])?)?;
    Ok(out)
}

/// Collects random-action rollouts, exactly as `ekvae collect` with the same arguments (and
/// defaults) would write them, but returns the arrays instead of writing a file.
///
/// Returns a dict with `images` (uint8 [N, T, S, S]), `actions` (float32 [N, T, A]), `states`
/// (float64 [N, T, D]; the pendulum's θ, θ̇), `rewards` (float32 [N, T]) and `meta` (uint8 JSON
/// bytes). `env` is a registry id (`Pendulum-v1`, `CartPoleSwingUp-v0`,
/// `CartPoleSwingUpBigPole-v0`, `CartPoleSwingUpBigPoleGhost-v0`). The result does not depend on
/// `threads`.
#[pyfunction]
#[pyo3(signature = (episodes = 1000, steps = 100, size = 32, seed = 0, policy = "default", threads = None, env = "Pendulum-v1"))]
#[allow(clippy::too_many_arguments)]
pub fn collect<'py>(
    py: Python<'py>,
    episodes: usize,
    steps: usize,
    size: usize,
    seed: u64,
    policy: &str,
    threads: Option<usize>,
    env: &str,
) -> PyResult<Bound<'py, PyDict>> {
    // The checks and the work of `ekvae collect` (size step, memory bound, threads).
    let job = CollectJob {
        system: Registry::builtin().get(env).map_err(anyhow::Error::from).py()?,
        config: CollectConfig { episodes, steps, size, seed },
        policy: policy.parse::<PolicySpec>().py()?,
        threads,
    };
    job.check().map_err(anyhow::Error::from).py()?;
    let data = py.detach(|| job.run(&|_| {}).map_err(anyhow::Error::from));
    to_dict(py, data.py()?)
}

/// Reads and validates a dataset `.npz` (what `ekvae train` and `ekvae inspect` accept);
/// errors carry the command line's message.
#[pyfunction]
pub fn load_dataset(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyDict>> {
    let d = py.detach(|| Dataset::load(&path)).py()?;
    to_dict(py, d)
}

/// Writes a dataset dict (as returned by `collect` or `load_dataset`) to `path` atomically, in
/// the format `ekvae` reads; every array must have the dataset's dtype and consistent shapes.
#[pyfunction]
pub fn save_dataset(py: Python<'_>, path: PathBuf, dataset: &Bound<'_, PyDict>) -> PyResult<()> {
    let get = |name: &str| -> PyResult<Bound<'_, PyAny>> {
        dataset.get_item(name)?.ok_or_else(|| value_error(format!("dataset has no {name:?} array")))
    };
    let images = exact::<u8>(&get("images")?, "images", "uint8")?;
    let actions = exact::<f32>(&get("actions")?, "actions", "float32")?;
    let states = match dataset.get_item("states")? {
        Some(a) => Some(exact::<f64>(&a, "states", "float64")?),
        None => None,
    };
    let rewards = match dataset.get_item("rewards")? {
        Some(a) => Some(exact::<f32>(&a, "rewards", "float32")?),
        None => None,
    };
    let meta = exact::<u8>(&get("meta")?, "meta", "uint8")?;
    let sh = shape(&images);
    let (n, t, s, s2, c) = match sh[..] {
        [n, t, s, s2] => (n, t, s, s2, 1),
        [n, t, s, s2, c] => (n, t, s, s2, c),
        _ => {
            return Err(value_error(format!(
                "images has shape {sh:?}, expected [N, T, S, S] or [N, T, S, S, C]"
            )));
        }
    };
    if s != s2 {
        return Err(value_error(format!("images has shape {sh:?}: frames must be square")));
    }
    let dim3 = |name: &str, got: Vec<usize>| -> PyResult<usize> {
        match got[..] {
            [a, b, k] if (a, b) == (n, t) && k >= 1 => Ok(k),
            _ => Err(value_error(format!(
                "{name} has shape {got:?}, expected [{n}, {t}, K] with K ≥ 1 (N and T from images)"
            ))),
        }
    };
    let a = dim3("actions", shape(&actions))?;
    let d = match &states {
        Some(st) => dim3("states", shape(st))?,
        None => 0,
    };
    if let Some(r) = &rewards
        && shape(r) != vec![n, t]
    {
        return Err(value_error(format!(
            "rewards has shape {:?}, expected [{n}, {t}] (N and T from images)",
            shape(r)
        )));
    }
    let meta: DatasetMeta = serde_json::from_slice(data(&meta)?)
        .map_err(|e| value_error(format!("meta is not the dataset's JSON metadata: {e}")))?;
    if meta.format_version != FORMAT_VERSION {
        return Err(value_error(format!(
            "meta says format version {}, this build writes version {FORMAT_VERSION}",
            meta.format_version
        )));
    }
    let d = Dataset {
        images: data(&images)?.to_vec(),
        actions: data(&actions)?.to_vec(),
        states: match &states {
            Some(st) => data(st)?.to_vec(),
            None => Vec::new(),
        },
        rewards: match &rewards {
            Some(r) => data(r)?.to_vec(),
            None => Vec::new(),
        },
        episodes: n,
        steps: t,
        size: s,
        channels: c,
        action_dim: a,
        state_dim: d,
        meta,
    };
    py.detach(|| -> anyhow::Result<()> {
        ekvae_envs::dataset::check_writable(&path)?;
        d.save(&path)?;
        Ok(())
    })
    .py()
}
