//! The pipeline's error: the library crates' errors, invalid settings, and context added on
//! the way up (which run, which file), printed as one line.

use std::fmt;

/// An error of a pipeline stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the environments and dataset files.
    #[error(transparent)]
    Envs(#[from] ekvae_envs::Error),
    /// From the model: training, checkpoints, run directories, numerics.
    #[error(transparent)]
    Model(#[from] ekvae_model::Error),
    /// From the planner.
    #[error(transparent)]
    Planner(#[from] ekvae_planner::Error),
    /// A setting or an input that cannot work; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    /// A file that cannot be read or parsed (the message names it).
    #[error("{0}")]
    File(String),
    /// `context: cause`.
    #[error("{context}: {source}")]
    Context {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },
}

/// The pipeline's result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Invalid`] from anything printable.
    pub fn invalid(message: impl fmt::Display) -> Self {
        Self::Invalid(message.to_string())
    }

    /// Whether the root cause is the model's numerical failure (a NaN/inf loss or gradient, a
    /// lost positive definiteness): a result of that run, not a fault of the machine or files.
    pub fn is_numerical_failure(&self) -> bool {
        match self {
            Self::Context { source, .. } => source.is_numerical_failure(),
            Self::Model(e) => matches!(
                e,
                ekvae_model::Error::NonFinite { .. }
                    | ekvae_model::Error::NotPositiveDefinite { .. }
                    | ekvae_model::Error::Numerical(_)
            ),
            _ => false,
        }
    }
}

/// Adds what was being done to an error, like `anyhow::Context`, keeping the cause typed.
pub trait Context<T> {
    /// Wraps the error with `context`.
    fn context(self, context: impl fmt::Display) -> Result<T>;
    /// Wraps the error with a lazily built context.
    fn with_context<C: fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context.to_string(),
            source: Box::new(e.into()),
        })
    }
    fn with_context<C: fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::Context { context: f().to_string(), source: Box::new(e.into()) })
    }
}

/// Returns early with an [`Error::Invalid`] built like `format!`.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::Error::Invalid(format!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_chains_print_as_one_line_and_keep_the_cause() {
        let e: Result<()> = Err(ekvae_model::Error::Numerical("loss is NaN".into()))
            .context("training run a")
            .context("grid");
        let e = e.unwrap_err();
        assert_eq!(e.to_string(), "grid: training run a: numerical failure: loss is NaN");
        assert!(e.is_numerical_failure());
        let other: Result<()> = Err(Error::invalid("--seeds must be at least 1")).context("grid");
        assert!(!other.unwrap_err().is_numerical_failure());
    }
}
