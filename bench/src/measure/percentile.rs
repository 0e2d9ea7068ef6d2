//! Percentiles of sorted durations.

use std::time::Duration;

/// The `p` (0..=1) percentile of `sorted` (ascending): the nearest rank,
/// no interpolation; zero for no values.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn nearest_rank() {
        let ten = ms(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        // Rank (10 - 1) x 0.5 = 4.5 rounds to 5: the 6th value.
        assert_eq!(percentile(&ten, 0.5), Duration::from_millis(6));
        assert_eq!(percentile(&ten, 0.9), Duration::from_millis(9));
        assert_eq!(percentile(&ten, 0.0), Duration::from_millis(1));
        assert_eq!(percentile(&ten, 1.0), Duration::from_millis(10));
        assert_eq!(percentile(&ms(&[4, 8, 15]), 0.5), Duration::from_millis(8));
        assert_eq!(percentile(&ms(&[42]), 0.9), Duration::from_millis(42));
    }

    #[test]
    fn no_values_is_zero() {
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
