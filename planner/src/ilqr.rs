//! Iterative LQR with control limits (Li & Todorov 2004; Tassa, Erez & Todorov 2012;
//! Tassa, Mansard & Todorov 2014), in trajax/crocoddyl vocabulary.
//!
//! One iteration:
//! 1. `linearize` the dynamics (`A_t: [n, n]`, `B_t: [n, m]`) and
//!    `quadratize` the cost along the current trajectory `(x_{0..T}, u_{0..T-1})`;
//! 2. `backward_pass`: with `Q_x = l_x + Aᵀ V_x`, `Q_u = l_u + Bᵀ V_x`,
//!    `Q_xx = l_xx + Aᵀ V_xx A`, `Q_uu = l_uu + Bᵀ V_xx B`, `Q_ux = l_ux + Bᵀ V_xx A`, solve the
//!    box-QP `min_k ½ kᵀ (Q_uu + μI) k + Q_uᵀ k` s.t. `u_min ≤ u_t + k ≤ u_max` (see
//!    [`crate::boxqp`]) for the feed-forward `k_t`, and `K_t = −(Q_uu + μI)_ff⁻¹ Q_ux,f` on the
//!    free dimensions (zero rows on clamped ones). `μ` is the Levenberg–Marquardt
//!    regularisation; if `Q_uu + μI` is not positive definite the pass restarts with larger `μ`;
//! 3. `forward_pass`: `x̂_0 = x_0`, `û_t = clip(u_t + α k_t + K_t (x̂_t − x_t))`, `x̂_{t+1} = f(x̂_t, û_t)`;
//! 4. `line_search` over `α = α_0, α_0 β, α_0 β², … ≥ α_min`: accept the first `α` whose actual
//!    cost decrease is at least `c` times the decrease the quadratic model predicts,
//!    `ΔJ(α) = −(α kᵀQ_u + ½ α² kᵀQ_uu k)` summed over time (Tassa 2012, eq. 13).
//!
//! Regularisation schedule ([`Regularization`]): start at `initial`; after an accepted step
//! `μ ← μ / factor` and `μ ← 0` once below `min` (plain Newton when well conditioned); after a
//! failed backward pass or line search `μ ← max(μ · factor, min)`.
//!
//! Stopping criteria ([`StopReason`]), checked in this order each iteration:
//! - `RegularizationExceeded`: `μ > max` (no descent direction found);
//! - `GradientNorm`: after a backward pass, `mean_t max_i |k_t,i| / (|u_t,i| + 1) < tol_grad`
//!   (Tassa 2012's scaled feed-forward size: the control update would be negligible);
//! - `CostChange`: an accepted step decreased the cost by less than `tol_cost · max(|J|, 1)`;
//! - `MaxIterations`: `max_iterations` iterations done (MPC uses this as its per-step budget).

use crate::boxqp::BoxQp;
use crate::error::{check_finite, check_len};
use crate::{Cost, Dynamics, Error, Quadratization, Result};
use ekvae_numerics::{add_mat_t_mul, cholesky_solve, mat_mul, mat_t_vec, mat_vec, symmetrize};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Levenberg–Marquardt regularisation `μ` added to `Q_uu`, and its schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Regularization {
    /// `μ` at the start of a solve.
    pub initial: f64,
    /// Multiplier on failure, divisor on success (> 1).
    pub factor: f64,
    /// Below this `μ` is set to 0 after a success, and a failure raises `μ` to at least this (> 0).
    pub min: f64,
    /// Above this the solve stops with [`StopReason::RegularizationExceeded`].
    pub max: f64,
}

impl Default for Regularization {
    fn default() -> Self {
        Self { initial: 1e-6, factor: 10.0, min: 1e-6, max: 1e10 }
    }
}

/// Backtracking line search over the step size `α` of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LineSearch {
    /// First step size tried (usually 1).
    pub initial: f64,
    /// Multiplier per backtrack, in (0, 1).
    pub factor: f64,
    /// Smallest step size tried.
    pub min: f64,
    /// Accept when actual / predicted cost decrease exceeds this (Tassa's `z_min`, ≥ 0).
    pub min_ratio: f64,
}

impl Default for LineSearch {
    fn default() -> Self {
        Self { initial: 1.0, factor: 0.5, min: 1e-3, min_ratio: 1e-4 }
    }
}

/// Box limits on the controls, per dimension (±∞ allowed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlBounds {
    /// Lower limits `[m]`.
    pub lower: Vec<f64>,
    /// Upper limits `[m]`.
    pub upper: Vec<f64>,
}

/// iLQR settings; [`IlqrConfig::check`] validates them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IlqrConfig {
    /// Iteration cap (each iteration linearises once).
    pub max_iterations: usize,
    /// Relative cost-change tolerance (see the module docs).
    pub tol_cost: f64,
    /// Scaled feed-forward tolerance (see the module docs).
    pub tol_grad: f64,
    /// Regularisation schedule.
    pub regularization: Regularization,
    /// Line search.
    pub line_search: LineSearch,
    /// Control limits; `None` means unconstrained.
    pub bounds: Option<ControlBounds>,
}

impl Default for IlqrConfig {
    fn default() -> Self {
        Self {
            max_iterations: 100,
            tol_cost: 1e-7,
            tol_grad: 1e-5,
            regularization: Regularization::default(),
            line_search: LineSearch::default(),
            bounds: None,
        }
    }
}

impl IlqrConfig {
    /// Checks every invariant documented on the fields, for control size `m`.
    pub fn check(&self, m: usize) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(Error::InvalidConfig { field, reason: reason.into() })
        };
        let r = &self.regularization;
        let ls = &self.line_search;
        check_finite("tolerances", &[self.tol_cost, self.tol_grad])?;
        check_finite("regularization", &[r.initial, r.factor, r.min])?;
        check_finite("line search", &[ls.initial, ls.factor, ls.min, ls.min_ratio])?;
        if self.max_iterations == 0 {
            return bad("max_iterations", "must be at least 1");
        }
        if self.tol_cost < 0.0 || self.tol_grad < 0.0 {
            return bad("tol_cost/tol_grad", "must be >= 0");
        }
        if !(r.factor > 1.0 && r.min > 0.0 && r.initial >= 0.0 && r.max >= r.min) {
            return bad("regularization", "need factor > 1, min > 0, initial >= 0, max >= min");
        }
        if !(ls.initial > 0.0
            && ls.factor > 0.0
            && ls.factor < 1.0
            && ls.min > 0.0
            && ls.min <= ls.initial
            && ls.min_ratio >= 0.0)
        {
            return bad("line_search", "need initial >= min > 0, 0 < factor < 1, min_ratio >= 0");
        }
        if let Some(b) = &self.bounds {
            check_len("bounds.lower", m, b.lower.len())?;
            check_len("bounds.upper", m, b.upper.len())?;
            if b.lower.iter().chain(&b.upper).any(|v| v.is_nan()) {
                return Err(Error::NonFinite { what: "control bounds" });
            }
            if b.lower.iter().zip(&b.upper).any(|(l, u)| l > u) {
                return bad("bounds", "lower must not exceed upper");
            }
        }
        Ok(())
    }
}

/// Why a solve stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// An accepted step changed the cost by less than `tol_cost · max(|J|, 1)`.
    CostChange,
    /// The scaled feed-forward fell below `tol_grad`.
    GradientNorm,
    /// `max_iterations` reached.
    MaxIterations,
    /// The regularisation exceeded `max` without finding a descent step.
    RegularizationExceeded,
}

/// A policy for [`InitialGuess::Policy`]: `u = π(x)` (clipped to the bounds afterwards).
pub type PolicyFn = Arc<dyn Fn(&[f64]) -> Vec<f64> + Send + Sync>;

/// Where a solve starts: an initial control sequence, made concrete by [`Ilqr::initial_controls`].
#[derive(Clone)]
pub enum InitialGuess {
    /// All controls zero.
    Zeros,
    /// The same control `[m]` at every step (e.g. `+u_max` or `−u_max`).
    Constant(Vec<f64>),
    /// I.i.d. uniform controls in the bounds (which must be finite), from a seeded ChaCha8 stream.
    Random {
        /// Seed of the stream.
        seed: u64,
    },
    /// An explicit sequence `[T, m]` (warm start).
    Sequence(Vec<f64>),
    /// The controls of a closed-loop rollout of a policy from `x_0`.
    Policy(PolicyFn),
}

impl fmt::Debug for InitialGuess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zeros => write!(f, "Zeros"),
            Self::Constant(c) => write!(f, "Constant({c:?})"),
            Self::Random { seed } => write!(f, "Random {{ seed: {seed} }}"),
            Self::Sequence(s) => write!(f, "Sequence(len {})", s.len()),
            Self::Policy(_) => write!(f, "Policy(..)"),
        }
    }
}

impl InitialGuess {
    /// The usual multi-start set: zeros, `+upper`, `lower`, and `n_random` random sequences
    /// (seeds `seed, seed+1, …`).
    pub fn standard_set(bounds: &ControlBounds, n_random: usize, seed: u64) -> Vec<InitialGuess> {
        let mut v = vec![
            InitialGuess::Zeros,
            InitialGuess::Constant(bounds.upper.clone()),
            InitialGuess::Constant(bounds.lower.clone()),
        ];
        v.extend((0..n_random as u64).map(|i| InitialGuess::Random { seed: seed.wrapping_add(i) }));
        v
    }
}

/// The result of a solve. Shapes: `xs: [T+1, n]`, `us: [T, m]`, `feedforward: [T, m]`,
/// `gains: [T, m, n]` (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct IlqrSolution {
    /// Optimised states.
    pub xs: Vec<f64>,
    /// Optimised controls (within the bounds).
    pub us: Vec<f64>,
    /// Feed-forward terms `k_t` of the last backward pass.
    pub feedforward: Vec<f64>,
    /// Feedback gains `K_t` of the last backward pass (around the trajectory it linearised).
    pub gains: Vec<f64>,
    /// Total cost of `(xs, us)`.
    pub cost: f64,
    /// Cost of the initial rollout followed by the cost after each accepted step.
    pub cost_history: Vec<f64>,
    /// Iterations run (each linearises once and runs at least one backward pass).
    pub iterations: usize,
    /// Accepted steps (forward passes that lowered the cost).
    pub accepted_steps: usize,
    /// Why it stopped.
    pub stop: StopReason,
    /// Regularisation `μ` at the end.
    pub regularization: f64,
}

/// The result of [`Ilqr::solve_multistart`]: the best solution and every start's final cost.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiStartSolution {
    /// The lowest-cost solution.
    pub best: IlqrSolution,
    /// Index (into the starts) of the winner.
    pub best_index: usize,
    /// Final cost of each start, in order.
    pub costs: Vec<f64>,
    /// Iterations summed over all starts.
    pub total_iterations: usize,
}

/// An iLQR solver for a dynamics `D` and cost `C`, holding its work buffers so repeated
/// solves (MPC) allocate only their results.
#[derive(Clone)]
pub struct Ilqr<D, C> {
    dynamics: D,
    cost: C,
    config: IlqrConfig,
    n: usize,
    m: usize,
    horizon: usize,
    ws: Workspace,
}

/// Work buffers for one horizon.
#[derive(Clone)]
struct Workspace {
    xs: Vec<f64>,
    us: Vec<f64>,
    xs_new: Vec<f64>,
    us_new: Vec<f64>,
    a: Vec<f64>,
    b: Vec<f64>,
    quad: Vec<Quadratization>,
    k: Vec<f64>,
    gains: Vec<f64>,
    vx: Vec<f64>,
    vxx: Vec<f64>,
    qx: Vec<f64>,
    qu: Vec<f64>,
    qxx: Vec<f64>,
    quu: Vec<f64>,
    quu_reg: Vec<f64>,
    qux: Vec<f64>,
    va: Vec<f64>,
    vb: Vec<f64>,
    tmp_m: Vec<f64>,
    tmp_mn: Vec<f64>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    dx: Vec<f64>,
    qp: BoxQp,
}

impl Workspace {
    fn new(n: usize, m: usize, horizon: usize) -> Self {
        Self {
            xs: vec![0.0; (horizon + 1) * n],
            us: vec![0.0; horizon * m],
            xs_new: vec![0.0; (horizon + 1) * n],
            us_new: vec![0.0; horizon * m],
            a: vec![0.0; horizon * n * n],
            b: vec![0.0; horizon * n * m],
            quad: (0..=horizon).map(|_| Quadratization::zeros(n, m)).collect(),
            k: vec![0.0; horizon * m],
            gains: vec![0.0; horizon * m * n],
            vx: vec![0.0; n],
            vxx: vec![0.0; n * n],
            qx: vec![0.0; n],
            qu: vec![0.0; m],
            qxx: vec![0.0; n * n],
            quu: vec![0.0; m * m],
            quu_reg: vec![0.0; m * m],
            qux: vec![0.0; m * n],
            va: vec![0.0; n * n],
            vb: vec![0.0; n * m],
            tmp_m: vec![0.0; m],
            tmp_mn: vec![0.0; m * n],
            lower: vec![0.0; m],
            upper: vec![0.0; m],
            dx: vec![0.0; n],
            qp: BoxQp::new(m),
        }
    }
}

impl<D: Dynamics, C: Cost> Ilqr<D, C> {
    /// A solver; errors if the config is invalid for the dynamics' control size.
    pub fn new(dynamics: D, cost: C, config: IlqrConfig) -> Result<Self> {
        let (n, m) = (dynamics.state_dim(), dynamics.control_dim());
        if n == 0 || m == 0 {
            return Err(Error::InvalidConfig {
                field: "dynamics",
                reason: "state and control sizes must be >= 1".into(),
            });
        }
        config.check(m)?;
        Ok(Self { dynamics, cost, config, n, m, horizon: 0, ws: Workspace::new(n, m, 0) })
    }

    /// The settings.
    pub fn config(&self) -> &IlqrConfig {
        &self.config
    }

    /// Replaces the settings (checked).
    pub fn set_config(&mut self, config: IlqrConfig) -> Result<()> {
        config.check(self.m)?;
        self.config = config;
        Ok(())
    }

    /// The dynamics.
    pub fn dynamics(&self) -> &D {
        &self.dynamics
    }

    /// The cost.
    pub fn cost(&self) -> &C {
        &self.cost
    }

    fn clip(&self, u: &mut [f64]) {
        if let Some(b) = &self.config.bounds {
            for i in 0..u.len() {
                u[i] = u[i].clamp(b.lower[i], b.upper[i]);
            }
        }
    }

    /// Concrete controls `[T, m]` (within the bounds) for an initial guess from `x0`.
    pub fn initial_controls(
        &self,
        x0: &[f64],
        horizon: usize,
        guess: &InitialGuess,
    ) -> Result<Vec<f64>> {
        let (n, m) = (self.n, self.m);
        check_len("x0", n, x0.len())?;
        check_finite("x0", x0)?;
        let mut us = match guess {
            InitialGuess::Zeros => vec![0.0; horizon * m],
            InitialGuess::Constant(c) => {
                check_len("constant control", m, c.len())?;
                check_finite("constant control", c)?;
                c.iter().copied().cycle().take(horizon * m).collect()
            }
            InitialGuess::Random { seed } => {
                let b = self
                    .config
                    .bounds
                    .as_ref()
                    .filter(|b| b.lower.iter().chain(&b.upper).all(|v| v.is_finite()));
                let Some(b) = b else {
                    return Err(Error::InvalidConfig {
                        field: "bounds",
                        reason: "random initial controls need finite control bounds".into(),
                    });
                };
                let mut rng = ChaCha8Rng::seed_from_u64(*seed);
                (0..horizon * m)
                    .map(|i| rng.random_range(b.lower[i % m]..=b.upper[i % m]))
                    .collect()
            }
            InitialGuess::Sequence(s) => {
                check_len("initial control sequence", horizon * m, s.len())?;
                check_finite("initial control sequence", s)?;
                s.clone()
            }
            InitialGuess::Policy(pi) => {
                let mut us = vec![0.0; horizon * m];
                let mut x = x0.to_vec();
                let mut xn = vec![0.0; n];
                for t in 0..horizon {
                    let mut u = pi(&x);
                    check_len("policy output", m, u.len())?;
                    check_finite("policy output", &u)?;
                    self.clip(&mut u);
                    self.dynamics.step(&x, &u, &mut xn);
                    std::mem::swap(&mut x, &mut xn);
                    us[t * m..(t + 1) * m].copy_from_slice(&u);
                }
                us
            }
        };
        for t in 0..horizon {
            self.clip(&mut us[t * m..(t + 1) * m]);
        }
        Ok(us)
    }

    /// Runs iLQR from `x0: [n]` with initial controls `us_init: [T, m]` (a warm start; clipped
    /// to the bounds). Errors on non-finite or mis-sized input, or a non-finite initial rollout.
    pub fn solve(&mut self, x0: &[f64], us_init: &[f64]) -> Result<IlqrSolution> {
        let (n, m) = (self.n, self.m);
        check_len("x0", n, x0.len())?;
        check_finite("x0", x0)?;
        check_finite("initial controls", us_init)?;
        if us_init.is_empty() || !us_init.len().is_multiple_of(m) {
            return Err(Error::Dimension {
                what: "initial controls (must be T·m, T ≥ 1)",
                expected: m,
                got: us_init.len(),
            });
        }
        let horizon = us_init.len() / m;
        if horizon != self.horizon {
            self.ws = Workspace::new(n, m, horizon);
            self.horizon = horizon;
        }
        self.ws.us.copy_from_slice(us_init);
        if let Some(b) = &self.config.bounds {
            for (i, u) in self.ws.us.iter_mut().enumerate() {
                *u = u.clamp(b.lower[i % m], b.upper[i % m]);
            }
        }
        self.ws.k.fill(0.0);
        self.ws.gains.fill(0.0);
        self.ws.xs[..n].copy_from_slice(x0);
        let mut cost = rollout(&self.dynamics, &self.cost, &mut self.ws.xs, &self.ws.us, n, m);
        if !cost.is_finite() {
            return Err(Error::NonFinite { what: "cost of the initial rollout" });
        }
        let cfg = self.config.clone();
        let reg = cfg.regularization;
        let mut mu = reg.initial;
        let mut history = vec![cost];
        let mut need_linearize = true;
        let mut iterations = 0;
        let mut accepted = 0;
        let stop = loop {
            if iterations >= cfg.max_iterations {
                break StopReason::MaxIterations;
            }
            iterations += 1;
            if need_linearize {
                self.linearize_quadratize();
                need_linearize = false;
            }
            // Backward pass, raising μ until Q_uu + μI is positive definite on the free set.
            let dv = loop {
                match self.backward_pass(mu) {
                    Some(dv) => break Some(dv),
                    None => {
                        mu = (mu * reg.factor).max(reg.min);
                        if mu > reg.max {
                            break None;
                        }
                    }
                }
            };
            let Some(dv) = dv else {
                break StopReason::RegularizationExceeded;
            };
            if self.feedforward_norm() < cfg.tol_grad {
                mu = decrease(mu, &reg);
                break StopReason::GradientNorm;
            }
            match self.line_search(x0, cost, dv) {
                Some(new_cost) => {
                    std::mem::swap(&mut self.ws.xs, &mut self.ws.xs_new);
                    std::mem::swap(&mut self.ws.us, &mut self.ws.us_new);
                    let dj = cost - new_cost;
                    cost = new_cost;
                    history.push(cost);
                    accepted += 1;
                    need_linearize = true;
                    mu = decrease(mu, &reg);
                    if dj < cfg.tol_cost * cost.abs().max(1.0) {
                        break StopReason::CostChange;
                    }
                }
                None => {
                    mu = (mu * reg.factor).max(reg.min);
                    if mu > reg.max {
                        break StopReason::RegularizationExceeded;
                    }
                }
            }
        };
        Ok(IlqrSolution {
            xs: self.ws.xs.clone(),
            us: self.ws.us.clone(),
            feedforward: self.ws.k.clone(),
            gains: self.ws.gains.clone(),
            cost,
            cost_history: history,
            iterations,
            accepted_steps: accepted,
            stop,
            regularization: mu,
        })
    }

    /// Solves from each initial guess and keeps the lowest final cost (ties: the earliest).
    pub fn solve_multistart(
        &mut self,
        x0: &[f64],
        horizon: usize,
        starts: &[InitialGuess],
    ) -> Result<MultiStartSolution> {
        if starts.is_empty() {
            return Err(Error::InvalidConfig {
                field: "starts",
                reason: "need at least one initial guess".into(),
            });
        }
        let mut best: Option<(usize, IlqrSolution)> = None;
        let mut costs = Vec::with_capacity(starts.len());
        let mut total = 0;
        for (i, g) in starts.iter().enumerate() {
            let us = self.initial_controls(x0, horizon, g)?;
            let sol = self.solve(x0, &us)?;
            costs.push(sol.cost);
            total += sol.iterations;
            if best.as_ref().is_none_or(|(_, b)| sol.cost < b.cost) {
                best = Some((i, sol));
            }
        }
        let (best_index, best) = best.expect("starts is non-empty");
        Ok(MultiStartSolution { best, best_index, costs, total_iterations: total })
    }

    /// `A_t, B_t` and the cost quadratizations along the current trajectory.
    fn linearize_quadratize(&mut self) {
        let (n, m, horizon) = (self.n, self.m, self.horizon);
        let ws = &mut self.ws;
        self.dynamics.linearize_trajectory(&ws.xs, &ws.us, &mut ws.a, &mut ws.b);
        for t in 0..horizon {
            self.cost.quadratize(
                t,
                &ws.xs[t * n..(t + 1) * n],
                &ws.us[t * m..(t + 1) * m],
                &mut ws.quad[t],
            );
        }
        self.cost.quadratize_terminal(&ws.xs[horizon * n..], &mut ws.quad[horizon]);
    }

    /// Riccati-like backward pass with regularisation `mu`; fills `k`, `K` and returns the
    /// expected-decrease terms `[Σ kᵀQ_u, Σ ½ kᵀQ_uu k]`, or `None` if a box-QP failed.
    fn backward_pass(&mut self, mu: f64) -> Option<[f64; 2]> {
        let (n, m, horizon) = (self.n, self.m, self.horizon);
        let ws = &mut self.ws;
        let bounds = self.config.bounds.as_ref();
        let term = &ws.quad[horizon];
        ws.vx.copy_from_slice(&term.lx);
        ws.vxx.copy_from_slice(&term.lxx);
        let mut dv = [0.0, 0.0];
        for t in (0..horizon).rev() {
            let a = &ws.a[t * n * n..(t + 1) * n * n];
            let b = &ws.b[t * n * m..(t + 1) * n * m];
            let q = &ws.quad[t];
            // Q_x = l_x + Aᵀ V_x, Q_u = l_u + Bᵀ V_x
            ws.qx.copy_from_slice(&q.lx);
            mat_t_vec(a, n, n, &ws.vx, &mut ws.qx, true);
            ws.qu.copy_from_slice(&q.lu);
            mat_t_vec(b, n, m, &ws.vx, &mut ws.qu, true);
            // VA = V_xx A, VB = V_xx B
            mat_mul(&ws.vxx, a, n, n, n, &mut ws.va);
            mat_mul(&ws.vxx, b, n, n, m, &mut ws.vb);
            // Q_xx = l_xx + Aᵀ VA, Q_uu = l_uu + Bᵀ VB, Q_ux = l_ux + Bᵀ VA
            ws.qxx.copy_from_slice(&q.lxx);
            add_mat_t_mul(a, &ws.va, n, n, n, &mut ws.qxx);
            ws.quu.copy_from_slice(&q.luu);
            add_mat_t_mul(b, &ws.vb, n, m, m, &mut ws.quu);
            symmetrize(&mut ws.quu, m);
            ws.qux.copy_from_slice(&q.lux);
            add_mat_t_mul(b, &ws.va, n, m, n, &mut ws.qux);
            ws.quu_reg.copy_from_slice(&ws.quu);
            for i in 0..m {
                ws.quu_reg[i * m + i] += mu;
            }
            // Box-QP for k_t with bounds relative to u_t.
            let u = &ws.us[t * m..(t + 1) * m];
            for i in 0..m {
                let (lo, hi) =
                    bounds.map_or((f64::NEG_INFINITY, f64::INFINITY), |b| (b.lower[i], b.upper[i]));
                ws.lower[i] = lo - u[i];
                ws.upper[i] = hi - u[i];
            }
            let k_t = &mut ws.k[t * m..(t + 1) * m];
            if !ws.qp.solve(&ws.quu_reg, &ws.qu, &ws.lower, &ws.upper, k_t) {
                return None;
            }
            k_t.copy_from_slice(&ws.qp.k);
            // K_t: free rows −H_ff⁻¹ Q_ux,f, clamped rows zero.
            let gains = &mut ws.gains[t * m * n..(t + 1) * m * n];
            gains.fill(0.0);
            let nf = ws.qp.n_free;
            if nf > 0 {
                for j in 0..n {
                    let mut a_idx = 0;
                    for i in 0..m {
                        if ws.qp.free[i] {
                            ws.tmp_m[a_idx] = ws.qux[i * n + j];
                            a_idx += 1;
                        }
                    }
                    cholesky_solve(&ws.qp.chol_free[..nf * nf], nf, &mut ws.tmp_m[..nf]);
                    let mut a_idx = 0;
                    for i in 0..m {
                        if ws.qp.free[i] {
                            gains[i * n + j] = -ws.tmp_m[a_idx];
                            a_idx += 1;
                        }
                    }
                }
            }
            let k_t = &ws.k[t * m..(t + 1) * m];
            // Expected decrease terms.
            mat_vec(&ws.quu, m, m, k_t, &mut ws.tmp_m); // Q_uu k
            dv[0] += (0..m).map(|i| k_t[i] * ws.qu[i]).sum::<f64>();
            dv[1] += 0.5 * (0..m).map(|i| k_t[i] * ws.tmp_m[i]).sum::<f64>();
            // V_x = Q_x + Kᵀ Q_uu k + Kᵀ Q_u + Q_uxᵀ k
            for i in 0..m {
                ws.tmp_m[i] += ws.qu[i]; // Q_uu k + Q_u
            }
            ws.vx.copy_from_slice(&ws.qx);
            mat_t_vec(gains, m, n, &ws.tmp_m, &mut ws.vx, true);
            mat_t_vec(&ws.qux, m, n, k_t, &mut ws.vx, true);
            // V_xx = Q_xx + Kᵀ Q_uu K + Kᵀ Q_ux + Q_uxᵀ K
            ws.vxx.copy_from_slice(&ws.qxx);
            mat_mul(&ws.quu, gains, m, m, n, &mut ws.tmp_mn); // Q_uu K  [m, n]
            for i in 0..m * n {
                ws.tmp_mn[i] += ws.qux[i]; // Q_uu K + Q_ux
            }
            add_mat_t_mul(gains, &ws.tmp_mn, m, n, n, &mut ws.vxx);
            add_mat_t_mul(&ws.qux, gains, m, n, n, &mut ws.vxx);
            symmetrize(&mut ws.vxx, n);
            if !ws.vx.iter().chain(&ws.vxx).all(|v| v.is_finite()) {
                return None;
            }
        }
        Some(dv)
    }

    /// Tassa's scaled feed-forward size `mean_t max_i |k_t,i| / (|u_t,i| + 1)`.
    fn feedforward_norm(&self) -> f64 {
        let m = self.m;
        let total: f64 = (0..self.horizon)
            .map(|t| {
                (0..m)
                    .map(|i| self.ws.k[t * m + i].abs() / (self.ws.us[t * m + i].abs() + 1.0))
                    .fold(0.0, f64::max)
            })
            .sum();
        total / self.horizon as f64
    }

    /// Rolls out the feedback policy with step `alpha` into `xs_new, us_new`; returns the cost.
    fn forward_pass(&mut self, x0: &[f64], alpha: f64) -> f64 {
        let (n, m, horizon) = (self.n, self.m, self.horizon);
        let bounds = self.config.bounds.as_ref();
        let ws = &mut self.ws;
        ws.xs_new[..n].copy_from_slice(x0);
        let mut cost = 0.0;
        for t in 0..horizon {
            let (xs_now, xs_next) = ws.xs_new.split_at_mut((t + 1) * n);
            let x = &xs_now[t * n..];
            for i in 0..n {
                ws.dx[i] = x[i] - ws.xs[t * n + i];
            }
            let u = &mut ws.us_new[t * m..(t + 1) * m];
            mat_vec(&ws.gains[t * m * n..(t + 1) * m * n], m, n, &ws.dx, u);
            for i in 0..m {
                u[i] += ws.us[t * m + i] + alpha * ws.k[t * m + i];
                if let Some(b) = bounds {
                    u[i] = u[i].clamp(b.lower[i], b.upper[i]);
                }
            }
            cost += self.cost.running(t, x, u);
            self.dynamics.step(x, u, &mut xs_next[..n]);
        }
        cost + self.cost.terminal(&ws.xs_new[horizon * n..])
    }

    /// Backtracking over `α`; returns the new cost if a step was accepted (then the candidate
    /// trajectory sits in `xs_new, us_new`).
    fn line_search(&mut self, x0: &[f64], cost: f64, dv: [f64; 2]) -> Option<f64> {
        let ls = self.config.line_search;
        let mut alpha = ls.initial;
        while alpha >= ls.min {
            let new_cost = self.forward_pass(x0, alpha);
            if new_cost.is_finite() {
                let expected = -(alpha * dv[0] + alpha * alpha * dv[1]);
                let actual = cost - new_cost;
                let ok =
                    if expected > 0.0 { actual / expected > ls.min_ratio } else { actual > 0.0 };
                if ok && actual >= 0.0 {
                    return Some(new_cost);
                }
            }
            alpha *= ls.factor;
        }
        None
    }
}

fn decrease(mu: f64, reg: &Regularization) -> f64 {
    let mu = mu / reg.factor;
    if mu < reg.min { 0.0 } else { mu }
}

/// Rolls `us: [T, m]` out from `xs[0..n]` (already set) into `xs: [T+1, n]`; returns the total cost.
pub fn rollout<D: Dynamics, C: Cost>(
    dynamics: &D,
    cost: &C,
    xs: &mut [f64],
    us: &[f64],
    n: usize,
    m: usize,
) -> f64 {
    let horizon = us.len() / m;
    let mut total = 0.0;
    for t in 0..horizon {
        let (now, next) = xs.split_at_mut((t + 1) * n);
        let x = &now[t * n..];
        let u = &us[t * m..(t + 1) * m];
        total += cost.running(t, x, u);
        dynamics.step(x, u, &mut next[..n]);
    }
    total + cost.terminal(&xs[horizon * n..(horizon + 1) * n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LinearDynamics, PendulumCost, QuadraticCost, TruePendulum};

    // Independent dense helpers (Vec<Vec<f64>>) for the reference Riccati recursion.
    type M = Vec<Vec<f64>>;
    fn from_flat(v: &[f64], r: usize, c: usize) -> M {
        (0..r).map(|i| v[i * c..(i + 1) * c].to_vec()).collect()
    }
    fn mul(a: &M, b: &M) -> M {
        let (r, k, c) = (a.len(), b.len(), b[0].len());
        (0..r).map(|i| (0..c).map(|j| (0..k).map(|l| a[i][l] * b[l][j]).sum()).collect()).collect()
    }
    fn tr(a: &M) -> M {
        (0..a[0].len()).map(|j| (0..a.len()).map(|i| a[i][j]).collect()).collect()
    }
    fn add(a: &M, b: &M) -> M {
        a.iter().zip(b).map(|(x, y)| x.iter().zip(y).map(|(p, q)| p + q).collect()).collect()
    }
    /// Inverse by Gauss–Jordan with partial pivoting.
    fn inv(a: &M) -> M {
        let n = a.len();
        let mut aug: M = a
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut row = r.clone();
                row.extend((0..n).map(|j| if i == j { 1.0 } else { 0.0 }));
                row
            })
            .collect();
        for c in 0..n {
            let p = (c..n).max_by(|&x, &y| aug[x][c].abs().total_cmp(&aug[y][c].abs())).unwrap();
            aug.swap(c, p);
            let d = aug[c][c];
            for v in aug[c].iter_mut() {
                *v /= d;
            }
            for r in 0..n {
                if r != c {
                    let f = aug[r][c];
                    let pivot_row = aug[c].clone();
                    for (v, pv) in aug[r].iter_mut().zip(pivot_row) {
                        *v -= f * pv;
                    }
                }
            }
        }
        aug.into_iter().map(|r| r[n..].to_vec()).collect()
    }

    /// On `x' = A x + B u` with `l = xᵀQx + uᵀRu`, `l_f = xᵀQ_f x`, one iLQR step from zero
    /// controls with μ = 0 is exact Newton on a quadratic, so it must land on the LQR optimum:
    /// the discrete-time Riccati recursion `P_T = Q_f`, `K_t = −(R + BᵀP B)⁻¹ BᵀP A`,
    /// `P_t = Q + AᵀP A + AᵀP B K_t`, optimal cost `x_0ᵀ P_0 x_0`, `u_t = K_t x_t`.
    #[test]
    fn linear_quadratic_converges_in_one_step_to_riccati() {
        let (n, m, horizon) = (3, 2, 20);
        let a_flat = vec![1.0, 0.1, 0.0, -0.2, 0.95, 0.1, 0.05, 0.0, 1.02];
        let b_flat = vec![0.0, 0.1, 0.1, 0.0, 0.05, 0.05];
        let dynamics = LinearDynamics::new(n, m, a_flat.clone(), b_flat.clone()).unwrap();
        let (q, r, qf) = ([1.0, 0.5, 2.0], [0.1, 0.3], [10.0, 5.0, 8.0]);
        let cost = QuadraticCost::diagonal(vec![0.0; n], &q, &r, &qf).unwrap();
        let reg = Regularization { initial: 0.0, ..Regularization::default() };
        let cfg = IlqrConfig { regularization: reg, tol_grad: 1e-9, ..IlqrConfig::default() };
        let mut solver = Ilqr::new(dynamics, cost, cfg).unwrap();
        let x0 = [1.0, -2.0, 0.5];
        let sol = solver.solve(&x0, &vec![0.0; horizon * m]).unwrap();
        assert_eq!(sol.accepted_steps, 1, "history {:?}", sol.cost_history);
        assert_eq!(sol.stop, StopReason::GradientNorm);

        let (a, b) = (from_flat(&a_flat, n, n), from_flat(&b_flat, n, m));
        let diag = |d: &[f64]| -> M {
            (0..d.len())
                .map(|i| (0..d.len()).map(|j| if i == j { d[i] } else { 0.0 }).collect())
                .collect()
        };
        let (qm, rm) = (diag(&q), diag(&r));
        let mut p = diag(&qf);
        let mut gains = vec![M::new(); horizon];
        for t in (0..horizon).rev() {
            let bt_p = mul(&tr(&b), &p);
            let k = mul(&inv(&add(&rm, &mul(&bt_p, &b))), &mul(&bt_p, &a));
            let k: M = k.iter().map(|row| row.iter().map(|v| -v).collect()).collect();
            let at_p = mul(&tr(&a), &p);
            p = add(&add(&qm, &mul(&at_p, &a)), &mul(&mul(&at_p, &b), &k));
            gains[t] = k;
        }
        let x0m: M = x0.iter().map(|v| vec![*v]).collect();
        let j_ref = mul(&mul(&tr(&x0m), &p), &x0m)[0][0];
        assert!(
            (sol.cost - j_ref).abs() < 1e-9 * j_ref,
            "iLQR cost {} vs Riccati {j_ref}",
            sol.cost
        );
        let mut x = x0m;
        for t in 0..horizon {
            let u = mul(&gains[t], &x);
            for i in 0..m {
                assert!(
                    (sol.us[t * m + i] - u[i][0]).abs() < 1e-9,
                    "u[{t}][{i}]: {} vs {}",
                    sol.us[t * m + i],
                    u[i][0]
                );
                for j in 0..n {
                    let g = sol.gains[t * m * n + i * n + j];
                    assert!(
                        (g - gains[t][i][j]).abs() < 1e-9,
                        "K[{t}][{i},{j}]: {g} vs {}",
                        gains[t][i][j]
                    );
                }
            }
            x = add(&mul(&a, &x), &mul(&b, &u));
        }
    }

    /// With limits on a 2-control linear system (the general box-QP path in the loop), the
    /// solution stays in the box and is no worse than clipping the unconstrained LQR controls.
    #[test]
    fn bounded_linear_quadratic_respects_the_box() {
        let (n, m, horizon) = (2, 2, 25);
        let dynamics =
            LinearDynamics::new(n, m, vec![1.0, 0.1, 0.0, 1.0], vec![0.005, 0.0, 0.1, 0.05])
                .unwrap();
        let cost = QuadraticCost::diagonal(vec![0.0; n], &[1.0, 0.1], &[0.01, 0.01], &[10.0, 1.0])
            .unwrap();
        let x0 = [3.0, -1.0];
        let free = Ilqr::new(&dynamics, &cost, IlqrConfig::default())
            .unwrap()
            .solve(&x0, &vec![0.0; horizon * m])
            .unwrap();
        let bounds = ControlBounds { lower: vec![-1.0, -0.5], upper: vec![1.0, 0.5] };
        let cfg = IlqrConfig { bounds: Some(bounds.clone()), ..IlqrConfig::default() };
        let mut solver = Ilqr::new(&dynamics, &cost, cfg).unwrap();
        let sol = solver.solve(&x0, &vec![0.0; horizon * m]).unwrap();
        assert!(
            matches!(sol.stop, StopReason::GradientNorm | StopReason::CostChange),
            "{:?}",
            sol.stop
        );
        for (i, u) in sol.us.iter().enumerate() {
            assert!(*u >= bounds.lower[i % m] && *u <= bounds.upper[i % m], "u[{i}] = {u}");
        }
        assert!(
            free.us.iter().enumerate().any(|(i, u)| u.abs() > bounds.upper[i % m]),
            "limits should bind"
        );
        let clipped: Vec<f64> = free
            .us
            .iter()
            .enumerate()
            .map(|(i, u)| u.clamp(bounds.lower[i % m], bounds.upper[i % m]))
            .collect();
        let mut xs = vec![0.0; (horizon + 1) * n];
        xs[..n].copy_from_slice(&x0);
        let j_clipped = rollout(&dynamics, &cost, &mut xs, &clipped, n, m);
        assert!(
            sol.cost <= j_clipped,
            "box-QP iLQR {} worse than clipped LQR {j_clipped}",
            sol.cost
        );
        assert!(sol.cost >= free.cost, "constrained cost below the unconstrained optimum");
    }

    fn pendulum_solver(max_iterations: usize) -> Ilqr<TruePendulum, PendulumCost> {
        let d = TruePendulum::default();
        let (lower, upper) = d.control_limits();
        let cfg = IlqrConfig {
            max_iterations,
            bounds: Some(ControlBounds { lower, upper }),
            ..IlqrConfig::default()
        };
        Ilqr::new(d, PendulumCost::default(), cfg).unwrap()
    }

    #[test]
    fn non_finite_or_missized_input_is_an_error() {
        let mut s = pendulum_solver(10);
        assert!(matches!(s.solve(&[f64::NAN, 0.0], &[0.0; 5]), Err(Error::NonFinite { .. })));
        assert!(matches!(
            s.solve(&[0.0, 0.0], &[0.0, f64::INFINITY]),
            Err(Error::NonFinite { .. })
        ));
        assert!(matches!(s.solve(&[0.0], &[0.0; 5]), Err(Error::Dimension { .. })));
        assert!(matches!(s.solve(&[0.0, 0.0], &[]), Err(Error::Dimension { .. })));
        let bad = IlqrConfig {
            regularization: Regularization { factor: 0.5, ..Regularization::default() },
            ..IlqrConfig::default()
        };
        assert!(matches!(
            Ilqr::new(TruePendulum::default(), PendulumCost::default(), bad),
            Err(Error::InvalidConfig { .. })
        ));
    }

    #[test]
    fn cost_history_decreases_and_multistart_keeps_the_best() {
        let mut s = pendulum_solver(50);
        let bounds = s.config().bounds.clone().unwrap();
        let x0 = [std::f64::consts::PI, 0.0];
        let mut starts = InitialGuess::standard_set(&bounds, 3, 7);
        starts.push(InitialGuess::Policy(Arc::new(|x: &[f64]| {
            vec![if x[1] >= 0.0 { 2.0 } else { -2.0 }]
        })));
        let ms = s.solve_multistart(&x0, 30, &starts).unwrap();
        assert_eq!(ms.costs.len(), starts.len());
        let min = ms.costs.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(ms.best.cost, min);
        assert_eq!(ms.costs[ms.best_index], min);
        for w in ms.best.cost_history.windows(2) {
            assert!(w[1] < w[0], "cost went up: {:?}", ms.best.cost_history);
        }
        // The reported cost is the cost of the reported trajectory.
        let mut xs = vec![0.0; 31 * 2];
        xs[..2].copy_from_slice(&x0);
        let j = rollout(s.dynamics(), s.cost(), &mut xs, &ms.best.us, 2, 1);
        assert!((j - ms.best.cost).abs() < 1e-9);
        assert_eq!(xs, ms.best.xs);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever the start and the (even wildly out-of-range) initial controls, every
        /// returned control lies within the limits.
        #[test]
        fn controls_never_leave_the_box(
            th in -10.0f64..10.0, thd in -8.0f64..8.0,
            us in proptest::collection::vec(-50.0f64..50.0, 15),
        ) {
            let mut s = pendulum_solver(20);
            let sol = s.solve(&[th, thd], &us).unwrap();
            for u in &sol.us {
                proptest::prop_assert!((-2.0..=2.0).contains(u), "u = {u}");
            }
            for w in sol.cost_history.windows(2) {
                proptest::prop_assert!(w[1] <= w[0]);
            }
        }
    }
}
