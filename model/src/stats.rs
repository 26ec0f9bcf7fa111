//! Statistics for comparing training recipes whose outcome is two-mode (a run learns the ring
//! or folds): binomial confidence intervals and Fisher's exact test, plus the summaries the
//! reproduction table reports (mean ± sample standard deviation, median).

/// The 97.5 % quantile of the standard normal, for 95 % two-sided intervals.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval for `k` successes in `n` trials at normal quantile `z`, clamped to
/// [0, 1]. (NaN, NaN) for `n = 0`.
pub fn wilson_interval(k: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 || k > n {
        return (f64::NAN, f64::NAN);
    }
    let (k, n) = (k as f64, n as f64);
    let z2 = z * z;
    let centre = (k + z2 / 2.0) / (n + z2);
    let half = z / (n + z2) * (k * (n - k) / n + z2 / 4.0).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Two-sided Fisher exact test of the 2×2 table [[a, b], [c, d]] (rows: arms; columns:
/// successes, failures): the total probability, under the hypergeometric null with the
/// margins fixed, of the tables no more likely than the observed one (the convention of
/// R's `fisher.test` and SciPy's `fisher_exact`, with a relative tolerance of 1e-7).
pub fn fisher_exact(a: usize, b: usize, c: usize, d: usize) -> f64 {
    let (r1, c1, n) = (a + b, a + c, a + b + c + d);
    if n == 0 {
        return 1.0;
    }
    let ln_fact = |m: usize| (1..=m).map(|i| (i as f64).ln()).sum::<f64>();
    let ln_choose = |m: usize, k: usize| ln_fact(m) - ln_fact(k) - ln_fact(m - k);
    let ln_total = ln_choose(n, c1);
    let p = |x: usize| (ln_choose(r1, x) + ln_choose(n - r1, c1 - x) - ln_total).exp();
    let observed = p(a);
    let lo = c1.saturating_sub(n - r1);
    let hi = r1.min(c1);
    let sum: f64 = (lo..=hi).map(p).filter(|&q| q <= observed * (1.0 + 1e-7)).sum();
    sum.min(1.0)
}

/// Mean and sample standard deviation (n − 1); NaN std for fewer than two values, (NaN, NaN)
/// for none.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Median (the mean of the two middle values for an even count); NaN for none. NaN values
/// sort last.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|x, y| x.total_cmp(y));
    let m = s.len() / 2;
    if s.len() % 2 == 1 { s[m] } else { (s[m - 1] + s[m]) / 2.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_hand_computed_values() {
        // Reference values from the closed form in Python (math.sqrt, z = 1.959963984540054).
        let (lo, hi) = wilson_interval(9, 10, Z95);
        assert!(
            (lo - 0.595_849_973_204_761_5).abs() < 1e-12
                && (hi - 0.982_123_786_904_927).abs() < 1e-12
        );
        let (lo, hi) = wilson_interval(2, 5, Z95);
        assert!(
            (lo - 0.117_620_774_232_647_94).abs() < 1e-12
                && (hi - 0.769_275_718_723_987).abs() < 1e-12
        );
        let (lo, hi) = wilson_interval(0, 10, Z95);
        assert!(lo == 0.0 && (hi - 0.277_532_799_862_889_26).abs() < 1e-12);
        let (lo, hi) = wilson_interval(20, 20, Z95);
        assert!((lo - 0.838_874_841_947_180_8).abs() < 1e-12 && hi == 1.0);
        assert!(wilson_interval(0, 0, Z95).0.is_nan());
    }

    #[test]
    fn fisher_matches_reference_values() {
        // References: the sum of hypergeometric probabilities ≤ the observed one, computed in
        // Python with exact integer binomials (math.comb); [[6, 2], [1, 4]] is also SciPy's
        // documented example (p = 0.10256410256410256).
        assert!((fisher_exact(6, 2, 1, 4) - 0.102_564_102_564_102_56).abs() < 1e-12);
        assert!((fisher_exact(1, 9, 11, 3) - 0.002_759_456_185_220_083).abs() < 1e-12);
        assert!((fisher_exact(10, 0, 0, 10) - 1.082_508_822_446_903e-5).abs() < 1e-15);
        assert!((fisher_exact(18, 2, 9, 11) - 0.005_735_673_700_078_595).abs() < 1e-12);
        // 2/5 against 3/5: p = 1 (the old grid could not separate the arms).
        assert!((fisher_exact(2, 3, 3, 2) - 1.0).abs() < 1e-12);
        // Symmetric in the arms.
        assert!((fisher_exact(11, 3, 1, 9) - fisher_exact(1, 9, 11, 3)).abs() < 1e-15);
        assert_eq!(fisher_exact(0, 0, 0, 0), 1.0);
    }

    #[test]
    fn summaries() {
        // By hand: mean 5, squared deviations 9+1+1+9 = 20, /(n−1)=3 → std √(20/3).
        let (m, s) = mean_std(&[2.0, 4.0, 6.0, 8.0]);
        assert!((m - 5.0).abs() < 1e-12 && (s - (20.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!(mean_std(&[1.0]).1.is_nan());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
