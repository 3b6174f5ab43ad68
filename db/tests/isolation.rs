//! Two tests writing the same project names at the same time each see only their own rows, because each has its own database.
//!
//! Under `cargo test` both run as threads of one process and meet at a rendezvous, so their
//! databases are provably alive at the same time. Under nextest each test is its own process and
//! the rendezvous times out harmlessly; the assertions hold either way, because they count exact
//! numbers that differ between the two tests.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use db::projects::{self, NewProject};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};

const SHARED_NAME_PREFIX: &str = "shared-name-";
/// Long enough for the partner thread to get its database, short enough not to matter alone.
const RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(5);

static ARRIVED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static ARRIVAL: Condvar = Condvar::new();

/// Returns the names of the databases of the tests that arrived so far, once both arrived or the
/// timeout passed; does not wait when the partner cannot be running alongside (nextest runs it in
/// another process; one test thread runs it later).
fn rendezvous(database_name: &str) -> Vec<String> {
    let mut arrived = ARRIVED.lock().unwrap();
    arrived.push(database_name.to_owned());
    ARRIVAL.notify_all();
    let runs_alone = std::env::var_os("NEXTEST").is_some()
        || std::env::var("RUST_TEST_THREADS").is_ok_and(|threads| threads.trim() == "1");
    if runs_alone {
        return arrived.clone();
    }
    let deadline = Instant::now() + RENDEZVOUS_TIMEOUT;
    while arrived.len() < 2 {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        arrived = ARRIVAL.wait_timeout(arrived, remaining).unwrap().0;
    }
    arrived.clone()
}

async fn write_projects_and_count_shared_names(db: &DatabaseConnection, row_count: usize) {
    for index in 0..row_count {
        projects::create(
            db,
            NewProject {
                name: format!("{SHARED_NAME_PREFIX}{index}"),
                description: None,
            },
        )
        .await
        .unwrap();
    }

    let partners = rendezvous(&db_testing::database_name(db).await);
    let distinct: std::collections::BTreeSet<_> = partners.iter().collect();
    assert_eq!(
        distinct.len(),
        partners.len(),
        "each test has its own database: {partners:?}"
    );

    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) AS count FROM projects WHERE starts_with(name, $1)",
            [Value::from(SHARED_NAME_PREFIX)],
        ))
        .await
        .unwrap()
        .unwrap();
    let visible: i64 = row.try_get("", "count").unwrap();
    assert_eq!(
        visible, row_count as i64,
        "only this test's rows are visible"
    );
}

#[db::test]
async fn first_writer_sees_only_its_three_rows(db: DatabaseConnection) {
    write_projects_and_count_shared_names(&db, 3).await;
}

#[db::test]
async fn second_writer_sees_only_its_five_rows(db: DatabaseConnection) {
    write_projects_and_count_shared_names(&db, 5).await;
}
