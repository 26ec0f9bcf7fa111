//! Kalman filter + FFBS forward and backward at the training shape
//! B = 32, T = 50, n = 4, m = 2, k = 1 (f32, flex backend with autodiff).
//!
//! Run single-threaded, as the training-step budget assumes one core:
//! `RAYON_NUM_THREADS=1 cargo bench -p ekvae-model --bench kalman`

use burn::tensor::{DType, Device, Tensor, TensorData, activation::softmax};
use criterion::{Criterion, criterion_group, criterion_main};
use ekvae_model::kalman::{
    Emission, LinearGaussianStep, LinearTransition, Prior, Transition, filter, sample_posterior,
    smooth,
};

const B: usize = 32;
const T: usize = 50;
const N: usize = 4;
const M: usize = 2;
const K: usize = 1;
const BASES: usize = 3;

fn ten<const D: usize>(v: Vec<f64>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), (device, DType::F32))
}

fn pseudo(len: usize, scale: f64, phase: f64) -> Vec<f64> {
    (0..len).map(|i| (0.37 * i as f64 + phase).sin() * scale).collect()
}

/// The EKVAE transition's shape of work: `BASES` base matrices mixed by a
/// softmax of a linear map of `(z, u)` (a stand-in for the model's MLP).
struct Mixture {
    f: Tensor<2>,   // [BASES, N·N]
    b: Tensor<2>,   // [BASES, N·K]
    q: Tensor<2>,   // [BASES, N]
    w_z: Tensor<2>, // [N, BASES]
    w_u: Tensor<2>, // [K, BASES]
}

impl Transition for Mixture {
    fn linearize(&self, z: Tensor<2>, u: Tensor<2>) -> LinearGaussianStep {
        let alpha = softmax(z.matmul(self.w_z.clone()) + u.matmul(self.w_u.clone()), 1); // [B, BASES]
        LinearGaussianStep {
            f: alpha.clone().matmul(self.f.clone()).reshape([B, N, N]),
            b: alpha.clone().matmul(self.b.clone()).reshape([B, N, K]),
            q_diag: alpha.matmul(self.q.clone()),
        }
    }
}

struct Inputs {
    prior: Prior,
    emission: Emission,
    obs: Tensor<3>,
    actions: Tensor<3>,
    eps: Tensor<3>,
}

fn inputs(device: &Device) -> Inputs {
    let grad = |t: Tensor<2>| {
        if device.is_autodiff() { t.require_grad() } else { t }
    };
    let grad1 = |t: Tensor<1>| {
        if device.is_autodiff() { t.require_grad() } else { t }
    };
    let grad3 = |t: Tensor<3>| {
        if device.is_autodiff() { t.require_grad() } else { t }
    };
    Inputs {
        prior: Prior { mean: ten(vec![0.0; N], [N], device), var: ten(vec![1.0; N], [N], device) },
        emission: Emission {
            h: grad(ten(pseudo(M * N, 0.8, 0.1), [M, N], device)),
            r_diag: grad1(ten(vec![0.1; M], [M], device)),
        },
        obs: grad3(ten(pseudo(B * T * M, 1.0, 0.5), [B, T, M], device)),
        actions: ten(pseudo(B * T * K, 2.0, 0.9), [B, T, K], device),
        eps: ten(pseudo(B * T * N, 1.0, 0.2), [B, T, N], device),
    }
}

fn eye_plus(scale: f64, phase: f64) -> Vec<f64> {
    let mut v = pseudo(N * N, scale, phase);
    for i in 0..N {
        v[i * N + i] += 0.95;
    }
    v
}

fn bench(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    let lin = LinearTransition {
        f: ten(eye_plus(0.05, 0.3), [N, N], &device).require_grad(),
        b: ten(pseudo(N * K, 0.3, 0.7), [N, K], &device).require_grad(),
        q_diag: ten(vec![0.05; N], [N], &device).require_grad(),
    };
    let mix = Mixture {
        f: ten(
            (0..BASES).flat_map(|j| eye_plus(0.05, j as f64)).collect(),
            [BASES, N * N],
            &device,
        )
        .require_grad(),
        b: ten(pseudo(BASES * N * K, 0.3, 0.7), [BASES, N * K], &device).require_grad(),
        q: ten(vec![0.05; BASES * N], [BASES, N], &device).require_grad(),
        w_z: ten(pseudo(N * BASES, 0.5, 1.3), [N, BASES], &device).require_grad(),
        w_u: ten(pseudo(K * BASES, 0.5, 2.1), [K, BASES], &device).require_grad(),
    };

    let mut group = c.benchmark_group("kalman_B32_T50_n4_m2_f32");
    group.sample_size(30);
    group.bench_function("filter_forward_no_autodiff", |bench| {
        let plain = Device::flex();
        let x = inputs(&plain);
        let lin = LinearTransition {
            f: ten(eye_plus(0.05, 0.3), [N, N], &plain),
            b: ten(pseudo(N * K, 0.3, 0.7), [N, K], &plain),
            q_diag: ten(vec![0.05; N], [N], &plain),
        };
        bench.iter(|| {
            filter(&x.prior, &lin, &x.emission, x.obs.clone(), x.actions.clone())
                .unwrap()
                .log_likelihood
        })
    });
    group.bench_function("filter_ffbs_fwd_bwd_linear", |bench| {
        let x = inputs(&device);
        bench.iter(|| {
            let out =
                filter(&x.prior, &lin, &x.emission, x.obs.clone(), x.actions.clone()).unwrap();
            let s = sample_posterior(&out, x.eps.clone()).unwrap();
            let loss = (out.log_likelihood + s.log_q).sum() + s.z.sum();
            loss.backward()
        })
    });
    group.bench_function("filter_ffbs_fwd_bwd_mixture3", |bench| {
        let x = inputs(&device);
        bench.iter(|| {
            let out =
                filter(&x.prior, &mix, &x.emission, x.obs.clone(), x.actions.clone()).unwrap();
            let s = sample_posterior(&out, x.eps.clone()).unwrap();
            let loss = (out.log_likelihood + s.log_q).sum() + s.z.sum();
            loss.backward()
        })
    });
    group.bench_function("filter_smooth_fwd_bwd_linear", |bench| {
        let x = inputs(&device);
        bench.iter(|| {
            let out =
                filter(&x.prior, &lin, &x.emission, x.obs.clone(), x.actions.clone()).unwrap();
            let sm = smooth(&out).unwrap();
            let loss = out.log_likelihood.sum() + sm.mean_smooth.sum() + sm.cov_smooth.sum();
            loss.backward()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
