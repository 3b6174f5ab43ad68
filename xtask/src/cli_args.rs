//! Parsers for the values of command-line flags, with one-line errors for bad values.

use std::time::Duration;

/// The longest `--timeout`: a day is more than any start needs, and a deadline this far away
/// cannot overflow the clock.
const MAX_TIMEOUT_SECS: u64 = 86_400;

/// Parses `--timeout` values: whole seconds.
pub fn parse_seconds(raw: &str) -> Result<Duration, String> {
    let seconds = raw
        .parse::<u64>()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("{raw:?} is not a positive number of seconds"))?;
    if seconds > MAX_TIMEOUT_SECS {
        return Err(format!(
            "{raw} seconds is too long: use at most {MAX_TIMEOUT_SECS} (a day)"
        ));
    }
    Ok(Duration::from_secs(seconds))
}

/// Parses `--steps` values with a one-line error for zero and negative numbers.
pub fn parse_steps(raw: &str) -> Result<u32, String> {
    raw.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{raw:?} is not a positive whole number of migrations"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(parse_seconds("60"), Ok(Duration::from_secs(60)));
        for bad in ["0", "-1", "18446744073709551615", "86401", "x"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn steps_must_be_positive() {
        assert_eq!(parse_steps("3"), Ok(3));
        for bad in ["0", "-1", "two", ""] {
            assert!(parse_steps(bad).is_err(), "{bad}");
        }
    }
}
