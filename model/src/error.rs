//! Errors of the model crate.

/// Everything that can go wrong in `ekvae-model`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
