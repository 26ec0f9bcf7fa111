//! The EKVAE world model (Klushyn et al., NeurIPS 2021) in burn.
//!
//! Main items so far:
//! - [`kalman`]: the batched, differentiable extended Kalman [`filter`](kalman::filter),
//!   RTS [`smooth`](kalman::smooth)er and forward-filtering backward-sampling
//!   ([`sample_posterior`](kalman::sample_posterior)) with exact log-density, over a
//!   [`Transition`](kalman::Transition), an [`Emission`](kalman::Emission) and a
//!   [`Prior`](kalman::Prior); usable on its own for a linear-Gaussian model
//!   ([`LinearTransition`](kalman::LinearTransition)).
//! - [`linalg`]: small batched Cholesky, triangular inverse/solves and Gaussian
//!   log-densities built from differentiable tensor ops.
//! - [`Error`] and [`Result`].

pub mod error;
pub mod kalman;
pub mod linalg;

pub use error::{Error, Result};
