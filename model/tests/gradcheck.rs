//! Gradients of the whole objective (encoder → EKF → FFBS → rate and distortion) against
//! central finite differences, in f64 on a tiny model.
//!
//! A separate test binary because the f64 default dtype is a process-wide device setting.

mod common;

use std::sync::Once;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use common::Synthetic;
use ekvae_model::objective::{lagrangian, neg_elbo};
use ekvae_model::train::{draw_noise, with_positional_ids};
use ekvae_model::{Ekvae, EkvaeConfig, Inference, ObjectiveNoise};
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
    let [_, t, s, _] = x.dims();
    let terms = model.rate_distortion(x.clone(), u.clone(), noise).unwrap();
    if constrained { lagrangian(&terms, 3.5, 0.05, t, s * s) } else { neg_elbo(&terms, t) }
}

fn check(constrained: bool, inference: Inference) {
    let plain = device();
    let ad = plain.clone().autodiff();
    plain.seed(11);
    let cfg = EkvaeConfig::new()
        .with_image_size(8)
        .with_channels(2)
        .with_hidden(6)
        .with_transition_hidden(5)
        .with_num_bases(3)
        .with_state_dim(3)
        .with_inference(inference)
        .with_rnn_hidden(4);
    let model = with_positional_ids(cfg.init(&ad).unwrap());
    let data = Synthetic::pendulum(2, 5, 8, 4);
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
        // Every EKVAE parameter enters the objective.
        Inference::Kalman => assert_eq!(unused, 0),
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
