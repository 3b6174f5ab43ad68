//! How `CREATE DATABASE … TEMPLATE` copies the template ([`CloneStrategy`]), and which is faster
//! on a given server.

use std::fmt;

/// The `STRATEGY` of `CREATE DATABASE … TEMPLATE …` (PostgreSQL 15 and later).
///
/// Which one is faster depends on the server's durability: each `FILE_COPY` forces two
/// checkpoints, which are nearly free with `fsync = off` (the RAM-backed test server) but
/// expensive on a durable one. [`CloneStrategy::for_server`] picks accordingly; `testdb measure`
/// compares the two on the `DATABASE_URL` server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneStrategy {
    /// Copies the template block by block through the write-ahead log.
    WalLog,
    /// Copies the template's files after a checkpoint.
    FileCopy,
}

impl CloneStrategy {
    /// The faster strategy for a server whose `fsync` setting is `fsync_enabled`.
    pub fn for_server(fsync_enabled: bool) -> CloneStrategy {
        if fsync_enabled {
            CloneStrategy::WalLog
        } else {
            CloneStrategy::FileCopy
        }
    }

    pub(crate) fn sql_keyword(self) -> &'static str {
        match self {
            CloneStrategy::WalLog => "WAL_LOG",
            CloneStrategy::FileCopy => "FILE_COPY",
        }
    }
}

impl fmt::Display for CloneStrategy {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.pad(self.sql_keyword())
    }
}
