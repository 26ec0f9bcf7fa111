//! The EKVAE world model (Klushyn et al., NeurIPS 2021) in burn.
//!
//! Main types:
//! - [`Ekvae`] / [`EkvaeConfig`]: encoder q(a|x) and decoder p(x|a) ([`nets`]), the linear
//!   auxiliary observation, the locally-linear transition and the initial prior ([`ssm`]);
//!   [`Ekvae::rate_distortion`] gives the one-sample rate and distortion per sequence.
//! - [`objective`]: −ELBO, the constrained Lagrangian and the λ update ([`LambdaSchedule`]).
//! - [`train`]: the explicit training loop ([`train::Trainer`]), checkpoints and run files.
//! - [`metrics`]: least-squares regression and R² for latent-space identification.
//! - [`kalman`]: the batched differentiable extended Kalman filter, RTS smoother and FFBS.

pub mod backend;
pub mod data;
pub mod ekvae;
pub mod error;
pub mod identify;
pub mod kalman;
pub mod linalg;
pub mod metrics;
pub mod nets;
pub mod objective;
pub mod ssm;
pub mod train;

pub use ekvae::{Ekvae, EkvaeConfig, ObjectiveNoise, RateDistortion};
pub use error::{Error, Result};
pub use objective::{LambdaConfig, LambdaSchedule, Objective};
