//! Gradients of the whole objective (encoder → EKF → FFBS → rate and distortion) against
//! central finite differences, in f64 on a tiny model.
//!
//! A separate test binary because the f64 default dtype is a process-wide device setting.

mod common;

use std::sync::Once;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use common::Synthetic;
use ekvae_model::ekvae::KalmanPath;
use ekvae_model::objective::{lagrangian, neg_elbo};
use ekvae_model::train::{draw_noise, with_positional_ids};
use ekvae_model::{Ekvae, EkvaeConfig, Inference, ObjectiveNoise};
use ekvae_model::{fast_kalman, fast_rnn, kalman};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

static F64: Once = Once::new();

fn device() -> Device {
    F64.call_once(|| {
        let mut d = Device::flex();
        d.configure(FloatDType::F64).expect("configure f64 before any tensor exists");
    });
    Device::flex()
}

/// Reads every parameter's values (by id).
struct Collect(Vec<(ParamId, Vec<f64>)>);
impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.0.push((p.id, p.val().into_data().try_to_vec::<f64>().unwrap()));
    }
}

/// Adds `delta` to entry `index` of parameter `id`.
struct Perturb {
    id: ParamId,
    index: usize,
    delta: f64,
}
impl ModuleMapper for Perturb {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if p.id != self.id {
            return p;
        }
        let (id, value, mapper) = p.consume();
        let shape = value.shape();
        let device = value.device();
        let mut v = value.into_data().try_to_vec::<f64>().unwrap();
        v[self.index] += self.delta;
        Param::from_mapped_value(id, Tensor::from_data(TensorData::new(v, shape), &device), mapper)
    }
}

struct Grads<'a> {
    grads: &'a burn::tensor::Gradients,
    out: Vec<(ParamId, Vec<f64>, bool)>,
}
impl ModuleVisitor for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        // A parameter the loss does not use has no gradient: its analytic gradient is 0 (and
        // the finite differences must agree).
        let value = p.val();
        let grad = match value.grad(self.grads) {
            Some(g) => (g.into_data().try_to_vec::<f64>().unwrap(), true),
            None => (vec![0.0; value.shape().num_elements()], false),
        };
        self.out.push((p.id, grad.0, grad.1));
    }
}

fn loss(
    model: &Ekvae,
    x: &Tensor<4>,
    u: &Tensor<3>,
    noise: &ObjectiveNoise,
    constrained: bool,
) -> Tensor<1> {
    let [_, t, cs, s] = x.dims();
    let terms = model.rate_distortion(x.clone(), u.clone(), noise).unwrap();
    if constrained { lagrangian(&terms, 3.5, 0.05, t, cs * s) } else { neg_elbo(&terms, t) }
}

/// The tiny model every check here uses (8×8 frames, narrow networks, 3 bases).
fn tiny_model() -> EkvaeConfig {
    EkvaeConfig::new()
        .with_image_size(8)
        .with_channels(2)
        .with_hidden(6)
        .with_transition_hidden(5)
        .with_num_bases(3)
}

fn check(constrained: bool, inference: Inference) {
    check_model(constrained, inference, false, 1);
}

/// The gradient of every parameter against central differences, on frames of `channels`
/// channels.
fn check_model(constrained: bool, inference: Inference, frozen_mixing: bool, channels: usize) {
    let plain = device();
    let ad = plain.clone().autodiff();
    plain.seed(11);
    let cfg = tiny_model()
        .with_state_dim(3)
        .with_inference(inference)
        .with_rnn_hidden(4)
        .with_image_channels(channels);
    let mut model = with_positional_ids(cfg.init(&ad).unwrap());
    model.transition.frozen_mixing = frozen_mixing;
    let data = Synthetic::pendulum(2, 5, 8, 4).coloured(channels);
    let seqs = data.view();
    let (x, u) = seqs.batch(&[(0, 0), (1, 0)], 5, &ad);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let noise = draw_noise(&model, &mut rng, 2, 5, &ad);

    let grads = loss(&model, &x, &u, &noise, constrained).backward();
    let mut g = Grads { grads: &grads, out: Vec::new() };
    model.visit(&mut g);

    let valid = model.valid();
    let (xv, uv) = (x.clone().inner(), u.clone().inner());
    let noise_v =
        ObjectiveNoise { eps_a: noise.eps_a.clone().inner(), eps_z: noise.eps_z.clone().inner() };
    let mut values = Collect(Vec::new());
    valid.visit(&mut values);
    let eval = |id: ParamId, index: usize, delta: f64| -> f64 {
        let m = valid.clone().map(&mut Perturb { id, index, delta });
        loss(&m, &xv, &uv, &noise_v, constrained).into_scalar::<f64>()
    };
    let h = 1e-6;
    let mut checked = 0;
    let mut worst: f64 = 0.0;
    let unused = g.out.iter().filter(|(_, _, used)| !used).count();
    match inference {
        // Every EKVAE parameter enters the objective (but the mixing network while α is
        // frozen uniform: its four weight and bias tensors).
        Inference::Kalman => assert_eq!(unused, if frozen_mixing { 4 } else { 0 }),
        // The baseline has no p(a|z), so R is unused (the encoder's variance outputs share a
        // layer with its mean: their zero gradient entries are checked like any other).
        Inference::Rnn => assert_eq!(unused, 1),
    }
    for (id, grad, _) in &g.out {
        // A few entries of every parameter tensor (first, middle, last).
        let len = grad.len();
        for index in [0, len / 2, len - 1] {
            let fd = (eval(*id, index, h) - eval(*id, index, -h)) / (2.0 * h);
            let an = grad[index];
            let err = (fd - an).abs() / (1.0 + an.abs().max(fd.abs()));
            worst = worst.max(err);
            assert!(err < 1e-5, "param {id:?}[{index}]: analytic {an} vs finite difference {fd}");
            checked += 1;
        }
    }
    assert!(checked > 30, "checked {checked} entries");
    eprintln!("checked {checked} gradient entries, worst relative error {worst:.2e}");
}

#[test]
fn colour_lagrangian_gradient_matches_finite_differences() {
    // Three-channel frames: the encoder's first convolution reads 3 planes, the decoder draws
    // 3, and the distortion (and the constraint's per-value scale) sums over all of them.
    check_model(true, Inference::Kalman, false, 3);
}

#[test]
fn neg_elbo_gradient_matches_finite_differences() {
    check(false, Inference::Kalman);
}

#[test]
fn lagrangian_gradient_matches_finite_differences() {
    check(true, Inference::Kalman);
}

#[test]
fn rnn_baseline_neg_elbo_gradient_matches_finite_differences() {
    // The same objective with the RNN inference (GRU + combiner) in place of the smoother.
    check(false, Inference::Rnn);
}

#[test]
fn rnn_baseline_lagrangian_gradient_matches_finite_differences() {
    check(true, Inference::Rnn);
}

#[test]
fn frozen_mixing_neg_elbo_gradient_matches_finite_differences() {
    // α uniform (the first epochs of training): the plain filter skips the mixing network.
    check_model(false, Inference::Kalman, true, 1);
}

/// The gradient of every parameter of `model` under `path`, in visiting order.
fn path_gradients(
    model: &Ekvae,
    x: &Tensor<4>,
    u: &Tensor<3>,
    noise: &ObjectiveNoise,
    detach: bool,
    path: KalmanPath,
) -> (f64, Vec<Vec<f64>>) {
    let [_, t, s, _] = x.dims();
    let terms = model.rate_distortion_via(x.clone(), u.clone(), noise, detach, path).unwrap();
    let value = lagrangian(&terms, 3.5, 0.05, t, s * s);
    let v = value.clone().into_scalar::<f64>();
    let grads = value.backward();
    let mut g = Grads { grads: &grads, out: Vec::new() };
    model.visit(&mut g);
    (v, g.out.into_iter().map(|(_, g, _)| g).collect())
}

#[test]
fn plain_and_reference_kalman_paths_agree() {
    // The plain f64 filter with its hand-derived backward (fast_kalman) against burn's
    // autodiff through the generic filter: the same objective and the same gradient for every
    // parameter, with and without the encoder detached from the rate, on a longer sequence.
    let plain = device();
    let ad = plain.clone().autodiff();
    plain.seed(3);
    let cfg = tiny_model().with_state_dim(4).with_aux_dim(3);
    let model = with_positional_ids(cfg.init(&ad).unwrap());
    let data = Synthetic::pendulum(3, 12, 8, 9);
    let (x, u) = data.view().batch(&[(0, 0), (1, 0), (2, 0)], 12, &ad);
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let noise = draw_noise(&model, &mut rng, 3, 12, &ad);
    for detach in [false, true] {
        let (v_plain, g_plain) = path_gradients(&model, &x, &u, &noise, detach, KalmanPath::Plain);
        let (v_ref, g_ref) = path_gradients(&model, &x, &u, &noise, detach, KalmanPath::Reference);
        assert!((v_plain - v_ref).abs() < 1e-9 * (1.0 + v_ref.abs()), "{v_plain} vs {v_ref}");
        assert_eq!(g_plain.len(), g_ref.len());
        let mut worst: f64 = 0.0;
        for (a, b) in g_plain.iter().zip(&g_ref) {
            for (x, y) in a.iter().zip(b) {
                let err = (x - y).abs() / (1.0 + x.abs().max(y.abs()));
                worst = worst.max(err);
            }
        }
        assert!(worst < 1e-9, "detach {detach}: worst relative gradient difference {worst:e}");
        eprintln!(
            "detach {detach}: value {v_plain}, worst relative gradient difference {worst:.1e}"
        );
    }
    // The sample itself, without autodiff: z and log q as the reference's.
    let valid = model.valid();
    let (a, u) = (noise.eps_a.clone().inner(), u.clone().inner());
    let (prior, emission) = (valid.prior.prior(), valid.observation.emission());
    let eps = noise.eps_z.clone().inner();
    let filtered =
        kalman::filter(&prior, &valid.transition, &emission, a.clone(), u.clone()).unwrap();
    let reference = kalman::sample_posterior(&filtered, eps.clone()).unwrap();
    let plain = fast_kalman::sample_posterior_plain(
        &prior,
        &valid.transition,
        &emission,
        a,
        u,
        eps,
        |_| unreachable!("no z terms without autodiff"),
    )
    .unwrap();
    let close = |x: Tensor<3>, y: Tensor<3>| {
        let (x, y) = (
            x.into_data().try_to_vec::<f64>().unwrap(),
            y.into_data().try_to_vec::<f64>().unwrap(),
        );
        x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
    };
    assert!(close(plain.z, reference.z) < 1e-10);
    let (lp, lr) = (
        plain.log_q.into_data().try_to_vec::<f64>().unwrap(),
        reference.log_q.into_data().try_to_vec::<f64>().unwrap(),
    );
    assert!(
        lp.iter().zip(&lr).all(|(a, b)| (a - b).abs() < 1e-10 * (1.0 + b.abs())),
        "{lp:?} vs {lr:?}"
    );
}

/// Every parameter's gradient, from whichever of the backward passes has it (0 if none).
fn merged_gradients(model: &Ekvae, passes: &[&burn::tensor::Gradients]) -> Vec<Vec<f64>> {
    struct Merged<'a> {
        passes: &'a [&'a burn::tensor::Gradients],
        out: Vec<Vec<f64>>,
    }
    impl ModuleVisitor for Merged<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let value = p.val();
            let found: Vec<Vec<f64>> = self
                .passes
                .iter()
                .filter_map(|g| value.grad(g))
                .map(|g| g.into_data().try_to_vec::<f64>().unwrap())
                .collect();
            assert!(found.len() <= 1, "a parameter has a gradient in both passes");
            let n = value.shape().num_elements();
            self.out.push(found.into_iter().next().unwrap_or_else(|| vec![0.0; n]));
        }
    }
    let mut v = Merged { passes, out: Vec::new() };
    model.visit(&mut v);
    v.out
}

#[test]
fn plain_and_reference_rnn_paths_agree() {
    // The RNN baseline's inference network in plain f64 with its hand-derived backward pass
    // and the second backward pass (fast_rnn, as Trainer::step runs it) against burn's
    // autodiff through RnnSmoother::posterior: the same objective and the same gradient for
    // every parameter, with both objectives, on two blocks of sequences.
    let cfg = tiny_model().with_state_dim(3).with_inference(Inference::Rnn).with_rnn_hidden(5);
    deferred_and_reference_agree(cfg, fast_rnn::BLOCK + 2, 8);
}

#[test]
fn plain_and_reference_decoder_paths_agree() {
    // The decoder's last layer and the distortion in plain Rust (fast_decoder, as
    // Trainer::step runs them) against burn's transposed convolution and bernoulli_nll: the
    // same objective and gradients, at 16×16 (four output channels) over more frames than
    // one block holds. (The RNN test above runs the same path at 8×8.)
    let cfg = tiny_model().with_image_size(16).with_state_dim(3);
    deferred_and_reference_agree(cfg, 3, 16);
}

#[test]
fn plain_and_reference_decoder_paths_agree_in_colour() {
    // The same at 16×16 with three channels: twelve output channels of the transposed
    // convolution, the frames' planes unshuffled in plain Rust for the encoder and the target.
    let cfg = tiny_model().with_image_size(16).with_state_dim(3).with_image_channels(3);
    deferred_and_reference_agree(cfg, 3, 16);
}

/// `rate_distortion_deferred` with its second backward pass against the burn reference, for
/// `b` sequences of 12 frames of side `size`.
fn deferred_and_reference_agree(cfg: EkvaeConfig, b: usize, size: usize) {
    let plain = device();
    let ad = plain.clone().autodiff();
    plain.seed(4);
    let rnn = cfg.inference == Inference::Rnn;
    let model = with_positional_ids(cfg.init(&ad).unwrap());
    let data = Synthetic::pendulum(b, 12, size, 9).coloured(cfg.image_channels);
    let picks: Vec<(usize, usize)> = (0..b).map(|i| (i, 0)).collect();
    let (x, u) = data.view().batch(&picks, 12, &ad);
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let noise = draw_noise(&model, &mut rng, b, 12, &ad);
    let [_, t, cs, s] = x.dims();
    let objective = |terms: &ekvae_model::RateDistortion, constrained: bool| {
        if constrained { lagrangian(terms, 3.5, 0.05, t, cs * s) } else { neg_elbo(terms, t) }
    };
    for constrained in [false, true] {
        let reference = model
            .rate_distortion_via(x.clone(), u.clone(), &noise, false, KalmanPath::Plain)
            .unwrap();
        let loss_ref = objective(&reference, constrained);
        let v_ref = loss_ref.clone().into_scalar::<f64>();
        let g_ref = merged_gradients(&model, &[&loss_ref.backward()]);

        let (terms, deferred) =
            model.rate_distortion_deferred(x.clone(), u.clone(), &noise, false).unwrap();
        let loss = objective(&terms, constrained);
        let v_plain = loss.clone().into_scalar::<f64>();
        let first = loss.backward();
        assert_eq!(deferred.rnn.is_some(), rnn, "the RNN baseline defers on autodiff");
        assert!(deferred.decoder.is_some(), "the decoder defers on autodiff");
        let second = deferred.backward(&first, &model).unwrap().expect("a second pass");
        let g_plain = merged_gradients(&model, &[&first, &second]);

        assert!((v_plain - v_ref).abs() < 1e-9 * (1.0 + v_ref.abs()), "{v_plain} vs {v_ref}");
        let mut worst: f64 = 0.0;
        let mut nonzero = 0;
        for (a, r) in g_plain.iter().zip(&g_ref) {
            for (x, y) in a.iter().zip(r) {
                worst = worst.max((x - y).abs() / (1.0 + x.abs().max(y.abs())));
                nonzero += usize::from(*y != 0.0);
            }
        }
        assert!(nonzero > 100, "too few gradients to compare: {nonzero}");
        assert!(worst < 1e-9, "constrained {constrained}: worst relative difference {worst:e}");
        eprintln!(
            "constrained {constrained}: value {v_plain}, worst relative gradient difference {worst:.1e}"
        );
    }
}
