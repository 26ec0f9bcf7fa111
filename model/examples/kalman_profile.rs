//! Times the phases of filter + FFBS forward/backward at B=32, T=50, n=4, m=2 (f32).
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p ekvae-model --example kalman_profile -- [ITERS] [filter-only]`
//! (any second argument: the loss is the log-likelihood alone, no FFBS). Wrap in
//! `/usr/bin/time -f %U` for CPU time when the machine is shared.
use burn::tensor::{DType, Device, Tensor, TensorData};
use ekvae_model::kalman::{Emission, LinearTransition, Prior, filter, sample_posterior};
use std::time::Instant;

fn ten<const D: usize>(v: Vec<f64>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), (device, DType::F32))
}
fn pseudo(len: usize, scale: f64, phase: f64) -> Vec<f64> {
    (0..len).map(|i| (0.37 * i as f64 + phase).sin() * scale).collect()
}
fn main() {
    let (b, t, n, m, k) = (32, 50, 4, 2, 1);
    let iters: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let d = Device::flex().autodiff();
    let mut f = pseudo(n * n, 0.05, 0.3);
    for i in 0..n {
        f[i * n + i] += 0.95;
    }
    let lin = LinearTransition {
        f: ten(f, [n, n], &d).require_grad(),
        b: ten(pseudo(n * k, 0.3, 0.7), [n, k], &d).require_grad(),
        q_diag: ten(vec![0.05; n], [n], &d).require_grad(),
    };
    let prior = Prior { mean: ten(vec![0.0; n], [n], &d), var: ten(vec![1.0; n], [n], &d) };
    let em = Emission {
        h: ten(pseudo(m * n, 0.8, 0.1), [m, n], &d).require_grad(),
        r_diag: ten(vec![0.1; m], [m], &d).require_grad(),
    };
    let obs = ten(pseudo(b * t * m, 1.0, 0.5), [b, t, m], &d).require_grad();
    let act = ten(pseudo(b * t * k, 2.0, 0.9), [b, t, k], &d);
    let eps = ten(pseudo(b * t * n, 1.0, 0.2), [b, t, n], &d);
    let (mut tf, mut ts, mut tb) = (0.0, 0.0, 0.0);
    for _ in 0..iters {
        let t0 = Instant::now();
        let out = filter(&prior, &lin, &em, obs.clone(), act.clone()).unwrap();
        let t1 = Instant::now();
        let loss = if std::env::args().nth(2).is_some() {
            out.log_likelihood.sum()
        } else {
            let s = sample_posterior(&out, eps.clone()).unwrap();
            (out.log_likelihood + s.log_q).sum() + s.z.sum()
        };
        let t2 = Instant::now();
        let _g = loss.backward();
        let t3 = Instant::now();
        tf += (t1 - t0).as_secs_f64();
        ts += (t2 - t1).as_secs_f64();
        tb += (t3 - t2).as_secs_f64();
    }
    let k = 1e3 / iters as f64;
    println!("filter fwd {:.2} ms, ffbs fwd {:.2} ms, backward {:.2} ms", tf * k, ts * k, tb * k);
}
