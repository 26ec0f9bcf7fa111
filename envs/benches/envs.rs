//! Speed of the environment: `cargo bench -p ekvae-envs`.
//!
//! - `pendulum_step`: raw physics steps per second (one core);
//! - `render/{16,32,64}`: rendered frames per second (one core);
//! - `collect/1000x100@32`: end-to-end collection of 1000 episodes × 100 steps of 32×32 frames on
//!   all rayon threads (frames per second), and `collect_save` with writing the `.npz` as well.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ekvae_envs::collect::{CollectConfig, PolicySpec, collect};
use ekvae_envs::pendulum::{PendulumParams, step};
use ekvae_envs::render::render_into;
use ekvae_envs::system::PendulumSystem;
use std::hint::black_box;

fn bench_step(c: &mut Criterion) {
    let p = PendulumParams::default();
    let mut g = c.benchmark_group("pendulum_step");
    const N: u64 = 1000;
    g.throughput(Throughput::Elements(N));
    g.bench_function("1000_steps", |b| {
        b.iter(|| {
            let mut s = black_box([1.0, 0.5]);
            let mut total = 0.0;
            for k in 0..N {
                let out = step(&p, s, if k & 8 == 0 { 2.0 } else { -2.0 });
                s = out.state;
                total += out.cost;
            }
            black_box((s, total))
        })
    });
    g.finish();
}

fn bench_render(c: &mut Criterion) {
    let mut g = c.benchmark_group("render");
    const N: u64 = 256;
    g.throughput(Throughput::Elements(N));
    for size in [16usize, 32, 64] {
        let mut buf = vec![0u8; size * size];
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter(|| {
                for k in 0..N {
                    // Angles spread over the circle, so every orientation's bounding box counts.
                    let theta = k as f64 * (2.0 * std::f64::consts::PI / N as f64) + 0.1;
                    render_into(black_box(theta), size, &mut buf);
                    black_box(&buf);
                }
            })
        });
    }
    g.finish();
}

fn bench_collect(c: &mut Criterion) {
    let cfg = CollectConfig { episodes: 1000, steps: 100, size: 32, seed: 0 };
    let mut g = c.benchmark_group("collect");
    g.sample_size(10);
    g.throughput(Throughput::Elements((cfg.episodes * cfg.steps) as u64));
    g.bench_function("1000x100@32", |b| {
        b.iter(|| {
            black_box(
                collect(&cfg, &PendulumSystem::default(), &PolicySpec::default(), &|_| {})
                    .expect("valid config"),
            )
        })
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.npz");
    g.bench_function("1000x100@32+save", |b| {
        b.iter(|| {
            let d = collect(&cfg, &PendulumSystem::default(), &PolicySpec::default(), &|_| {})
                .expect("valid config");
            d.save(&path).expect("save");
        })
    });
    g.finish();
}

criterion_group!(benches, bench_step, bench_render, bench_collect);
criterion_main!(benches);
