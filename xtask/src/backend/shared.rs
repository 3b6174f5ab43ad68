//! What several backends share: the environment for libpq clients, the port checks, and what
//! stopping found. No backend imports from another backend; they meet here.

use crate::context::Ctx;

/// Connection settings for libpq clients; the password travels in the environment, not in argv.
pub fn client_env<'a>(ctx: &Ctx, cmd: xshell::Cmd<'a>, database: &str) -> xshell::Cmd<'a> {
    let cfg = &ctx.cfg;
    cmd.env(
        "PGHOST",
        cfg.host().trim_start_matches('[').trim_end_matches(']'),
    )
    .env("PGPORT", cfg.port.to_string())
    .env("PGUSER", &cfg.user)
    .env("PGPASSWORD", &cfg.password)
    .env("PGDATABASE", database)
    // libpq takes the TLS settings from PGSSLMODE and friends, not from the URL xtask holds.
    .envs(crate::tls::libpq_env(&cfg.url))
}

/// True when something other than us already listens on the port.
pub fn port_is_taken(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

pub fn port_taken_error(port: u16) -> anyhow::Error {
    PortTaken { port }.into()
}

/// The port is taken by a program the backend could not name; a backend that can prove the
/// program is one of its own finds this error with `downcast_ref` and says so instead.
#[derive(Debug)]
pub struct PortTaken {
    pub port: u16,
}

impl std::fmt::Display for PortTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "port {} on 127.0.0.1 is already taken by another program: stop it, or choose another port with POSTGRES_PORT (and DATABASE_URL) in .env",
            self.port
        )
    }
}

impl std::error::Error for PortTaken {}

/// What stopping a backend found, for `db-down` to say in one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Halt {
    /// Nothing is there to stop or delete; says where xtask looked.
    Nothing(String),
    /// The servers that ran and were stopped, by name; none when all were already stopped.
    Stopped(Vec<&'static str>),
}

impl Halt {
    /// What was stopped (or that nothing was), and what became of the data.
    pub fn summary(&self, deleted: bool) -> String {
        let data = if deleted {
            "the data is deleted"
        } else {
            "the data is kept (`db-down --volumes` deletes it)"
        };
        match self {
            Halt::Nothing(why) if deleted => format!("nothing to stop or delete: {why}"),
            Halt::Nothing(why) => format!("nothing to stop: {why}"),
            Halt::Stopped(names) if names.is_empty() => {
                format!("already stopped: no server was running; {data}")
            }
            Halt::Stopped(names) => format!("stopped the {}; {data}", names.join(" and the ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_error_can_be_recognised_and_reads_as_before() {
        let error = port_taken_error(5432);
        assert_eq!(
            error.downcast_ref::<PortTaken>().map(|taken| taken.port),
            Some(5432)
        );
        assert!(
            error
                .to_string()
                .starts_with("port 5432 on 127.0.0.1 is already taken by another program: ")
        );
    }

    #[test]
    fn a_halt_says_what_it_stopped_in_one_line() {
        let both = Halt::Stopped(vec!["local cluster", "test cluster"]);
        assert_eq!(
            both.summary(false),
            "stopped the local cluster and the test cluster; the data is kept (`db-down --volumes` deletes it)"
        );
        assert_eq!(
            Halt::Stopped(vec![]).summary(true),
            "already stopped: no server was running; the data is deleted"
        );
        let nothing = Halt::Nothing("there is no local cluster in /p/.data".into());
        assert_eq!(
            nothing.summary(true),
            "nothing to stop or delete: there is no local cluster in /p/.data"
        );
        for halt in [both, nothing] {
            for deleted in [false, true] {
                assert_eq!(halt.summary(deleted).lines().count(), 1);
            }
        }
    }
}
