//! One MPC step on the true pendulum at horizon 30 (issue 4's timing target: median ≤ 0.5 ms).
//!
//! The controller is driven from (π, 0) with the default settings (`MpcConfig::with_bounds`)
//! to a snapshot step, then that single step is timed on clones of the snapshot:
//! - `warm/swing_t5`: mid swing-up, warm-started, 5-iteration budget (the common case);
//! - `warm/upright_t105`: balancing upright, warm-started;
//! - `replan/t10`: a multi-start re-planning step (5 starts × ≤ 50 iterations; every 10th step).
//!
//! Run: `cargo bench -p ekvae-planner --bench mpc_step`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ekvae_envs::pendulum::step;
use ekvae_planner::{ControlBounds, Mpc, MpcConfig, PendulumCost, TruePendulum};
use std::hint::black_box;

fn snapshot(steps: usize) -> (Mpc<TruePendulum, PendulumCost>, [f64; 2]) {
    let d = TruePendulum::default();
    let (lower, upper) = d.control_limits();
    let mut mpc = Mpc::new(
        d,
        PendulumCost::default(),
        MpcConfig::with_bounds(ControlBounds { lower, upper }),
    )
    .unwrap();
    let mut x = [std::f64::consts::PI, 0.0];
    for _ in 0..steps {
        let u = mpc.step(&x).unwrap().u[0];
        x = step(&d.params, x, u).state;
    }
    (mpc, x)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpc_step_h30");
    for (name, steps) in [
        ("warm/swing_t5", 5),
        ("warm/upright_t105", 105),
        ("replan/t10", 10),
    ] {
        let (mpc, x) = snapshot(steps);
        g.bench_function(name, |b| {
            b.iter_batched(
                || mpc.clone(),
                |mut m| {
                    let s = m.step(black_box(&x)).unwrap();
                    (m, s) // returned, so dropping the clone is not timed
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
