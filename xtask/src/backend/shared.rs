//! What several backends share: the environment for libpq clients, and the port checks. No
//! backend imports from another backend; they meet here.

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
    anyhow::anyhow!(
        "port {port} on 127.0.0.1 is already taken by another program: stop it, or choose another port with POSTGRES_PORT (and DATABASE_URL) in .env"
    )
}
