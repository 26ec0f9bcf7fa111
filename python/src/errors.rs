//! Rust errors as Python exceptions, with the one-line message the `ekvae` command line prints
//! after `error: ` (the error and its causes joined by `: `, as anyhow's `{:#}` does).
//!
//! - invalid arguments (a size below the minimum, an unknown policy, a frame of the wrong
//!   size) → `ValueError`;
//! - operating-system errors → `FileNotFoundError`, `PermissionError` or `OSError`;
//! - everything else (a damaged dataset, a run directory that is not one, a numerical
//!   failure) → `ekvae.EkvaeError`.

use pyo3::exceptions::{
    PyException, PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError,
};
use pyo3::prelude::*;

pyo3::create_exception!(
    ekvae,
    EkvaeError,
    PyException,
    "An error reported by the ekvae library (a bad file, run directory or numerical failure); the message is the one line the `ekvae` command line prints."
);

/// What kind of Python exception an error becomes.
enum Kind {
    Value,
    Os(std::io::ErrorKind),
    Other,
}

fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

/// The kind of a library crate's error.
fn envs_kind(e: &ekvae_envs::Error) -> Kind {
    use ekvae_envs::Error as E;
    match e {
        E::InvalidArgument { .. } | E::Inconsistent(_) => Kind::Value,
        E::Io { source, .. } => Kind::Os(source.kind()),
        _ => Kind::Other,
    }
}

fn model_kind(e: &ekvae_model::Error) -> Kind {
    use ekvae_model::Error as M;
    match e {
        M::InvalidConfig(_) | M::InvalidSetting(_) | M::ShapeMismatch(_) => Kind::Value,
        M::Io { source, .. } => Kind::Os(source.kind()),
        M::Envs(inner) => envs_kind(inner),
        _ => Kind::Other,
    }
}

fn pipeline_kind(e: &ekvae_pipeline::Error) -> Kind {
    use ekvae_pipeline::Error as P;
    match e {
        P::Invalid(_) => Kind::Value,
        P::Envs(inner) => envs_kind(inner),
        P::Model(inner) => model_kind(inner),
        P::Context { source, .. } => pipeline_kind(source),
        _ => Kind::Other,
    }
}

fn kind(err: &anyhow::Error) -> Kind {
    use ekvae_envs::Error as E;
    use ekvae_model::Error as M;
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ekvae_pipeline::Error>() {
            return pipeline_kind(e);
        }
        if let Some(e) = cause.downcast_ref::<E>() {
            return match e {
                E::InvalidArgument { .. } | E::Inconsistent(_) => Kind::Value,
                E::Io { source, .. } => Kind::Os(source.kind()),
                _ => Kind::Other,
            };
        }
        if let Some(e) = cause.downcast_ref::<M>() {
            return match e {
                M::InvalidConfig(_) | M::InvalidSetting(_) | M::ShapeMismatch(_) => Kind::Value,
                M::Io { source, .. } => Kind::Os(source.kind()),
                M::Envs(inner) => match inner {
                    E::InvalidArgument { .. } | E::Inconsistent(_) => Kind::Value,
                    E::Io { source, .. } => Kind::Os(source.kind()),
                    _ => Kind::Other,
                },
                _ => Kind::Other,
            };
        }
        if cause.downcast_ref::<ArgumentError>().is_some() {
            return Kind::Value;
        }
    }
    match io_kind(err.as_ref()) {
        Some(k) => Kind::Os(k),
        None => Kind::Other,
    }
}

/// An invalid argument detected by the bindings themselves (becomes `ValueError`).
#[derive(Debug)]
pub struct ArgumentError(pub String);

impl std::fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgumentError {}

/// A `ValueError` with `message`.
pub fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

/// The Python exception for a Rust error.
pub fn to_py(err: impl Into<anyhow::Error>) -> PyErr {
    let err = err.into();
    let message = format!("{err:#}");
    match kind(&err) {
        Kind::Value => PyValueError::new_err(message),
        Kind::Os(std::io::ErrorKind::NotFound) => PyFileNotFoundError::new_err(message),
        Kind::Os(std::io::ErrorKind::PermissionDenied) => PyPermissionError::new_err(message),
        Kind::Os(_) => PyOSError::new_err(message),
        Kind::Other => EkvaeError::new_err(message),
    }
}

/// `Result<T, impl Into<anyhow::Error>>` → `PyResult<T>`.
pub trait IntoPy<T> {
    /// Converts the error with [`to_py`].
    fn py(self) -> PyResult<T>;
}

impl<T, E: Into<anyhow::Error>> IntoPy<T> for Result<T, E> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
