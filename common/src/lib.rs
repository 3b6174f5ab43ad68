//! What xtask, the migration CLI and the `db` crates share without a database driver: password redaction, the `DATABASE_URL` checks, and a few small helpers.

pub mod cargo_env;
pub mod database_url;
pub mod fnv;
pub mod redact;
pub mod stats;
pub mod text;
