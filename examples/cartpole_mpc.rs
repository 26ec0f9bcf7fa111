//! Cart-pole swing-up (`CartPoleSwingUp-v0`) with iLQR-MPC on the true dynamics, from the
//! environment's seeded starts (hanging at rest plus N(0, 0.05²) noise per component), scored
//! on the environment over its full 1000-step episodes, against two reference policies
//! measured the same way: zero force and uniformly random actions.
//!
//! `cargo run --release --example cartpole_mpc [EPISODES]` (default 20, seeds 0, 1, …).
//! Success: the cart never leaves the track and |θ| < 0.2 rad over the last 500 steps.

use ekvae::envs::cartpole::{CartPoleParams, CartPoleSwingUp};
use ekvae::envs::pendulum::angle_normalize;
use ekvae::envs::{Env, space::uniform};
use ekvae::planner::{
    CartPoleCost, ControlBounds, ExactState, Mpc, MpcAgent, MpcConfig, TrueCartPole,
};
use rand::SeedableRng;

const STEPS: usize = 1000;

/// Runs one episode from `reset(Some(seed))` with `policy(state) -> action`; returns the
/// return, success and the median controller time (ms).
fn episode(seed: u64, policy: &mut dyn FnMut([f64; 4]) -> f64) -> (f64, bool, f64) {
    let mut env = CartPoleSwingUp::new(CartPoleParams::default());
    let (mut state, _) = env.reset(Some(seed));
    let (mut ret, mut ok, mut times) = (0.0, true, Vec::with_capacity(STEPS));
    for t in 0..STEPS {
        let t0 = std::time::Instant::now();
        let a = policy(state);
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        let s = env.step(&[a]);
        ret += s.reward;
        state = s.obs;
        if s.terminated {
            ok = false;
            break;
        }
        if t >= STEPS - 500 && angle_normalize(state[2]).abs() >= 0.2 {
            ok = false;
        }
    }
    times.sort_by(f64::total_cmp);
    (ret, ok, times[times.len() / 2])
}

fn main() {
    let episodes: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let dynamics = TrueCartPole::default();
    let (lower, upper) = dynamics.control_limits();
    let mut config = MpcConfig::with_bounds(ControlBounds { lower, upper });
    config.horizon = 30;
    let report = |name: &str, results: &[(f64, bool, f64)]| {
        let n = results.len() as f64;
        let mean = results.iter().map(|r| r.0).sum::<f64>() / n;
        let sd = (results.iter().map(|r| (r.0 - mean).powi(2)).sum::<f64>() / n).sqrt();
        let ok = results.iter().filter(|r| r.1).count();
        let ms = results.iter().map(|r| r.2).sum::<f64>() / n;
        println!(
            "{name:<12} {ok}/{} successes, return {mean:.1} ± {sd:.1} (max {STEPS}), {ms:.3} ms/step (median, mean over episodes)",
            results.len()
        );
    };
    let mpc: Vec<_> = (0..episodes)
        .map(|seed| {
            let mpc = Mpc::new(dynamics, CartPoleCost::default(), config.clone())
                .expect("valid MPC settings");
            let mut agent = MpcAgent::new(ExactState, mpc);
            episode(seed, &mut |s| agent.act(&s).expect("iLQR on finite states").u[0])
        })
        .collect();
    report("iLQR-MPC", &mpc);
    report(
        "zero force",
        &(0..episodes).map(|seed| episode(seed, &mut |_| 0.0)).collect::<Vec<_>>(),
    );
    let random: Vec<_> = (0..episodes)
        .map(|seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            episode(seed, &mut |_| uniform(&mut rng, -1.0, 1.0))
        })
        .collect();
    report("random", &random);
}
