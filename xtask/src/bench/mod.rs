//! `cargo xtask bench`: per-test database cost, local start-up and no-op migrations, as one table;
//! with `--shards`, the whole suite's wall time in parallel shards (`shards`).

mod shards;

use std::{
    fmt::Write as _,
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    backend::{BackendChoice, lifecycle::test_server},
    bins::{cargo_program, release_bin, workspace_bin},
    config::Config,
    context::Ctx,
    ui,
};

const BENCHMARKS_FILE: &str = "BENCHMARKS.md";
const SECTION_START: &str = "<!-- bench:start -->";
const SECTION_END: &str = "<!-- bench:end -->";

#[derive(clap::Args)]
pub struct Args {
    /// Also write the table into BENCHMARKS.md, between its bench markers.
    #[arg(long)]
    pub markdown: bool,

    /// Rounds of the per-test measurements, each one sample of every approach, interleaved.
    #[arg(long, default_value = "30", value_parser = parse_runs, value_name = "N")]
    pub runs: u32,

    /// Which builds of the per-test measurements to run: what a test waits for differs between
    /// a debug build (what `cargo test` builds) and a release one.
    #[arg(long, value_enum, default_value_t = Profiles::Both)]
    pub profile: Profiles,

    /// Also time the whole suite (`db-test`) in 1, 2 and 4 shards run at once, each on a
    /// database of its own on the test server (a few minutes).
    #[arg(long, conflicts_with = "pg_bins")]
    pub shards: bool,

    /// Measure the local backend with each of these PostgreSQL bin directories, side by side in
    /// this one run, each in a throwaway project with its own test cluster (repeatable).
    #[arg(long = "pg-bin", value_name = "DIR")]
    pub pg_bins: Vec<PathBuf>,
}

/// The builds `--profile` chooses.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profiles {
    Debug,
    Release,
    Both,
}

impl Profiles {
    fn debug(self) -> bool {
        self != Profiles::Release
    }

    fn release(self) -> bool {
        self != Profiles::Debug
    }
}

fn parse_runs(raw: &str) -> Result<u32, String> {
    raw.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{raw:?} is not a positive number of runs"))
}

/// One line of the table.
#[derive(Default)]
struct Row {
    what: String,
    runs: usize,
    median_ms: f64,
    note: String,
}

pub fn run(ctx: &Ctx, choice: BackendChoice, args: Args) -> Result<ExitCode> {
    let (rows, versions) = if args.pg_bins.is_empty() {
        (on_the_configured_server(ctx, choice, &args)?, vec![])
    } else {
        side_by_side(ctx, &args.pg_bins, args.runs, args.profile)?
    };
    let table = render(&rows);
    println!("{table}");
    if args.markdown {
        write_markdown(ctx, &table, args.runs, &versions)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Per-test databases on the server `db-test` uses, and the local backend's start-up.
fn on_the_configured_server(ctx: &Ctx, choice: BackendChoice, args: &Args) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let test_ctx = test_server(ctx, choice, Duration::from_secs(60))?;
    let server = test_ctx.as_ref().unwrap_or(ctx);
    let db_bench = DbBenchBinaries::build(ctx, args.profile)?;
    per_test_database(server, &db_bench, args.runs, &mut rows)?;
    if args.shards {
        shards::suite_in_shards(server, &mut rows)?;
    }
    match LocalScratch::new(ctx, None) {
        Some(scratch) => {
            ui::info("measuring the local backend's start-up and a no-op db-migrate");
            local_backend(&scratch, true, &mut rows)?;
        }
        None => ui::warn("no PostgreSQL server binaries: the local backend rows are skipped"),
    }
    Ok(rows)
}

/// The same rows for each PostgreSQL installation, each in a throwaway project (its own
/// cluster and test cluster, deleted afterwards), interleaved so that versions sit side by side.
fn side_by_side(
    ctx: &Ctx,
    pg_bins: &[PathBuf],
    runs: u32,
    profiles: Profiles,
) -> Result<(Vec<Row>, Vec<String>)> {
    let db_bench = DbBenchBinaries::build(ctx, profiles)?;
    let mut per_version = Vec::new();
    let mut versions = Vec::new();
    for (index, pg_bin) in pg_bins.iter().enumerate() {
        let scratch = LocalScratch::new(ctx, Some(pg_bin)).with_context(|| {
            format!(
                "{} holds no PostgreSQL server binaries that run: pass a bin directory to --pg-bin",
                pg_bin.display()
            )
        })?;
        let scratch_ctx = scratch.ctx(ctx)?;
        let version = crate::pg_install::choose_server(&scratch_ctx)?
            .install
            .version;
        ui::info(format!(
            "measuring PostgreSQL {version} ({})",
            pg_bin.display()
        ));
        let mut rows = Vec::new();
        let test_ctx = test_server(&scratch_ctx, BackendChoice::Local, Duration::from_secs(60))?
            .context("the local backend has no test cluster")?;
        per_test_database(&test_ctx, &db_bench, runs, &mut rows)?;
        local_backend(&scratch, index == 0, &mut rows)?;
        for row in &mut rows {
            row.what = format!("PostgreSQL {version}: {}", row.what);
        }
        per_version.push(rows);
        versions.push(version);
    }
    let longest = per_version.iter().map(Vec::len).max().unwrap_or(0);
    let mut interleaved = Vec::new();
    for i in 0..longest {
        for rows in &mut per_version {
            if let Some(row) = rows.get_mut(i) {
                interleaved.push(std::mem::take(row));
            }
        }
    }
    Ok((interleaved, versions))
}

/// The `db-bench` binaries of the builds `--profile` chose, as `(profile name, path)`.
struct DbBenchBinaries(Vec<(&'static str, PathBuf)>);

impl DbBenchBinaries {
    fn build(ctx: &Ctx, profiles: Profiles) -> Result<DbBenchBinaries> {
        let mut binaries = Vec::new();
        if profiles.debug() {
            binaries.push(("debug", workspace_bin(ctx, "db-bench")?));
        }
        if profiles.release() {
            binaries.push(("release", release_bin(ctx, "dbops-bench", "db-bench")?));
        }
        Ok(DbBenchBinaries(binaries))
    }
}

/// What a test waits for to get its database, ours against a real `#[sqlx::test]`, per build.
fn per_test_database(
    ctx: &Ctx,
    db_bench: &DbBenchBinaries,
    runs: u32,
    rows: &mut Vec<Row>,
) -> Result<()> {
    for (profile, binary) in &db_bench.0 {
        ui::info(format!(
            "measuring per-test databases in a {profile} build, beside a real #[sqlx::test] ({runs} interleaved rounds)"
        ));
        let report = DbBench::parse(&run_db_bench(ctx, binary, runs)?);
        for n in [1, 50, 200] {
            for (metric, label) in METRICS {
                let Some(found) = report.find(metric, n) else {
                    continue;
                };
                rows.push(Row {
                    what: format!(
                        "per-test database ({profile}): {label}, {n} migration{}",
                        if n == 1 { "" } else { "s" }
                    ),
                    runs: found.samples,
                    median_ms: found.median_ms,
                    note: report.note(metric, n, found.median_ms, profile),
                });
            }
        }
    }
    Ok(())
}

/// `db-bench`'s metrics, in the table's order, with their labels.
const METRICS: [(&str, &str); 8] = [
    (
        "whole",
        "whole test under db-test (claim + connect + drop handed to the filler)",
    ),
    (
        "clone",
        "pooled clone claimed + connect (part of the whole test)",
    ),
    (
        "sqlx_test",
        "whole test of a real #[sqlx::test] (create + migrate + drop)",
    ),
    (
        "whole_sync",
        "whole test under plain cargo, no filler (+ drop and refill)",
    ),
    ("ondemand", "on-demand clone + connect"),
    ("peer", "fresh + full SeaORM migrate (emulated peer)"),
    (
        "peer_whole",
        "whole test of the emulated peer (+ close and drop)",
    ),
    ("floor", "server's CREATE DATABASE … TEMPLATE (floor)"),
];

/// Runs a `db-bench` binary, which does the measuring (it links the harness that xtask must
/// not), and returns what it printed.
fn run_db_bench(ctx: &Ctx, db_bench: &Path, runs: u32) -> Result<String> {
    let out = Command::from(
        ctx.sh
            .cmd(db_bench)
            .arg(runs.to_string())
            .env(
                "DATABASE_URL",
                crate::tls::url_for_sqlx(ctx.cfg.url.as_str()),
            )
            .quiet(),
    )
    .output()
    .context("cannot run db-bench")?;
    if !out.status.success() {
        bail!("db-bench failed: {}", crate::process::stderr_line(&out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One median that `db-bench` reports: a metric at a number of migrations.
struct Measured {
    metric: String,
    migrations: u32,
    median_ms: f64,
    samples: usize,
}

/// What `db-bench` printed: its clone strategy and its medians.
struct DbBench {
    strategy: String,
    results: Vec<Measured>,
}

impl DbBench {
    /// Reads db-bench's tab-separated lines; lines of other kinds are for humans and skipped.
    fn parse(text: &str) -> DbBench {
        let mut report = DbBench {
            strategy: String::new(),
            results: Vec::new(),
        };
        for line in text.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["info", "strategy", name, fsync] => report.strategy = format!("{name}, {fsync}"),
                ["result", metric, migrations, median, samples] => report.results.push(Measured {
                    metric: metric.to_string(),
                    migrations: migrations.parse::<u32>().unwrap_or(0),
                    median_ms: median.parse::<f64>().unwrap_or(f64::NAN),
                    samples: samples.parse::<usize>().unwrap_or(0),
                }),
                _ => {}
            }
        }
        report
    }

    fn find(&self, metric: &str, migrations: u32) -> Option<&Measured> {
        self.results
            .iter()
            .find(|r| r.metric == metric && r.migrations == migrations)
    }

    fn median_of(&self, metric: &str, migrations: u32) -> f64 {
        self.find(metric, migrations)
            .map_or(f64::NAN, |r| r.median_ms)
    }

    /// The row's note: each median against the baseline its target is stated in.
    fn note(&self, metric: &str, n: u32, median: f64, profile: &str) -> String {
        let whole_target = if profile == "release" { 5 } else { 10 };
        match metric {
            "clone" if n == 1 => format!("target ≤ 15 ms; {}", self.strategy),
            "clone" => format!(
                "{:.2}× the 1-migration claim",
                median / self.median_of("clone", 1)
            ),
            "ondemand" => format!(
                "{:.2}× the 1-migration clone",
                median / self.median_of("ondemand", 1)
            ),
            "peer" => format!(
                "{:.1}× the pooled claim",
                median / self.median_of("clone", n)
            ),
            "whole" if n == 1 => format!("target ≤ {whole_target} ms; {}", self.strategy),
            "whole" => format!(
                "{:.2}× the 1-migration whole test (target ≤ 1.2×)",
                median / self.median_of("whole", 1)
            ),
            "whole_sync" => format!(
                "{:.1}× the whole test with the filler",
                median / self.median_of("whole", n)
            ),
            "sqlx_test" => format!(
                "{:.1}× our whole test (target ≥ 20× at 200)",
                median / self.median_of("whole", n)
            ),
            "peer_whole" => format!("{:.1}× our whole test", median / self.median_of("whole", n)),
            _ => String::new(),
        }
    }
}

/// A throwaway local-backend project on a free port, driven through the xtask binary itself.
struct LocalScratch {
    state: tempfile::TempDir,
    port: u16,
    // Taken from the workspace build, which may have replaced the running binary's file.
    xtask: PathBuf,
    pg_bin: Option<PathBuf>,
}

impl LocalScratch {
    /// A throwaway project on the binaries in `pg_bin`, or on those the local backend chooses.
    fn new(ctx: &Ctx, pg_bin: Option<&Path>) -> Option<LocalScratch> {
        let pg_bin = pg_bin.map(Path::to_path_buf);
        let lookup = match &pg_bin {
            Some(dir) => ctx.cfg.lookup.with_value("PG_BIN", &dir.to_string_lossy()),
            None => ctx.cfg.lookup.clone(),
        };
        let probe = Ctx {
            sh: crate::context::shell(&ctx.cfg.root).ok()?,
            cfg: Config::from_lookup(&ctx.cfg.root, lookup).ok()?,
        };
        crate::pg_install::choose_server(&probe).ok()?;
        let xtask = workspace_bin(ctx, "xtask").ok()?;
        let state = tempfile::Builder::new()
            .prefix("xtask-bench-")
            .tempdir()
            .ok()?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(state.path(), fs::Permissions::from_mode(0o755)).ok()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        Some(LocalScratch {
            state,
            port,
            xtask,
            pg_bin,
        })
    }

    fn url(&self) -> String {
        format!("postgres://app:app@127.0.0.1:{}/app", self.port)
    }

    /// The settings the project's own commands see, for steps xtask takes in-process.
    fn ctx(&self, ctx: &Ctx) -> Result<Ctx> {
        let mut lookup = ctx
            .cfg
            .lookup
            .with_value("DB_BACKEND", "local")
            .with_value("DB_STATE_DIR", &self.state.path().to_string_lossy())
            .with_value("DATABASE_URL", &self.url());
        if let Some(dir) = &self.pg_bin {
            lookup = lookup.with_value("PG_BIN", &dir.to_string_lossy());
        }
        Ok(Ctx {
            sh: crate::context::shell(&ctx.cfg.root)?,
            cfg: Config::from_lookup(&ctx.cfg.root, lookup)?,
        })
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("DB_BACKEND", "local")
            .env("DB_STATE_DIR", self.state.path())
            .env("DATABASE_URL", self.url())
            .env_remove("CI");
        if let Some(dir) = &self.pg_bin {
            cmd.env("PG_BIN", dir);
        }
        crate::bins::without_package_vars(&mut cmd);
        cmd
    }

    /// Times `xtask ARGS`, run directly, so cargo's own check is not counted.
    fn time_xtask(&self, args: &[&str]) -> Result<f64> {
        time(self.command(&self.xtask, args))
    }
}

impl Drop for LocalScratch {
    fn drop(&mut self) {
        let _ = self
            .command(&self.xtask, &["-q", "db-down", "--volumes"])
            .output();
    }
}

fn time(mut cmd: Command) -> Result<f64> {
    let started = Instant::now();
    let out = cmd.output().context("cannot run the measured command")?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        bail!(
            "a measured command failed: {}",
            crate::process::stderr_line(&out)
        );
    }
    Ok(elapsed)
}

/// Start-up rows, and with `noop_migrate` the no-op `cargo xtask db-migrate` (cargo's cost,
/// the same whichever PostgreSQL runs, so measured once).
fn local_backend(scratch: &LocalScratch, noop_migrate: bool, rows: &mut Vec<Row>) -> Result<()> {
    const RUNS: usize = 5;
    let (mut cold, mut warm, mut running, mut noop) = (vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        scratch.time_xtask(&["-q", "db-down", "--volumes"])?;
        cold.push(scratch.time_xtask(&["-q", "db-up"])?);
        scratch.time_xtask(&["-q", "db-down"])?;
        warm.push(scratch.time_xtask(&["-q", "db-up"])?);
        running.push(scratch.time_xtask(&["-q", "db-up"])?);
    }
    let cargo = cargo_program();
    let root = crate::paths::project_root();
    let xtask_migrate = |scratch: &LocalScratch| {
        let mut cmd = scratch.command(Path::new(&cargo), &["xtask", "-q", "db-migrate"]);
        cmd.current_dir(&root);
        time(cmd)
    };
    if noop_migrate {
        xtask_migrate(scratch)?;
        for _ in 0..RUNS {
            noop.push(xtask_migrate(scratch)?);
        }
    }
    for (what, samples, note) in [
        (
            "local backend: cold start (initdb to ready)",
            &cold,
            "target ≤ 1.0 s; xtask db-up, no cargo",
        ),
        (
            "local backend: warm start (data kept, server stopped)",
            &warm,
            "xtask db-up, no cargo",
        ),
        (
            "local backend: already running",
            &running,
            "target ≤ 0.1 s; xtask db-up, no cargo",
        ),
        (
            "`cargo xtask db-migrate`, nothing pending",
            &noop,
            "target ≤ 1.0 s; cargo's checks included",
        ),
    ] {
        if samples.is_empty() {
            continue;
        }
        rows.push(Row {
            what: what.into(),
            runs: samples.len(),
            median_ms: dbops_common::stats::median(samples),
            note: note.into(),
        });
    }
    Ok(())
}

fn render(rows: &[Row]) -> String {
    let mut out = String::from("| measurement | runs | median | notes |\n|---|---:|---:|---|\n");
    for row in rows {
        let median = if row.median_ms >= 1000.0 {
            format!("{:.2} s", row.median_ms / 1000.0)
        } else {
            format!("{:.1} ms", row.median_ms)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {median} | {} |",
            row.what, row.runs, row.note
        );
    }
    out
}

fn write_markdown(ctx: &Ctx, table: &str, runs: u32, versions: &[String]) -> Result<()> {
    let path = ctx.cfg.root.join(BENCHMARKS_FILE);
    let existing = fs::read_to_string(&path)
        .unwrap_or_else(|_| format!("# Benchmarks\n\n{SECTION_START}\n{SECTION_END}\n"));
    let (Some(start), Some(end)) = (existing.find(SECTION_START), existing.find(SECTION_END))
    else {
        bail!(
            "{BENCHMARKS_FILE} has no {SECTION_START} … {SECTION_END} markers: add them where the table goes"
        );
    };
    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH
    );
    let command = match versions {
        [] => format!("`cargo xtask bench --markdown --runs {runs}`"),
        _ => format!(
            "`cargo xtask bench --markdown --runs {runs}{}` (PostgreSQL {})",
            " --pg-bin …".repeat(versions.len()),
            versions.join(", ")
        ),
    };
    let section = format!(
        "{SECTION_START}\nMeasured in one run with {command} on {machine}; medians.\n\n{table}{SECTION_END}"
    );
    let updated = format!(
        "{}{section}{}",
        &existing[..start],
        &existing[end + SECTION_END.len()..]
    );
    fs::write(&path, updated).with_context(|| format!("cannot write {}", path.display()))?;
    ui::info(format!("wrote the table into {BENCHMARKS_FILE}"));
    Ok(())
}
