//! Verifies every migration's `down` on real PostgreSQL: it must undo exactly what its `up` did, leaving no residue.

use std::collections::BTreeSet;

use db_testing::TestDb;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

/// Everything a migration can leave behind in schema `public`, one line per object, except the
/// migration bookkeeping table itself.
const SCHEMA_SNAPSHOT_QUERIES: &[&str] = &[
    "SELECT format('relation %s kind=%s', c.relname, c.relkind) AS item
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind NOT IN ('i', 'I')
        AND c.relname <> 'seaql_migrations'",
    "SELECT format('column %s.%s type=%s not_null=%s default=%s', c.relname, a.attname,
                   format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   coalesce(pg_get_expr(d.adbin, d.adrelid), '-')) AS item
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
        AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relname <> 'seaql_migrations'",
    "SELECT format('index %s on %s: %s', indexname, tablename, indexdef) AS item
       FROM pg_indexes
      WHERE schemaname = 'public' AND tablename <> 'seaql_migrations'",
    "SELECT format('constraint %s on %s: %s', con.conname, coalesce(c.relname, '-'),
                   pg_get_constraintdef(con.oid)) AS item
       FROM pg_constraint con
       JOIN pg_namespace n ON n.oid = con.connamespace
       LEFT JOIN pg_class c ON c.oid = con.conrelid
      WHERE n.nspname = 'public' AND coalesce(c.relname, '') <> 'seaql_migrations'",
    "SELECT format('function %s', pg_get_functiondef(p.oid)) AS item
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p')",
    "SELECT format('routine %s(%s) kind=%s', p.proname,
                   pg_get_function_identity_arguments(p.oid), p.prokind) AS item
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = 'public' AND p.prokind NOT IN ('f', 'p')",
    "SELECT format('trigger %s', pg_get_triggerdef(t.oid)) AS item
       FROM pg_trigger t
       JOIN pg_class c ON c.oid = t.tgrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND NOT t.tgisinternal",
    "SELECT format('sequence %s type=%s start=%s increment=%s min=%s max=%s cycle=%s',
                   sequencename, data_type, start_value, increment_by, min_value, max_value,
                   cycle) AS item
       FROM pg_sequences WHERE schemaname = 'public'",
    "SELECT format('type %s kind=%s base=%s labels=%s', t.typname, t.typtype,
                   format_type(t.typbasetype, t.typtypmod),
                   (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                      FROM pg_enum e WHERE e.enumtypid = t.oid)) AS item
       FROM pg_type t
       JOIN pg_namespace n ON n.oid = t.typnamespace
       LEFT JOIN pg_class c ON c.oid = t.typrelid
      WHERE n.nspname = 'public'
        AND (t.typtype IN ('e', 'd', 'r', 'm') OR (t.typtype = 'c' AND c.relkind = 'c'))",
    "SELECT format('extension %s', extname) AS item FROM pg_extension WHERE extname <> 'plpgsql'",
    "SELECT format('schema %s', nspname) AS item FROM pg_namespace
      WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('public', 'information_schema')",
];

async fn schema_snapshot(db: &DatabaseConnection) -> BTreeSet<String> {
    let mut snapshot = BTreeSet::new();
    for query in SCHEMA_SNAPSHOT_QUERIES {
        let rows = db
            .query_all_raw(Statement::from_string(DbBackend::Postgres, *query))
            .await
            .unwrap_or_else(|error| panic!("snapshot query failed: {error}\n{query}"));
        for row in rows {
            let item: String = row.try_get("", "item").unwrap();
            // Whitespace inside function bodies is irrelevant to residue; it keeps diffs readable.
            snapshot.insert(item.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    snapshot
}

async fn applied_versions(db: &DatabaseConnection) -> Vec<String> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT version FROM seaql_migrations ORDER BY version",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.try_get("", "version").unwrap())
        .collect()
}

fn migration_names() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect()
}

fn difference(expected: &BTreeSet<String>, actual: &BTreeSet<String>) -> String {
    let missing: Vec<_> = expected.difference(actual).collect();
    let unexpected: Vec<_> = actual.difference(expected).collect();
    format!("missing: {missing:#?}\nunexpected: {unexpected:#?}")
}

#[tokio::test]
async fn each_down_undoes_its_up_and_reapplying_gives_the_same_schema() {
    let test_db = TestDb::empty().await;
    let db = test_db.conn();
    let names = migration_names();
    assert!(!names.is_empty(), "the migrator lists its migrations");

    let empty = schema_snapshot(db).await;
    assert!(
        empty.is_empty(),
        "a scratch database starts empty: {empty:#?}"
    );

    // snapshots[i] is the schema with the first i migrations applied.
    let mut snapshots = vec![empty];
    for (step, name) in names.iter().enumerate() {
        Migrator::up(db, Some(1))
            .await
            .unwrap_or_else(|error| panic!("up {name}: {error}"));
        assert_eq!(applied_versions(db).await, names[..=step].to_vec());
        let snapshot = schema_snapshot(db).await;
        assert_ne!(
            &snapshot,
            snapshots.last().unwrap(),
            "{name} changes the schema"
        );
        snapshots.push(snapshot);
    }
    let head = snapshots.last().unwrap().clone();
    for expected in [
        "relation projects kind=r",
        "index idx_projects_name on projects: CREATE INDEX idx_projects_name ON public.projects USING btree (name)",
        "trigger CREATE TRIGGER projects_set_updated_at BEFORE UPDATE ON public.projects FOR EACH ROW EXECUTE FUNCTION set_updated_at()",
    ] {
        assert!(
            head.contains(expected),
            "snapshot at head lacks `{expected}`: {head:#?}"
        );
    }
    assert!(
        head.iter()
            .any(|item| item.starts_with("constraint projects_name_not_blank on projects: CHECK")),
        "snapshot at head lacks the blank-name check: {head:#?}"
    );
    assert!(
        head.iter()
            .any(|item| item
                .starts_with("function CREATE OR REPLACE FUNCTION public.set_updated_at()")),
        "snapshot at head lacks set_updated_at(): {head:#?}"
    );

    for (step, name) in names.iter().enumerate().rev() {
        Migrator::down(db, Some(1))
            .await
            .unwrap_or_else(|error| panic!("down {name}: {error}"));
        assert_eq!(applied_versions(db).await, names[..step].to_vec());
        let snapshot = schema_snapshot(db).await;
        assert!(
            snapshot == snapshots[step],
            "down of {name} leaves a different schema than before its up:\n{}",
            difference(&snapshots[step], &snapshot)
        );
    }
    let after_all_down = schema_snapshot(db).await;
    assert!(
        after_all_down.is_empty(),
        "rolling everything back leaves residue: {after_all_down:#?}"
    );

    Migrator::up(db, None).await.unwrap();
    assert_eq!(applied_versions(db).await, names);
    let reapplied = schema_snapshot(db).await;
    assert!(
        reapplied == head,
        "reapplying all migrations gives a different schema:\n{}",
        difference(&head, &reapplied)
    );
}

#[tokio::test]
async fn full_rollback_and_reapply_round_trips() {
    let test_db = TestDb::empty().await;
    let db = test_db.conn();

    Migrator::up(db, None).await.unwrap();
    let first = schema_snapshot(db).await;
    assert!(first.contains("relation projects kind=r"), "{first:#?}");

    Migrator::down(db, None).await.unwrap();
    let residue = schema_snapshot(db).await;
    assert!(
        residue.is_empty(),
        "rolling everything back leaves residue: {residue:#?}"
    );
    assert!(applied_versions(db).await.is_empty());

    Migrator::up(db, None).await.unwrap();
    let second = schema_snapshot(db).await;
    assert!(second == first, "{}", difference(&first, &second));
}

#[tokio::test]
async fn the_template_clone_matches_a_fresh_migration() {
    let migrated_fresh = TestDb::empty().await;
    Migrator::up(migrated_fresh.conn(), None).await.unwrap();
    let cloned = TestDb::new().await;

    let fresh = schema_snapshot(migrated_fresh.conn()).await;
    let from_template = schema_snapshot(cloned.conn()).await;

    assert!(
        from_template == fresh,
        "the template is stale or built differently:\n{}",
        difference(&fresh, &from_template)
    );
    assert_eq!(applied_versions(cloned.conn()).await, migration_names());
}
