//! Gymnasium's `Box` space: a product of closed intervals `[low_i, high_i]` with a shape.
//!
//! Sampling follows Gymnasium for bounded boxes (uniform in `[low, high)` per coordinate) but uses
//! its own portable uniform generator ([`uniform`]) so that a seed gives the same samples on every
//! machine and with every version of `rand`.

use crate::{Error, Result};
use rand::Rng;

/// A box `[low_0, high_0] × … × [low_{n-1}, high_{n-1}]`, with a shape (row-major) for its elements.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxSpace {
    low: Vec<f64>,
    high: Vec<f64>,
    shape: Vec<usize>,
}

impl BoxSpace {
    /// A box with per-coordinate bounds and a shape whose product is the number of coordinates.
    ///
    /// Errors if the lengths disagree, a bound is NaN, or `low_i > high_i`.
    pub fn new(low: Vec<f64>, high: Vec<f64>, shape: Vec<usize>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if low.len() != n || high.len() != n {
            return Err(Error::InvalidArgument {
                what: "box bounds",
                reason: format!(
                    "shape {shape:?} has {n} elements but low has {} and high has {}",
                    low.len(),
                    high.len()
                ),
            });
        }
        if let Some(i) = (0..n).find(|&i| low[i].is_nan() || high[i].is_nan() || low[i] > high[i])
        {
            return Err(Error::InvalidArgument {
                what: "box bounds",
                reason: format!("coordinate {i}: need low <= high, got [{}, {}]", low[i], high[i]),
            });
        }
        Ok(Self { low, high, shape })
    }

    /// The same bounds `[low, high]` for every element of `shape`.
    pub fn uniform_bounds(low: f64, high: f64, shape: Vec<usize>) -> Result<Self> {
        let n = shape.iter().product();
        Self::new(vec![low; n], vec![high; n], shape)
    }

    /// Lower bounds, one per element.
    pub fn low(&self) -> &[f64] {
        &self.low
    }

    /// Upper bounds, one per element.
    pub fn high(&self) -> &[f64] {
        &self.high
    }

    /// The shape of an element of the space.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of coordinates (product of the shape).
    pub fn len(&self) -> usize {
        self.low.len()
    }

    /// Whether the space has no coordinates.
    pub fn is_empty(&self) -> bool {
        self.low.is_empty()
    }

    /// A uniform sample, coordinate by coordinate in `[low_i, high_i)` (exactly `low_i` where the
    /// interval is a point). Infinite bounds are not sampled from: such a coordinate gets `low_i`
    /// if it is finite, else `high_i` if finite, else 0 (Gymnasium samples a normal/exponential
    /// there; none of the spaces in this crate is unbounded).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f64> {
        self.low
            .iter()
            .zip(&self.high)
            .map(|(&lo, &hi)| match (lo.is_finite(), hi.is_finite()) {
                (true, true) => uniform(rng, lo, hi),
                (true, false) => lo,
                (false, true) => hi,
                (false, false) => 0.0,
            })
            .collect()
    }

    /// Whether `x` has the right length and every coordinate lies in its closed interval.
    pub fn contains(&self, x: &[f64]) -> bool {
        x.len() == self.len()
            && x.iter().zip(&self.low).zip(&self.high).all(|((&v, &lo), &hi)| lo <= v && v <= hi)
    }
}

/// A uniform `f64` in `[low, high)` from one `u64` of `rng`: `low + (high − low)·k·2⁻⁵³`
/// with `k` the top 53 bits. Portable by construction (no platform or library dependence).
#[inline]
pub fn uniform<R: Rng + ?Sized>(rng: &mut R, low: f64, high: f64) -> f64 {
    let unit = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    low + (high - low) * unit
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn samples_lie_inside_and_are_seeded() {
        let s = BoxSpace::new(vec![-2.0, 0.0], vec![2.0, 0.0], vec![2]).unwrap();
        let mut a = ChaCha8Rng::seed_from_u64(7);
        let mut b = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..1000 {
            let x = s.sample(&mut a);
            assert!(s.contains(&x), "{x:?}");
            assert_eq!(x[1], 0.0);
            assert_eq!(x, s.sample(&mut b));
        }
        let mut c = ChaCha8Rng::seed_from_u64(8);
        assert_ne!(s.sample(&mut a), s.sample(&mut c));
    }

    #[test]
    fn contains_checks_bounds_and_length() {
        let s = BoxSpace::uniform_bounds(-1.0, 1.0, vec![1]).unwrap();
        assert!(s.contains(&[1.0]));
        assert!(s.contains(&[-1.0]));
        assert!(!s.contains(&[1.0000001]));
        assert!(!s.contains(&[f64::NAN]));
        assert!(!s.contains(&[0.0, 0.0]));
    }

    #[test]
    fn rejects_bad_bounds() {
        assert!(BoxSpace::new(vec![1.0], vec![0.0], vec![1]).is_err());
        assert!(BoxSpace::new(vec![0.0], vec![1.0], vec![2]).is_err());
        assert!(BoxSpace::new(vec![f64::NAN], vec![1.0], vec![1]).is_err());
    }

    #[test]
    fn uniform_mean_and_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| uniform(&mut rng, -2.0, 2.0)).collect();
        assert!(xs.iter().all(|&x| (-2.0..2.0).contains(&x)));
        let mean = xs.iter().sum::<f64>() / n as f64;
        // Standard error of the mean is 4/sqrt(12 n) ≈ 0.0037; 5 sigma.
        assert!(mean.abs() < 0.02, "mean {mean}");
    }
}
