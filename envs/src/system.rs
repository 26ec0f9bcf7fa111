//! Systems and their registry: what the pipeline needs to know about an environment to collect a
//! dataset from it, identify a learned latent against its state and control it from its frames.
//!
//! A [`System`] is the pure, stateless side of an environment: its physics as a function of
//! (state, action), its renderer, the distribution of dataset starts, its identification
//! targets and the goal of its control task. The stateful Gymnasium-style [`Env`](crate::Env)s
//! of this crate are built on the same pure functions, so the physics exists once.
//!
//! A [`Registry`] maps Gymnasium-style ids (`Name-vN`) to systems. [`Registry::builtin`] holds
//! this workspace's two, `Pendulum-v1` and `CartPoleSwingUp-v0`; a user adds their own with
//! [`Registry::register`] and passes the registry to the pipeline's stages (see
//! `examples/custom_env.rs` in the workspace root).

use std::fmt;
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;

use crate::cartpole::{self, CartPoleParams, PoleDrawing};
use crate::collect::PolicySpec;
use crate::pendulum::{self, PendulumParams};
use crate::{Error, Result};

/// What one step of a [`System`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// The reward of the step (the environment's own, e.g. `Pendulum-v1`'s `−cost`).
    pub reward: f64,
    /// Whether the environment would end the episode here (a dataset keeps going: its episodes
    /// have a fixed length).
    pub terminated: bool,
}

/// A system the pipeline can collect from, identify and control. Implementations must be
/// deterministic: the same state and action give the same next state, reward and frame.
pub trait System: Send + Sync + fmt::Debug {
    /// Gymnasium-style id, `Name-vN` (e.g. `"Pendulum-v1"`).
    fn id(&self) -> &str;

    /// Names of the state coordinates, in the order of the dataset's `states` array.
    fn state_names(&self) -> Vec<String>;

    /// Lower and upper bounds of each action coordinate (the environment clips to them).
    fn action_bounds(&self) -> (Vec<f64>, Vec<f64>);

    /// The action dimension (the length of the bounds).
    fn action_dim(&self) -> usize {
        self.action_bounds().0.len()
    }

    /// Image channels of [`System::render_into`] (1: grayscale).
    fn channels(&self) -> usize {
        1
    }

    /// The physical parameters, for the dataset's metadata.
    fn params(&self) -> serde_json::Value;

    /// How frames are drawn, for the dataset's metadata.
    fn renderer(&self) -> serde_json::Value;

    /// How a dataset episode's start is drawn, in words (for the metadata).
    fn seeding(&self) -> String;

    /// Check the parameters (positive masses, finite steps, ...).
    fn check(&self) -> Result<()>;

    /// Draw a dataset episode's start into `state` (its length is the state dimension). Datasets
    /// for learning want starts spread over the whole state space.
    fn sample_state(&self, rng: &mut ChaCha8Rng, state: &mut [f64]);

    /// Apply `action` (unclipped; the system clips) to `state` in place.
    fn step(&self, state: &mut [f64], action: &[f64]) -> Outcome;

    /// Draw `state` into `out`: `size × size × channels` bytes, row-major, channels last.
    fn render_into(&self, state: &[f64], size: usize, out: &mut [u8]);

    /// Names of the identification targets (what a latent should hold linearly).
    fn feature_names(&self) -> Vec<String>;

    /// The identification targets of `state`, appended to `out` (e.g. cos θ, sin θ, θ̇).
    fn features(&self, state: &[f64], out: &mut Vec<f64>);

    /// The behaviour policy of a random-action dataset when the user names none.
    fn default_policy(&self) -> PolicySpec;

    /// The state coordinate that is an angle whose cos and sin are among the features, if any
    /// (open-loop prediction reports its error in degrees).
    fn angle_coordinate(&self) -> Option<usize> {
        None
    }

    /// The state the control task drives to and holds (e.g. upright at rest), if there is one.
    fn goal_state(&self) -> Option<Vec<f64>> {
        None
    }

    /// The environment's episode length (its Gymnasium time limit).
    fn time_limit(&self) -> usize;

    /// For the `capped:` dataset policy ([`PolicySpec::Capped`]): the energy of the system's
    /// swinging part in `state`, as the speed (rad/s) its angle would have at the bottom of
    /// the swing, and the action that takes that energy out fastest. `None` (the default) for
    /// a system without a swinging part.
    fn swing_brake(&self, state: &[f64]) -> Option<(f64, Vec<f64>)> {
        let _ = state;
        None
    }
}

/// `Pendulum-v1`: state `[θ, θ̇]`, one torque in [−2, 2]; [`crate::pendulum`] and
/// [`crate::render`].
#[derive(Debug, Clone, Default)]
pub struct PendulumSystem {
    /// The physical parameters.
    pub params: PendulumParams,
}

impl System for PendulumSystem {
    fn id(&self) -> &str {
        "Pendulum-v1"
    }

    fn state_names(&self) -> Vec<String> {
        vec!["theta".into(), "theta_dot".into()]
    }

    fn action_bounds(&self) -> (Vec<f64>, Vec<f64>) {
        (vec![-self.params.max_torque], vec![self.params.max_torque])
    }

    fn params(&self) -> serde_json::Value {
        serde_json::to_value(self.params).expect("plain numbers serialise")
    }

    fn renderer(&self) -> serde_json::Value {
        serde_json::json!({
            "rod_length": crate::render::ROD_LENGTH,
            "rod_width": crate::render::ROD_WIDTH,
            "orientation": "pivot at the image centre; theta=0 up, counter-clockwise positive (theta=pi/2 points left); white rod on black",
        })
    }

    fn seeding(&self) -> String {
        "episode i: ChaCha8Rng::seed_from_u64(seed) with stream i; draws theta~U(-pi,pi), thetadot~U(-1,1), then the policy's draws".into()
    }

    fn check(&self) -> Result<()> {
        let p = &self.params;
        positive(
            "pendulum parameter",
            &[
                ("g", p.g),
                ("m", p.m),
                ("l", p.l),
                ("dt", p.dt),
                ("max_speed", p.max_speed),
                ("max_torque", p.max_torque),
            ],
        )
    }

    fn sample_state(&self, rng: &mut ChaCha8Rng, state: &mut [f64]) {
        state.copy_from_slice(&pendulum::sample_initial_state(rng));
    }

    fn step(&self, state: &mut [f64], action: &[f64]) -> Outcome {
        let out = pendulum::step(&self.params, [state[0], state[1]], action[0]);
        state.copy_from_slice(&out.state);
        Outcome { reward: -out.cost, terminated: false }
    }

    fn render_into(&self, state: &[f64], size: usize, out: &mut [u8]) {
        crate::render::render_into(state[0], size, out);
    }

    fn feature_names(&self) -> Vec<String> {
        vec!["cos theta".into(), "sin theta".into(), "theta_dot".into()]
    }

    fn features(&self, state: &[f64], out: &mut Vec<f64>) {
        out.extend(pendulum::observation([state[0], state[1]]));
    }

    fn default_policy(&self) -> PolicySpec {
        PolicySpec::Uniform { low: -self.params.max_torque, high: self.params.max_torque }
    }

    fn angle_coordinate(&self) -> Option<usize> {
        Some(0)
    }

    fn goal_state(&self) -> Option<Vec<f64>> {
        Some(vec![0.0, 0.0])
    }

    fn time_limit(&self) -> usize {
        200
    }
}

/// `CartPoleSwingUp-v0`: state `[x, ẋ, θ, θ̇]`, one action in [−1, 1]; [`crate::cartpole`].
/// With [`PoleDrawing::Big`] it is `CartPoleSwingUpBigPole-v0`: the same physics, the pole
/// drawn longer and wider ([`CartPoleSystem::big_pole`]); with [`PoleDrawing::BigGhost`]
/// `CartPoleSwingUpBigPoleGhost-v0`, the big pole plus a ghost of the next step's pole
/// ([`CartPoleSystem::big_pole_ghost`]).
#[derive(Debug, Clone, Default)]
pub struct CartPoleSystem {
    /// The physical parameters.
    pub params: CartPoleParams,
    /// How the pole is drawn (it decides the id).
    pub drawing: PoleDrawing,
}

impl CartPoleSystem {
    /// Its registry id.
    pub const ID: &str = "CartPoleSwingUp-v0";
    /// The registry id of the big-pole drawing.
    pub const BIG_POLE_ID: &str = "CartPoleSwingUpBigPole-v0";
    /// The registry id of the big-pole drawing with the next step's ghost.
    pub const GHOST_ID: &str = "CartPoleSwingUpBigPoleGhost-v0";

    /// The default cart-pole drawn with [`PoleDrawing::Big`].
    pub fn big_pole() -> Self {
        Self { drawing: PoleDrawing::Big, ..Self::default() }
    }

    /// The default cart-pole drawn with [`PoleDrawing::BigGhost`].
    pub fn big_pole_ghost() -> Self {
        Self { drawing: PoleDrawing::BigGhost, ..Self::default() }
    }
}

impl System for CartPoleSystem {
    fn id(&self) -> &str {
        match self.drawing {
            PoleDrawing::Physical => Self::ID,
            PoleDrawing::Big => Self::BIG_POLE_ID,
            PoleDrawing::BigGhost => Self::GHOST_ID,
        }
    }

    fn state_names(&self) -> Vec<String> {
        vec!["x".into(), "x_dot".into(), "theta".into(), "theta_dot".into()]
    }

    fn action_bounds(&self) -> (Vec<f64>, Vec<f64>) {
        (vec![-1.0], vec![1.0])
    }

    fn params(&self) -> serde_json::Value {
        let p = &self.params;
        serde_json::json!({
            "gravity": p.gravity, "cart_mass": p.cart_mass, "pole_mass": p.pole_mass,
            "pole_length": p.pole_length, "force_mag": p.force_mag, "dt": p.dt,
            "friction": p.friction, "x_threshold": p.x_threshold,
        })
    }

    fn renderer(&self) -> serde_json::Value {
        let mut r = serde_json::json!({
            "view_width_m": cartpole::view_width_drawn(&self.params, self.drawing),
            "cart_size_m": cartpole::CART_SIZE,
            "pole_width_m": self.drawing.width(),
            "shades": cartpole::SHADES,
            "orientation": "track through the centre row; x to the right; theta=0 up, counter-clockwise positive; 4x4 sub-sample anti-aliasing",
        });
        if self.drawing != PoleDrawing::Physical {
            r["pole_drawn_length_scale"] = self.drawing.length_scale().into();
        }
        if self.drawing.ghost() {
            r["ghost"] = serde_json::json!({
                "shade": cartpole::GHOST_SHADE,
                "pose": "the pole of the next step: pivot at x + x_dot*dt, angle theta + theta_dot*dt, drawn under the cart and the pole",
            });
        }
        r
    }

    fn seeding(&self) -> String {
        "episode i: ChaCha8Rng::seed_from_u64(seed) with stream i; draws x~U(-1.5,1.5), x_dot~U(-1,1), theta~U(-pi,pi), theta_dot~U(-3,3), then the policy's draws".into()
    }

    fn check(&self) -> Result<()> {
        let p = &self.params;
        positive(
            "cart-pole parameter",
            &[
                ("gravity", p.gravity),
                ("cart_mass", p.cart_mass),
                ("pole_mass", p.pole_mass),
                ("pole_length", p.pole_length),
                ("force_mag", p.force_mag),
                ("dt", p.dt),
                ("x_threshold", p.x_threshold),
            ],
        )?;
        if !(p.friction.is_finite() && p.friction >= 0.0) {
            return Err(Error::InvalidArgument {
                what: "cart-pole parameter",
                reason: format!("friction = {}, must be finite and ≥ 0", p.friction),
            });
        }
        Ok(())
    }

    fn sample_state(&self, rng: &mut ChaCha8Rng, state: &mut [f64]) {
        state.copy_from_slice(&cartpole::sample_spread_state(rng));
    }

    fn step(&self, state: &mut [f64], action: &[f64]) -> Outcome {
        let out = cartpole::step(&self.params, [state[0], state[1], state[2], state[3]], action[0]);
        state.copy_from_slice(&out.state);
        Outcome { reward: out.reward, terminated: out.terminated }
    }

    fn render_into(&self, state: &[f64], size: usize, out: &mut [u8]) {
        let state = [state[0], state[1], state[2], state[3]];
        cartpole::render_drawn_into(&self.params, self.drawing, state, size, out);
    }

    fn feature_names(&self) -> Vec<String> {
        ["x", "cos theta", "sin theta", "x_dot", "theta_dot"].map(String::from).to_vec()
    }

    fn features(&self, state: &[f64], out: &mut Vec<f64>) {
        out.extend([state[0], state[2].cos(), state[2].sin(), state[1], state[3]]);
    }

    /// Uniform actions with a pull of the cart to the centre: with i.i.d. actions the cart
    /// leaves the 4.8 m track within a few seconds, so a dataset of fixed-length episodes would
    /// mostly show an empty track.
    fn default_policy(&self) -> PolicySpec {
        PolicySpec::Centring { low: -1.0, high: 1.0, kx: 0.2, kv: 0.2 }
    }

    fn angle_coordinate(&self) -> Option<usize> {
        Some(2)
    }

    fn goal_state(&self) -> Option<Vec<f64>> {
        Some(vec![0.0; 4])
    }

    fn time_limit(&self) -> usize {
        1000
    }

    fn swing_brake(&self, state: &[f64]) -> Option<(f64, Vec<f64>)> {
        let s: [f64; 4] = state.try_into().ok()?;
        Some((cartpole::swing_speed(&self.params, s), vec![cartpole::brake_action(s)]))
    }
}

fn positive(what: &'static str, values: &[(&str, f64)]) -> Result<()> {
    for &(name, v) in values {
        if !(v.is_finite() && v > 0.0) {
            return Err(Error::InvalidArgument {
                what,
                reason: format!("{name} = {v}, must be positive and finite"),
            });
        }
    }
    Ok(())
}

/// Environment ids to systems. Cheap to clone (the systems are shared).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    systems: Vec<Arc<dyn System>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// This workspace's environments, default parameters: `Pendulum-v1`, `CartPoleSwingUp-v0`
    /// `CartPoleSwingUpBigPole-v0` (the same cart-pole, its pole drawn larger) and
    /// `CartPoleSwingUpBigPoleGhost-v0` (drawn larger, with a ghost of the next step's pole).
    pub fn builtin() -> Self {
        let mut r = Self::new();
        r.register(Arc::new(PendulumSystem::default())).expect("a valid id");
        r.register(Arc::new(CartPoleSystem::default())).expect("a valid id");
        r.register(Arc::new(CartPoleSystem::big_pole())).expect("a valid id");
        r.register(Arc::new(CartPoleSystem::big_pole_ghost())).expect("a valid id");
        r
    }

    /// Add `system`. Its id must have the Gymnasium form `Name-vN` (letters, digits, `_`, `/`,
    /// `.` in the name) and be new to the registry, and its parameters must pass its check.
    pub fn register(&mut self, system: Arc<dyn System>) -> Result<()> {
        let id = system.id().to_string();
        check_id(&id)?;
        if self.systems.iter().any(|s| s.id() == id) {
            return Err(Error::InvalidArgument {
                what: "environment id",
                reason: format!("'{id}' is already registered"),
            });
        }
        system.check()?;
        if system.state_names().is_empty() || system.action_dim() == 0 {
            return Err(Error::InvalidArgument {
                what: "environment",
                reason: format!("'{id}' must have at least one state and one action coordinate"),
            });
        }
        self.systems.push(system);
        Ok(())
    }

    /// The system registered as `id`, or an error listing the known ids.
    pub fn get(&self, id: &str) -> Result<Arc<dyn System>> {
        self.systems.iter().find(|s| s.id() == id).cloned().ok_or_else(|| Error::InvalidArgument {
            what: "environment id",
            reason: format!("'{id}' is not registered; known: {}", self.ids().join(", ")),
        })
    }

    /// The registered ids, in registration order.
    pub fn ids(&self) -> Vec<String> {
        self.systems.iter().map(|s| s.id().to_string()).collect()
    }
}

/// Check that `id` has Gymnasium's form `[namespace/]Name-vN`.
pub fn check_id(id: &str) -> Result<()> {
    let bad = || Error::InvalidArgument {
        what: "environment id",
        reason: format!(
            "'{id}' is not of the form Name-vN (e.g. Pendulum-v1; letters, digits, '_', '.', '/' in the name)"
        ),
    };
    let (name, version) = id.rsplit_once("-v").ok_or_else(bad)?;
    let name_ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'));
    let version_ok = !version.is_empty() && version.chars().all(|c| c.is_ascii_digit());
    if name_ok && version_ok { Ok(()) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ids_have_the_gymnasium_form() {
        for good in ["Pendulum-v1", "CartPoleSwingUp-v0", "ekvae/PixelPendulum-v0", "A_b.c-v12"] {
            check_id(good).unwrap();
        }
        for bad in ["", "Pendulum", "Pendulum-v", "-v1", "Pendulum-vx", "Pend ulum-v1", "P-v1 "] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_registry_finds_refuses_and_lists() {
        let mut r = Registry::builtin();
        assert_eq!(
            r.ids(),
            [
                "Pendulum-v1",
                "CartPoleSwingUp-v0",
                "CartPoleSwingUpBigPole-v0",
                "CartPoleSwingUpBigPoleGhost-v0"
            ]
        );
        assert_eq!(r.get("CartPoleSwingUp-v0").unwrap().state_names().len(), 4);
        let e = r.get("Pendulum-v0").unwrap_err().to_string();
        assert!(e.contains("not registered") && e.contains("Pendulum-v1"), "{e}");
        assert!(r.register(Arc::new(PendulumSystem::default())).is_err(), "duplicate");
        let broken = PendulumSystem { params: PendulumParams { dt: -1.0, ..Default::default() } };
        // A second pendulum under the same id is a duplicate; a fresh registry checks params.
        let mut fresh = Registry::new();
        assert!(fresh.register(Arc::new(broken)).is_err());
        assert!(fresh.ids().is_empty());
    }

    /// The systems step exactly as the pure physics they wrap.
    #[test]
    fn systems_step_as_their_physics() {
        let p = PendulumSystem::default();
        let mut s = [0.3, -0.2];
        let o = p.step(&mut s, &[5.0]);
        let want = pendulum::step(&PendulumParams::default(), [0.3, -0.2], 5.0);
        assert_eq!(s, want.state);
        assert_eq!(o.reward, -want.cost);
        let c = CartPoleSystem::default();
        let mut s = [0.1, 0.2, 3.0, -1.0];
        let o = c.step(&mut s, &[0.7]);
        let want = cartpole::step(&CartPoleParams::default(), [0.1, 0.2, 3.0, -1.0], 0.7);
        assert_eq!(s, want.state);
        assert_eq!((o.reward, o.terminated), (want.reward, want.terminated));
        let mut f = Vec::new();
        c.features(&s, &mut f);
        assert_eq!(f.len(), c.feature_names().len());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut st = [0.0; 4];
        c.sample_state(&mut rng, &mut st);
        assert!(st[0].abs() <= 1.5 && st[3].abs() <= 3.0);
    }

    /// The big-pole cart-pole: its own id, the same physics, another frame; the renderer's
    /// record says how it draws (the physical one's record has no scale key, as before).
    #[test]
    fn the_big_pole_variant_shares_the_physics_not_the_frames() {
        let (c, b) = (CartPoleSystem::default(), CartPoleSystem::big_pole());
        assert_eq!((c.id(), b.id()), (CartPoleSystem::ID, CartPoleSystem::BIG_POLE_ID));
        let (mut s, mut t) = ([0.1, 0.2, 3.0, -1.0], [0.1, 0.2, 3.0, -1.0]);
        assert_eq!(c.step(&mut s, &[0.4]), b.step(&mut t, &[0.4]));
        assert_eq!(s, t);
        let (mut f, mut g) = (vec![0u8; 32 * 32], vec![0u8; 32 * 32]);
        c.render_into(&s, 32, &mut f);
        b.render_into(&s, 32, &mut g);
        assert_ne!(f, g);
        assert_eq!(b.renderer()["pole_drawn_length_scale"], 2.5);
        assert_eq!(b.renderer()["view_width_m"], 7.8);
        assert!(c.renderer().get("pole_drawn_length_scale").is_none());
        assert_eq!(c.renderer()["view_width_m"], 6.0);
        assert_eq!(c.params(), b.params());
    }
}
