//! The remembered backend: which one holds the project's data, so that `auto` never switches to an empty server.

use std::{fs, path::PathBuf};

use anyhow::{Context, Result};

use super::{BackendKind, Docker};
use crate::{cluster_dir::Place, config::Config, context::Ctx, ui};

fn marker_path(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("backend")
}

/// Which backend holds the project's data, so that `auto` never switches to an empty server.
pub fn recorded_backend(cfg: &Config) -> Option<BackendKind> {
    let text = fs::read_to_string(marker_path(cfg)).ok()?;
    BackendKind::from_name(text.trim())
}

/// What a run on one backend does to the remembered one.
#[derive(Debug, PartialEq, Eq)]
enum Remember {
    /// Remember the backend used: nothing else holds data (or it already is the one).
    Record,
    /// Leave the marker on this backend, which still holds the project's data.
    Keep(BackendKind),
    /// External servers are never remembered.
    Nothing,
}

/// Never moves `auto` away from a backend that still holds data: an explicit `--backend` for
/// one run must not make later runs fail or start on another server.
fn remember_rule(
    recorded: Option<BackendKind>,
    used: BackendKind,
    holds_data: impl FnOnce(BackendKind) -> bool,
) -> Remember {
    match recorded {
        _ if used == BackendKind::External => Remember::Nothing,
        Some(kind) if kind != used && kind != BackendKind::External && holds_data(kind) => {
            Remember::Keep(kind)
        }
        _ => Remember::Record,
    }
}

/// Remembers that `used` holds the project's data, unless the remembered backend still holds
/// data; then says so in one line, naming that backend.
pub fn remember_backend(ctx: &Ctx, used: BackendKind) -> Result<()> {
    let recorded = recorded_backend(&ctx.cfg);
    match remember_rule(recorded, used, |kind| holds_data(ctx, kind)) {
        Remember::Record => record_backend(&ctx.cfg, used),
        Remember::Keep(holder) => {
            ui::info(format!(
                "note: the {holder} backend still holds the project's data, so `auto` stays with it; pass --backend {used} (or set DB_BACKEND={used}) whenever you want this {used} server"
            ));
            Ok(())
        }
        Remember::Nothing => Ok(()),
    }
}

fn record_backend(cfg: &Config, kind: BackendKind) -> Result<()> {
    if kind == BackendKind::External {
        return Ok(());
    }
    fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("cannot create {}", cfg.state_dir.display()))?;
    fs::write(marker_path(cfg), format!("{kind}\n"))
        .with_context(|| format!("cannot write {}", marker_path(cfg).display()))
}

pub fn forget_backend(cfg: &Config, kind: BackendKind) -> Result<()> {
    if recorded_backend(cfg) == Some(kind) {
        fs::remove_file(marker_path(cfg))
            .with_context(|| format!("cannot remove {}", marker_path(cfg).display()))?;
    }
    Ok(())
}

/// Whether `kind` may hold the project's data. `true` when that cannot be told (the engine
/// does not answer), so that the remembered backend is never dropped on a guess.
pub(super) fn holds_data(ctx: &Ctx, kind: BackendKind) -> bool {
    match kind {
        BackendKind::Docker => Docker::detect(ctx)
            .and_then(|docker| docker.holds_data(ctx))
            .unwrap_or(true),
        BackendKind::Local => Place::developer(&ctx.cfg.state_dir).is_occupied(),
        BackendKind::External => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_run_elsewhere_never_moves_the_remembered_backend_off_its_data() {
        use BackendKind::*;
        // (remembered, used now, remembered still holds data) => what happens to the marker
        let table = [
            (None, Docker, false, Remember::Record),
            (None, Local, false, Remember::Record),
            (Some(Local), Local, true, Remember::Record),
            (Some(Local), Docker, true, Remember::Keep(Local)),
            (Some(Docker), Local, true, Remember::Keep(Docker)),
            (Some(Local), Docker, false, Remember::Record),
            (Some(Docker), Local, false, Remember::Record),
            (Some(Local), External, true, Remember::Nothing),
            (None, External, false, Remember::Nothing),
        ];
        for (i, (recorded, used, holds, expected)) in table.into_iter().enumerate() {
            assert_eq!(
                remember_rule(recorded, used, |_| holds),
                expected,
                "row {i}"
            );
        }
    }
}
