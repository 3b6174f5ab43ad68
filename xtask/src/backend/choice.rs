//! Which backend a command uses: the flag or `DB_BACKEND`, else the `auto` rules over what the machine offers.

use std::fmt;

use anyhow::{Result, bail};

use super::{Backend, BackendChoice, BackendKind, Docker, External, Local, Selected, memory};
use crate::{config::Config, context::Ctx, ui};

/// Facts about the machine that decide `auto`; gathered lazily because probing Docker costs time.
pub trait Probe {
    fn recorded_backend(&self) -> Option<BackendKind>;
    fn docker(&self) -> Result<(), DockerProblem>;
    fn local(&self) -> Result<(), String>;
    /// Whether `kind` may hold the project's data; `true` when that cannot be told.
    fn holds_data(&self, kind: BackendKind) -> bool;
}

/// Why docker cannot be used: the engine itself, or only the image, so that `auto` says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerProblem {
    /// No compose, or no engine whose daemon answers.
    Engine(String),
    /// The engine answers, but the image is not present and cannot be pulled.
    Image(String),
}

impl DockerProblem {
    /// What `auto` found, for the announced reason.
    fn finding(&self, image: &str) -> String {
        match self {
            DockerProblem::Engine(_) => "no usable container engine".into(),
            DockerProblem::Image(_) => format!(
                "the container engine answers but the image {image} is missing and cannot be pulled"
            ),
        }
    }

    /// What makes docker usable again.
    fn way_out(&self) -> &'static str {
        match self {
            DockerProblem::Engine(_) => "install and start Docker",
            DockerProblem::Image(_) => {
                "pull the image while online or set POSTGRES_IMAGE to an image you have"
            }
        }
    }
}

impl fmt::Display for DockerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerProblem::Engine(why) | DockerProblem::Image(why) => f.write_str(why),
        }
    }
}

/// The outcome of the `auto` rules, before any backend is built.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision {
    pub kind: BackendKind,
    pub reason: String,
    pub warning: Option<String>,
}

/// The backend that `choice` names, or the one the `auto` rules pick.
pub fn decide(choice: BackendChoice, cfg: &Config, probe: &dyn Probe) -> Result<Decision> {
    let kind = match choice {
        BackendChoice::Docker => BackendKind::Docker,
        BackendChoice::Local => BackendKind::Local,
        BackendChoice::External => BackendKind::External,
        BackendChoice::Auto => return decide_auto(cfg, probe),
    };
    // The flag wins over DB_BACKEND, so DB_BACKEND chose only when it names this backend.
    let from_env = cfg
        .lookup
        .value("DB_BACKEND")
        .is_some_and(|v| v.eq_ignore_ascii_case(kind.name()));
    let how = if from_env { "DB_BACKEND" } else { "--backend" };
    Ok(Decision::quiet(kind, format!("chosen by {how}")))
}

/// The `auto` rules, in order. They are documented in MIGRATIONS.md; keep the two in step.
fn decide_auto(cfg: &Config, probe: &dyn Probe) -> Result<Decision> {
    if !cfg.host_is_local() {
        return Ok(Decision::quiet(
            BackendKind::External,
            format!(
                "auto: DATABASE_URL points at the non-local host {:?}",
                cfg.host()
            ),
        ));
    }
    if cfg.ci && cfg.url_is_explicit() {
        return Ok(Decision::quiet(
            BackendKind::External,
            "auto: CI is set and DATABASE_URL names the CI service".into(),
        ));
    }
    if let Some(kind) = probe.recorded_backend() {
        return decide_recorded(kind, probe);
    }
    let docker_problem = match probe.docker() {
        Ok(()) => {
            return Ok(Decision::quiet(
                BackendKind::Docker,
                "auto: a container engine answers".into(),
            ));
        }
        Err(why) => why,
    };
    let way_out = docker_problem.way_out();
    match probe.local() {
        Ok(()) => Ok(Decision {
            kind: BackendKind::Local,
            reason: format!(
                "auto: {}, PostgreSQL binaries found",
                docker_problem.finding(&cfg.image)
            ),
            warning: Some(format!(
                "docker is not usable ({docker_problem}); falling back to a local cluster ({way_out} to use docker)"
            )),
        }),
        Err(local_problem) => bail!(
            "no PostgreSQL to run: docker is not usable ({docker_problem}) and {local_problem}; {way_out}, install the PostgreSQL server binaries (apt install postgresql, brew install postgresql@16), or set DATABASE_URL and pass --backend external"
        ),
    }
}

/// Stays with the backend that holds the project's data, or fails naming it and the way back:
/// switching would silently hand the developer another server.
fn decide_recorded(kind: BackendKind, probe: &dyn Probe) -> Result<Decision> {
    let (problem, other) = match kind {
        BackendKind::Docker => (
            probe.docker().err().map(|p| (p.to_string(), p.way_out())),
            BackendKind::Local,
        ),
        BackendKind::Local => (
            probe
                .local()
                .err()
                .map(|why| (why, "install the PostgreSQL server binaries or set PG_BIN")),
            BackendKind::Docker,
        ),
        BackendKind::External => (None, BackendKind::External),
    };
    let Some((why, way_back)) = problem else {
        return Ok(Decision::quiet(
            kind,
            format!("auto: the project's data lives in the {kind} backend"),
        ));
    };
    let elsewhere = if probe.holds_data(other) {
        format!("the {other} backend's own, separate data")
    } else {
        format!("a new, empty {other} server")
    };
    bail!(
        "the project's data lives in the {kind} backend, which is unavailable ({why}): {way_back} to get back to it, or pass --backend {other} for {elsewhere}"
    )
}

impl Decision {
    /// A decision with nothing to warn about.
    fn quiet(kind: BackendKind, reason: String) -> Decision {
        Decision {
            kind,
            reason,
            warning: None,
        }
    }
}

struct MachineProbe<'a> {
    ctx: &'a Ctx,
}

impl Probe for MachineProbe<'_> {
    fn recorded_backend(&self) -> Option<BackendKind> {
        memory::recorded_backend(&self.ctx.cfg)
    }

    fn docker(&self) -> Result<(), DockerProblem> {
        Docker::detect(self.ctx)
            .map_err(|e| DockerProblem::Engine(format!("{e:#}")))?
            .check_usable(self.ctx)
    }

    fn local(&self) -> Result<(), String> {
        crate::pg_install::choose_server(self.ctx)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }

    fn holds_data(&self, kind: BackendKind) -> bool {
        memory::holds_data(self.ctx, kind)
    }
}

pub fn select(ctx: &Ctx, choice: BackendChoice) -> Result<Selected> {
    let decision = decide(choice, &ctx.cfg, &MachineProbe { ctx })?;
    if let Some(warning) = &decision.warning {
        ui::warn(warning);
    }
    let backend: Box<dyn Backend> = match decision.kind {
        BackendKind::Docker => Box::new(Docker::detect(ctx)?),
        BackendKind::Local => Box::new(Local::new(ctx)?),
        BackendKind::External => Box::new(External),
    };
    Ok(Selected {
        backend,
        reason: decision.reason,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Lookup;

    /// What the docker probe finds.
    #[derive(Debug, Clone, Copy)]
    enum Engine {
        Usable,
        Down,
        NoImage,
    }

    struct FakeProbe {
        recorded: Option<BackendKind>,
        docker: Engine,
        local: Result<(), &'static str>,
        holding: &'static [BackendKind],
    }

    impl FakeProbe {
        fn new(
            recorded: Option<BackendKind>,
            docker: Engine,
            local: Result<(), &'static str>,
        ) -> FakeProbe {
            FakeProbe {
                recorded,
                docker,
                local,
                holding: &[],
            }
        }
    }

    impl Probe for FakeProbe {
        fn recorded_backend(&self) -> Option<BackendKind> {
            self.recorded
        }
        fn docker(&self) -> Result<(), DockerProblem> {
            match self.docker {
                Engine::Usable => Ok(()),
                Engine::Down => Err(DockerProblem::Engine("daemon not running".into())),
                Engine::NoImage => Err(DockerProblem::Image(
                    "image postgres:16-alpine is not present and cannot be pulled (offline)".into(),
                )),
            }
        }
        fn local(&self) -> Result<(), String> {
            self.local.map_err(str::to_owned)
        }
        fn holds_data(&self, kind: BackendKind) -> bool {
            self.holding.contains(&kind)
        }
    }

    const UP: Engine = Engine::Usable;
    const DOWN: Engine = Engine::Down;
    const NO_IMAGE: Engine = Engine::NoImage;
    const BINS: Result<(), &str> = Ok(());
    const NO_BINS: Result<(), &str> = Err("no PostgreSQL binaries");

    fn default_cfg() -> Config {
        Config::from_lookup(Path::new("/p"), Lookup::from_maps(&[], &[])).unwrap()
    }

    /// (process environment, recorded backend, docker probe, local probe) => expected kind, or `None` for an error.
    type Row = (
        &'static [(&'static str, &'static str)],
        Option<BackendKind>,
        Engine,
        Result<(), &'static str>,
        Option<BackendKind>,
    );

    #[test]
    fn auto_choice_table() {
        use BackendKind::*;
        let ci_url = &[
            ("CI", "true"),
            ("DATABASE_URL", "postgres://t:t@localhost:5432/t"),
        ];
        let table: &[Row] = &[
            (&[], None, UP, BINS, Some(Docker)),
            (&[], None, DOWN, BINS, Some(Local)),
            (&[], None, DOWN, NO_BINS, None),
            (&[], None, NO_IMAGE, BINS, Some(Local)),
            (&[], None, NO_IMAGE, NO_BINS, None),
            (ci_url, None, UP, BINS, Some(External)),
            (&[("CI", "true")], None, DOWN, BINS, Some(Local)),
            (
                &[("DATABASE_URL", "postgres://t:t@db.example.com/t")],
                None,
                UP,
                BINS,
                Some(External),
            ),
            (
                &[("DATABASE_URL", "postgres://t:t@localhost:5432/t")],
                None,
                UP,
                BINS,
                Some(Docker),
            ),
            (&[], Some(Local), UP, BINS, Some(Local)),
            (&[], Some(Local), NO_IMAGE, BINS, Some(Local)),
            (&[], Some(Docker), UP, BINS, Some(Docker)),
            (&[], Some(Docker), DOWN, BINS, None),
            (&[], Some(Docker), NO_IMAGE, BINS, None),
            (&[], Some(Local), UP, NO_BINS, None),
        ];
        for (i, (env, recorded, docker, local, expected)) in table.iter().enumerate() {
            let cfg = Config::from_lookup(Path::new("/p"), Lookup::from_maps(env, &[])).unwrap();
            let probe = FakeProbe::new(*recorded, *docker, *local);
            let got = decide(BackendChoice::Auto, &cfg, &probe);
            match (expected, got) {
                (Some(kind), Ok(decision)) => {
                    assert_eq!(decision.kind, *kind, "row {i}");
                    assert!(
                        decision.reason.starts_with("auto: "),
                        "row {i}: {}",
                        decision.reason
                    );
                }
                (None, Err(e)) => assert_eq!(e.to_string().lines().count(), 1, "row {i}"),
                (expected, got) => panic!(
                    "row {i}: expected {expected:?}, got {:?}",
                    got.map(|d| d.kind)
                ),
            }
        }
    }

    #[test]
    fn fallback_to_local_warns() {
        let probe = FakeProbe::new(None, DOWN, BINS);
        let decision = decide(BackendChoice::Auto, &default_cfg(), &probe).unwrap();
        assert!(decision.warning.unwrap().contains("daemon not running"));
        assert_eq!(
            decision.reason,
            "auto: no usable container engine, PostgreSQL binaries found"
        );
    }

    #[test]
    fn a_missing_image_is_not_called_a_missing_engine() {
        let probe = FakeProbe::new(None, NO_IMAGE, BINS);
        let decision = decide(BackendChoice::Auto, &default_cfg(), &probe).unwrap();
        assert_eq!(decision.kind, BackendKind::Local);
        assert_eq!(
            decision.reason,
            "auto: the container engine answers but the image postgres:16-alpine is missing and cannot be pulled, PostgreSQL binaries found"
        );
        let warning = decision.warning.unwrap();
        assert!(warning.contains("POSTGRES_IMAGE"), "{warning}");
        let probe = FakeProbe::new(None, NO_IMAGE, NO_BINS);
        let err = decide(BackendChoice::Auto, &default_cfg(), &probe).unwrap_err();
        assert!(err.to_string().contains("POSTGRES_IMAGE"), "{err}");
    }

    #[test]
    fn explicit_choice_needs_no_probe() {
        let probe = FakeProbe::new(Some(BackendKind::Docker), DOWN, NO_BINS);
        let decision = decide(BackendChoice::Local, &default_cfg(), &probe).unwrap();
        assert_eq!(decision.kind, BackendKind::Local);
        assert_eq!(decision.reason, "chosen by --backend");
    }

    #[test]
    fn no_way_out_names_all_ways_out() {
        let probe = FakeProbe::new(None, DOWN, NO_BINS);
        let err = decide(BackendChoice::Auto, &default_cfg(), &probe)
            .unwrap_err()
            .to_string();
        for way_out in ["Docker", "PostgreSQL server binaries", "--backend external"] {
            assert!(err.contains(way_out), "{err}");
        }
    }

    /// (recorded backend, docker probe, local probe, backends holding data) => fragments of the error.
    type RecordedCase = (
        BackendKind,
        Engine,
        Result<(), &'static str>,
        &'static [BackendKind],
        &'static [&'static str],
    );

    #[test]
    fn an_unavailable_recorded_backend_names_where_the_data_is() {
        use BackendKind::*;
        let cases: &[RecordedCase] = &[
            (
                Docker,
                NO_IMAGE,
                BINS,
                &[Docker, Local],
                &[
                    "data lives in the docker backend",
                    "set POSTGRES_IMAGE to an image you have to get back to it",
                    "--backend local for the local backend's own, separate data",
                ],
            ),
            (
                Docker,
                DOWN,
                BINS,
                &[Docker],
                &[
                    "daemon not running",
                    "--backend local for a new, empty local server",
                ],
            ),
            (
                Local,
                UP,
                NO_BINS,
                &[Local, Docker],
                &[
                    "data lives in the local backend",
                    "no PostgreSQL binaries",
                    "--backend docker for the docker backend's own",
                ],
            ),
        ];
        for (recorded, docker, local, holding, fragments) in cases {
            let probe = FakeProbe {
                holding,
                ..FakeProbe::new(Some(*recorded), *docker, *local)
            };
            let err = decide(BackendChoice::Auto, &default_cfg(), &probe)
                .unwrap_err()
                .to_string();
            assert_eq!(err.lines().count(), 1, "{err}");
            for fragment in *fragments {
                assert!(err.contains(fragment), "{fragment:?} not in {err}");
            }
        }
    }
}
