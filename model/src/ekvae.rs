//! The whole EKVAE: encoder, decoder, auxiliary observation, locally-linear transition and
//! initial prior, with the rate–distortion terms of one-sample ELBO per sequence.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::softplus;
use burn::tensor::{Device, Gradients, Tensor};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::fast_decoder::DeferredDecoder;
use crate::fast_kalman;
use crate::fast_rnn::{self, DeferredRnn};
use crate::kalman::{self, Emission, Prior, Transition as _};
use crate::linalg::{LN_2PI, gaussian_log_prob_diag};
use crate::nets::{Decoder, DecoderConfig, Encoder, EncoderConfig};
use crate::rnn::{RnnSmoother, RnnSmootherConfig};
use crate::ssm::{
    AuxObservation, AuxObservationConfig, InitialPrior, InitialPriorConfig,
    LocallyLinearTransition, TransitionConfig,
};

/// This module's result type (named so as not to clash with the `Result` that burn's `Config`
/// derive expects in scope).
type ModelResult<T> = crate::Result<T>;

/// Serialises model initialisation (see [`EkvaeConfig::init_seeded`]).
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Which model: the EKVAE (two latent layers a, z; q(z_{1:T} | a_{1:T}) by the extended Kalman
/// smoother) or the RNN-inference baseline ([`crate::rnn`], `docs/design.md`): one latent layer,
/// p(x_t | z_t) through H and the same decoder, the same transition, prior and encoder network,
/// and q(z_t | z_{t−1}, x_{t:T}) from a backward GRU over the encoded frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Inference {
    /// Extended Kalman filter + forward-filtering backward-sampling (the EKVAE).
    #[default]
    Kalman,
    /// Backward GRU + combiner, ancestral sampling (deep Kalman smoother style).
    Rnn,
}

impl Inference {
    /// The model's name on the command line and in tables: `ekvae` or `rnn`.
    pub fn model_name(self) -> &'static str {
        match self {
            Inference::Kalman => "ekvae",
            Inference::Rnn => "rnn",
        }
    }
}

impl std::fmt::Display for Inference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_name())
    }
}

impl std::str::FromStr for Inference {
    type Err = Error;
    fn from_str(s: &str) -> ModelResult<Self> {
        match s {
            "ekvae" | "kalman" => Ok(Self::Kalman),
            "rnn" => Ok(Self::Rnn),
            other => {
                Err(Error::InvalidSetting(format!("unknown model {other:?}; use ekvae or rnn")))
            }
        }
    }
}

/// The most channels a frame may have ([`EkvaeConfig::image_channels`]): grayscale, RGB or
/// RGBA, and room for a few stacked sensors.
pub const MAX_IMAGE_CHANNELS: usize = 8;

/// Sizes and initialisation of an [`Ekvae`]. The defaults are the ones the README's results
/// were obtained with (see `docs/model.md`).
#[derive(Config, Debug, PartialEq)]
pub struct EkvaeConfig {
    /// Image side S (square frames).
    #[config(default = 16)]
    pub image_size: usize,
    /// Channels C of the frames (1: grayscale, 3: RGB).
    #[config(default = 1)]
    pub image_channels: usize,
    /// Dimension k of the action u_t.
    #[config(default = 1)]
    pub action_dim: usize,
    /// Dimension m of the auxiliary observation a_t.
    #[config(default = 2)]
    pub aux_dim: usize,
    /// Dimension n of the state z_t.
    #[config(default = 3)]
    pub state_dim: usize,
    /// Number K of base matrices of the transition.
    #[config(default = 8)]
    pub num_bases: usize,
    /// Channels of the convolutional layers of encoder and decoder.
    #[config(default = 32)]
    pub channels: usize,
    /// Width of the dense hidden layers of encoder and decoder.
    #[config(default = 128)]
    pub hidden: usize,
    /// Width of the hidden layer of the transition's mixing network.
    #[config(default = 32)]
    pub transition_hidden: usize,
    /// Initial diagonal of the transition noise Q_k.
    #[config(default = 0.02)]
    pub q_init: f64,
    /// Initial diagonal of the observation noise R.
    #[config(default = 0.05)]
    pub r_init: f64,
    /// Seed of the initialisation of the base matrices and H.
    #[config(default = 0)]
    pub seed: u64,
    /// The inference of z: `kalman` (the EKVAE) or `rnn` (the baseline).
    #[config(default = "Inference::Kalman")]
    pub inference: Inference,
    /// Width of the GRU and combiner of the RNN inference (unused by `kalman`).
    #[config(default = 64)]
    pub rnn_hidden: usize,
}

impl EkvaeConfig {
    /// Check the invariants: image side a multiple of 8, all sizes positive.
    pub fn check(&self) -> ModelResult<()> {
        let bad = |what: &str| Err(Error::InvalidConfig(what.to_string()));
        if self.image_size < 8 || !self.image_size.is_multiple_of(8) {
            return bad(&format!(
                "image_size must be a multiple of 8 (8, 16, 32, 48, 64, ...), got {}",
                self.image_size
            ));
        }
        for (name, v) in [
            ("image_channels", self.image_channels),
            ("action_dim", self.action_dim),
            ("aux_dim", self.aux_dim),
            ("state_dim", self.state_dim),
            ("num_bases", self.num_bases),
            ("channels", self.channels),
            ("hidden", self.hidden),
            ("transition_hidden", self.transition_hidden),
            ("rnn_hidden", self.rnn_hidden),
        ] {
            if v == 0 {
                return bad(&format!("{name} must be positive"));
            }
        }
        if self.image_channels > MAX_IMAGE_CHANNELS {
            return bad(&format!(
                "image_channels must be at most {MAX_IMAGE_CHANNELS}, got {}",
                self.image_channels
            ));
        }
        if self.state_dim > 8 {
            return bad("state_dim must be at most 8 (small hand-written Kalman linear algebra)");
        }
        if !(self.q_init > 0.0 && self.r_init > 0.0) {
            return bad("q_init and r_init must be positive");
        }
        Ok(())
    }

    /// Build the model (after [`check`](Self::check)) with the device's random number
    /// generator as it is (see [`init_seeded`](Self::init_seeded)).
    pub fn init(&self, device: &Device) -> ModelResult<Ekvae> {
        let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        self.init_unlocked(device)
    }

    /// Seed the device's random number generator with `seed` and build the model, atomically
    /// with respect to other initialisations in this process: burn's layer initialisers draw
    /// from a process-wide generator, so without the lock two models built at the same time
    /// (e.g. parallel tests) would interleave their draws and not be reproducible.
    pub fn init_seeded(&self, device: &Device, seed: u64) -> ModelResult<Ekvae> {
        let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(seed);
        self.init_unlocked(device)
    }

    fn init_unlocked(&self, device: &Device) -> ModelResult<Ekvae> {
        /// burn initialises parameters lazily, at first use: draw them now, under the lock.
        struct Materialize;
        impl burn::module::ModuleVisitor for Materialize {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                let _ = param.val();
            }
        }
        let model = self.build(device)?;
        model.visit(&mut Materialize);
        Ok(model)
    }

    fn build(&self, device: &Device) -> ModelResult<Ekvae> {
        self.check()?;
        Ok(Ekvae {
            encoder: EncoderConfig::new(self.image_size, self.aux_dim)
                .with_channels(self.channels)
                .with_hidden(self.hidden)
                .with_image_channels(self.image_channels)
                .init(device),
            decoder: DecoderConfig::new(self.image_size, self.aux_dim)
                .with_channels(self.channels)
                .with_hidden(self.hidden)
                .with_image_channels(self.image_channels)
                .init(device),
            observation: AuxObservationConfig::new(self.aux_dim, self.state_dim)
                .with_r_init(self.r_init)
                .with_seed(self.seed)
                .init(device),
            transition: TransitionConfig::new(self.state_dim)
                .with_action_dim(self.action_dim)
                .with_num_bases(self.num_bases)
                .with_hidden(self.transition_hidden)
                .with_q_init(self.q_init)
                .with_seed(self.seed)
                .init(device),
            prior: InitialPriorConfig::new(self.state_dim).init(device),
            smoother: match self.inference {
                Inference::Kalman => None,
                Inference::Rnn => Some(
                    RnnSmootherConfig::new(self.aux_dim, self.action_dim, self.state_dim)
                        .with_hidden(self.rnn_hidden)
                        .init(device),
                ),
            },
        })
    }
}

/// The extended Kalman VAE (Klushyn et al. 2021) — or, with `smoother` set, the RNN-inference
/// baseline (see [`Inference::Rnn`]) built from the same parts.
#[derive(Module, Debug)]
pub struct Ekvae {
    /// q(a_t | x_t).
    pub encoder: Encoder,
    /// p(x_t | a_t), Bernoulli logits.
    pub decoder: Decoder,
    /// p(a_t | z_t) = N(H z_t, R).
    pub observation: AuxObservation,
    /// p(z_t | z_{t−1}, u_{t−1}).
    pub transition: LocallyLinearTransition,
    /// p(z_1).
    pub prior: InitialPrior,
    /// The RNN inference network of the baseline; `None` for the EKVAE (Kalman smoother).
    pub smoother: Option<RnnSmoother>,
}

/// The standard-normal noise of one evaluation of the objective (drawn by the caller, so that
/// training is reproducible and gradient checks can hold it fixed).
#[derive(Debug, Clone)]
pub struct ObjectiveNoise {
    /// Reparameterisation noise of a_t, `[B, T, m]`.
    pub eps_a: Tensor<3>,
    /// Noise of the forward-filtering backward-sampling draw of z_{1:T}, `[B, T, n]`.
    pub eps_z: Tensor<3>,
}

/// Distortion and rate of each sequence of a batch (one sample per sequence).
#[derive(Debug, Clone)]
pub struct RateDistortion {
    /// D = −Σ_t log p(x_t | a_t), `[B]`.
    pub distortion: Tensor<1>,
    /// R = Σ_t [log q(a_t|x_t) − log p(a_t|z_t)] + log q(z_{1:T}) − log p(z_1)
    /// − Σ_{t≥2} log p(z_t | z_{t−1}, u_{t−1}), `[B]` (the RNN baseline has no a-terms, and
    /// its D is −Σ_t log p(x_t | z_t)).
    pub rate: Tensor<1>,
}

/// The frames in the encoder's block layout: a tensor, or plain values for a training step
/// on frames that are data. (One lives for the length of a call; boxing the tensor would save
/// nothing.)
#[allow(clippy::large_enum_variant)]
enum Blocks {
    Tensor(Tensor<4>),
    Values(crate::nets::Values),
}

/// The parts of a training step's gradient that [`Ekvae::rate_distortion_deferred`] leaves to a
/// second backward pass.
#[derive(Debug, Default)]
pub struct Deferred {
    /// The RNN baseline's inference network ([`crate::fast_rnn`]).
    pub rnn: Option<DeferredRnn>,
    /// The decoder's last layer ([`crate::fast_decoder`]).
    pub decoder: Option<DeferredDecoder>,
}

impl Deferred {
    /// The second backward pass, given the loss's backward pass `first`: the gradients of
    /// the parameters the first pass left out (disjoint from its own), or `None` if nothing
    /// was deferred.
    ///
    /// # Errors
    /// If a gradient cannot be read.
    pub fn backward(self, first: &Gradients, model: &Ekvae) -> ModelResult<Option<Gradients>> {
        let mut s: Option<Tensor<1>> = None;
        if let Some(d) = &self.decoder {
            s = d.surrogate(first, &model.decoder)?;
        }
        if let Some(r) = self.rnn {
            let t = r.surrogate(first)?;
            s = Some(match s {
                Some(s) => s + t,
                None => t,
            });
        }
        Ok(s.map(|s| s.backward()))
    }
}

impl Ekvae {
    /// Binary cross-entropy of the frames under the decoder's Bernoulli logits, summed over
    /// pixels: −log p(x | logits) = Σ softplus(l) − x·l, valid for x ∈ [0, 1].
    ///
    /// # Shapes
    /// - `logits`, `x`: `[N, H, W]` (any layout of the pixels); returns `[N]`
    pub fn bernoulli_nll(logits: Tensor<3>, x: Tensor<3>) -> Tensor<1> {
        let [n, _, _] = x.dims();
        (softplus(logits.clone(), 1.0) - x * logits).reshape([n as i32, -1]).sum_dim(1).reshape([n])
    }

    /// Check that a batch fits the model: image side and channels, and action dimension.
    pub fn check_batch(&self, frames: &Tensor<4>, actions: &Tensor<3>) -> ModelResult<()> {
        let [b, t, cs, s] = frames.dims();
        let [b2, t2, k] = actions.dims();
        let (want_s, want_c) = (self.image_size(), self.image_channels());
        if cs != want_c * want_s || s != want_s {
            return Err(Error::ShapeMismatch(format!(
                "frames are [{cs}, {s}] but the model was built for {want_c} channel(s) of {want_s}×{want_s}, [{}, {want_s}] (the channel planes stacked)",
                want_c * want_s
            )));
        }
        if k != self.action_dim() {
            return Err(Error::ShapeMismatch(format!(
                "actions have dimension {k} but the model was built for {}",
                self.action_dim()
            )));
        }
        if b != b2 || t != t2 {
            return Err(Error::ShapeMismatch(format!(
                "frames [{b}, {t}, ..] and actions [{b2}, {t2}, ..] disagree"
            )));
        }
        if t < 2 {
            return Err(Error::ShapeMismatch("sequences need at least 2 steps".into()));
        }
        Ok(())
    }

    /// Image side S the decoder produces.
    pub fn image_size(&self) -> usize {
        self.decoder.image_size()
    }

    /// Channels C of the frames (1: grayscale).
    pub fn image_channels(&self) -> usize {
        self.decoder.image_channels()
    }

    /// Dimension m of a_t.
    pub fn aux_dim(&self) -> usize {
        self.observation.h.dims()[0]
    }

    /// Dimension n of z_t.
    pub fn state_dim(&self) -> usize {
        self.observation.h.dims()[1]
    }

    /// Dimension k of u_t.
    pub fn action_dim(&self) -> usize {
        let [_, nk] = self.transition.b_bases.dims();
        nk / self.state_dim()
    }

    /// The device of the parameters.
    pub fn device(&self) -> Device {
        self.observation.h.val().device()
    }

    /// Encode frames: mean and log-variance of q(a_t | x_t).
    ///
    /// # Shapes
    /// - `frames`: `[B, T, C·S, S]` in [0, 1] (see [`Sequences::batch`](crate::data::Sequences::batch));
    ///   returns `([B, T, m], [B, T, m])`
    pub fn encode(&self, frames: Tensor<4>) -> (Tensor<3>, Tensor<3>) {
        let [b, t, cs, s] = frames.dims();
        let (mean, log_var) = self.encoder.forward(frames.reshape([b * t, cs, s])); // [B·T, m]
        let m = self.aux_dim();
        (mean.reshape([b, t, m]), log_var.reshape([b, t, m]))
    }

    /// Rate and distortion of each sequence, with one sample of a_{1:T} and z_{1:T}.
    ///
    /// # Shapes
    /// - `frames`: `[B, T, C·S, S]` in [0, 1]
    /// - `actions`: `[B, T, k]`; `actions[:, t]` drives the step t → t + 1
    /// - `noise`: see [`ObjectiveNoise`]
    pub fn rate_distortion(
        &self,
        frames: Tensor<4>,
        actions: Tensor<3>,
        noise: &ObjectiveNoise,
    ) -> ModelResult<RateDistortion> {
        self.rate_distortion_with(frames, actions, noise, false)
    }

    /// [`Ekvae::rate_distortion`], optionally with the encoder cut out of the rate's gradient
    /// (`detach_encoder_in_rate`, EKVAE only): the values are the same, but the rate then
    /// trains the transition, prior and auxiliary observation on the current embedding
    /// without moving the encoder, which only the distortion trains. Used in the reconstruction
    /// phase of the constrained objective (see [`crate::objective`]). The RNN baseline ignores
    /// the flag (its distortion reaches the encoder only through the posterior).
    pub fn rate_distortion_with(
        &self,
        frames: Tensor<4>,
        actions: Tensor<3>,
        noise: &ObjectiveNoise,
        detach_encoder_in_rate: bool,
    ) -> ModelResult<RateDistortion> {
        self.rate_distortion_via(frames, actions, noise, detach_encoder_in_rate, KalmanPath::Plain)
    }

    /// [`Ekvae::rate_distortion_with`] with the Kalman part computed along `path`: the same
    /// values and gradients (to rounding) either way; [`KalmanPath::Reference`] is the generic
    /// burn implementation, kept for tests and benches.
    pub fn rate_distortion_via(
        &self,
        frames: Tensor<4>,
        actions: Tensor<3>,
        noise: &ObjectiveNoise,
        detach_encoder_in_rate: bool,
        path: KalmanPath,
    ) -> ModelResult<RateDistortion> {
        self.rate_distortion_impl(frames, actions, noise, detach_encoder_in_rate, path, false)
            .map(|(terms, _)| terms)
    }

    /// [`Ekvae::rate_distortion_with`] for a training step, with the parts that run in plain
    /// Rust with a hand-derived backward pass deferred to a second backward pass
    /// ([`Deferred::backward`]; [`crate::train::Trainer::step`] merges the two):
    /// - the decoder's last layer and the distortion ([`crate::fast_decoder`]), for both
    ///   models: its weight and bias get their gradient in the second pass;
    /// - the RNN baseline's inference network in plain `f64` ([`crate::fast_rnn`]): the terms
    ///   are built on leaves under `z` and `log q`, and the second pass gives the gradients of
    ///   the encoder and the network.
    ///
    /// Without autodiff nothing is deferred and the terms are those of
    /// [`Ekvae::rate_distortion_with`].
    ///
    /// # Errors
    /// As [`Ekvae::rate_distortion`].
    pub fn rate_distortion_deferred(
        &self,
        frames: Tensor<4>,
        actions: Tensor<3>,
        noise: &ObjectiveNoise,
        detach_encoder_in_rate: bool,
    ) -> ModelResult<(RateDistortion, Deferred)> {
        self.rate_distortion_impl(
            frames,
            actions,
            noise,
            detach_encoder_in_rate,
            KalmanPath::Plain,
            true,
        )
    }

    fn rate_distortion_impl(
        &self,
        frames: Tensor<4>,
        actions: Tensor<3>,
        noise: &ObjectiveNoise,
        detach_encoder_in_rate: bool,
        path: KalmanPath,
        defer: bool,
    ) -> ModelResult<(RateDistortion, Deferred)> {
        let [b, t, cs, s] = frames.dims();
        let (m, n) = (self.aux_dim(), self.state_dim());

        // Frames in block layout once (no gradient), shared by the encoder input and the
        // distortion target.
        // For frames that are data, in a training step or off the autodiff device (evaluation,
        // validation), plain values (the encoder's convolution and the distortion read them in
        // plain Rust); otherwise (the reference path of the tests) a tensor.
        let frames = frames.reshape([b * t, cs, s]);
        let (device, dtype) = (frames.device(), frames.dtype());
        let plain_data = !frames.is_require_grad() && (defer || !device.is_autodiff());
        let blocks = if plain_data {
            Blocks::Values(self.encoder.block_values(frames)) // [B·T, C·r², 8, 8]
        } else {
            Blocks::Tensor(self.encoder.to_blocks(frames))
        };
        let (a_mean, a_log_var) = match &blocks {
            Blocks::Values(v) => self.encoder.forward_values(v, b * t, &device, dtype),
            Blocks::Tensor(x) => self.encoder.forward_blocks(x.clone()),
        }; // [B·T, m]
        let (a_mean, a_log_var) = (a_mean.reshape([b, t, m]), a_log_var.reshape([b, t, m]));
        let prior = self.prior.prior();

        // The decoder's input, q(z_{1:T} | ·) with its sample, and the rate terms of a.
        let mut deferred = None;
        let (decoder_input, z, log_q_z, rate_a) = match &self.smoother {
            // EKVAE: a_t ~ q(a_t | x_t) (reparameterised), the extended Kalman filter over
            // a_{1:T} and a joint FFBS sample of z_{1:T}; p(x_t | a_t), p(a_t | z_t) = N(H z_t, R).
            None => {
                let emission = self.observation.emission();
                let a = a_mean + a_log_var.clone().mul_scalar(0.5).exp() * noise.eps_a.clone();
                // The decoder always reads `a` itself; the rate reads `a_rate`.
                let (a_dec, a, a_log_var) = if detach_encoder_in_rate {
                    (a.clone(), a.detach(), a_log_var.detach())
                } else {
                    (a.clone(), a, a_log_var)
                };
                // log q(a|x) = −½ Σ (log 2π + log σ² + ε²), summed over t and m.
                let log_q_a = (a_log_var + noise.eps_a.clone().powi_scalar(2))
                    .add_scalar(LN_2PI)
                    .mul_scalar(-0.5)
                    .reshape([b as i32, -1])
                    .sum_dim(1)
                    .reshape([b]); // [B]
                let sample = match path {
                    KalmanPath::Reference => {
                        let filtered = kalman::filter(
                            &prior,
                            &self.transition,
                            &emission,
                            a.clone(),
                            actions.clone(),
                        )?;
                        kalman::sample_posterior(&filtered, noise.eps_z.clone())?
                    }
                    KalmanPath::Plain => {
                        // The rate terms that read z, with the parameters detached (their
                        // gradient through z goes into the filter's inputs; see fast_kalman).
                        let prior_d = Prior {
                            mean: prior.mean.clone().detach(),
                            var: prior.var.clone().detach(),
                        };
                        let emission_d = Emission {
                            h: emission.h.clone().detach(),
                            r_diag: emission.r_diag.clone().detach(),
                        };
                        let (a_d, u) = (a.clone().detach(), actions.clone());
                        let transition = &self.transition;
                        fast_kalman::sample_posterior_plain(
                            &prior,
                            &self.transition,
                            &emission,
                            a.clone(),
                            actions.clone(),
                            noise.eps_z.clone(),
                            |z| {
                                let transition_d = transition.clone().no_grad();
                                let (z1, trans) =
                                    log_p_states(z.clone(), u, &prior_d, &transition_d);
                                (log_p_aux(a_d, z, &emission_d) + z1 + trans).neg()
                            },
                        )?
                    }
                };
                let z = sample.z; // [B, T, n]
                let log_p_a = log_p_aux(a.clone(), z.clone(), &emission);
                (a_dec, z, sample.log_q, log_q_a - log_p_a)
            }
            // RNN baseline: one latent layer, p(x_t | z_t) directly through H and the
            // same decoder; q(z_t | z_{t−1}, x_{t:T}) from the backward GRU over the encoded
            // frames (the encoder's mean, deterministic) and the combiner. No a-terms, and only
            // H is read: building R's softplus here too would leave that node unused in the
            // graph every step, as a child of a parameter that never changes (it gets no
            // gradient), and burn's graph bookkeeping would grow step after step
            // (`model/examples/rnn_step_drift.rs`: 10.6 → 39.6 ms per step over 1,000 steps;
            // 6.9 → 7.9 ms now).
            Some(rnn) => {
                let draw = if defer {
                    let (draw, d) = fast_rnn::posterior_deferred(
                        rnn,
                        a_mean,
                        actions.clone(),
                        noise.eps_z.clone(),
                    )?;
                    deferred = d;
                    draw
                } else {
                    rnn.posterior(a_mean, actions.clone(), Some(noise.eps_z.clone()))
                };
                let hz = draw
                    .z
                    .clone()
                    .reshape([b * t, n])
                    .matmul(self.observation.h.val().transpose())
                    .reshape([b, t, m]);
                (hz, draw.z, draw.log_q, Tensor::zeros([b], &device))
            }
        };

        // Distortion D = −Σ_t log p(x_t | ·) under the decoder's Bernoulli logits.
        let decoder_input = decoder_input.reshape([b * t, m]);
        let (nll, deferred_decoder) = match blocks {
            Blocks::Values(v) => self.decoder.nll_deferred(decoder_input, &v)?, // [B·T]
            Blocks::Tensor(blocks) => {
                let logits = self.decoder.forward_blocks(decoder_input); // [B·T, r², 8, 8]
                let [_, c, h, w] = logits.dims();
                let nll = Self::bernoulli_nll(
                    logits.reshape([b * t, c, h * w]),
                    blocks.reshape([b * t, c, h * w]),
                );
                (nll, None)
            }
        };
        let distortion = nll.reshape([b, t]).sum_dim(1).reshape([b]); // [B]

        let (log_p_z1, log_p_trans) = log_p_states(z, actions, &prior, &self.transition);
        let rate = rate_a + log_q_z - log_p_z1 - log_p_trans;
        let deferred = Deferred { rnn: deferred, decoder: deferred_decoder };
        Ok((RateDistortion { distortion, rate }, deferred))
    }

    /// Which inference this model uses.
    pub fn inference(&self) -> Inference {
        if self.smoother.is_some() { Inference::Rnn } else { Inference::Kalman }
    }

    /// Smoothed latent means with a_t at the encoder mean (no sampling): the representation
    /// used for identification. EKVAE: the RTS smoother's E[z_t | a_{1:T}]; RNN baseline: the
    /// mean path of q (each z_t the mean given the previous mean).
    ///
    /// # Shapes
    /// - `frames`: `[B, T, C·S, S]`, `actions`: `[B, T, k]`; returns `[B, T, n]`
    pub fn smoothed_means(&self, frames: Tensor<4>, actions: Tensor<3>) -> ModelResult<Tensor<3>> {
        let (a_mean, _) = self.encode(frames);
        match &self.smoother {
            None => {
                let emission = self.observation.emission();
                let prior = self.prior.prior();
                let filtered =
                    kalman::filter(&prior, &self.transition, &emission, a_mean, actions)?;
                Ok(kalman::smooth(&filtered)?.mean_smooth)
            }
            Some(rnn) => Ok(rnn.posterior(a_mean, actions, None).z),
        }
    }

    /// The state estimate after conditioning on the frames of a window, for open-loop
    /// prediction: EKVAE, the filtered mean E[z_{T−1} | a_{0:T−1}]; RNN baseline, the mean
    /// path of q over the window at its last step (its backward GRU only sees the window).
    ///
    /// # Shapes
    /// - `frames`: `[B, T, C·S, S]`, `actions`: `[B, T, k]`; returns `[B, n]`
    pub fn condition(&self, frames: Tensor<4>, actions: Tensor<3>) -> ModelResult<Tensor<2>> {
        let [b, t, _, _] = frames.dims();
        let n = self.state_dim();
        let (a_mean, _) = self.encode(frames);
        let means = match &self.smoother {
            None => {
                let emission = self.observation.emission();
                let prior = self.prior.prior();
                kalman::filter(&prior, &self.transition, &emission, a_mean, actions)?.mean_filt
            }
            Some(rnn) => rnn.posterior(a_mean, actions, None).z,
        };
        Ok(means.narrow(1, t - 1, 1).reshape([b, n]))
    }

    /// Open-loop rollout of the transition mean from `z` under `actions`: step i applies
    /// `actions[:, i]`, so the result's row i is the state i + 1 steps after `z`.
    ///
    /// # Shapes
    /// - `z`: `[B, n]`, `actions`: `[B, H, k]`; returns `[B, H, n]`
    pub fn rollout(&self, z: Tensor<2>, actions: Tensor<3>) -> Tensor<3> {
        let [b, horizon, k] = actions.dims();
        let mut z = z;
        let mut out = Vec::with_capacity(horizon);
        for i in 0..horizon {
            z = self.transition_mean(z, actions.clone().narrow(1, i, 1).reshape([b, k]));
            out.push(z.clone());
        }
        Tensor::stack(out, 1)
    }

    /// Expected frames of latent states: the decoder's Bernoulli means σ(logits) at the
    /// observation mean a = H z.
    ///
    /// # Shapes
    /// - `z`: `[B, T, n]`; returns `[B, T, C·S, S]` in (0, 1)
    pub fn decode_mean(&self, z: Tensor<3>) -> Tensor<4> {
        let [b, t, n] = z.dims();
        let a = z.reshape([b * t, n]).matmul(self.observation.h.val().transpose()); // [B·T, m]
        let logits = self.decoder.forward(a); // [B·T, C·S, S]
        let (s, c) = (self.image_size(), self.image_channels());
        burn::tensor::activation::sigmoid(logits).reshape([b, t, c * s, s])
    }

    /// One step of the transition mean, for rollouts: F(z, u) z + B(z, u) u.
    ///
    /// # Shapes
    /// - `z`: `[B, n]`, `u`: `[B, k]`; returns `[B, n]`
    pub fn transition_mean(&self, z: Tensor<2>, u: Tensor<2>) -> Tensor<2> {
        let step = self.transition.linearize(z.clone(), u.clone());
        let [b, n, _] = step.f.dims();
        let k = u.dims()[1];
        (step.f.matmul(z.reshape([b, n, 1])) + step.b.matmul(u.reshape([b, k, 1]))).reshape([b, n])
    }
}

/// Which implementation computes the Kalman part of [`Ekvae::rate_distortion_via`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KalmanPath {
    /// The filter in plain `f64` with a hand-derived backward pass ([`fast_kalman`]); the
    /// default.
    #[default]
    Plain,
    /// The generic burn implementation ([`kalman::filter`]), differentiated by burn.
    Reference,
}

/// log p(a_t | z_t) = log N(a_t; H z_t, R) summed over t, `[B]`.
fn log_p_aux(a: Tensor<3>, z: Tensor<3>, emission: &Emission) -> Tensor<1> {
    let [b, t, m] = a.dims();
    let n = z.dims()[2];
    let hz = z.reshape([b * t, n]).matmul(emission.h.clone().transpose()).reshape([b, t, m]);
    let r = emission.r_diag.clone().reshape([1, 1, m]);
    gaussian_log_prob_diag(a, hz, r).reshape([b, t]).sum_dim(1).reshape([b])
}

/// log p(z_1) and Σ_{t≥2} log p(z_t | z_{t−1}, u_{t−1}) under the prior and the transition at
/// the sampled z_{t−1}, each `[B]` (T ≥ 2).
fn log_p_states(
    z: Tensor<3>,
    actions: Tensor<3>,
    prior: &Prior,
    transition: &LocallyLinearTransition,
) -> (Tensor<1>, Tensor<1>) {
    let [b, t, n] = z.dims();
    let k = actions.dims()[2];
    let z1 = z.clone().narrow(1, 0, 1).reshape([b, n]);
    let log_p_z1 = gaussian_log_prob_diag(
        z1,
        prior.mean.clone().reshape([1, n]),
        prior.var.clone().reshape([1, n]),
    )
    .reshape([b]);
    let z_prev = z.clone().narrow(1, 0, t - 1).reshape([b * (t - 1), n]);
    let u_prev = actions.narrow(1, 0, t - 1).reshape([b * (t - 1), k]);
    let z_next = z.narrow(1, 1, t - 1).reshape([b * (t - 1), n]);
    let (mean, var) = transition.mean_and_var(z_prev, u_prev); // [B(T−1), n]
    let log_p_trans =
        gaussian_log_prob_diag(z_next, mean, var).reshape([b, t - 1]).sum_dim(1).reshape([b]);
    (log_p_z1, log_p_trans)
}
