//! The docker backend: the `postgres` service of `docker-compose.yml`, run by compose v2, v1 or podman.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use xshell::cmd;

use super::{
    Backend, BackendKind, DockerProblem, NotRunning,
    shared::{Halt, port_is_taken, port_taken_error},
};
use crate::context::Ctx;
use crate::process::{output, stderr_line};
use crate::{process, ui};

const SERVICE: &str = "postgres";

/// The service's data volume in `docker-compose.yml`.
const VOLUME: &str = "pgdata";

const ENGINE_REMEDY: &str = "start Docker (or podman), or use --backend local";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `docker compose`, the v2 plugin.
    DockerPlugin,
    /// A standalone `docker-compose`: the v1 Python tool or a v2 binary.
    Standalone,
    /// `podman compose`.
    Podman,
}

/// How to invoke compose, and with which project, file and engine CLI.
#[derive(Debug, Clone)]
pub struct Docker {
    flavor: Flavor,
    compose_program: PathBuf,
    engine_program: PathBuf,
    project: String,
    file: PathBuf,
}

impl Docker {
    /// Finds a compose implementation: `DOCKER_COMPOSE` if set, then `docker compose`, `docker-compose`, `podman compose`.
    pub fn detect(ctx: &Ctx) -> Result<Docker> {
        let project = project_name(ctx);
        let file = ctx.cfg.root.join("docker-compose.yml");
        let docker = which::which("docker").ok();
        if let Some(chosen) = ctx.cfg.lookup.value("DOCKER_COMPOSE") {
            return Docker::chosen(&chosen, docker, project, file);
        }
        if let Some(docker) = &docker
            && output(cmd!(ctx.sh, "{docker} compose version")).is_ok_and(|o| o.status.success())
        {
            return Ok(Docker::new(
                Flavor::DockerPlugin,
                docker,
                docker,
                project,
                file,
            ));
        }
        if let Ok(standalone) = which::which("docker-compose") {
            let engine = docker.clone().unwrap_or_else(|| PathBuf::from("docker"));
            return Ok(Docker::new(
                Flavor::Standalone,
                &standalone,
                &engine,
                project,
                file,
            ));
        }
        if let Ok(podman) = which::which("podman") {
            return Ok(Docker::new(Flavor::Podman, &podman, &podman, project, file));
        }
        if docker.is_some() {
            bail!(
                "docker is installed but compose is not: install the compose plugin (docker compose) or docker-compose"
            );
        }
        bail!("neither docker nor podman is installed")
    }

    /// `DOCKER_COMPOSE` names the implementation: `docker compose`, `podman compose`, or a path to a standalone binary.
    fn chosen(
        chosen: &str,
        docker: Option<PathBuf>,
        project: String,
        file: PathBuf,
    ) -> Result<Docker> {
        let engine_of = |name: &str| {
            which::which(name).with_context(|| {
                format!("DOCKER_COMPOSE={chosen:?} needs {name}, which is not installed")
            })
        };
        match chosen.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["docker", "compose"] => {
                let docker = engine_of("docker")?;
                Ok(Docker::new(
                    Flavor::DockerPlugin,
                    &docker,
                    &docker,
                    project,
                    file,
                ))
            }
            ["podman", "compose"] => {
                let podman = engine_of("podman")?;
                Ok(Docker::new(Flavor::Podman, &podman, &podman, project, file))
            }
            [program] => {
                let program = which::which(program).with_context(|| {
                    format!("DOCKER_COMPOSE={chosen:?} is not an installed program")
                })?;
                let engine = docker.unwrap_or_else(|| PathBuf::from("docker"));
                Ok(Docker::new(
                    Flavor::Standalone,
                    &program,
                    &engine,
                    project,
                    file,
                ))
            }
            _ => bail!(
                "DOCKER_COMPOSE={chosen:?} is not understood: use \"docker compose\", \"podman compose\" or the path of a docker-compose binary"
            ),
        }
    }

    pub fn new(
        flavor: Flavor,
        compose_program: &Path,
        engine_program: &Path,
        project: String,
        file: PathBuf,
    ) -> Docker {
        Docker {
            flavor,
            compose_program: compose_program.to_owned(),
            engine_program: engine_program.to_owned(),
            project,
            file,
        }
    }

    /// The full argument list for one compose subcommand.
    pub fn compose_args(&self, subcommand: &[&str]) -> Vec<OsString> {
        let mut args: Vec<OsString> = match self.flavor {
            Flavor::DockerPlugin | Flavor::Podman => vec!["compose".into()],
            Flavor::Standalone => vec![],
        };
        args.extend([
            "--project-name".into(),
            self.project.clone().into(),
            "--file".into(),
            self.file.clone().into(),
        ]);
        args.extend(subcommand.iter().map(OsString::from));
        args
    }

    fn compose<'a>(&self, ctx: &'a Ctx, subcommand: &[&str]) -> xshell::Cmd<'a> {
        let cfg = &ctx.cfg;
        ctx.sh
            .cmd(&self.compose_program)
            .args(self.compose_args(subcommand))
            .env("POSTGRES_USER", &cfg.user)
            .env("POSTGRES_PASSWORD", &cfg.password)
            .env("POSTGRES_DB", &cfg.database)
            .env("POSTGRES_PORT", cfg.port.to_string())
            .env("POSTGRES_IMAGE", &cfg.image)
    }

    /// The engine answers and the image is present or can be pulled; if not, which of the two.
    pub fn check_usable(&self, ctx: &Ctx) -> Result<(), DockerProblem> {
        self.check_engine(ctx)
            .map_err(|e| DockerProblem::Engine(format!("{e:#}")))?;
        self.ensure_image(ctx, false)
            .map_err(|e| DockerProblem::Image(format!("{e:#}")))
    }

    fn check_engine(&self, ctx: &Ctx) -> Result<()> {
        match self.engine_silence(ctx)? {
            None => Ok(()),
            Some(why) => bail!("{why}: {ENGINE_REMEDY}"),
        }
    }

    /// Why the engine's daemon does not answer, or `None` when it does.
    fn engine_silence(&self, ctx: &Ctx) -> Result<Option<String>> {
        let engine = &self.engine_program;
        let info = output(cmd!(ctx.sh, "{engine} info"))?;
        Ok((!info.status.success()).then(|| {
            format!(
                "the container engine's daemon does not answer ({})",
                stderr_line(&info)
            )
        }))
    }

    /// Whether the compose project's data volume exists, found by the labels compose gives it.
    pub fn holds_data(&self, ctx: &Ctx) -> Result<bool> {
        let engine = &self.engine_program;
        let project = format!("label=com.docker.compose.project={}", self.project);
        let volume = format!("label=com.docker.compose.volume={VOLUME}");
        let out = output(cmd!(
            ctx.sh,
            "{engine} volume ls --quiet --filter {project} --filter {volume}"
        ))?;
        if !out.status.success() {
            bail!("cannot list the engine's volumes: {}", stderr_line(&out));
        }
        Ok(!String::from_utf8_lossy(&out.stdout).trim().is_empty())
    }

    /// With `advise`, the error says what to do; `auto` words its own fallback instead.
    fn ensure_image(&self, ctx: &Ctx, advise: bool) -> Result<()> {
        let advice = if advise {
            ": pull it while online, set POSTGRES_IMAGE to a local image, or use --backend local"
        } else {
            ""
        };
        let engine = &self.engine_program;
        let image = &ctx.cfg.image;
        if output(cmd!(ctx.sh, "{engine} image inspect {image}"))?
            .status
            .success()
        {
            return Ok(());
        }
        ui::info(format!("pulling {image}…"));
        // xshell cannot bound a child's run time, and an offline pull may hang on DNS.
        let mut child = Command::new(engine)
            .args(["pull", image])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {} pull", engine.display()))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = child.try_wait().context("cannot wait for the image pull")? {
                if status.success() {
                    return Ok(());
                }
                let out = child
                    .wait_with_output()
                    .context("cannot read the image pull's output")?;
                bail!(
                    "image {image} is not present and cannot be pulled ({}){advice}",
                    stderr_line(&out)
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                bail!(
                    "pulling image {image} timed out: pull it while online, set POSTGRES_IMAGE to a local image, or use --backend local"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn container_id(&self, ctx: &Ctx) -> Result<Option<String>> {
        let out = output(self.compose(ctx, &["ps", "-q", SERVICE]))?;
        if !out.status.success() {
            bail!("compose ps failed: {}", stderr_line(&out));
        }
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok((!id.is_empty()).then_some(id))
    }

    /// The container's state and health, e.g. ("running", "healthy").
    fn container_state(&self, ctx: &Ctx, id: &str) -> Result<(String, String)> {
        let engine = &self.engine_program;
        let format = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}";
        let out = output(cmd!(ctx.sh, "{engine} inspect --format {format} {id}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace();
        Ok((
            parts.next().unwrap_or("missing").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        ))
    }

    fn wait_healthy(&self, ctx: &Ctx, id: &str, deadline: Instant) -> Result<()> {
        let mut spinner = ui::Spinner::new("waiting for the container's healthcheck");
        loop {
            let (status, health) = self.container_state(ctx, id)?;
            match (status.as_str(), health.as_str()) {
                ("running", "healthy" | "") => return Ok(()),
                ("exited" | "dead" | "missing", _) => {
                    bail!("the postgres container stopped ({status}): see `cargo xtask db-logs`")
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                bail!(
                    "the postgres container was not healthy in time (state {status} {health}): see `cargo xtask db-logs`, or raise --timeout"
                );
            }
            spinner.tick(&format!("{status} {health}"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn is_running(&self, ctx: &Ctx) -> Result<Option<String>> {
        match self.container_id(ctx)? {
            Some(id) if self.container_state(ctx, &id)?.0 == "running" => Ok(Some(id)),
            _ => Ok(None),
        }
    }
}

impl Backend for Docker {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }

    fn start(&self, ctx: &Ctx, deadline: Instant) -> Result<bool> {
        self.check_engine(ctx)?;
        if let Some(id) = self.is_running(ctx)? {
            self.wait_healthy(ctx, &id, deadline)?;
            return Ok(false);
        }
        if port_is_taken(ctx.cfg.port) {
            return Err(port_taken_error(ctx.cfg.port));
        }
        self.ensure_image(ctx, true)?;
        let up = output(self.compose(ctx, &["up", "--detach", SERVICE]))?;
        if !up.status.success() {
            let all = String::from_utf8_lossy(&up.stderr).to_lowercase();
            if all.contains("port is already allocated") || all.contains("address already in use") {
                return Err(port_taken_error(ctx.cfg.port));
            }
            bail!(
                "compose could not start the postgres service: {}",
                stderr_line(&up)
            );
        }
        let id = self.container_id(ctx)?.context(
            "compose reported success but no postgres container exists: see `cargo xtask db-logs`",
        )?;
        self.wait_healthy(ctx, &id, deadline)?;
        Ok(true)
    }

    fn not_running(&self, ctx: &Ctx) -> Result<Option<NotRunning>> {
        if let Some(why) = self.engine_silence(ctx)? {
            return Ok(Some(NotRunning {
                why,
                remedy: ENGINE_REMEDY.into(),
            }));
        }
        if self.is_running(ctx)?.is_some() {
            return Ok(None);
        }
        let why = format!(
            "no postgres container of compose project {:?} is running",
            self.project
        );
        let port = ctx.cfg.port;
        Ok(Some(if port_is_taken(port) {
            NotRunning {
                why: format!("{why}; another program holds port {port}"),
                remedy: "stop that program or choose another POSTGRES_PORT, then start the container with `cargo xtask db-up --backend docker`".into(),
            }
        } else {
            NotRunning {
                why,
                remedy: "start it with `cargo xtask db-up --backend docker`".into(),
            }
        }))
    }

    fn stop(&self, ctx: &Ctx, delete_data: bool) -> Result<Halt> {
        // Asked before `down`, which removes the container whether it ran or not.
        let was_running = self.is_running(ctx)?.is_some();
        let args: &[&str] = if delete_data {
            &["down", "--volumes"]
        } else {
            &["down"]
        };
        let out = output(self.compose(ctx, args))?;
        if !out.status.success() {
            bail!("compose down failed: {}", stderr_line(&out));
        }
        Ok(Halt::Stopped(if was_running {
            vec!["postgres container"]
        } else {
            Vec::new()
        }))
    }

    fn logs(&self, ctx: &Ctx, follow: bool) -> Result<()> {
        let mut args = vec!["logs"];
        // Compose v1 colours its `postgres_1 |` prefixes even into a pipe. podman-compose's
        // `logs` has no --no-color (it never colours), so it is left out there.
        if self.flavor != Flavor::Podman && !ui::stdout_colour() {
            args.push("--no-color");
        }
        if follow {
            args.push("--follow");
        }
        args.push(SERVICE);
        process::run_redacted(self.compose(ctx, &args).quiet())
    }

    fn client_command<'a>(
        &self,
        ctx: &'a Ctx,
        program: &str,
        database: &str,
        interactive: bool,
    ) -> Result<xshell::Cmd<'a>> {
        if self.is_running(ctx)?.is_none() {
            bail!("the postgres container is not running: start it with `cargo xtask db-up`");
        }
        let cfg = &ctx.cfg;
        let mut exec = vec!["exec"];
        if !interactive {
            exec.push("-T");
        }
        exec.extend([
            "--env",
            "PGPASSWORD",
            SERVICE,
            program,
            "--username",
            &cfg.user,
            "--dbname",
            database,
        ]);
        // The password reaches the container through the environment, never the command line.
        Ok(self.compose(ctx, &exec).env("PGPASSWORD", &cfg.password))
    }
}

/// A stable compose project name, so every checkout keeps its own volume whatever the working directory.
fn project_name(ctx: &Ctx) -> String {
    if let Some(name) = ctx.cfg.lookup.value("COMPOSE_PROJECT_NAME") {
        return name;
    }
    let dir = ctx
        .cfg
        .root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = dir
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "dbops".to_owned()
    } else {
        format!("{name}-db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn compose_command_lines() {
        let file = PathBuf::from("/p/docker-compose.yml");
        let cases = [
            (Flavor::DockerPlugin, "/usr/bin/docker", vec!["compose"]),
            (Flavor::Standalone, "/usr/bin/docker-compose", vec![]),
            (Flavor::Podman, "/usr/bin/podman", vec!["compose"]),
        ];
        for (flavor, program, prefix) in cases {
            let docker = Docker::new(
                flavor,
                Path::new(program),
                Path::new("/usr/bin/docker"),
                "p-db".into(),
                file.clone(),
            );
            let mut expected: Vec<String> = prefix.into_iter().map(String::from).collect();
            expected.extend(
                [
                    "--project-name",
                    "p-db",
                    "--file",
                    "/p/docker-compose.yml",
                    "up",
                    "--detach",
                    "postgres",
                ]
                .map(String::from),
            );
            assert_eq!(
                strings(docker.compose_args(&["up", "--detach", "postgres"])),
                expected,
                "{flavor:?}"
            );
        }
    }
}
