//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `ekvae-model`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration violates an invariant.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// Tensors or a dataset do not fit the model.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// A training or evaluation setting is out of range.
    #[error("invalid training setting: {0}")]
    InvalidSetting(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint or run file is missing, corrupt or belongs to another configuration.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// The loss or a gradient became NaN or infinite.
    #[error("non-finite {what} at epoch {epoch}, step {step}")]
    NonFinite {
        /// Which quantity.
        what: String,
        /// Epoch (1-based).
        epoch: usize,
        /// Step within the epoch.
        step: usize,
    },
    /// Training stopped on a non-finite value; says truthfully which checkpoint is kept.
    #[error("{cause}; {}", kept_text(.kept))]
    Stopped {
        /// What was not finite, where.
        cause: String,
        /// The epoch of the last good checkpoint, if one exists.
        kept: Option<usize>,
    },
    /// A file error from `ekvae-envs` (the atomic writer, output checks).
    #[error(transparent)]
    Envs(#[from] ekvae_envs::Error),
    /// A tensor argument has the wrong rank or size.
    #[error("shape mismatch for {what}: expected {expected}, got {got:?}")]
    Shape {
        /// Which argument (e.g. `"obs"`, `"emission.h"`).
        what: &'static str,
        /// The expected shape, in words (e.g. `"[B, T, m] with m = 2"`).
        expected: String,
        /// The shape found.
        got: Vec<usize>,
    },
    /// Tensor arguments that are combined have different float dtypes.
    #[error("dtype mismatch: {what} is {got:?} but the observations are {expected:?}")]
    DType {
        /// Which argument.
        what: &'static str,
        /// The dtype of the observations.
        expected: burn::tensor::DType,
        /// The dtype found.
        got: burn::tensor::DType,
    },
    /// A matrix that must be symmetric positive definite is not (its Cholesky
    /// factor has a non-positive or non-finite pivot), or a result is not finite.
    #[error(
        "{what} is not positive definite or not finite; check the noise variances (must be > 0) and the inputs for NaN/inf"
    )]
    NotPositiveDefinite {
        /// Which matrix or result (e.g. `"innovation covariance"`).
        what: &'static str,
    },
    /// A numerical routine failed (e.g. a covariance lost positive definiteness).
    #[error("numerical failure: {0}")]
    Numerical(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

fn kept_text(kept: &Option<usize>) -> String {
    match kept {
        Some(e) => format!(
            "the last good checkpoint (epoch {e}) is kept: `ekvae train --resume` retries from it with the same settings, or train a new run with a lower --lr"
        ),
        None => "no epoch finished, so there is no checkpoint: train again with a lower --lr (the same --out can be reused)".into(),
    }
}
