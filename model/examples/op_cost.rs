use burn::tensor::{DType, Device, Tensor};
use std::time::Instant;
fn time<F: Fn() -> Tensor<4>>(name: &str, f: F) {
    let iters = 300;
    let mut tf = 0.0; let t0 = Instant::now();
    for _ in 0..iters { let s = Instant::now(); let x = f(); tf += s.elapsed().as_secs_f64(); let _g = x.sum().backward(); }
    println!("{name}: fwd {:.2} us, fwd+bwd {:.2} us", tf / iters as f64 * 1e6, t0.elapsed().as_secs_f64() / iters as f64 * 1e6);
}
fn main() {
    let d = Device::flex().autodiff();
    for &nb in &[32usize, 1600] {
        println!("N = {nb}");
        let a = Tensor::<4>::ones([nb, 4, 1, 4], (&d, DType::F32)).require_grad();
        let b = Tensor::<4>::ones([nb, 1, 4, 4], (&d, DType::F32)).require_grad();
        let full = Tensor::<4>::ones([nb, 4, 4, 4], (&d, DType::F32)).require_grad();
        let a3 = Tensor::<3>::ones([nb, 4, 4], (&d, DType::F32)).require_grad();
        time("mul broadcast [N,4,1,4]*[N,1,4,4]", || a.clone() * b.clone());
        time("mul full [N,4,4,4]", || full.clone() * full.clone());
        time("sum_dim(3) of full", || full.clone().sum_dim(3));
        time("sum_dim(2) of full", || full.clone().sum_dim(2));
        time("reshape 3->4", || a3.clone().reshape([nb, 4, 4, 1]));
        time("transpose+mul", || a3.clone().transpose().reshape([nb,4,4,1]) * full.clone());
        time("matmul4 [N,1,4,4]x[N,1,4,4]", || b.clone().matmul(b.clone()));
    }
}
