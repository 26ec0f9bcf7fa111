//! The EKVAE world model (Klushyn et al., NeurIPS 2021) in burn.
//!
//! Main types:
//! - [`Ekvae`] / [`EkvaeConfig`]: encoder q(a|x) and decoder p(x|a) ([`nets`]), the linear
//!   auxiliary observation, the locally-linear transition and the initial prior ([`ssm`]);
//!   [`Ekvae::rate_distortion`] gives the one-sample rate and distortion per sequence.
//! - [`rnn`]: the RNN-inference baseline (backward GRU + combiner, deep Kalman smoother
//!   style), selected by [`Inference::Rnn`]; it shares every generative part.
//! - [`objective`]: −ELBO, the constrained objective and its λ schedules ([`LambdaSchedule`]:
//!   the authors' reconstruction phase + normalised Lagrangian, or the earlier fast update).
//! - [`fold`]: the fold diagnostic (winding number of the encoded ring of angles).
//! - [`train`]: the explicit training loop ([`train::Trainer`]).
//! - [`rundir`]: the one owner of a run directory ([`rundir::RunDir`]): config, metrics,
//!   checkpoints with digests, `state.json`, the lock, and the fresh/resume/refuse decision.
//! - [`metrics`]: least-squares regression and R² for latent-space identification, pixel MSE
//!   and wrapped angle errors.
//! - [`predict`]: open-loop prediction error curves (pixels, angle) of a trained model.
//! - [`export`]: a trained run's weights as a PyTorch `state_dict` in safetensors
//!   ([`export::export_pytorch`]).
//! - [`kalman`]: the batched, differentiable extended Kalman [`filter`](kalman::filter),
//!   RTS [`smooth`](kalman::smooth)er and forward-filtering backward-sampling
//!   ([`sample_posterior`](kalman::sample_posterior)) with exact log-density, over a
//!   [`Transition`](kalman::Transition), an [`Emission`](kalman::Emission) and a
//!   [`Prior`](kalman::Prior); usable on its own for a linear-Gaussian model
//!   ([`LinearTransition`](kalman::LinearTransition)).
//! - [`linalg`]: small batched Cholesky, triangular inverse/solves and Gaussian
//!   log-densities built from differentiable tensor ops.
//! - [`Error`] and [`Result`].
//!
//! ```
//! use burn::tensor::Device;
//! use ekvae_envs::collect::{CollectConfig, collect};
//! use ekvae_model::{data::Sequences, train::{NoProgress, TrainConfig, train}};
//! // Collect a few 8×8 pendulum episodes, train a small EKVAE for one epoch into a run folder.
//! let cfg = CollectConfig { episodes: 8, steps: 20, size: 8, ..CollectConfig::default() };
//! let pendulum = ekvae_envs::system::PendulumSystem::default();
//! let policy = "uniform".parse::<ekvae_envs::collect::PolicySpec>().unwrap();
//! let data = collect(&cfg, &pendulum, &policy, &|_| {}).unwrap();
//! let mut config = TrainConfig { epochs: 1, batch_size: 4, seq_len: 8, ..TrainConfig::default() };
//! (config.model.image_size, config.model.channels, config.model.hidden) = (8, 4, 8);
//! let run = std::env::temp_dir().join(format!("ekvae-doc-{}", std::process::id()));
//! let rows = train(config, &Sequences::from(&data), &run, false, &Device::flex(), &mut NoProgress).unwrap();
//! assert_eq!(rows.len(), 1);
//! # std::fs::remove_dir_all(&run).unwrap();
//! ```

pub mod backend;
pub mod data;
pub mod ekvae;
pub mod error;
pub mod export;
pub mod fast_decoder;
pub mod fast_kalman;
pub mod fast_rnn;
pub mod fold;
pub mod identify;
pub mod kalman;
pub mod linalg;
pub mod metrics;
pub mod nets;
pub mod objective;
pub mod plain;
pub mod predict;
pub mod rnn;
pub mod rundir;
pub mod ssm;
pub mod stats;
pub mod train;

pub use ekvae::{Ekvae, EkvaeConfig, Inference, ObjectiveNoise, RateDistortion};
pub use error::{Error, Result};
pub use objective::{LambdaConfig, LambdaSchedule, Objective, Phase, ScheduleKind};
pub use ssm::VARIANCE_FLOOR;
