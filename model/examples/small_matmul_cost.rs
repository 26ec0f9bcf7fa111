//! Cost of burn-flex `matmul` against broadcast-and-sum variants for batches
//! of 4×4 matrices (N = 32 and N = 1600), forward and forward+backward with
//! autodiff. The measurement behind `linalg::bmm`.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p ekvae-model --example small_matmul_cost`
use burn::tensor::{DType, Device, Tensor};
use std::time::Instant;
fn time<const D: usize, F: Fn() -> Tensor<D>>(name: &str, f: F) {
    let iters = 200;
    let mut tf = 0.0;
    let t0 = Instant::now();
    for _ in 0..iters {
        let s = Instant::now();
        let x = f();
        tf += s.elapsed().as_secs_f64();
        let _g = x.sum().backward();
    }
    println!(
        "{name}: fwd {:.1} us, fwd+bwd {:.1} us",
        tf / iters as f64 * 1e6,
        t0.elapsed().as_secs_f64() / iters as f64 * 1e6
    );
}
fn unrolled(a: Tensor<3>, b: Tensor<3>) -> Tensor<3> {
    let q = a.dims()[2];
    let mut acc: Option<Tensor<3>> = None;
    for k in 0..q {
        let t = a.clone().narrow(2, k, 1) * b.clone().narrow(1, k, 1);
        acc = Some(match acc {
            None => t,
            Some(x) => x + t,
        });
    }
    acc.unwrap()
}
fn soa(a: Tensor<3>, b: Tensor<3>) -> Tensor<3> {
    // a, b: [p, q, N] -> [p, r, N]
    let [p, q, n] = a.dims();
    let r = b.dims()[1];
    (a.reshape([p, q, 1, n]) * b.reshape([1, q, r, n])).sum_dim(1).reshape([p, r, n])
}
fn soa_unrolled(a: Tensor<3>, b: Tensor<3>) -> Tensor<3> {
    let q = a.dims()[1];
    let mut acc: Option<Tensor<3>> = None;
    for k in 0..q {
        let t = a.clone().narrow(1, k, 1).swap_dims(0, 1) * b.clone().narrow(0, k, 1);
        acc = Some(match acc {
            None => t,
            Some(x) => x + t,
        });
    }
    acc.unwrap()
}
fn bmm(a: Tensor<3>, b: Tensor<3>) -> Tensor<3> {
    let [na, p, _] = a.dims();
    let [nb, _, r] = b.dims();
    let a_s = a.permute([1, 2, 0]).unsqueeze_dim::<4>(2);
    let b_s = b.permute([1, 2, 0]).unsqueeze_dim::<4>(0);
    (a_s * b_s).sum_dim(1).reshape([p, r, na.max(nb)]).permute([2, 0, 1])
}
fn main() {
    let d = Device::flex().autodiff();
    for &nb in &[32usize, 1600] {
        println!("N = {nb}");
        let a = Tensor::<3>::ones([nb, 4, 4], (&d, DType::F32)).require_grad();
        let b = Tensor::<3>::ones([nb, 4, 4], (&d, DType::F32)).require_grad();
        let sa = Tensor::<3>::ones([4, 4, nb], (&d, DType::F32)).require_grad();
        let sb = Tensor::<3>::ones([4, 4, nb], (&d, DType::F32)).require_grad();
        time("matmul", || a.clone().matmul(b.clone()));
        time("unrolled over k", || unrolled(a.clone(), b.clone()));
        time("bmm permute", || bmm(a.clone(), b.clone()));
        time("bmm permute x3", || bmm(bmm(bmm(a.clone(), b.clone()), b.clone()), b.clone()));
        time("matmul x3", || a.clone().matmul(b.clone()).matmul(b.clone()).matmul(b.clone()));
        time("soa bcast", || soa(sa.clone(), sb.clone()));
        time("soa unrolled", || soa_unrolled(sa.clone(), sb.clone()));
        time("add", || a.clone() + b.clone());
        time("soa add", || sa.clone() + sb.clone());
    }
}
