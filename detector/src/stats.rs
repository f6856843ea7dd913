//! Small statistics used by the share tests: normal tail probabilities, robust location and
//! scale, and Benjamini–Hochberg.

/// `erfc(x)` with fractional error below 1.2e-7 everywhere (Chebyshev fit, after Numerical
/// Recipes' `erfcc`), accurate in the far tail where p-values of 1e-12 still compare correctly.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Two-sided p-value of a standard normal score.
pub fn two_sided_p(z: f64) -> f64 {
    if !z.is_finite() {
        return 0.0;
    }
    erfc(z.abs() / std::f64::consts::SQRT_2).clamp(0.0, 1.0)
}

/// Median of `values` (reordered in place); 0 for an empty slice.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Median absolute deviation from `center`.
pub fn mad(values: &[f64], center: f64) -> f64 {
    let mut dev: Vec<f64> = values.iter().map(|v| (v - center).abs()).collect();
    median(&mut dev)
}

/// Consistency factor that turns a MAD into a standard deviation for normal data.
pub const MAD_TO_SD: f64 = 1.4826;

/// Benjamini–Hochberg at level `q`: the largest p-value that is still rejected, or `None`
/// when nothing is. `p_values` need not be sorted.
pub fn bh_threshold(p_values: &[f64], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = p_values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let m = sorted.len() as f64;
    let mut cut = None;
    for (i, p) in sorted.iter().enumerate() {
        if *p <= (i as f64 + 1.0) / m * q {
            cut = Some(*p);
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_tails_match_tables() {
        assert!((two_sided_p(1.959_964) - 0.05).abs() < 1e-6);
        assert!((two_sided_p(2.575_829) - 0.01).abs() < 1e-6);
        // 5 sigma: 5.733e-7; 8 sigma: 1.244e-15 (relative accuracy matters here).
        assert!((two_sided_p(5.0) / 5.733_031e-7 - 1.0).abs() < 1e-5);
        assert!((two_sided_p(8.0) / 1.244_192e-15 - 1.0).abs() < 1e-5);
        assert_eq!(two_sided_p(0.0), 1.0);
        assert_eq!(two_sided_p(-3.0), two_sided_p(3.0));
    }

    #[test]
    fn median_and_mad() {
        let mut v = vec![3.0, 1.0, 2.0, 100.0];
        assert_eq!(median(&mut v), 2.5);
        assert_eq!(mad(&[1.0, 2.0, 3.0, 4.0, 100.0], 3.0), 1.0);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn bh_rejects_the_step_up_set() {
        // m = 4, q = 0.05: thresholds 0.0125, 0.025, 0.0375, 0.05.
        assert_eq!(bh_threshold(&[0.01, 0.03, 0.2, 0.02], 0.05), Some(0.03));
        assert_eq!(bh_threshold(&[0.02, 0.5], 0.01), None);
        // Step-up: the 3rd passes, so the 2nd is rejected though it misses its own threshold.
        assert_eq!(bh_threshold(&[0.001, 0.04, 0.0374], 0.05), Some(0.04));
    }
}
