//! Summaries of benchmark samples.

/// The median of `samples` (the mean of the middle two for an even count); NaN when there are none.
///
/// ```
/// assert_eq!(dbops_common::stats::median(&[3.0, 1.0, 2.0]), 2.0);
/// assert_eq!(dbops_common::stats::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
/// ```
pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_samples_have_no_median() {
        assert!(median(&[]).is_nan());
    }
}
