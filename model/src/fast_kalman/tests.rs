//! The plain filter and sampler's hand-derived backward passes against central finite
//! differences, in f64 without burn. (Values and gradients against the burn reference, through
//! the whole objective, are in `model/tests/gradcheck.rs`, which runs with f64 tensors.)

use super::*;

const B: usize = 2;
const T: usize = 6;
const N: usize = 3;
const M: usize = 2;
const K: usize = 1;
const HID: usize = 4;
const BASES: usize = 3;

fn pseudo(len: usize, scale: f64, phase: f64) -> Vec<f64> {
    (0..len).map(|i| (0.37 * i as f64 + phase).sin() * scale).collect()
}

fn transition() -> PlainTransition {
    let mut f = pseudo(BASES * N * N, 0.1, 0.3);
    for c in 0..BASES {
        for i in 0..N {
            f[c * N * N + i * N + i] += 0.95;
        }
    }
    PlainTransition::new(
        N,
        K,
        pseudo((N + K) * HID, 0.8, 1.1),
        pseudo(HID, 0.3, 0.2),
        pseudo(HID * BASES, 0.9, 2.3),
        pseudo(BASES, 0.2, 0.7),
        f,
        pseudo(BASES * N * K, 0.3, 0.9),
        pseudo(BASES * N, 0.02, 0.4).iter().map(|x| 0.05 + x).collect(),
    )
    .unwrap()
}

fn inputs(frozen_mixing: bool) -> FilterInputs {
    FilterInputs {
        batch: B,
        steps: T,
        prior_mean: pseudo(N, 0.3, 0.5),
        prior_var: vec![0.8, 1.1, 0.9],
        h: pseudo(M * N, 0.9, 0.1),
        r: vec![0.07, 0.11],
        obs: pseudo(B * T * M, 1.0, 0.6),
        actions: pseudo(B * T * K, 1.5, 1.9),
        transition: transition(),
        frozen_mixing,
    }
}

/// Fixed weights of every output, so that `J = Σ w ⊙ outputs` exercises every cotangent.
struct Weights {
    filter: OutputCotangents,
    z: Vec<f64>,
    log_q: Vec<f64>,
}

fn weights() -> Weights {
    let (bt, nn) = (B * T, N * N);
    Weights {
        filter: OutputCotangents {
            mean_pred: pseudo(bt * N, 0.5, 0.11),
            cov_pred: pseudo(bt * nn, 0.5, 0.22),
            mean_filt: pseudo(bt * N, 0.5, 0.33),
            cov_filt: pseudo(bt * nn, 0.5, 0.44),
            f: pseudo(bt * nn, 0.5, 0.55),
            q: pseudo(bt * N, 0.5, 0.66),
            log_likelihood: vec![0.7, -0.4],
        },
        z: pseudo(bt * N, 0.8, 0.77),
        log_q: vec![1.0, 0.6],
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const JITTER: f64 = 1e-10;

fn eps() -> Vec<f64> {
    pseudo(B * T * N, 1.0, 0.05)
}

/// J(inputs) = Σ w ⊙ (filter outputs, z, log q); step 0 of `f` is a constant (not weighted).
fn objective(inp: &FilterInputs, w: &Weights) -> f64 {
    let f = PlainFilter::run(inp.clone()).unwrap();
    let s = PlainSample::run(&f, eps(), JITTER).unwrap();
    let c = &w.filter;
    let mut f_weighted = 0.0;
    for bi in 0..B {
        for t in 1..T {
            let r = (bi * T + t) * N * N..(bi * T + t + 1) * N * N;
            f_weighted += dot(&c.f[r.clone()], &f.f[r]);
        }
    }
    dot(&c.mean_pred, &f.mean_pred)
        + dot(&c.cov_pred, &f.cov_pred)
        + dot(&c.mean_filt, &f.mean_filt)
        + dot(&c.cov_filt, &f.cov_filt)
        + f_weighted
        + dot(&c.q, &f.q)
        + dot(&c.log_likelihood, &f.log_likelihood)
        + dot(&w.z, &s.z)
        + dot(&w.log_q, &s.log_q)
}

/// The analytic gradient of [`objective`], with the per-sequence and per-step gradients
/// summed to the shared inputs (bases: Σ α_c ḡ).
struct Analytic {
    g: InputGradients,
    f_bases: Vec<f64>,
    b_bases: Vec<f64>,
    q_bases: Vec<f64>,
}

fn analytic(inp: &FilterInputs, w: &Weights) -> Analytic {
    let f = PlainFilter::run(inp.clone()).unwrap();
    let s = PlainSample::run(&f, eps(), JITTER).unwrap();
    let mut cot = s.backward(&f, &w.z, &w.log_q);
    let add = |a: &mut Vec<f64>, b: &[f64]| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    add(&mut cot.mean_pred, &w.filter.mean_pred);
    add(&mut cot.cov_pred, &w.filter.cov_pred);
    add(&mut cot.mean_filt, &w.filter.mean_filt);
    add(&mut cot.cov_filt, &w.filter.cov_filt);
    add(&mut cot.f, &w.filter.f);
    add(&mut cot.q, &w.filter.q);
    cot.log_likelihood = w.filter.log_likelihood.clone();
    let g = f.backward(&cot);
    let (nn, nk) = (N * N, N * K);
    let mut f_bases = vec![0.0; BASES * nn];
    let mut b_bases = vec![0.0; BASES * nk];
    let mut q_bases = vec![0.0; BASES * N];
    for bt in 0..B * T {
        if bt % T == 0 {
            continue;
        }
        for c in 0..BASES {
            let a = f.alpha[bt * BASES + c];
            for j in 0..nn {
                f_bases[c * nn + j] += a * g.f[bt * nn + j];
            }
            for j in 0..nk {
                b_bases[c * nk + j] += a * g.b[bt * nk + j];
            }
            for j in 0..N {
                q_bases[c * N + j] += a * g.q[bt * N + j];
            }
        }
    }
    Analytic { g, f_bases, b_bases, q_bases }
}

fn sum_over_batch(v: &[f64], width: usize) -> Vec<f64> {
    (0..width).map(|j| (0..v.len() / width).map(|b| v[b * width + j]).sum()).collect()
}

fn check(frozen_mixing: bool) {
    let inp = inputs(frozen_mixing);
    let w = weights();
    let an = analytic(&inp, &w);
    // Central differences, step 1e-6: truncation ≈ 1e-12 · J''', rounding ≈ 1e-16 · |J| / 1e-6.
    let h = 1e-6;
    let mut worst: f64 = 0.0;
    let mut checked = 0;
    type Field = fn(&mut FilterInputs) -> &mut Vec<f64>;
    let fields: [(&str, Field, Vec<f64>); 8] = [
        ("obs", |i| &mut i.obs, an.g.obs.clone()),
        ("H", |i| &mut i.h, sum_over_batch(&an.g.h, M * N)),
        ("r", |i| &mut i.r, sum_over_batch(&an.g.r, M)),
        ("prior mean", |i| &mut i.prior_mean, sum_over_batch(&an.g.prior_mean, N)),
        ("prior var", |i| &mut i.prior_var, sum_over_batch(&an.g.prior_var, N)),
        ("F bases", |i| &mut i.transition.f, an.f_bases.clone()),
        ("B bases", |i| &mut i.transition.b, an.b_bases.clone()),
        ("q bases", |i| &mut i.transition.q, an.q_bases.clone()),
    ];
    for (name, field, grad) in fields {
        assert_eq!(field(&mut inp.clone()).len(), grad.len(), "{name}");
        for (idx, ga) in grad.iter().enumerate() {
            let mut up = inp.clone();
            field(&mut up)[idx] += h;
            let mut down = inp.clone();
            field(&mut down)[idx] -= h;
            let fd = (objective(&up, &w) - objective(&down, &w)) / (2.0 * h);
            let err = (fd - ga).abs() / (1.0 + fd.abs().max(ga.abs()));
            worst = worst.max(err);
            assert!(err < 1e-6, "{name}[{idx}]: analytic {ga} vs finite difference {fd}");
            checked += 1;
        }
    }
    assert_eq!(checked, B * T * M + M * N + M + 2 * N + BASES * (N * N + N * K + N));
    eprintln!("frozen {frozen_mixing}: {checked} entries, worst relative error {worst:.1e}");
}

#[test]
fn backward_matches_finite_differences() {
    check(false);
}

#[test]
fn backward_matches_finite_differences_with_frozen_mixing() {
    check(true);
}

#[test]
fn the_mixing_network_moves_the_gradient() {
    // The input path through α is not negligible here (so the test above covers it): the
    // gradient of the observations differs between the free and the frozen mixing network.
    let w = weights();
    let free = analytic(&inputs(false), &w).g.obs;
    let frozen = analytic(&inputs(true), &w).g.obs;
    let diff = free.iter().zip(&frozen).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(diff > 1e-3, "{diff}");
}

#[test]
fn bad_inputs_are_errors() {
    let mut inp = inputs(false);
    inp.obs.pop();
    let err = PlainFilter::run(inp).unwrap_err().to_string();
    assert!(err.contains("observations"), "{err}");

    let mut inp = inputs(false);
    inp.r = vec![-1.0, 0.1]; // a negative noise variance: log of a negative innovation variance
    inp.prior_var = vec![1e-3; N];
    let err = PlainFilter::run(inp).unwrap_err();
    assert!(matches!(err, Error::NotPositiveDefinite { .. }), "{err}");

    let f = PlainFilter::run(inputs(false)).unwrap();
    let err = PlainSample::run(&f, vec![0.0; 3], JITTER).unwrap_err().to_string();
    assert!(err.contains("FFBS noise"), "{err}");

    let mut bad = f.clone();
    for v in bad.cov_pred.iter_mut() {
        *v = -1.0;
    }
    let err = PlainSample::run(&bad, eps(), JITTER).unwrap_err();
    assert!(matches!(err, Error::NotPositiveDefinite { what: "predicted covariance" }), "{err}");
}

#[test]
fn cholesky_helpers_invert() {
    let a = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
    let mut l = [0.0; 9];
    cholesky_jittered(&a, 3, 0.0, &mut l).unwrap();
    let mut llt = [0.0; 9];
    mm_t(&l, &l, 3, &mut llt);
    let mut linv = [0.0; 9];
    tril_inverse(&l, 3, &mut linv);
    let mut eye = [0.0; 9];
    mm(&linv, &l, 3, &mut eye);
    for i in 0..9 {
        assert!((llt[i] - a[i]).abs() < 1e-14);
        assert!((eye[i] - f64::from(u8::from(i % 4 == 0))).abs() < 1e-14);
    }
    assert!(cholesky_jittered(&[1.0, 2.0, 2.0, 1.0], 2, 0.0, &mut [0.0; 4]).is_none());
}

#[test]
fn sub_batches_give_the_same_bits() {
    // Training filters the batch in chunks on the thread pool (one per thread): every sequence
    // must come out bit for bit the same whatever the chunking, forward and backward.
    let inp = inputs(false);
    let w = weights();
    let whole = PlainFilter::run(inp.clone()).unwrap();
    let whole_sample = PlainSample::run(&whole, eps(), JITTER).unwrap();
    let whole_grad = whole.backward(&whole_sample.backward(&whole, &w.z, &w.log_q));
    for (bi, range) in chunk_ranges(B, 5).into_iter().enumerate() {
        assert_eq!(range, bi..bi + 1, "B = 2 in at most 2 chunks");
        let part = PlainFilter::run(inp.sub_batch(range.clone())).unwrap();
        let e = eps()[range.start * T * N..range.end * T * N].to_vec();
        let sample = PlainSample::run(&part, e, JITTER).unwrap();
        let gz = &w.z[range.start * T * N..range.end * T * N];
        let grad = part.backward(&sample.backward(&part, gz, &w.log_q[range.clone()]));
        let (tn, tm) = (T * N, T * M);
        assert_eq!(part.mean_filt, whole.mean_filt[bi * tn..(bi + 1) * tn]);
        assert_eq!(sample.z, whole_sample.z[bi * tn..(bi + 1) * tn]);
        assert_eq!(sample.log_q, whole_sample.log_q[range.clone()]);
        assert_eq!(grad.obs, whole_grad.obs[bi * tm..(bi + 1) * tm]);
        assert_eq!(grad.f, whole_grad.f[bi * T * N * N..(bi + 1) * T * N * N]);
        assert_eq!(grad.h, whole_grad.h[bi * M * N..(bi + 1) * M * N]);
    }
    assert_eq!(chunk_ranges(10, 3), vec![0..3, 3..6, 6..10]);
    assert_eq!(chunk_ranges(1, 4), vec![0..1]);
}
