//! The one angle wrap of the workspace.

use std::f64::consts::{PI, TAU};

/// Gymnasium's `angle_normalize`: `((x + π) mod 2π) − π` with a floor modulo, in `[−π, π)`
/// (so π maps to −π).
///
/// Bit for bit what Gymnasium's Pendulum-v1 computes (NumPy's `%` is a floor modulo, like
/// [`f64::rem_euclid`] for a positive divisor; `TAU` is exactly `2.0 * PI`): the pendulum's cost,
/// the planner's cost, the success criterion and the angle errors all wrap with it.
#[inline]
pub fn angle_normalize(x: f64) -> f64 {
    (x + PI).rem_euclid(TAU) - PI
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values by hand from the definition `((x + π) mod 2π) − π`, floor modulo.
    #[test]
    fn angle_normalize_is_floor_modulo() {
        assert_eq!(angle_normalize(0.0), 0.0);
        // π + π = 2π, 2π mod 2π = 0, 0 − π = −π: the interval is [−π, π).
        assert_eq!(angle_normalize(PI), -PI);
        assert_eq!(angle_normalize(-PI), -PI);
        // 3π/2 is a quarter turn short of a full turn: −π/2; and −3π/2 ↦ π/2.
        assert!((angle_normalize(3.0 * PI / 2.0) + PI / 2.0).abs() < 1e-12);
        assert!((angle_normalize(-3.0 * PI / 2.0) - PI / 2.0).abs() < 1e-12);
        // Whole turns vanish: 0.3 + 4π ↦ 0.3, −0.3 − 6π ↦ −0.3.
        assert!((angle_normalize(0.3 + 4.0 * PI) - 0.3).abs() < 1e-12);
        assert!((angle_normalize(-0.3 - 6.0 * PI) + 0.3).abs() < 1e-12);
        // Inside [−π, π) nothing moves (up to the rounding of x + π − π).
        for i in -30..30 {
            let x = i as f64 * 0.1;
            assert!((angle_normalize(x) - x).abs() < 1e-14, "{x}");
        }
        for i in -200..200 {
            let w = angle_normalize(i as f64 * 0.731);
            assert!((-PI..PI).contains(&w), "{w}");
        }
    }

    /// The floor modulo written out the way Gymnasium writes it, `x − 2π·⌊x / 2π⌋` on
    /// `x + π`, agrees (to rounding) on both signs.
    #[test]
    fn agrees_with_the_floor_formula() {
        for i in -100..100 {
            let x = i as f64 * 0.37 + 0.05;
            let y = x + PI;
            let floor_mod = y - TAU * (y / TAU).floor();
            assert!((angle_normalize(x) - (floor_mod - PI)).abs() < 1e-12, "{x}");
        }
    }
}
