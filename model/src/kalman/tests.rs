//! Tests of the Kalman filter, smoother and FFBS against an independent dense
//! reference: the joint Gaussian of `(z_{0:T−1}, y_{0:T−1})` of a short
//! linear-Gaussian sequence, built directly from the model and conditioned by
//! plain-f64 Gauss–Jordan inversion (no burn, no Kalman recursion).

use super::*;
use burn::tensor::{Device, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------------------
// Plain f64 dense matrices (the reference)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Mat {
    r: usize,
    c: usize,
    d: Vec<f64>,
}

impl Mat {
    fn zeros(r: usize, c: usize) -> Self {
        Mat { r, c, d: vec![0.0; r * c] }
    }
    fn from(r: usize, c: usize, d: &[f64]) -> Self {
        assert_eq!(d.len(), r * c);
        Mat { r, c, d: d.to_vec() }
    }
    fn eye(n: usize) -> Self {
        let mut m = Self::zeros(n, n);
        for i in 0..n {
            m.set(i, i, 1.0);
        }
        m
    }
    fn diag(v: &[f64]) -> Self {
        let mut m = Self::zeros(v.len(), v.len());
        for (i, x) in v.iter().enumerate() {
            m.set(i, i, *x);
        }
        m
    }
    fn at(&self, i: usize, j: usize) -> f64 {
        self.d[i * self.c + j]
    }
    fn set(&mut self, i: usize, j: usize, v: f64) {
        self.d[i * self.c + j] = v;
    }
    fn mul(&self, o: &Mat) -> Mat {
        assert_eq!(self.c, o.r);
        let mut m = Mat::zeros(self.r, o.c);
        for i in 0..self.r {
            for j in 0..o.c {
                m.set(i, j, (0..self.c).map(|k| self.at(i, k) * o.at(k, j)).sum());
            }
        }
        m
    }
    fn t(&self) -> Mat {
        let mut m = Mat::zeros(self.c, self.r);
        for i in 0..self.r {
            for j in 0..self.c {
                m.set(j, i, self.at(i, j));
            }
        }
        m
    }
    fn add(&self, o: &Mat) -> Mat {
        Mat { r: self.r, c: self.c, d: self.d.iter().zip(&o.d).map(|(a, b)| a + b).collect() }
    }
    fn sub(&self, o: &Mat) -> Mat {
        Mat { r: self.r, c: self.c, d: self.d.iter().zip(&o.d).map(|(a, b)| a - b).collect() }
    }
    fn block(&self, i0: usize, j0: usize, r: usize, c: usize) -> Mat {
        let mut m = Mat::zeros(r, c);
        for i in 0..r {
            for j in 0..c {
                m.set(i, j, self.at(i0 + i, j0 + j));
            }
        }
        m
    }
    fn set_block(&mut self, i0: usize, j0: usize, b: &Mat) {
        for i in 0..b.r {
            for j in 0..b.c {
                self.set(i0 + i, j0 + j, b.at(i, j));
            }
        }
    }
    /// Gauss–Jordan inverse with partial pivoting.
    fn inv(&self) -> Mat {
        let n = self.r;
        let mut a = self.clone();
        let mut inv = Mat::eye(n);
        for col in 0..n {
            let p = (col..n)
                .max_by(|&x, &y| a.at(x, col).abs().total_cmp(&a.at(y, col).abs()))
                .unwrap();
            for j in 0..n {
                a.d.swap(col * n + j, p * n + j);
                inv.d.swap(col * n + j, p * n + j);
            }
            let piv = a.at(col, col);
            for j in 0..n {
                a.set(col, j, a.at(col, j) / piv);
                inv.set(col, j, inv.at(col, j) / piv);
            }
            for i in 0..n {
                if i != col {
                    let f = a.at(i, col);
                    for j in 0..n {
                        a.set(i, j, a.at(i, j) - f * a.at(col, j));
                        inv.set(i, j, inv.at(i, j) - f * inv.at(col, j));
                    }
                }
            }
        }
        inv
    }
    /// Cholesky factor ([`ekvae_numerics::cholesky`]); `None` if not positive definite.
    fn chol(&self) -> Option<Mat> {
        let n = self.r;
        let mut l = Mat::zeros(n, n);
        ekvae_numerics::cholesky(&self.d, n, &mut l.d).ok()?;
        Some(l)
    }
    fn log_det_spd(&self) -> f64 {
        let l = self.chol().expect("SPD");
        (0..self.r).map(|i| 2.0 * l.at(i, i).ln()).sum()
    }
}

fn mvn_log_pdf(x: &[f64], mean: &[f64], cov: &Mat) -> f64 {
    let n = x.len();
    let diff = Mat::from(n, 1, &x.iter().zip(mean).map(|(a, b)| a - b).collect::<Vec<_>>());
    let quad = diff.t().mul(&cov.inv()).mul(&diff).at(0, 0);
    -0.5 * (quad + cov.log_det_spd() + n as f64 * crate::linalg::LN_2PI)
}

// ---------------------------------------------------------------------------
// The test model
// ---------------------------------------------------------------------------

/// A linear-Gaussian model in plain f64.
#[derive(Debug, Clone)]
struct Lgm {
    n: usize,
    m: usize,
    k: usize,
    f: Vec<f64>,
    b: Vec<f64>,
    q: Vec<f64>,
    h: Vec<f64>,
    r: Vec<f64>,
    mu0: Vec<f64>,
    v0: Vec<f64>,
}

fn model_2d(m: usize) -> Lgm {
    let h = if m == 2 { vec![1.0, 0.5, -0.3, 1.2] } else { vec![1.0, -0.7] };
    Lgm {
        n: 2,
        m,
        k: 1,
        f: vec![0.9, 0.2, -0.3, 0.8],
        b: vec![0.5, -0.2],
        q: vec![0.1, 0.2],
        h,
        r: vec![0.3, 0.5][..m].to_vec(),
        mu0: vec![0.2, -0.1],
        v0: vec![1.0, 0.5],
    }
}

/// Deterministic pseudo-data `[B, T, m]` and actions `[B, T, k]`.
fn data(batch: usize, steps: usize, m: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let obs = (0..batch * steps * m).map(|i| (0.7 * i as f64 + 0.3).sin() * 1.5).collect();
    let act = (0..batch * steps * k).map(|i| (0.45 * i as f64).cos()).collect();
    (obs, act)
}

/// Dense joint Gaussian of `Z = z_{0:T−1}` and `Y = y_{0:T−1}` for one sequence.
struct Joint {
    mu_z: Vec<f64>,
    cov_z: Mat,
    mu_y: Vec<f64>,
    cov_y: Mat,
    cov_zy: Mat,
}

fn dense_joint(p: &Lgm, act: &[f64], steps: usize) -> Joint {
    let (n, m, k) = (p.n, p.m, p.k);
    let f = Mat::from(n, n, &p.f);
    let b = Mat::from(n, k, &p.b);
    let h = Mat::from(m, n, &p.h);
    // Means: μ_t = F μ_{t−1} + B u_{t−1}.
    let mut mu = vec![Mat::from(n, 1, &p.mu0)];
    for t in 1..steps {
        let u = Mat::from(k, 1, &act[(t - 1) * k..t * k]);
        mu.push(f.mul(&mu[t - 1]).add(&b.mul(&u)));
    }
    // Covariances: Cov(z_t, z_t) = F Cov_{t−1} Fᵀ + Q; Cov(z_t, z_s) = F^{t−s} Cov(z_s).
    let mut cov_z = Mat::zeros(steps * n, steps * n);
    let mut marg = Mat::diag(&p.v0);
    for s in 0..steps {
        if s > 0 {
            marg = f.mul(&marg).mul(&f.t()).add(&Mat::diag(&p.q));
        }
        cov_z.set_block(s * n, s * n, &marg);
        let mut c = marg.clone();
        for t in s + 1..steps {
            c = f.mul(&c);
            cov_z.set_block(t * n, s * n, &c);
            cov_z.set_block(s * n, t * n, &c.t());
        }
    }
    let mut h_big = Mat::zeros(steps * m, steps * n);
    for t in 0..steps {
        h_big.set_block(t * m, t * n, &h);
    }
    let mu_z: Vec<f64> = mu.iter().flat_map(|v| v.d.clone()).collect();
    let mu_y = h_big.mul(&Mat::from(steps * n, 1, &mu_z)).d;
    let r_big = Mat::diag(&(0..steps).flat_map(|_| p.r.clone()).collect::<Vec<_>>());
    let cov_y = h_big.mul(&cov_z).mul(&h_big.t()).add(&r_big);
    let cov_zy = cov_z.mul(&h_big.t());
    Joint { mu_z, cov_z, mu_y, cov_y, cov_zy }
}

/// `Z | Y_{0:len−1}`: mean `[T·n]` and covariance.
fn condition(j: &Joint, obs: &[f64], m: usize, len: usize) -> (Vec<f64>, Mat) {
    let ly = len * m;
    let nz = j.mu_z.len();
    let syy = j.cov_y.block(0, 0, ly, ly);
    let szy = j.cov_zy.block(0, 0, nz, ly);
    let gain = szy.mul(&syy.inv());
    let resid =
        Mat::from(ly, 1, &obs[..ly].iter().zip(&j.mu_y).map(|(a, b)| a - b).collect::<Vec<_>>());
    let mean = Mat::from(nz, 1, &j.mu_z).add(&gain.mul(&resid)).d;
    let cov = j.cov_z.sub(&gain.mul(&szy.t()));
    (mean, cov)
}

// ---------------------------------------------------------------------------
// burn side
// ---------------------------------------------------------------------------

fn dev() -> Device {
    Device::flex()
}

fn ten<const D: usize>(v: Vec<f64>, shape: [usize; D], device: &Device, dtype: DType) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), (device, dtype))
}

struct Burn {
    prior: Prior,
    trans: LinearTransition,
    emission: Emission,
}

fn to_burn(p: &Lgm, device: &Device, dtype: DType) -> Burn {
    Burn {
        prior: Prior {
            mean: ten(p.mu0.clone(), [p.n], device, dtype),
            var: ten(p.v0.clone(), [p.n], device, dtype),
        },
        trans: LinearTransition {
            f: ten(p.f.clone(), [p.n, p.n], device, dtype),
            b: ten(p.b.clone(), [p.n, p.k], device, dtype),
            q_diag: ten(p.q.clone(), [p.n], device, dtype),
        },
        emission: Emission {
            h: ten(p.h.clone(), [p.m, p.n], device, dtype),
            r_diag: ten(p.r.clone(), [p.m], device, dtype),
        },
    }
}

fn vals<const D: usize>(t: &Tensor<D>) -> Vec<f64> {
    crate::linalg::values_f64(t.clone())
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w} (tol {tol})"
        );
    }
}

/// Runs the burn filter for `batch` sequences of the pseudo-data.
fn run_filter(
    p: &Lgm,
    batch: usize,
    steps: usize,
    device: &Device,
    dtype: DType,
) -> (FilterOutput, Vec<f64>, Vec<f64>) {
    let bm = to_burn(p, device, dtype);
    let (obs, act) = data(batch, steps, p.m, p.k);
    let out = filter(
        &bm.prior,
        &bm.trans,
        &bm.emission,
        ten(obs.clone(), [batch, steps, p.m], device, dtype),
        ten(act.clone(), [batch, steps, p.k], device, dtype),
    )
    .expect("filter");
    (out, obs, act)
}

// Reference: dense joint Gaussian conditioned on the prefix y_{0:t} gives the
// filtered marginal at t; on all of y the smoothed marginals; the marginal of Y
// gives the likelihood.
fn check_against_dense(m: usize, steps: usize) {
    let p = model_2d(m);
    let batch = 2;
    let n = p.n;
    let (out, obs, act) = run_filter(&p, batch, steps, &dev(), DType::F64);
    let sm = smooth(&out).expect("smooth");
    let (mf, pf, ll) = (vals(&out.mean_filt), vals(&out.cov_filt), vals(&out.log_likelihood));
    let (ms, ps) = (vals(&sm.mean_smooth), vals(&sm.cov_smooth));
    for bi in 0..batch {
        let o = &obs[bi * steps * m..(bi + 1) * steps * m];
        let a = &act[bi * steps * p.k..(bi + 1) * steps * p.k];
        let joint = dense_joint(&p, a, steps);
        for t in 0..steps {
            let (mean, cov) = condition(&joint, o, m, t + 1);
            let off = (bi * steps + t) * n;
            assert_close(
                &format!("mean_filt b{bi} t{t}"),
                &mf[off..off + n],
                &mean[t * n..(t + 1) * n],
                1e-8,
            );
            assert_close(
                &format!("cov_filt b{bi} t{t}"),
                &pf[off * n..(off + n) * n],
                &cov.block(t * n, t * n, n, n).d,
                1e-8,
            );
        }
        let (mean, cov) = condition(&joint, o, m, steps);
        for t in 0..steps {
            let off = (bi * steps + t) * n;
            assert_close(
                &format!("mean_smooth b{bi} t{t}"),
                &ms[off..off + n],
                &mean[t * n..(t + 1) * n],
                1e-8,
            );
            assert_close(
                &format!("cov_smooth b{bi} t{t}"),
                &ps[off * n..(off + n) * n],
                &cov.block(t * n, t * n, n, n).d,
                1e-8,
            );
        }
        let want_ll = mvn_log_pdf(o, &joint.mu_y, &joint.cov_y);
        assert_close(&format!("log_likelihood b{bi}"), &ll[bi..bi + 1], &[want_ll], 1e-9);
    }
}

#[test]
fn filter_smoother_likelihood_match_dense_posterior_m2() {
    check_against_dense(2, 4);
}

#[test]
fn filter_smoother_likelihood_match_dense_posterior_m1() {
    check_against_dense(1, 7);
}

#[test]
fn single_step_sequence_matches_dense() {
    check_against_dense(2, 1);
}

#[test]
fn smoother_equals_filter_at_last_step() {
    let p = model_2d(2);
    let (out, _, _) = run_filter(&p, 3, 6, &dev(), DType::F64);
    let sm = smooth(&out).unwrap();
    let last = |t: &Tensor<3>| vals(&t.clone().narrow(1, 5, 1));
    let last4 = |t: &Tensor<4>| vals(&t.clone().narrow(1, 5, 1));
    assert_close("mean", &last(&sm.mean_smooth), &last(&out.mean_filt), 1e-14);
    assert_close("cov", &last4(&sm.cov_smooth), &last4(&out.cov_filt), 1e-14);
    assert!(last4(&sm.smoother_gain).iter().all(|v| *v == 0.0));
}

#[test]
fn f32_agrees_with_f64() {
    let p = model_2d(2);
    let (o64, _, _) = run_filter(&p, 2, 8, &dev(), DType::F64);
    let (o32, _, _) = run_filter(&p, 2, 8, &dev(), DType::F32);
    assert_eq!(o32.mean_filt.dtype(), DType::F32);
    assert_close("ll", &vals(&o32.log_likelihood), &vals(&o64.log_likelihood), 1e-4);
    let (s64, s32) = (smooth(&o64).unwrap(), smooth(&o32).unwrap());
    assert_close("mean_smooth", &vals(&s32.mean_smooth), &vals(&s64.mean_smooth), 1e-4);
    assert_close("cov_smooth", &vals(&s32.cov_smooth), &vals(&s64.cov_smooth), 1e-4);
    let eps64 = ten(vec![0.3; 2 * 8 * 2], [2, 8, 2], &dev(), DType::F64);
    let eps32 = ten(vec![0.3; 2 * 8 * 2], [2, 8, 2], &dev(), DType::F32);
    let (q64, q32) =
        (sample_posterior(&o64, eps64).unwrap(), sample_posterior(&o32, eps32).unwrap());
    assert_close("z", &vals(&q32.z), &vals(&q64.z), 1e-4);
    assert_close("log_q", &vals(&q32.log_q), &vals(&q64.log_q), 1e-4);
}

// ---------------------------------------------------------------------------
// FFBS
// ---------------------------------------------------------------------------

fn std_normals(rng: &mut ChaCha8Rng, len: usize) -> Vec<f64> {
    // Box–Muller.
    (0..len)
        .map(|_| {
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}

/// Samples' mean, marginal covariances and lag-one cross-covariances against
/// the dense posterior. With S samples, the standard error of a mean is
/// √(σ²/S) and of a covariance entry √((σ_ii σ_jj + σ_ij²)/S); we allow 5
/// standard errors (each of the 64 checks then fails by chance with p < 1e-6).
#[test]
fn ffbs_moments_match_dense_posterior() {
    let p = model_2d(2);
    let (steps, n, samples) = (4, 2, 20_000);
    // One sequence, replicated along the batch.
    let (obs, act) = data(1, steps, p.m, p.k);
    let rep = |v: &[f64]| -> Vec<f64> { (0..samples).flat_map(|_| v.iter().copied()).collect() };
    let d = dev();
    let bm = to_burn(&p, &d, DType::F64);
    let out = filter(
        &bm.prior,
        &bm.trans,
        &bm.emission,
        ten(rep(&obs), [samples, steps, p.m], &d, DType::F64),
        ten(rep(&act), [samples, steps, p.k], &d, DType::F64),
    )
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let eps = std_normals(&mut rng, samples * steps * n);
    let z = vals(&sample_posterior(&out, ten(eps, [samples, steps, n], &d, DType::F64)).unwrap().z);

    let joint = dense_joint(&p, &act, steps);
    let (mean, cov) = condition(&joint, &obs, p.m, steps);
    let dim = steps * n;
    let s = samples as f64;
    let mut emp_mean = vec![0.0; dim];
    for row in z.chunks(dim) {
        for (e, v) in emp_mean.iter_mut().zip(row) {
            *e += v / s;
        }
    }
    for i in 0..dim {
        let se = (cov.at(i, i) / s).sqrt();
        assert!(
            (emp_mean[i] - mean[i]).abs() < 5.0 * se,
            "mean {i}: {} vs {}",
            emp_mean[i],
            mean[i]
        );
    }
    // Covariances within a step and between neighbouring steps.
    for i in 0..dim {
        for j in 0..dim {
            if i / n != j / n && i / n + 1 != j / n {
                continue;
            }
            let emp: f64 =
                z.chunks(dim).map(|r| (r[i] - emp_mean[i]) * (r[j] - emp_mean[j])).sum::<f64>()
                    / (s - 1.0);
            let want = cov.at(i, j);
            let se = ((cov.at(i, i) * cov.at(j, j) + want * want) / s).sqrt();
            assert!((emp - want).abs() < 5.0 * se, "cov ({i},{j}): {emp} vs {want} (se {se})");
        }
    }
}

/// For a linear-Gaussian model the FFBS joint is the smoothing posterior, so
/// `log_q` must equal the dense posterior log-density of the sample.
#[test]
fn ffbs_log_q_equals_dense_posterior_density() {
    for &(m, steps) in &[(2usize, 4usize), (1, 3), (2, 1)] {
        let p = model_2d(m);
        let (batch, n) = (3, p.n);
        let (out, obs, act) = run_filter(&p, batch, steps, &dev(), DType::F64);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let eps = std_normals(&mut rng, batch * steps * n);
        let sample =
            sample_posterior(&out, ten(eps, [batch, steps, n], &dev(), DType::F64)).unwrap();
        let (z, log_q) = (vals(&sample.z), vals(&sample.log_q));
        let direct = vals(&posterior_log_prob(&out, sample.z.clone()).unwrap());
        for bi in 0..batch {
            let o = &obs[bi * steps * m..(bi + 1) * steps * m];
            let a = &act[bi * steps * p.k..(bi + 1) * steps * p.k];
            let joint = dense_joint(&p, a, steps);
            let (mean, cov) = condition(&joint, o, m, steps);
            let want = mvn_log_pdf(&z[bi * steps * n..(bi + 1) * steps * n], &mean, &cov);
            assert_close(&format!("log_q m{m} T{steps} b{bi}"), &[log_q[bi]], &[want], 1e-7);
            assert_close(&format!("posterior_log_prob b{bi}"), &[direct[bi]], &[want], 1e-7);
        }
    }
}

// ---------------------------------------------------------------------------
// Gradients against central finite differences (f64)
// ---------------------------------------------------------------------------

/// Which output the differentiated scalar is built from.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// Σ_b log p(y_b).
    LogLikelihood,
    /// Σ_b log q(z_b) of an FFBS sample with fixed eps, plus Σ z (the sample's path).
    Ffbs,
    /// Σ of the smoothed means and covariances.
    Smoother,
}

/// The differentiated parameters: obs, H, F, q, r (flattened, in that order).
const PARAM_SHAPES: [&[usize]; 5] = [&[2, 4, 2], &[2, 2], &[2, 2], &[2], &[2]];

fn objective(
    params: &[Vec<f64>; 5],
    part: Part,
    device: &Device,
    grad: bool,
) -> (Tensor<1>, Vec<Tensor<3>>) {
    let p = model_2d(2);
    let (batch, steps) = (2, 4);
    let (_, act) = data(batch, steps, 2, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let eps = std_normals(&mut rng, batch * steps * 2);
    let f64t = DType::F64;
    let mark = |t: Tensor<3>| if grad { t.require_grad() } else { t };
    // Every parameter as a rank-3 leaf (reshaped to its own rank below), so
    // the gradients come back uniformly.
    let leaves: Vec<Tensor<3>> =
        params.iter().map(|v| mark(ten(v.clone(), [1, 1, v.len()], device, f64t))).collect();
    let obs = leaves[0].clone().reshape([batch, steps, 2]);
    let h = leaves[1].clone().reshape([2, 2]);
    let f = leaves[2].clone().reshape([2, 2]);
    let q = leaves[3].clone().reshape([2]);
    let r = leaves[4].clone().reshape([2]);
    let prior = Prior {
        mean: ten(p.mu0.clone(), [2], device, f64t),
        var: ten(p.v0.clone(), [2], device, f64t),
    };
    let trans = LinearTransition { f, b: ten(p.b.clone(), [2, 1], device, f64t), q_diag: q };
    let emission = Emission { h, r_diag: r };
    let act_t = ten(act, [batch, steps, 1], device, f64t);
    let out = filter(&prior, &trans, &emission, obs, act_t).unwrap();
    let value = match part {
        Part::LogLikelihood => out.log_likelihood.sum(),
        Part::Ffbs => {
            let sample = sample_posterior(&out, ten(eps, [batch, steps, 2], device, f64t)).unwrap();
            sample.log_q.sum() + sample.z.sum()
        }
        Part::Smoother => {
            let sm = smooth(&out).unwrap();
            sm.mean_smooth.sum() + sm.cov_smooth.sum()
        }
    };
    (value, leaves)
}

/// Autodiff gradients of the log-likelihood, of the FFBS log-density (and
/// sample), and of the smoother outputs w.r.t. obs, H, F, q and r, each
/// against central finite differences in f64.
#[test]
fn gradients_match_finite_differences() {
    let p = model_2d(2);
    let (obs, _) = data(2, 4, 2, 1);
    let params: [Vec<f64>; 5] = [obs, p.h.clone(), p.f.clone(), p.q.clone(), p.r.clone()];
    for (i, shape) in PARAM_SHAPES.iter().enumerate() {
        assert_eq!(params[i].len(), shape.iter().product::<usize>());
    }
    let names = ["obs", "H", "F", "q", "r"];
    let ad = dev().autodiff();
    let plain = dev();
    // Central differences, step 1e-5: truncation O(h²) ≈ 1e-10, rounding ≈ 1e-16/h ≈ 1e-11.
    let hstep = 1e-5;
    for part in [Part::LogLikelihood, Part::Ffbs, Part::Smoother] {
        let (value, leaves) = objective(&params, part, &ad, true);
        let grads = value.backward();
        for (which, leaf) in leaves.iter().enumerate() {
            let g = vals(&leaf.grad(&grads).expect("gradient"));
            for (idx, ga) in g.iter().enumerate() {
                let mut up = params.clone();
                up[which][idx] += hstep;
                let mut down = params.clone();
                down[which][idx] -= hstep;
                let num = (vals(&objective(&up, part, &plain, false).0)[0]
                    - vals(&objective(&down, part, &plain, false).0)[0])
                    / (2.0 * hstep);
                assert!(
                    (ga - num).abs() < 1e-6 * (1.0 + num.abs()),
                    "{part:?}: d/d{}[{idx}]: autodiff {ga}, finite difference {num}",
                    names[which]
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[test]
fn bad_shapes_and_non_positive_variances_are_errors() {
    let p = model_2d(2);
    let d = dev();
    let bm = to_burn(&p, &d, DType::F64);
    let (obs, act) = data(2, 3, 2, 1);
    let obs_t = ten(obs.clone(), [2, 3, 2], &d, DType::F64);
    let act_t = ten(act.clone(), [2, 3, 1], &d, DType::F64);
    // actions with the wrong T
    let short = ten(act[..4].to_vec(), [2, 2, 1], &d, DType::F64);
    assert!(matches!(
        filter(&bm.prior, &bm.trans, &bm.emission, obs_t.clone(), short),
        Err(Error::Shape { what: "actions", .. })
    ));
    // observations with the wrong m
    let obs3 = ten(vec![0.0; 18], [2, 3, 3], &d, DType::F64);
    assert!(matches!(
        filter(&bm.prior, &bm.trans, &bm.emission, obs3, act_t.clone()),
        Err(Error::Shape { what: "emission.h", .. })
    ));
    // transition with the wrong k
    let mut bad = to_burn(&p, &d, DType::F64);
    bad.trans.b = ten(vec![0.0; 4], [2, 2], &d, DType::F64);
    assert!(matches!(
        filter(&bad.prior, &bad.trans, &bad.emission, obs_t.clone(), act_t.clone()),
        Err(Error::Shape { what: "transition b", .. })
    ));
    // mixed dtypes
    let act32 = ten(act.clone(), [2, 3, 1], &d, DType::F32);
    assert!(matches!(
        filter(&bm.prior, &bm.trans, &bm.emission, obs_t.clone(), act32),
        Err(Error::DType { what: "actions", .. })
    ));
    // a negative observation variance
    let mut neg = to_burn(&p, &d, DType::F64);
    neg.emission.r_diag = ten(vec![-5.0, 0.5], [2], &d, DType::F64);
    assert!(matches!(
        filter(&neg.prior, &neg.trans, &neg.emission, obs_t.clone(), act_t.clone()),
        Err(Error::NotPositiveDefinite { .. })
    ));
    // eps of the wrong shape
    let out = filter(&bm.prior, &bm.trans, &bm.emission, obs_t, act_t).unwrap();
    assert!(matches!(
        sample_posterior(&out, ten(vec![0.0; 6], [2, 3, 1], &d, DType::F64)),
        Err(Error::Shape { what: "eps", .. })
    ));
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

mod props {
    use super::*;
    use proptest::prelude::*;

    fn spd(m: &[f64], n: usize) -> bool {
        ekvae_numerics::is_symmetric(m, n, 1e-12) && Mat::from(n, n, m).chol().is_some()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Filtered, predicted and smoothed covariances stay symmetric positive
        /// definite for random stable-ish models, and the smoother equals the
        /// filter at the last step.
        #[test]
        fn covariances_spd_and_smoother_ends_at_filter(
            f in proptest::collection::vec(-1.2f64..1.2, 9),
            h in proptest::collection::vec(-2.0f64..2.0, 6),
            q in proptest::collection::vec(1e-3f64..1.0, 3),
            r in proptest::collection::vec(1e-3f64..1.0, 2),
            seed in 0u64..1000,
        ) {
            let (n, m, k, steps, batch) = (3usize, 2usize, 1usize, 5usize, 2usize);
            let p = Lgm { n, m, k, f, b: vec![0.3, -0.1, 0.2], q, h, r, mu0: vec![0.0; 3], v0: vec![1.0, 2.0, 0.5] };
            let d = dev();
            let bm = to_burn(&p, &d, DType::F64);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let obs = std_normals(&mut rng, batch * steps * m);
            let act = std_normals(&mut rng, batch * steps * k);
            let out = filter(&bm.prior, &bm.trans, &bm.emission,
                ten(obs, [batch, steps, m], &d, DType::F64), ten(act, [batch, steps, k], &d, DType::F64)).unwrap();
            let sm = smooth(&out).unwrap();
            for (name, cov) in [("pred", &out.cov_pred), ("filt", &out.cov_filt), ("smooth", &sm.cov_smooth)] {
                for (i, c) in vals(cov).chunks(n * n).enumerate() {
                    prop_assert!(spd(c, n), "{} covariance {} not SPD: {:?}", name, i, c);
                }
            }
            let last = |t: &Tensor<4>| vals(&t.clone().narrow(1, steps - 1, 1));
            prop_assert_eq!(last(&sm.cov_smooth), last(&out.cov_filt));
        }
    }
}
