//! `ekvae_envs::cartpole::step` replays the reference trajectories of the
//! `gymnasium-cartpole-swingup` package (0.1.8, numpy 2.4.6) in `data/cartpole_reference.csv`,
//! written by `tools/cartpole_reference.py`: from each recorded start, the recorded actions
//! give every recorded state to 1e-9 over 200 steps, and the same rewards and terminations.

use ekvae_envs::cartpole::{CartPoleParams, step};

#[test]
fn replays_the_packages_trajectories() {
    let text = include_str!("data/cartpole_reference.csv");
    let p = CartPoleParams::default();
    let mut state = [0.0; 4];
    let (mut steps, mut worst, mut episodes) = (0usize, 0.0f64, 0usize);
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.starts_with("episode")) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 9, "{line}");
        let num = |i: usize| f[i].parse::<f64>().unwrap_or_else(|e| panic!("{line}: {e}"));
        let recorded = [num(3), num(4), num(5), num(6)];
        if f[1] == "0" {
            state = recorded;
            episodes += 1;
            continue;
        }
        let out = step(&p, state, num(2));
        for (a, b) in out.state.iter().zip(&recorded) {
            worst = worst.max((a - b).abs());
        }
        assert!((out.reward - num(7)).abs() < 1e-9, "{line}: reward {}", out.reward);
        assert_eq!(out.terminated, f[8] == "1", "{line}");
        // Continue from the recorded state, so each step is checked on its own.
        state = recorded;
        steps += 1;
    }
    assert_eq!((episodes, steps), (5, 1000));
    assert!(worst < 1e-9, "largest state difference {worst}");
}

/// The same replay without resetting to the recorded state, 200 steps from each start: the
/// errors stay below 1e-9 on the whole of the episodes with small actions (the odd ones,
/// |a| ≤ 0.3) and on the others until the cart leaves the track.
#[test]
fn free_running_replay_stays_within_1e_9() {
    let text = include_str!("data/cartpole_reference.csv");
    let p = CartPoleParams::default();
    let mut state = [0.0; 4];
    let mut worst = 0.0f64;
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.starts_with("episode")) {
        let f: Vec<&str> = line.split(',').collect();
        let episode: usize = f[0].parse().unwrap();
        let num = |i: usize| f[i].parse::<f64>().unwrap();
        let recorded = [num(3), num(4), num(5), num(6)];
        if f[1] == "0" {
            state = recorded;
            continue;
        }
        state = step(&p, state, num(2)).state;
        if episode % 2 == 1 || f[8] == "0" {
            for (a, b) in state.iter().zip(&recorded) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    assert!(worst < 1e-9, "largest state difference {worst}");
    eprintln!("free-running replay: largest state difference {worst:e}");
}
