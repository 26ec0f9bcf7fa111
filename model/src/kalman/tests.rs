use super::*;
use burn::tensor::{Device, TensorData};

fn dev() -> Device {
    Device::flex()
}

fn ten<const D: usize>(v: Vec<f64>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), (device, DType::F64))
}

#[test]
fn smoke() {
    let d = dev();
    let prior = Prior { mean: ten(vec![0.1, -0.2], [2], &d), var: ten(vec![1.0, 0.5], [2], &d) };
    let trans = LinearTransition {
        f: ten(vec![0.9, 0.2, -0.3, 0.8], [2, 2], &d),
        b: ten(vec![0.5, -0.2], [2, 1], &d),
        q_diag: ten(vec![0.1, 0.2], [2], &d),
    };
    let em = Emission { h: ten(vec![1.0, 0.5, -0.3, 1.2], [2, 2], &d), r_diag: ten(vec![0.3, 0.5], [2], &d) };
    let obs = ten((0..16).map(|i| (i as f64 * 0.7).sin()).collect(), [2, 4, 2], &d);
    let act = ten((0..8).map(|i| (i as f64 * 0.3).cos()).collect(), [2, 4, 1], &d);
    let out = filter(&prior, &trans, &em, obs, act).unwrap();
    println!("{}", out.log_likelihood);
    let sm = smooth(&out).unwrap();
    println!("{}", sm.mean_smooth);
    let s = sample_posterior(&out, ten(vec![0.1; 16], [2, 4, 2], &d)).unwrap();
    println!("{} {}", s.z, s.log_q);
    println!("{}", posterior_log_prob(&out, s.z.clone()).unwrap());
}
