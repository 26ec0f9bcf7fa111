//! MPC on the true pendulum (timing target: median ≤ 0.5 ms per step at horizon 30).
//!
//! For horizons 30 and 40 (the CLI default), the controller is driven from (π, 0) with the
//! default settings (`MpcConfig::with_bounds`) to a snapshot step, then that single step is
//! timed on clones of the snapshot:
//! - `warm_swing_t5`: mid swing-up, warm-started, 5-iteration budget (9 steps in 10);
//! - `warm_upright_t105`: balancing upright, warm-started;
//! - `replan_t10`: a multi-start re-planning step (every 10th step: the shifted plan, zeros,
//!   ±2, 2 random starts and the short-horizon start, ≤ 50 iterations each);
//! - `episode_200_steps`: a whole 200-step episode from (π, 0) (divide by 200 for the mean step).
//!
//! Run: `cargo bench -p ekvae-planner --bench mpc_step`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ekvae_envs::pendulum::step;
use ekvae_planner::{ControlBounds, Mpc, MpcConfig, PendulumCost, TruePendulum};
use std::hint::black_box;

fn controller(horizon: usize) -> Mpc<TruePendulum, PendulumCost> {
    let d = TruePendulum::default();
    let (lower, upper) = d.control_limits();
    let mut cfg = MpcConfig::with_bounds(ControlBounds { lower, upper });
    cfg.horizon = horizon;
    Mpc::new(d, PendulumCost::default(), cfg).unwrap()
}

/// Runs `steps` MPC steps from (π, 0); returns the controller and the state reached.
fn run(
    mut mpc: Mpc<TruePendulum, PendulumCost>,
    steps: usize,
) -> (Mpc<TruePendulum, PendulumCost>, [f64; 2]) {
    let p = TruePendulum::default().params;
    let mut x = [std::f64::consts::PI, 0.0];
    for _ in 0..steps {
        let u = mpc.step(&x).unwrap().u[0];
        x = step(&p, x, u).state;
    }
    (mpc, x)
}

fn bench(c: &mut Criterion) {
    for horizon in [30, 40] {
        let mut g = c.benchmark_group(format!("mpc_h{horizon}"));
        for (name, steps) in [("warm_swing_t5", 5), ("warm_upright_t105", 105), ("replan_t10", 10)]
        {
            let (mpc, x) = run(controller(horizon), steps);
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
        let fresh = controller(horizon);
        g.sample_size(20);
        g.bench_function("episode_200_steps", |b| {
            b.iter_batched(|| fresh.clone(), |m| run(m, 200), BatchSize::SmallInput)
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
