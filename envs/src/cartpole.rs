//! Cart-pole swing-up with a continuous force, as the `gymnasium-cartpole-swingup` package's
//! `CartPoleSwingUp-v0` (version 0.1.8 on PyPI) defines it, and an anti-aliased renderer.
//!
//! State `[x, ẋ, θ, θ̇]`: cart position (m), its velocity, pole angle (θ = 0 upright, θ = π
//! hanging; wrapped to `[-π, π)` after each step) and angular velocity. Action `a ∈ [-1, 1]`.
//! One step ([`step`]), exactly as the package computes it:
//! 1. `F = f32(clip(a, −1, 1)) · f32(force_mag)` in single precision (the package casts the
//!    action to float32 and numpy ≥ 2 keeps the product in float32), then widened to f64;
//! 2. with `s = sin θ`, `c = cos θ`, `M = m_c + m_p`, `m_p l`:
//!    `ẍ = (−2 m_p l θ̇² s + 3 m_p g s c + 4F − 4bẋ) / (4M − 3 m_p c²)`,
//!    `θ̈ = (−3 m_p l θ̇² s c + 6 M g s + 6 (F − bẋ) c) / (4 l M − 3 m_p l c²)`;
//! 3. explicit Euler with `dt`: positions from the old velocities, velocities from the
//!    accelerations; then `θ ← ((θ + π) mod 2π) − π`;
//! 4. reward `cos θ' · cos x'` of the new state; terminated when `|x'| > x_threshold`.
//!
//! Defaults: g = 9.82, m_c = m_p = 0.5, l = 0.6, force_mag = 10, dt = 0.1, b = 0.1,
//! x_threshold = 2.4; the package's time limit is 1000 steps ([`make`]). Its reset draws each
//! state component from N(mean, 0.05²) around hanging at rest, `[0, 0, π, 0]`
//! ([`sample_initial_state`]; the same distribution, not numpy's stream); datasets use
//! [`sample_spread_state`], which covers the whole state space.
//!
//! The pure functions are shared with the planner (`ekvae_planner::TrueCartPole`), so the
//! physics exists once; [`accelerations`] is the unwrapped continuous part.

use std::f64::consts::PI;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::env::{Env, Frame, Info, ResetTo, Step};
use crate::pendulum::angle_normalize;
use crate::space::{BoxSpace, uniform};
use crate::wrappers::TimeLimit;

/// Physical parameters of the cart-pole (the package's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CartPoleParams {
    /// Gravity g (m/s²).
    pub gravity: f64,
    /// Cart mass m_c (kg).
    pub cart_mass: f64,
    /// Pole mass m_p (kg).
    pub pole_mass: f64,
    /// Pole length l (m), pivot to tip.
    pub pole_length: f64,
    /// Force at |a| = 1 (N).
    pub force_mag: f64,
    /// Time step (s).
    pub dt: f64,
    /// Cart friction coefficient b.
    pub friction: f64,
    /// The episode terminates when |x| exceeds this (m).
    pub x_threshold: f64,
}

impl Default for CartPoleParams {
    fn default() -> Self {
        Self {
            gravity: 9.82,
            cart_mass: 0.5,
            pole_mass: 0.5,
            pole_length: 0.6,
            force_mag: 10.0,
            dt: 0.1,
            friction: 0.1,
            x_threshold: 2.4,
        }
    }
}

/// The force the package applies for action `a`: clipped to [−1, 1], cast to f32, scaled in
/// f32.
#[inline]
pub fn force(p: &CartPoleParams, a: f64) -> f64 {
    let a = a.clamp(-1.0, 1.0) as f32;
    f64::from(a * p.force_mag as f32)
}

/// `(ẍ, θ̈)` at `state` under force `f`, in the package's order of operations.
#[inline]
pub fn accelerations(p: &CartPoleParams, state: [f64; 4], f: f64) -> (f64, f64) {
    let [_, x_dot, theta, theta_dot] = state;
    let (s, c) = (theta.sin(), theta.cos());
    let total_m = p.cart_mass + p.pole_mass;
    let m_p_l = p.pole_mass * p.pole_length;
    let xdd = (-2.0 * m_p_l * (theta_dot * theta_dot) * s
        + 3.0 * p.pole_mass * p.gravity * s * c
        + 4.0 * f
        - 4.0 * p.friction * x_dot)
        / (4.0 * total_m - 3.0 * p.pole_mass * (c * c));
    let thdd = (-3.0 * m_p_l * (theta_dot * theta_dot) * s * c
        + 6.0 * total_m * p.gravity * s
        + 6.0 * (f - p.friction * x_dot) * c)
        / (4.0 * p.pole_length * total_m - 3.0 * m_p_l * (c * c));
    (xdd, thdd)
}

/// One Euler step under force `f` without the angle wrap (what a planner differentiates).
#[inline]
pub fn step_unwrapped(p: &CartPoleParams, state: [f64; 4], f: f64) -> [f64; 4] {
    let [x, x_dot, theta, theta_dot] = state;
    let (xdd, thdd) = accelerations(p, state, f);
    [x + x_dot * p.dt, x_dot + xdd * p.dt, theta + theta_dot * p.dt, theta_dot + thdd * p.dt]
}

/// What one step of the environment gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CartPoleOutcome {
    /// The new state, θ wrapped to `[-π, π)`.
    pub state: [f64; 4],
    /// `cos θ' · cos x'`.
    pub reward: f64,
    /// `|x'| > x_threshold`.
    pub terminated: bool,
    /// The applied force (N).
    pub force: f64,
}

/// One step of `CartPoleSwingUp-v0` for action `a` (see the module docs).
#[inline]
pub fn step(p: &CartPoleParams, state: [f64; 4], a: f64) -> CartPoleOutcome {
    let f = force(p, a);
    let mut next = step_unwrapped(p, state, f);
    next[2] = angle_normalize(next[2]);
    CartPoleOutcome {
        state: next,
        reward: reward(next),
        terminated: next[0] < -p.x_threshold || next[0] > p.x_threshold,
        force: f,
    }
}

/// The pole's energy as the speed (rad/s) its angle would have at the bottom of the swing, for
/// a uniform rod pivoted at one end with the cart held still (ω² = 3g/(2l)): ½θ̇² + ω² cos θ =
/// ½v² − ω², so v = √(θ̇² + 2ω²(1 + cos θ)). Upright at rest, v = 2ω (9.9 rad/s with the
/// package's parameters). A measure for the `capped:` dataset policy, not the coupled system's
/// conserved energy.
pub fn swing_speed(p: &CartPoleParams, state: [f64; 4]) -> f64 {
    let w2 = 3.0 * p.gravity / (2.0 * p.pole_length);
    (state[3] * state[3] + 2.0 * w2 * (1.0 + state[2].cos())).max(0.0).sqrt()
}

/// The action that slows the pole's swing fastest: θ̈ has the term 6·f·cos θ over a positive
/// denominator ([`accelerations`]), so full force against the sign of θ̇·cos θ (zero when that
/// product is zero).
pub fn brake_action(state: [f64; 4]) -> f64 {
    let v = state[3] * state[2].cos();
    if v > 0.0 {
        -1.0
    } else if v < 0.0 {
        1.0
    } else {
        0.0
    }
}

/// The package's default reward of a state: `cos θ · cos x`.
#[inline]
pub fn reward(state: [f64; 4]) -> f64 {
    state[2].cos() * state[0].cos()
}

/// One draw of a standard normal (Box–Muller from two uniforms of [`uniform`]).
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1 = 1.0 - uniform(rng, 0.0, 1.0); // (0, 1]
    let u2 = uniform(rng, 0.0, 1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

/// The package's reset distribution: each component from N(mean, 0.05²) around
/// `[0, 0, π, 0]` (hanging at rest).
pub fn sample_initial_state<R: Rng + ?Sized>(rng: &mut R) -> [f64; 4] {
    let mean = [0.0, 0.0, PI, 0.0];
    mean.map(|m| m + 0.05 * standard_normal(rng))
}

/// A start spread over the state space, for random-action datasets: x ~ U(−1.5, 1.5),
/// ẋ ~ U(−1, 1), θ ~ U(−π, π), θ̇ ~ U(−3, 3) (drawn in that order).
pub fn sample_spread_state<R: Rng + ?Sized>(rng: &mut R) -> [f64; 4] {
    let x = uniform(rng, -1.5, 1.5);
    let x_dot = uniform(rng, -1.0, 1.0);
    let theta = uniform(rng, -PI, PI);
    let theta_dot = uniform(rng, -3.0, 3.0);
    [x, x_dot, theta, theta_dot]
}

/// The stateful `CartPoleSwingUp-v0` (raw observations `[x, ẋ, θ, θ̇]`). Seeded with 0 until
/// the first `reset(Some(seed))`, so every run is reproducible.
#[derive(Debug, Clone)]
pub struct CartPoleSwingUp {
    params: CartPoleParams,
    state: [f64; 4],
    rng: ChaCha8Rng,
    action_space: BoxSpace,
    observation_space: BoxSpace,
}

impl Default for CartPoleSwingUp {
    fn default() -> Self {
        Self::new(CartPoleParams::default())
    }
}

impl CartPoleSwingUp {
    /// A cart-pole with `params`, hanging at rest at the centre until the first reset.
    pub fn new(params: CartPoleParams) -> Self {
        let xt = 2.0 * params.x_threshold;
        Self {
            params,
            state: [0.0, 0.0, PI, 0.0],
            rng: ChaCha8Rng::seed_from_u64(0),
            action_space: BoxSpace::new(vec![-1.0], vec![1.0], vec![1])
                .expect("the unit box is ordered"),
            observation_space: BoxSpace::new(
                vec![-xt, f64::NEG_INFINITY, -PI, f64::NEG_INFINITY],
                vec![xt, f64::INFINITY, PI, f64::INFINITY],
                vec![4],
            )
            .unwrap_or_else(|_| {
                BoxSpace::uniform_bounds(f64::NEG_INFINITY, f64::INFINITY, vec![4])
                    .expect("infinite bounds are ordered")
            }),
        }
    }

    /// The physical parameters.
    pub fn params(&self) -> &CartPoleParams {
        &self.params
    }

    /// The current state `[x, ẋ, θ, θ̇]`.
    pub fn state(&self) -> [f64; 4] {
        self.state
    }
}

impl Env for CartPoleSwingUp {
    type Obs = [f64; 4];
    type Action = [f64; 1];

    fn reset(&mut self, seed: Option<u64>) -> ([f64; 4], Info) {
        if let Some(seed) = seed {
            self.rng = ChaCha8Rng::seed_from_u64(seed);
        }
        self.state = sample_initial_state(&mut self.rng);
        (self.state, Info::new())
    }

    fn step(&mut self, action: &[f64; 1]) -> Step<[f64; 4]> {
        let out = step(&self.params, self.state, action[0]);
        self.state = out.state;
        let mut info = Info::new();
        info.insert("force", out.force);
        Step {
            obs: out.state,
            reward: out.reward,
            terminated: out.terminated,
            truncated: false,
            info,
        }
    }

    fn action_space(&self) -> &BoxSpace {
        &self.action_space
    }

    fn observation_space(&self) -> &BoxSpace {
        &self.observation_space
    }

    fn render(&self, size: usize) -> Frame {
        Frame { size, pixels: render(&self.params, self.state, size) }
    }
}

impl ResetTo for CartPoleSwingUp {
    type State = [f64; 4];

    fn reset_to(&mut self, state: [f64; 4]) -> ([f64; 4], Info) {
        self.state = state;
        (self.state, Info::new())
    }
}

/// `CartPoleSwingUp-v0` as `gymnasium.make` builds it: a 1000-step time limit.
pub fn make() -> TimeLimit<CartPoleSwingUp> {
    TimeLimit::new(CartPoleSwingUp::default(), 1000)
}

/// Width of the world shown in a frame (m): the track ±x_threshold plus a pole length each side.
pub fn view_width(p: &CartPoleParams) -> f64 {
    view_width_drawn(p, PoleDrawing::Physical)
}

/// How the pole is drawn; the physics never changes.
///
/// At 32 px the physical pole of [`PoleDrawing::Physical`] is 3.2 px long, 1.6 px beyond the
/// cart's edge when horizontal, and the encoders did not learn which way it leans (R²(sin θ)
/// ≤ 0.10 at 32 px; README, section 8). [`PoleDrawing::Big`] draws it [`BIG_POLE_SCALE`]
/// times its length and [`BIG_POLE_WIDTH`] m wide, with the view widened so that the whole
/// swing stays in the frame: it is the renderer of `CartPoleSwingUpBigPole-v0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoleDrawing {
    /// The pole as long as it is ([`CartPoleParams::pole_length`]) and [`POLE_WIDTH`] wide.
    #[default]
    Physical,
    /// The pole [`BIG_POLE_SCALE`] times as long and [`BIG_POLE_WIDTH`] m wide.
    Big,
    /// [`PoleDrawing::Big`] plus a dimmer *ghost* of the pole ([`GHOST_SHADE`]) where the next
    /// step puts it: pivot at x + ẋ·dt, angle θ + θ̇·dt. The package's Euler step moves the
    /// positions with the old velocities, so the ghost is exactly the pole of the next frame and
    /// one frame holds what a stack of two consecutive frames holds (both velocities), while
    /// staying a function of the state. The renderer of `CartPoleSwingUpBigPoleGhost-v0`.
    BigGhost,
}

/// [`PoleDrawing::Big`]'s length factor.
pub const BIG_POLE_SCALE: f64 = 2.5;
/// [`PoleDrawing::Big`]'s width (m).
pub const BIG_POLE_WIDTH: f64 = 0.2;

impl PoleDrawing {
    /// Drawn length over physical length.
    pub fn length_scale(self) -> f64 {
        match self {
            Self::Physical => 1.0,
            Self::Big | Self::BigGhost => BIG_POLE_SCALE,
        }
    }

    /// Drawn width (m).
    pub fn width(self) -> f64 {
        match self {
            Self::Physical => POLE_WIDTH,
            Self::Big | Self::BigGhost => BIG_POLE_WIDTH,
        }
    }

    /// Whether the next step's pole is drawn too ([`PoleDrawing::BigGhost`]).
    pub fn ghost(self) -> bool {
        self == Self::BigGhost
    }
}

/// Width of the world shown in a frame (m) with the pole drawn as `drawing`: the track
/// ±x_threshold plus a drawn pole length each side.
pub fn view_width_drawn(p: &CartPoleParams, drawing: PoleDrawing) -> f64 {
    2.0 * (p.x_threshold + p.pole_length * drawing.length_scale())
}

/// Cart size drawn (m): width and height.
pub const CART_SIZE: [f64; 2] = [0.6, 0.3];
/// Pole width drawn (m). (Drawing it twice as wide, 0.3 m, was tried for learning from pixels and
/// did not help the encoders tell left from right; see the README, section 8.)
pub const POLE_WIDTH: f64 = 0.15;
/// Gray levels: track, cart, pole (the pole brightest, drawn over the cart).
pub const SHADES: [u8; 3] = [70, 150, 255];
/// Gray level of [`PoleDrawing::BigGhost`]'s ghost pole: between the track's and the cart's, drawn
/// under the cart and the pole.
pub const GHOST_SHADE: u8 = 110;

/// The frame of `state`, `size × size` grayscale, row-major, 0 = black: the track as a line
/// (at least one pixel) at the cart's height (row `size/2`), the cart as a rectangle, the pole as a
/// capsule from the pivot (the cart's centre) to its tip (θ = 0 up, counter-clockwise
/// positive). Coverage anti-aliasing with 4×4 sub-samples per pixel; each sub-sample takes the
/// brightest shape that covers it. The whole track must be visible, so the world is
/// [`view_width`] = 6 m wide: at 64 px the pole is 6.4 px long; 48–64 px frames suit learning.
pub fn render(p: &CartPoleParams, state: [f64; 4], size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size * size];
    render_into(p, state, size, &mut out);
    out
}

/// [`render`] into `out` (`size × size` bytes, every one written).
///
/// # Panics
/// If `out.len() != size²`.
pub fn render_into(p: &CartPoleParams, state: [f64; 4], size: usize, out: &mut [u8]) {
    render_drawn_into(p, PoleDrawing::Physical, state, size, out);
}

/// [`render_into`] with the pole drawn as `drawing`.
///
/// # Panics
/// If `out.len() != size²`.
pub fn render_drawn_into(
    p: &CartPoleParams,
    drawing: PoleDrawing,
    state: [f64; 4],
    size: usize,
    out: &mut [u8],
) {
    assert_eq!(out.len(), size * size, "the frame buffer must hold size² bytes");
    if size == 0 {
        return;
    }
    let [x, x_dot, theta, theta_dot] = state;
    let px_per_m = size as f64 / view_width_drawn(p, drawing);
    // The pivot's height is the centre of row size/2 (the track is one pixel row there).
    let (cx, cy) = (0.5 * size as f64 + x * px_per_m, (size / 2) as f64 + 0.5);
    let (hw, hh) = (0.5 * CART_SIZE[0] * px_per_m, 0.5 * CART_SIZE[1] * px_per_m);
    let track_half = (0.02 * px_per_m).max(0.5);
    let r = 0.5 * drawing.width() * px_per_m;
    let len = p.pole_length * drawing.length_scale() * px_per_m;
    let pole = Capsule::new(cx, cy, theta, len, r);
    // The next step's pole (PoleDrawing::BigGhost): positions advanced with the velocities.
    let ghost = drawing
        .ghost()
        .then(|| Capsule::new(cx + x_dot * p.dt * px_per_m, cy, theta + theta_dot * p.dt, len, r));
    let shade_at = |u: f64, v: f64| -> u8 {
        if pole.covers(u, v) {
            return SHADES[2];
        }
        if (u - cx).abs() <= hw && (v - cy).abs() <= hh {
            return SHADES[1];
        }
        if ghost.as_ref().is_some_and(|g| g.covers(u, v)) {
            return GHOST_SHADE;
        }
        if (v - cy).abs() <= track_half {
            return SHADES[0];
        }
        0
    };
    const K: usize = 4;
    for row in 0..size {
        for col in 0..size {
            let mut sum = 0u32;
            for i in 0..K {
                for j in 0..K {
                    let u = col as f64 + (j as f64 + 0.5) / K as f64;
                    let v = row as f64 + (i as f64 + 0.5) / K as f64;
                    sum += u32::from(shade_at(u, v));
                }
            }
            out[row * size + col] = ((sum as f64) / (K * K) as f64).round() as u8;
        }
    }
}

/// A pole drawn as a capsule of radius `r` (pixels) from a pivot to its tip.
struct Capsule {
    /// Pivot.
    c: (f64, f64),
    /// Tip minus pivot.
    d: (f64, f64),
    /// |d|².
    l2: f64,
    r2: f64,
}

impl Capsule {
    /// The pole with its pivot at pixel (cx, cy), at angle `theta` (0 up, counter-clockwise
    /// positive: up is −y in image rows, so the tip moves left), `len` pixels long.
    fn new(cx: f64, cy: f64, theta: f64, len: f64, r: f64) -> Self {
        // The tip first, then tip − pivot: the same rounding as the renderer always had.
        let (tx, ty) = (cx - len * theta.sin(), cy - len * theta.cos());
        let d = (tx - cx, ty - cy);
        Self { c: (cx, cy), d, l2: d.0 * d.0 + d.1 * d.1, r2: r * r }
    }

    /// Whether (u, v) is within `r` of the segment pivot–tip.
    fn covers(&self, u: f64, v: f64) -> bool {
        let ((cx, cy), (dx, dy)) = (self.c, self.d);
        let t = if self.l2 > 0.0 {
            (((u - cx) * dx + (v - cy) * dy) / self.l2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (qx, qy) = (cx + t * dx - u, cy + t * dy - v);
        qx * qx + qy * qy <= self.r2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed first step from hanging at rest with a = 0.5 (F = 5 N exactly in f32):
    /// s = sin π ≈ 1.22e-16, c = −1. ẍ = (≈0 + 4·5) / (4·1 − 3·0.5) = 20/2.5 = 8 (plus
    /// the 3 m_p g s c term of order 1e-15), θ̈ = (≈0 + 6·5·(−1)) / (4·0.6·1 − 3·0.3) =
    /// −30/1.5 = −20. Positions move with the old (zero) velocities.
    #[test]
    fn first_step_from_rest_by_hand() {
        let p = CartPoleParams::default();
        let out = step(&p, [0.0, 0.0, PI, 0.0], 0.5);
        assert_eq!(out.force, 5.0);
        let [x, xd, th, thd] = out.state;
        assert_eq!(x, 0.0);
        assert!((xd - 0.8).abs() < 1e-12, "{xd}");
        assert!((thd - -2.0).abs() < 1e-12, "{thd}");
        // θ = π wraps to −π (the floor modulo of Gymnasium's angle_normalize).
        assert_eq!(th, -PI);
        assert!((out.reward - -1.0).abs() < 1e-12);
        assert!(!out.terminated);
    }

    /// The force is computed in f32: for a = 0.3 numpy 2.4.6 gives `float(f32(0.3) * 10.0)` =
    /// 3.0 (the f32 product rounds to even), not the f64 product 3.0000001192092896 of f32(0.3)
    /// and 10 (what numpy 1's promotion gave); out-of-range actions clip.
    #[test]
    fn force_is_single_precision_and_clipped() {
        let p = CartPoleParams::default();
        assert_eq!(force(&p, 0.3), 3.0);
        assert_ne!(force(&p, 0.3), f64::from(0.3f32) * 10.0);
        assert_eq!(force(&p, 3.0), 10.0);
        assert_eq!(force(&p, -7.0), -10.0);
    }

    #[test]
    fn leaving_the_track_terminates() {
        let p = CartPoleParams::default();
        let out = step(&p, [2.39, 1.0, 0.0, 0.0], 1.0);
        assert!(out.terminated, "{:?}", out.state);
        assert!(!step(&p, [0.0, 1.0, 0.0, 0.0], 1.0).terminated);
    }

    #[test]
    fn env_resets_near_hanging_and_is_reproducible() {
        let mut env = CartPoleSwingUp::default();
        let (a, _) = env.reset(Some(3));
        let (b, _) = CartPoleSwingUp::default().reset(Some(3));
        assert_eq!(a, b);
        assert!((a[2] - PI).abs() < 0.3 && a[0].abs() < 0.3, "{a:?}");
        let s = env.step(&[0.2]);
        assert_eq!(s.obs, env.state());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100 {
            let [x, xd, th, thd] = sample_spread_state(&mut rng);
            assert!(x.abs() <= 1.5 && xd.abs() <= 1.0 && th.abs() <= PI && thd.abs() <= 3.0);
        }
    }

    /// The frame: the pole's tip is bright above the cart when upright and below when
    /// hanging; the cart moves with x; the middle row holds the track; nothing is drawn
    /// outside the shapes.
    #[test]
    fn render_draws_cart_pole_and_track() {
        let p = CartPoleParams::default();
        let s = 64;
        let up = render(&p, [0.0, 0.0, 0.0, 0.0], s);
        let down = render(&p, [0.0, 0.0, PI, 0.0], s);
        let px_per_m = s as f64 / view_width(&p);
        let tip_row = (32.0 - 0.9 * 0.6 * px_per_m) as usize;
        assert!(up[tip_row * s + 31].max(up[tip_row * s + 32]) > 128, "upright tip");
        assert_eq!(down[tip_row * s + 32], 0, "hanging pole is not above");
        let low_row = (32.0 + 0.9 * 0.6 * px_per_m) as usize;
        assert!(down[low_row * s + 31].max(down[low_row * s + 32]) > 128, "hanging tip");
        // Track at the left edge of the middle rows; black corners.
        assert!(up[32 * s + 1].max(up[31 * s + 1]) > 0);
        assert_eq!(up[0], 0);
        // The cart moves with x.
        let right = render(&p, [1.0, 0.0, 0.0, 0.0], s);
        let cart_col = (32.0 + 1.0 * px_per_m) as usize;
        assert!(right[32 * s + cart_col] >= SHADES[1], "cart at x = 1");
        assert!(up[32 * s + cart_col] < SHADES[1]);
        if std::env::var_os("EKVAE_SHOW_FRAME").is_some() {
            let f = render(&p, [-0.8, 0.0, 0.6, 0.0], 32);
            for row in f.chunks(32) {
                eprintln!(
                    "{}",
                    row.iter()
                        .map(|&v| b" .:-=+*#%@"[v as usize * 9 / 255] as char)
                        .collect::<String>()
                );
            }
        }
        // Anti-aliased: some intermediate gray levels on the pole's edges.
        assert!(up.iter().any(|&v| v > SHADES[1] && v < 255));
        assert!(render(&p, [0.0; 4], 0).is_empty());
    }

    /// The ghost drawing: at rest it is the big drawing byte for byte (the ghost lies under the
    /// pole); moving, every pixel fully covered by the next step's pole in the big drawing of
    /// the next state (and empty in this state's) shows the ghost's shade, and pixels empty in
    /// both stay black.
    #[test]
    fn the_ghost_is_the_next_steps_pole() {
        let p = CartPoleParams::default();
        let s = 64; // the pole 1.6 px wide: some pixels fully covered
        let draw = |d: PoleDrawing, st: [f64; 4]| {
            let mut f = vec![0u8; s * s];
            render_drawn_into(&p, d, st, s, &mut f);
            f
        };
        let rest = [0.4, 0.0, 2.0, 0.0];
        assert_eq!(draw(PoleDrawing::BigGhost, rest), draw(PoleDrawing::Big, rest));
        let mut checked = 0;
        for (state, a) in [([0.3, 1.5, 0.4, 6.0], 0.5), ([-1.0, -2.0, 2.5, -9.0], -1.0)] {
            let next = step(&p, state, a).state;
            let (now, ghost) = (draw(PoleDrawing::Big, state), draw(PoleDrawing::BigGhost, state));
            let then = draw(PoleDrawing::Big, next);
            assert_ne!(now, ghost);
            for i in 0..s * s {
                if now[i] == 0 && then[i] == SHADES[2] {
                    assert_eq!(ghost[i], GHOST_SHADE, "pixel {i} of {state:?}");
                    checked += 1;
                }
                if now[i] == 0 && then[i] == 0 {
                    assert_eq!(ghost[i], 0, "pixel {i} of {state:?}");
                }
                if now[i] == SHADES[2] {
                    assert_eq!(ghost[i], SHADES[2], "the pole stays on top");
                }
            }
        }
        assert!(checked >= 4, "only {checked} ghost pixels checked");
    }

    /// The big pole: the physical drawing is unchanged by the option (same bytes), the big
    /// one reaches 2.5 pole lengths in its wider view and the physical pole's tip row is
    /// covered, while at the same rows the physical drawing leaves it dark in that view.
    #[test]
    fn the_big_pole_is_drawn_longer_in_a_wider_view() {
        let p = CartPoleParams::default();
        let s = 32;
        let state = [0.3, 0.0, 0.4, 0.0];
        let mut a = vec![0u8; s * s];
        render_drawn_into(&p, PoleDrawing::Physical, state, s, &mut a);
        assert_eq!(a, render(&p, state, s));
        assert_eq!(view_width_drawn(&p, PoleDrawing::Big), 2.0 * (2.4 + 1.5));
        let mut big = vec![0u8; s * s];
        render_drawn_into(&p, PoleDrawing::Big, [0.0; 4], s, &mut big);
        let px_per_m = s as f64 / view_width_drawn(&p, PoleDrawing::Big);
        // Upright: the tip 1.5 m above the pivot (row 16.5), 0.9 of the way up.
        let row = (16.5 - 0.9 * 1.5 * px_per_m) as usize;
        // The pole straddles columns 15 and 16 (the pivot is at u = 16.0).
        let at = |r: usize| u32::from(big[r * s + 15]) + u32::from(big[r * s + 16]);
        assert!(at(row) > 128, "big pole's tip");
        assert_eq!(at(row - 3), 0, "nothing beyond the tip");
        // Its width: 0.2 m = 0.82 px. With 4 sub-samples per pixel and row the coverage of
        // the two columns is a multiple of 255/4 within half a pixel of 0.82 · 255 ≈ 209
        // (here 2 + 2 sub-samples: 256); the physical drawing's 0.15 m would be 0.62 px.
        let mid = (16.5 - 0.5 * 1.5 * px_per_m) as usize;
        let line = &big[mid * s..(mid + 1) * s];
        let lit = line.iter().filter(|&&v| v > 0).count();
        let sum = line.iter().map(|&v| u32::from(v)).sum::<u32>();
        assert!(lit == 2 && (128..=320).contains(&sum), "{lit} columns, coverage {sum}");
    }
}
