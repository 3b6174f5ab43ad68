//! Entities and database access for the application.

pub mod connection;
pub mod drift;
pub mod entities;
pub mod projects;
pub mod testing;
