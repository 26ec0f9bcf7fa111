//! Datasets: `collect` (what `ekvae collect` does, in memory), `load_dataset` and
//! `save_dataset` (the `.npz` of `ekvae_envs::dataset`), as dicts of numpy arrays.

use std::path::PathBuf;

use ekvae_envs::Dataset;
use ekvae_envs::collect::{CollectConfig, PolicySpec};
use ekvae_envs::dataset::{DatasetMeta, FORMAT_VERSION};
use ekvae_envs::pendulum::PendulumParams;
use ekvae_pipeline::collect::CollectJob;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{array, data, exact, shape};
use crate::errors::{IntoPy, to_py, value_error};

/// The dataset as `{"images", "actions", "states", "rewards", "meta"}`, the arrays of the `.npz`
/// with their dtypes and shapes; the buffers move into numpy without a copy.
fn to_dict<'py>(py: Python<'py>, d: Dataset) -> PyResult<Bound<'py, PyDict>> {
    let (n, t, s) = (d.episodes, d.steps, d.size);
    let meta = serde_json::to_vec(&d.meta).map_err(to_py)?;
    let out = PyDict::new(py);
    let meta_len = meta.len();
    out.set_item("images", array(py, d.images, &[n, t, s, s])?)?;
    out.set_item("actions", array(py, d.actions, &[n, t, 1])?)?;
    out.set_item("states", array(py, d.states, &[n, t, 2])?)?;
    out.set_item("rewards", array(py, d.rewards, &[n, t])?)?;
    out.set_item("meta", array(py, meta, &[meta_len])?)?;
    Ok(out)
}

/// Collects random-action rollouts, exactly as `ekvae collect` with the same arguments (and
/// defaults) would write them, but returns the arrays instead of writing a file.
///
/// Returns a dict with `images` (uint8 [N, T, S, S]), `actions` (float32 [N, T, 1]), `states`
/// (float64 [N, T, 2]), `rewards` (float32 [N, T]) and `meta` (uint8 JSON bytes). The result does
/// not depend on `threads`.
#[pyfunction]
#[pyo3(signature = (episodes = 1000, steps = 100, size = 32, seed = 0, policy = "uniform", threads = None))]
pub fn collect<'py>(
    py: Python<'py>,
    episodes: usize,
    steps: usize,
    size: usize,
    seed: u64,
    policy: &str,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    // The checks and the work of `ekvae collect` (size step, memory bound, threads).
    let job = CollectJob {
        config: CollectConfig { episodes, steps, size, seed, params: PendulumParams::default() },
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
    let states = exact::<f64>(&get("states")?, "states", "float64")?;
    let rewards = exact::<f32>(&get("rewards")?, "rewards", "float32")?;
    let meta = exact::<u8>(&get("meta")?, "meta", "uint8")?;
    let sh = shape(&images);
    let [n, t, s, s2] = sh[..] else {
        return Err(value_error(format!("images has shape {sh:?}, expected [N, T, S, S]")));
    };
    if s != s2 {
        return Err(value_error(format!("images has shape {sh:?}: frames must be square")));
    }
    for (name, got, want) in [
        ("actions", shape(&actions), vec![n, t, 1]),
        ("states", shape(&states), vec![n, t, 2]),
        ("rewards", shape(&rewards), vec![n, t]),
    ] {
        if got != want {
            return Err(value_error(format!(
                "{name} has shape {got:?}, expected {want:?} (N and T from images)"
            )));
        }
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
        states: data(&states)?.to_vec(),
        rewards: data(&rewards)?.to_vec(),
        episodes: n,
        steps: t,
        size: s,
        meta,
    };
    py.detach(|| -> anyhow::Result<()> {
        ekvae_envs::dataset::check_writable(&path)?;
        d.save(&path)?;
        Ok(())
    })
    .py()
}
