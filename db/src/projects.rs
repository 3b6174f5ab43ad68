//! Creating, reading, listing, updating and deleting projects.
//!
//! The database enforces the rules (a name is required and may not be blank),
//! so raw SQL and this module behave the same; violations come back as
//! [`ProjectError::BlankName`] / [`ProjectError::MissingName`].
//!
//! ```no_run
//! use db::projects::{self, NewProject, Page, ProjectUpdate};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let db = db::connection::connect().await?;
//! let project = projects::create(
//!     &db,
//!     NewProject { name: "Apollo".into(), description: None },
//! )
//! .await?;
//! let renamed = projects::update(
//!     &db,
//!     project.id,
//!     ProjectUpdate { name: Some("Artemis".into()), ..Default::default() },
//! )
//! .await?;
//! let first_page = projects::list(&db, Page { number: 0, size: 20 }).await?;
//! projects::delete(&db, renamed.id).await?;
//! # let _ = first_page;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use sea_orm::sqlx::postgres::PgDatabaseError;
use sea_orm::{
    ActiveModelTrait, ActiveValue, ConnectionTrait, DbErr, EntityTrait, QueryOrder, QuerySelect,
    RuntimeErr,
};
use uuid::Uuid;

use crate::entities::projects::{ActiveModel, Column, Entity as Projects, Model as Project};

const NAME_NOT_BLANK_CONSTRAINT: &str = "projects_name_not_blank";
const CHECK_VIOLATION: &str = "23514";
const NOT_NULL_VIOLATION: &str = "23502";

/// What a new project starts with; `id` and timestamps come from the database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewProject {
    pub name: String,
    pub description: Option<String>,
}

/// Changes to a project: `None` leaves a field as it is;
/// `description: Some(None)` clears the description.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectUpdate {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
}

/// A page of a listing: `number` counts from 0, `size` is the number of projects per page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub number: u64,
    pub size: u64,
}

/// Why a project operation failed.
#[derive(Debug)]
pub enum ProjectError {
    /// The name is empty or only whitespace (constraint `projects_name_not_blank`).
    BlankName,
    /// The name is NULL.
    MissingName,
    /// No project has this id.
    NotFound(Uuid),
    /// Any other database failure.
    Database(DbErr),
}

impl fmt::Display for ProjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BlankName => f.write_str("project name is blank: give it a non-blank name"),
            Self::MissingName => f.write_str("project name is missing: give it a name"),
            Self::NotFound(id) => write!(f, "no project with id {id}"),
            Self::Database(error) => write!(f, "database error: {error}"),
        }
    }
}

impl std::error::Error for ProjectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Database(error) => Some(error),
            _ => None,
        }
    }
}

impl From<DbErr> for ProjectError {
    /// Recognises the database's own name rules; everything else stays a database error.
    fn from(error: DbErr) -> Self {
        let (DbErr::Exec(RuntimeErr::SqlxError(sqlx_error))
        | DbErr::Query(RuntimeErr::SqlxError(sqlx_error))) = &error
        else {
            return Self::Database(error);
        };
        let sea_orm::sqlx::Error::Database(database_error) = sqlx_error.as_ref() else {
            return Self::Database(error);
        };
        let column = database_error
            .try_downcast_ref::<PgDatabaseError>()
            .and_then(PgDatabaseError::column);
        match (
            database_error.code().as_deref(),
            database_error.constraint(),
            column,
        ) {
            (Some(CHECK_VIOLATION), Some(NAME_NOT_BLANK_CONSTRAINT), _) => Self::BlankName,
            (Some(NOT_NULL_VIOLATION), _, Some("name")) => Self::MissingName,
            _ => Self::Database(error),
        }
    }
}

/// Inserts a project and returns it as stored (with its generated id and timestamps).
///
/// ```no_run
/// # async fn example(db: &sea_orm::DatabaseConnection) -> Result<(), db::projects::ProjectError> {
/// use db::projects::{self, NewProject};
/// let project = projects::create(
///     db,
///     NewProject { name: "Apollo".into(), description: Some("Moon".into()) },
/// )
/// .await?;
/// assert_eq!(project.name, "Apollo");
/// # Ok(())
/// # }
/// ```
pub async fn create<C: ConnectionTrait>(db: &C, new: NewProject) -> Result<Project, ProjectError> {
    let project = ActiveModel {
        name: ActiveValue::Set(new.name),
        description: ActiveValue::Set(new.description),
        ..Default::default()
    };
    Ok(project.insert(db).await?)
}

/// The project with this id, or [`ProjectError::NotFound`].
///
/// ```no_run
/// # async fn example(db: &sea_orm::DatabaseConnection, id: uuid::Uuid) -> Result<(), db::projects::ProjectError> {
/// let project = db::projects::get(db, id).await?;
/// println!("{}", project.name);
/// # Ok(())
/// # }
/// ```
pub async fn get<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Project, ProjectError> {
    Projects::find_by_id(id)
        .one(db)
        .await?
        .ok_or(ProjectError::NotFound(id))
}

/// One page of projects, oldest first (ties broken by id, so pages never overlap).
///
/// ```no_run
/// # async fn example(db: &sea_orm::DatabaseConnection) -> Result<(), db::projects::ProjectError> {
/// use db::projects::{self, Page};
/// let second_page = projects::list(db, Page { number: 1, size: 50 }).await?;
/// # let _ = second_page;
/// # Ok(())
/// # }
/// ```
pub async fn list<C: ConnectionTrait>(db: &C, page: Page) -> Result<Vec<Project>, ProjectError> {
    Ok(Projects::find()
        .order_by_asc(Column::CreatedAt)
        .order_by_asc(Column::Id)
        .offset(page.number.saturating_mul(page.size))
        .limit(page.size)
        .all(db)
        .await?)
}

/// Applies `changes` and returns the project as stored; the database moves
/// `updated_at` forward. An update that changes nothing returns the project untouched.
///
/// ```no_run
/// # async fn example(db: &sea_orm::DatabaseConnection, id: uuid::Uuid) -> Result<(), db::projects::ProjectError> {
/// use db::projects::{self, ProjectUpdate};
/// let cleared = projects::update(
///     db,
///     id,
///     ProjectUpdate { description: Some(None), ..Default::default() },
/// )
/// .await?;
/// assert_eq!(cleared.description, None);
/// # Ok(())
/// # }
/// ```
pub async fn update<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    changes: ProjectUpdate,
) -> Result<Project, ProjectError> {
    if changes.name.is_none() && changes.description.is_none() {
        return get(db, id).await;
    }
    let project = ActiveModel {
        id: ActiveValue::Unchanged(id),
        name: changes.name.map_or(ActiveValue::NotSet, ActiveValue::Set),
        description: changes
            .description
            .map_or(ActiveValue::NotSet, ActiveValue::Set),
        ..Default::default()
    };
    match project.update(db).await {
        Err(DbErr::RecordNotUpdated) => Err(ProjectError::NotFound(id)),
        result => Ok(result?),
    }
}

/// Deletes the project, or returns [`ProjectError::NotFound`] if there is none.
///
/// ```no_run
/// # async fn example(db: &sea_orm::DatabaseConnection, id: uuid::Uuid) -> Result<(), db::projects::ProjectError> {
/// db::projects::delete(db, id).await?;
/// # Ok(())
/// # }
/// ```
pub async fn delete<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<(), ProjectError> {
    let result = Projects::delete_by_id(id).exec(db).await?;
    if result.rows_affected == 0 {
        return Err(ProjectError::NotFound(id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_one_line() {
        let id = Uuid::nil();
        for error in [
            ProjectError::BlankName,
            ProjectError::MissingName,
            ProjectError::NotFound(id),
            ProjectError::Database(DbErr::Custom("boom".into())),
        ] {
            assert!(!error.to_string().contains('\n'), "{error}");
        }
        assert_eq!(
            ProjectError::NotFound(id).to_string(),
            "no project with id 00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn unrelated_database_errors_stay_database_errors() {
        assert!(matches!(
            ProjectError::from(DbErr::Custom("boom".into())),
            ProjectError::Database(_)
        ));
    }
}
