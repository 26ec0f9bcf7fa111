//! The learned transition in the planner's inner loop: plain Rust on the exported weights
//! against burn (per step, and batched over a horizon), one MPC step on each, and one
//! filter step (encoder + EKF) — on the committed model `results/pixmpc-model`.
//!
//! `cargo bench --workspace --bench learned_mpc`

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use criterion::{Criterion, criterion_group, criterion_main};
use ekvae_envs::render::render;
use ekvae_model::kalman::Transition as _;
use ekvae_model::ssm::LocallyLinearTransition;
use ekvae_pipeline::control::{
    Jacobians, LatentCostWeights, LatentDynamics, LearnedModel, PixelFilter, latent_cost,
};
use ekvae_planner::{ControlBounds, Dynamics, Mpc, MpcConfig, StateEstimator};
use std::hint::black_box;

/// The transition evaluated by burn, one (z, u) per call (batch 1), read back to `f64`.
struct BurnDynamics<'a> {
    t: &'a LocallyLinearTransition,
    device: Device,
}

impl BurnDynamics<'_> {
    fn eval(&self, x: &[f64], u: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let n = x.len();
        let z = Tensor::<2>::from_data(
            TensorData::new(x.iter().map(|v| *v as f32).collect::<Vec<_>>(), [1, n]),
            &self.device,
        );
        let uu = Tensor::<2>::from_data(TensorData::new(vec![u[0] as f32], [1, 1]), &self.device);
        let step = self.t.linearize(z.clone(), uu.clone());
        let mean = step.f.clone().matmul(z.reshape([1, n, 1]))
            + step.b.clone().matmul(uu.reshape([1, 1, 1]));
        let v = |t: Tensor<3>| t.into_data().convert::<f64>().try_into_vec::<f64>().unwrap();
        (v(mean), v(step.f), v(step.b))
    }
}

impl Dynamics for BurnDynamics<'_> {
    fn state_dim(&self) -> usize {
        self.t.state_dim()
    }
    fn control_dim(&self) -> usize {
        1
    }
    fn step(&self, x: &[f64], u: &[f64], x_next: &mut [f64]) {
        x_next.copy_from_slice(&self.eval(x, u).0);
    }
    fn linearize(&self, x: &[f64], u: &[f64], x_next: &mut [f64], a: &mut [f64], b: &mut [f64]) {
        let (m, f, bb) = self.eval(x, u);
        x_next.copy_from_slice(&m);
        a.copy_from_slice(&f);
        b.copy_from_slice(&bb);
    }
}

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/pixmpc-model");
    let model = LearnedModel::load(&dir).expect("the committed model results/pixmpc-model");
    let n = model.plain.state_dim();
    let goal = model.goal_latent(20).unwrap();
    let mut filter = PixelFilter::new(&model);
    let hanging = filter.observe(&render(std::f64::consts::PI, model.image_size()), None).unwrap();
    let u = [0.7];
    let device = Device::flex();

    let mut g = c.benchmark_group("transition");
    let plain = LatentDynamics::new(model.plain.clone(), Jacobians::Local);
    let exact = LatentDynamics::new(model.plain.clone(), Jacobians::Exact);
    let burn = BurnDynamics { t: &model.ekvae.transition, device: device.clone() };
    let (mut zn, mut a, mut b) = (vec![0.0; n], vec![0.0; n * n], vec![0.0; n]);
    g.bench_function("plain_local_jacobians", |bch| {
        bch.iter(|| plain.linearize(black_box(&hanging), &u, &mut zn, &mut a, &mut b))
    });
    g.bench_function("plain_exact_jacobians", |bch| {
        bch.iter(|| exact.linearize(black_box(&hanging), &u, &mut zn, &mut a, &mut b))
    });
    g.bench_function("burn_batch1", |bch| {
        bch.iter(|| burn.linearize(black_box(&hanging), &u, &mut zn, &mut a, &mut b))
    });
    // A whole horizon of 40 in one burn call (what an overridden linearize_trajectory could do).
    let zs: Vec<f32> = (0..40).flat_map(|_| hanging.iter().map(|v| *v as f32)).collect();
    g.bench_function("burn_batch40", |bch| {
        bch.iter(|| {
            let z = Tensor::<2>::from_data(TensorData::new(zs.clone(), [40, n]), &device);
            let uu = Tensor::<2>::from_data(TensorData::new(vec![0.7f32; 40], [40, 1]), &device);
            let step = model.ekvae.transition.linearize(z, uu);
            black_box((step.f.into_data(), step.b.into_data()))
        })
    });
    g.finish();

    let (lower, upper) = (vec![-2.0], vec![2.0]);
    let mut cfg = MpcConfig::with_bounds(ControlBounds { lower, upper });
    cfg.replan_every = None;
    let cost = latent_cost(goal, LatentCostWeights::default(), 1).unwrap();
    let mut g = c.benchmark_group("mpc_step_h40_warm");
    g.sample_size(20);
    let mut mpc_plain = Mpc::new(plain.clone(), cost.clone(), cfg.clone()).unwrap();
    mpc_plain.step(&hanging).unwrap();
    g.bench_function("plain", |bch| bch.iter(|| mpc_plain.step(black_box(&hanging)).unwrap()));
    let mut mpc_burn = Mpc::new(burn, cost, cfg).unwrap();
    mpc_burn.step(&hanging).unwrap();
    g.bench_function("burn_batch1", |bch| bch.iter(|| mpc_burn.step(black_box(&hanging)).unwrap()));
    g.finish();

    let frame = render(2.0, model.image_size());
    let mut filter = PixelFilter::new(&model);
    filter.observe(&frame, None).unwrap();
    c.bench_function("filter_step_encoder_and_ekf", |bch| {
        bch.iter(|| filter.observe(black_box(&frame), Some(&u)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
