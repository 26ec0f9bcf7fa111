//! Times many consecutive RNN-baseline training steps in blocks, to see whether a step gets
//! slower as training goes on (burn's autodiff graph bookkeeping).
//! `cargo run --release -p ekvae-model --example rnn_step_drift [steps] [ekvae]` (the RNN
//! baseline by default; `ekvae` times the EKVAE's steps instead).

use burn::tensor::{Device, Tensor, TensorData};
use ekvae_model::train::{TrainConfig, Trainer, draw_noise};
use ekvae_model::{EkvaeConfig, Inference};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

fn main() {
    ekvae_model::backend::keep_freed_memory();
    let steps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1200);
    let inference = match std::env::args().nth(2).as_deref() {
        Some("ekvae") => Inference::Kalman,
        _ => Inference::Rnn,
    };
    let (b, t, s) = (8, 16, 8);
    let cfg = TrainConfig {
        model: EkvaeConfig::new().with_image_size(s).with_inference(inference),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(cfg, &Device::flex()).unwrap();
    let device = trainer.device().clone();
    let x: Vec<f32> = (0..b * t * s * s).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    let u: Vec<f32> = (0..b * t).map(|i| (i as f32 * 0.3).sin()).collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [b, t, s, s]), &device);
    let u = Tensor::<3>::from_data(TensorData::new(u, [b, t, 1]), &device);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let noise = draw_noise(trainer.model(), &mut rng, b, t, &device);
    let block = 200;
    let mut start = std::time::Instant::now();
    for i in 1..=steps {
        trainer.step(x.clone(), u.clone(), &noise).unwrap();
        if i % block == 0 {
            let ms = start.elapsed().as_secs_f64() * 1e3 / block as f64;
            println!("steps {:5}–{:5}: {ms:.2} ms/step", i - block + 1, i);
            start = std::time::Instant::now();
        }
    }
}
