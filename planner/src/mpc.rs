//! Model-predictive control on top of [`Ilqr`]: receding horizon, shifted warm start, a
//! fixed iteration budget per step, optional multi-start re-planning every `k` steps, and a
//! [`StateEstimator`] hook so the same loop runs on the exact state (true pendulum) or on a
//! learned model's filtered latent (the EKVAE Kalman filter fed with rendered frames).

use crate::error::check_finite;
use crate::ilqr::{ControlBounds, IlqrConfig, InitialGuess, PolicyFn, StopReason};
use crate::{Cost, Dynamics, Error, Ilqr, Result};
use serde::{Deserialize, Serialize};

/// MPC settings; [`MpcConfig::check`] validates them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MpcConfig {
    /// Planning horizon `T` (steps).
    pub horizon: usize,
    /// iLQR iteration budget per control step from the shifted warm start.
    pub iterations_per_step: usize,
    /// Re-plan from multiple starts every this many steps (step 0 always multi-starts);
    /// `None` multi-starts only at step 0.
    pub replan_every: Option<usize>,
    /// iLQR iteration budget per start when multi-starting.
    pub multistart_iterations: usize,
    /// Random initial control sequences per multi-start (besides zeros and ±limit constants).
    pub random_starts: usize,
    /// At multi-start steps, also solve the first half of the horizon from zero controls and
    /// use its plan, extended by repeating its last control, as one more start. Every
    /// open-loop start of a long horizon may fall over from near upright, and iLQR then keeps
    /// the fallen local optimum; the short problem still sees the stabilising one.
    pub short_horizon_start: bool,
    /// Seed of the random starts (a multi-start at step `t` uses `seed + 1000·t`).
    pub seed: u64,
    /// How the previous plan starts the next solve (see [`WarmStart`]). Settings written
    /// before the option existed read as [`WarmStart::Controls`], what they used.
    #[serde(default = "WarmStart::before_the_option")]
    pub warm_start: WarmStart,
    /// iLQR settings (its `max_iterations` is replaced by the budgets above; its `bounds`
    /// must be set for the random and ±limit starts).
    pub ilqr: IlqrConfig,
}

impl MpcConfig {
    /// The tuned defaults (see `docs/planner.md`) with the given control bounds:
    /// horizon 40, 5 iterations per step, multi-start re-planning every 10 steps with 50
    /// iterations per start, 2 random starts and the short-horizon start, seed 0, the
    /// feedback warm start, default iLQR settings otherwise.
    pub fn with_bounds(bounds: ControlBounds) -> Self {
        Self {
            horizon: 40,
            iterations_per_step: 5,
            replan_every: Some(10),
            multistart_iterations: 50,
            random_starts: 2,
            short_horizon_start: true,
            seed: 0,
            warm_start: WarmStart::default(),
            ilqr: IlqrConfig { bounds: Some(bounds), ..IlqrConfig::default() },
        }
    }

    /// Checks the invariants (horizon ≥ 1, budgets ≥ 1, `replan_every ≥ 1`, finite bounds set).
    pub fn check(&self, m: usize) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(Error::InvalidConfig { field, reason: reason.into() })
        };
        if self.horizon == 0 {
            return bad("horizon", "must be at least 1");
        }
        if self.iterations_per_step == 0 || self.multistart_iterations == 0 {
            return bad("iterations", "iteration budgets must be at least 1");
        }
        if self.replan_every == Some(0) {
            return bad("replan_every", "must be at least 1 (or None)");
        }
        match &self.ilqr.bounds {
            Some(b) if b.lower.iter().chain(&b.upper).all(|v| v.is_finite()) => {}
            _ => {
                return bad(
                    "ilqr.bounds",
                    "MPC needs finite control bounds for its ±limit and random starts",
                );
            }
        }
        self.ilqr.check(m)
    }
}

/// How MPC turns the previous step's plan into the next solve's initial controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarmStart {
    /// The previous plan's controls shifted by one step (the last one repeated), rolled out
    /// open loop from the new state. On an unstable system (a pole near upright) a small
    /// difference between the predicted and the actual state grows along the horizon, the
    /// rollout falls over, and the few iterations per step may not bring it back.
    Controls,
    /// The previous plan shifted by one step *with its feedback*: the initial controls are the
    /// closed-loop rollout `u_t = clip(ū_t + K_t (x_t − x̄_t))` from the new state, with the
    /// previous solve's states `x̄`, controls `ū` and gains `K` (the last step's gain repeated).
    /// With no difference from the prediction it equals [`WarmStart::Controls`].
    #[default]
    Feedback,
}

impl WarmStart {
    /// [`WarmStart::Controls`]: what settings written before the option existed used.
    pub fn before_the_option() -> Self {
        Self::Controls
    }
}

/// The previous plan, shifted by one step: controls `[T, m]`, states `[T, n]`, gains `[T, m, n]`.
#[derive(Debug, Clone)]
struct Plan {
    us: Vec<f64>,
    xs: Vec<f64>,
    gains: Vec<f64>,
}

/// What one MPC step decided.
#[derive(Debug, Clone, PartialEq)]
pub struct MpcStep {
    /// The control to apply now, `[m]`.
    pub u: Vec<f64>,
    /// The state the plan started from (the estimator's output), `[n]`.
    pub state: Vec<f64>,
    /// iLQR iterations spent this step (summed over starts when multi-starting).
    pub iterations: usize,
    /// Planned cost over the horizon.
    pub cost: f64,
    /// Whether this step multi-started.
    pub multistart: bool,
    /// Why the (winning) solve stopped.
    pub stop: StopReason,
}

/// Receding-horizon iLQR.
#[derive(Clone)]
pub struct Mpc<D, C> {
    solver: Ilqr<D, C>,
    config: MpcConfig,
    bounds: ControlBounds,
    policy: Option<PolicyFn>,
    warm: Option<Plan>,
    t: usize,
    m: usize,
}

impl<D: Dynamics, C: Cost> Mpc<D, C> {
    /// An MPC controller; errors if the config is invalid.
    pub fn new(dynamics: D, cost: C, config: MpcConfig) -> Result<Self> {
        let m = dynamics.control_dim();
        config.check(m)?;
        let bounds = config.ilqr.bounds.clone().expect("checked");
        let solver = Ilqr::new(dynamics, cost, config.ilqr.clone())?;
        Ok(Self { solver, config, bounds, policy: None, warm: None, t: 0, m })
    }

    /// Adds the rollout of `policy` to the multi-start candidates.
    pub fn with_policy_start(mut self, policy: PolicyFn) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The settings.
    pub fn config(&self) -> &MpcConfig {
        &self.config
    }

    /// Forgets the warm start and restarts the step counter (new episode).
    pub fn reset(&mut self) {
        self.warm = None;
        self.t = 0;
    }

    /// Plans from state `x: [n]` and returns the first control; shifts the plan for the next call.
    pub fn step(&mut self, x: &[f64]) -> Result<MpcStep> {
        check_finite("MPC state", x)?;
        let (m, horizon) = (self.m, self.config.horizon);
        let replan = self.warm.is_none()
            || self.config.replan_every.is_some_and(|k| self.t.is_multiple_of(k));
        let (sol, iterations) = if replan {
            let mut starts = InitialGuess::standard_set(
                &self.bounds,
                self.config.random_starts,
                self.config.seed.wrapping_add(1000 * self.t as u64),
            );
            if let Some(p) = &self.policy {
                starts.push(InitialGuess::Policy(p.clone()));
            }
            if let Some(w) = self.warm.take() {
                starts.insert(0, InitialGuess::Sequence(self.warm_controls(x, w)));
            }
            self.set_budget(self.config.multistart_iterations)?;
            let mut extra_iterations = 0;
            let short = horizon / 2;
            if self.config.short_horizon_start && short >= 2 {
                let sol = self.solver.solve(x, &vec![0.0; short * m])?;
                extra_iterations = sol.iterations;
                let mut us = sol.us;
                let last = us[(short - 1) * m..].to_vec();
                while us.len() < horizon * m {
                    us.extend_from_slice(&last);
                }
                starts.push(InitialGuess::Sequence(us));
            }
            let ms = self.solver.solve_multistart(x, horizon, &starts)?;
            (ms.best, ms.total_iterations + extra_iterations)
        } else {
            self.set_budget(self.config.iterations_per_step)?;
            let warm = self.warm.take().expect("not replanning implies a warm start");
            let warm = self.warm_controls(x, warm);
            let sol = self.solver.solve(x, &warm)?;
            let it = sol.iterations;
            (sol, it)
        };
        // Shifted warm start: drop step 0, repeat the last control and gain.
        let n = x.len();
        let shift = |v: &[f64], k: usize| {
            let mut w = Vec::with_capacity(horizon * k);
            w.extend_from_slice(&v[k..horizon * k]);
            w.extend_from_slice(&v[(horizon - 1) * k..horizon * k]);
            w
        };
        self.warm = Some(Plan {
            us: shift(&sol.us, m),
            xs: sol.xs[n..(horizon + 1) * n].to_vec(),
            gains: shift(&sol.gains, m * n),
        });
        self.t += 1;
        Ok(MpcStep {
            u: sol.us[..m].to_vec(),
            state: x.to_vec(),
            iterations,
            cost: sol.cost,
            multistart: replan,
            stop: sol.stop,
        })
    }

    /// The initial controls of the next solve from state `x0` (see [`WarmStart`]).
    fn warm_controls(&self, x0: &[f64], plan: Plan) -> Vec<f64> {
        match self.config.warm_start {
            WarmStart::Controls => plan.us,
            WarmStart::Feedback => {
                let (n, m) = (x0.len(), self.m);
                let horizon = plan.us.len() / m;
                let dynamics = self.solver.dynamics();
                let mut us = plan.us;
                let (mut x, mut next, mut dx) = (x0.to_vec(), vec![0.0; n], vec![0.0; n]);
                for t in 0..horizon {
                    dynamics.deviation(&x, &plan.xs[t * n..(t + 1) * n], &mut dx);
                    if dx.iter().any(|v| !v.is_finite()) {
                        // A diverged rollout: keep the remaining controls as planned.
                        break;
                    }
                    let u = &mut us[t * m..(t + 1) * m];
                    for (i, u) in u.iter_mut().enumerate() {
                        let gain = &plan.gains[(t * m + i) * n..(t * m + i + 1) * n];
                        *u += gain.iter().zip(&dx).map(|(k, d)| k * d).sum::<f64>();
                        *u = u.clamp(self.bounds.lower[i], self.bounds.upper[i]);
                    }
                    dynamics.step(&x, u, &mut next);
                    std::mem::swap(&mut x, &mut next);
                }
                us
            }
        }
    }

    fn set_budget(&mut self, iterations: usize) -> Result<()> {
        if self.solver.config().max_iterations != iterations {
            let mut c = self.solver.config().clone();
            c.max_iterations = iterations;
            self.solver.set_config(c)?;
        }
        Ok(())
    }
}

/// Turns observations into the planner's state: the exact state for the true model, or a
/// filter over a learned model's latent (fed the rendered frame and the last action).
pub trait StateEstimator {
    /// What the environment gives (a state vector, an image, ...).
    type Observation: ?Sized;
    /// Starts a new episode.
    fn reset(&mut self);
    /// The state estimate after seeing `obs`; `last_action` is the action applied since the
    /// previous observation (`None` on an episode's first observation).
    fn observe(&mut self, obs: &Self::Observation, last_action: Option<&[f64]>)
    -> Result<Vec<f64>>;
}

/// The identity estimator: the observation *is* the state (true-model MPC).
#[derive(Debug, Clone, Copy, Default)]
pub struct ExactState;

impl StateEstimator for ExactState {
    type Observation = [f64];
    fn reset(&mut self) {}
    fn observe(&mut self, obs: &[f64], _last_action: Option<&[f64]>) -> Result<Vec<f64>> {
        check_finite("observed state", obs)?;
        Ok(obs.to_vec())
    }
}

/// An MPC controller behind a state estimator: `act(observation) -> control`.
#[derive(Clone)]
pub struct MpcAgent<E, D, C> {
    /// The state estimator.
    pub estimator: E,
    /// The controller.
    pub mpc: Mpc<D, C>,
    last_action: Option<Vec<f64>>,
}

impl<E: StateEstimator, D: Dynamics, C: Cost> MpcAgent<E, D, C> {
    /// Combines an estimator and an MPC controller.
    pub fn new(estimator: E, mpc: Mpc<D, C>) -> Self {
        Self { estimator, mpc, last_action: None }
    }

    /// New episode: resets the estimator and the controller's warm start.
    pub fn reset(&mut self) {
        self.estimator.reset();
        self.mpc.reset();
        self.last_action = None;
    }

    /// Estimates the state from `obs` (and the previous action) and plans the next control.
    pub fn act(&mut self, obs: &E::Observation) -> Result<MpcStep> {
        let x = self.estimator.observe(obs, self.last_action.as_deref())?;
        let step = self.mpc.step(&x)?;
        self.last_action = Some(step.u.clone());
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PendulumCost, TruePendulum};
    use ekvae_envs::pendulum::step;
    use ekvae_numerics::angle_normalize;

    fn pendulum_agent(cfg: MpcConfig) -> MpcAgent<ExactState, TruePendulum, PendulumCost> {
        MpcAgent::new(
            ExactState,
            Mpc::new(TruePendulum::default(), PendulumCost::default(), cfg).unwrap(),
        )
    }

    fn default_config() -> MpcConfig {
        let (lower, upper) = TruePendulum::default().control_limits();
        MpcConfig::with_bounds(ControlBounds { lower, upper })
    }

    /// Runs 200 steps on the true physics; returns (θ trajectory after each step, controls).
    fn episode(
        agent: &mut MpcAgent<ExactState, TruePendulum, PendulumCost>,
        x0: [f64; 2],
    ) -> (Vec<f64>, Vec<f64>) {
        agent.reset();
        let p = agent.mpc.solver.dynamics().params;
        let mut x = x0;
        let (mut ths, mut us) = (vec![], vec![]);
        for _ in 0..200 {
            let s = agent.act(&x).unwrap();
            x = step(&p, x, s.u[0]).state;
            ths.push(x[0]);
            us.push(s.u[0]);
        }
        (ths, us)
    }

    /// The acceptance test: hanging at rest, the true-model MPC swings up, gets
    /// |θ| < 0.1 (wrapped) and stays there until step 200.
    #[test]
    fn swings_up_from_hanging_and_stays_upright() {
        let mut agent = pendulum_agent(default_config());
        let (ths, us) = episode(&mut agent, [std::f64::consts::PI, 0.0]);
        let first = ths
            .iter()
            .position(|th| angle_normalize(*th).abs() < 0.1)
            .expect("never reached |θ| < 0.1");
        assert!(first < 100, "upright only at step {first}");
        for (t, th) in ths.iter().enumerate().skip(first) {
            assert!(
                angle_normalize(*th).abs() < 0.1,
                "fell to θ = {th} at step {t} (upright at {first})"
            );
        }
        assert!(us.iter().all(|u| (-2.0..=2.0).contains(u)));
    }

    /// A non-trivial estimator through the hook: it sees Gymnasium's observation
    /// `[cos θ, sin θ, θ̇]` and recovers θ (wrapped) with `atan2`; the wrapped cost makes the
    /// plan independent of the 2π offset, so the swing-up still works.
    struct FromObservation;
    impl StateEstimator for FromObservation {
        type Observation = [f64; 3];
        fn reset(&mut self) {}
        fn observe(&mut self, obs: &[f64; 3], _last: Option<&[f64]>) -> Result<Vec<f64>> {
            Ok(vec![obs[1].atan2(obs[0]), obs[2]])
        }
    }

    #[test]
    fn estimator_hook_drives_the_loop() {
        let mpc =
            Mpc::new(TruePendulum::default(), PendulumCost::default(), default_config()).unwrap();
        let mut agent = MpcAgent::new(FromObservation, mpc);
        let p = ekvae_envs::pendulum::PendulumParams::default();
        let mut x = [std::f64::consts::PI, 0.0];
        agent.reset();
        for _ in 0..200 {
            let s = agent.act(&ekvae_envs::pendulum::observation(x)).unwrap();
            assert!(
                (s.state[0] - angle_normalize(x[0])).abs() < 1e-9
                    || (s.state[0].abs() - std::f64::consts::PI).abs() < 1e-9
            );
            x = step(&p, x, s.u[0]).state;
        }
        assert!(angle_normalize(x[0]).abs() < 0.1, "ended at θ = {}", x[0]);
    }

    /// Near upright at horizon 40 every open-loop start falls over and iLQR keeps the fallen
    /// plan (cost > 100); the short-horizon start finds the stabilising plan (cost < 1).
    /// The state is episode 5 of `ekvae mpc --seed 1 --horizon 40`, where this was found.
    #[test]
    fn short_horizon_start_keeps_a_nearly_upright_pendulum_up() {
        let x0 = [-0.10519838930061143, 0.1544182742674156];
        let mut cfg = default_config();
        cfg.horizon = 40;
        cfg.seed = 1;
        cfg.short_horizon_start = false;
        let mut without =
            Mpc::new(TruePendulum::default(), PendulumCost::default(), cfg.clone()).unwrap();
        assert!(without.step(&x0).unwrap().cost > 100.0);
        cfg.short_horizon_start = true;
        let mut agent = pendulum_agent(cfg);
        let first = agent.act(&x0).unwrap();
        assert!(first.cost < 1.0, "planned cost {}", first.cost);
        let (ths, _) = episode(&mut agent, x0);
        assert!(
            ths.iter().all(|th| angle_normalize(*th).abs() < 0.2),
            "left upright: max |θ| {}",
            ths.iter().fold(0.0f64, |m, t| m.max(angle_normalize(*t).abs()))
        );
    }

    /// With no deviation from the prediction the feedback warm start is the shifted controls:
    /// the pendulum's swing-up (whose planner and environment step alike) is the same bit for
    /// bit.
    #[test]
    fn feedback_warm_start_without_deviation_is_the_shifted_controls() {
        let run = |warm_start| {
            let mut agent = pendulum_agent(MpcConfig { warm_start, ..default_config() });
            episode(&mut agent, [std::f64::consts::PI, 0.0])
        };
        assert_eq!(run(WarmStart::Controls), run(WarmStart::Feedback));
    }

    /// The default is the feedback warm start; settings saved before the option existed
    /// (no `warm_start` key) read back as the shifted controls they used.
    #[test]
    fn warm_start_default_and_older_settings() {
        let cfg = default_config();
        assert_eq!(cfg.warm_start, WarmStart::Feedback);
        let mut json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["warm_start"], "feedback");
        assert_eq!(serde_json::from_value::<MpcConfig>(json.clone()).unwrap(), cfg);
        json.as_object_mut().unwrap().remove("warm_start");
        let old: MpcConfig = serde_json::from_value(json).unwrap();
        assert_eq!(old, MpcConfig { warm_start: WarmStart::Controls, ..cfg });
    }

    /// The cart-pole on the environment's own step (θ wrapped, force cast to f32) with
    /// Gaussian action noise of std 0.1: the feedback warm start swings the pole up and keeps
    /// it within 0.3 rad; the shifted controls' open-loop rollout falls over and the pole
    /// spins (what `ekvae mpc --action-noise` showed before the feedback warm start).
    #[test]
    fn feedback_warm_start_balances_the_cart_pole_under_action_noise() {
        use crate::{CartPoleCost, TrueCartPole};
        use rand::{RngExt, SeedableRng};
        let peak_after_swing_up = |warm_start| {
            let dynamics = TrueCartPole::default();
            let (lower, upper) = dynamics.control_limits();
            let cfg =
                MpcConfig { warm_start, ..MpcConfig::with_bounds(ControlBounds { lower, upper }) };
            let mut mpc = Mpc::new(dynamics, CartPoleCost::default(), cfg).unwrap();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
            let mut x = [0.0, 0.0, std::f64::consts::PI, 0.0];
            let mut peak: f64 = 0.0;
            for t in 0..200 {
                let u = mpc.step(&x).unwrap().u[0];
                let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
                let noise = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                x = ekvae_envs::cartpole::step(&dynamics.params, x, u + 0.1 * noise).state;
                if t >= 100 {
                    peak = peak.max(x[2].abs());
                }
            }
            peak
        };
        let feedback = peak_after_swing_up(WarmStart::Feedback);
        assert!(feedback < 0.3, "feedback warm start: |θ| reached {feedback} after step 100");
        let controls = peak_after_swing_up(WarmStart::Controls);
        assert!(controls > 1.0, "shifted controls: |θ| only reached {controls}");
    }

    #[test]
    fn same_seed_same_episode() {
        let mut a = pendulum_agent(default_config());
        let mut b = pendulum_agent(default_config());
        let x0 = [2.0, -0.5];
        assert_eq!(episode(&mut a, x0), episode(&mut b, x0));
        // And a reset agent repeats itself.
        assert_eq!(episode(&mut a, x0), episode(&mut b, x0));
    }

    #[test]
    fn bad_config_and_state_are_errors() {
        let mut cfg = default_config();
        cfg.horizon = 0;
        assert!(Mpc::new(TruePendulum::default(), PendulumCost::default(), cfg).is_err());
        let mut cfg = default_config();
        cfg.ilqr.bounds = None;
        assert!(Mpc::new(TruePendulum::default(), PendulumCost::default(), cfg).is_err());
        let mut cfg = default_config();
        cfg.ilqr.bounds = Some(ControlBounds { lower: vec![f64::NEG_INFINITY], upper: vec![2.0] });
        assert!(Mpc::new(TruePendulum::default(), PendulumCost::default(), cfg).is_err());
        let mut agent = pendulum_agent(default_config());
        assert!(matches!(agent.act(&[f64::NAN, 0.0]), Err(Error::NonFinite { .. })));
    }
}
