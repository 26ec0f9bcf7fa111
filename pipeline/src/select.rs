//! Choosing the planning horizon of a controller on starts that its evaluation does not use.
//!
//! How far ahead a learned model can be trusted differs from model to model (on the cart-pole
//! from pixels, 8, 10 and 12 steps each won for some training seed and lost for another), so
//! the horizon is a per-model setting. [`select_horizon`] scores each candidate with a caller's
//! closure (in `ekvae mpc --select-horizon`, a full MPC run of `episodes` episodes from the
//! starts of a selection seed) and keeps the best by one rule ([`best`]). The selection starts
//! must be apart from the evaluation's ([`check_selection`]), or the evaluation would grade the
//! choice on the episodes it was made on.

use serde::Serialize;

use crate::swingup::MAX_HORIZON;
use crate::{Result, invalid};

/// One candidate horizon's score on the selection starts (a row of `selection.csv`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HorizonScore {
    /// The planning horizon.
    pub horizon: usize,
    /// Share of the selection episodes that succeeded by the task's rule.
    pub success_rate: f64,
    /// Their mean return.
    pub mean_return: f64,
    /// The population standard deviation of their returns.
    pub std_return: f64,
}

/// The outcome of [`select_horizon`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    /// The chosen horizon.
    pub horizon: usize,
    /// Every candidate's score, in the order given.
    pub scores: Vec<HorizonScore>,
}

/// Checks the candidates (at least one; each in `1..=MAX_HORIZON`; no repeats) and that the
/// selection episodes' starts, seeds `select_seed … select_seed + select_episodes − 1`, do not
/// overlap the evaluation's, `seed … seed + episodes − 1` (the cart-pole seeds episode i with
/// seed + i; the pendulum seeds one stream per seed, for which apart ranges are apart seeds).
pub fn check_selection(
    candidates: &[usize],
    select_seed: u64,
    select_episodes: usize,
    seed: u64,
    episodes: usize,
) -> Result<()> {
    if candidates.is_empty() {
        invalid!("--select-horizon needs at least one horizon, e.g. 8,10,12");
    }
    if let Some(h) = candidates.iter().find(|h| !(1..=MAX_HORIZON).contains(*h)) {
        invalid!("--select-horizon {h} is out of range; use 1 to {MAX_HORIZON}");
    }
    let repeated =
        candidates.iter().enumerate().find_map(|(i, h)| candidates[..i].contains(h).then_some(h));
    if let Some(h) = repeated {
        invalid!("--select-horizon lists {h} twice");
    }
    if select_episodes == 0 {
        invalid!("--select-episodes must be at least 1");
    }
    let end = |start: u64, n: usize| start.saturating_add(n as u64);
    if select_seed < end(seed, episodes) && seed < end(select_seed, select_episodes) {
        invalid!(
            "the selection starts (--select-seed {select_seed}, {select_episodes} episodes: seeds {select_seed} to {}) overlap the evaluation's (--seed {seed}, {episodes} episodes: seeds {seed} to {}); choose a --select-seed whose seeds miss those",
            end(select_seed, select_episodes) - 1,
            end(seed, episodes) - 1
        );
    }
    Ok(())
}

/// The index of the best score: the highest success rate, then the highest mean return, then
/// the shortest horizon (the cheapest plan). `None` for no scores.
pub fn best(scores: &[HorizonScore]) -> Option<usize> {
    let better = |a: &HorizonScore, b: &HorizonScore| {
        (a.success_rate, a.mean_return, std::cmp::Reverse(a.horizon))
            .partial_cmp(&(b.success_rate, b.mean_return, std::cmp::Reverse(b.horizon)))
            .is_some_and(|o| o.is_gt())
    };
    (0..scores.len()).reduce(|i, j| if better(&scores[j], &scores[i]) { j } else { i })
}

/// Scores every candidate with `score(horizon)` (in order, `progress(horizon, score)` after
/// each) and chooses by [`best`]. The candidates are checked by [`check_selection`] first
/// (the caller checks the seeds).
pub fn select_horizon(
    candidates: &[usize],
    score: &mut dyn FnMut(usize) -> Result<HorizonScore>,
    progress: &mut dyn FnMut(&HorizonScore),
) -> Result<Selection> {
    check_selection(candidates, 0, 1, 1, 1)?;
    let mut scores = Vec::with_capacity(candidates.len());
    for &h in candidates {
        let s = score(h)?;
        if s.horizon != h || !(s.success_rate.is_finite() && s.mean_return.is_finite()) {
            invalid!("the score of horizon {h} is not a finite score of that horizon: {s:?}");
        }
        progress(&s);
        scores.push(s);
    }
    let i = best(&scores).expect("at least one candidate");
    Ok(Selection { horizon: scores[i].horizon, scores })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(horizon: usize, success_rate: f64, mean_return: f64) -> HorizonScore {
        HorizonScore { horizon, success_rate, mean_return, std_return: 0.0 }
    }

    #[test]
    fn best_prefers_success_then_return_then_the_shorter_horizon() {
        assert_eq!(best(&[]), None);
        assert_eq!(best(&[s(8, 0.5, 900.0), s(10, 0.55, 100.0), s(12, 0.5, 950.0)]), Some(1));
        assert_eq!(best(&[s(8, 0.5, 900.0), s(12, 0.5, 950.0)]), Some(1));
        // A tie in both: the shorter horizon, wherever it is listed.
        assert_eq!(best(&[s(12, 1.0, 900.0), s(8, 1.0, 900.0), s(10, 1.0, 900.0)]), Some(1));
        // The cart-pole seed-2 model's selection runs (results/cartpole/horizon.tsv, seed 200):
        // h8 17/20, h10 10/20, h12 0/20.
        assert_eq!(best(&[s(10, 0.5, 943.4), s(8, 0.85, 899.5), s(12, 0.0, 591.1)]), Some(1));
    }

    #[test]
    fn select_scores_each_candidate_once_in_order() {
        let mut seen = Vec::new();
        let mut shown = Vec::new();
        let sel = select_horizon(
            &[10, 8, 12],
            &mut |h| {
                seen.push(h);
                Ok(s(h, if h == 12 { 0.9 } else { 0.4 }, -(h as f64)))
            },
            &mut |sc| shown.push(sc.horizon),
        )
        .unwrap();
        assert_eq!(seen, [10, 8, 12]);
        assert_eq!(shown, [10, 8, 12]);
        assert_eq!(sel.horizon, 12);
        assert_eq!(sel.scores.len(), 3);
        // An error of a candidate's run stops the selection.
        let e = select_horizon(&[8, 9], &mut |_| Err(crate::Error::invalid("boom")), &mut |_| {});
        assert!(e.unwrap_err().to_string().contains("boom"));
        // A score that is not of the horizon asked for, or not finite, is refused.
        let e = select_horizon(&[8], &mut |_| Ok(s(9, 1.0, 0.0)), &mut |_| {});
        assert!(e.is_err());
        let e = select_horizon(&[8], &mut |h| Ok(s(h, f64::NAN, 0.0)), &mut |_| {});
        assert!(e.is_err());
    }

    #[test]
    fn bad_candidates_and_overlapping_starts_are_refused() {
        let msg =
            |c: &[usize], ss, se, s, e| check_selection(c, ss, se, s, e).unwrap_err().to_string();
        assert!(msg(&[], 200, 20, 100, 20).contains("at least one"));
        assert!(msg(&[0, 8], 200, 20, 100, 20).contains("out of range"));
        assert!(msg(&[8, MAX_HORIZON + 1], 200, 20, 100, 20).contains("out of range"));
        assert!(msg(&[8, 10, 8], 200, 20, 100, 20).contains("twice"));
        assert!(msg(&[8], 200, 0, 100, 20).contains("--select-episodes"));
        // Seeds 110..129 overlap 100..119; 120..139 do not; nor 80..99 before.
        assert!(msg(&[8], 110, 20, 100, 20).contains("overlap"));
        assert!(msg(&[8], 95, 20, 100, 20).contains("overlap"));
        assert!(msg(&[8], 100, 1, 100, 20).contains("overlap"));
        check_selection(&[8], 120, 20, 100, 20).unwrap();
        check_selection(&[8], 80, 20, 100, 20).unwrap();
        // Near the top of u64 the ranges saturate instead of wrapping.
        assert!(msg(&[8], u64::MAX - 3, 20, u64::MAX - 10, 20).contains("overlap"));
        check_selection(&[8, 9, 10], 200, 20, 0, 20).unwrap();
    }
}
