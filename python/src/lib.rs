//! The Python module `ekvae._ekvae`, the native part of the `ekvae` package (`python/ekvae/`):
//! the pendulum environments' cores ([`env`]), datasets ([`data`]), trained runs and their
//! controller ([`model`], [`control`]) and the PyTorch export. Everything calls the library
//! crates; nothing is re-implemented here.

use pyo3::prelude::*;

mod arrays;
mod control;
mod data;
mod env;
mod errors;
mod model;

/// Writes the trained run in `run` as a PyTorch `state_dict` in a safetensors file `out`
/// (see `ekvae_model::export`); returns the number of tensors written.
#[pyfunction]
fn export_pytorch(
    py: Python<'_>,
    run: std::path::PathBuf,
    out: std::path::PathBuf,
) -> PyResult<usize> {
    use errors::IntoPy;
    py.detach(|| ekvae_model::export::export_pytorch(&run, &out)).py()
}

/// The native part of the `ekvae` Python package.
#[pymodule]
fn _ekvae(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("EkvaeError", m.py().get_type::<errors::EkvaeError>())?;
    m.add_class::<env::PendulumCore>()?;
    m.add_class::<env::VectorCore>()?;
    m.add_class::<env::CartPoleCore>()?;
    m.add_class::<model::Run>()?;
    m.add_class::<model::Controller>()?;
    m.add_function(wrap_pyfunction!(data::collect, m)?)?;
    m.add_function(wrap_pyfunction!(data::load_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(data::save_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(model::load_run, m)?)?;
    m.add_function(wrap_pyfunction!(export_pytorch, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
