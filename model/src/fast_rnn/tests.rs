//! The plain RNN pass's hand-derived backward pass against central finite differences, in
//! f64 without burn; and its blocks' independence of the thread count. (Values and gradients
//! against the burn reference, through the whole objective, are in `model/tests/gradcheck.rs`.)

use super::*;

const T: usize = 5;

fn pseudo(len: usize, scale: f64, phase: f64) -> Vec<f64> {
    (0..len).map(|i| (0.37 * i as f64 + phase).sin() * scale).collect()
}

fn weights() -> RnnWeights {
    let (m, k, n, h) = (2, 1, 3, 4);
    RnnWeights {
        m,
        k,
        n,
        h,
        wx: pseudo((m + k) * 3 * h, 0.9, 0.1),
        bx: pseudo(3 * h, 0.3, 0.4),
        wh: pseudo(h * 3 * h, 0.7, 1.3),
        bh: pseudo(3 * h, 0.2, 2.1),
        wc: pseudo((n + k) * h, 0.8, 0.7),
        bc: pseudo(h, 0.3, 1.7),
        wo: pseudo(h * 2 * n, 0.9, 2.9),
        bo: pseudo(2 * n, 0.4, 0.2),
    }
}

struct Case {
    b: usize,
    a: Vec<f64>,
    u: Vec<f64>,
    eps: Vec<f64>,
    wz: Vec<f64>,
    wlq: Vec<f64>,
}

fn case(b: usize) -> Case {
    let w = weights();
    Case {
        b,
        a: pseudo(b * T * w.m, 1.2, 0.6),
        u: pseudo(b * T * w.k, 1.5, 1.9),
        eps: pseudo(b * T * w.n, 1.1, 0.8),
        wz: pseudo(b * T * w.n, 1.0, 2.6),
        wlq: pseudo(b, 0.7, 1.4).iter().map(|x| x + 0.5).collect(),
    }
}

/// `J = Σ wz ⊙ z + Σ wlq ⊙ log q`.
fn objective(w: &RnnWeights, c: &Case, a: &[f64]) -> f64 {
    let parts = run_batch(w, a, &c.u, &c.eps, c.b, T).unwrap();
    let z: Vec<f64> = parts.iter().flat_map(|p| p.z.iter().copied()).collect();
    let lq: Vec<f64> = parts.iter().flat_map(|p| p.log_q.iter().copied()).collect();
    z.iter().zip(&c.wz).map(|(x, y)| x * y).sum::<f64>()
        + lq.iter().zip(&c.wlq).map(|(x, y)| x * y).sum::<f64>()
}

#[test]
fn backward_matches_finite_differences_on_every_entry() {
    // Two blocks (B = 10 > BLOCK) so the blocks' sums are exercised too.
    let w = weights();
    let c = case(10);
    let parts = run_batch(&w, &c.a, &c.u, &c.eps, c.b, T).unwrap();
    let (da, gw) = backward_batch(&w, &parts, &c.wz, &c.wlq);
    let h = 1e-6;
    let mut worst: f64 = 0.0;
    let mut checked = 0;
    let mut compare = |analytic: f64, plus: f64, minus: f64, what: &str| {
        let fd = (plus - minus) / (2.0 * h);
        let err = (analytic - fd).abs() / (1e-6 + analytic.abs().max(fd.abs()));
        assert!(err < 1e-5, "{what}: analytic {analytic} vs finite differences {fd}");
        worst = worst.max(err);
        checked += 1;
    };
    for i in 0..c.a.len() {
        let mut p = c.a.clone();
        p[i] += h;
        let plus = objective(&w, &c, &p);
        p[i] -= 2.0 * h;
        compare(da[i], plus, objective(&w, &c, &p), &format!("a[{i}]"));
    }
    let names = ["wx", "bx", "wh", "bh", "wc", "bc", "wo", "bo"];
    for (f, name) in names.iter().enumerate() {
        for i in 0..gw.fields()[f].len() {
            let mut p = w.clone();
            p.fields_mut()[f][i] += h;
            let plus = objective(&p, &c, &c.a);
            p.fields_mut()[f][i] -= 2.0 * h;
            compare(gw.fields()[f][i], plus, objective(&p, &c, &c.a), &format!("{name}[{i}]"));
        }
    }
    // a: 10·5·2 = 100 entries; the weights: 36 + 12 + 48 + 12 + 16 + 4 + 24 + 6 = 158.
    assert_eq!(checked, 258);
    eprintln!("{checked} entries, worst relative error {worst:.1e}");
}

#[test]
fn blocks_do_not_depend_on_the_thread_count() {
    let w = weights();
    let c = case(19); // blocks of 8, 8 and 3
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let parts = run_batch(&w, &c.a, &c.u, &c.eps, c.b, T).unwrap();
            let z: Vec<f64> = parts.iter().flat_map(|p| p.z.iter().copied()).collect();
            let (da, gw) = backward_batch(&w, &parts, &c.wz, &c.wlq);
            (z, da, gw)
        })
    };
    let one = run(1);
    for threads in [2, 3] {
        let other = run(threads);
        assert!(one.0.iter().zip(&other.0).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!(one.1.iter().zip(&other.1).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert_eq!(one.2, other.2, "{threads} threads");
    }
}

#[test]
fn bad_shapes_are_refused() {
    let w = weights();
    let c = case(2);
    assert!(run_batch(&w, &c.a[1..], &c.u, &c.eps, 2, T).is_err());
    assert!(run_batch(&w, &c.a, &c.u, &c.eps, 3, T).is_err());
}
