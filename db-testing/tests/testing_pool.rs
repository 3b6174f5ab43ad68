//! Checks the pool of ready clones and cleanup of `db_testing`, each test under a base name of its own process, so that two runs at once (two clones, or one clone twice) never meet.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Barrier};

use common::{
    KEPT_DATABASE_COMMENT, admin, applied_migrations, count, database_exists,
    databases_with_prefix, isolated_base, isolated_template, pool_entries, run_testdb,
    run_testdb_with_pool_size, url_for_database,
};
use db_testing::{TestDb, TestTemplate};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, Value};

const POOL_PROBE_TEST: &str = "pool_probe_claims_one_database";
const POOL_PROBE_MARKER: &str = "pool probe: ";

#[tokio::test]
async fn cleanup_drops_idle_test_databases_but_spares_busy_and_kept_ones() {
    // A base of its own, so this cleanup cannot touch databases of tests running alongside.
    let base = isolated_base("cleanup").await;
    let admin = admin().await;
    let probe_url = url_for_database(&base);
    // Named like test databases, but without an owner token: what older versions left behind.
    let stale = format!("{base}_test_stale");
    let busy = format!("{base}_test_busy");
    let kept = format!("{base}_test_kept");

    for name in [&stale, &busy, &kept] {
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
    }
    admin
        .execute_unprepared(&format!(
            "COMMENT ON DATABASE \"{kept}\" IS '{KEPT_DATABASE_COMMENT}'"
        ))
        .await
        .unwrap();
    let busy_session = Database::connect(url_for_database(&busy)).await.unwrap();
    busy_session.ping().await.unwrap();

    let output = run_testdb(&["cleanup"], Some(&probe_url));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1");
    assert!(
        !database_exists(&admin, &stale).await,
        "the idle database is dropped"
    );
    assert!(
        database_exists(&admin, &busy).await,
        "a database in use is spared"
    );
    assert!(
        database_exists(&admin, &kept).await,
        "a kept database is spared"
    );

    busy_session.close().await.unwrap();
    common::wait_until_no_sessions(&admin, &busy).await;
    let output = run_testdb(&["cleanup", "--include-kept"], Some(&probe_url));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "2");
    assert!(!database_exists(&admin, &busy).await);
    assert!(!database_exists(&admin, &kept).await);
}

#[test]
fn parallel_claims_never_hand_out_the_same_database() {
    const POOL_SIZE: usize = 4;
    const CLAIMERS: usize = 8;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let template = isolated_template(&runtime.block_on(isolated_base("claims")), POOL_SIZE);
    runtime.block_on(template.prepare()).unwrap();
    assert_eq!(
        runtime.block_on(template.ready_in_pool()).unwrap(),
        POOL_SIZE
    );

    let start = Arc::new(Barrier::new(CLAIMERS));
    let all_claimed = Arc::new(Barrier::new(CLAIMERS));
    let claimers: Vec<_> = (0..CLAIMERS)
        .map(|_| {
            let template = template.clone();
            let start = Arc::clone(&start);
            let all_claimed = Arc::clone(&all_claimed);
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    start.wait();
                    let test_db = template.test_db().await.unwrap();
                    let claimed = (test_db.name().to_owned(), test_db.claimed_from_pool());
                    // Every database is held until all are handed out, so none is recycled early.
                    all_claimed.wait();
                    drop(test_db);
                    claimed
                })
            })
        })
        .collect();
    let claimed: Vec<(String, bool)> = claimers
        .into_iter()
        .map(|claimer| claimer.join().unwrap())
        .collect();

    let names: BTreeSet<&str> = claimed.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names.len(),
        CLAIMERS,
        "every claimer got its own: {claimed:?}"
    );
    let from_pool = claimed.iter().filter(|(_, pooled)| *pooled).count();
    assert_eq!(
        from_pool, POOL_SIZE,
        "the ready clones were claimed, the rest cloned on demand: {claimed:?}"
    );
    assert_eq!(
        runtime.block_on(template.ready_in_pool()).unwrap(),
        POOL_SIZE,
        "the drops topped the pool up again"
    );
    runtime.block_on(template.drop_all_databases()).unwrap();
}

#[tokio::test]
async fn claimed_clone_is_migrated_and_its_drop_refills_the_pool() {
    let base = isolated_base("refill").await;
    let admin = admin().await;
    let template = isolated_template(&base, 2);
    let template_name = template.prepare().await.unwrap();
    assert_eq!(template.ready_in_pool().await.unwrap(), 2);

    let test_db = template.test_db().await.unwrap();
    assert!(test_db.claimed_from_pool(), "{test_db:?}");
    assert_eq!(template.ready_in_pool().await.unwrap(), 1);
    let name = test_db.name().to_owned();
    assert!(pool_entries(&base).await.contains(&(
        name.clone(),
        template_name.clone(),
        "claimed".to_owned()
    )));
    let expected: Vec<String> = Migrator::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    assert_eq!(applied_migrations(test_db.conn()).await, expected);
    assert_eq!(
        count(test_db.conn(), "SELECT count(*) AS count FROM projects").await,
        0
    );

    drop(test_db);

    assert!(
        !database_exists(&admin, &name).await,
        "{name} still exists after drop"
    );
    let entries = pool_entries(&base).await;
    assert!(
        entries
            .iter()
            .all(|(entry, _, state)| entry != &name && state == "ready"),
        "{entries:?}"
    );
    assert_eq!(
        template.ready_in_pool().await.unwrap(),
        2,
        "the drop cloned a replacement"
    );
    template.drop_all_databases().await.unwrap();
}

/// With a filler serving the template, a test's drop hands its database over in one statement:
/// the filler drops it and clones the replacement, off the test's path. Once the filler has
/// stopped, drops do both themselves again.
#[tokio::test]
async fn with_a_filler_a_drop_leaves_dropping_and_refilling_to_it() {
    let base = isolated_base("filler").await;
    let admin = admin().await;
    let template = isolated_template(&base, 2);
    template.prepare().await.unwrap();
    let filler = template.start_filler().await.unwrap();
    let bookkeeping = Database::connect(url_for_database(&format!("{base}_testpool")))
        .await
        .unwrap();
    assert_eq!(
        count(&bookkeeping, "SELECT count(*) AS count FROM pool_fillers").await,
        1
    );

    let test_db = template.test_db().await.unwrap();
    assert!(test_db.claimed_from_pool(), "{test_db:?}");
    let name = test_db.name().to_owned();
    drop(test_db);
    poll_until(
        "the filler drops the database and refills the pool",
        || async {
            !database_exists(&admin, &name).await && template.ready_in_pool().await.unwrap() == 2
        },
    )
    .await;

    let report = filler.stop().await.unwrap();
    assert!(
        report.dropped >= 1,
        "the filler dropped nothing: {report:?}"
    );
    assert!(report.cloned >= 1, "the filler cloned nothing: {report:?}");
    assert_eq!(
        count(&bookkeeping, "SELECT count(*) AS count FROM pool_fillers").await,
        0
    );

    let test_db = template.test_db().await.unwrap();
    let name = test_db.name().to_owned();
    drop(test_db);
    assert!(
        !database_exists(&admin, &name).await,
        "without a filler the drop drops {name} itself"
    );
    bookkeeping.close().await.unwrap();
    template.drop_all_databases().await.unwrap();
}

/// Polls `condition` until it holds, failing the test after 30 s.
async fn poll_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn pool_size_zero_clones_on_demand_without_bookkeeping() {
    let base = isolated_base("nopool").await;
    let admin = admin().await;
    let template = isolated_template(&base, 0);
    template.prepare().await.unwrap();

    let test_db = template.test_db().await.unwrap();
    assert!(!test_db.claimed_from_pool());
    assert_eq!(
        applied_migrations(test_db.conn()).await.len(),
        Migrator::migrations().len()
    );
    let name = test_db.name().to_owned();
    drop(test_db);

    assert!(!database_exists(&admin, &name).await);
    assert!(
        databases_with_prefix(&admin, &format!("{base}_test"))
            .await
            .is_empty(),
        "no pooled clones and no bookkeeping database"
    );
    template.drop_all_databases().await.unwrap();
}

/// Runs [`pool_probe_claims_one_database`] in a child process with `DATABASE_URL` and
/// `DB_TEST_POOL_SIZE` as given; returns the probe's database and whether it came from the pool.
fn run_pool_probe(database_url: &str, pool_size: Option<&str>) -> (String, bool) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            POOL_PROBE_TEST,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DATABASE_URL", database_url);
    match pool_size {
        Some(size) => command.env("DB_TEST_POOL_SIZE", size),
        None => command.env_remove("DB_TEST_POOL_SIZE"),
    };
    let output = command.output().expect("the test binary runs itself");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = stdout
        .lines()
        .find_map(|line| line.split_once(POOL_PROBE_MARKER))
        .map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>())
        .unwrap_or_else(|| panic!("the probe reports its database\n{stdout}"));
    match report.as_slice() {
        [name, pooled, ..] => (name.to_string(), *pooled == "claimed_from_pool=true"),
        _ => panic!("malformed probe report\n{stdout}"),
    }
}

#[tokio::test]
async fn pool_size_comes_from_the_environment_and_cleanup_removes_the_pool() {
    let base = isolated_base("env").await;
    let admin = admin().await;
    let probe_url = url_for_database(&base);

    let without_pool = run_testdb_with_pool_size(&["prepare"], &probe_url, "0");
    assert!(without_pool.status.success(), "{without_pool:?}");
    assert!(
        databases_with_prefix(&admin, &format!("{base}_test"))
            .await
            .is_empty(),
        "DB_TEST_POOL_SIZE=0 clones nothing ahead"
    );

    let with_pool = run_testdb_with_pool_size(&["prepare"], &probe_url, "2");
    assert!(with_pool.status.success(), "{with_pool:?}");
    assert_eq!(
        databases_with_prefix(&admin, &format!("{base}_test_"))
            .await
            .len(),
        2
    );

    let (on_demand, pooled) = run_pool_probe(&probe_url, Some("0"));
    assert!(!pooled, "DB_TEST_POOL_SIZE=0 ignores ready clones");
    assert!(!database_exists(&admin, &on_demand).await);
    assert_eq!(pool_entries(&base).await.len(), 2, "nor refills the pool");

    let (claimed, pooled) = run_pool_probe(&probe_url, None);
    assert!(pooled, "by default a ready clone is claimed");
    assert!(!database_exists(&admin, &claimed).await);
    assert_eq!(
        pool_entries(&base).await.len(),
        4,
        "the drop topped the pool up to the default size"
    );

    let cleanup = run_testdb(&["cleanup"], Some(&probe_url));
    assert!(cleanup.status.success(), "{cleanup:?}");
    assert_eq!(String::from_utf8_lossy(&cleanup.stdout).trim(), "4");
    assert!(pool_entries(&base).await.is_empty());
    common::drop_everything(&base).await;
}

#[tokio::test]
#[ignore = "run by pool_size_comes_from_the_environment_and_cleanup_removes_the_pool"]
async fn pool_probe_claims_one_database() {
    let test_db = TestDb::new().await;
    println!(
        "{POOL_PROBE_MARKER}{} claimed_from_pool={}",
        test_db.name(),
        test_db.claimed_from_pool()
    );
}

#[tokio::test]
async fn new_fingerprint_drops_the_clones_of_the_old_template() {
    let base = isolated_base("change").await;
    let admin = admin().await;
    let old = TestTemplate::<Migrator>::new("fingerprint before the edit")
        .with_base_name(&base)
        .with_pool_size(2);
    let new = TestTemplate::<Migrator>::new("fingerprint after the edit")
        .with_base_name(&base)
        .with_pool_size(2);

    let old_template = old.prepare().await.unwrap();
    let old_clones: Vec<String> = pool_entries(&base)
        .await
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    assert_eq!(old_clones.len(), 2);

    let new_template = new.prepare().await.unwrap();

    assert_ne!(old_template, new_template);
    assert!(!database_exists(&admin, &old_template).await);
    for clone in &old_clones {
        assert!(!database_exists(&admin, clone).await, "{clone} survived");
    }
    let entries = pool_entries(&base).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(
        entries
            .iter()
            .all(|(_, template, state)| template == &new_template && state == "ready"),
        "{entries:?}"
    );
    new.drop_all_databases().await.unwrap();
}

#[tokio::test]
async fn cleanup_removes_what_a_crashed_run_left_in_the_pool() {
    let base = isolated_base("crash").await;
    let admin = admin().await;
    let template = isolated_template(&base, 1);
    let template_name = template.prepare().await.unwrap();

    // A claimer that died holding its clone, and a filler that died before its CREATE DATABASE;
    // their owner tokens (the last part of the name) are held by no live process.
    let abandoned = format!("{base}_test_999999_0_dead0001");
    let never_created = format!("{base}_test_999999_1_dead0002");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{abandoned}\""))
        .await
        .unwrap();
    let bookkeeping = Database::connect(url_for_database(&format!("{base}_testpool")))
        .await
        .unwrap();
    for (name, state) in [(&abandoned, "claimed"), (&never_created, "creating")] {
        bookkeeping
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO pool_databases (name, template, state, created_by_pid) VALUES ($1, $2, $3, 999999)",
                [
                    Value::from(name.as_str()),
                    Value::from(template_name.as_str()),
                    Value::from(state),
                ],
            ))
            .await
            .unwrap();
    }
    bookkeeping.close().await.unwrap();
    assert_eq!(pool_entries(&base).await.len(), 3);

    let dropped = template.drop_stale_test_databases().await.unwrap();

    assert_eq!(dropped, 2, "the abandoned clone and the ready one");
    assert!(!database_exists(&admin, &abandoned).await);
    assert!(pool_entries(&base).await.is_empty());
    assert!(
        database_exists(&admin, &template_name).await,
        "the template stays"
    );
    template.drop_all_databases().await.unwrap();
}

/// The tests of this file, each working under a base name of its own.
const ISOLATED_TESTS: [&str; 7] = [
    "cleanup_drops_idle_test_databases_but_spares_busy_and_kept_ones",
    "parallel_claims_never_hand_out_the_same_database",
    "claimed_clone_is_migrated_and_its_drop_refills_the_pool",
    "pool_size_zero_clones_on_demand_without_bookkeeping",
    "pool_size_comes_from_the_environment_and_cleanup_removes_the_pool",
    "new_fingerprint_drops_the_clones_of_the_old_template",
    "cleanup_removes_what_a_crashed_run_left_in_the_pool",
];

/// Two runs at once (two clones of the repository, or one clone twice) run these tests at the
/// same time against one server; each counts, cleans up and drops the databases of its base.
#[test]
fn two_runs_of_the_isolated_tests_at_once_both_pass() {
    let start = || {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.arg("--exact").args(ISOLATED_TESTS);
        common::Spawned::start(command)
    };
    let mut runs = [start(), start()];
    for (index, run) in runs.iter_mut().enumerate() {
        let finished = run.finish();
        finished.assert_success(&format!("run {} of the isolated tests", index + 1));
        assert!(
            finished
                .stdout
                .contains(&format!("{} passed", ISOLATED_TESTS.len())),
            "every isolated test ran\n{}",
            finished.stdout
        );
    }
}
