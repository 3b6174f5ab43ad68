//! `cargo xtask bench --shards`: the whole suite's wall time in 1, 2 and 4 shards run at once as
//! parallel processes, each `db-test --partition K/N` on a database of its own on one server,
//! as CI's shard jobs run it on servers of their own.

use std::{
    fs::File,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use dbops_common::stats::median;

use super::Row;
use crate::{bins::cargo_program, context::Ctx, pg, ui};

const SHARD_COUNTS: [u32; 3] = [1, 2, 4];
const ROUNDS: usize = 2;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One row per shard count, measured on `server` (the test cluster on the local backend).
pub fn suite_in_shards(server: &Ctx, rows: &mut Vec<Row>) -> Result<()> {
    let databases = ShardDatabases::create(server, *SHARD_COUNTS.iter().max().unwrap_or(&1))?;
    // Rounds interleave the shard counts, so that a slow moment of the machine hits each alike.
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); SHARD_COUNTS.len()];
    for round in 1..=ROUNDS {
        for (total, samples) in SHARD_COUNTS.into_iter().zip(&mut samples) {
            ui::info(format!(
                "measuring the whole suite in {total} parallel shard{} (round {round} of {ROUNDS})",
                if total == 1 { "" } else { "s" }
            ));
            samples.push(run_shards(server, &databases, total)?);
        }
    }
    let medians: Vec<f64> = samples.iter().map(|s| median(s)).collect();
    for (total, ms) in SHARD_COUNTS.into_iter().zip(&medians) {
        rows.push(Row {
            what: format!("whole suite (`db-test`) in {total} parallel shard(s), wall time"),
            runs: ROUNDS,
            median_ms: *ms,
            note: format!(
                "{:.2}× one shard; each shard its own database on one server",
                ms / medians[0]
            ),
        });
    }
    Ok(())
}

/// Starts shards 1..=`total` of the suite at once and returns the milliseconds until the last
/// one has finished; a failing shard fails the measurement, naming the file with its output.
fn run_shards(server: &Ctx, databases: &ShardDatabases, total: u32) -> Result<f64> {
    let logs = tempfile::Builder::new()
        .prefix("xtask-bench-shards-")
        .tempdir()
        .context("cannot make a directory for the shards' output")?;
    let started = Instant::now();
    let mut children = Vec::new();
    for shard in 1..=total {
        let log_path = logs.path().join(format!("shard-{shard}-of-{total}.log"));
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let url = server.cfg.url_for_database(&databases.name(shard));
        let child = shard_command(&server.cfg.root, shard, total, url.as_str())
            .stdout(log.try_clone().context("cannot share a shard's log file")?)
            .stderr(log)
            .spawn()
            .context("cannot start cargo xtask db-test")?;
        children.push((shard, log_path, child));
    }
    let mut failed = None;
    for (shard, log_path, mut child) in children {
        let status = child.wait().context("cannot wait for a shard of db-test")?;
        if !status.success() && failed.is_none() {
            failed = Some(format!(
                "shard {shard}/{total} of the suite failed ({status}): its output is in {}",
                log_path.display()
            ));
        }
    }
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    match failed {
        Some(message) => {
            // Kept for the user to read.
            let _ = logs.keep();
            bail!(message)
        }
        None => Ok(elapsed),
    }
}

/// `cargo xtask -q db-test --partition SHARD/TOTAL` against `url`, as an external server.
fn shard_command(root: &Path, shard: u32, total: u32, url: &str) -> Command {
    let mut cmd = Command::new(cargo_program());
    cmd.args(["xtask", "-q", "db-test", "--partition"])
        .arg(format!("{shard}/{total}"))
        .current_dir(root)
        .env("DB_BACKEND", "external")
        .env("DATABASE_URL", crate::tls::url_for_sqlx(url));
    crate::bins::without_package_vars(&mut cmd);
    cmd
}

/// The shards' databases, `<db>_shard<K>`, and everything db-test names after them.
struct ShardDatabases {
    prefix: String,
    admin: pg::Client,
}

impl ShardDatabases {
    fn create(server: &Ctx, count: u32) -> Result<ShardDatabases> {
        let admin = pg::Client::connect(&server.cfg.url, CONNECT_TIMEOUT)
            .context("cannot connect to the test server to make the shards' databases")?;
        let mut databases = ShardDatabases {
            prefix: format!("{}_shard", server.cfg.database),
            admin,
        };
        databases.drop_leftovers()?;
        for shard in 1..=count {
            let name = databases.name(shard);
            databases
                .admin
                .query(&format!("CREATE DATABASE {}", pg::ident(&name)))
                .with_context(|| format!("cannot create database {name}"))?;
        }
        Ok(databases)
    }

    fn name(&self, shard: u32) -> String {
        format!("{}{shard}", self.prefix)
    }

    /// Drops the shards' databases and the templates, pools and test databases named after
    /// them; all of them were made by this benchmark.
    fn drop_leftovers(&mut self) -> Result<()> {
        let pattern = format!("{}%", self.prefix.replace('_', "\\_"));
        let names = self
            .admin
            .query(&format!(
                "SELECT datname FROM pg_database WHERE datname LIKE {}",
                pg::literal(&pattern)
            ))
            .context("cannot list the shards' databases")?;
        for row in names {
            let name = row.first().cloned().flatten().unwrap_or_default();
            let ident = pg::ident(&name);
            self.admin
                .query(&format!("ALTER DATABASE {ident} IS_TEMPLATE false"))
                .and_then(|_| {
                    self.admin
                        .query(&format!("DROP DATABASE {ident} WITH (FORCE)"))
                })
                .with_context(|| format!("cannot drop database {name}"))?;
        }
        Ok(())
    }
}

impl Drop for ShardDatabases {
    fn drop(&mut self) {
        if let Err(error) = self.drop_leftovers() {
            ui::warn(format!(
                "could not drop the shards' databases ({error:#}); `cargo xtask db-down --volumes` removes the test cluster"
            ));
        }
    }
}
