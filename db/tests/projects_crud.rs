//! CRUD on `projects` against real PostgreSQL, through the entity and through `db::projects`, including the database's own rules.

use db::entities::projects::{ActiveModel, Column, Entity as Projects, Model as Project};
use db::projects::{self, NewProject, Page, ProjectError, ProjectUpdate};
use sea_orm::prelude::DateTimeWithTimeZone;
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend,
    DbErr, EntityTrait, IntoActiveModel, QueryFilter, RuntimeErr, Statement, Value,
};
use uuid::Uuid;

const CHECK_VIOLATION: &str = "23514";
const NOT_NULL_VIOLATION: &str = "23502";

fn new_project(name: &str) -> NewProject {
    NewProject {
        name: name.to_owned(),
        description: None,
    }
}

fn sqlstate_and_constraint(error: &DbErr) -> (Option<String>, Option<String>) {
    let (DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error))) =
        error
    else {
        return (None, None);
    };
    let Some(database_error) = error.as_database_error() else {
        return (None, None);
    };
    (
        database_error.code().map(|code| code.into_owned()),
        database_error.constraint().map(str::to_owned),
    )
}

async fn count_projects(db: &impl ConnectionTrait) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS count FROM projects",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "count").unwrap()
}

/// Reads `updated_at` straight from the table, so the check does not depend on what the ORM returns.
async fn stored_updated_at(db: &impl ConnectionTrait, id: Uuid) -> DateTimeWithTimeZone {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT updated_at FROM projects WHERE id = $1",
            [Value::from(id)],
        ))
        .await
        .unwrap()
        .expect("the project exists");
    row.try_get("", "updated_at").unwrap()
}

#[db::test]
async fn entity_inserts_finds_updates_and_deletes_a_project(db: DatabaseConnection) {
    let inserted = ActiveModel {
        name: ActiveValue::Set("Apollo".to_owned()),
        description: ActiveValue::Set(Some("Moon landing".to_owned())),
        ..Default::default()
    }
    .insert(&db)
    .await
    .unwrap();
    assert_eq!(inserted.name, "Apollo");
    assert_eq!(inserted.description.as_deref(), Some("Moon landing"));
    assert!(!inserted.id.is_nil(), "the database generates the id");
    assert_eq!(inserted.created_at, inserted.updated_at);

    let found = Projects::find_by_id(inserted.id).one(&db).await.unwrap();
    assert_eq!(found.as_ref(), Some(&inserted));

    let mut renaming = inserted.clone().into_active_model();
    renaming.name = ActiveValue::Set("Artemis".to_owned());
    let renamed = renaming.update(&db).await.unwrap();
    assert_eq!(renamed.name, "Artemis");
    assert_eq!(renamed.created_at, inserted.created_at);
    assert!(renamed.updated_at > inserted.updated_at);

    let by_name = Projects::find()
        .filter(Column::Name.eq("Artemis"))
        .all(&db)
        .await
        .unwrap();
    assert_eq!(by_name, vec![renamed.clone()]);

    let deleted = Projects::delete_by_id(renamed.id).exec(&db).await.unwrap();
    assert_eq!(deleted.rows_affected, 1);
    assert_eq!(
        Projects::find_by_id(renamed.id).one(&db).await.unwrap(),
        None
    );
}

#[db::test]
async fn created_project_reads_back_as_stored(db: DatabaseConnection) {
    let created = projects::create(
        &db,
        NewProject {
            name: "Gemini".to_owned(),
            description: Some("Two seats".to_owned()),
        },
    )
    .await
    .unwrap();
    assert_eq!(created.name, "Gemini");
    assert_eq!(created.description.as_deref(), Some("Two seats"));
    assert_eq!(created.created_at, created.updated_at);

    assert_eq!(projects::get(&db, created.id).await.unwrap(), created);
    assert_eq!(count_projects(&db).await, 1);
}

#[db::test]
async fn getting_an_unknown_project_is_not_found(db: DatabaseConnection) {
    let unknown = Uuid::new_v4();

    let error = projects::get(&db, unknown).await.unwrap_err();

    assert!(
        matches!(error, ProjectError::NotFound(id) if id == unknown),
        "{error}"
    );
}

#[db::test]
async fn list_orders_by_creation_then_id_and_pages_without_overlap(db: DatabaseConnection) {
    let mut created = Vec::new();
    for name in ["e", "d", "c", "b", "a"] {
        created.push(projects::create(&db, new_project(name)).await.unwrap());
    }
    // Explicit creation times make the expected order independent of insert timing; the two
    // equal ones check the tie-break on id.
    let creation_times = [
        "2026-01-03T00:00:00Z",
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
        "2026-01-02T00:00:00Z",
        "2025-12-31T00:00:00Z",
    ];
    for (project, created_at) in created.iter().zip(creation_times) {
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE projects SET created_at = $1::timestamptz WHERE id = $2",
            [Value::from(created_at), Value::from(project.id)],
        ))
        .await
        .unwrap();
    }
    let mut expected: Vec<Project> = Projects::find().all(&db).await.unwrap();
    expected.sort_by_key(|project| (project.created_at, project.id));
    assert_eq!(expected.len(), 5);
    assert_eq!(
        expected[0].name, "a",
        "the earliest creation time comes first"
    );
    assert_eq!(expected[4].name, "e", "the latest creation time comes last");

    let everything = projects::list(
        &db,
        Page {
            number: 0,
            size: 100,
        },
    )
    .await
    .unwrap();
    assert_eq!(everything, expected);

    let mut paged = Vec::new();
    for number in 0..3 {
        let page = projects::list(&db, Page { number, size: 2 }).await.unwrap();
        let expected_len = if number < 2 { 2 } else { 1 };
        assert_eq!(page.len(), expected_len, "page {number}");
        paged.extend(page);
    }
    assert_eq!(paged, expected, "pages concatenate to the full listing");
    assert!(
        projects::list(&db, Page { number: 3, size: 2 })
            .await
            .unwrap()
            .is_empty(),
        "a page past the end is empty"
    );
}

#[db::test]
async fn update_changes_fields_and_moves_updated_at_forward(db: DatabaseConnection) {
    let created = projects::create(
        &db,
        NewProject {
            name: "Mercury".to_owned(),
            description: Some("One seat".to_owned()),
        },
    )
    .await
    .unwrap();

    let renamed = projects::update(
        &db,
        created.id,
        ProjectUpdate {
            name: Some("Mercury 7".to_owned()),
            description: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(renamed.name, "Mercury 7");
    assert_eq!(
        renamed.description.as_deref(),
        Some("One seat"),
        "untouched fields stay"
    );
    assert_eq!(renamed.created_at, created.created_at);
    assert!(
        renamed.updated_at > created.updated_at,
        "an ORM update moves updated_at: {} -> {}",
        created.updated_at,
        renamed.updated_at
    );

    let cleared = projects::update(
        &db,
        created.id,
        ProjectUpdate {
            name: None,
            description: Some(None),
        },
    )
    .await
    .unwrap();
    assert_eq!(cleared.description, None);
    assert!(cleared.updated_at > renamed.updated_at);

    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE projects SET description = 'set by raw SQL' WHERE id = $1",
        [Value::from(created.id)],
    ))
    .await
    .unwrap();
    let after_raw_update = projects::get(&db, created.id).await.unwrap();
    assert_eq!(
        after_raw_update.description.as_deref(),
        Some("set by raw SQL")
    );
    assert!(
        after_raw_update.updated_at > cleared.updated_at,
        "a raw SQL update moves updated_at too: {} -> {}",
        cleared.updated_at,
        after_raw_update.updated_at
    );
    assert_eq!(
        stored_updated_at(&db, created.id).await,
        after_raw_update.updated_at
    );
    assert_eq!(after_raw_update.created_at, created.created_at);
}

#[db::test]
async fn updating_an_unknown_project_is_not_found(db: DatabaseConnection) {
    let unknown = Uuid::new_v4();

    let error = projects::update(
        &db,
        unknown,
        ProjectUpdate {
            name: Some("Ghost".to_owned()),
            description: None,
        },
    )
    .await
    .unwrap_err();

    assert!(
        matches!(error, ProjectError::NotFound(id) if id == unknown),
        "{error}"
    );
    assert_eq!(count_projects(&db).await, 0);
}

#[db::test]
async fn delete_removes_only_that_project(db: DatabaseConnection) {
    let doomed = projects::create(&db, new_project("Skylab")).await.unwrap();
    let kept = projects::create(&db, new_project("Soyuz")).await.unwrap();

    projects::delete(&db, doomed.id).await.unwrap();

    assert!(matches!(
        projects::get(&db, doomed.id).await,
        Err(ProjectError::NotFound(_))
    ));
    assert_eq!(projects::get(&db, kept.id).await.unwrap(), kept);
    let again = projects::delete(&db, doomed.id).await.unwrap_err();
    assert!(
        matches!(again, ProjectError::NotFound(id) if id == doomed.id),
        "{again}"
    );
}

#[db::test]
async fn blank_names_are_rejected_as_blank_name(db: DatabaseConnection) {
    for blank in ["", " ", "    ", "\t", "\n", " \t\r\n "] {
        let error = projects::create(&db, new_project(blank)).await.unwrap_err();
        assert!(
            matches!(error, ProjectError::BlankName),
            "{blank:?}: {error}"
        );
    }

    let existing = projects::create(&db, new_project("Vostok")).await.unwrap();
    let error = projects::update(
        &db,
        existing.id,
        ProjectUpdate {
            name: Some("   ".to_owned()),
            description: None,
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ProjectError::BlankName), "{error}");
    assert_eq!(
        projects::get(&db, existing.id).await.unwrap().name,
        "Vostok"
    );
    assert_eq!(count_projects(&db).await, 1);
}

#[db::test]
async fn raw_sql_blank_name_violates_the_check_constraint(db: DatabaseConnection) {
    let error = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO projects (name) VALUES ($1)",
            [Value::from("   ")],
        ))
        .await
        .unwrap_err();

    assert_eq!(
        sqlstate_and_constraint(&error),
        (
            Some(CHECK_VIOLATION.to_owned()),
            Some("projects_name_not_blank".to_owned())
        )
    );
    assert!(matches!(ProjectError::from(error), ProjectError::BlankName));
    assert_eq!(count_projects(&db).await, 0);
}

#[db::test]
async fn missing_names_are_rejected_as_missing_name(db: DatabaseConnection) {
    let raw_error = db
        .execute_unprepared("INSERT INTO projects (name) VALUES (NULL)")
        .await
        .unwrap_err();
    assert_eq!(
        sqlstate_and_constraint(&raw_error).0.as_deref(),
        Some(NOT_NULL_VIOLATION)
    );
    assert!(matches!(
        ProjectError::from(raw_error),
        ProjectError::MissingName
    ));

    let entity_error = ActiveModel {
        description: ActiveValue::Set(Some("no name given".to_owned())),
        ..Default::default()
    }
    .insert(&db)
    .await
    .unwrap_err();
    let error = ProjectError::from(entity_error);
    assert!(matches!(error, ProjectError::MissingName), "{error}");
    assert_eq!(count_projects(&db).await, 0);
}
