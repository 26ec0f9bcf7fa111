//! One training step (forward, backward, Adam update) of the default EKVAE at B = 32, T = 50,
//! for 16×16 and 32×32 frames, plus its parts (forward only; forward + backward) to show where
//! the time goes, and one step of the RNN-inference baseline.
//!
//! `cargo bench -p ekvae-model --bench train_step` (set RAYON_NUM_THREADS to pin the threads).

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use criterion::{Criterion, criterion_group, criterion_main};
use ekvae_model::train::{TrainConfig, Trainer, draw_noise};
use ekvae_model::{EkvaeConfig, Inference};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

/// The `ekvae` binary's allocator, so that the bench times what training costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn frames(b: usize, t: usize, s: usize, device: &Device) -> (Tensor<4>, Tensor<3>) {
    // A rod-like bright bar that moves with t (content does not matter for timing).
    let mut x = vec![0f32; b * t * s * s];
    for i in 0..b * t {
        for r in 0..s / 2 {
            x[i * s * s + r * s + (i + r) % s] = 1.0;
        }
    }
    let u: Vec<f32> = (0..b * t).map(|i| ((i % 7) as f32 - 3.0) / 2.0).collect();
    (
        Tensor::from_data(TensorData::new(x, [b, t, s, s]), device),
        Tensor::from_data(TensorData::new(u, [b, t, 1]), device),
    )
}

fn bench(c: &mut Criterion) {
    ekvae_model::backend::keep_freed_memory();
    let (b, t) = (32, 50);
    for size in [16, 32] {
        let cfg = TrainConfig {
            model: EkvaeConfig::new().with_image_size(size),
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new(cfg, &Device::flex()).unwrap();
        let device = trainer.device().clone();
        let (x, u) = frames(b, t, size, &device);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let noise = draw_noise(trainer.model(), &mut rng, b, t, &device);
        let mut group = c.benchmark_group(format!("train_step_{size}x{size}"));
        group.sample_size(10);
        group.bench_function("forward", |bench| {
            let model = trainer.model().valid();
            let plain = model.device();
            let (xp, up) = frames(b, t, size, &plain);
            let noise_p = draw_noise(&model, &mut rng.clone(), b, t, &plain);
            bench.iter(|| {
                let terms = model.rate_distortion(xp.clone(), up.clone(), &noise_p).unwrap();
                (terms.rate + terms.distortion).sum().into_scalar::<f32>()
            })
        });
        group.bench_function("forward_backward", |bench| {
            bench.iter(|| {
                let terms = trainer.rate_distortion(x.clone(), u.clone(), &noise).unwrap();
                (terms.rate + terms.distortion).mean().backward()
            })
        });
        // Parts of forward + backward: the image networks alone, the Kalman part alone.
        group.bench_function("nets_forward_backward", |bench| {
            bench.iter(|| {
                let model = trainer.model();
                let blocks = model.encoder.to_blocks(x.clone().reshape([b * t, size, size]));
                let (mean, _) = model.encoder.forward_blocks(blocks.clone());
                let logits = model.decoder.forward_blocks(mean);
                let [_, c, h, w] = logits.dims();
                ekvae_model::Ekvae::bernoulli_nll(
                    logits.reshape([b * t, c, h * w]),
                    blocks.reshape([b * t, c, h * w]),
                )
                .mean()
                .backward()
            })
        });
        group.bench_function("kalman_forward_backward", |bench| {
            let a = noise.eps_a.clone().require_grad();
            bench.iter(|| {
                let model = trainer.model();
                let filtered = ekvae_model::kalman::filter(
                    &model.prior.prior(),
                    &model.transition,
                    &model.observation.emission(),
                    a.clone(),
                    u.clone(),
                )
                .unwrap();
                let sample =
                    ekvae_model::kalman::sample_posterior(&filtered, noise.eps_z.clone()).unwrap();
                (sample.log_q.sum() + sample.z.sum()).backward()
            })
        });
        group.bench_function("kalman_plain_forward_backward", |bench| {
            // The same, with the filter in plain f64 and its hand-derived backward (the path
            // training takes): the values in plain f64, the gradient through a linear surrogate.
            let a = noise.eps_a.clone().require_grad();
            bench.iter(|| {
                let model = trainer.model();
                let sample = ekvae_model::fast_kalman::sample_posterior_plain(
                    &model.prior.prior(),
                    &model.transition,
                    &model.observation.emission(),
                    a.clone(),
                    u.clone(),
                    noise.eps_z.clone(),
                    |z| z.sum_dims(&[1, 2]).reshape([b]),
                )
                .unwrap();
                (sample.log_q.sum() + sample.z.sum()).backward()
            })
        });
        group.bench_function("step", |bench| {
            bench.iter(|| trainer.step(x.clone(), u.clone(), &noise).unwrap())
        });
        // The RNN-inference baseline (same nets and transition, GRU + combiner for q(z)).
        let rnn_cfg = TrainConfig {
            model: EkvaeConfig::new().with_image_size(size).with_inference(Inference::Rnn),
            ..TrainConfig::default()
        };
        let mut rnn = Trainer::new(rnn_cfg, &Device::flex()).unwrap();
        group.bench_function("rnn_step", |bench| {
            bench.iter(|| rnn.step(x.clone(), u.clone(), &noise).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
