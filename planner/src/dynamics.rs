//! The [`Dynamics`] trait (discrete time, `x' = f(x, u)`) and a linear system.

/// Discrete-time dynamics `x_{t+1} = f(x_t, u_t)` with state size `n` and control size `m`.
///
/// Slices are row-major: `a` is `A = ∂f/∂x` of shape `[n, n]` (`a[i*n + j] = ∂f_i/∂x_j`),
/// `b` is `B = ∂f/∂u` of shape `[n, m]`.
///
/// A learned latent model (n ≤ 8, m = 1) implements [`Dynamics::linearize`], which gives the
/// step and both Jacobians from one evaluation (one network pass), and may override
/// [`Dynamics::linearize_trajectory`] to evaluate all `T` time steps in one batch.
pub trait Dynamics {
    /// State size `n`.
    fn state_dim(&self) -> usize;
    /// Control size `m`.
    fn control_dim(&self) -> usize;
    /// Writes `f(x, u)` into `x_next` (`x: [n]`, `u: [m]`, `x_next: [n]`).
    fn step(&self, x: &[f64], u: &[f64], x_next: &mut [f64]);
    /// Writes `f(x, u)` into `x_next`, `A = ∂f/∂x` into `a: [n, n]` and `B = ∂f/∂u` into `b: [n, m]`.
    fn linearize(&self, x: &[f64], u: &[f64], x_next: &mut [f64], a: &mut [f64], b: &mut [f64]);
    /// Jacobians along a whole trajectory: for `t < T`, `A_t` and `B_t` at `(x_t, u_t)` with
    /// `xs: [T+1, n]` (the last state is not used), `us: [T, m]`, `a: [T, n, n]`, `b: [T, n, m]`.
    /// The default calls [`Dynamics::linearize`] per step; batched models override it.
    fn linearize_trajectory(&self, xs: &[f64], us: &[f64], a: &mut [f64], b: &mut [f64]) {
        let (n, m) = (self.state_dim(), self.control_dim());
        let horizon = us.len() / m;
        let mut scratch = vec![0.0; n];
        for t in 0..horizon {
            self.linearize(
                &xs[t * n..(t + 1) * n],
                &us[t * m..(t + 1) * m],
                &mut scratch,
                &mut a[t * n * n..(t + 1) * n * n],
                &mut b[t * n * m..(t + 1) * n * m],
            );
        }
    }
    /// Writes the deviation of state `x` from a reference state `reference` into `dx` (all
    /// `[n]`), as a feedback gain reads it (MPC's [`crate::WarmStart::Feedback`]). The default
    /// is `x − reference`; a system with an angle in its state wraps that component into
    /// `[−π, π)`, so a state wrapped by the environment is near its unwrapped prediction.
    fn deviation(&self, x: &[f64], reference: &[f64], dx: &mut [f64]) {
        for ((d, a), b) in dx.iter_mut().zip(x).zip(reference) {
            *d = a - b;
        }
    }
}

impl<D: Dynamics + ?Sized> Dynamics for &D {
    fn state_dim(&self) -> usize {
        (**self).state_dim()
    }
    fn control_dim(&self) -> usize {
        (**self).control_dim()
    }
    fn step(&self, x: &[f64], u: &[f64], x_next: &mut [f64]) {
        (**self).step(x, u, x_next)
    }
    fn linearize(&self, x: &[f64], u: &[f64], x_next: &mut [f64], a: &mut [f64], b: &mut [f64]) {
        (**self).linearize(x, u, x_next, a, b)
    }
    fn linearize_trajectory(&self, xs: &[f64], us: &[f64], a: &mut [f64], b: &mut [f64]) {
        (**self).linearize_trajectory(xs, us, a, b)
    }
    fn deviation(&self, x: &[f64], reference: &[f64], dx: &mut [f64]) {
        (**self).deviation(x, reference, dx)
    }
}

/// Time-invariant linear dynamics `x' = A x + B u`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearDynamics {
    n: usize,
    m: usize,
    a: Vec<f64>,
    b: Vec<f64>,
}

impl LinearDynamics {
    /// `A: [n, n]` and `B: [n, m]` row-major; errors if the sizes disagree or values are not finite.
    pub fn new(n: usize, m: usize, a: Vec<f64>, b: Vec<f64>) -> crate::Result<Self> {
        crate::error::check_len("A", n * n, a.len())?;
        crate::error::check_len("B", n * m, b.len())?;
        crate::error::check_finite("A", &a)?;
        crate::error::check_finite("B", &b)?;
        if n == 0 || m == 0 {
            return Err(crate::Error::InvalidConfig {
                field: "n, m",
                reason: "sizes must be at least 1".into(),
            });
        }
        Ok(Self { n, m, a, b })
    }
    /// `A: [n, n]`.
    pub fn a(&self) -> &[f64] {
        &self.a
    }
    /// `B: [n, m]`.
    pub fn b(&self) -> &[f64] {
        &self.b
    }
}

impl Dynamics for LinearDynamics {
    fn state_dim(&self) -> usize {
        self.n
    }
    fn control_dim(&self) -> usize {
        self.m
    }
    fn step(&self, x: &[f64], u: &[f64], x_next: &mut [f64]) {
        let (n, m) = (self.n, self.m);
        for i in 0..n {
            let ax: f64 = (0..n).map(|j| self.a[i * n + j] * x[j]).sum();
            let bu: f64 = (0..m).map(|j| self.b[i * m + j] * u[j]).sum();
            x_next[i] = ax + bu;
        }
    }
    fn linearize(&self, x: &[f64], u: &[f64], x_next: &mut [f64], a: &mut [f64], b: &mut [f64]) {
        self.step(x, u, x_next);
        a.copy_from_slice(&self.a);
        b.copy_from_slice(&self.b);
    }
}
