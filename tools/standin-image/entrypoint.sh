#!/usr/bin/env bash
# Entrypoint of the stand-in PostgreSQL test-fixture image
# (localhost/postgres-standin:16, built by tools/standin-image/build.sh).
#
# Follows the official postgres image's contract as far as this project relies
# on it:
#   POSTGRES_PASSWORD (required), POSTGRES_USER (default postgres),
#   POSTGRES_DB (default $POSTGRES_USER), PGDATA (default
#   /var/lib/postgresql/data), POSTGRES_INITDB_ARGS (extra initdb flags).
#   An empty PGDATA is initialised once; a non-empty one is reused as it is.
#   Password (scram-sha-256) auth for TCP from anywhere, listen on all
#   interfaces; the Unix socket inside the container is trusted, as in the
#   official image, so `docker exec ... psql` works.
#   Runs as the unprivileged `postgres` user, `postgres` becomes PID 1
#   (docker stop sends SIGINT = fast shutdown, see STOPSIGNAL in Dockerfile).
# Not implemented: /docker-entrypoint-initdb.d scripts, *_FILE secrets,
# POSTGRES_HOST_AUTH_METHOD.
set -euo pipefail

# `docker run IMAGE -c foo=bar` means `postgres -c foo=bar`.
if [ "$#" -eq 0 ] || [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"

# Anything other than the server (e.g. `bash`), or the server asked only for
# information (`postgres --version`), runs as given, without any setup.
if [ "$1" != postgres ]; then
    exec "$@"
fi
for arg in "${@:2}"; do
    case "$arg" in
    -V | --version | --help | -'?' | --describe-config | -C) exec "$@" ;;
    esac
done

if [ "$(id -u)" = 0 ]; then
    # Fix ownership on the (possibly fresh) volume, then drop privileges and
    # re-run this script as `postgres`.
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    chmod 3777 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
fi

log() { printf 'standin-entrypoint: %s\n' "$*" >&2; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_USER:=postgres}"
    : "${POSTGRES_DB:=$POSTGRES_USER}"
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        log "error: database is uninitialized and POSTGRES_PASSWORD is not set"
        exit 1
    fi
    if [ -n "$(ls -A "$PGDATA" 2>/dev/null)" ]; then
        log "error: $PGDATA is not empty but has no PG_VERSION; refusing to initialise over it"
        exit 1
    fi

    log "initialising database cluster in $PGDATA"
    pwfile="$(mktemp)"
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of flags
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-host=scram-sha-256 --auth-local=trust \
        --encoding=UTF8 --locale=C.UTF-8 \
        ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f "$pwfile"
    trap - EXIT

    cat >"$PGDATA/pg_hba.conf" <<'HBA'
# Written by the stand-in image's entrypoint.
# TYPE  DATABASE  USER  ADDRESS  METHOD
local   all       all            trust
host    all       all   all      scram-sha-256
HBA
    # jit = off: the image's PostgreSQL is built without LLVM.
    printf "\n# stand-in image\nlisten_addresses = '*'\njit = off\n" >>"$PGDATA/postgresql.conf"

    # Temporary server on the Unix socket only, so nothing on the network (or
    # the healthcheck, which uses TCP) sees it before setup is done.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w -s start
    if [ "$POSTGRES_DB" != postgres ]; then
        log "creating database $POSTGRES_DB"
        psql -X -q -v ON_ERROR_STOP=1 --username="$POSTGRES_USER" --dbname=postgres \
            --set=db="$POSTGRES_DB" <<'SQL'
CREATE DATABASE :"db";
SQL
    fi
    pg_ctl -D "$PGDATA" -m fast -w -s stop
    log "initialisation complete"
else
    log "existing cluster in $PGDATA (PG_VERSION $(cat "$PGDATA/PG_VERSION")); skipping initialisation"
fi

exec "$@"
