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

/// `--partition K/N`: shard `K` of `N` (1-based) of a test suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub shard: u32,
    pub total: u32,
}

impl Partition {
    /// nextest's own partitioning, by a hash of each test's binary and name: a test stays in its
    /// shard whatever other tests are added or removed.
    pub fn nextest_arg(&self) -> String {
        format!("hash:{}/{}", self.shard, self.total)
    }

    /// Whether this shard runs test `test` of the test binary `binary`, by the same kind of
    /// stable hash (FNV-1a), for runs without nextest.
    pub fn owns(&self, binary: &str, test: &str) -> bool {
        use dbops_common::fnv::{FNV_OFFSET_BASIS, fnv1a};
        let hash = [binary.as_bytes(), b"\0", test.as_bytes()]
            .iter()
            .fold(FNV_OFFSET_BASIS, |hash, part| fnv1a(hash, part));
        hash % u64::from(self.total) == u64::from(self.shard - 1)
    }

    /// Doc tests are not split: the first shard runs them all.
    pub fn runs_doc_tests(&self) -> bool {
        self.shard == 1
    }
}

/// Parses `--partition K/N`, with a one-line error for anything but `1 <= K <= N`.
pub fn parse_partition(raw: &str) -> Result<Partition, String> {
    let bad = || format!("{raw:?} is not a shard: write K/N with 1 <= K <= N, such as 2/4");
    let (shard, total) = raw.split_once('/').ok_or_else(bad)?;
    let number = |part: &str| part.trim().parse::<u32>().ok().filter(|n| *n > 0);
    match (number(shard), number(total)) {
        (Some(shard), Some(total)) if shard <= total => Ok(Partition { shard, total }),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_one_based_and_within_their_total() {
        assert_eq!(parse_partition("2/4"), Ok(Partition { shard: 2, total: 4 }));
        assert_eq!(
            parse_partition("1/1").map(|p| p.nextest_arg()),
            Ok("hash:1/1".into())
        );
        for bad in ["0/4", "5/4", "1/0", "2", "a/b", "-1/2", "1/2/3", ""] {
            let error = parse_partition(bad).unwrap_err();
            assert!(error.contains("K/N"), "{bad}: {error}");
        }
    }

    #[test]
    fn every_test_is_in_exactly_one_shard_and_stays_there() {
        let tests: Vec<String> = (0..200).map(|i| format!("module::test_{i}")).collect();
        for total in [1, 2, 3, 4] {
            let shards: Vec<Partition> = (1..=total)
                .map(|shard| Partition { shard, total })
                .collect();
            for test in &tests {
                let owners = shards
                    .iter()
                    .filter(|p| p.owns("db::projects_crud", test))
                    .count();
                assert_eq!(owners, 1, "{test} in {owners} of {total} shards");
            }
            // No shard is left empty by the hash (200 tests over at most 4 shards).
            for shard in &shards {
                assert!(
                    tests.iter().any(|t| shard.owns("db::projects_crud", t)),
                    "{shard:?}"
                );
            }
        }
        // The shard of a test is fixed by its names alone, on every machine and in every
        // release (values from an independent FNV-1a): a test does not move between CI's jobs.
        for (test, shard) in [
            ("a_new_project_is_stored", 4),
            ("listing_pages", 2),
            ("x", 3),
        ] {
            assert!(
                Partition { shard, total: 4 }.owns("db::projects_crud", test),
                "{test}"
            );
        }
    }

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
