//! `db-test --partition K/N`: the shards of a suite, with nextest and with `--runner cargo`, run
//! every test of the whole suite exactly once between them, on a real test cluster.

mod support;

use std::collections::BTreeSet;

use support::{Project, Run};

/// A small crate's tests, so that the nested runs stay short and never run these tests again.
const NEXTEST_SELECTION: &[&str] = &["-E", "package(dbops-common)"];
const CARGO_SELECTION: &[&str] = &["-p", "dbops-common"];

/// The tests a run reports as passed: nextest's `PASS [...] (i/n) <binary> <test>` lines and
/// libtest's `test <name> ... ok` lines, as `binary test` or `test`.
fn passed(run: &Run) -> BTreeSet<String> {
    run.all()
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("PASS [") {
                let after_counter = rest.split_once(") ")?.1;
                return Some(after_counter.trim().to_owned());
            }
            line.strip_prefix("test ")?
                .strip_suffix(" ... ok")
                .map(str::to_owned)
        })
        .collect()
}

/// Runs the whole selection, then each of `total` shards of it, and checks that the shards split
/// the whole into disjoint, non-empty parts.
fn shards_cover_the_suite_once(project: &Project, runner: &[&str], selection: &[&str], total: u32) {
    let db_test = |partition: Option<String>| -> Run {
        let mut args = vec!["db-test"];
        args.extend(runner);
        if let Some(partition) = &partition {
            args.extend(["--partition", partition.as_str()]);
        }
        args.push("--");
        args.extend(selection);
        let run = project.xtask(&args);
        run.assert_success();
        run
    };
    let whole = passed(&db_test(None));
    assert!(
        whole.len() >= 10,
        "the selection ran too few tests: {whole:?}"
    );
    let mut union = BTreeSet::new();
    for shard in 1..=total {
        let run = db_test(Some(format!("{shard}/{total}")));
        let part = passed(&run);
        assert!(
            !part.is_empty(),
            "shard {shard}/{total} ran nothing:\n{}",
            run.all()
        );
        for test in part {
            assert!(union.insert(test.clone()), "{test} ran in two shards");
        }
    }
    assert_eq!(union, whole, "the shards together are not the whole suite");
}

#[test]
fn shards_split_the_suite_with_nextest_and_with_cargo_test() {
    if std::env::var_os("XTASK_NESTED_TEST_RUN").is_some() {
        eprintln!(
            "SKIPPED shards_split_the_suite: already inside a db-test run started by these tests"
        );
        return;
    }
    let Some(project) = Project::local() else {
        return;
    };
    let project = project.set_env("XTASK_NESTED_TEST_RUN", "1");
    shards_cover_the_suite_once(&project, &["--runner", "cargo"], CARGO_SELECTION, 2);
    let nextest = std::process::Command::new("cargo")
        .args(["nextest", "--version"])
        .output();
    if nextest.is_ok_and(|o| o.status.success()) {
        shards_cover_the_suite_once(&project, &["--runner", "nextest"], NEXTEST_SELECTION, 2);
    } else {
        eprintln!(
            "SKIPPED the nextest half of shards_split_the_suite: cargo-nextest is not installed"
        );
    }
}

#[test]
fn a_bad_partition_is_one_line_saying_how_to_write_it() {
    let project = Project::isolated();
    for bad in ["0/2", "3/2", "half"] {
        let run = project.xtask(&["db-test", "--partition", bad]);
        run.assert_one_line_error("K/N");
    }
}
