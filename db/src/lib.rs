//! Entities and database access for the application; per-test databases are in the `db-testing` crate.

pub mod connection;
pub mod drift;
pub mod entities;
pub mod projects;
