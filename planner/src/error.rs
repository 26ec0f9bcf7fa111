//! The planner's error type.

/// Everything that can go wrong in the planner. Numerical trouble inside an
/// iLQR iteration (a failed factorisation, a diverging rollout) is *not* an
/// error: the solver reacts by raising its regularisation and reports it in
/// [`crate::StopReason`]. Errors are for bad input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input (initial state, control sequence, cost weight, ...) holds NaN or ±∞.
    #[error("{what} is not finite (holds NaN or infinity)")]
    NonFinite {
        /// Which input.
        what: &'static str,
    },
    /// An input has the wrong length for the dynamics' state or control size.
    #[error("{what} has length {got}, expected {expected}")]
    Dimension {
        /// Which input.
        what: &'static str,
        /// The length the dynamics imply.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A configuration value violates its documented invariant.
    #[error("invalid planner setting {field}: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The state estimator could not produce a state.
    #[error("state estimator failed: {0}")]
    Estimator(String),
}

/// The planner's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// `Err(NonFinite)` unless every value is finite.
pub(crate) fn check_finite(what: &'static str, v: &[f64]) -> Result<()> {
    if v.iter().all(|x| x.is_finite()) { Ok(()) } else { Err(Error::NonFinite { what }) }
}

/// `Err(Dimension)` unless `got == expected`.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if got == expected { Ok(()) } else { Err(Error::Dimension { what, expected, got }) }
}
