//! The lifecycle steps that commands share: bring a server up, prove it is ours, and pick the
//! server the test suite runs on. Commands call these; they never call each other.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::{
    Backend, BackendChoice, BackendKind, Local, Selected, remember_backend, select, wait_ready,
};
use crate::context::Ctx;
use crate::pg::{self, Client};
use crate::ui;

/// A server that accepts the configured credentials, and the backend that runs it.
pub struct Ready {
    pub selected: Selected,
    pub client: Client,
}

/// Chooses the backend, starts it if needed and waits until the target database answers.
pub fn ensure_up(ctx: &Ctx, choice: BackendChoice, timeout: Duration) -> Result<Ready> {
    let selected = select(ctx, choice)?;
    selected.announce(ctx);
    let client = bring_up(ctx, selected.backend.as_ref(), timeout)?;
    remember_backend(ctx, selected.kind())?;
    Ok(Ready { selected, client })
}

/// Starts `backend` unless it runs, waits for an authenticated connection, and proves that
/// the server answering is the backend's own.
pub fn bring_up(ctx: &Ctx, backend: &dyn Backend, timeout: Duration) -> Result<Client> {
    let started_at = Instant::now();
    let deadline = started_at + timeout;
    let started = backend.start(ctx, deadline)?;
    let mut client = wait_ready(ctx, backend, deadline)?;
    backend.check_identity(ctx, &mut client)?;
    let how = if started {
        "started"
    } else {
        "already running"
    };
    ui::info(format!(
        "ready: PostgreSQL {} ({how}, {:.2}s)",
        client.server_version(),
        started_at.elapsed().as_secs_f64()
    ));
    Ok(client)
}

/// On the local backend, tests get a cluster of their own, tuned for speed, on a port of its
/// own; elsewhere (docker, a CI service) they use the same server, in databases of their own.
/// Returns the context for the test cluster, or `None` when tests use `ctx`'s server.
pub fn test_server(ctx: &Ctx, choice: BackendChoice, timeout: Duration) -> Result<Option<Ctx>> {
    let selected = select(ctx, choice)?;
    if selected.kind() != BackendKind::Local {
        selected.announce(ctx);
        bring_up(ctx, selected.backend.as_ref(), timeout)?;
        remember_backend(ctx, selected.kind())?;
        return Ok(None);
    }
    let cluster = Local::for_tests(ctx)?;
    let port = cluster.test_port(ctx)?;
    let test_ctx = Ctx {
        sh: crate::context::shell(&ctx.cfg.root)?,
        cfg: ctx.cfg.with_port(port),
    };
    ui::info(format!(
        "backend: local ({}); tests use a separate cluster tuned for speed, in {}",
        selected.reason,
        cluster.describe_dir()
    ));
    ui::info(format!("server:  {}", test_ctx.cfg.redacted_url()));
    bring_up(&test_ctx, &cluster, timeout)?;
    Ok(Some(test_ctx))
}

/// Refuses a destructive step on a server that is not on this machine, unless `--force` says
/// so. Decided before connecting, so that a mistyped URL cannot destroy anything.
pub fn guard_remote(ctx: &Ctx, force: bool, action: &str) -> Result<()> {
    if !ctx.cfg.host_is_local() && !force {
        bail!(
            "refusing to {action} database {:?} on the non-local host {:?}: this changes or deletes its data; pass --force if you mean it",
            ctx.cfg.database,
            ctx.cfg.host()
        );
    }
    Ok(())
}

/// Stops the chosen backend's server, and on the local backend the test cluster too; with
/// `delete_data`, deletes their data and forgets the backend. Returns what it found and did,
/// in one line. With `auto` and no backend remembered, only a cluster that exists here is
/// stopped: the `auto` rules would probe docker, pulling an image only to stop nothing.
pub fn stop(ctx: &Ctx, choice: BackendChoice, delete_data: bool) -> Result<String> {
    use super::Halt;
    let cfg = &ctx.cfg;
    // Where `decide_auto` would probe: a local URL, outside CI's service, nothing remembered.
    let unremembered = choice == BackendChoice::Auto
        && super::recorded_backend(cfg).is_none()
        && cfg.host_is_local()
        && !(cfg.ci && cfg.url_is_explicit());
    let selected = match unremembered {
        false => select(ctx, choice)?,
        true if crate::cluster_dir::any_in(&cfg.state_dir) => Selected {
            backend: Box::new(Local::new(ctx)?),
            reason: "auto: no backend is remembered, but a local cluster exists here".into(),
        },
        true => {
            let nothing = Halt::Nothing(format!(
                "no backend has run with the state in {} (pass --backend docker to stop a compose service anyway)",
                cfg.state_dir.display()
            ));
            return Ok(nothing.summary(delete_data));
        }
    };
    selected.announce(ctx);
    let halt = if selected.kind() == BackendKind::Local {
        Local::stop_all(ctx, delete_data)?
    } else {
        selected.backend.stop(ctx, delete_data)?
    };
    if delete_data {
        super::forget_backend(cfg, selected.kind())?;
    }
    Ok(halt.summary(delete_data))
}

/// Runs `step` on a new, empty scratch database on `client`'s server, named after `database`
/// and `purpose` (`app_schema_dump`), and drops it afterwards whatever `step` returned. A
/// leftover of an interrupted run is dropped first. Commands that use the same scratch database
/// at once take turns (a session advisory lock). `step` gets the scratch database's name.
pub fn with_scratch_database<T>(
    client: &mut Client,
    database: &str,
    purpose: &str,
    step: impl FnOnce(&str) -> Result<T>,
) -> Result<T> {
    let mut base = database.to_owned();
    base.truncate(40);
    let scratch = format!("{base}_{purpose}");
    // Another command's use of the same scratch database (a second terminal, a parallel CI step)
    // waits for this one rather than having it dropped from under it; the session's lock goes
    // when its process does, however it ends.
    let lock = scratch_lock_key(&scratch);
    let deadline = Instant::now() + SCRATCH_LOCK_PATIENCE;
    // Polled, not waited for in one statement, so the connection's read timeout never ends the wait.
    while client
        .query_value(&format!("SELECT pg_try_advisory_lock({lock})"))
        .with_context(|| format!("cannot lock the scratch database {scratch:?}"))?
        .as_deref()
        != Some("t")
    {
        if Instant::now() >= deadline {
            bail!(
                "another command has used the scratch database {scratch:?} for over {} s: wait for it to finish, then run this again",
                SCRATCH_LOCK_PATIENCE.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop_scratch(client, &scratch);
    let outcome = client
        .query(&format!("CREATE DATABASE {}", pg::ident(&scratch)))
        .with_context(|| format!("cannot create the scratch database {scratch:?}"))
        .and_then(|_| step(&scratch));
    drop_scratch(client, &scratch);
    if let Err(e) = client.query(&format!("SELECT pg_advisory_unlock({lock})")) {
        ui::debug(format!(
            "the scratch database's lock goes with the session: {e}"
        ));
    }
    outcome
}

/// How long a command waits for another's use of the same scratch database (a dump or a lint of
/// every migration takes seconds).
const SCRATCH_LOCK_PATIENCE: Duration = Duration::from_secs(300);

/// The advisory lock key of a scratch database: a stable hash of its name, in its own space
/// (the migration runner's and the test harness's keys hash other texts).
fn scratch_lock_key(scratch: &str) -> i64 {
    use dbops_common::fnv::{FNV_OFFSET_BASIS, fnv1a};
    let hash = fnv1a(
        fnv1a(FNV_OFFSET_BASIS, b"dbops scratch database\0"),
        scratch.as_bytes(),
    );
    i64::from_ne_bytes(hash.to_ne_bytes())
}

fn drop_scratch(client: &mut Client, name: &str) {
    if let Err(e) = client.query(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        pg::ident(name)
    )) {
        ui::warn(format!("could not drop the scratch database {name:?}: {e}"));
    }
}
